"""Every answer of the Stripe sandbox checked against Stripe's published OpenAPI description.

The test drives the sandbox the way the hub and Stripe's users do (Stripe's official SDK for
most of it, raw HTTP for errors the SDK would not send), records every response on the way, and
validates each JSON body against the schema its operation answers with in the spec, ``$ref``s
resolved and ``nullable`` understood (:mod:`crossledger.testing.openapi_check`). Objects inside
events (``data.object``, untyped in the spec) are checked against their own component schema.

The spec (``tests/fixtures/specs/stripe-openapi-spec3.json.gz``, Stripe's ``openapi/spec3.yaml``
of 2023-09-12 as JSON) describes API version **2023-08-16**, while the sandbox, the hub's client
and stripe-python 16 speak ``2026-10-28.endive``. The differences that are API-version drift, and
only those, are accepted by :data:`DRIFT` (and :data:`ADDED` for operations newer than the spec);
each entry says which version changed what, :func:`test_drift_entries_are_real_drift` checks each
one against the SDK's generated models (which follow the pinned version), and an entry no answer
needs fails the run, so the allow-list can neither hide a departure of the sandbox's own nor go
stale.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import stripe
from crossledger.testing.openapi_check import Exchange, OpenAPISpec, Problem, Recorder
from stripe._object_classes import OBJECT_CLASSES

from tests.kits.stripe import RunningStripe

SPEC = Path(__file__).parent / "fixtures" / "specs" / "stripe-openapi-spec3.json.gz"
MONTH = 31 * 86_400
JAN_2030 = 1_893_456_000


@pytest.fixture(scope="session")
def spec() -> OpenAPISpec:
    """The spec, loaded once per test session (5 MB of JSON)."""
    return OpenAPISpec.load(SPEC)


@pytest.fixture
def recorded() -> Iterator[tuple[RunningStripe, Recorder]]:
    """A sandbox on loopback whose every answer is recorded."""
    recorder: Recorder | None = None

    def wrap(app: Any) -> Recorder:
        nonlocal recorder
        recorder = Recorder(app)
        return recorder

    running = RunningStripe(wrap=wrap)
    assert recorder is not None
    yield running, recorder
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


# -- What the spec is allowed to disagree on -------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """A difference between API version 2023-08-16 (the spec) and the pinned one, documented by Stripe."""

    owner: str
    """The ``object`` the field belongs to."""
    field: str
    """The field, dotted from the object (``automatic_tax.status``)."""
    keyword: str
    """How the spec sees it: ``required`` for a field the spec requires and later versions removed."""
    why: str


BASIL = "2025-03-31.basil"
DRIFT = (
    Drift("invoice", "paid", "required", f"{BASIL} removed it: `status` says whether an invoice is paid"),
    Drift("invoice", "paid_out_of_band", "required", f"{BASIL} removed it: invoice payments say how it was paid"),
    Drift("invoice", "total_tax_amounts", "required", f"{BASIL} replaced it with `total_taxes`"),
    Drift("line_item", "proration", "required",
          f"{BASIL} moved it to `parent.invoice_item_details` / `parent.subscription_item_details`"),
    Drift("line_item", "type", "required", f"{BASIL} replaced it with `parent.type`"),
    Drift("credit_note", "tax_amounts", "required", f"{BASIL} replaced it with `total_taxes`"),
    Drift("credit_note_line_item", "tax_amounts", "required", f"{BASIL} replaced it with `taxes`"),
    Drift("product", "features", "required", "2024-04-10 renamed it `marketing_features`"),
    Drift("subscription", "current_period_start", "required", f"{BASIL} moved it to each subscription item"),
    Drift("subscription", "current_period_end", "required", f"{BASIL} moved it to each subscription item"),
)
"""Every accepted difference, each checked against the SDK by :func:`test_drift_entries_are_real_drift`."""


@dataclass(frozen=True)
class Added:
    """An operation newer than the spec, and the component schema its answer is checked against
    (None: the spec has no schema for what it answers)."""

    method: str
    path: str
    component: str | None
    sdk: tuple[str, str]
    """The SDK's service and method for it (``client.v1.<service>.<method>``), which the pinned version has."""
    why: str


