"""The idempotency key an operation sends, on both stores, against Stripe's and Zuora's sandboxes on
loopback, each with its vendor's idempotency layer: the first answer to a key is kept, a 500 included
(Stripe, once the request ran; Zuora, every answer), and replayed for that key.

So a call the vendor answered with a failure moves its operation to a new key (else every retry
would get the failure back until the message dead-letters), and a call that may have landed (no
answer after sending) keeps its key, for the vendor to replay what became of it."""

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from crossledger.canonical.entities import Customer
from crossledger.canonical.events import Envelope, encode_envelope, new_envelope
from crossledger.core.hub.pipeline import Bound, Pipeline, idempotency_key, wire_key
from crossledger.core.hub.policy import OwnershipPolicy
from crossledger.core.hub.router import Router
from crossledger.core.store import Store
from crossledger.core.store.base import Unit
from crossledger.plugins.connector import Connector
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.stripe import outbound
from crossledger.plugins.stripe.connector import StripeConnector
from crossledger.plugins.types import Context, Operation, Outcome, Refs
from crossledger.plugins.zuora.connector import ZuoraConnector

from tests.kits.stripe import RunningStripe
from tests.kits.zuora import RunningZuora

LEASE_TTL_S = 0.3


class Faulted:
    """What a connector under test sends: the key of each call; ``fault`` (a sandbox fault mode) is
    injected into the next write only, by setting it just before the call (the plan's reads and
    the token come first, and must not take it)."""

    def __init__(self, faults_url: str) -> None:
        self.faults_url = faults_url
        self.fault: dict[str, Any] | None = None
        self.sent: list[str] = []
        self.probed: list[str] = []

    def sending(self, key: str) -> None:
        self.sent.append(key)
        if self.fault is not None:
            httpx.post(self.faults_url, json={**self.fault, "count": 1}).raise_for_status()
            self.fault = None


class WorkerDied(BaseException):
    """The worker's process ends mid-call: nothing of its message runs after it, and its unit of
    work is never committed."""


class FaultedZuora(ZuoraConnector):
    def __init__(self, faulted: Faulted) -> None:
        super().__init__()
        self.faulted = faulted

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        self.faulted.sending(idempotency_key)
        return super().execute(ctx, op, idempotency_key)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        self.faulted.probed.append(idempotency_key)
        return super().probe(ctx, op, idempotency_key)


class FaultedStripe(StripeConnector):
    """Stripe, whose search does not show a customer yet when ``lagging`` (it lags writes by up
    to a minute): the plan's lookup and a probe then find nothing, landed or not; the probe alone
    finds it again once ``probe_lagging`` is set False (the search caught up in between)."""

    def __init__(self, faulted: Faulted) -> None:
        super().__init__()
        self.faulted = faulted
        self.lagging = False
        self.probe_lagging: bool | None = None
        self.dies = False
        """Whether the worker dies once the next write reached Stripe, before its answer."""

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        self.faulted.sending(idempotency_key)
        outcome = super().execute(ctx, op, idempotency_key)
        if self.dies:
            self.dies = False
            raise WorkerDied
        return outcome

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        return outbound.plan(event, refs, lambda canonical_id: None) if self.lagging else super().plan(ctx, event, refs)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        self.faulted.probed.append(idempotency_key)
        lagging = self.lagging if self.probe_lagging is None else self.probe_lagging
        return None if lagging else super().probe(ctx, op, idempotency_key)


class Hub:
    """One connector over ``store``, and a worker's pipeline for each attempt (a retry)."""

    def __init__(self, store: Store, connector: Connector, ctx: Context) -> None:
        self.store = store
        self.connector = connector
        self.bound = Bound(connector, ctx)

    def worker(self) -> Pipeline:
        """A worker's pipeline; a dead worker's lease outlives it :data:`LEASE_TTL_S`."""
        name = self.connector.name
        return Pipeline(store=self.store, plugins=CrossledgerPluginManager(), connectors={name: self.bound},
                        policy=OwnershipPolicy([], {name: self.connector.kind}),
                        router=Router([], {}, {name}), lease_ttl_s=LEASE_TTL_S)


@pytest.fixture(scope="module")
def zuora() -> Iterator[RunningZuora]:
    running = RunningZuora()
    yield running
    running.close()


@pytest.fixture(scope="module")
def stripe() -> Iterator[RunningStripe]:
    running = RunningStripe()
    yield running
    running.server.stop()


def customer_event() -> tuple[dict[str, Any], Customer]:
    """A new customer's event, as a ``deliver`` message carries it."""
    customer = Customer(id=f"customer/salesforce/001{uuid.uuid4().hex[:12]}", name="Keys Ltd",
                        email="ap@keys.test", currency="USD")
    event = new_envelope(type="customer.upserted", source="salesforce", source_event_id=f"e-{uuid.uuid4().hex}",
                         data=customer, occurred_at=datetime.now(UTC))
    return encode_envelope(event), customer


def made_in(running: RunningZuora | RunningStripe, canonical_id: str) -> list[str]:
    """The ids of the records the hub made for ``canonical_id``: Zuora accounts (by their hub-id
    custom field), Stripe customers (by ``metadata[crossledger_id]``)."""
    if isinstance(running, RunningZuora):
        return [a["id"] for a in running.sandbox.state()["accounts"] if a["CrossledgerId__c"] == canonical_id]
    return [c["id"] for c in running.sandbox.state()["customers"]
            if c["metadata"].get("crossledger_id") == canonical_id]


