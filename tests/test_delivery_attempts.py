"""A delivery's attempts, on both stores: the lease that serializes a delivery also marks its attempt
(``Store.read``'s ``attempt``), so a worker that dies between its external calls and its commit
leaves the next attempt knowing it may have reached the target: that attempt probes each operation
before it sends it again, however many operations the delivery has. A first attempt, and one after
an attempt that failed with its calls on record, probe nothing.

Real NetSuite writes on loopback (the sandbox), a real store; the worker's death is its unit never
committed, its lease left to expire."""

import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from crossledger.canonical.entities import Customer
from crossledger.canonical.events import Envelope, encode_envelope, new_envelope
from crossledger.core.hub.pipeline import Bound, Pipeline
from crossledger.core.hub.policy import OwnershipPolicy
from crossledger.core.hub.router import Router
from crossledger.core.store import Store
from crossledger.core.store.base import Unit
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.netsuite.connector import NetSuiteConnector, NetSuiteSettings
from crossledger.plugins.netsuite.outbound import external_id_for
from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox
from crossledger.plugins.types import Context, Operation, Outcome, Refs

LEASE_TTL_S = 0.3
"""How long a dead worker's lease outlives it here: the next attempt waits that long for it."""


class WorkerDied(BaseException):
    """The worker's process ends mid-call: nothing of its message runs after it (not even what an
    ``except Exception`` would do), and its unit of work is never committed."""


class TwinWrites(NetSuiteConnector):
    """NetSuite, where each customer is written twice over, itself and a twin record, so that one
    delivery sends two operations. Counts its calls by record; ``dies_after`` (a canonical id) ends
    the worker once that record's write has reached NetSuite, before its answer; ``refuses_plan``
    fails the next plan, an answer that sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.executed: Counter[str] = Counter()
        self.probed: Counter[str] = Counter()
        self.dies_after: str | None = None
        self.refuses_plan = False

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        if self.refuses_plan:
            self.refuses_plan = False
            raise ConnectorError(Category.TRANSIENT, "not now")
        assert isinstance(event.data, Customer)
        twin = msgspec.structs.replace(event.data, id=f"{event.data.id}-twin", name=f"{event.data.name} twin")
        return [*super().plan(ctx, event, refs),
                *super().plan(ctx, msgspec.structs.replace(event, data=twin, subject=twin.id), refs)]

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        outcome = super().execute(ctx, op, idempotency_key)
        self.executed[op.canonical_id] += 1
        if op.canonical_id == self.dies_after:
            self.dies_after = None
            raise WorkerDied
        return outcome

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        self.probed[op.canonical_id] += 1
        return super().probe(ctx, op, idempotency_key)


@pytest.fixture(scope="module")
def sandbox() -> NetSuiteSandbox:
    return NetSuiteSandbox()


class Hub:
    """The connector, and a worker's pipeline over ``store`` for each attempt (a retry runs in
    another worker than the one that died)."""

    def __init__(self, store: Store, sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client) -> None:
        self.store = store
        self.sandbox = sandbox
        self.connector = TwinWrites()
        settings = NetSuiteSettings(**sandbox.connector_settings(server.url))
        self.bound = Bound(self.connector, Context(settings=settings, http=http, clock=time.time))

    def worker(self) -> Pipeline:
        return Pipeline(store=self.store, plugins=CrossledgerPluginManager(), connectors={"netsuite": self.bound},
                        policy=OwnershipPolicy([], {"netsuite": self.connector.kind}),
                        router=Router([], {}, {"netsuite"}), lease_ttl_s=LEASE_TTL_S)

    def records(self, canonical_id: str) -> int:
        """How many NetSuite customers hold ``canonical_id``'s external id."""
        return sum(r.get("externalId") == external_id_for(canonical_id) for r in self.sandbox.state()["customer"])


@pytest.fixture
def hub(store: Store, sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client) -> Hub:
    return Hub(store, sandbox, server, http)


def customer_event() -> tuple[dict[str, Any], list[str]]:
    """A new customer's event, encoded as a ``deliver`` message carries it, and the canonical ids its
    delivery writes (the customer, then its twin)."""
    customer = Customer(id=f"customer/stripe/cus_{uuid.uuid4().hex[:12]}", name="Attempts Ltd")
    event = new_envelope(type="customer.upserted", source="stripe", source_event_id=f"evt_{uuid.uuid4().hex}",
                         data=customer, occurred_at=datetime.now(UTC))
    return encode_envelope(event), [customer.id, f"{customer.id}-twin"]


def test_the_attempt_after_a_worker_died_mid_delivery_probes_what_it_may_have_sent(hub: Hub) -> None:
    event, written = customer_event()
    hub.connector.dies_after = written[1]  # both writes reach NetSuite; the worker dies before the answer
    with pytest.raises(WorkerDied):
        hub.worker().deliver("netsuite", event, unit=Unit())  # its unit dies with it
    hub.connector.refuses_plan = True  # then an attempt that fails with nothing sent does not clear the doubt
    with pytest.raises(ConnectorError):
        hub.worker().deliver("netsuite", event)

    hub.worker().deliver("netsuite", event)

    assert hub.connector.probed == Counter(written)  # each operation looked for before sending again
    assert hub.connector.executed == Counter(written)  # and found: none sent twice
    assert [hub.records(canonical_id) for canonical_id in written] == [1, 1]
    assert all(hub.store.xref_get(canonical_id, "netsuite") for canonical_id in written)


def test_a_first_attempt_and_one_after_a_failure_on_record_probe_nothing(hub: Hub) -> None:
    event, written = customer_event()
    hub.connector.refuses_plan = True
    with pytest.raises(ConnectorError):
        hub.worker().deliver("netsuite", event)

    hub.worker().deliver("netsuite", event)

    assert hub.connector.probed == Counter()
    assert hub.connector.executed == Counter(written)
    hub.worker().deliver("netsuite", event)  # delivered again (a replay): done already, nothing sent
    assert (hub.connector.probed, hub.connector.executed) == (Counter(), Counter(written))
