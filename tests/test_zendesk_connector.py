"""The Zendesk connector: signatures, parsing and the canonical mapping on Zendesk's own payloads,
planning, and delivery, probing, paging and error classification over real HTTP against the sandbox
(one account for the module, like a shared Zendesk sandbox; each test uses its own records)."""

import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import msgspec
import pytest
from crossledger.canonical.entities import (
    Address,
    Contact,
    Customer,
    Entitlement,
    Entity,
    Subscription,
    SubscriptionItem,
    SupportCase,
)
from crossledger.canonical.events import Envelope, new_envelope
from crossledger.canonical.money import Money
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency, PayloadError, SignatureError
from crossledger.plugins.types import Change, Context, InboundEvent, Operation
from crossledger.plugins.zendesk.connector import (
    ORGANIZATION_NAME_LIMIT,
    TRIGGER_TEMPLATE,
    ZendeskConnector,
    ZendeskSettings,
    organization_name,
)
from crossledger.plugins.zendesk.sandbox.app import ZendeskSandbox
from crossledger.plugins.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature_headers
from crossledger.testing import ConnectorContract
from crossledger.testing.refs import MemoryRefs
from crossledger.testing.specs.answers import Recorder

from tests.kits.zendesk import (
    DOCUMENTED_VECTOR,
    OLD_ORDER_VECTOR,
    VECTOR_NOW,
    WebhookReceiver,
    ZendeskKit,
    checked,
    fixture,
)

ZENDESK = ZendeskConnector()
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
NOW = datetime(2026, 3, 1, tzinfo=UTC)
offline = httpx.Client()  # for contexts that never reach a server


class TestZendeskContract(ConnectorContract):
    kit = ZendeskKit()


def context(*, clock: float = VECTOR_NOW, base_url: str = "http://127.0.0.1:9", http: httpx.Client = offline,
            **settings: Any) -> Context:
    values = {"email": "hub@example.com", "api_token": "token", "webhook_secret": SECRET, **settings}
    return Context(settings=ZendeskSettings(base_url=base_url, **values), http=http, clock=lambda: clock)


def event(type_: str, data: Entity, source: str = "salesforce", n: str = "1") -> Envelope:
    return new_envelope(type=type_, source=source, source_event_id=f"{type_}-{data.id}-{n}", data=data,
                        occurred_at=NOW)


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


# -- signatures ---------------------------------------------------------------------------------------------


def test_documented_vector_verifies() -> None:
    ZENDESK.verify_webhook(context(), DOCUMENTED_VECTOR.headers, DOCUMENTED_VECTOR.body)


def test_the_retired_body_then_timestamp_order_does_not_verify() -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        ZENDESK.verify_webhook(context(webhook_secret=OLD_ORDER_VECTOR.secret), OLD_ORDER_VECTOR.headers,
                               OLD_ORDER_VECTOR.body)


BODY = DOCUMENTED_VECTOR.body
SIGNED = DOCUMENTED_VECTOR.headers


