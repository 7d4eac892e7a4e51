"""The Stripe sandbox, driven over real HTTP by Stripe's official Python SDK.

If the official client works against the sandbox (encoding, auth, errors, pagination, idempotency),
the hub's own Stripe client will work against Stripe. Raw HTTP is used only where the SDK hides
what is being checked (headers, status codes, error bodies).
"""

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings
from crossledger.plugins.types import Context
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.kits.stripe import RunningStripe

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "stripe"


class Receiver:
    """A webhook endpoint on loopback: records every delivery, answers with scripted statuses then 200."""

    def __init__(self, *statuses: int) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self._statuses = list(statuses)
        self.server = ServerThread(Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])).start()
        self.url = f"{self.server.url}/hook"

    async def _receive(self, request: Request) -> Response:
        self.deliveries.append((dict(request.headers), await request.body()))
        return Response(status_code=self._statuses.pop(0) if self._statuses else 200)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.deliveries]


@pytest.fixture
def stripe_api() -> Iterator[RunningStripe]:
    running = RunningStripe()
    yield running
    running.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(500, 500)
    yield receiver
    receiver.server.stop()


def billed(api: RunningStripe, *amounts: int, currency: str = "usd") -> tuple[stripe.Customer, stripe.Invoice]:
    """A customer with one draft invoice holding an invoice item per amount."""
    customer = api.client.v1.customers.create({"name": "Acme Ltd", "email": "ap@acme.test"})
    for amount in amounts:
        api.client.v1.invoice_items.create({"customer": customer.id, "amount": amount, "currency": currency,
                                            "description": f"line of {amount}"})
    return customer, api.client.v1.invoices.create({"customer": customer.id})


def invoice_id(invoice: stripe.Invoice) -> str:
    assert invoice.id is not None
    return invoice.id


