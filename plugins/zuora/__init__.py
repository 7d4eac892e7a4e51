"""Zuora, a built-in billing connector, built only on the public plugin API.

- :mod:`.connector`: :class:`~.connector.ZuoraConnector`: callout verification and parsing,
  delivery of customers, reads of single records and of whole lists, error classification.
- :mod:`.client`: the settings (:class:`~.client.ZuoraSettings`), OAuth tokens and the API calls,
  with the reading of Zuora's ``success: false`` answers and the classification of failures.
- :mod:`.callout`: how a callout proves it is Zuora's (HTTP Basic, HMAC of the body), shared by both sides.
- :mod:`.mapping`: inbound, Zuora's objects onto the canonical model; :mod:`.outbound`: canonical
  customer events onto Zuora's writes.
- :mod:`.sandbox`: :class:`~.sandbox.app.ZuoraSandbox`, a local emulator of Zuora's API and callouts.
  Importing it loads Starlette and uvicorn, so only ``ZuoraConnector.sandbox()`` does.
"""

from crossledger.plugins.zuora.client import ZuoraSettings
from crossledger.plugins.zuora.connector import ZuoraConnector

__all__ = ["ZuoraConnector", "ZuoraSettings"]
