"""One billing × ERP pair on loopback for the journey tests, and the people who work in it.

:func:`start_pair` runs the pair's four sandboxes (Salesforce, the billing system, the ERP, Zendesk)
around an embedded hub configured for that pair (:class:`~crossledger.devtools.sandboxes.Topology`).
The people are the demo's: billing works through its system's own API with the demo's
:class:`~crossledger.devtools.demo.billing.BillingDriver` (Stripe's form posts, Zuora's REST after
its OAuth login), and the ERP's :class:`~crossledger.devtools.demo.erp.ErpDriver` reads the ERP's
records as the ERP keeps them, so a journey test reads the same for every pair.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import System, start_system
from crossledger.core.processes.embedded import wait_until
from crossledger.devtools.demo.billing import BILLING, BillingDriver
from crossledger.devtools.demo.drivers import SalesforceUser, Sandboxes, listed
from crossledger.devtools.demo.erp import ERPS, ErpDriver
from crossledger.devtools.sandboxes import PAIRS, Topology

IDS = [str(pair) for pair in PAIRS]
"""The pairs' test ids: ``stripe+netsuite``, ``zuora+business-central``, ..."""
WON = "Customer - Direct"
"""The account Type an org's flow sets when the deal is closed won: what starts onboarding."""

SENDERS = ("wait_for_webhooks", "wait_for_callouts", "wait_for_outbound")
"""How each sandbox that pushes says it has nothing left to send."""
CUSTOMER_RECORDS = {"netsuite": "customer", "business_central": "customers"}
"""Where each ERP's state keeps its customers."""


@dataclass
class Pair:
    """A running pair: the hub and its sandboxes (``system``), and the people working in them:
    ``billing`` in the billing system, ``books`` in the ERP (and reading its records)."""

    topology: Topology
    system: System
    billing: BillingDriver
    books: ErpDriver

    @property
    def erp(self) -> str:
        return self.books.system

    @property
    def sales(self) -> SalesforceUser:
        return SalesforceUser(self.system.hub.runtime.settings.connectors["salesforce"])

    def state(self, system: str) -> dict[str, Any]:
        return self.system.state(system)

    def quiet(self) -> bool:
        """Every sandbox has sent what it had to, and the hub has nothing left to do."""
        for sandbox in self.system.sandboxes.sandboxes.values():
            for sender in SENDERS:
                if hasattr(sandbox, sender) and not getattr(sandbox, sender)(0):
                    return False
        return self.system.hub.idle()

    def settle(self, condition: Callable[[], bool] = lambda: True, timeout: float = 60) -> None:
        assert wait_until(lambda: self.quiet() and condition(), timeout), f"did not settle: {self.debug()}"

    def knows_the_erps_own_customers(self) -> bool:
        """Every customer the ERP holds is known to the hub. Those it started with (Business Central's
        demo company has some) come in with a poll once they are past its settle horizon, and go on
        to the other systems: a test that began before would see them arrive midway."""
        store = self.system.hub.runtime.store
        return all(store.xref_find("customer", self.erp, str(customer["id"])) is not None
                   for customer in listed(self.state(self.erp), CUSTOMER_RECORDS[self.erp]))

    def debug(self) -> str:
        store = self.system.hub.runtime.store
        letters = [(letter.category, letter.reason) for letter in store.dlq_list()]
        journeys = [(run.name, run.state, run.reason, {name: step.status for name, step in run.steps.items()})
                    for run in store.journeys()]
        return f"dead letters {letters}, journeys {journeys}, quiet: {self.quiet()}"

    def letters(self) -> list[tuple[str, str]]:
        return [(letter.category, letter.reason) for letter in self.system.hub.runtime.store.dlq_list()]

    def account(self, account_id: str) -> dict[str, Any]:
        [found] = [a for a in listed(self.state("salesforce"), "accounts") if a["Id"] == account_id]
        return found

    def stop(self) -> None:
        self.system.stop()


def start_pair(tmp_path: Path, topology: Topology, **options: Any) -> Pair:
    """The pair's sandboxes and a hub configured for it (``[topology]`` names its billing and ERP)."""
    system = start_system(tmp_path, systems=topology.systems, topology=topology.roles(), **options)
    connectors, sandboxes = system.hub.runtime.settings.connectors, Sandboxes(system.server.url)
    billing = BILLING[topology.billing_system](connectors[topology.billing_system], sandboxes)
    pair = Pair(topology, system, billing, ERPS[topology.erp_system](connectors[topology.erp_system], sandboxes))
    pair.settle(pair.knows_the_erps_own_customers)
    return pair
