"""A property of the whole hub, on a generated stream: every accepted message ends in exactly one
outcome, and no two systems end up disagreeing on a synced field without a recorded conflict.

The stream (seeded, so a failure can be replayed) mixes all four systems: customers born in Stripe
and accounts won in Salesforce; then, with Stripe's webhooks held back and released shuffled,
Salesforce account edits (outbound messages), NetSuite terms changes (picked up by polling),
Zendesk organization edits (its signed webhook), Stripe invoices, paid or not, and saves of Stripe
customers without a synced change; and duplicates: Stripe events and Salesforce outbound messages
sent again.

The fields compared, each against its system of record by the ownership rules (the CRM owns the
customer profile, the ERP its financial dimensions, billing its invoice documents):

- customer name: Salesforce ``Name`` = Stripe ``name`` = NetSuite ``companyName`` = Zendesk ``name``
  (less the source id Zendesk's unique organization names end with)
- customer phone: Salesforce ``Phone`` = Stripe ``phone`` = NetSuite ``phone``
- payment terms: NetSuite ``terms`` = Salesforce ``Payment_Terms__c``
- invoice total: Stripe ``total`` = NetSuite ``total``

Deliberately left out: the profile edited outside its system of record (Stripe, Zendesk: the hub
strips such edits by policy and says so in the trace; nothing writes the owner's value back), and
what does not sync yet (Stripe's phone, e-mail, address and currency to Salesforce, NetSuite's
balance to Salesforce, an invoice's paid status to Salesforce): the stream edits none of them.
"""

import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import System, start_system
from crossledger.core.processes.embedded import wait_until
from crossledger.core.telemetry import metrics
from crossledger.devtools.demo.drivers import SalesforceUser
from crossledger.plugins.netsuite.sandbox.user import NetSuiteUser
from crossledger.plugins.netsuite.settings import NetSuiteSettings
from crossledger.plugins.zendesk.sandbox.app import API_ROOT
from test_topology import ALL, WON, account, quiet, records

SEED = 20261207
STRIPE_BORN, WON_IN_SALESFORCE, OPERATIONS = 2, 2, 24
SOURCES = ("stripe", "salesforce", "netsuite", "zendesk")
POLL_SETTLE_S = 1.0
"""NetSuite's changes are polled once their second is this long over (the default is 5 s)."""


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[System]:
    running = start_system(tmp_path, systems=ALL, netsuite={"poll_settle_s": POLL_SETTLE_S})
    yield running
    running.stop()


def received(source: str) -> float:
    return metrics.registry.get_sample_value("crossledger_events_received_total", {"source": source}) or 0


