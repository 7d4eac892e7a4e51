"""A local emulator of the parts of Stripe's API the hub uses, faithful on the wire.

What a client sees is what it would see from ``api.stripe.com``:

- **Requests** are ``application/x-www-form-urlencoded`` (query string for GET and DELETE) in
  Stripe's bracket notation: ``metadata[plan]=pro``, ``address[line1]=...``,
  ``enabled_events[]=*`` or ``enabled_events[0]=*``, ``expand[]=customer``. Unknown parameters
  are refused, as Stripe refuses them, so a client cannot rely on something Stripe would reject.
- **Auth** is ``Authorization: Bearer sk_test_...`` (HTTP Basic with the key as user name works
  too); anything else is a 401.
- **Responses** are JSON with status 200 (Stripe never answers 201), and every one carries a
  ``Request-Id: req_...`` header. Ids have Stripe's prefixes, times are epoch seconds, currencies
  lower case, amounts integer minor units. Errors have Stripe's shape,
  ``{"error": {"type", "code", "message", "param", "doc_url"}}``.
- **Idempotency**: the first response to a POST with an ``Idempotency-Key`` (errors included) is
  stored and replayed, with ``Idempotent-Replayed: true``, for the same key and parameters; the
  same key with other parameters is an ``idempotency_error``.
- **Lists** are ``{"object": "list", "url", "has_more", "data"}``, newest first, paged with
  ``limit``, ``starting_after`` and ``ending_before``.
- **Events**: every change records an ``event`` and POSTs it, signed with ``Stripe-Signature``,
  to each webhook endpoint that listens for its type (or ``*``). Deliveries run in the background
  and retry any non-2xx answer (:class:`~crossledger.plugins.sandbox.WebhookSender`).

The records follow the current API version's field sets (those of the fixtures in
``tests/fixtures/payloads/stripe``), with amounts kept consistent: an invoice's lines are its
invoice items, its totals add up, and paying it moves ``amount_remaining`` to ``amount_paid``.

Emulated: customers, invoice items, invoices (draft -> open -> paid | void | uncollectible),
invoice payments, webhook endpoints and events. Not emulated: prices, subscriptions, taxes,
discounts, credit notes, search. Paying an invoice needs ``paid_out_of_band=true`` or a test
``payment_method`` (``pm_card_visa``; one ending in ``chargeDeclined`` is declined with a 402),
because a sandbox customer never has a default payment method.

Besides Stripe's API, the sandbox serves the control routes of every crossledger sandbox
(``/_sandbox/state``, ``/_sandbox/faults``) and ``POST /_sandbox/events/{id}/resend``, which
delivers an event again, the way Stripe sometimes delivers one twice.
"""

import base64
import binascii
import copy
import hmac
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from crossledger.plugins.sandbox import Faults, WebhookSender, build_app
from crossledger.plugins.stripe.connector import API_VERSION
from crossledger.plugins.stripe.signature import signature_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

Record = dict[str, Any]
"""A Stripe object in its JSON form. Records are stored, mutated and served as such."""

DAY = 86_400
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
PAYABLE = ("open", "uncollectible")


def _now() -> int:
    return int(time.time())


def _token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_id(prefix: str) -> str:
    """A fresh Stripe-style id: ``cus_``, ``in_``, ``evt_``... followed by 24 random characters."""
    return f"{prefix}_{_token(24)}"


def _encode(payload: Any, *, indent: int | None = None) -> bytes:
    return json.dumps(payload, indent=indent).encode("utf-8")


# -- Errors ---------------------------------------------------------------------------------------------


class StripeError(Exception):
    """An API failure, rendered as Stripe renders it.

    Handlers raise it; the HTTP layer turns it into the response (and, under an idempotency key,
    stores that response like any other).
    """

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        error: Record = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "doc_url": f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}" if self.code else None,
        }
        if self.decline_code:
            error["decline_code"] = self.decline_code
        return _encode({"error": error})


def _invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> StripeError:
    """An ``invalid_request_error``: the request itself is wrong."""
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def _exclusive(params: "Params", *names: str) -> None:
    """Refuse a request that gives more than one of ``names``."""
    given = [name for name in names if name in params]
    if len(given) > 1:
        raise _invalid(
            f"You may only specify one of these parameters: {', '.join(given)}.",
            param=given[-1],
            code="parameters_exclusive",
        )


_FAULTS = {
    500: StripeError(
        500,
        "api_error",
        "An unknown error occurred on Stripe's end (injected by the sandbox).",
        headers={"Stripe-Should-Retry": "true"},
    ),
    503: StripeError(503, "api_error", "Stripe is temporarily unavailable (injected by the sandbox)."),
    429: _invalid(
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        code="rate_limit",
        status=429,
    ),
}


def _render(status: int, content: bytes, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        content, status, headers={"Request-Id": request_id, **(headers or {})}, media_type="application/json"
    )


def _fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault in Stripe's error shape. A 429 has no Retry-After: Stripe promises none."""
    error = _FAULTS[status]
    return _render(error.status, error.body(), new_id("req"), error.headers)


# -- Parameters -----------------------------------------------------------------------------------------

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


