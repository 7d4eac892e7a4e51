"""Every answer of the Stripe sandbox checked against Stripe's published OpenAPI description.

The test drives the sandbox the way the hub and Stripe's users do (Stripe's official SDK for
most of it, raw HTTP for errors the SDK would not send), and every answer on the way is checked
against the schema its operation answers with in the spec (:mod:`crossledger.testing.specs.stripe`
on :mod:`crossledger.testing.specs.openapi`). Objects inside events (``data.object``, untyped in the
spec) are checked against their own component schema.

The spec (``tests/fixtures/specs/stripe-openapi-spec3.json.gz``, Stripe's ``openapi/spec3.yaml``
of 2023-09-12 as JSON) describes API version **2023-08-16**, while the sandbox, the hub's client
and stripe-python 16 speak ``2026-10-28.endive``. The differences that are API-version drift, and
only those, are accepted by :data:`~crossledger.testing.specs.stripe.DRIFT` (and ``ADDED`` for
operations newer than the spec); :func:`test_drift_entries_are_real_drift` checks each entry against
the SDK's generated models (which follow the pinned version), and an entry no answer needs fails the
run, so the allow-list can neither hide a departure of the sandbox's own nor go stale.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import stripe
from crossledger.testing.specs import stripe as stripe_spec
from crossledger.testing.specs.answers import Recorder
from crossledger.testing.specs.openapi import OpenAPISpec
from crossledger.testing.specs.stripe import ADDED, DRIFT, NEWER_OBJECTS, DriftFilter, events_in
from stripe._object_classes import OBJECT_CLASSES

from tests.kits.stripe import RunningStripe

SPEC = Path(__file__).parent / "fixtures" / "specs" / "stripe-openapi-spec3.json.gz"
MONTH = 31 * 86_400
JAN_2030 = 1_893_456_000


@pytest.fixture(scope="session")
def spec() -> OpenAPISpec:
    """The spec, loaded once per test session (5 MB of JSON)."""
    return OpenAPISpec.load(SPEC)


@dataclass
class Recorded:
    """A sandbox on loopback, every answer of which is recorded and checked against the spec."""

    api: RunningStripe
    recorder: Recorder
    drift: DriftFilter


@pytest.fixture
def recorded(spec: OpenAPISpec) -> Iterator[Recorded]:
    drift = DriftFilter()
    recorder: Recorder | None = None

    def wrap(app: Any) -> Recorder:
        nonlocal recorder
        recorder = Recorder(app, stripe_spec.checker(spec, drift))
        return recorder

    running = RunningStripe(wrap=wrap)
    assert recorder is not None
    yield Recorded(running, recorder, drift)
    running.close()


# -- The exercise ----------------------------------------------------------------------------------------------


def exercise(api: RunningStripe) -> None:
    """What the hub and Stripe's users do with the account, each kind of object through its lifecycle."""
    v1, http = api.client.v1, api.http
    # Webhook endpoints, customers, search
    endpoint = v1.webhook_endpoints.create({"url": "https://hub.test/webhooks", "enabled_events": ["*"]})
    v1.webhook_endpoints.retrieve(endpoint.id)
    v1.webhook_endpoints.list()
    v1.webhook_endpoints.delete(v1.webhook_endpoints.create({"url": "https://old.test/hooks",
                                                             "enabled_events": ["invoice.paid"]}).id)
    customer = v1.customers.create({
        "name": "Acme Ltd", "email": "ap@acme.test", "phone": "+1 555 0100", "description": "key account",
        "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
        "metadata": {"crossledger_id": "customer/crm/1"}, "preferred_locales": ["en"],
        "invoice_settings": {"default_payment_method": "pm_card_visa"},
    })
    v1.customers.update(customer.id, {"phone": "", "metadata": {"tier": "gold"}})
    v1.customers.retrieve(customer.id)
    v1.customers.list({"email": "ap@acme.test", "limit": 1})
    v1.customers.search({"query": 'metadata["crossledger_id"]:"customer/crm/1" AND email:"ap@acme.test"'})
    v1.customers.search({"query": "name~'acme' OR phone:'+1 555 0100'", "limit": 1})
    gone = v1.customers.create({"name": "Gone Inc"})
    v1.customers.delete(gone.id)
    v1.customers.retrieve(gone.id)
    # Catalogue and tax
    product = v1.products.create({"name": "Pro plan", "description": "everything", "metadata": {"tier": "pro"}})
    v1.products.update(product.id, {"active": False})
    v1.products.update(product.id, {"active": True})
    v1.products.retrieve(product.id)
    v1.products.list({"active": True})
    monthly = v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 2000, "nickname": "monthly",
                                "recurring": {"interval": "month"}, "lookup_key": "pro-monthly"})
    bigger = v1.prices.create({"product_data": {"name": "Pro plus"}, "currency": "usd", "unit_amount": 5000,
                               "recurring": {"interval": "month"}})
    v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 9900})
    v1.prices.update(monthly.id, {"metadata": {"plan": "pro"}})
    v1.prices.retrieve(monthly.id, {"expand": ["product"]})
    v1.prices.list({"product": product.id, "type": "recurring"})
    vat = v1.tax_rates.create({"display_name": "VAT", "percentage": 20.0, "inclusive": False, "country": "FR",
                               "jurisdiction": "FR", "description": "French VAT"})
    v1.tax_rates.retrieve(vat.id)
    v1.tax_rates.list({"active": True})
    # Invoices through their states, paid by card and out of band, with the payments they make
    v1.invoice_items.create({"customer": customer.id, "amount": 1500, "currency": "usd", "description": "setup"})
    item = v1.invoice_items.create({"customer": customer.id, "unit_amount_decimal": Decimal(250), "quantity": 3,
                                    "currency": "usd"})
    v1.invoice_items.retrieve(item.id)
    v1.invoice_items.list({"customer": customer.id})
    preview = v1.invoices.create_preview({"customer": customer.id, "invoice_items": [{"amount": 100,
                                                                                      "currency": "usd"}]})
    assert preview.total == 1500 + 750 + 100
    invoice = v1.invoices.create({"customer": customer.id, "default_tax_rates": [vat.id], "metadata": {"po": "42"},
                                  "auto_advance": False})
    v1.invoices.update(invoice.id, {"description": "April", "collection_method": "send_invoice",
                                    "days_until_due": 30})
    v1.invoices.finalize_invoice(invoice.id)
    v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
    v1.invoices.retrieve(invoice.id, {"expand": ["customer"]})
    v1.invoices.list({"customer": customer.id, "status": "paid"})
    v1.invoices.search({"query": f'customer:"{customer.id}" AND status:"paid"'})
    v1.invoices.search({"query": 'metadata["po"]:"42" OR total>100000', "limit": 1})
    [payment] = v1.invoice_payments.list({"invoice": invoice.id}).data
    v1.invoice_payments.retrieve(payment.id)
    assert isinstance(payment.payment.payment_intent, str)
    intent = v1.payment_intents.retrieve(payment.payment.payment_intent, {"expand": ["latest_charge"]})
    v1.payment_intents.list({"customer": customer.id})
    assert intent.latest_charge is not None and not isinstance(intent.latest_charge, str)
    charge = v1.charges.retrieve(intent.latest_charge.id)
    v1.charges.list({"payment_intent": intent.id})
    refund = v1.refunds.create({"charge": charge.id, "amount": 500, "reason": "requested_by_customer",
                                "metadata": {"ticket": "7"}})
    v1.refunds.retrieve(refund.id)
    v1.refunds.list({"charge": charge.id})
    note = v1.credit_notes.create({"invoice": invoice.id, "amount": 300, "reason": "order_change",
                                   "refund_amount": 300})
    v1.credit_notes.retrieve(note.id)
    credited = v1.credit_notes.create({"invoice": invoice.id, "amount": 200, "memo": "goodwill"})
    v1.credit_notes.void_credit_note(credited.id)
    v1.credit_notes.list({"invoice": invoice.id})
    v1.invoice_items.create({"customer": customer.id, "amount": 900, "currency": "usd"})
    open_one = v1.invoices.create({"customer": customer.id})
    v1.invoices.finalize_invoice(open_one.id)
    v1.credit_notes.create({"invoice": open_one.id, "lines": [
        {"type": "invoice_line_item", "invoice_line_item": open_one.lines.data[0].id, "amount": 600},
        {"type": "custom_line_item", "unit_amount": 50, "description": "discount"}]})
    v1.invoices.mark_uncollectible(open_one.id)
    v1.invoices.void_invoice(open_one.id)
    v1.invoice_items.create({"customer": customer.id, "amount": 400, "currency": "usd"})
    out_of_band = v1.invoices.create({"customer": customer.id})
    v1.invoices.finalize_invoice(out_of_band.id)
    v1.invoices.pay(out_of_band.id, {"paid_out_of_band": True})
    # Subscriptions on a test clock: created, upgraded with prorations, renewed, failed, canceled
    clock = v1.test_helpers.test_clocks.create({"frozen_time": JAN_2030, "name": "billing"})
    subscriber = v1.customers.create({"name": "Clocked", "test_clock": clock.id,
                                      "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    expanded = v1.customers.retrieve(subscriber.id, {"expand": ["test_clock"]}).test_clock
    assert isinstance(expanded, stripe.test_helpers.TestClock) and expanded.id == clock.id
    subscription = v1.subscriptions.create({"customer": subscriber.id, "items": [{"price": monthly.id}],
                                            "metadata": {"deal": "d-1"}, "expand": ["latest_invoice"]})
    v1.subscriptions.update(subscription.id, {"items": [{"id": subscription["items"].data[0].id,
                                                         "price": bigger.id}],
                                              "proration_behavior": "always_invoice"})
    v1.invoices.create_preview({"customer": subscriber.id, "subscription": subscription.id})
    v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": JAN_2030 + MONTH})
    v1.test_helpers.test_clocks.retrieve(clock.id)
    v1.test_helpers.test_clocks.list()
    v1.customers.update(subscriber.id, {"invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"}})
    v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": JAN_2030 + 2 * MONTH})
    v1.subscriptions.retrieve(subscription.id, {"expand": ["customer"]})
    v1.subscriptions.search({"query": 'status:"past_due" AND metadata["deal"]:"d-1"'})
    v1.subscriptions.list({"customer": subscriber.id, "status": "all"})
    trial = v1.subscriptions.create({"customer": subscriber.id, "items": [{"price": monthly.id, "quantity": 2}],
                                     "trial_period_days": 14, "cancel_at_period_end": True})
    v1.subscriptions.cancel(trial.id, {"cancellation_details": {"comment": "too early"}})
    billed_later = v1.customers.create({"name": "Pays later"})
    v1.subscriptions.create({"customer": billed_later.id, "items": [{"price": monthly.id}],
                             "collection_method": "send_invoice", "days_until_due": 14})
    v1.customers.delete(billed_later.id)
    # Events
    [event] = v1.events.list({"type": "invoice.paid", "limit": 1}).data
    v1.events.retrieve(event.id)
    served = 0
    params: dict[str, str | int] = {"limit": 100}
    while True:  # every event, so that each is checked
        page = http.get("/v1/events", params=params).json()
        served += len(page["data"])
        if not page["has_more"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    assert served == api.sandbox.state()["events"]
    # Errors of each kind
    _errors(api)


def _errors(api: RunningStripe) -> None:
    """One request for each kind of error Stripe answers, each checked to be that error."""
    http, v1 = api.http, api.client.v1
    customer = v1.customers.create({"name": "Errs"})
    invoice = v1.invoices.create({"customer": customer.id})
    asked = [
        (400, "parameter_unknown", http.post("/v1/customers", data={"name": "x", "nickname": "y"})),
        (400, "parameter_missing", http.post("/v1/invoiceitems", data={"amount": "100", "currency": "usd"})),
        (400, "parameter_invalid_integer",
         http.post("/v1/invoiceitems", data={"customer": customer.id, "amount": "ten", "currency": "usd"})),
        (400, "resource_missing", http.post("/v1/invoices", data={"customer": "cus_nope"})),
        (404, "resource_missing", http.get("/v1/invoices/in_nope")),
        (400, None, http.get("/v1/customers", params={"limit": 101})),
        (400, None, http.get("/v1/customers/search", params={"query": "created>yesterday"})),
        (400, None, http.get("/v1/invoices/search", params={"query": "email:'x'"})),
        (400, None, http.get("/v1/subscriptions/search", params={"query": "status:"})),
        (400, None, http.post(f"/v1/invoices/{invoice.id}/void")),
        (400, "parameter_missing", http.post("/v1/invoices/create_preview", data={"customer": customer.id})),
        (404, None, http.get("/v1/customers/cus_1/nonsense")),
        (401, None, http.get("/v1/customers", headers={"Authorization": ""})),
        (401, None, http.get("/v1/customers", headers={"Authorization": "Bearer sk_test_wrong"})),
        (200, None, http.post("/v1/customers", data={"name": "a"}, headers={"Idempotency-Key": "k"})),
        (400, None, http.post("/v1/customers", data={"name": "b"}, headers={"Idempotency-Key": "k"})),
    ]
    v1.invoice_items.create({"customer": customer.id, "amount": 100, "currency": "usd", "invoice": invoice.id})
    v1.invoices.finalize_invoice(invoice.id)
    asked.append((402, "card_declined",
                  http.post(f"/v1/invoices/{invoice.id}/pay", data={"payment_method": "pm_card_chargeDeclined"})))
    v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
    [payment] = v1.invoice_payments.list({"invoice": invoice.id}).data
    asked.append((400, "amount_too_large", http.post("/v1/refunds", data={
        "payment_intent": payment.payment.payment_intent, "amount": "1000"})))
    for mode, status in (("http_429", 429), ("http_500", 500), ("down", 503)):
        http.post("/_sandbox/faults", json={"mode": mode, "count": 1}).raise_for_status()
        asked.append((status, "rate_limit" if status == 429 else None, http.get("/v1/customers")))
    answered = [(response.status_code, response.json().get("error", {}).get("code")) for _, _, response in asked]
    assert answered == [(status, code) for status, code, _ in asked]


def test_every_answer_of_the_sandbox_conforms_to_stripes_spec(recorded: Recorded) -> None:
    exercise(recorded.api)
    departures = recorded.recorder.take_departures()
    assert departures == [], "\n".join(departures)
    assert recorded.drift.used == set(DRIFT), "entries of DRIFT that no answer needed: remove them"
    # what was checked: every kind of object the sandbox serves, a list, a search result and errors
    answers = [exchange for exchange in recorded.recorder.exchanges if exchange.path.startswith("/v1/")]
    served = {exchange.json().get("object") for exchange in answers} | {
        obj["data"]["object"]["object"] for exchange in answers for obj in events_in(exchange.json())}
    assert served >= {"customer", "product", "price", "tax_rate", "invoiceitem", "invoice", "invoice_payment",
                      "payment_intent", "charge", "refund", "credit_note", "subscription", "test_helpers.test_clock",
                      "webhook_endpoint", "event", "list", "search_result"}
    assert {exchange.status for exchange in answers} >= {200, 400, 401, 402, 404, 429, 500}


def test_drift_entries_are_real_drift(spec: OpenAPISpec) -> None:
    """Each accepted difference is one the spec has and the SDK's models (the pinned version) confirm."""
    schemas = spec.document["components"]["schemas"]
    for drift in DRIFT:
        *parents, name = drift.field.split(".")
        assert not parents and drift.keyword == "required", f"only removed top-level fields so far: {drift}"
        assert name in schemas[drift.owner]["required"], f"the spec does not require {drift}"
        assert name not in sdk_model(drift.owner).__annotations__, f"the pinned version still has {drift}"
    client = stripe.StripeClient("sk_test_unused")
    for added in ADDED:
        assert not any(re.fullmatch(re.sub(r"\{[^/]+\}", "{id}", template), added.path)
                       for template in spec.document["paths"]), f"the spec already has {added}"
        service, method = added.sdk
        assert callable(getattr(getattr(client.v1, service), method)), f"the SDK lacks {added}"
    for kind in NEWER_OBJECTS:
        assert kind not in schemas and kind == sdk_model(kind).OBJECT_NAME


def sdk_model(object_name: str) -> Any:
    """stripe-python's generated class for objects of this ``object`` value."""
    module, name = OBJECT_CLASSES[object_name]
    return getattr(import_module(module), name)