class Stream:
    """The generated traffic, and the drivers of each system's users."""

    def __init__(self, system: System, seed: int) -> None:
        self.system = system
        self.random = random.Random(seed)
        connectors = system.hub.runtime.settings.connectors
        self.sales = SalesforceUser(connectors["salesforce"])
        self.finance = NetSuiteUser(NetSuiteSettings(**connectors["netsuite"]))
        zendesk = system.sandboxes.sandboxes["zendesk"]
        self.support = httpx.Client(base_url=f"{system.server.url}/zendesk{API_ROOT}",
                                    auth=(f"{zendesk.email}/token", zendesk.api_token))  # type: ignore[attr-defined]
        self.store = system.hub.runtime.store
        self.customers: list[str] = []
        self.invoices: list[str] = []

    def close(self) -> None:
        self.finance.close()
        self.support.close()

    def id_in(self, canonical_id: str, system: str) -> str:
        found = self.store.xref_get(canonical_id, system)
        assert found is not None, f"{canonical_id} has no {system} id"
        return found

    # -- the customers everything else is about --------------------------------------------------
    def create_customers(self) -> None:
        for n in range(STRIPE_BORN):
            created = self.system.stripe.post("/v1/customers", name=f"Billing Born {n} Ltd",
                                              email=f"billing{n}@example.com")
            self.customers.append(f"customer/stripe/{created['id']}")
        for n in range(WON_IN_SALESFORCE):
            account_id = self.sales.create_account(dict(
                Name=f"Won Account {n} Inc", Type=WON, Website=f"https://won{n}.example", CurrencyIsoCode="USD"))
            self.customers.append(f"customer/salesforce/{account_id}")

    def everywhere(self) -> bool:
        return all(self.store.xref_get(customer, system) for customer in self.customers for system in ALL)

    # -- the operations -------------------------------------------------------------------------
    def operations(self) -> list[Callable[[], None]]:
        kinds = [self.salesforce_edit, self.netsuite_terms, self.zendesk_edit, self.stripe_invoice,
                 self.stripe_save, self.stripe_duplicate, self.salesforce_duplicate]
        return [self.random.choice(kinds) for _ in range(OPERATIONS)]

    def salesforce_edit(self) -> None:
        customer = self.random.choice(self.customers)
        field = self.random.choice(["Name", "Phone"])
        value = f"Renamed {self.random.randrange(10_000)} Co" if field == "Name" else \
            f"+1 555 {self.random.randrange(10_000):04d}"
        self.sales.update_account(self.id_in(customer, "salesforce"), {field: value})

    def netsuite_terms(self) -> None:
        customer = self.random.choice(self.customers)
        self.finance.set_terms(self.id_in(customer, "netsuite"), self.random.choice(["1", "2", "3"]))

    def zendesk_edit(self) -> None:
        """Tags on the organization: its webhook is accepted, and is no news to the hub."""
        organization = self.id_in(self.random.choice(self.customers), "zendesk")
        response = self.support.put(f"/organizations/{organization}.json",
                                    json={"organization": {"tags": [f"tag{self.random.randrange(100)}"]}})
        response.raise_for_status()

    def stripe_invoice(self) -> None:
        customer = self.id_in(self.random.choice(self.customers), "stripe")
        self.system.stripe.post("/v1/invoiceitems", customer=customer, currency="usd",
                                amount=self.random.randrange(100, 100_000), description="services")
        invoice = self.system.stripe.post("/v1/invoices", customer=customer, collection_method="send_invoice",
                                          days_until_due=30)
        self.system.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        if self.random.random() < 0.5:
            self.system.stripe.post(f"/v1/invoices/{invoice['id']}/pay", paid_out_of_band="true")
        self.invoices.append(f"invoice/stripe/{invoice['id']}")

    def stripe_save(self) -> None:
        """A save that changes nothing the hub syncs: its webhook is no news."""
        customer = self.id_in(self.random.choice(self.customers), "stripe")
        self.system.stripe.post(f"/v1/customers/{customer}", description=f"note {self.random.randrange(100)}")

    def stripe_duplicate(self) -> None:
        events = self.system.stripe.get("/v1/events", limit=20)["data"]
        if events:
            event = self.random.choice(events)
            httpx.post(f"{self.system.server.url}/stripe/_sandbox/events/{event['id']}/resend").raise_for_status()

    def salesforce_duplicate(self) -> None:
        httpx.post(f"{self.system.server.url}/salesforce/_sandbox/outbound/resend").raise_for_status()


def stripe_webhooks(system: System, **command: Any) -> None:
    httpx.post(f"{system.server.url}/stripe/_sandbox/webhooks", json=command).raise_for_status()


def by_id(system: System, name: str, kind: str, external_id: str) -> dict[str, Any]:
    [found] = [record for record in records(system, name, kind) if str(record["id"]) == external_id]
    return found


def terms_of(netsuite: dict[str, Any]) -> str | None:
    terms = netsuite.get("terms")
    return str(terms["id"]) if isinstance(terms, dict) else terms