@pytest.mark.parametrize(
    ("headers", "body", "clock", "message"),
    [
        ({}, BODY, VECTOR_NOW, "missing X-Zendesk-Webhook-Signature"),
        ({SIGNATURE_HEADER: SIGNED[SIGNATURE_HEADER]}, BODY, VECTOR_NOW, "missing X-Zendesk-Webhook-Signature-Time"),
        (SIGNED, BODY.replace(b"hello", b"hellp"), VECTOR_NOW, "no signature matches"),
        ({**SIGNED, TIMESTAMP_HEADER: "2021-07-25T10:00:01Z"}, BODY, VECTOR_NOW, "no signature matches"),
        ({**SIGNED, SIGNATURE_HEADER: "not base64!"}, BODY, VECTOR_NOW, "not base64"),
        (SIGNED, BODY, VECTOR_NOW + 301, "timestamp outside tolerance"),
    ],
    ids=["no-headers", "no-timestamp", "tampered-body", "moved-timestamp", "garbage-signature", "stale"],
)
def test_bad_signatures_are_refused(headers: dict[str, str], body: bytes, clock: float, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        ZENDESK.verify_webhook(context(clock=clock), headers, body)


def test_an_unreadable_timestamp_that_was_signed_is_refused() -> None:
    headers = {SIGNATURE_HEADER: sign(SECRET, "soon", BODY), TIMESTAMP_HEADER: "soon"}
    with pytest.raises(SignatureError, match="not an ISO 8601 time"):
        ZENDESK.verify_webhook(context(), headers, BODY)


def test_age_limit_is_300_seconds_and_the_future_is_accepted() -> None:
    ZENDESK.verify_webhook(context(clock=VECTOR_NOW + 300), SIGNED, BODY)
    ZENDESK.verify_webhook(context(clock=VECTOR_NOW - 3600), SIGNED, BODY)


def test_headers_are_found_in_any_case() -> None:
    ZENDESK.verify_webhook(context(), {name.lower(): value for name, value in SIGNED.items()}, BODY)


def test_previous_secret_is_accepted_during_a_roll() -> None:
    headers = signature_headers("old-secret", VECTOR_NOW, BODY)
    ZENDESK.verify_webhook(context(webhook_secret="new-secret", previous_webhook_secret="old-secret"), headers, BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        ZENDESK.verify_webhook(context(webhook_secret="new-secret"), headers, BODY)


def test_the_ticket_webhooks_own_secret_is_accepted() -> None:
    headers = signature_headers("trigger-secret", VECTOR_NOW, BODY)
    ZENDESK.verify_webhook(context(ticket_webhook_secret="trigger-secret"), headers, BODY)


def test_without_any_secret_every_webhook_is_refused() -> None:
    with pytest.raises(SignatureError, match="no webhook secret configured"):
        ZENDESK.verify_webhook(context(webhook_secret=None), signature_headers("", VECTOR_NOW, BODY), BODY)


# -- parsing and the canonical mapping, on Zendesk's payloads ---------------------------------------------


def parsed(payload: dict[str, Any]) -> InboundEvent:
    return only(ZENDESK.parse_webhook(context(), {}, json.dumps(payload).encode()))


def canonical(payload: dict[str, Any], refs: MemoryRefs | None = None) -> list[Change]:
    return ZENDESK.to_canonical(context(), parsed(payload), refs or MemoryRefs())


def test_organization_created_is_a_customer_speaking_for_its_profile() -> None:
    payload = fixture("webhook_event_organization_created.json")
    inbound = parsed(payload)
    assert (inbound.source_event_id, inbound.type) == ("a540ab78-88f2-49e1-93a7-16152a6f782c", "organization.created")
    assert inbound.occurred_at == datetime(2099, 7, 7, 3, 44, 13, tzinfo=UTC)
    change = only(canonical(payload))
    assert change.type == "customer.upserted" and change.groups == ("profile",)
    assert change.entity == Customer(id="customer/zendesk/6607619104125", name="Acme")


def test_an_organization_the_hub_made_is_an_echo_and_yields_nothing() -> None:
    """Its event holds only the name, and support owns nothing of the customer's profile."""
    payload = fixture("webhook_event_organization_created.json")
    payload["detail"]["external_id"] = "customer.salesforce.001A000001"
    assert canonical(payload) == []
    payload["type"] = payload["type"].replace("created", "deleted")
    assert only(canonical(payload)).entity.id == "customer/salesforce/001A000001"


def test_an_organization_with_someone_elses_external_id_gets_a_cross_reference() -> None:
    payload = fixture("webhook_event_organization_created.json")
    payload["detail"]["external_id"] = "SF-001"
    refs = MemoryRefs()
    assert only(canonical(payload, refs)).entity.id == "customer/zendesk/6607619104125"
    assert refs.external_id("customer/zendesk/6607619104125", "zendesk") == "6607619104125"


def test_a_deleted_organization_is_a_deleted_customer() -> None:
    payload = fixture("webhook_event_organization_created.json") | {"type": "zen:event-type:organization.deleted"}
    change = only(canonical(payload))
    assert (change.type, change.groups, change.entity.status) == ("customer.deleted", ("status",), "deleted")


def test_user_deactivated_is_a_deleted_contact() -> None:
    change = only(canonical(fixture("webhook_event_user_active_changed.json")))
    assert change.type == "contact.deleted" and change.groups == ("status",)
    assert change.entity.id == "contact/zendesk/6596848315901" and change.entity.status == "deleted"


def user_event(type_: str, event: dict[str, Any] | None = None, **detail: Any) -> dict[str, Any]:
    payload = fixture("webhook_event_user_active_changed.json")
    payload["type"] = f"zen:event-type:{type_}"
    payload["detail"] |= detail
    payload["event"] = event or {}
    return payload


def test_user_created_is_a_contact_of_its_organization() -> None:
    refs = MemoryRefs()
    refs.put("customer/salesforce/001A", "customer", "zendesk", "6607619104125")
    change = only(canonical(user_event("user.created", organization_id="6607619104125"), refs))
    assert change.type == "contact.upserted" and change.groups is None
    # Zendesk's user events carry no name: the e-mail stands in until a name change says more.
    assert change.entity == Contact(id="contact/zendesk/6596848315901", customer_id="customer/salesforce/001A",
                                    last_name="user@example.com", email="user@example.com")


def test_a_name_change_carries_the_new_name() -> None:
    contact = only(canonical(user_event("user.name_changed", {"current": "Ada King Lovelace", "previous": "A"})))
    assert (contact.entity.first_name, contact.entity.last_name) == ("Ada King", "Lovelace")


def test_a_user_the_hub_made_is_an_echo_and_agents_are_ignored() -> None:
    assert canonical(user_event("user.created", external_id="contact.salesforce.003X")) == []
    assert only(canonical(user_event("user.deleted", external_id="contact.salesforce.003X"))).entity.id == \
        "contact/salesforce/003X"
    assert canonical(user_event("user.created", role="agent")) == []


def test_ticket_event_fixture_is_an_opened_case_speaking_for_its_status() -> None:
    payload = fixture("webhook_ticket_created_delivery_thirdparty.json")["body"]
    inbound = parsed(payload)
    assert (inbound.source_event_id, inbound.type) == ("01HNXXXX-CTEXAMPLE", "ticket.created")
    change = only(canonical(payload))
    # The detail has no subject, so the change must not overwrite the case's subject.
    assert change.type == "case.opened" and change.groups == ("status",)
    assert change.entity == SupportCase(id="supportcase/zendesk/35436", subject="Zendesk ticket 35436",
                                        status="open", opened_at=datetime(2024, 4, 17, 17, 18, 10, tzinfo=UTC))


def trigger(event_type: str | None = "ticket.created", **ticket: str) -> dict[str, Any]:
    """A trigger webhook body as Zendesk renders TRIGGER_TEMPLATE: every value a string."""
    body: dict[str, Any] = {"ticket": {
        "id": "77", "external_id": "", "subject": "Printer on fire", "description": "Smoke everywhere",
        "status": "Open", "priority": "High", "organization_id": "5001", "requester_id": "6001",
        "created_at": "2026-03-01T10:00:00Z", "updated_at": "2026-03-01T10:05:00Z", **ticket}}
    if event_type:
        body["event"] = event_type
    return body


def test_the_trigger_template_names_every_field_the_mapping_reads() -> None:
    assert set(TRIGGER_TEMPLATE["ticket"]) == set(trigger()["ticket"])


def test_a_trigger_webhook_is_a_case_with_a_stable_id_from_ticket_and_update_time() -> None:
    inbound = parsed(trigger())
    assert inbound.source_event_id == "ticket:77:2026-03-01T10:05:00+00:00" == parsed(trigger()).source_event_id
    assert parsed(trigger(updated_at="2026-03-01T10:06:00Z")).source_event_id != inbound.source_event_id
    refs = MemoryRefs()
    refs.put("customer/stripe/cus_1", "customer", "zendesk", "5001")
    change = only(ZENDESK.to_canonical(context(), inbound, refs))
    assert change.type == "case.opened" and change.groups is None
    assert change.entity == SupportCase(
        id="supportcase/zendesk/77", customer_id="customer/stripe/cus_1", contact_id="contact/zendesk/6001",
        subject="Printer on fire", description="Smoke everywhere", status="open", priority="high",
        opened_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC))


def test_trigger_updates_statuses_and_blank_placeholders() -> None:
    change = only(canonical(trigger("ticket.updated", status="On-hold", priority="-", organization_id="",
                                    external_id="supportcase.salesforce.500X")))
    assert change.type == "case.updated"
    assert (change.entity.id, change.entity.status, change.entity.priority, change.entity.customer_id) == \
        ("supportcase/salesforce/500X", "hold", None, None)


def test_a_trigger_without_event_counts_as_created_when_never_updated() -> None:
    assert parsed(trigger(None)).type == "ticket.updated"
    assert parsed(trigger(None, updated_at="2026-03-01T10:00:00Z")).type == "ticket.created"


def test_an_unknown_ticket_status_is_a_data_error() -> None:
    with pytest.raises(ConnectorError) as raised:
        canonical(trigger(status="Escalated"))
    assert raised.value.category is Category.DATA


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", json.dumps(fixture("eventbridge_ticket_agent_assignment_changed.json")).encode(),
    json.dumps({"type": "zen:event-type:organization.created", "id": "x"}).encode(),
    json.dumps({"ticket": {"id": "1"}}).encode(),
], ids=["not-json", "array", "eventbridge", "event-without-detail", "trigger-without-updated-at"])
def test_bodies_zendesk_does_not_send_are_payload_errors(body: bytes) -> None:
    with pytest.raises(PayloadError):
        ZENDESK.parse_webhook(context(), {}, body)