@pytest.mark.parametrize("target", ["zuora", "stripe"])
def test_a_create_answered_500_is_made_once_on_the_retry_under_a_new_key(
        store: Store, target: str, request: pytest.FixtureRequest) -> None:
    """A Zuora account, a Stripe customer: the 500 is the vendor's answer to the first key (Zuora's
    for 24 hours), so the retry sends the next one, and the record is made once."""
    running: RunningZuora | RunningStripe = request.getfixturevalue(target)
    faulted = Faulted(f"{running.url}/_sandbox/faults")
    connector = FaultedZuora(faulted) if isinstance(running, RunningZuora) else FaultedStripe(faulted)
    hub = Hub(store, connector, running.context())
    event, customer = customer_event()
    faulted.fault = {"mode": "http_500"}
    with pytest.raises(ConnectorError) as failed:
        hub.worker().deliver(target, event)
    assert failed.value.status == 500

    assert hub.worker().deliver(target, event).status == "delivered"

    made = made_in(running, customer.id)
    assert len(made) == 1 and store.xref_get(customer.id, target) == made[0]
    first, retried = faulted.sent
    assert retried == wire_key(first, 1) != first and faulted.probed == []  # a definite failure: nothing to look for


class TimedOut:
    """A Stripe customer create that landed, its answer lost (a timeout after sending), while
    Stripe's search does not show it yet: the delivery's first attempt, failed ``ambiguous``."""

    def __init__(self, store: Store, stripe: RunningStripe) -> None:
        self.faulted = Faulted(f"{stripe.url}/_sandbox/faults")
        self.connector = FaultedStripe(self.faulted)
        self.connector.lagging = True
        self.hub = Hub(store, self.connector, stripe.context(timeout_s=0.5))
        self.event, self.customer = customer_event()
        self.faulted.fault = {"mode": "timeout_after_commit", "latency_ms": 1500}
        with pytest.raises(ConnectorError) as failed:
            self.hub.worker().deliver("stripe", self.event)
        assert failed.value.category is Category.AMBIGUOUS
        time.sleep(1.2)  # the held answer is gone

    def retried(self) -> str:
        return self.hub.worker().deliver("stripe", self.event).status


def test_a_call_that_timed_out_keeps_its_key_so_the_vendor_replays_it(store: Store, stripe: RunningStripe) -> None:
    """The probe cannot see the create yet (Stripe's search lags), so it is sent again, under the
    same key: Stripe answers with the customer it made, not another."""
    timed_out = TimedOut(store, stripe)

    assert timed_out.retried() == "delivered"

    made = made_in(stripe, timed_out.customer.id)
    assert len(made) == 1 and store.xref_get(timed_out.customer.id, "stripe") == made[0]
    first, again = timed_out.faulted.sent
    assert again == first == timed_out.faulted.probed[0]  # probed, then sent, under the key that may have landed


def test_a_definite_failure_after_a_call_in_doubt_still_probes_under_the_new_key(
        store: Store, stripe: RunningStripe) -> None:
    """After the timeout, a 429 on the next call (before Stripe ran it: it says nothing of the
    first): the next key is new, but the call that may have landed is looked for first, and found."""
    timed_out = TimedOut(store, stripe)
    timed_out.faulted.fault = {"mode": "http_429"}
    with pytest.raises(ConnectorError) as limited:
        timed_out.retried()
    assert limited.value.category is Category.RATE_LIMITED
    timed_out.connector.probe_lagging = False  # the search shows it to the probe, after the plan's lookup

    assert timed_out.retried() == "delivered"

    sent = timed_out.faulted.sent
    assert len(made_in(stripe, timed_out.customer.id)) == 1 and len(sent) == 2  # found, not sent a third time
    assert timed_out.faulted.probed[-1] == wire_key(sent[0], 1)


def test_after_a_worker_died_mid_call_the_probe_and_the_call_use_the_key_it_sent(
        store: Store, stripe: RunningStripe) -> None:
    """A 500, then a retry whose call reaches Stripe under the next key and whose worker dies before
    the answer: the attempt after it probes under that key and, finding nothing (the search lags),
    sends it again under that key, which Stripe answers with the customer it made."""
    faulted = Faulted(f"{stripe.url}/_sandbox/faults")
    connector = FaultedStripe(faulted)
    connector.lagging = True
    hub = Hub(store, connector, stripe.context())
    event, customer = customer_event()
    faulted.fault = {"mode": "http_500"}
    with pytest.raises(ConnectorError):
        hub.worker().deliver("stripe", event)
    connector.dies = True
    with pytest.raises(WorkerDied):
        hub.worker().deliver("stripe", event, unit=Unit())  # its unit dies with it

    assert hub.worker().deliver("stripe", event).status == "delivered"

    first, landed, again = faulted.sent
    assert landed == again == wire_key(first, 1) and faulted.probed == [landed]
    assert len(made_in(stripe, customer.id)) == 1


def test_the_key_of_a_delivery_that_never_failed_is_the_effects_own() -> None:
    """Generation 0 sends the stable key, as an earlier release did; later ones stay short."""
    customer = Customer(id="customer/salesforce/001K", name="Keys Ltd")
    envelope = new_envelope(type="customer.upserted", source="salesforce", source_event_id="e1", data=customer,
                            occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    op = Operation(name="create", entity_type="customer", canonical_id=customer.id, payload={})
    key = idempotency_key("zuora", envelope, op)
    assert wire_key(key, 0) == key
    assert len({wire_key(key, generation) for generation in range(1000)}) == 1000
    assert len(wire_key(key, 10**6)) <= 64
