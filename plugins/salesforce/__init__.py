"""Salesforce, the CRM: accounts and contacts in, ERP and billing facts out.

- :mod:`.connector`: :class:`~.connector.SalesforceConnector`: webhook verification and parsing,
  delivery, probe, reads and error classification;
- :mod:`.mapping`: what maps to what, both ways, and the planned writes;
- :mod:`.client`: the REST client: OAuth client-credentials sessions, ``Sforce-Limit-Info``, errors;
- :mod:`.soap`: outbound messages (SOAP notifications, the Ack, faults), shared with the sandbox;
- :mod:`.relay`: the signature of Change Data Capture events relayed to the hub;
- :mod:`.ids`: 15- and 18-character record ids;
- :mod:`.sandbox` (with :mod:`.sandbox.schema`, :mod:`.sandbox.soql` and :mod:`.sandbox.outbound_messages`): a
  local emulator of an org. Importing it loads Starlette and uvicorn, so only
  ``SalesforceConnector.sandbox()`` does.
"""

from crossledger.plugins.salesforce.connector import SalesforceConnector
from crossledger.plugins.salesforce.settings import SalesforceSettings

__all__ = ["SalesforceConnector", "SalesforceSettings"]