def test_a_malformed_detail_is_a_data_error() -> None:
    payload = fixture("webhook_event_organization_created.json")
    del payload["detail"]["name"]
    with pytest.raises(ConnectorError) as raised:
        canonical(payload)
    assert raised.value.category is Category.DATA


# -- planning -------------------------------------------------------------------------------------------------


def subscription(key: str, tier: str | None = "pro",
                 status: Literal["active", "past_due", "canceled"] = "active") -> Subscription:
    return Subscription(id=f"subscription/stripe/sub_{key}", customer_id=f"customer/salesforce/{key}",
                        currency="USD", status=status, plan_tier=tier,
                        items=[SubscriptionItem(plan="pro-monthly", unit_amount=Money(amount=9900, currency="USD"))])


def known(ids: dict[str, str], system: str = "zendesk") -> MemoryRefs:
    """Refs knowing ``system``'s id for each canonical id in ``ids``."""
    refs = MemoryRefs()
    for canonical_id, external_id in ids.items():
        refs.put(canonical_id, canonical_id.split("/")[0], system, external_id)
    return refs


def test_customer_upsert_is_create_or_update_by_external_key_leaving_unknowns_out() -> None:
    customer = Customer(id="customer/salesforce/001A", name="Acme", status="suspended",
                        address=Address(line1="1 Main St", city="Springfield", country="US"))
    op = only(ZENDESK.plan(context(), event("customer.upserted", customer), MemoryRefs()))
    assert op.payload["method"] == "POST" and op.payload["path"] == "/organizations/create_or_update.json"
    assert op.payload["body"] == {"organization": {
        "external_id": "customer.salesforce.001A", "name": "Acme (001A)", "details": "1 Main St, Springfield, US",
        "organization_fields": {"account_status": "suspended"}}}
    assert "idempotent" not in op.payload  # create_or_update has no Idempotency-Key: the external id is the key


