"""The emulated Stripe account's state: its records, its events and their delivery, its sense of time.

The emulator is put together from parts, each a module that can be read on its own:

- :class:`Account` (here) holds what every part shares: the records of each type, the events
  and their delivery to webhook endpoints, ``expand[]``, and the time as a test clock sees it;
- each area of Stripe's API is a class given the account and the few other areas it uses:
  :class:`~.customers.Customers` (customers, tax rates), :class:`~.webhooks.Webhooks` (webhook
  endpoints, events), :class:`~.invoices.Invoicing` (invoice items, invoices, payment intents,
  charges), :class:`~.credits.Credits` (refunds, credit notes), :class:`~.subscriptions.Subscriptions`
  (products, prices, subscriptions), :class:`~.clocks.Clocks` (test clocks, and the renewals they
  bring on), :class:`~.previews.Previews` (invoice previews: the invoice a subscription or the
  pending items would make next) and :class:`~.search.Search`;
- where one area must react to what happens in another, it subscribes to a named notification
  of that area, a list of :data:`Listener`: deleting a customer ends its subscriptions
  (:attr:`.Customers.on_deleted`), paying an invoice puts its subscription back in good
  standing (:attr:`.Invoicing.on_paid`);
- each area declares the endpoints it answers (``endpoints()``: method, path, handler), and
  :mod:`.app` assembles them into the HTTP app (a literal path segment wins over a path
  parameter, so ``/v1/invoices/search`` is not taken for an invoice id whichever area declares
  it), so adding an endpoint touches one area's module.

The records live in the account rather than in the areas because most areas read several kinds
(a credit note reads invoices, charges and customers), and ``expand[]`` and ``/_sandbox/state``
read them all.

Not thread-safe by itself: :class:`~.app.StripeSandbox` calls it under its lock. Each operation
takes a :class:`~.wire.Call` and returns the object Stripe would answer with (the stored
record itself; the HTTP layer serializes it before releasing the lock).
"""

import copy
from collections.abc import Callable
from functools import partial

from crossledger.plugins.emulator import WebhookSender
from crossledger.plugins.stripe.client import API_VERSION
from crossledger.plugins.stripe.sandbox.wire import Call, Collection, Record, deleted, encode, invalid, new_id, now
from crossledger.plugins.stripe.signature import signature_header

Listener = Callable[[Record, Call], None]
"""One area's reaction to a change in another: given the record that changed and the call that changed it."""


def _webhook_headers(secret: str, body: bytes) -> dict[str, str]:
    """Headers of one delivery attempt: signed at the moment of the attempt, as Stripe does."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(secret, now(), body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


class Account:
    """The records by type, the events and the clock of the emulated account (see the module doc)."""

    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender
        self.customers = Collection("customer", "/v1/customers", ("email", "test_clock"))
        self.deleted_customers: dict[str, Record] = {}
        self.tax_rates = Collection("tax_rate", "/v1/tax_rates", ("active",))
        self.test_clocks = Collection("test_clock", "/v1/test_helpers/test_clocks")
        self.webhook_endpoints = Collection("webhook_endpoint", "/v1/webhook_endpoints")
        self.webhook_secrets: dict[str, str] = {}
        """Each webhook endpoint's signing secret, by endpoint id (never shown in the endpoint itself)."""
        self.events = Collection("event", "/v1/events")  # its filters: Webhooks.list_events
        self.invoiceitems = Collection("invoiceitem", "/v1/invoiceitems", ("customer", "invoice"))
        self.invoices = Collection("invoice", "/v1/invoices",
                                   ("customer", "status", "collection_method", "subscription"))
        self.invoice_payments = Collection("invoice_payment", "/v1/invoice_payments", ("invoice", "status", "payment"))
        self.payment_intents = Collection("payment_intent", "/v1/payment_intents", ("customer",))
        self.charges = Collection("charge", "/v1/charges", ("customer", "payment_intent"))
        self.refunds = Collection("refund", "/v1/refunds", ("charge", "payment_intent"))
        self.credit_notes = Collection("credit_note", "/v1/credit_notes", ("customer", "invoice"))
        self.products = Collection("product", "/v1/products", ("active",))
        self.prices = Collection("price", "/v1/prices", ("active", "currency", "product", "type"))
        self.subscriptions = Collection("subscription", "/v1/subscriptions",
                                        ("collection_method", "customer", "test_clock"))
        self.expandable: dict[str, Collection] = {
            "customer": self.customers, "test_clock": self.test_clocks, "invoice": self.invoices,
            "latest_invoice": self.invoices, "payment_intent": self.payment_intents, "charge": self.charges,
            "latest_charge": self.charges, "product": self.products, "subscription": self.subscriptions,
        }
        """Fields holding an id that ``expand[]`` may replace with the object it names."""

    def records(self) -> Record:
        """Every record by type (deleted customers as Stripe answers for them), and how many events there are."""
        listed = {
            "invoices": self.invoices, "invoiceitems": self.invoiceitems, "invoice_payments": self.invoice_payments,
            "payment_intents": self.payment_intents, "charges": self.charges, "refunds": self.refunds,
            "credit_notes": self.credit_notes, "products": self.products, "prices": self.prices,
            "subscriptions": self.subscriptions, "test_clocks": self.test_clocks, "tax_rates": self.tax_rates,
            "webhook_endpoints": self.webhook_endpoints,
        }
        return {
            "customers": [*self.customers.records.values(), *map(deleted, self.deleted_customers.values())],
            **{name: list(collection.records.values()) for name, collection in listed.items()},
            "events": len(self.events.records),
        }

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

    # Expanding ids into objects

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

    # Events

    def emit(self, type_: str, obj: Record, call: Call, previous: Record | None = None) -> None:
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

    def emit_update(self, type_: str, before: Record, after: Record, call: Call) -> None:
        """Emit ``*.updated`` with the previous values of what changed; nothing changed, no event."""
        previous = {key: before[key] for key in after if before.get(key) != after[key]}
        if previous:
            self.emit(type_, after, call, previous)

    def resend(self, event_id: str) -> int:
        """Deliver an event again to the endpoints listening for it now; how many there were."""
        return self._deliver(self.events.get(event_id))

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
            self._sender.send(endpoint["url"], body, partial(_webhook_headers, self.webhook_secrets[endpoint["id"]]))
        return len(endpoints)
