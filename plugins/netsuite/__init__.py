"""Oracle NetSuite, the ERP: a delivery target reached over SuiteTalk REST with token-based auth, and
a pull system the hub polls for the changes the ERP owns.

- :mod:`.connector`: the connector, its HTTP calls and error classification;
- :mod:`.outbound`: canonical events -> NetSuite records, made idempotent by external-id upserts;
- :mod:`.inbound`: SuiteQL polling with a cursor, and polled records -> canonical changes;
- :mod:`.settings`: ``[connectors.netsuite]``;
- :mod:`.auth`: OAuth 1.0a (HMAC-SHA256) request signing, and its verification for the sandbox;
- :mod:`.sandbox` (with :mod:`.sandbox.suiteql`): a local emulator of the record service and SuiteQL;
- :mod:`.sandbox.user`: a NetSuite user at work through the API (approving, entering payments), for tests.
"""