def test_a_customer_zendesk_already_has_is_matched_by_its_id() -> None:
    refs = known({"customer/zendesk/123": "123"})
    op = only(ZENDESK.plan(context(), event("customer.upserted", Customer(id="customer/zendesk/123", name="A")), refs))
    assert op.payload["body"]["organization"]["id"] == 123
    assert op.payload["read"] == {"path": "/organizations/123.json", "params": {}}


def test_customer_deleted_marks_the_organization_and_never_deletes_it() -> None:
    customer = Customer(id="customer/salesforce/001A", name="Acme", status="deleted")
    assert ZENDESK.plan(context(), event("customer.deleted", customer), MemoryRefs()) == []
    op = only(ZENDESK.plan(context(), event("customer.deleted", customer), known({"customer/salesforce/001A": "9"})))
    assert (op.payload["method"], op.payload["path"]) == ("PUT", "/organizations/9.json")
    assert op.payload["body"] == {"organization": {"organization_fields": {"account_status": "deleted"}}}


def test_linked_writes_only_the_other_systems_ids() -> None:
    customer = Customer(id="customer/salesforce/001A", name="Acme", email="a@example.com")
    linked = event("customer.linked", customer, source="hub")
    assert ZENDESK.plan(context(), linked, known({"customer/salesforce/001A": "9"})) == []
    refs = known({"customer/salesforce/001A": "9"})
    refs.put("customer/salesforce/001A", "customer", "stripe", "cus_1")
    refs.put("customer/salesforce/001A", "customer", "salesforce", "001A")
    op = only(ZENDESK.plan(context(), linked, refs))
    assert op.payload["body"] == {"organization": {"organization_fields": {
        "salesforce_id": "001A", "stripe_customer_id": "cus_1"}}}
    with pytest.raises(MissingDependency) as missing:  # Stripe has it, Zendesk not yet
        ZENDESK.plan(context(), linked, known({customer.id: "cus_1"}, system="stripe"))
    assert (missing.value.entity_type, missing.value.canonical_id) == ("customer", customer.id)


@pytest.mark.parametrize(("type_", "sub", "fields"), [
    ("subscription.created", subscription("A"), {"plan_tier": "pro", "sla": "4h", "subscription_status": "active"}),
    ("subscription.amended", subscription("A", "enterprise", "past_due"),
     {"plan_tier": "enterprise", "sla": "1h", "subscription_status": "past_due"}),
    ("subscription.cancelled", subscription("A", status="active"),
     {"plan_tier": "pro", "sla": None, "subscription_status": "canceled"}),
    ("subscription.renewed", subscription("A", "custom"),
     {"plan_tier": "custom", "sla": None, "subscription_status": "active"}),
    ("subscription.renewed", subscription("A", None), {"subscription_status": "active"}),
], ids=["created", "amended", "cancelled", "unmapped-tier", "no-tier"])
def test_subscriptions_become_the_organizations_entitlement(type_: str, sub: Subscription,
                                                            fields: dict[str, Any]) -> None:
    op = only(ZENDESK.plan(context(), event(type_, sub, source="stripe"), known({"customer/salesforce/A": "9"})))
    assert (op.name, op.entity_type, op.canonical_id) == ("organization.entitlement", "customer", sub.customer_id)
    assert op.payload["body"] == {"organization": {"organization_fields": fields}}


def test_entitlement_needs_the_organization_and_honours_a_given_sla() -> None:
    entitlement = Entitlement(id="entitlement/stripe/sub_A", customer_id="customer/salesforce/A", plan_tier="pro",
                              sla="2h", status="suspended")
    with pytest.raises(MissingDependency):
        ZENDESK.plan(context(), event("entitlement.changed", entitlement, source="stripe"), MemoryRefs())
    op = only(ZENDESK.plan(context(), event("entitlement.changed", entitlement, source="stripe"),
                           known({"customer/salesforce/A": "9"})))
    assert op.payload["body"]["organization"]["organization_fields"] == {
        "plan_tier": "pro", "sla": "2h", "subscription_status": "suspended"}


def test_sla_by_tier_is_a_setting() -> None:
    ctx = context(sla_by_tier={"pro": "30m"})
    op = only(ZENDESK.plan(ctx, event("subscription.created", subscription("A"), source="stripe"),
                           known({"customer/salesforce/A": "9"})))
    assert op.payload["body"]["organization"]["organization_fields"]["sla"] == "30m"


def test_contact_upsert_needs_its_organization_and_sends_no_role() -> None:
    contact = Contact(id="contact/salesforce/003A", customer_id="customer/salesforce/001A", first_name="Ada",
                      last_name="Lovelace", email="ada@example.com")
    with pytest.raises(MissingDependency):
        ZENDESK.plan(context(), event("contact.upserted", contact), MemoryRefs())
    op = only(ZENDESK.plan(context(), event("contact.upserted", contact), known({"customer/salesforce/001A": "9"})))
    assert op.payload["body"] == {"user": {"external_id": "contact.salesforce.003A", "name": "Ada Lovelace",
                                           "email": "ada@example.com", "organization_id": 9}}