def stripe_error(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` of a Stripe error body, checked to have Stripe's shape: ``type`` and ``message``,
    and ``code``, ``doc_url`` and ``param`` only as strings (left out when they do not apply)."""
    assert response.headers["request-id"].startswith("req_")
    error: dict[str, Any] = response.json()["error"]
    assert {"type", "message"} <= set(error) <= {"type", "message", "code", "doc_url", "param", "decline_code"}
    assert all(isinstance(value, str) for value in error.values()), error
    assert ("code" in error) == ("doc_url" in error)
    return error


# -- customers ----------------------------------------------------------------------------------------


def test_customer_lifecycle(stripe_api: RunningStripe) -> None:
    customers = stripe_api.client.v1.customers
    created = customers.create({"name": "Acme Ltd", "email": "ap@acme.test", "phone": "+1 555 0100",
                                "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
                                "metadata": {"crossledger_id": "customer/crm/1", "tier": "gold"}})
    assert created.id.startswith("cus_") and created.object == "customer"
    assert created.address is not None and created.address.line1 == "1 Main St" and created.address.state is None
    updated = customers.update(created.id, {"phone": "", "metadata": {"tier": ""}, "description": "key account"})
    assert updated.phone is None and updated.description == "key account"
    assert updated.metadata.to_dict() == {"crossledger_id": "customer/crm/1"}
    assert customers.retrieve(created.id).description == "key account"
    assert [c.id for c in customers.list({"email": "ap@acme.test"}).data] == [created.id]
    deleted = customers.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    assert customers.retrieve(created.id).to_dict() == {"id": created.id, "object": "customer", "deleted": True}
    assert customers.list({"email": "ap@acme.test"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as missing:
        customers.update(created.id, {"name": "ghost"})
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_lists_page_newest_first(stripe_api: RunningStripe) -> None:
    ids = [stripe_api.client.v1.customers.create({"email": "page@acme.test"}).id for _ in range(5)]
    newest_first = ids[::-1]
    first = stripe_api.client.v1.customers.list({"email": "page@acme.test", "limit": 2})
    assert ([c.id for c in first.data], first.has_more, first.url) == (newest_first[:2], True, "/v1/customers")
    paged = stripe_api.client.v1.customers.list({"email": "page@acme.test", "limit": 2}).auto_paging_iter()
    assert [c.id for c in paged] == newest_first
    before = stripe_api.http.get("/v1/customers", params={"ending_before": newest_first[3], "limit": 2}).json()
    assert ([c["id"] for c in before["data"]], before["has_more"]) == (newest_first[1:3], True)
    both = stripe_api.http.get("/v1/customers", params={"ending_before": ids[0], "starting_after": ids[1]})
    assert (both.status_code, stripe_error(both)["code"]) == (400, "parameters_exclusive")
    too_many = stripe_api.http.get("/v1/customers", params={"limit": 101})
    assert (too_many.status_code, stripe_error(too_many)["param"]) == (400, "limit")


# -- invoices -----------------------------------------------------------------------------------------


def test_invoice_from_pending_items_to_paid(stripe_api: RunningStripe) -> None:
    v1 = stripe_api.client.v1
    customer, _ = billed(stripe_api)  # an empty draft first: items made after it stay pending
    v1.invoice_items.create({"customer": customer.id, "amount": 1500, "currency": "eur"})
    v1.invoice_items.create({"customer": customer.id, "unit_amount": 250, "quantity": 3, "currency": "eur"})
    assert v1.customers.retrieve(customer.id).currency == "eur"
    invoice = v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                  "days_until_due": 30, "metadata": {"order": "42"}})
    assert (invoice.status, invoice.currency, invoice.customer) == ("draft", "eur", customer.id)
    assert [(line.amount, line.quantity) for line in invoice.lines.data] == [(1500, 1), (750, 3)]
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_remaining) == (2250,) * 4
    assert invoice.due_date == invoice.created + 30 * 86_400
    assert (invoice.hosted_invoice_url, invoice.invoice_pdf) == (None, None)  # a draft has neither
    finalized = v1.invoices.finalize_invoice(invoice_id(invoice))
    assert finalized.status == "open" and finalized.number and finalized.number.endswith("-0001")
    assert finalized.hosted_invoice_url and finalized.hosted_invoice_url.startswith("https://invoice.stripe.com/i/")
    assert finalized.invoice_pdf and finalized.invoice_pdf.endswith("/pdf?s=ap")
    assert finalized.status_transitions.finalized_at is not None
    [payment] = v1.invoice_payments.list({"invoice": finalized.id}).data
    assert (payment.status, payment.amount_requested, payment.amount_paid) == ("open", 2250, None)
    paid = v1.invoices.pay(invoice_id(invoice), {"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 2250, 0)
    settled = v1.invoice_payments.retrieve(payment.id)
    assert (settled.status, settled.amount_paid, settled.payment.type) == ("paid", 2250, "payment_intent")
    assert settled.payment.payment_intent and settled.payment.payment_intent.startswith("pi_")
    with pytest.raises(stripe.InvalidRequestError, match="only void an invoice whose status is open or"):
        v1.invoices.void_invoice(invoice_id(invoice))


def test_exclusive_tax_rates_add_tax_per_line(stripe_api: RunningStripe) -> None:
    v1 = stripe_api.client.v1
    vat = v1.tax_rates.create({"display_name": "VAT", "percentage": 20.0, "inclusive": False, "country": "FR"})
    customer = v1.customers.create({"name": "Société Générale de Test"})
    for amount in (1005, 2001):  # 201.0 and 400.2: each line's tax is rounded on its own
        v1.invoice_items.create({"customer": customer.id, "amount": amount, "currency": "eur"})
    invoice = v1.invoices.create({"customer": customer.id, "default_tax_rates": [vat.id]})

    assert [[tax.amount for tax in line.taxes] for line in invoice.lines.data] == [[201], [400]]
    [total_tax] = invoice.total_taxes
    assert (total_tax.amount, total_tax.taxable_amount, total_tax.tax_rate_details.tax_rate) == (601, 3006, vat.id)
    totals = (invoice.subtotal, invoice.total_excluding_tax, invoice.total, invoice.amount_due)
    assert totals == (3006, 3006, 3607, 3607)
    with pytest.raises(stripe.InvalidRequestError, match="exclusive tax rates only"):
        v1.tax_rates.create({"display_name": "GST", "percentage": 10.0, "inclusive": True})


def test_void_and_uncollectible(stripe_api: RunningStripe) -> None:
    v1 = stripe_api.client.v1
    _, invoice = billed(stripe_api, 900)
    with pytest.raises(stripe.InvalidRequestError, match="is draft"):
        v1.invoices.void_invoice(invoice_id(invoice))
    v1.invoices.finalize_invoice(invoice_id(invoice))
    with pytest.raises(stripe.InvalidRequestError, match="only finalize an invoice whose status is draft"):
        v1.invoices.finalize_invoice(invoice_id(invoice))
    assert v1.invoices.mark_uncollectible(invoice_id(invoice)).status == "uncollectible"
    voided = v1.invoices.void_invoice(invoice_id(invoice))
    assert voided.status == "void" and voided.status_transitions.voided_at is not None
    [payment] = v1.invoice_payments.list({"invoice": invoice_id(invoice)}).data
    assert payment.status == "canceled"


def test_an_uncollectible_invoice_can_still_be_paid(stripe_api: RunningStripe) -> None:
    v1 = stripe_api.client.v1
    _, invoice = billed(stripe_api, 900)
    v1.invoices.finalize_invoice(invoice_id(invoice))
    marked = v1.invoices.mark_uncollectible(invoice_id(invoice))
    assert marked.status == "uncollectible" and marked.status_transitions.marked_uncollectible_at is not None
    paid = v1.invoices.pay(invoice_id(invoice), {"payment_method": "pm_card_visa"})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 900, 0)
    [payment] = v1.invoice_payments.list({"invoice": invoice_id(invoice)}).data
    assert (payment.status, payment.amount_paid) == ("paid", 900)
    with pytest.raises(stripe.InvalidRequestError, match="is paid"):
        v1.invoices.mark_uncollectible(invoice_id(invoice))


def test_paying_needs_a_payment_method_and_cards_can_decline(stripe_api: RunningStripe) -> None:
    v1 = stripe_api.client.v1
    _, invoice = billed(stripe_api, 900)
    v1.invoices.finalize_invoice(invoice_id(invoice))
    with pytest.raises(stripe.InvalidRequestError, match="no attached payment source"):
        v1.invoices.pay(invoice_id(invoice))
    with pytest.raises(stripe.CardError) as declined:
        v1.invoices.pay(invoice_id(invoice), {"payment_method": "pm_card_chargeDeclined"})
    assert (declined.value.http_status, declined.value.code) == (402, "card_declined")
    paid = v1.invoices.pay(invoice_id(invoice), {"payment_method": "pm_card_visa"})
    assert (paid.status, paid.attempt_count) == ("paid", 2)


def test_items_join_a_draft_directly(stripe_api: RunningStripe) -> None:
    v1 = stripe_api.client.v1
    customer, _ = billed(stripe_api, 100)
    draft = v1.invoices.create({"customer": customer.id, "pending_invoice_items_behavior": "exclude"})
    assert draft.lines.data == [] and draft.total == 0
    item = v1.invoice_items.create({"customer": customer.id, "amount": 400, "invoice": draft.id})
    assert item.invoice == draft.id and item.currency == "usd"
    half = v1.invoice_items.create({"customer": customer.id, "unit_amount_decimal": "0.5", "quantity": 3,
                                    "invoice": draft.id})
    assert half.amount == 2  # 1.5 minor units, rounded half to even
    assert v1.invoices.retrieve(invoice_id(draft), {"expand": ["customer"]}).to_dict()["customer"]["id"] == customer.id
    assert [line.amount for line in v1.invoices.retrieve(invoice_id(draft)).lines.data] == [400, 2]


def test_a_zero_invoice_is_paid_on_finalization(stripe_api: RunningStripe) -> None:
    customer = stripe_api.client.v1.customers.create({"name": "Free tier"})
    invoice = stripe_api.client.v1.invoices.create({"customer": customer.id})
    assert stripe_api.client.v1.invoices.finalize_invoice(invoice_id(invoice)).status == "paid"


# -- errors, auth ---------------------------------------------------------------------------------------


def test_request_errors_have_stripes_shape(stripe_api: RunningStripe) -> None:
    unknown = stripe_api.http.post("/v1/customers", data={"name": "x", "nickname": "y"})
    assert (unknown.status_code, stripe_error(unknown)["code"], stripe_error(unknown)["param"]) == (
        400, "parameter_unknown", "nickname")
    missing = stripe_api.http.post("/v1/invoiceitems", data={"amount": "100", "currency": "usd"})
    assert (stripe_error(missing)["code"], stripe_error(missing)["param"]) == ("parameter_missing", "customer")
    no_customer = stripe_api.http.post("/v1/invoices", data={"customer": "cus_nope"})
    assert (no_customer.status_code, stripe_error(no_customer)["code"]) == (400, "resource_missing")
    not_an_int = stripe_api.http.post("/v1/invoiceitems", data={"customer": "cus_x", "amount": "ten"})
    assert stripe_error(not_an_int)["type"] == "invalid_request_error"
    unrecognized = stripe_api.http.get("/v1/customers/cus_1/nonsense")
    assert unrecognized.status_code == 404
    assert stripe_error(unrecognized)["message"] == "Unrecognized request URL (GET: /v1/customers/cus_1/nonsense)."
    assert set(stripe_error(unrecognized)) == {"type", "message"}  # no code, no param: left out, not null
    with pytest.raises(stripe.InvalidRequestError) as not_found:
        stripe_api.client.v1.invoices.retrieve("in_nope")
    assert (not_found.value.http_status, not_found.value.code) == (404, "resource_missing")


def test_every_api_call_needs_the_key(stripe_api: RunningStripe) -> None:
    bad = stripe.StripeClient("sk_test_wrong", base_addresses={"api": stripe_api.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.customers.list()
    anonymous = httpx.get(f"{stripe_api.url}/v1/customers")
    assert anonymous.status_code == 401 and "did not provide an API key" in stripe_error(anonymous)["message"]
    basic = base64.b64encode(f"{stripe_api.sandbox.api_key}:".encode()).decode()
    assert httpx.get(f"{stripe_api.url}/v1/customers", headers={"Authorization": f"Basic {basic}"}).status_code == 200


# -- idempotency --------------------------------------------------------------------------------------


def test_idempotent_requests_are_replayed(stripe_api: RunningStripe) -> None:
    once = {"idempotency_key": "create-acme"}
    first = stripe_api.client.v1.customers.create({"name": "Acme"}, once)
    assert stripe_api.client.v1.customers.create({"name": "Acme"}, once).id == first.id
    replay = stripe_api.http.post("/v1/customers", data={"name": "Acme"}, headers={"Idempotency-Key": "create-acme"})
    assert replay.headers["idempotent-replayed"] == "true" and replay.json()["id"] == first.id
    assert len(stripe_api.client.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        stripe_api.client.v1.customers.create({"name": "Other"}, once)
    with pytest.raises(stripe.IdempotencyError):
        stripe_api.client.v1.invoice_items.create({"name": "Acme"}, once)


def test_errors_are_replayed_too(stripe_api: RunningStripe) -> None:
    key = {"Idempotency-Key": "pay-missing"}
    first = stripe_api.http.post("/v1/invoices/in_nope/pay", headers=key)
    replay = stripe_api.http.post("/v1/invoices/in_nope/pay", headers=key)
    assert (first.status_code, replay.status_code) == (404, 404)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == first.content


def test_a_server_error_is_stored_under_the_key_and_replayed(stripe_api: RunningStripe) -> None:
    """Stripe saves a 500 once the request ran, and answers the same key with it again; another key
    runs the request anew."""
    stripe_api.http.post("/_sandbox/faults", json={"mode": "http_500", "count": 1}).raise_for_status()
    key = {"Idempotency-Key": "create-after-500"}
    first = stripe_api.http.post("/v1/customers", data={"name": "Acme"}, headers=key)
    replay = stripe_api.http.post("/v1/customers", data={"name": "Acme"}, headers=key)
    assert (first.status_code, replay.status_code) == (500, 500) and replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true" and replay.headers["stripe-should-retry"] == "true"
    assert stripe_error(replay)["type"] == "api_error"
    assert stripe_api.client.v1.customers.list().data == []
    retried = stripe_api.http.post("/v1/customers", data={"name": "Acme"}, headers={"Idempotency-Key": "create-2"})
    assert retried.status_code == 200 and len(stripe_api.client.v1.customers.list().data) == 1


@pytest.mark.parametrize("mode", ["http_429", "down"])
def test_a_refusal_before_the_request_runs_is_not_stored(stripe_api: RunningStripe, mode: str) -> None:
    stripe_api.http.post("/_sandbox/faults", json={"mode": mode, "count": 1}).raise_for_status()
    key = {"Idempotency-Key": f"create-after-{mode}"}
    assert stripe_api.http.post("/v1/customers", data={"name": "Acme"}, headers=key).status_code in (429, 503)
    created = stripe_api.http.post("/v1/customers", data={"name": "Acme"}, headers=key)
    assert created.status_code == 200 and "idempotent-replayed" not in created.headers


def test_an_injected_server_error_without_a_key_is_answered_as_before(stripe_api: RunningStripe) -> None:
    """A request the idempotency layer never runs (no key; a refused key) gets the fault as it was."""
    stripe_api.http.post("/_sandbox/faults", json={"mode": "http_500", "count": 1}).raise_for_status()
    assert stripe_api.http.post("/v1/customers", data={"name": "Acme"}).status_code == 500
    stripe_api.http.post("/_sandbox/faults", json={"mode": "http_500", "count": 1}).raise_for_status()
    unauthenticated = httpx.post(f"{stripe_api.url}/v1/customers", data={"name": "Acme"},
                                 headers={"Idempotency-Key": "no-auth"})
    assert unauthenticated.status_code == 500 and stripe_error(unauthenticated)["type"] == "api_error"
    assert stripe_api.client.v1.customers.list().data == []


# -- webhooks -----------------------------------------------------------------------------------------


def test_webhook_endpoint_secret_is_shown_once(stripe_api: RunningStripe) -> None:
    endpoints = stripe_api.client.v1.webhook_endpoints
    created = endpoints.create({"url": "https://hub.test/webhooks/stripe", "enabled_events": ["invoice.paid"]})
    assert created.secret and created.secret.startswith("whsec_") and created.id.startswith("we_")
    assert "secret" not in endpoints.retrieve(created.id).to_dict()
    assert ["secret" in e.to_dict() for e in endpoints.list().data] == [False]
    assert endpoints.delete(created.id).deleted is True
    assert endpoints.list().data == []


def test_webhooks_are_signed_filtered_and_retried(stripe_api: RunningStripe, receiver: Receiver) -> None:
    endpoint = stripe_api.client.v1.webhook_endpoints.create({"url": receiver.url,
                                                              "enabled_events": ["customer.created"]})
    customer = stripe_api.client.v1.customers.create({"name": "Acme"})
    stripe_api.client.v1.customers.update(customer.id, {"name": "Acme Ltd"})  # not subscribed to updates
    assert stripe_api.sandbox.wait_for_webhooks(10)
    events = receiver.events()
    assert [e["type"] for e in events] == ["customer.created"] * 3  # 500, 500, then 200
    assert len({e["id"] for e in events}) == 1 and events[0]["data"]["object"]["id"] == customer.id
    headers, body = receiver.deliveries[-1]
    assert headers["content-type"].startswith("application/json")
    settings = StripeSettings(api_key="sk_test_x", webhook_secret=endpoint.secret)
    hub = Context(settings=settings, http=stripe_api.http, clock=lambda: events[0]["created"])
    StripeConnector().verify_webhook(hub, headers, body)
    assert stripe.Webhook.construct_event(body, headers["stripe-signature"], endpoint.secret).id == events[0]["id"]
    assert stripe_api.sandbox.state()["webhooks"] | {"pending": 0} == {"sent": 1, "failed_attempts": 2,
                                                                         "abandoned": 0, "pending": 0}


def test_events_api_and_resend(stripe_api: RunningStripe, receiver: Receiver) -> None:
    stripe_api.sandbox.subscribe(receiver.url)
    settings = stripe_api.sandbox.connector_settings("http://sandbox")
    assert settings["webhook_secret"].startswith("whsec_") and settings["api_key"] == stripe_api.sandbox.api_key
    _, invoice = billed(stripe_api, 300)
    [created] = stripe_api.client.v1.events.list({"type": "invoice.created"}).data
    assert created.data.object["id"] == invoice.id and created.request.idempotency_key  # the SDK sends one
    assert stripe_api.client.v1.events.retrieve(created.id).type == "invoice.created"
    resent = stripe_api.http.post(f"/_sandbox/events/{created.id}/resend")
    assert resent.json() == {"id": created.id, "deliveries": 1}
    assert stripe_api.sandbox.wait_for_webhooks(10)
    delivered = [e["type"] for e in receiver.events()]
    assert delivered.count("invoice.created") == 2
    assert {"customer.created", "customer.updated", "invoiceitem.created"} <= set(delivered)


# -- faults and mounting -----------------------------------------------------------------------------------


def test_faults_have_stripes_shape(stripe_api: RunningStripe) -> None:
    stripe_api.http.post("/_sandbox/faults", json={"mode": "http_429", "count": 1}).raise_for_status()
    with pytest.raises(stripe.RateLimitError):
        stripe_api.client.v1.customers.list()
    assert stripe_api.client.v1.customers.list().data == []
    stripe_api.http.post("/_sandbox/faults", json={"mode": "http_500", "count": 1}).raise_for_status()
    failed = stripe_api.http.get("/v1/customers")
    assert (failed.status_code, failed.headers["stripe-should-retry"], stripe_error(failed)["type"]) == (
        500, "true", "api_error")
    # A 503 comes before the request runs, so nothing is stored under the key the SDK retries with.
    stripe_api.http.post("/_sandbox/faults", json={"mode": "down", "count": 1}).raise_for_status()
    retrying = stripe.StripeClient(stripe_api.sandbox.api_key, base_addresses={"api": stripe_api.url},
                                   max_network_retries=1)
    assert retrying.v1.customers.create({"name": "after a retry"}).name == "after a retry"


def test_served_under_a_mount() -> None:
    mounted = RunningStripe("/stripe")
    try:
        ids = [mounted.client.v1.customers.create({"email": "m@acme.test"}).id for _ in range(3)]
        assert [c.id for c in mounted.client.v1.customers.list({"limit": 1}).auto_paging_iter()] == ids[::-1]
        state = mounted.http.get("/_sandbox/state").json()
        assert len(state["customers"]) == 3 and state["events"] == 3
        event_id = mounted.client.v1.events.list().data[0].id
        assert mounted.http.post(f"/_sandbox/events/{event_id}/resend").json()["deliveries"] == 0
        assert mounted.http.get("/v1/nothing").status_code == 404
    finally:
        mounted.close()


# -- shapes --------------------------------------------------------------------------------------------------


def test_objects_have_the_field_sets_of_stripes_fixtures(stripe_api: RunningStripe) -> None:
    customer, invoice = billed(stripe_api, 500)
    stripe_api.client.v1.invoices.finalize_invoice(invoice_id(invoice))
    endpoint = stripe_api.http.post("/v1/webhook_endpoints", data={"url": "https://hub.test/h",
                                                                   "enabled_events[]": "*"}).json()
    objects = {
        "customer": f"/v1/customers/{customer.id}",
        "invoice": f"/v1/invoices/{invoice.id}",
        "invoiceitem": f"/v1/invoiceitems?customer={customer.id}",
        "invoice_payment": f"/v1/invoice_payments?invoice={invoice.id}",
        "webhook_endpoint": f"/v1/webhook_endpoints/{endpoint['id']}",
        "event": "/v1/events",
    }
    for name, path in objects.items():
        body = stripe_api.http.get(path).json()
        record = body["data"][0] if body["object"] == "list" else body
        assert set(record) == set(json.loads((FIXTURES / f"{name}.json").read_text())), name
    line = stripe_api.http.get(f"/v1/invoices/{invoice.id}").json()["lines"]["data"][0]
    assert set(line) == set(json.loads((FIXTURES / "line_item.json").read_text()))
    deleted = stripe_api.http.delete(f"/v1/customers/{customer.id}").json()
    assert deleted == {"id": customer.id, "object": "customer", "deleted": True}
    assert set(endpoint) == set(json.loads((FIXTURES / "webhook_endpoint.json").read_text())) | {"secret"}
