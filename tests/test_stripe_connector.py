"""The Stripe connector: signatures, parsing, the canonical mapping, fetch and error classification.

Mapping tests run on Stripe's own fixture objects (``tests/fixtures/payloads/stripe``) and on events
the sandbox produced; fetch and classify talk to the sandbox over real HTTP on loopback. The billing
mappings (subscriptions, credit notes, refunds) are in ``test_stripe_mapping.py``.
"""

import copy
import json
import socket
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe
from crossledger.canonical.entities import Customer, Invoice, Payment, canonical_id
from crossledger.canonical.invariants import violations
from crossledger.canonical.money import money
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, SignatureError
from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings
from crossledger.plugins.stripe.sandbox.app import StripeSandbox
from crossledger.plugins.stripe.signature import sign, signature_header
from crossledger.plugins.types import Change, Context, InboundEvent

from tests.kits.stripe import VECTOR_BODY, VECTOR_SECRET, VECTOR_T, VECTOR_V1, fixture

SECRET = VECTOR_SECRET

connector = StripeConnector()
offline = httpx.Client()  # for contexts that never reach a server (building a client costs ~40 ms)


class Refs:
    """The hub's cross-references, reduced to what mapping needs: every id is new."""

    def external_id(self, canonical_id: str, system: str) -> str | None:
        return None

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        return canonical_id(entity_type, system, external_id)

    def prefetch(self, lookups: Sequence[tuple[str, str, str]]) -> None:
        pass


refs = Refs()


def context(*, clock: float = VECTOR_T, base_url: str = "http://127.0.0.1:9", api_key: str = "sk_test_x",
            previous: str | None = None, webhook_secret: str = SECRET, timeout_s: float = 5.0) -> Context:
    settings = StripeSettings(base_url=base_url, api_key=api_key, webhook_secret=webhook_secret,
                              previous_webhook_secret=previous, timeout_s=timeout_s)
    return Context(settings=settings, http=offline, clock=lambda: clock)


def event(type_: str, obj: dict[str, Any], created: int = VECTOR_T) -> InboundEvent:
    """An event as parse_webhook makes it from a Stripe delivery wrapping ``obj``."""
    envelope = {**fixture("event"), "type": type_, "created": created, "data": {"object": obj}}
    return connector.parse_webhook(context(), {}, json.dumps(envelope).encode())[0]


def only(changes: list[Change]) -> Change:
    assert len(changes) == 1, changes
    return changes[0]


# -- signatures ---------------------------------------------------------------------------------------


def test_signature_test_vector() -> None:
    assert sign(SECRET, VECTOR_T, VECTOR_BODY) == VECTOR_V1
    header = {"Stripe-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"}
    connector.verify_webhook(context(clock=VECTOR_T + 299), header, VECTOR_BODY)


def test_header_is_found_in_any_case() -> None:
    connector.verify_webhook(context(), {"STRIPE-SIGNATURE": signature_header(SECRET, VECTOR_T, VECTOR_BODY)},
                             VECTOR_BODY)