def case(key: str, **fields: Any) -> SupportCase:
    return SupportCase(id=f"supportcase/salesforce/{key}", customer_id="customer/salesforce/001A",
                       contact_id="contact/salesforce/003A", subject=f"Case {key}", description="It broke",
                       priority="high", **fields)


def test_case_opened_is_a_ticket_created_under_the_hubs_idempotency_key() -> None:
    with pytest.raises(MissingDependency) as missing:
        ZENDESK.plan(context(), event("case.opened", case("500A")), known({"customer/salesforce/001A": "9"}))
    assert missing.value.entity_type == "contact"
    refs = known({"customer/salesforce/001A": "9", "contact/salesforce/003A": "42"})
    op = only(ZENDESK.plan(context(), event("case.opened", case("500A")), refs))
    assert op.payload["idempotent"] is True and op.payload["path"] == "/tickets.json"
    assert op.payload["body"] == {"ticket": {"subject": "Case 500A", "priority": "high", "external_id":
                                             "supportcase.salesforce.500A", "organization_id": 9, "requester_id": 42,
                                             "comment": {"body": "It broke", "public": False}}}


def test_case_updated_updates_a_known_ticket() -> None:
    refs = known({"supportcase/salesforce/500A": "77"})
    op = only(ZENDESK.plan(context(), event("case.updated", case("500A", status="pending")), refs))
    assert (op.payload["method"], op.payload["path"]) == ("PUT", "/tickets/77.json")
    assert op.payload["body"] == {"ticket": {"subject": "Case 500A", "status": "pending", "priority": "high"}}


# -- against the sandbox -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> ZendeskSandbox:
    return ZendeskSandbox()


@pytest.fixture(scope="module")
def served_app(sandbox: ZendeskSandbox) -> Recorder:
    """The sandbox, every answer of which is checked against Zendesk's published description."""
    return checked(sandbox.app)


@pytest.fixture
def live(server: ServerThread, sandbox: ZendeskSandbox, as_the_vendor_answers: None) -> Iterator[Context]:
    with httpx.Client() as http:
        settings = ZendeskSettings(**sandbox.connector_settings(server.url), timeout_s=1.0)
        yield Context(settings=settings, http=http, clock=time.time)
    httpx.delete(f"{server.url}/_sandbox/faults")


