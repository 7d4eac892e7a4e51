"""A local emulator of the parts of Zuora's API the hub uses: :class:`~.app.ZuoraSandbox`
(:mod:`.app`), the tenant's records (:mod:`.tenant`) and how Zuora speaks (:mod:`.wire`)."""