@pytest.mark.parametrize(
    ("headers", "body", "clock", "message"),
    [
        ({}, VECTOR_BODY, VECTOR_T, "missing Stripe-Signature header"),
        ({"Stripe-Signature": f"t={VECTOR_T},v0={VECTOR_V1}"}, VECTOR_BODY, VECTOR_T, "no v1 signature"),
        ({"Stripe-Signature": f"v1={VECTOR_V1}"}, VECTOR_BODY, VECTOR_T, "no valid timestamp"),
        ({"Stripe-Signature": "garbage"}, VECTOR_BODY, VECTOR_T, "no valid timestamp"),
        ({"Stripe-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"}, VECTOR_BODY.replace(b"evt_test", b"evt_evil"),
         VECTOR_T, "no signature matches"),
        ({"Stripe-Signature": f"t={VECTOR_T + 1},v1={VECTOR_V1}"}, VECTOR_BODY, VECTOR_T, "no signature matches"),
        ({"Stripe-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"}, VECTOR_BODY, VECTOR_T + 301,
         "timestamp outside tolerance"),
    ],
    ids=["no-header", "only-v0", "no-timestamp", "garbage", "tampered-body", "moved-timestamp", "stale"],
)
def test_bad_signatures_are_refused(headers: dict[str, str], body: bytes, clock: float, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        connector.verify_webhook(context(clock=clock), headers, body)


def test_future_timestamps_are_accepted() -> None:
    future = VECTOR_T + 3600
    connector.verify_webhook(context(), {"Stripe-Signature": signature_header(SECRET, future, VECTOR_BODY)},
                             VECTOR_BODY)


def test_any_v1_may_match() -> None:
    header = f"t={VECTOR_T},v1={'0' * 64},v1={VECTOR_V1},v0=ignored"
    connector.verify_webhook(context(), {"Stripe-Signature": header}, VECTOR_BODY)


def test_previous_secret_is_accepted_during_a_roll() -> None:
    header = {"Stripe-Signature": signature_header("whsec_old", VECTOR_T, VECTOR_BODY)}
    connector.verify_webhook(context(webhook_secret="whsec_new", previous="whsec_old"), header, VECTOR_BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        connector.verify_webhook(context(webhook_secret="whsec_new"), header, VECTOR_BODY)


def test_an_empty_secret_verifies_nothing() -> None:
    header = {"Stripe-Signature": signature_header("", VECTOR_T, VECTOR_BODY)}
    with pytest.raises(SignatureError, match="no webhook secret configured"):
        connector.verify_webhook(context(webhook_secret=""), header, VECTOR_BODY)


# -- parsing ------------------------------------------------------------------------------------------


def test_parse_webhook_returns_the_event() -> None:
    body = json.dumps({"id": "evt_1", "object": "event", "type": "customer.created", "created": VECTOR_T,
                       "data": {"object": {"id": "cus_1", "object": "customer"}}}).encode()
    [parsed] = connector.parse_webhook(context(), {}, body)
    assert parsed.source_event_id == "evt_1"
    assert parsed.type == "customer.created"
    assert parsed.occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parsed.payload == json.loads(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "Expected `object`, got `array`"),
        (b'{"id": "in_1", "object": "invoice", "type": "x", "created": 1, "data": {"object": {}}}', r"\$.object"),
        (b'{"id": "evt_1", "object": "event", "created": 1, "data": {"object": {}}}', "missing required field `type`"),
        (b'{"id": "evt_1", "object": "event", "type": "x", "created": "now", "data": {"object": {}}}',
         r"\$.created"),
        (b'{"id": "evt_1", "object": "event", "type": "x", "created": 1, "data": {}}', "`object`"),
    ],
    ids=["not-json", "array", "not-an-event", "no-type", "created-not-int", "no-data-object"],
)
def test_parse_webhook_refuses_what_stripe_does_not_send(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        connector.parse_webhook(context(), {}, body)


# -- mapping of Stripe's fixture objects ------------------------------------------------------------------


def test_customer_fixture_maps_to_a_customer() -> None:
    customer = fixture("customer")
    change = only(connector.to_canonical(context(), event("customer.created", customer), refs))
    assert change.type == "customer.upserted"
    assert change.entity == Customer(id="customer/stripe/cus_QXg1o8vcGmoR32", name="cus_QXg1o8vcGmoR32",
                                     currency="USD", status="active")


def test_customer_fields_and_the_hubs_own_id() -> None:
    customer = {**fixture("customer"), "name": None, "email": "ap@acme.test", "phone": "+1 555 0100",
                "address": {**fixture("customer")["address"], "line1": "1 Main St", "country": "US"},
                "metadata": {"crossledger_id": "customer/salesforce/001A"}}
    entity = only(connector.to_canonical(context(), event("customer.updated", customer), refs)).entity
    assert isinstance(entity, Customer)
    assert entity.id == "customer/salesforce/001A"
    assert entity.name == "ap@acme.test"
    assert (entity.phone, entity.address and entity.address.line1) == ("+1 555 0100", "1 Main St")


def test_customer_deleted() -> None:
    change = only(connector.to_canonical(context(), event("customer.deleted", fixture("customer")), refs))
    assert change.type == "customer.deleted"
    assert isinstance(change.entity, Customer) and change.entity.status == "deleted"


def test_invoice_fixture_maps_to_an_issued_invoice() -> None:
    change = only(connector.to_canonical(context(), event("invoice.finalized", fixture("invoice")), refs))
    invoice = change.entity
    assert change.type == "invoice.issued"
    assert isinstance(invoice, Invoice)
    assert invoice.id == "invoice/stripe/in_1Pgc6tB7WZ01zgkWu9fdqL6I"
    assert invoice.customer_id == "customer/stripe/cus_QXg1o8vcGmoR32"
    assert [(line.description, line.quantity, line.amount) for line in invoice.lines] == [
        ("My First Invoice Item (created for API docs)", 1, money(1000, "USD"))
    ]
    assert (invoice.tax, invoice.discount, invoice.total) == (money(0, "USD"), money(0, "USD"), money(1000, "USD"))
    assert (invoice.status, invoice.currency, invoice.issued_at) == ("issued", "USD", None)
    assert invoice.due_at == datetime.fromtimestamp(1234567890, UTC)
    assert invoice.subscription_id is None  # the fixture's parent is a quote, not a subscription
    assert violations(invoice) == []


def test_invoice_taxes_discounts_and_subscription() -> None:
    source = {**fixture("invoice"), "total": 1050, "total_taxes": [{"amount": 60}, {"amount": 20}],
              "total_discount_amounts": [{"amount": 30}],
              "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_9"}},
              "status_transitions": {**fixture("invoice")["status_transitions"], "finalized_at": VECTOR_T}}
    invoice = only(connector.to_canonical(context(), event("invoice.finalized", source), refs)).entity
    assert isinstance(invoice, Invoice)
    assert (invoice.tax.amount, invoice.discount.amount, invoice.total.amount) == (80, 30, 1050)
    assert invoice.subscription_id == "subscription/stripe/sub_9"
    assert invoice.issued_at == datetime.fromtimestamp(VECTOR_T, UTC)
    assert violations(invoice) == []


