"""Oracle NetSuite, the ERP: a delivery target reached over SuiteTalk REST with token-based auth.

- :mod:`.connector`: canonical customers, invoices, payments and credits -> NetSuite records,
  made idempotent by external-id upserts;
- :mod:`.auth`: OAuth 1.0a (HMAC-SHA256) request signing, and its verification for the sandbox;
- :mod:`.sandbox`: a local emulator of the record service, faithful to its wire format.
"""