class Hub:
    """Delivery as the pipeline does it: plan, execute with a key, remember the id."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.refs = MemoryRefs()

    def deliver(self, envelope: Envelope, key: str | None = None) -> str:
        op = only(ZENDESK.plan(self.ctx, envelope, self.refs))
        outcome = ZENDESK.execute(self.ctx, op, key or f"key-{envelope.id}")
        self.refs.put(op.canonical_id, op.entity_type, "zendesk", outcome.external_id)
        return outcome.external_id


def organizations(sandbox: ZendeskSandbox, external_id: str) -> list[dict[str, Any]]:
    return [org for org in sandbox.state()["organizations"] if org["external_id"] == external_id]


def tickets(sandbox: ZendeskSandbox, external_id: str) -> list[dict[str, Any]]:
    return [ticket for ticket in sandbox.state()["tickets"] if ticket["external_id"] == external_id]


def test_create_or_update_twice_is_one_organization(live: Context, sandbox: ZendeskSandbox) -> None:
    op = only(ZENDESK.plan(live, event("customer.upserted", Customer(id="customer/salesforce/C1", name="C1")),
                           MemoryRefs()))
    first, second = ZENDESK.execute(live, op, "k"), ZENDESK.execute(live, op, "k")
    assert (first.created, second.created, first.external_id) == (True, False, second.external_id)
    assert len(organizations(sandbox, "customer.salesforce.C1")) == 1


def test_an_update_lands_on_the_same_organization(live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    first = hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/C2", name="C2")))
    again = hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/C2", name="C2 Renamed"), n="2"))
    [org] = organizations(sandbox, "customer.salesforce.C2")
    assert first == again == str(org["id"]) and org["name"] == "C2 Renamed (C2)"


def test_linked_ids_land_in_organization_fields(live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    customer = Customer(id="customer/salesforce/C3", name="C3")
    hub.deliver(event("customer.upserted", customer))
    hub.refs.put(customer.id, "customer", "netsuite", "1234")
    hub.refs.put(customer.id, "customer", "salesforce", "C3")
    hub.deliver(event("customer.linked", customer, source="hub"))
    [org] = organizations(sandbox, "customer.salesforce.C3")
    assert org["organization_fields"] == {"account_status": "active", "salesforce_id": "C3", "netsuite_id": "1234"}
    assert org["name"] == "C3 (C3)"


def test_a_subscription_puts_plan_tier_and_sla_on_the_organization(live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/C4", name="C4")))
    hub.deliver(event("subscription.created", subscription("C4", "enterprise"), source="stripe"))
    [org] = organizations(sandbox, "customer.salesforce.C4")
    assert org["organization_fields"] == {"account_status": "active", "plan_tier": "enterprise", "sla": "1h",
                                          "subscription_status": "active"}
    hub.deliver(event("subscription.cancelled", subscription("C4", "enterprise", "canceled"), source="stripe"))
    [org] = organizations(sandbox, "customer.salesforce.C4")
    assert org["organization_fields"]["subscription_status"] == "canceled"
    assert org["organization_fields"]["sla"] is None


def test_a_contact_becomes_a_user_of_its_organization(live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    org = hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/C5", name="C5")))
    contact = Contact(id="contact/salesforce/P5", customer_id="customer/salesforce/C5", first_name="Grace",
                      last_name="Hopper", email="grace@example.com")
    user_id = hub.deliver(event("contact.upserted", contact))
    [user] = [u for u in sandbox.state()["users"] if str(u["id"]) == user_id]
    assert (user["name"], user["organization_id"], user["role"]) == ("Grace Hopper", int(org), "end-user")


def case_op(hub: Hub, key: str) -> Operation:
    hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/001A", name="Case Org")))
    hub.deliver(event("contact.upserted", Contact(id="contact/salesforce/003A", customer_id="customer/salesforce/001A",
                                                  last_name="Requester", email="req@example.com")))
    return only(ZENDESK.plan(hub.ctx, event("case.opened", case(key)), hub.refs))


def test_ticket_creation_is_idempotent_under_its_key(live: Context, sandbox: ZendeskSandbox) -> None:
    op = case_op(Hub(live), "T1")
    first, again = ZENDESK.execute(live, op, "case-key-1"), ZENDESK.execute(live, op, "case-key-1")
    assert first.external_id == again.external_id
    assert len(tickets(sandbox, "supportcase.salesforce.T1")) == 1
    other = Operation(name=op.name, entity_type=op.entity_type, canonical_id=op.canonical_id,
                      payload=copy.deepcopy(op.payload))
    other.payload["body"]["ticket"]["subject"] = "Another subject"
    with pytest.raises(ConnectorError) as raised:
        ZENDESK.execute(live, other, "case-key-1")
    assert raised.value.category is Category.DATA and "IdempotentRequestError" in raised.value.message
    assert len(tickets(sandbox, "supportcase.salesforce.T1")) == 1


def test_a_ticket_that_timed_out_after_commit_is_found_by_probe(live: Context, sandbox: ZendeskSandbox,
                                                                server: ServerThread) -> None:
    op = case_op(Hub(live), "T2")
    assert ZENDESK.probe(live, op, "case-key-2") is None  # nothing sent yet: nothing found
    httpx.post(f"{server.url}/_sandbox/faults", json={"mode": "timeout_after_commit", "latency_ms": 1500, "count": 1})
    with pytest.raises(ConnectorError) as raised:
        ZENDESK.execute(live, op, "case-key-2")
    assert raised.value.category is Category.AMBIGUOUS
    found = ZENDESK.probe(live, op, "case-key-2")
    [ticket] = tickets(sandbox, "supportcase.salesforce.T2")
    assert found is not None and found.external_id == str(ticket["id"])
    assert ZENDESK.execute(live, op, "case-key-2").external_id == found.external_id  # a resend is a replay
    assert len(tickets(sandbox, "supportcase.salesforce.T2")) == 1


def test_probe_finds_a_created_ticket_an_agent_changed_since(live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    create = case_op(hub, "T3")
    made = ZENDESK.execute(live, create, "case-key-3")
    hub.refs.put(create.canonical_id, "supportcase", "zendesk", made.external_id)
    worked_on = msgspec.structs.replace(case("T3"), status="pending", priority="low")
    hub.deliver(event("case.updated", worked_on, n="agent"))  # an agent works on the ticket
    found = ZENDESK.probe(live, create, "case-key-3")
    assert found is not None and (found.external_id, found.created) == (made.external_id, True)
    [ticket] = tickets(sandbox, "supportcase.salesforce.T3")
    assert (ticket["status"], ticket["priority"]) == ("pending", "low")  # no longer what the create sent


def test_probe_does_not_take_a_lost_update_for_done(live: Context) -> None:
    hub = Hub(live)
    hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/C6", name="C6")))
    renamed = only(ZENDESK.plan(live, event("customer.upserted", Customer(id="customer/salesforce/C6", name="C6b")),
                                hub.refs))
    assert ZENDESK.probe(live, renamed, "k") is None
    ZENDESK.execute(live, renamed, "k")
    assert ZENDESK.probe(live, renamed, "k") is not None


def test_records_follow_the_cursor_and_fetch_reads_one(live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    for n in range(5):
        hub.deliver(event("customer.upserted", Customer(id=f"customer/salesforce/P{n}", name=f"Paged {n}")))
    listed = list(ZENDESK.records(live, "customer", page_size=2))
    ids = [org["id"] for org in listed]
    assert len(ids) == len(set(ids)) == len(sandbox.state()["organizations"])
    assert [org["id"] for org in ZENDESK.records(live, "customer", page_size=500)] == ids  # clamped to 100
    assert ZENDESK.fetch(live, "customer", str(ids[0])) == listed[0]
    assert {user["role"] for user in ZENDESK.records(live, "contact")} >= {"admin"}


def test_a_page_since_a_moment_is_the_incremental_export_which_starts_a_minute_back_at_least() -> None:
    """``since`` reads Zendesk's time-based incremental export: organizations changed at or after
    it, oldest first, a page's ``end_time`` the next page's start; a ``since`` within the last
    minute (which the export refuses) starts a minute back. Every answer is checked against
    Zendesk's published description."""
    now = [1_800_000_000.0]
    sandbox = ZendeskSandbox(clock=lambda: now[0])
    served = checked(sandbox.app)
    server = ServerThread(served).start()
    try:
        with httpx.Client() as http:
            ctx = Context(settings=ZendeskSettings(**sandbox.connector_settings(server.url)), http=http,
                          clock=lambda: now[0])
            hub = Hub(ctx)
            for n in range(3):
                hub.deliver(event("customer.upserted", Customer(id=f"customer/salesforce/O{n}", name=f"Old {n}")))
            now[0] += 600
            since = datetime.fromtimestamp(now[0], UTC)
            for n in range(3):
                hub.deliver(event("customer.upserted", Customer(id=f"customer/salesforce/N{n}", name=f"New {n}")))
                now[0] += 1
            hub.deliver(event("customer.upserted", Customer(id="customer/salesforce/O1", name="Old 1, renamed")))
            now[0] += 3600

            def names(records: list[dict[str, Any]]) -> list[str]:
                return [record["name"].split(" (")[0] for record in records]

            first = ZENDESK.records_page(ctx, "customer", since=since, page_size=2)
            second = ZENDESK.records_page(ctx, "customer", since=since, page_size=2, cursor=first.next)
            third = ZENDESK.records_page(ctx, "customer", since=since, page_size=2, cursor=second.next)
            last = ZENDESK.records_page(ctx, "customer", since=since, page_size=2, cursor=third.next)
            recent = ZENDESK.records_page(ctx, "customer", since=datetime.fromtimestamp(now[0] - 10, UTC))
    finally:
        server.stop()
    assert names(first.records) == ["New 0", "New 1"] and first.next == str(int(since.timestamp()) + 1)
    assert names(second.records) == ["New 1", "New 2"]  # the boundary second read again, as Zendesk warns
    assert names(third.records) == ["New 2", "Old 1, renamed"]
    assert names(last.records) == ["Old 1, renamed"] and last.next is None  # not a full page: the end
    assert recent.records == []  # a minute back from now: nothing changed in the last hour
    assert served.take_departures() == []


