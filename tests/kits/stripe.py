"""The Stripe connector's contract kit: how Stripe signs webhooks, its documented test vector,
webhook bodies made from Stripe's own example objects, and where the customers the sample events
make show in the sandbox (``state["customers"]``, the name as ``name``). Also
:class:`RunningStripe`, the sandbox on loopback that the Stripe tests drive."""

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx
import stripe
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings
from crossledger.plugins.stripe.sandbox.app import StripeSandbox
from crossledger.plugins.stripe.signature import signature_header
from crossledger.plugins.types import Context, InboundEvent
from crossledger.testing.kit import ContractKit, Headers, SignatureVector
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

FIXTURES = Path(__file__).parent.parent / "fixtures" / "payloads" / "stripe"

VECTOR_SECRET = "whsec_test_secret"
VECTOR_T = 1700000000
VECTOR_BODY = b'{"id":"evt_test","object":"event"}'
VECTOR_V1 = "8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724"

DOCUMENTED_VECTOR = SignatureVector(
    secret=VECTOR_SECRET,
    headers={"Stripe-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"},
    body=VECTOR_BODY,
    now=VECTOR_T,
    valid=True,
    source="stripe-python _webhook.py's algorithm: whsec_test_secret, t=1700000000, the body of evt_test",
)
STALE_VECTOR = SignatureVector(
    secret=VECTOR_SECRET,
    headers={"Stripe-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"},
    body=VECTOR_BODY,
    now=VECTOR_T + 301,
    valid=False,
    source="the same delivery 301 s later: past the SDK's default tolerance of 300 s",
)

SAMPLE_EVENTS = [
    ("customer.created", "customer"),
    ("customer.updated", "customer"),
    ("customer.deleted", "deleted_customer"),
    ("invoice.finalized", "invoice"),
    ("invoice.voided", "invoice"),
]
"""(event type, fixture object) of the webhook samples. Events whose mapping reads other records from
Stripe (invoice payments, subscriptions, credit notes, refunds) are left out: their fixtures name
records no sandbox holds; the connector's own tests map them against records made in the sandbox."""


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def as_event(event_type: str, obj: dict[str, Any], event_id: str) -> bytes:
    """A webhook body: Stripe's example ``event`` (``event.json``) wrapping ``obj`` as ``event_type``."""
    event = {**fixture("event"), "id": event_id, "type": event_type, "data": {"object": obj}}
    return json.dumps(event).encode()


class StripeKit(ContractKit):
    connector = StripeConnector()
    signature_vectors: ClassVar[list[SignatureVector]] = [DOCUMENTED_VECTOR, STALE_VECTOR]
    retry_after_on_429 = False  # Stripe sends no Retry-After: clients back off on their own

    def sign(self, body: bytes, secret: str, timestamp: float) -> Headers:
        return {"Stripe-Signature": signature_header(secret, int(timestamp), body),
                "Content-Type": "application/json; charset=utf-8"}

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        return {**settings, "webhook_secret": current, "previous_webhook_secret": previous}

    def new_secret(self) -> str:
        return f"whsec_{secrets.token_urlsafe(24)}"

    def webhook_samples(self) -> list[bytes]:
        return [as_event(event_type, fixture(name), f"evt_sample_{n}")
                for n, (event_type, name) in enumerate(SAMPLE_EVENTS)]

    def shows(self, record: dict[str, Any], name: str) -> bool:
        return record.get("name") == name


class RunningStripe:
    """A Stripe sandbox served on loopback (under ``prefix``), with Stripe's official client, a raw
    client for what the SDK hides (headers, status codes), and contexts for the connector."""

    def __init__(self, prefix: str = "", *, wrap: Callable[[ASGIApp], ASGIApp] = lambda app: app) -> None:
        """``wrap`` puts middleware around the sandbox's app (to record what it answers, say)."""
        self.sandbox = StripeSandbox()
        app = wrap(self.sandbox.app)
        self.server = ServerThread(Starlette(routes=[Mount(prefix, app=app)]) if prefix else app).start()
        self.url = self.server.url + prefix
        self.client = stripe.StripeClient(self.sandbox.api_key, base_addresses={"api": self.url},
                                          max_network_retries=0)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.sandbox.api_key}"})

    def context(self, *, timeout_s: float = 5.0) -> Context:
        """What the hub gives the connector for this account."""
        settings = StripeSettings(**self.sandbox.connector_settings(self.url), timeout_s=timeout_s)
        return Context(settings=settings, http=self.http, clock=time.time)

    def events(self, event_type: str, about: str) -> list[InboundEvent]:
        """The account's events of ``event_type`` whose object is ``about`` (an id), oldest first, as
        the webhook deliveries they were parsed into (read from ``GET /v1/events``, Stripe's polling
        fallback)."""
        found: list[dict[str, Any]] = []
        params: dict[str, str | int] = {"type": event_type, "limit": 100}
        while True:
            page = self.http.get("/v1/events", params=params).json()
            found += [event for event in page["data"] if event["data"]["object"].get("id") == about]
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        ctx = self.context()
        return [StripeKit.connector.parse_webhook(ctx, {}, json.dumps(event).encode())[0] for event in found[::-1]]

    def price(self, name: str, amount: int, currency: str = "usd", **fields: Any) -> stripe.Price:
        """A monthly price of ``amount`` for a new product called ``name``."""
        product = self.client.v1.products.create({"name": name})
        return self.client.v1.prices.create({"product": product.id, "currency": currency, "unit_amount": amount,
                                             "recurring": {"interval": "month"}, **fields})

    def clocked_customer(self, at: int, payment_method: str | None = "pm_card_visa") -> stripe.Customer:
        """A customer on a fresh test clock frozen at ``at``, paying with ``payment_method`` by default."""
        clock = self.client.v1.test_helpers.test_clocks.create({"frozen_time": at})
        settings = {"invoice_settings": {"default_payment_method": payment_method}} if payment_method else {}
        return self.client.v1.customers.create({"name": "Acme Ltd", "email": "ap@acme.test", "test_clock": clock.id,
                                                **settings})

    def advance(self, customer: stripe.Customer, to: int) -> None:
        """Move the customer's test clock to ``to`` (and everything due on the way)."""
        assert customer.test_clock is not None
        moved = self.client.v1.test_helpers.test_clocks.advance(customer.test_clock, {"frozen_time": to})
        assert moved.status == "advancing"
        assert self.client.v1.test_helpers.test_clocks.retrieve(customer.test_clock).status == "ready"

    def paid_by_card(self, amount: int, currency: str = "usd") -> tuple[stripe.Invoice, stripe.Charge]:
        """An invoice of ``amount`` for a new customer, paid by card; the invoice and its charge."""
        v1 = self.client.v1
        customer = v1.customers.create({"name": f"{currency.upper()} buyer"})
        v1.invoice_items.create({"customer": customer.id, "amount": amount, "currency": currency})
        invoice = v1.invoices.create({"customer": customer.id})
        v1.invoices.finalize_invoice(invoice.id)
        paid = v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
        [payment] = v1.invoice_payments.list({"invoice": invoice.id}).data
        intent = v1.payment_intents.retrieve(payment.payment.payment_intent)
        assert (intent.status, intent.amount_received) == ("succeeded", amount)
        return paid, v1.charges.retrieve(intent.latest_charge)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
