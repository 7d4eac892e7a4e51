"""crossledger-hubspot: HubSpot CRM companies as crossledger customers (a third-party plugin).

- :mod:`.plugin`: the hooks crossledger finds through the ``crossledger`` entry point.
- :mod:`.connector`: :class:`~.connector.HubSpotConnector` and its settings.
- :mod:`.signature`: HubSpot's v3 webhook signature, shared by the connector and the sandbox.
- :mod:`.sandbox`: :class:`~.sandbox.HubSpotSandbox`, a local emulator of the API and its webhooks.
"""

__version__ = "0.1.0"
