"""Delivery into Stripe: customers created, updated and linked over real HTTP against the sandbox,
Stripe's Idempotency-Key, and probing after a timeout; then the connector contract suite."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from crossledger.canonical.entities import Address, Customer
from crossledger.canonical.events import Envelope, new_envelope
from crossledger.core.hub.pipeline import idempotency_key
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.stripe.connector import StripeConnector
from crossledger.plugins.types import Context, Operation, Outcome
from crossledger.testing import ConnectorContract
from crossledger.testing.refs import MemoryRefs

from tests.kits.stripe import RunningStripe, StripeKit

connector = StripeConnector()
SUBJECT = "customer/salesforce/001A"
AT = datetime(2026, 5, 1, tzinfo=UTC)


class TestStripeContract(ConnectorContract):
    kit = StripeKit()


@pytest.fixture(scope="module")
def api() -> Iterator[RunningStripe]:
    running = RunningStripe()
    yield running
    running.close()


@pytest.fixture(scope="module")
def ctx(api: RunningStripe) -> Context:
    return api.context(timeout_s=0.5)


@pytest.fixture
def faults(api: RunningStripe) -> Iterator[None]:
    yield
    api.http.delete("/_sandbox/faults").raise_for_status()


@pytest.fixture
def refs() -> MemoryRefs:
    """The hub's cross-references for a customer first seen in Salesforce, also known to NetSuite."""
    refs = MemoryRefs()
    refs.put(SUBJECT, "customer", "salesforce", "001A")
    refs.put(SUBJECT, "customer", "netsuite", "77")
    return refs


def event(type_: str, customer: Customer, n: int = 1) -> Envelope:
    return new_envelope(type=type_, source="salesforce", source_event_id=f"{type_}-{n}", data=customer,
                        occurred_at=AT)


def acme(subject: str = SUBJECT, **fields: object) -> Customer:
    values: dict[str, object] = {"name": "Acme Ltd", "email": "ap@acme.test",
                                 "address": Address(line1="1 Main St", city="Springfield", country="US"),
                                 "website": "acme.test", **fields}
    return Customer(id=subject, **values)  # type: ignore[arg-type]


def deliver(ctx: Context, refs: MemoryRefs, envelope: Envelope) -> list[Outcome]:
    """Plan and execute as the pipeline does: the hub's key per operation, the cross-reference after."""
    outcomes = []
    for op in connector.plan(ctx, envelope, refs):
        outcome = connector.execute(ctx, op, idempotency_key("stripe", envelope, op))
        refs.put(op.canonical_id, op.entity_type, "stripe", outcome.external_id)
        outcomes.append(outcome)
    return outcomes


def answer_lost(api: RunningStripe, ctx: Context, op: Operation, key: str) -> ConnectorError:
    """Execute ``op`` while Stripe commits the write but holds its answer past the connector's
    timeout; what the connector raised."""
    api.http.post("/_sandbox/faults", json={"mode": "timeout_after_commit", "latency_ms": 1500, "count": 1})
    with pytest.raises(ConnectorError) as held:
        connector.execute(ctx, op, key)
    return held.value


def with_hub_id(api: RunningStripe, canonical_id: str) -> list[str]:
    """The Stripe customers carrying ``canonical_id`` as their ``crossledger_id``."""
    query = f"metadata['crossledger_id']:'{canonical_id}'"
    return [customer.id for customer in api.client.v1.customers.search({"query": query}).auto_paging_iter()]