def test_inconsistent_totals_are_left_for_the_invariant_check() -> None:
    source = {**fixture("invoice"), "total": 999}
    invoice = only(connector.to_canonical(context(), event("invoice.finalized", source), refs)).entity
    assert isinstance(invoice, Invoice) and invoice.total.amount == 999
    assert violations(invoice)


def test_invoice_voided() -> None:
    change = only(connector.to_canonical(context(), event("invoice.voided", fixture("invoice")), refs))
    assert change.type == "invoice.voided"
    assert isinstance(change.entity, Invoice) and change.entity.status == "void"


def test_invoice_marked_uncollectible_is_the_invoice_issued_again_as_uncollectible() -> None:
    source = {**fixture("invoice"), "status": "uncollectible"}
    change = only(connector.to_canonical(context(), event("invoice.marked_uncollectible", source), refs))
    assert change.type == "invoice.issued"
    assert isinstance(change.entity, Invoice)
    assert (change.entity.id, change.entity.status) == ("invoice/stripe/in_1Pgc6tB7WZ01zgkWu9fdqL6I", "uncollectible")
    assert change.entity.total == money(1000, "USD") and violations(change.entity) == []


@pytest.mark.parametrize(("event_type", "stripe_status", "status"), [
    ("invoice.finalized", "open", "issued"), ("invoice.finalized", "paid", "paid"),
    ("invoice.finalized", "void", "void"), ("invoice.finalized", "uncollectible", "uncollectible"),
    ("invoice.voided", "void", "void"), ("invoice.voided", None, "void"),
    ("invoice.marked_uncollectible", "uncollectible", "uncollectible"),
    ("invoice.marked_uncollectible", None, "uncollectible"),
    ("invoice.marked_uncollectible", "paid", "paid"),  # read back after it was paid after all
])
def test_an_invoices_status_is_its_own_not_its_events(event_type: str, stripe_status: str | None,
                                                      status: str) -> None:
    """The object may be read back later than its event (a tie-break, a replay): its status wins."""
    change = only(connector.to_canonical(context(), event(event_type, {**fixture("invoice"),
                                                                       "status": stripe_status}), refs))
    assert isinstance(change.entity, Invoice) and change.entity.status == status


def test_a_customer_read_back_after_its_deletion_is_deleted() -> None:
    change = only(connector.to_canonical(context(), event("customer.updated", fixture("deleted_customer")), refs))
    assert change.type == "customer.deleted"
    assert isinstance(change.entity, Customer) and change.entity.status == "deleted"


def test_unpaid_invoice_payment_fixture_is_a_data_error() -> None:
    # The fixture's amount_paid is null and its currency a placeholder: not a paid payment.
    with pytest.raises(ConnectorError) as caught:
        connector.to_canonical(context(), event("invoice_payment.paid", fixture("invoice_payment")), refs)
    assert caught.value.category is Category.DATA
    assert "amount_paid" in caught.value.message


