"""The emulated Stripe account's foundation: its records, events, customers and webhook endpoints.

The account is built in layers, each a module and a class extending the one before, so each stays
small enough to read while they share one set of records:

- :class:`AccountCore` (here): collections, events and their delivery, ``expand[]``, customers,
  tax rates, webhook endpoints, and the account's sense of time (test clocks);
- :class:`~.sandbox_invoices.Invoicing`: invoice items, invoices, payment intents, charges;
- :class:`~.sandbox_credits.Credits`: refunds and credit notes;
- :class:`~.sandbox_subscriptions.Subscriptions`: products, prices, subscriptions;
- :class:`~.sandbox_clocks.Clocks`: test clocks, and the renewals they bring on;
- :class:`~.sandbox_previews.Previews`: invoice previews (the invoice a subscription or the
  pending items would make next).

Not thread-safe by itself: :class:`~.sandbox.StripeSandbox` calls it under its lock. Each operation
takes a :class:`~.sandbox_wire.Call` and returns the object Stripe would answer with (the stored
record itself; the HTTP layer serializes it before releasing the lock).
"""

import copy
import re
import secrets
from functools import partial

from crossledger.plugins.sandbox import WebhookSender
from crossledger.plugins.stripe.client import API_VERSION
from crossledger.plugins.stripe.sandbox_search import CUSTOMER_FIELDS, search
from crossledger.plugins.stripe.sandbox_wire import (
    Call,
    Collection,
    Params,
    Record,
    assign,
    deleted,
    encode,
    invalid,
    new_id,
    now,
    token,
)
from crossledger.plugins.stripe.signature import signature_header

TEST_PAYMENT_METHOD = re.compile(r"pm_\w+")
"""What the sandbox takes for a payment method id: Stripe's test tokens (``pm_card_visa``), since
it has no payment methods API to attach real ones. See :func:`declines`."""

DECLINING_SUFFIXES = ("chargeDeclined", "chargeCustomerFail")


def declines(payment_method: str) -> bool:
    """Whether charging this test payment method fails, as Stripe's test cards of these names do
    (``pm_card_chargeCustomerFail`` attaches fine and fails when charged: the card for renewals)."""
    return payment_method.endswith(DECLINING_SUFFIXES)


def _customer(created: int, test_clock: str | None) -> Record:
    """A new customer with the field set of Stripe's customer object."""
    return {
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "id": new_id("cus"),
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "object": "customer",
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": test_clock,
    }


def _webhook_endpoint(url: str, events: list[str], api_version: str | None, created: int) -> Record:
    return {
        "api_version": api_version,
        "application": None,
        "created": created,
        "description": None,
        "enabled_events": events,
        "id": new_id("we"),
        "livemode": False,
        "metadata": {},
        "object": "webhook_endpoint",
        "status": "enabled",
        "url": url,
    }