def decode_params(pairs: Iterable[tuple[str, str]]) -> Record:
    """Stripe's bracket notation as nested dicts: ``a[b][]=1`` becomes ``{"a": {"b": {"0": "1"}}}``.

    Arrays stay dicts with index keys here (``[]`` appends the next index), because only the
    endpoint knows whether ``metadata[0]`` is a list entry or a metadata key named "0":
    :meth:`Params.strings` reads them as lists.
    """
    root: Record = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise _invalid(f"Invalid parameter name: {key}", param=key)
        node = root
        *parents, last = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        for part in parents:
            node = node.setdefault(part or str(len(node)), {})
            if not isinstance(node, dict):
                raise _invalid(f"Invalid parameter: {key} is both a value and a hash", param=key)
        if isinstance(node.get(last), dict):
            raise _invalid(f"Invalid parameter: {key} is both a value and a hash", param=key)
        node[last or str(len(node))] = value
    return root


class Params:
    """One request's decoded parameters, read with the type an endpoint expects.

    Every reader raises the error Stripe gives for a value of the wrong type; ``accept`` refuses
    names the endpoint does not know (``expand`` is accepted everywhere).
    """

    def __init__(self, values: Record) -> None:
        self._values = values

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def accept(self, *names: str) -> "Params":
        unknown = [name for name in self._values if name not in names and name != "expand"]
        if unknown:
            raise _invalid(f"Received unknown parameter: {unknown[0]}", param=unknown[0], code="parameter_unknown")
        return self

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or isinstance(value, str):
            return value
        raise _invalid(f"Invalid string: {name} must be a string, not a hash or an array", param=name)

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise _invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return value

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise _invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer") from None

    def decimal(self, name: str) -> Decimal | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            raise _invalid(f"Invalid decimal: {value}", param=name) from None

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise _invalid(f"Invalid boolean: {value}", param=name)
        return value == "true"

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in options:
            raise _invalid(f"Invalid {name}: must be one of {', '.join(options)}", param=name)
        return value

    def currency(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not re.fullmatch("[A-Za-z]{3}", value):
            raise _invalid(f"Invalid currency: {value}. Use a three-letter ISO code.", param=name)
        return None if value is None else value.lower()

    def strings(self, name: str) -> list[str]:
        """An array of strings (``name[]=a&name[]=b`` or ``name[0]=a``); empty when absent."""
        value = self._values.get(name, {})
        if isinstance(value, dict) and all(key.isdigit() and isinstance(v, str) for key, v in value.items()):
            return [value[key] for key in sorted(value, key=int)]
        raise _invalid(f"Invalid array: {name}", param=name)

    def mapping(self, name: str) -> dict[str, str]:
        """A hash of strings (``metadata``, ``address``); ``name=`` (unset) reads as empty."""
        value = self._values.get(name, "")
        if value == "":
            return {}
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return value
        raise _invalid(f"Invalid hash: {name}", param=name)


@dataclass(frozen=True)
class Call:
    """What an API handler gets: parameters, path ids, and the request identity events record."""

    params: Params
    path: Mapping[str, str]
    request: Record = field(default_factory=lambda: {"id": None, "idempotency_key": None})

    @property
    def id(self) -> str:
        return self.path["id"]


Handler = Callable[[Call], Record]


def _merged_metadata(current: dict[str, str], update: dict[str, str]) -> dict[str, str]:
    """Stripe's metadata update: keys are merged, an empty value deletes its key, ``metadata=`` all."""
    if not update:
        return {}
    merged = {**current, **update}
    return {key: value for key, value in merged.items() if value != ""}


def _address(params: Params, name: str) -> Record | None:
    """An address hash; the one given replaces the stored one whole (``address=`` removes it)."""
    values = params.mapping(name)
    unknown = sorted(set(values) - set(ADDRESS_FIELDS))
    if unknown:
        raise _invalid(
            f"Received unknown parameter: {name}[{unknown[0]}]", param=f"{name}[{unknown[0]}]", code="parameter_unknown"
        )
    return {key: values.get(key) or None for key in ADDRESS_FIELDS} if values else None


def _optional_text(params: Params, name: str) -> str | None:
    """A text field as Stripe stores it: an empty string unsets it."""
    return params.text(name) or None


_READERS: dict[str, Callable[[Params, str], Any]] = {
    "address": _address,
    "auto_advance": Params.flag,
    "description": _optional_text,
    "email": _optional_text,
    "name": _optional_text,
    "phone": _optional_text,
    "preferred_locales": Params.strings,
    "tax_exempt": lambda params, name: params.choice(name, ("none", "exempt", "reverse")),
}
"""How each plain updatable field is read from the request."""


def _assign(record: Record, params: Params, names: Iterable[str]) -> None:
    """Copy the given ``names`` from ``params`` onto ``record`` (metadata is merged, not replaced)."""
    for name in names:
        if name == "metadata" and name in params:
            record[name] = _merged_metadata(record[name], params.mapping(name))
        elif name in params:
            record[name] = _READERS[name](params, name)


# -- Records ---------------------------------------------------------------------------------------------


@dataclass
class _Collection:
    """One kind of record: its name in Stripe's messages, its list URL and its list filters."""

    noun: str
    url: str
    filters: tuple[str, ...] = ()
    records: dict[str, Record] = field(default_factory=dict)

    def add(self, record: Record) -> Record:
        self.records[record["id"]] = record
        return record

    def get(self, record_id: str, param: str = "id") -> Record:
        """The record, or Stripe's ``resource_missing``: 404 for a path id, 400 for a parameter."""
        record = self.records.get(record_id)
        if record is None:
            raise _invalid(
                f"No such {self.noun}: '{record_id}'",
                param=param,
                code="resource_missing",
                status=404 if param == "id" else 400,
            )
        return record

    def page(self, params: Params) -> Record:
        """A list response over the records matching the ``filters`` given in ``params``."""
        params.accept("limit", "starting_after", "ending_before", *self.filters)
        wanted = {name: params.text(name) for name in self.filters if name in params}
        matching = [r for r in self.records.values() if all(r.get(k) == v for k, v in wanted.items())]
        return _page(matching[::-1], params, self)


def _page(newest_first: list[Record], params: Params, collection: _Collection) -> Record:
    limit = params.integer("limit")
    limit = 10 if limit is None else limit
    if not 1 <= limit <= 100:
        raise _invalid(f"Invalid integer: limit must be between 1 and 100, not {limit}", param="limit")
    _exclusive(params, "starting_after", "ending_before")
    ids = [record["id"] for record in newest_first]
    backwards = "ending_before" in params
    cursor_param = "ending_before" if backwards else "starting_after"
    cursor = params.text(cursor_param)
    if cursor is not None and cursor not in ids:
        raise _invalid(f"No such {collection.noun}: '{cursor}'", param=cursor_param, code="resource_missing")
    if backwards and cursor is not None:
        end = ids.index(cursor)
        start = max(0, end - limit)
        more = start > 0
    else:
        start = 0 if cursor is None else ids.index(cursor) + 1
        end = start + limit
        more = end < len(ids)
    return {"object": "list", "data": newest_first[start:end], "has_more": more, "url": collection.url}


def _customer(now: int) -> Record:
    """A new customer with the field set of Stripe's customer object."""
    return {
        "address": None,
        "balance": 0,
        "created": now,
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
        "test_clock": None,
    }


def _invoiceitem(customer: Record, currency: str, quantity: int, amount: int, unit: str, now: int) -> Record:
    return {
        "amount": amount,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "date": now,
        "description": None,
        "discountable": True,
        "discounts": [],
        "id": new_id("ii"),
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "net_amount": amount,
        "object": "invoiceitem",
        "parent": None,
        "period": {"end": now, "start": now},
        "pricing": {"type": "price_details", "unit_amount_decimal": unit},
        "proration": False,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": None,
    }


def _line_item(item: Record) -> Record:
    """The invoice line an invoice item becomes; its id is derived from the item's, so it is stable."""
    return {
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "id": "il_" + item["id"].removeprefix("ii_"),
        "invoice": item["invoice"],
        "livemode": False,
        "metadata": dict(item["metadata"]),
        "object": "line_item",
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": dict(item["pricing"]),
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subscription": None,
        "subtotal": item["amount"],
        "taxes": [],
    }


def _invoice(customer: Record, currency: str, now: int) -> Record:
    """A new, empty draft invoice with the field set of Stripe's invoice object."""
    invoice_id = new_id("in")
    invoice: Record = {
        "account_country": "US",
        "account_name": "crossledger sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": False,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_shipping": None,
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "id": invoice_id,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"data": [], "has_more": False, "object": "list", "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "object": "invoice",
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": now,
        "period_start": now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": None,
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }
    _copy_customer(invoice, customer)
    return invoice


def _copy_customer(invoice: Record, customer: Record) -> None:
    """Invoices carry a copy of the customer's details, refreshed until finalization freezes them."""
    invoice.update(
        customer_address=copy.deepcopy(customer["address"]),
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_phone=customer["phone"],
        customer_tax_exempt=customer["tax_exempt"],
    )


def _line_tax(line: Record, rate: Record) -> Record:
    """One exclusive tax rate on one line, rounded half up to the minor unit per line, as Stripe does."""
    amount = int((Decimal(line["amount"]) * Decimal(str(rate["percentage"])) / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP))
    return {"amount": amount, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": rate["id"]},
            "taxability_reason": "standard_rated", "taxable_amount": line["amount"], "type": "tax_rate_details"}


def _set_lines(invoice: Record, items: list[Record]) -> None:
    """Rebuild a draft's lines from its invoice items, with the invoice's default tax rates on each
    line; the totals follow (no discounts in this sandbox)."""
    lines = [_line_item(item) for item in items]
    totals: dict[str, Record] = {}
    for line in lines:
        line["taxes"] = [_line_tax(line, rate) for rate in invoice["default_tax_rates"]]
        for tax in line["taxes"]:
            total = totals.setdefault(tax["tax_rate_details"]["tax_rate"], {**tax, "amount": 0, "taxable_amount": 0})
            total["amount"] += tax["amount"]
            total["taxable_amount"] += tax["taxable_amount"]
    invoice["lines"]["data"] = lines
    invoice["total_taxes"] = list(totals.values())
    subtotal = sum(line["amount"] for line in lines)
    tax = sum(total["amount"] for total in totals.values())
    for name in ("subtotal", "subtotal_excluding_tax", "total_excluding_tax"):
        invoice[name] = subtotal
    invoice["total"] = invoice["amount_due"] = subtotal + tax
    invoice["amount_remaining"] = invoice["total"] - invoice["amount_paid"]


def _apply_terms(invoice: Record, params: Params, now: int) -> None:
    """Set how an invoice is collected, checked as a whole the way Stripe checks it.

    ``send_invoice`` needs a due date (``due_date``, or ``days_until_due`` from now);
    ``charge_automatically`` must not have one.
    """
    _exclusive(params, "days_until_due", "due_date")
    method = params.choice("collection_method", ("charge_automatically", "send_invoice"))
    method = method or invoice["collection_method"]
    days, due = params.integer("days_until_due"), params.integer("due_date")
    if method == "charge_automatically" and (days is not None or due is not None):
        raise _invalid(
            "days_until_due and due_date can only be set when collection_method is send_invoice.",
            param="days_until_due" if days is not None else "due_date",
        )
    if days is not None:
        due = now + days * DAY
    if method == "send_invoice" and due is None and invoice["due_date"] is None:
        raise _invalid(
            "Invoices with collection_method=send_invoice need days_until_due or due_date.",
            param="days_until_due",
            code="parameter_missing",
        )
    invoice["collection_method"] = method
    invoice["due_date"] = None if method == "charge_automatically" else due or invoice["due_date"]


def _require(invoice: Record, action: str, allowed: tuple[str, ...]) -> None:
    """Refuse a transition that Stripe's invoice state machine does not allow."""
    if invoice["status"] not in allowed:
        raise _invalid(
            f"You can only {action} an invoice whose status is {' or '.join(allowed)}; "
            f"invoice {invoice['id']} is {invoice['status']}."
        )


def _invoice_payment(invoice: Record, now: int) -> Record:
    """The payment Stripe opens for a finalized invoice, and settles when the invoice is paid."""
    return {
        "amount_paid": None,
        "amount_requested": invoice["amount_due"],
        "created": now,
        "currency": invoice["currency"],
        "id": new_id("inpay"),
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "object": "invoice_payment",
        "payment": {"type": "payment_intent", "payment_intent": new_id("pi")},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def _webhook_endpoint(url: str, events: list[str], api_version: str | None, now: int) -> Record:
    return {
        "api_version": api_version,
        "application": None,
        "created": now,
        "description": None,
        "enabled_events": events,
        "id": new_id("we"),
        "livemode": False,
        "metadata": {},
        "object": "webhook_endpoint",
        "status": "enabled",
        "url": url,
    }


def _deleted(record: Record) -> Record:
    """What Stripe answers to a DELETE, and to a GET of a deleted customer."""
    return {"id": record["id"], "object": record["object"], "deleted": True}


def _webhook_headers(secret: str, body: bytes) -> dict[str, str]:
    """Headers of one delivery attempt: signed at the moment of the attempt, as Stripe does."""
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(secret, _now(), body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


# -- The account -------------------------------------------------------------------------------------


class _Account:
    """The emulated Stripe account: its records, the API operations on them and the events they emit.

    Not thread-safe by itself: :class:`StripeSandbox` calls it under its lock. Each operation takes
    a :class:`Call` and returns the object Stripe would answer with (the stored record itself;
    the HTTP layer serializes it before releasing the lock).
    """

    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender
        self.customers = _Collection("customer", "/v1/customers", ("email",))
        self.deleted_customers: dict[str, Record] = {}
        self.invoiceitems = _Collection("invoiceitem", "/v1/invoiceitems", ("customer", "invoice"))
        self.invoices = _Collection("invoice", "/v1/invoices", ("customer", "status", "collection_method"))
        self.invoice_payments = _Collection("invoice_payment", "/v1/invoice_payments", ("invoice", "status"))
        self.tax_rates = _Collection("tax_rate", "/v1/tax_rates", ("active",))
        self.webhook_endpoints = _Collection("webhook_endpoint", "/v1/webhook_endpoints")
        self.events = _Collection("event", "/v1/events", ("type",))
        self._secrets: dict[str, str] = {}
        self._expandable = {"customer": self.customers, "invoice": self.invoices}
        """Fields holding an id that ``expand[]`` may replace with the object it names."""

    # Generic reads

    def retrieve(self, collection: _Collection, call: Call) -> Record:
        call.params.accept()
        return collection.get(call.id)

    def page(self, collection: _Collection, call: Call) -> Record:
        return collection.page(call.params)

    def check_expand(self, paths: list[str]) -> None:
        """Refuse, before anything happens, an ``expand[]`` path naming a field that cannot expand."""
        for path in paths:
            if not set(path.split(".")) <= {"data", *self._expandable}:
                raise _invalid(f"This property cannot be expanded ({path}).", param="expand")

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
        if isinstance(value, str) and head in self._expandable:
            value = self._expandable[head].records.get(value)
        if not isinstance(value, dict):
            return obj
        return {**obj, head: self._expand(value, rest) if rest else value}

    # Customers

    CUSTOMER_FIELDS = (
        "address", "description", "email", "metadata", "name", "phone", "preferred_locales", "tax_exempt",
    )

    def create_customer(self, call: Call) -> Record:
        call.params.accept(*self.CUSTOMER_FIELDS)
        customer = self.customers.add(_customer(_now()))
        _assign(customer, call.params, self.CUSTOMER_FIELDS)
        self._emit("customer.created", customer, call)
        return customer

    def retrieve_customer(self, call: Call) -> Record:
        call.params.accept()
        deleted = self.deleted_customers.get(call.id)
        return _deleted(deleted) if deleted else self.customers.get(call.id)

    def update_customer(self, call: Call) -> Record:
        call.params.accept(*self.CUSTOMER_FIELDS)
        customer = self.customers.get(call.id)
        before = copy.deepcopy(customer)
        _assign(customer, call.params, self.CUSTOMER_FIELDS)
        self._emit_update("customer.updated", before, customer, call)
        return customer

    def delete_customer(self, call: Call) -> Record:
        call.params.accept()
        customer = self.customers.get(call.id)
        del self.customers.records[customer["id"]]
        self.deleted_customers[customer["id"]] = customer
        self._emit("customer.deleted", customer, call)
        return _deleted(customer)

    def _adopt_currency(self, customer: Record, currency: str, call: Call) -> None:
        """A customer takes the currency of the first thing billed to it."""
        if customer["currency"] is None:
            before = copy.deepcopy(customer)
            customer["currency"] = currency
            self._emit_update("customer.updated", before, customer, call)

    # Invoice items

    def create_invoiceitem(self, call: Call) -> Record:
        params = call.params.accept(
            "amount", "currency", "customer", "description", "invoice", "metadata", "quantity", "unit_amount",
            "unit_amount_decimal",
        )
        customer = self.customers.get(params.required("customer"), param="customer")
        currency = params.currency("currency") or customer["currency"]
        if currency is None:
            raise _invalid("Missing required param: currency.", param="currency", code="parameter_missing")
        quantity, amount, unit = _item_amount(params)
        invoice = self._draft_for(params.text("invoice"), customer, currency)
        item = self.invoiceitems.add(_invoiceitem(customer, currency, quantity, amount, unit, _now()))
        _assign(item, params, ("description", "metadata"))
        self._adopt_currency(customer, currency, call)
        if invoice is not None:
            self._attach([item], invoice)
        self._emit("invoiceitem.created", item, call)
        return item

    def _draft_for(self, invoice_id: str | None, customer: Record, currency: str) -> Record | None:
        """The draft invoice an item is added to directly, checked to be able to take it."""
        if invoice_id is None:
            return None
        invoice = self.invoices.get(invoice_id, param="invoice")
        if invoice["status"] != "draft":
            raise _invalid(
                f"You can only add invoice items to draft invoices; invoice {invoice_id} is {invoice['status']}.",
                param="invoice",
                code="invoice_not_editable",
            )
        if invoice["customer"] != customer["id"] or invoice["currency"] != currency:
            raise _invalid(
                f"The invoice item must have the customer and currency of invoice {invoice_id} "
                f"({invoice['customer']}, {invoice['currency']}).",
                param="invoice",
            )
        return invoice

    def _attach(self, items: list[Record], invoice: Record) -> None:
        for item in items:
            item["invoice"] = invoice["id"]
        _set_lines(invoice, [i for i in self.invoiceitems.records.values() if i["invoice"] == invoice["id"]])

    # Tax rates

    def create_tax_rate(self, call: Call) -> Record:
        params = call.params.accept("active", "country", "description", "display_name", "inclusive", "jurisdiction",
                                    "metadata", "percentage", "state", "tax_type")
        percentage = params.decimal("percentage")
        if percentage is None:
            raise _invalid("Missing required param: percentage.", param="percentage", code="parameter_missing")
        if not Decimal(0) <= percentage <= Decimal(100):
            raise _invalid("percentage must be between 0 and 100.", param="percentage")
        inclusive = params.flag("inclusive")
        if inclusive is None:
            raise _invalid("Missing required param: inclusive.", param="inclusive", code="parameter_missing")
        if inclusive:
            raise _invalid("This sandbox emulates exclusive tax rates only (inclusive=false).", param="inclusive")
        rate = {
            "active": params.flag("active") is not False, "country": params.text("country"), "created": _now(),
            "description": params.text("description"), "display_name": params.required("display_name"),
            "effective_percentage": float(percentage), "flat_amount": None, "id": new_id("txr"), "inclusive": False,
            "jurisdiction": params.text("jurisdiction"), "jurisdiction_level": None, "livemode": False,
            "metadata": params.mapping("metadata"), "object": "tax_rate", "percentage": float(percentage),
            "rate_type": "percentage", "state": params.text("state"), "tax_type": params.text("tax_type"),
        }
        self.tax_rates.add(rate)
        self._emit("tax_rate.created", rate, call)
        return rate

    # Invoices

    def create_invoice(self, call: Call) -> Record:
        params = call.params.accept(
            "auto_advance", "collection_method", "currency", "customer", "days_until_due", "default_tax_rates",
            "description", "due_date", "metadata", "pending_invoice_items_behavior",
        )
        customer = self.customers.get(params.required("customer"), param="customer")
        behavior = params.choice("pending_invoice_items_behavior", ("include", "exclude")) or "include"
        pending = [
            item for item in self.invoiceitems.records.values()
            if item["customer"] == customer["id"] and not item["invoice"]
        ]
        currency = params.currency("currency") or customer["currency"] or next((i["currency"] for i in pending), "usd")
        now = _now()
        invoice = _invoice(customer, currency, now)
        invoice["default_tax_rates"] = [self.tax_rates.get(rate_id, param="default_tax_rates")
                                        for rate_id in params.strings("default_tax_rates")]
        _apply_terms(invoice, params, now)
        _assign(invoice, params, ("auto_advance", "description", "metadata"))
        self.invoices.add(invoice)
        if behavior == "include":
            self._attach([item for item in pending if item["currency"] == currency], invoice)
        self._emit("invoice.created", invoice, call)
        return invoice

    def update_invoice(self, call: Call) -> Record:
        params = call.params.accept(
            "auto_advance", "collection_method", "days_until_due", "description", "due_date", "metadata"
        )
        invoice = self.invoices.get(call.id)
        before = copy.deepcopy(invoice)
        if any(name in params for name in ("collection_method", "days_until_due", "due_date")):
            _require(invoice, "change the collection terms of", ("draft",))
            _apply_terms(invoice, params, _now())
        _assign(invoice, params, ("auto_advance", "description", "metadata"))
        self._emit_update("invoice.updated", before, invoice, call)
        return invoice

    def finalize_invoice(self, call: Call) -> Record:
        """draft -> open: numbered, its customer details frozen, and a payment opened for the amount due.

        An invoice with nothing to pay is marked paid at once, as Stripe does.
        """
        params = call.params.accept("auto_advance")
        invoice = self.invoices.get(call.id)
        _require(invoice, "finalize", ("draft",))
        customer = self.customers.get(invoice["customer"], param="customer")
        now = _now()
        _copy_customer(invoice, customer)
        _assign(invoice, params, ("auto_advance",))
        invoice.update(
            status="open",
            number=f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}",
            effective_at=now,
            ending_balance=0,
        )
        invoice["status_transitions"]["finalized_at"] = now
        customer["next_invoice_sequence"] += 1
        self._emit("invoice.finalized", invoice, call)
        if invoice["amount_due"] > 0:
            self.invoice_payments.add(_invoice_payment(invoice, now))
        else:
            self._settle(invoice, call)
        return invoice

    def pay_invoice(self, call: Call) -> Record:
        """open | uncollectible -> paid, out of band or by charging a test payment method."""
        params = call.params.accept("paid_out_of_band", "payment_method")
        invoice = self.invoices.get(call.id)
        _require(invoice, "pay", PAYABLE)
        if not params.flag("paid_out_of_band"):
            self._charge(invoice, params.text("payment_method"), call)
        self._settle(invoice, call)
        return invoice

    def void_invoice(self, call: Call) -> Record:
        call.params.accept()
        invoice = self._move(call.id, "void", PAYABLE, "void", "voided_at")
        payment = self._open_payment(invoice)
        if payment is not None:
            payment["status"] = "canceled"
            payment["status_transitions"]["canceled_at"] = invoice["status_transitions"]["voided_at"]
        self._emit("invoice.voided", invoice, call)
        return invoice

    def mark_uncollectible(self, call: Call) -> Record:
        call.params.accept()
        invoice = self._move(call.id, "mark uncollectible", ("open",), "uncollectible", "marked_uncollectible_at")
        self._emit("invoice.marked_uncollectible", invoice, call)
        return invoice

    def _move(self, invoice_id: str, action: str, allowed: tuple[str, ...], status: str, stamp: str) -> Record:
        invoice = self.invoices.get(invoice_id)
        _require(invoice, action, allowed)
        invoice["status"] = status
        invoice["status_transitions"][stamp] = _now()
        return invoice

    def _charge(self, invoice: Record, payment_method: str | None, call: Call) -> None:
        """Attempt a card payment; a test method ending in ``chargeDeclined`` is declined (402)."""
        if payment_method is None:
            raise _invalid(
                "This customer has no attached payment source or default payment method. Pass payment_method, "
                "or paid_out_of_band=true for a payment received outside Stripe.",
                param="payment_method",
            )
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        if payment_method.endswith("chargeDeclined"):
            self._emit("invoice.payment_failed", invoice, call)
            raise StripeError(
                402, "card_error", "Your card was declined.", code="card_declined", decline_code="generic_decline"
            )

    def _open_payment(self, invoice: Record) -> Record | None:
        payments = self.invoice_payments.records.values()
        return next((p for p in payments if p["invoice"] == invoice["id"] and p["status"] == "open"), None)

    def _settle(self, invoice: Record, call: Call) -> None:
        """Mark the invoice paid in full, settling its open payment (none for a zero invoice)."""
        invoice = self._move(invoice["id"], "pay", PAYABLE, "paid", "paid_at")
        paid_at = invoice["status_transitions"]["paid_at"]
        payment = self._open_payment(invoice)
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        if payment is not None:
            payment.update(status="paid", amount_paid=payment["amount_requested"])
            payment["status_transitions"]["paid_at"] = paid_at
            self._emit("invoice_payment.paid", payment, call)
        self._emit("invoice.paid", invoice, call)
        if payment is not None:
            self._emit("invoice.payment_succeeded", invoice, call)

    # Webhook endpoints and events

    def create_webhook_endpoint(self, call: Call) -> Record:
        """Register an endpoint; its signing secret is in this answer and never again."""
        params = call.params.accept("api_version", "description", "enabled_events", "metadata", "url")
        url = params.required("url")
        if not re.match(r"https?://", url):
            raise _invalid(f"Invalid URL: {url}. Use an http:// or https:// URL.", param="url", code="url_invalid")
        events = params.strings("enabled_events")
        if not events:
            raise _invalid("Missing required param: enabled_events.", param="enabled_events", code="parameter_missing")
        endpoint = self.webhook_endpoints.add(_webhook_endpoint(url, events, params.text("api_version"), _now()))
        _assign(endpoint, params, ("description", "metadata"))
        self._secrets[endpoint["id"]] = f"whsec_{_token(32)}"
        return {**endpoint, "secret": self._secrets[endpoint["id"]]}

    def delete_webhook_endpoint(self, call: Call) -> Record:
        call.params.accept()
        endpoint = self.webhook_endpoints.get(call.id)
        del self.webhook_endpoints.records[endpoint["id"]]
        del self._secrets[endpoint["id"]]
        return _deleted(endpoint)

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
                "created": _now(),
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
        body = _encode(event, indent=2)
        for endpoint in endpoints:
            self._sender.send(endpoint["url"], body, partial(_webhook_headers, self._secrets[endpoint["id"]]))
        return len(endpoints)

    def state(self) -> Record:
        return {
            "customers": [*self.customers.records.values(), *map(_deleted, self.deleted_customers.values())],
            "invoices": list(self.invoices.records.values()),
            "invoiceitems": list(self.invoiceitems.records.values()),
            "invoice_payments": list(self.invoice_payments.records.values()),
            "tax_rates": list(self.tax_rates.records.values()),
            "webhook_endpoints": list(self.webhook_endpoints.records.values()),
            "events": len(self.events.records),
        }


def _item_amount(params: Params) -> tuple[int, int, str]:
    """``(quantity, amount, unit amount)`` of an invoice item: a total, or a quantity at a unit price.

    A fractional ``unit_amount_decimal`` times the quantity is rounded half-to-even to a whole
    minor unit, the way Stripe rounds line amounts.
    """
    _exclusive(params, "amount", "unit_amount", "unit_amount_decimal")
    amount = params.integer("amount")
    if amount is not None:
        _exclusive(params, "amount", "quantity")
        return 1, amount, str(amount)
    whole = params.integer("unit_amount")
    unit = Decimal(whole) if whole is not None else params.decimal("unit_amount_decimal")
    if unit is None:
        raise _invalid("Missing required param: amount.", param="amount", code="parameter_missing")
    quantity = params.integer("quantity")
    quantity = 1 if quantity is None else quantity
    if quantity < 0:
        raise _invalid(f"Invalid non-negative integer: {quantity}", param="quantity")
    total = (unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return quantity, int(total), format(unit, "f")


# -- HTTP ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    """An API answer; stored for an idempotency key with the ``fingerprint`` of what was asked."""

    status: int
    content: bytes
    request_id: str
    fingerprint: tuple[Any, ...] = ()


class StripeSandbox:
    """The Stripe emulator as the hub uses it: an ASGI app plus the :class:`~crossledger.plugins.types.Sandbox`
    protocol (settings for the connector, and registering the hub's webhook URL).

    Serve :attr:`app` at the root or under a prefix (``Mount("/stripe", app=sandbox.app)``): routes
    are relative and list ``url`` fields are API paths (``/v1/customers``), which is what Stripe's
    clients append to their base URL.
    """

    def __init__(self) -> None:
        self.api_key = f"sk_test_{_token(24)}"
        self.faults = Faults()
        self._lock = threading.Lock()
        self._sender = WebhookSender()
        self._account = _Account(self._sender)
        self._replies: dict[str, _Reply] = {}
        self._hub_secret = ""
        self._app: Starlette = build_app(
            self._routes(), faults=self.faults, state=self.state, fault_response=_fault_response
        )

    @property
    def app(self) -> Starlette:
        return self._app

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "api_key": self.api_key, "webhook_secret": self._hub_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Register the hub for every event, as ``POST /v1/webhook_endpoints`` with ``enabled_events[]=*``."""
        params = Params(decode_params([("url", hub_webhook_url), ("enabled_events[]", "*")]))
        with self._lock:
            self._hub_secret = self._account.create_webhook_endpoint(Call(params, {}))["secret"]

    def wait_for_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until every webhook sent so far was delivered or abandoned; False on timeout."""
        return self._sender.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        """Every record by type, in Stripe's JSON form (webhook secrets are never shown)."""
        with self._lock:
            return {**copy.deepcopy(self._account.state()), "webhooks": self._sender.stats()}

    def _routes(self) -> list[BaseRoute]:
        account = self._account
        api: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/customers", account.create_customer),
            ("GET", "/v1/customers", partial(account.page, account.customers)),
            ("GET", "/v1/customers/{id}", account.retrieve_customer),
            ("POST", "/v1/customers/{id}", account.update_customer),
            ("DELETE", "/v1/customers/{id}", account.delete_customer),
            ("POST", "/v1/invoiceitems", account.create_invoiceitem),
            ("GET", "/v1/invoiceitems", partial(account.page, account.invoiceitems)),
            ("GET", "/v1/invoiceitems/{id}", partial(account.retrieve, account.invoiceitems)),
            ("POST", "/v1/tax_rates", account.create_tax_rate),
            ("GET", "/v1/tax_rates", partial(account.page, account.tax_rates)),
            ("GET", "/v1/tax_rates/{id}", partial(account.retrieve, account.tax_rates)),
            ("POST", "/v1/invoices", account.create_invoice),
            ("GET", "/v1/invoices", partial(account.page, account.invoices)),
            ("GET", "/v1/invoices/{id}", partial(account.retrieve, account.invoices)),
            ("POST", "/v1/invoices/{id}", account.update_invoice),
            ("POST", "/v1/invoices/{id}/finalize", account.finalize_invoice),
            ("POST", "/v1/invoices/{id}/pay", account.pay_invoice),
            ("POST", "/v1/invoices/{id}/void", account.void_invoice),
            ("POST", "/v1/invoices/{id}/mark_uncollectible", account.mark_uncollectible),
            ("GET", "/v1/invoice_payments", partial(account.page, account.invoice_payments)),
            ("GET", "/v1/invoice_payments/{id}", partial(account.retrieve, account.invoice_payments)),
            ("POST", "/v1/webhook_endpoints", account.create_webhook_endpoint),
            ("GET", "/v1/webhook_endpoints", partial(account.page, account.webhook_endpoints)),
            ("GET", "/v1/webhook_endpoints/{id}", partial(account.retrieve, account.webhook_endpoints)),
            ("DELETE", "/v1/webhook_endpoints/{id}", account.delete_webhook_endpoint),
            ("GET", "/v1/events", partial(account.page, account.events)),
            ("GET", "/v1/events/{id}", partial(account.retrieve, account.events)),
        ]
        return [
            *(self._api_route(method, path, handler) for method, path, handler in api),
            Route("/_sandbox/events/{id}/resend", self._resend, methods=["POST"]),
            Route("/_sandbox/webhooks", self._webhook_control, methods=["POST"]),
            Route("/{path:path}", _unrecognized, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
        ]

    def _api_route(self, method: str, path: str, handler: Handler) -> Route:
        operation = f"{method} {path}"

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            return self._handle(operation, request, body, handler)

        return Route(path, endpoint, methods=[method])

    def _handle(self, operation: str, request: Request, body: bytes, handler: Handler) -> Response:
        """Authenticate, decode, run the handler once per idempotency key, and render the answer."""
        request_id = new_id("req")
        replayed = False
        try:
            self._authenticate(request.headers.get("authorization"))
            if request.method == "POST":
                pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                key = request.headers.get("idempotency-key")
            else:
                pairs, key = request.query_params.multi_items(), None
            params = Params(decode_params(pairs))
            call = Call(params, dict(request.path_params), {"id": request_id, "idempotency_key": key})
            fingerprint = (operation, tuple(sorted(call.path.items())), tuple(sorted(pairs)))
            with self._lock:
                reply, replayed = self._once(key, fingerprint, lambda: self._execute(handler, call))
        except StripeError as error:
            reply = _Reply(error.status, error.body(), request_id)
        replay = {"Idempotent-Replayed": "true", "Original-Request": reply.request_id} if replayed else None
        return _render(reply.status, reply.content, request_id, replay)

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization:
            raise _invalid(
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                status=401,
            )
        key = _presented_key(authorization)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise _invalid(f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}", status=401)

    def _once(self, key: str | None, fingerprint: tuple[Any, ...], run: Callable[[], _Reply]) -> tuple[_Reply, bool]:
        """Run the request, or replay the stored answer to its idempotency key; whether it was replayed."""
        if key is None:
            return run(), False
        if len(key) > 255:
            raise _invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key")
        stored = self._replies.get(key)
        if stored is None:
            stored = self._replies[key] = replace(run(), fingerprint=fingerprint)
            return stored, False
        if stored.fingerprint != fingerprint:
            raise StripeError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
        return stored, True

    def _execute(self, handler: Handler, call: Call) -> _Reply:
        """The handler's answer, serialized now (while the lock still guards the records it returns)."""
        try:
            paths = call.params.strings("expand")
            self._account.check_expand(paths)
            payload = self._account.expand(handler(call), paths)
        except StripeError as error:
            return _Reply(error.status, error.body(), call.request["id"])
        return _Reply(200, _encode(payload), call.request["id"])

    async def _webhook_control(self, request: Request) -> Response:
        """``{"hold": true}`` keeps deliveries back; ``{"release": "in_order" | "reverse" | "shuffle"}``
        lets them go (Stripe does not guarantee the order of events)."""
        try:
            command = json.loads(await request.body() or b"{}")
            if command.get("hold"):
                self._sender.hold()
                return JSONResponse({"held": True})
            return JSONResponse({"released": self._sender.release(command.get("release", "in_order"))})
        except (ValueError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    async def _resend(self, request: Request) -> Response:
        try:
            with self._lock:
                deliveries = self._account.resend(request.path_params["id"])
        except StripeError as error:
            return _render(error.status, error.body(), new_id("req"))
        return _render(200, _encode({"id": request.path_params["id"], "deliveries": deliveries}), new_id("req"))


def _presented_key(authorization: str) -> str:
    """The API key in an Authorization header: ``Bearer <key>``, or Basic auth with the key as user name."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def _unrecognized(request: Request) -> Response:
    """Stripe answers an unknown path, or a known path with the wrong method, with a 404 like this."""
    path = "/" + request.path_params["path"]
    error = _invalid(f"Unrecognized request URL ({request.method}: {path}).", status=404)
    return _render(error.status, error.body(), new_id("req"))