def test_malformed_objects_are_data_errors() -> None:
    source = {**fixture("invoice"), "total": "1000"}
    with pytest.raises(ConnectorError, match=r"invoice 'in_1Pgc6tB7WZ01zgkWu9fdqL6I' is malformed.*\$.total"):
        connector.to_canonical(context(), event("invoice.finalized", source), refs)


@pytest.mark.parametrize("type_", ["invoice.created", "invoice.payment_succeeded", "plan.created"])
def test_other_events_are_acknowledged_and_ignored(type_: str) -> None:
    assert connector.to_canonical(context(), event(type_, fixture("invoice")), refs) == []


# -- against the sandbox ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> StripeSandbox:
    return StripeSandbox()


@pytest.fixture(scope="module")
def ctx(sandbox: StripeSandbox, server: ServerThread) -> Iterator[Context]:
    settings = StripeSettings(**sandbox.connector_settings(server.url), timeout_s=0.5)
    with httpx.Client() as http:
        yield Context(settings=settings, http=http, clock=time.time)


@pytest.fixture
def faults(ctx: Context, server: ServerThread) -> Iterator[str]:
    """The sandbox's fault URL; whatever a test injects is cleared after it."""
    url = f"{server.url}/_sandbox/faults"
    yield url
    ctx.http.delete(url).raise_for_status()


@pytest.fixture(scope="module")
def client(sandbox: StripeSandbox, server: ServerThread) -> stripe.StripeClient:
    return stripe.StripeClient(sandbox.api_key, base_addresses={"api": server.url}, max_network_retries=0)


def sandbox_events(ctx: Context, type_: str, subject: str) -> list[InboundEvent]:
    """The sandbox's events of ``type_`` about ``subject``, read from GET /v1/events (Stripe's polling
    fallback) and parsed as the webhook bodies they would have been."""
    settings = ctx.settings
    assert isinstance(settings, StripeSettings)
    response = ctx.http.get(f"{settings.base_url}/v1/events", params={"type": type_, "limit": 100},
                            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"})
    found = [e for e in response.json()["data"] if subject in json.dumps(e["data"]["object"])]
    return [connector.parse_webhook(ctx, {}, json.dumps(e).encode())[0] for e in found]


def bill(client: stripe.StripeClient, currency: str, amounts: list[int]) -> tuple[str, str]:
    """A customer and a finalized invoice for ``amounts``; their Stripe ids."""
    customer = client.v1.customers.create({"name": f"{currency} Ltd", "email": f"ap@{currency}.test"})
    for amount in amounts:
        client.v1.invoice_items.create({"customer": customer.id, "currency": currency, "amount": amount,
                                        "description": f"{amount} {currency}"})
    invoice = client.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                         "days_until_due": 30})
    assert invoice.id is not None
    client.v1.invoices.finalize_invoice(invoice.id)
    return customer.id, invoice.id


@pytest.mark.parametrize(("currency", "amounts", "total"), [("jpy", [1234, 5], 1239), ("eur", [1999, 1], 2000)])
def test_sandbox_invoices_map_with_exact_amounts(ctx: Context, client: stripe.StripeClient, currency: str,
                                                 amounts: list[int], total: int) -> None:
    customer_id, invoice_id = bill(client, currency, amounts)
    [finalized] = sandbox_events(ctx, "invoice.finalized", invoice_id)
    invoice = only(connector.to_canonical(ctx, finalized, refs)).entity
    assert isinstance(invoice, Invoice)
    assert invoice.customer_id == f"customer/stripe/{customer_id}"
    assert [line.amount for line in invoice.lines] == [money(a, currency) for a in amounts]
    assert invoice.total == money(total, currency)
    assert invoice.number and invoice.issued_at and invoice.due_at
    assert violations(invoice) == []
    [created] = sandbox_events(ctx, "customer.created", customer_id)
    customer = only(connector.to_canonical(ctx, created, refs)).entity
    assert customer == Customer(id=f"customer/stripe/{customer_id}", name=f"{currency} Ltd",
                                email=f"ap@{currency}.test")


