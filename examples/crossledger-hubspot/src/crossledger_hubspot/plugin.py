"""The crossledger hooks of this plugin, found through the entry point
``[project.entry-points.crossledger] hubspot = "crossledger_hubspot.plugin"``."""

from collections.abc import Iterable

from crossledger.plugins import Connector, Route, hookimpl

from crossledger_hubspot.connector import SYSTEM, HubSpotConnector


@hookimpl
def crossledger_connectors() -> Iterable[Connector]:
    return [HubSpotConnector()]


@hookimpl
def crossledger_routes() -> Iterable[Route]:
    """Billing-born customers become HubSpot companies; HubSpot's companies, like any CRM's, reach
    the ERP and the support desk. ``[routes]`` in the hub's configuration still wins."""
    return [
        Route("customer.upserted", (SYSTEM,), source="stripe"),
        Route("customer.upserted", ("netsuite", "zendesk"), source=SYSTEM),
    ]