def _webhook_headers(secret: str, body: bytes) -> dict[str, str]:
    """Headers of one delivery attempt: signed at the moment of the attempt, as Stripe does."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(secret, now(), body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


class AccountCore:
    """Records, events, customers, tax rates and webhook endpoints (see the module doc)."""

    CUSTOMER_FIELDS = (
        "address", "description", "email", "invoice_settings", "metadata", "name", "phone", "preferred_locales",
        "tax_exempt",
    )

    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender
        self.customers = Collection("customer", "/v1/customers", ("email", "test_clock"))
        self.deleted_customers: dict[str, Record] = {}
        self.tax_rates = Collection("tax_rate", "/v1/tax_rates", ("active",))
        self.test_clocks = Collection("test_clock", "/v1/test_helpers/test_clocks")
        self.webhook_endpoints = Collection("webhook_endpoint", "/v1/webhook_endpoints")
        self.events = Collection("event", "/v1/events", ("type",))
        self._secrets: dict[str, str] = {}
        self.expandable: dict[str, Collection] = {"customer": self.customers, "test_clock": self.test_clocks}
        """Fields holding an id that ``expand[]`` may replace with the object it names; each layer
        adds its own."""

    # Time

    def now_for(self, record: Record) -> int:
        """The time as ``record`` lives it: its test clock's frozen time, else the wall clock.

        Everything about a customer on a test clock (its invoices, subscriptions, charges) is
        stamped with the clock's time, which only moves when the clock is advanced. A record with
        no ``test_clock`` field of its own (a charge) lives on its customer's.
        """
        clock = record.get("test_clock")
        if "test_clock" not in record and isinstance(record.get("customer"), str):
            owner = self.customers.records.get(record["customer"]) or self.deleted_customers.get(record["customer"])
            clock = owner["test_clock"] if owner else None
        return int(self.test_clocks.get(clock)["frozen_time"]) if clock else now()

    # Generic reads

    def retrieve(self, collection: Collection, call: Call) -> Record:
        call.params.accept()
        return collection.get(call.id)

    def page(self, collection: Collection, call: Call) -> Record:
        return collection.page(call.params)

    def check_expand(self, paths: list[str]) -> None:
        """Refuse, before anything happens, an ``expand[]`` path naming a field that cannot expand."""
        for path in paths:
            if not set(path.split(".")) <= {"data", *self.expandable}:
                raise invalid(f"This property cannot be expanded ({path}).", param="expand")

    def expand(self, payload: Record, paths: list[str]) -> Record:
        """``payload`` with the id at each dotted path replaced by its object (lists via ``data``)."""
        for path in paths:
            payload = self._expand(payload, path.split("."))
        return payload

    def _expand(self, obj: Record, parts: list[str]) -> Record:
        head, rest = parts[0], parts[1:]
        value = obj.get(head)
        if head == "data" and isinstance(value, list):
            return {**obj, "data": [self._expand(item, rest) for item in value]} if rest else obj
        if isinstance(value, str) and head in self.expandable:
            value = self.expandable[head].records.get(value)
        if not isinstance(value, dict):
            return obj
        return {**obj, head: self._expand(value, rest) if rest else value}

    # Customers

    def create_customer(self, call: Call) -> Record:
        params = call.params.accept(*self.CUSTOMER_FIELDS, "test_clock")
        clock = params.text("test_clock")
        if clock is not None:
            self.test_clocks.get(clock, param="test_clock")
        customer = _customer(self.now_for({"test_clock": clock}), clock)
        self._assign_customer(customer, call)
        self.customers.add(customer)
        self._emit("customer.created", customer, call)
        return customer

    def search_customers(self, call: Call) -> Record:
        return search(self.customers, call.params, CUSTOMER_FIELDS)

    def retrieve_customer(self, call: Call) -> Record:
        call.params.accept()
        gone = self.deleted_customers.get(call.id)
        return deleted(gone) if gone else self.customers.get(call.id)

    def update_customer(self, call: Call) -> Record:
        call.params.accept(*self.CUSTOMER_FIELDS)
        customer = self.customers.get(call.id)
        before = copy.deepcopy(customer)
        self._assign_customer(customer, call)
        self._emit_update("customer.updated", before, customer, call)
        return customer

    def _assign_customer(self, customer: Record, call: Call) -> None:
        """The plain fields, and the one invoice setting the sandbox knows: the default payment method."""
        settings = call.params.hash("invoice_settings")
        if settings is not None:
            settings.accept("default_payment_method")
            method = self.payment_method(settings, "default_payment_method")
            customer["invoice_settings"]["default_payment_method"] = method
        assign(customer, call.params, [name for name in self.CUSTOMER_FIELDS if name != "invoice_settings"])

    def delete_customer(self, call: Call) -> Record:
        """Delete the customer; as in Stripe, its subscriptions end with it."""
        call.params.accept()
        customer = self.customers.get(call.id)
        self._customer_deleted(customer, call)
        del self.customers.records[customer["id"]]
        self.deleted_customers[customer["id"]] = customer
        self._emit("customer.deleted", customer, call)
        return deleted(customer)

    def _customer_deleted(self, customer: Record, call: Call) -> None:
        """What deleting a customer ends besides the customer; a later layer fills it in."""

    def payment_method(self, params: Params, name: str) -> str | None:
        """A payment method parameter: a test token (see :data:`TEST_PAYMENT_METHOD`), or ``""`` to unset."""
        value = params.text(name)
        if not value:
            return None
        if not TEST_PAYMENT_METHOD.fullmatch(value):
            raise invalid(f"No such PaymentMethod: '{value}'", param=params.name(name), code="resource_missing")
        return value

    def adopt_currency(self, customer: Record, currency: str, call: Call) -> None:
        """A customer takes the currency of the first thing billed to it."""
        if customer["currency"] is None:
            before = copy.deepcopy(customer)
            customer["currency"] = currency
            self._emit_update("customer.updated", before, customer, call)

    # Tax rates

    def create_tax_rate(self, call: Call) -> Record:
        params = call.params.accept("active", "country", "description", "display_name", "inclusive", "jurisdiction",
                                    "metadata", "percentage", "state", "tax_type")
        percentage = params.decimal("percentage")
        if percentage is None:
            raise invalid("Missing required param: percentage.", param="percentage", code="parameter_missing")
        if not 0 <= percentage <= 100:
            raise invalid("percentage must be between 0 and 100.", param="percentage")
        inclusive = params.flag("inclusive")
        if inclusive is None:
            raise invalid("Missing required param: inclusive.", param="inclusive", code="parameter_missing")
        if inclusive:
            raise invalid("This sandbox emulates exclusive tax rates only (inclusive=false).", param="inclusive")
        rate = {
            "active": params.flag("active") is not False, "country": params.text("country"), "created": now(),
            "description": params.text("description"), "display_name": params.required("display_name"),
            "effective_percentage": float(percentage), "flat_amount": None, "id": new_id("txr"), "inclusive": False,
            "jurisdiction": params.text("jurisdiction"), "jurisdiction_level": None, "livemode": False,
            "metadata": params.mapping("metadata"), "object": "tax_rate", "percentage": float(percentage),
            "rate_type": "percentage", "state": params.text("state"), "tax_type": params.text("tax_type"),
        }
        self.tax_rates.add(rate)
        self._emit("tax_rate.created", rate, call)
        return rate

    # Webhook endpoints and events

    def create_webhook_endpoint(self, call: Call) -> Record:
        """Register an endpoint; its signing secret is in this answer and never again."""
        params = call.params.accept("api_version", "description", "enabled_events", "metadata", "url")
        url = params.required("url")
        if not re.match(r"https?://", url):
            raise invalid(f"Invalid URL: {url}. Use an http:// or https:// URL.", param="url", code="url_invalid")
        events = params.strings("enabled_events")
        if not events:
            raise invalid("Missing required param: enabled_events.", param="enabled_events", code="parameter_missing")
        endpoint = self.webhook_endpoints.add(_webhook_endpoint(url, events, params.text("api_version"), now()))
        assign(endpoint, params, ("description", "metadata"))
        self._secrets[endpoint["id"]] = f"whsec_{token(32)}"
        return {**endpoint, "secret": self._secrets[endpoint["id"]]}

    def delete_webhook_endpoint(self, call: Call) -> Record:
        call.params.accept()
        endpoint = self.webhook_endpoints.get(call.id)
        del self.webhook_endpoints.records[endpoint["id"]]
        del self._secrets[endpoint["id"]]
        return deleted(endpoint)

    def resend(self, event_id: str) -> int:
        """Deliver an event again to the endpoints listening for it now; how many there were."""
        return self._deliver(self.events.get(event_id))

    def _emit(self, type_: str, obj: Record, call: Call, previous: Record | None = None) -> None:
        """Record an event about ``obj`` (a snapshot of it as it is now) and deliver it."""
        data: Record = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = self.events.add(
            {
                "api_version": API_VERSION,
                "created": now(),
                "data": data,
                "id": new_id("evt"),
                "livemode": False,
                "object": "event",
                "pending_webhooks": len(self._listeners(type_)),
                "request": dict(call.request),
                "type": type_,
            }
        )
        self._deliver(event)

    def _emit_update(self, type_: str, before: Record, after: Record, call: Call) -> None:
        """Emit ``*.updated`` with the previous values of what changed; nothing changed, no event."""
        previous = {key: before[key] for key in after if before.get(key) != after[key]}
        if previous:
            self._emit(type_, after, call, previous)

    def _listeners(self, type_: str) -> list[Record]:
        return [
            endpoint
            for endpoint in self.webhook_endpoints.records.values()
            if type_ in endpoint["enabled_events"] or "*" in endpoint["enabled_events"]
        ]

    def _deliver(self, event: Record) -> int:
        endpoints = self._listeners(event["type"])
        body = encode(event, indent=2)
        for endpoint in endpoints:
            self._sender.send(endpoint["url"], body, partial(_webhook_headers, self._secrets[endpoint["id"]]))
        return len(endpoints)