def test_reading_what_zendesk_does_not_have_is_a_data_error(live: Context) -> None:
    with pytest.raises(ConnectorError) as raised:
        ZENDESK.fetch(live, "invoice", "1")
    assert raised.value.category is Category.DATA
    with pytest.raises(ConnectorError) as raised:
        ZENDESK.fetch(live, "customer", "999")
    assert (raised.value.category, raised.value.status) == (Category.DATA, 404)
    assert raised.value.message.endswith("HTTP 404 Not Found: RecordNotFound")


# -- failures -------------------------------------------------------------------------------------------------


def failure(ctx: Context, envelope: Envelope) -> ConnectorError:
    op = only(ZENDESK.plan(ctx, envelope, MemoryRefs()))
    with pytest.raises(ConnectorError) as raised:
        ZENDESK.execute(ctx, op, "k")
    return raised.value


def test_a_spent_budget_is_rate_limited_with_retry_after() -> None:
    sandbox = ZendeskSandbox(requests_per_minute=1)
    server = ServerThread(sandbox.app).start()
    try:
        with httpx.Client() as http:
            settings = ZendeskSettings(**sandbox.connector_settings(server.url))
            ctx = Context(settings=settings, http=http, clock=time.time)
            Hub(ctx).deliver(event("customer.upserted", Customer(id="customer/salesforce/R1", name="R1")))
            error = failure(ctx, event("customer.upserted", Customer(id="customer/salesforce/R2", name="R2")))
    finally:
        server.stop()
    assert (error.category, error.status) == (Category.RATE_LIMITED, 429)
    assert error.retry_after is not None and 55 <= error.retry_after <= 60


@pytest.mark.parametrize(("mode", "category"), [("http_429", Category.RATE_LIMITED), ("http_500", Category.TRANSIENT),
                                                ("down", Category.TARGET_DOWN)])
def test_injected_faults_are_classified(live: Context, server: ServerThread, mode: str, category: Category) -> None:
    httpx.post(f"{server.url}/_sandbox/faults", json={"mode": mode, "retry_after": 3, "count": 1})
    error = failure(live, event("customer.upserted", Customer(id=f"customer/salesforce/F-{mode}", name=mode)))
    assert error.category is category
    assert error.retry_after == (3 if mode == "http_429" else None)


def test_validation_errors_are_data_errors_with_zendesks_reason(live: Context) -> None:
    """An agent made an organization with the very name the hub gives a customer: Zendesk's error
    and the field's error code are in the message, its descriptions (which may quote values) are not."""
    agent = httpx.Client(base_url=live.settings.base_url, auth=(f"{live.settings.email}/token",
                                                                 live.settings.api_token.get_secret_value()))
    agent.post("/api/v2/organizations.json", json={"organization": {"name": "Same Name (D2)"}}).raise_for_status()
    error = failure(live, event("customer.upserted", Customer(id="customer/salesforce/D2", name="Same Name")))
    assert (error.category, error.status) == (Category.DATA, 422)
    assert error.message.endswith("HTTP 422 Unprocessable Entity: RecordInvalid (name: DuplicateValue)")
    assert "Same Name" not in error.message