def test_a_new_customer_carries_the_hubs_id_and_the_known_links(api: RunningStripe, ctx: Context,
                                                                refs: MemoryRefs) -> None:
    [op] = connector.plan(ctx, event("customer.upserted", acme()), refs)
    assert (op.name, op.entity_type, op.canonical_id) == ("customer.create", "customer", SUBJECT)
    assert op.payload == {"method": "POST", "path": "/v1/customers", "body": {
        "name": "Acme Ltd", "email": "ap@acme.test", "address[line1]": "1 Main St", "address[city]": "Springfield",
        "address[country]": "US", "metadata[salesforce_id]": "001A", "metadata[netsuite_id]": "77",
        "metadata[crossledger_id]": SUBJECT}}  # no phone, no website: unset, or nowhere to put it in Stripe
    outcome = connector.execute(ctx, op, "cl-create-acme")
    assert outcome.created and outcome.record is not None and outcome.record["id"] == outcome.external_id
    made = api.client.v1.customers.retrieve(outcome.external_id)
    assert (made.name, made.email, made.phone, made.address.line1, made.address.state) == (
        "Acme Ltd", "ap@acme.test", None, "1 Main St", None)
    assert made.metadata.to_dict() == {"crossledger_id": SUBJECT, "salesforce_id": "001A", "netsuite_id": "77"}
    [echo] = api.events("customer.created", outcome.external_id)
    [change] = connector.to_canonical(ctx, echo, MemoryRefs())  # the hub has not stored the link yet
    assert change.entity.id == SUBJECT


def test_an_update_writes_the_profile_and_leaves_unset_fields_alone(api: RunningStripe, ctx: Context,
                                                                    refs: MemoryRefs) -> None:
    subject = "customer/salesforce/001B"
    [created] = deliver(ctx, refs, event("customer.upserted", acme(subject)))
    [op] = connector.plan(ctx, event("customer.upserted", acme(subject, name="Acme Group", email=None,
                                                               phone="+1 555 0100"), 2), refs)
    assert (op.name, op.payload["path"]) == ("customer.update", f"/v1/customers/{created.external_id}")
    assert "metadata[crossledger_id]" not in op.payload["body"] and "email" not in op.payload["body"]
    updated = connector.execute(ctx, op, "cl-update-acme")
    assert (updated.external_id, updated.created) == (created.external_id, False)
    now = api.client.v1.customers.retrieve(created.external_id)
    assert (now.name, now.email, now.phone) == ("Acme Group", "ap@acme.test", "+1 555 0100")
    assert now.metadata["crossledger_id"] == subject


