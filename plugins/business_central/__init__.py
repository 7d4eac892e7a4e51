"""Microsoft Dynamics 365 Business Central, the ERP: a delivery target reached over its standard API
v2.0 with Entra ID client credentials, and a source of the changes the ERP owns, pushed by webhook
subscriptions and polled as the fallback.

- :mod:`.connector`: the connector, its HTTP calls (:mod:`.client`) and error classification;
- :mod:`.outbound`: canonical events -> Business Central writes, made idempotent by natural keys;
- :mod:`.inbound`: webhook notifications, polling with a ``lastModifiedDateTime`` cursor, the
  subscriptions' upkeep, and records -> canonical changes;
- :mod:`.settings`: ``[connectors.business_central]``;
- :mod:`.auth`: Entra ID access tokens, cached and refreshed before they expire;
- :mod:`.sandbox`: a local emulator of the API, the token endpoint and webhook subscriptions.
"""