def test_sandbox_payment_maps_to_a_settled_payment(ctx: Context, client: stripe.StripeClient) -> None:
    customer_id, invoice_id = bill(client, "usd", [2500, 500])
    client.v1.invoices.pay(invoice_id, {"paid_out_of_band": True})
    [paid] = sandbox_events(ctx, "invoice_payment.paid", invoice_id)
    payment = only(connector.to_canonical(ctx, paid, refs))
    assert payment.type == "payment.settled"
    assert isinstance(payment.entity, Payment)
    assert payment.entity.id == f"payment/stripe/{paid.payload['data']['object']['id']}"
    assert payment.entity.customer_id == f"customer/stripe/{customer_id}"  # read from the invoice
    assert payment.entity.amount == money(3000, "USD")
    assert [(a.invoice_id, a.amount) for a in payment.entity.applications] == [
        (f"invoice/stripe/{invoice_id}", money(3000, "USD"))
    ]
    assert payment.entity.method == "payment_intent" and payment.entity.received_at is not None


def test_sandbox_void_maps_to_a_voided_invoice(ctx: Context, client: stripe.StripeClient) -> None:
    _, invoice_id = bill(client, "usd", [700])
    client.v1.invoices.void_invoice(invoice_id)
    [voided] = sandbox_events(ctx, "invoice.voided", invoice_id)
    assert only(connector.to_canonical(ctx, voided, refs)).type == "invoice.voided"


def test_sandbox_uncollectible_invoice_paid_later(ctx: Context, client: stripe.StripeClient) -> None:
    """Marked uncollectible, the invoice is issued again as such; Stripe still takes its payment,
    which settles through invoice_payment.paid as any other, while invoice.paid says only that the
    invoice's status is now paid."""
    customer_id, invoice_id = bill(client, "usd", [4200])
    client.v1.invoices.mark_uncollectible(invoice_id)
    [marked] = sandbox_events(ctx, "invoice.marked_uncollectible", invoice_id)
    change = only(connector.to_canonical(ctx, marked, refs))
    assert change.type == "invoice.issued"
    assert isinstance(change.entity, Invoice)
    assert (change.entity.id, change.entity.status, change.entity.total) == (
        f"invoice/stripe/{invoice_id}", "uncollectible", money(4200, "USD"))

    assert client.v1.invoices.pay(invoice_id, {"paid_out_of_band": True}).status == "paid"
    [paid_invoice] = sandbox_events(ctx, "invoice.paid", invoice_id)
    status = only(connector.to_canonical(ctx, paid_invoice, refs))
    assert (status.type, status.groups) == ("invoice.paid", ("status",))
    assert isinstance(status.entity, Invoice) and status.entity.status == "paid"
    [paid] = sandbox_events(ctx, "invoice_payment.paid", invoice_id)
    settled = only(connector.to_canonical(ctx, paid, refs))
    assert settled.type == "payment.settled" and isinstance(settled.entity, Payment)
    assert settled.entity.customer_id == f"customer/stripe/{customer_id}"
    assert [(a.invoice_id, a.amount) for a in settled.entity.applications] == [
        (f"invoice/stripe/{invoice_id}", money(4200, "USD"))]


def test_refetch_reads_the_object_as_it_is_now(ctx: Context, client: stripe.StripeClient) -> None:
    _, invoice_id = bill(client, "usd", [700])
    [finalized] = sandbox_events(ctx, "invoice.finalized", invoice_id)
    client.v1.invoices.pay(invoice_id, {"paid_out_of_band": True})
    fresh = connector.refetch(ctx, finalized)
    assert (fresh.source_event_id, fresh.type) == (finalized.source_event_id, finalized.type)
    assert finalized.payload["data"]["object"]["status"] == "open"
    assert fresh.payload["data"]["object"]["status"] == "paid"


def test_refetched_objects_map_as_they_are_now(ctx: Context, client: stripe.StripeClient) -> None:
    """What the hub's tie-break does with two events of one second: re-read the object, map it under
    the event it holds. A voided invoice is void and a deleted customer deleted, whatever the event."""
    customer_id, invoice_id = bill(client, "usd", [700])
    [finalized] = sandbox_events(ctx, "invoice.finalized", invoice_id)
    client.v1.invoices.void_invoice(invoice_id)
    invoice = only(connector.to_canonical(ctx, connector.refetch(ctx, finalized), refs)).entity
    assert isinstance(invoice, Invoice) and (invoice.id, invoice.status) == (f"invoice/stripe/{invoice_id}", "void")

    client.v1.customers.update(customer_id, {"name": "Renamed"})
    updated, *_ = sandbox_events(ctx, "customer.updated", customer_id)
    client.v1.customers.delete(customer_id)
    change = only(connector.to_canonical(ctx, connector.refetch(ctx, updated), refs))
    assert (change.type, change.entity.id) == ("customer.deleted", f"customer/stripe/{customer_id}")
    assert isinstance(change.entity, Customer) and change.entity.status == "deleted"