def test_customers_with_the_same_name_are_distinct_organizations_kept_apart_by_updates(
        live: Context, sandbox: ZendeskSandbox) -> None:
    hub = Hub(live)
    first = hub.deliver(event("customer.upserted", Customer(id="customer/stripe/cus_E1", name="Twin Ltd")))
    second = hub.deliver(event("customer.upserted", Customer(id="customer/stripe/cus_E2", name="Twin Ltd")))
    again = hub.deliver(event("customer.upserted", Customer(id="customer/stripe/cus_E2", name="Twin Ltd",
                                                            phone="+1 555 0100"), n="2"))
    assert first != second == again
    [one], [two] = organizations(sandbox, "customer.stripe.cus_E1"), organizations(sandbox, "customer.stripe.cus_E2")
    assert (one["name"], two["name"]) == ("Twin Ltd (cus_E1)", "Twin Ltd (cus_E2)")


def test_a_name_too_long_for_its_suffix_is_cut_short_and_stays_distinct() -> None:
    long_name = "Consolidated " * 30
    names = [organization_name(Customer(id=f"customer/stripe/cus_{n}", name=long_name)) for n in (1, 2)]
    assert [len(name) for name in names] == [ORGANIZATION_NAME_LIMIT] * 2
    assert names[0].endswith("… (cus_1)") and names[1].endswith("… (cus_2)")


def test_an_organization_that_came_from_zendesk_keeps_its_name() -> None:
    customer = Customer(id="customer/zendesk/4242", name="Agent Made")
    op = only(ZENDESK.plan(context(), event("customer.upserted", customer, source="zendesk"),
                           known({"customer/zendesk/4242": "4242"})))
    assert op.payload["body"]["organization"]["name"] == "Agent Made"


def test_bad_credentials_are_an_auth_error(sandbox: ZendeskSandbox, server: ServerThread) -> None:
    with httpx.Client() as http:
        ctx = Context(settings=ZendeskSettings(**{**sandbox.connector_settings(server.url), "api_token": "wrong"}),
                      http=http, clock=time.time)
        error = failure(ctx, event("customer.upserted", Customer(id="customer/salesforce/A1", name="A1")))
    assert (error.category, error.status) == (Category.AUTH, 401)


def test_a_concurrent_update_conflict_is_transient(live: Context, sandbox: ZendeskSandbox,
                                                   server: ServerThread) -> None:
    hub = Hub(live)
    ticket_id = ZENDESK.execute(live, case_op(hub, "T3"), "case-key-3").external_id
    answer = httpx.put(f"{server.url}/api/v2/tickets/{ticket_id}.json",
                       json={"ticket": {"status": "open", "safe_update": True,
                                        "updated_stamp": "2000-01-01T00:00:00Z"}},
                       auth=(f"{sandbox.email}/token", sandbox.api_token))
    with pytest.raises(httpx.HTTPStatusError) as raised:
        answer.raise_for_status()
    error = ZENDESK.classify(raised.value)
    assert (error.category, error.status) == (Category.TRANSIENT, 409) and "UpdateConflict" in error.message


def test_no_server_is_target_down() -> None:
    error = failure(context(base_url="http://127.0.0.1:9"),
                    event("customer.upserted", Customer(id="customer/salesforce/X", name="X")))
    assert error.category is Category.TARGET_DOWN


# -- the sandbox's webhooks, end to end -------------------------------------------------------------------------


def test_the_sandboxs_webhooks_arrive_signed_retried_and_map_back_to_the_hubs_records() -> None:
    receiver = WebhookReceiver(fail_first=2)
    sandbox = ZendeskSandbox()
    server = ServerThread(sandbox.app).start()
    try:
        sandbox.subscribe(receiver.url)
        with httpx.Client() as http:
            ctx = Context(settings=ZendeskSettings(**sandbox.connector_settings(server.url)), http=http,
                          clock=time.time)
            hub = Hub(ctx)
            op = case_op(hub, "W1")
            hub.refs.put(op.canonical_id, op.entity_type, "zendesk", ZENDESK.execute(ctx, op, "w").external_id)
            assert sandbox.wait_for_webhooks(20)
            delivered = receiver.delivered()
            changes: dict[str, Change] = {}
            for headers, body in delivered:
                ZENDESK.verify_webhook(ctx, headers, body)
                for inbound in ZENDESK.parse_webhook(ctx, headers, body):
                    changes |= {change.type: change for change in ZENDESK.to_canonical(ctx, inbound, hub.refs)}
    finally:
        server.stop()
        receiver.stop()
    assert len(receiver.attempts) == len(delivered) + 2  # the two refusals were retried
    # The echoes of the hub's own organization and user are not news; the ticket names its customer
    # and requester by the cross-references the deliveries stored.
    assert {kind: change.entity.id for kind, change in changes.items()} == {
        "case.opened": "supportcase/salesforce/W1",
    }
    opened = changes["case.opened"].entity
    assert isinstance(opened, SupportCase)
    assert (opened.subject, opened.priority, opened.customer_id, opened.contact_id) == (
        "Case W1", "high", "customer/salesforce/001A", "contact/salesforce/003A")