ADDED = (
    Added("POST", "/v1/invoices/create_preview", "invoice", ("invoices", "create_preview"),
          "2024-04-10 added it (in place of GET /v1/invoices/upcoming, which basil removed); it answers an invoice"),
    Added("GET", "/v1/invoice_payments", None, ("invoice_payments", "list"),
          f"{BASIL} added invoice payments; the 2023 spec has no invoice_payment schema"),
    Added("GET", "/v1/invoice_payments/{id}", None, ("invoice_payments", "retrieve"),
          f"{BASIL} added invoice payments; the 2023 spec has no invoice_payment schema"),
)
NEWER_OBJECTS = {"invoice_payment": f"{BASIL} added it (events such as invoice_payment.paid carry one)"}


def stripe_object_at(document: Any, location: tuple[str | int, ...]) -> tuple[str | None, str]:
    """The Stripe object a location is in (the ``object`` of the nearest enclosing object that has
    one) and the field path within it, list indexes left out: ``("invoice", "lines")``."""
    owner: str | None = None
    path: list[str] = []
    node: Any = document
    for part in (None, *location):
        if part is not None:
            node = node[part]
            if isinstance(part, str):
                path.append(part)
        if isinstance(node, dict) and isinstance(node.get("object"), str):
            owner, path = node["object"], []
    return owner, ".".join(path)


@dataclass
class DriftFilter:
    """Accepts the problems :data:`DRIFT` lists, and remembers which entries it needed."""

    used: set[Drift] = field(default_factory=set)

    def __call__(self, document: Any, problem: Problem) -> bool:
        owner, path = stripe_object_at(document, problem.location)
        if problem.keyword == "required":
            path = ".".join(filter(None, [path, problem.name]))
        found = next((d for d in DRIFT if (d.owner, d.field, d.keyword) == (owner, path, problem.keyword)), None)
        if found is not None:
            self.used.add(found)
        return found is not None


def _added(exchange: Exchange) -> Added | None:
    for added in ADDED:
        pattern = added.path.replace("{id}", "[^/]+")
        if exchange.method == added.method and re.fullmatch(pattern, exchange.path):
            return added
    return None


# -- Checking what was answered ------------------------------------------------------------------------------


def departures(spec: OpenAPISpec, exchange: Exchange, is_drift: DriftFilter) -> list[str]:
    """How one answer departs from the spec (drift aside), each as ``METHOD path status: problem``."""
    body = exchange.json()
    added = _added(exchange)
    if exchange.status >= 400 and (added or spec.operation(exchange.method, exchange.path) is None):
        problems = spec.check_component("error", body, is_drift)  # errors of any route have one shape
    elif added is not None:
        problems = [] if added.component is None else spec.check_component(added.component, body, is_drift)
    else:
        problems = spec.check(exchange.method, exchange.path, exchange.status, body, is_drift)
    for event in _events_in(body):
        problems += _object_problems(spec, event["data"]["object"], ("data", "object"), is_drift)
    return [f"{exchange.method} {exchange.path} {exchange.status}: {problem}" for problem in problems]


def _events_in(body: Any) -> list[dict[str, Any]]:
    items = body["data"] if isinstance(body, dict) and body.get("object") == "list" else [body]
    return [item for item in items if isinstance(item, dict) and item.get("object") == "event"]


def _object_problems(spec: OpenAPISpec, obj: dict[str, Any], at: tuple[str, ...],
                     is_drift: DriftFilter) -> list[Problem]:
    """An event's object (untyped in the spec) checked against the component schema of its type."""
    kind = obj["object"]
    if kind in NEWER_OBJECTS:
        return []
    if kind not in spec.document["components"]["schemas"]:
        return [Problem(at, "object", f"the spec has no schema for a {kind!r}")]
    return [Problem(at + problem.location, problem.keyword, problem.message, problem.name)
            for problem in spec.check_component(kind, obj, is_drift)]


def test_every_answer_of_the_sandbox_conforms_to_stripes_spec(
        spec: OpenAPISpec, recorded: tuple[RunningStripe, Recorder]) -> None:
    api, recorder = recorded
    exercise(api)
    answers = [exchange for exchange in recorder.exchanges if exchange.path.startswith("/v1/")]
    drift = DriftFilter()
    assert [departure for exchange in answers for departure in departures(spec, exchange, drift)] == []
    assert drift.used == set(DRIFT), "entries of DRIFT that no answer needed: remove them"
    # what was checked: every kind of object the sandbox serves, a list, a search result and errors
    served = {exchange.json().get("object") for exchange in answers} | {
        obj["data"]["object"]["object"] for exchange in answers for obj in _events_in(exchange.json())}
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