@pytest.mark.parametrize("entity_type", ["customer", "invoice", "invoice_payment"])
def test_fetch(ctx: Context, client: stripe.StripeClient, entity_type: str) -> None:
    customer_id, invoice_id = bill(client, "usd", [100])
    [payment] = client.v1.invoice_payments.list({"invoice": invoice_id}).data
    external_id = {"customer": customer_id, "invoice": invoice_id, "invoice_payment": payment.id}[entity_type]
    record = connector.fetch(ctx, entity_type, external_id)
    assert (record["object"], record["id"]) == (entity_type, external_id)


def test_fetch_failures_are_classified(ctx: Context, sandbox: StripeSandbox, server: ServerThread) -> None:
    with pytest.raises(ConnectorError) as missing:
        connector.fetch(ctx, "customer", "cus_nope")
    assert (missing.value.category, missing.value.status) == (Category.DATA, 404)
    assert "resource_missing" in missing.value.message
    with pytest.raises(ConnectorError, match="cannot fetch 'journal_entry'") as unknown:
        connector.fetch(ctx, "journal_entry", "je_1")
    assert unknown.value.category is Category.DATA
    wrong_key = Context(settings=StripeSettings(base_url=server.url, api_key="sk_test_wrong", webhook_secret=""),
                        http=ctx.http, clock=time.time)
    with pytest.raises(ConnectorError) as auth:
        connector.fetch(wrong_key, "customer", "cus_nope")
    assert auth.value.category is Category.AUTH


@pytest.mark.parametrize(
    ("fault", "category", "retry_after"),
    [
        ({"mode": "http_429", "count": 1, "retry_after": 2}, Category.RATE_LIMITED, None),  # Stripe sends none
        ({"mode": "http_500", "count": 1}, Category.TRANSIENT, None),
        ({"mode": "down", "count": 1}, Category.TARGET_DOWN, None),
        ({"mode": "latency", "count": 1, "latency_ms": 1500}, Category.AMBIGUOUS, None),
    ],
    ids=["429", "500", "503", "timeout"],
)
def test_classify_sandbox_faults(ctx: Context, faults: str, fault: dict[str, Any], category: Category,
                                 retry_after: float | None) -> None:
    ctx.http.post(faults, json=fault).raise_for_status()
    with pytest.raises(ConnectorError) as caught:
        connector.fetch(ctx, "customer", "cus_any")
    assert (caught.value.category, caught.value.retry_after) == (category, retry_after)


def test_classify_a_declined_card(ctx: Context, client: stripe.StripeClient, server: ServerThread,
                                  sandbox: StripeSandbox) -> None:
    _, invoice_id = bill(client, "usd", [100])
    response = ctx.http.post(f"{server.url}/v1/invoices/{invoice_id}/pay",
                             data={"payment_method": "pm_card_chargeDeclined"},
                             headers={"Authorization": f"Bearer {sandbox.api_key}"})
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    classified = connector.classify(caught.value)
    assert (classified.category, classified.status) == (Category.DATA, 402)
    assert classified.message == "stripe: HTTP 402 Payment Required: card_error/card_declined"


def test_classify_a_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(ConnectorError) as caught:
            connector.fetch(context(base_url=f"http://127.0.0.1:{port}"), "customer", "cus_1")
    assert caught.value.category is Category.TARGET_DOWN


@pytest.mark.parametrize(
    ("status", "should_retry", "category"),
    [
        (409, "false", Category.DATA),
        (500, "false", Category.DATA),
        (400, "true", Category.TRANSIENT),
        (429, "true", Category.RATE_LIMITED),
        (503, "true", Category.TARGET_DOWN),
        (402, None, Category.DATA),
    ],
)
def test_stripe_should_retry_overrides_the_status(status: int, should_retry: str | None,
                                                  category: Category) -> None:
    headers = {"Stripe-Should-Retry": should_retry} if should_retry else {}
    request = httpx.Request("GET", "https://api.stripe.com/v1/customers/cus_1")
    body = {"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "busy"}}
    response = httpx.Response(status, headers=headers, json=copy.deepcopy(body), request=request)
    error = httpx.HTTPStatusError("failed", request=request, response=response)
    assert connector.classify(error).category is category
