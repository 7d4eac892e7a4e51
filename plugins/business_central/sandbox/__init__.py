"""A local emulator of Business Central's API v2.0 (:mod:`.app`), its company's books
(:mod:`.books`), the OData conventions (:mod:`.odata`) and webhook subscriptions (:mod:`.webhooks`)."""