def disagreements(system: System, stream: Stream) -> dict[str, list[tuple[str, list[Any]]]]:
    """Per record: each synced field whose systems disagree, with what each shows."""
    found: dict[str, list[tuple[str, list[Any]]]] = {}
    for customer in stream.customers:
        sf = account(system, stream.id_in(customer, "salesforce"))
        stripe = by_id(system, "stripe", "customers", stream.id_in(customer, "stripe"))
        netsuite = by_id(system, "netsuite", "customer", stream.id_in(customer, "netsuite"))
        zendesk = by_id(system, "zendesk", "organizations", stream.id_in(customer, "zendesk"))
        # Zendesk names an organization after its customer and source id: "Acme Ltd (cus_123)".
        organization = zendesk["name"].removesuffix(f" ({customer.rsplit('/', 1)[1]})")
        fields = {"name": [sf["Name"], stripe["name"], netsuite["companyName"], organization],
                  "phone": [sf["Phone"], stripe["phone"], netsuite.get("phone")],
                  "terms": [terms_of(netsuite), sf["Payment_Terms__c"]]}
        found[customer] = [(name, shown) for name, shown in fields.items() if len(set(shown)) > 1]
    for invoice in stream.invoices:
        stripe = by_id(system, "stripe", "invoices", invoice.rsplit("/", 1)[1])
        netsuite_id = stream.store.xref_get(invoice, "netsuite")
        netsuite = by_id(system, "netsuite", "invoice", netsuite_id) if netsuite_id else {"total": None}
        shown = [Decimal(stripe["total"]) / 100, netsuite["total"] and Decimal(str(netsuite["total"]))]
        found[invoice] = [("total", shown)] if len(set(shown)) > 1 else []
    return {record: fields for record, fields in found.items() if fields}


def settled(system: System, for_s: float) -> bool:
    """The senders are done, the hub idle and no outcome pending, and stay so for ``for_s``."""
    store = system.hub.runtime.store
    still = lambda: quiet(system) and not store.outcomes(outcome="pending", limit=1)  # noqa: E731
    return still() and not wait_until(lambda: not still(), for_s)


def recorded_conflict(system: System, subject: str) -> bool:
    """Whether a message about ``subject`` ended as a conflict or a dead letter."""
    store = system.hub.runtime.store
    outcomes = (store.outcome_get(r.correlation_id) for r in store.audit_for_subject(subject))
    return any(outcome is not None and outcome.outcome in ("conflict", "dead_letter") for outcome in outcomes)


def test_a_mixed_stream_ends_in_one_outcome_per_message_and_no_silent_disagreement(topology: System) -> None:
    before = {source: received(source) for source in SOURCES}
    store = topology.hub.runtime.store
    stream = Stream(topology, SEED)
    try:
        stream.create_customers()
        assert wait_until(lambda: quiet(topology) and stream.everywhere(), 60), "customers missing somewhere"
        operations = stream.operations()
        stripe_webhooks(topology, hold=True)  # the first half's Stripe events arrive shuffled
        for index, operation in enumerate(operations):
            if index == len(operations) // 2:
                stripe_webhooks(topology, release="shuffle")
            operation()
        stripe_webhooks(topology, release="shuffle")
        # NetSuite's changes, and the hub's own writes, come back through polls for a while: settled
        # is quiet, with nothing pending, for longer than a poll takes to see a change.
        assert wait_until(lambda: settled(topology, POLL_SETTLE_S + 2), 90), "the stream did not settle"
    finally:
        stream.close()

    # Every accepted message ended in exactly one outcome (one ledger entry per correlation id).
    counts = store.outcome_counts()
    for source in SOURCES:
        accepted = received(source) - before[source]
        concluded = {outcome: n for (outcome, src), n in counts.items() if src == source}
        assert accepted == sum(concluded.values()) and "pending" not in concluded, (source, accepted, concluded)
    assert sum(counts.values()) > OPERATIONS

    # No two systems disagree on a synced field without a recorded conflict.
    silent = {record: fields for record, fields in disagreements(topology, stream).items()
              if not recorded_conflict(topology, record)}
    assert silent == {}