def test_linked_writes_only_the_cross_references(api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    subject = "customer/salesforce/001C"
    bare = MemoryRefs()
    assert connector.plan(ctx, event("customer.linked", acme(subject)), bare) == []  # nothing known: nothing to do
    bare.put(subject, "customer", "zendesk", "z9")
    with pytest.raises(MissingDependency) as missing:
        connector.plan(ctx, event("customer.linked", acme(subject)), bare)
    assert (missing.value.entity_type, missing.value.canonical_id) == ("customer", subject)

    refs.put(subject, "customer", "salesforce", "001C")
    [created] = deliver(ctx, refs, event("customer.upserted", acme(subject)))
    refs.put(subject, "customer", "zendesk", "z9")
    [op] = connector.plan(ctx, event("customer.linked", acme(subject, name="Not Written")), refs)
    assert (op.name, op.payload["body"]) == ("customer.link", {
        "metadata[salesforce_id]": "001C", "metadata[zendesk_id]": "z9"})
    connector.execute(ctx, op, "cl-link-acme")
    linked = api.client.v1.customers.retrieve(created.external_id)
    assert (linked.name, linked.metadata["zendesk_id"], linked.metadata["crossledger_id"]) == (
        "Acme Ltd", "z9", subject)


def test_one_key_is_one_customer_and_another_payload_under_it_is_a_data_error(api: RunningStripe, ctx: Context,
                                                                              refs: MemoryRefs) -> None:
    subject = "customer/salesforce/001D"
    [op] = connector.plan(ctx, event("customer.upserted", acme(subject)), refs)
    first = connector.execute(ctx, op, "cl-once")
    replay = api.http.post("/v1/customers", data=op.payload["body"], headers={"Idempotency-Key": "cl-once"})
    assert (replay.headers["idempotent-replayed"], replay.json()["id"]) == ("true", first.external_id)
    assert with_hub_id(api, subject) == [first.external_id]
    other = Operation(name="customer.update", entity_type="customer", canonical_id=subject,
                      payload={**op.payload, "path": f"/v1/customers/{first.external_id}", "body": {"name": "Other"}})
    with pytest.raises(ConnectorError) as reused:
        connector.execute(ctx, other, "cl-once")
    assert (reused.value.category, reused.value.status) == (Category.DATA, 400)
    assert "idempotency_error" in reused.value.message
    assert with_hub_id(api, subject) == [first.external_id]


def test_a_timeout_after_commit_is_probed_not_repeated(api: RunningStripe, ctx: Context, refs: MemoryRefs,
                                                       faults: None) -> None:
    subject = "customer/salesforce/001E"
    [op] = connector.plan(ctx, event("customer.upserted", acme(subject)), refs)
    assert connector.probe(ctx, op, "cl-held") is None  # nothing made yet
    assert answer_lost(api, ctx, op, "cl-held").category is Category.AMBIGUOUS
    found = connector.probe(ctx, op, "cl-held")
    assert found is not None and found.created
    assert with_hub_id(api, subject) == [found.external_id]
    assert connector.execute(ctx, op, "cl-held").external_id == found.external_id  # a resend replays
    assert with_hub_id(api, subject) == [found.external_id]


def test_a_create_whose_answer_was_lost_is_not_made_twice_by_the_next_event(
        api: RunningStripe, ctx: Context, refs: MemoryRefs, faults: None) -> None:
    """The hub's key is per event, and the lost answer left the hub without the Stripe id: the next
    event about the customer must find it by its crossledger_id and update it, not create another."""
    subject = "customer/salesforce/001G"
    first = event("customer.upserted", acme(subject))
    [lost] = connector.plan(ctx, first, refs)
    assert answer_lost(api, ctx, lost, idempotency_key("stripe", first, lost)).category is Category.AMBIGUOUS
    [made] = with_hub_id(api, subject)

    later = event("customer.upserted", acme(subject, name="Acme Group", phone="+1 555 0100"), 2)
    [outcome] = deliver(ctx, refs, later)
    assert (outcome.external_id, outcome.created) == (made, False)
    assert with_hub_id(api, subject) == [made]
    now = api.client.v1.customers.retrieve(made)
    assert (now.name, now.phone, now.metadata["crossledger_id"]) == ("Acme Group", "+1 555 0100", subject)

    linked_subject = "customer/salesforce/001H"
    linking = MemoryRefs()
    [lost] = connector.plan(ctx, event("customer.upserted", acme(linked_subject)), linking)
    answer_lost(api, ctx, lost, "cl-lost-link")
    linking.put(linked_subject, "customer", "zendesk", "z7")
    [link] = connector.plan(ctx, event("customer.linked", acme(linked_subject)), linking)  # no dependency needed
    [made] = with_hub_id(api, linked_subject)
    assert (link.name, link.payload["path"]) == ("customer.link", f"/v1/customers/{made}")


def test_an_update_is_probed_by_reading_it_back(api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    subject = "customer/salesforce/001F"
    [created] = deliver(ctx, refs, event("customer.upserted", acme(subject)))
    [landed] = connector.plan(ctx, event("customer.upserted", acme(subject, phone="+44 20 7946 0000"), 2), refs)
    connector.execute(ctx, landed, "cl-landed")
    probed = connector.probe(ctx, landed, "cl-landed")
    assert probed is not None and (probed.external_id, probed.created) == (created.external_id, False)
    [lost] = connector.plan(ctx, event("customer.upserted", acme(subject, name="Never Sent"), 3), refs)
    assert connector.probe(ctx, lost, "cl-lost") is None
    api.client.v1.customers.delete(created.external_id)
    assert connector.probe(ctx, landed, "cl-landed") is None
    with pytest.raises(ConnectorError) as gone:
        connector.execute(ctx, lost, "cl-lost")
    assert (gone.value.category, gone.value.status) == (Category.DATA, 404)


def test_events_stripe_does_not_take_plan_nothing(ctx: Context, refs: MemoryRefs) -> None:
    assert connector.plan(ctx, event("customer.deleted", acme(status="deleted")), refs) == []
    # A suspension starts in Stripe: there is nothing to write back.
    assert connector.plan(ctx, event("customer.suspended", acme(status="suspended")), refs) == []


def test_a_deactivated_customer_is_marked_inactive_and_reinstating_clears_the_mark(
        api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    subject = "customer/salesforce/001J"
    assert connector.plan(ctx, event("customer.deactivated", acme(subject)), refs) == []  # never made: nothing to do
    with pytest.raises(MissingDependency) as missing:
        connector.plan(ctx, event("customer.reinstated", acme(subject)), refs)
    assert (missing.value.entity_type, missing.value.canonical_id) == ("customer", subject)
    [created] = deliver(ctx, refs, event("customer.upserted", acme(subject)))
    path = f"/v1/customers/{created.external_id}"

    [deactivate] = connector.plan(ctx, event("customer.deactivated", acme(subject, name="Not Written")), refs)
    assert (deactivate.name, deactivate.payload) == ("customer.deactivate", {
        "method": "POST", "path": path, "body": {"metadata[crossledger_status]": "inactive"}})
    [outcome] = deliver(ctx, refs, event("customer.deactivated", acme(subject)))
    assert (outcome.external_id, outcome.created) == (created.external_id, False)
    inactive = api.client.v1.customers.retrieve(created.external_id)
    assert (inactive.name, inactive.metadata.to_dict()) == ("Acme Ltd", {
        "crossledger_id": subject, "crossledger_status": "inactive"})

    [reinstate] = connector.plan(ctx, event("customer.reinstated", acme(subject)), refs)
    assert (reinstate.name, reinstate.payload["body"]) == ("customer.reinstate", {"metadata[crossledger_status]": ""})
    deliver(ctx, refs, event("customer.reinstated", acme(subject)))
    active = api.client.v1.customers.retrieve(created.external_id)
    assert "crossledger_status" not in active.metadata.to_dict()  # Stripe deletes a key set to ""
    assert active.metadata["crossledger_id"] == subject


def test_a_customer_the_hub_lost_the_id_of_is_still_deactivated(api: RunningStripe, ctx: Context,
                                                                faults: None) -> None:
    """A compensation after a create whose answer was lost: Stripe's search finds the customer."""
    subject = "customer/salesforce/001K"
    lost_refs = MemoryRefs()
    [lost] = connector.plan(ctx, event("customer.upserted", acme(subject)), lost_refs)
    answer_lost(api, ctx, lost, "cl-lost-before-deactivate")
    [made] = with_hub_id(api, subject)

    [op] = connector.plan(ctx, event("customer.deactivated", acme(subject)), lost_refs)

    assert (op.name, op.payload["path"]) == ("customer.deactivate", f"/v1/customers/{made}")


@pytest.mark.parametrize("event_type", ["customer.deactivated", "customer.reinstated"])
def test_a_status_mark_whose_answer_was_lost_is_probed(api: RunningStripe, ctx: Context, refs: MemoryRefs,
                                                       faults: None, event_type: str) -> None:
    subject = f"customer/salesforce/001L-{event_type}"
    [created] = deliver(ctx, refs, event("customer.upserted", acme(subject)))
    if event_type == "customer.reinstated":
        deliver(ctx, refs, event("customer.deactivated", acme(subject)))
    [op] = connector.plan(ctx, event(event_type, acme(subject)), refs)
    key = f"cl-{event_type}"
    assert connector.probe(ctx, op, key) is None  # not written yet

    held = answer_lost(api, ctx, op, key)
    found = connector.probe(ctx, op, key)

    assert held.category is Category.AMBIGUOUS
    assert found is not None and (found.external_id, found.created) == (created.external_id, False)
