"""The Stripe connector: Stripe's webhooks in, canonical customers, invoices and payments out.

Stripe pushes an ``event`` object to the hub for every change (see :mod:`.signature` for how the
delivery is signed). The connector verifies it, unwraps it, and maps the events the hub cares
about onto the canonical model::

    Stripe event                          canonical change     entity
    customer.created, customer.updated -> customer.upserted    Customer
    customer.deleted                   -> customer.deleted     Customer (status deleted)
    invoice.finalized                  -> invoice.issued       Invoice (status issued)
    invoice.voided                     -> invoice.voided       Invoice (status void)
    invoice_payment.paid               -> payment.settled      Payment, applied to its invoice

Every other event type is acknowledged and ignored. ``invoice.paid`` in particular is left to
``invoice_payment.paid``, which also says which payment settled the invoice, for how much, and when.
An event that failed on bad data can be replayed after the fix in Stripe: :meth:`~StripeConnector.refetch`
reads its object again.

Amounts stay in Stripe's integer minor units all the way through: Stripe already speaks the
canonical unit, so no conversion happens here and JPY or KWD amounts cannot drift. Inconsistent
documents are mapped as they are: the hub's invariant check, not the connector, decides what a
total that does not add up means.

Payloads are decoded with msgspec into the few fields the mapping reads, so a malformed object
fails with a precise path (``Expected `int`, got `str` - at `$.total```) and a ``data`` error
rather than a ``KeyError`` deep inside the mapping.
"""

import json
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec
from crossledger.canonical.entities import (
    Address,
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
)
from crossledger.canonical.money import money, normalize_currency
from crossledger.plugins.connector import BaseConnector
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, SignatureError
from crossledger.plugins.http import classify_http
from crossledger.plugins.stripe import signature
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
    InboundEvent,
    Refs,
    Sandbox,
    SystemKind,
)
from pydantic import BaseModel, ConfigDict, SecretStr

API_VERSION = "2026-10-28.endive"
"""The Stripe API version the mapping is written against (``total_taxes``, ``invoice_payment``...).

The connector pins it on every request with the ``Stripe-Version`` header, so an account upgrade
in the Stripe dashboard cannot change the shapes it reads.
"""

SYSTEM = "stripe"

_COLLECTIONS = {"customer": "customers", "invoice": "invoices", "invoice_payment": "invoice_payments"}
"""What :meth:`StripeConnector.fetch` can read: entity type -> ``/v1/<collection>/{id}``."""


class StripeSettings(BaseModel):
    """``[connectors.stripe]``: where the API is, and the secrets that prove both directions.

    ``previous_webhook_secret`` is for a secret roll: Stripe signs with both the old and the new
    secret for a while, and the hub accepts either until the operator removes the old one.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.stripe.com"
    api_key: SecretStr
    webhook_secret: SecretStr
    previous_webhook_secret: SecretStr | None = None
    timeout_s: float = 10.0
    tolerance_s: int = 300


# -- The parts of Stripe's objects the mapping reads -------------------------------------------------

Currency = Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")]


class _Wire(msgspec.Struct, frozen=True):
    """Base of the decoded shapes: immutable, and blind to the many fields the mapping ignores."""


class _EventData(_Wire, frozen=True):
    object: dict[str, Any]


class _Envelope(_Wire, frozen=True):
    """A Stripe ``event``: only the fields every event must have are checked here."""

    id: str
    object: Literal["event"]
    type: str
    created: int
    data: _EventData


class _Customer(_Wire, frozen=True):
    id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address | None = None  # Stripe's address hash has the canonical Address's field names
    currency: Currency | None = None
    metadata: dict[str, str] = {}


class _Amount(_Wire, frozen=True):
    """One entry of ``total_taxes`` or ``total_discount_amounts``."""

    amount: int


class _Line(_Wire, frozen=True):
    amount: int
    description: str | None = None
    quantity: int | None = None


class _Lines(_Wire, frozen=True):
    data: list[_Line]


class _InvoiceTransitions(_Wire, frozen=True):
    finalized_at: int | None = None


class _SubscriptionDetails(_Wire, frozen=True):
    subscription: str | None = None


class _InvoiceParent(_Wire, frozen=True):
    """Since API version 2025-03-31 the subscription of an invoice lives here."""

    type: str | None = None
    subscription_details: _SubscriptionDetails | None = None


class _Invoice(_Wire, frozen=True):
    id: str
    customer: str
    currency: Currency
    lines: _Lines
    total: int
    number: str | None = None
    total_taxes: list[_Amount] | None = None
    total_discount_amounts: list[_Amount] | None = None
    status_transitions: _InvoiceTransitions = _InvoiceTransitions()
    due_date: int | None = None
    subscription: str | None = None
    parent: _InvoiceParent | None = None

    def subscription_id(self) -> str | None:
        """The subscription that billed this invoice, from the old field or the new ``parent``."""
        if self.subscription:
            return self.subscription
        if self.parent and self.parent.type == "subscription_details" and self.parent.subscription_details:
            return self.parent.subscription_details.subscription
        return None


class _PaymentRef(_Wire, frozen=True):
    type: str


class _PaymentTransitions(_Wire, frozen=True):
    paid_at: int | None = None


class _InvoicePayment(_Wire, frozen=True):
    id: str
    invoice: str
    currency: Currency
    amount_paid: int
    payment: _PaymentRef
    status_transitions: _PaymentTransitions = _PaymentTransitions()


_Shape = TypeVar("_Shape", bound=msgspec.Struct)


def _decode(obj: dict[str, Any], shape: type[_Shape], kind: str) -> _Shape:
    """``obj`` as ``shape``; a mismatch is the sender's fault, so it is a ``data`` error."""
    try:
        return msgspec.convert(obj, shape)
    except msgspec.ValidationError as error:
        message = f"stripe {kind} {obj.get('id')!r} is malformed: {error}"
        raise ConnectorError(Category.DATA, message) from error


# -- Mapping -------------------------------------------------------------------------------------------


def _time(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _address(address: Address | None) -> Address | None:
    """Stripe sends an all-null hash for "no address"; canonically that is no address at all."""
    return address if address is not None and address != Address() else None


def _customer(obj: dict[str, Any], refs: Refs, status: Literal["active", "deleted"]) -> Customer:
    """A Stripe customer as a canonical Customer.

    A customer the hub created itself carries its canonical id in ``metadata[crossledger_id]``;
    honouring it closes the loop, so the echo of the hub's own write is recognised as the same
    record instead of minting a second one.
    """
    customer = _decode(obj, _Customer, "customer")
    return Customer(
        id=customer.metadata.get("crossledger_id") or refs.canonical_id("customer", SYSTEM, customer.id),
        name=customer.name or customer.email or customer.id,
        email=customer.email,
        phone=customer.phone,
        address=_address(customer.address),
        currency=normalize_currency(customer.currency) if customer.currency else None,
        tax_id=None,
        status=status,
    )


def _invoice(obj: dict[str, Any], refs: Refs, status: Literal["issued", "void"]) -> Invoice:
    """A Stripe invoice as a canonical Invoice, amounts copied as they are (see the module doc)."""
    invoice = _decode(obj, _Invoice, "invoice")
    currency = normalize_currency(invoice.currency)
    subscription = invoice.subscription_id()
    return Invoice(
        id=refs.canonical_id("invoice", SYSTEM, invoice.id),
        customer_id=refs.canonical_id("customer", SYSTEM, invoice.customer),
        number=invoice.number,
        currency=currency,
        lines=[
            InvoiceLine(
                description=line.description or "",
                quantity=1 if line.quantity is None else line.quantity,
                amount=money(line.amount, currency),
            )
            for line in invoice.lines.data
        ],
        tax=money(sum(tax.amount for tax in invoice.total_taxes or []), currency),
        discount=money(sum(discount.amount for discount in invoice.total_discount_amounts or []), currency),
        total=money(invoice.total, currency),
        status=status,
        issued_at=_time(invoice.status_transitions.finalized_at),
        due_at=_time(invoice.due_date),
        subscription_id=refs.canonical_id("subscription", SYSTEM, subscription) if subscription else None,
    )


def _payment(paid: _InvoicePayment, customer: str, refs: Refs) -> Payment:
    """A paid ``invoice_payment`` as a canonical Payment, applied in full to its invoice."""
    amount = money(paid.amount_paid, paid.currency)
    return Payment(
        id=refs.canonical_id("payment", SYSTEM, paid.id),
        customer_id=refs.canonical_id("customer", SYSTEM, customer),
        amount=amount,
        received_at=_time(paid.status_transitions.paid_at),
        method=paid.payment.type,
        applications=[
            PaymentApplication(invoice_id=refs.canonical_id("invoice", SYSTEM, paid.invoice), amount=amount)
        ],
    )


# -- Errors ---------------------------------------------------------------------------------------------


def _describe(response: httpx.Response) -> str:
    """``HTTP 402 card_error/card_declined: Your card was declined.`` from Stripe's error body."""
    try:
        error = response.json()["error"]
        kind = "/".join(part for part in (error.get("type"), error.get("code")) if part)
        return f"stripe: HTTP {response.status_code} {kind}: {error.get('message')}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"stripe: HTTP {response.status_code}: {response.text[:500]}"


def _classify_response(classified: ConnectorError, response: httpx.Response) -> ConnectorError:
    """Refine the generic HTTP classification with what Stripe says about its own failure.

    ``Stripe-Should-Retry`` is Stripe telling its clients whether the same request can succeed
    later; it overrides the status code. ``false`` makes any failure final (``data``). ``true``
    makes a failure retryable: a status that is not retryable becomes ``transient``, while a
    status with a more specific retryable category (429 ``rate_limited``, 503 ``target_down``)
    keeps it, because that category also tells the runtime *how* to retry.
    """
    should_retry = response.headers.get("stripe-should-retry")
    if should_retry == "false":
        category = Category.DATA
    elif should_retry == "true" and not classified.category.retryable:
        category = Category.TRANSIENT
    else:
        category = classified.category
    return ConnectorError(
        category, _describe(response), retry_after=classified.retry_after, status=response.status_code
    )


class StripeConnector(BaseConnector):
    """Stripe as a billing system: webhooks in, records fetched on demand, and a local sandbox."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.BILLING
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.FETCH, Capability.SANDBOX}
    )
    settings_model: ClassVar[type[BaseModel]] = StripeSettings

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Check ``Stripe-Signature`` against the current (or, during a roll, the previous) secret."""
        settings = _settings(ctx)
        header = next((value for name, value in headers.items() if name.lower() == "stripe-signature"), None)
        if not header:
            raise SignatureError("missing Stripe-Signature header")
        secrets = [settings.webhook_secret, settings.previous_webhook_secret]
        signature.verify(
            header,
            body,
            [secret.get_secret_value() for secret in secrets if secret is not None],
            now=ctx.clock(),
            tolerance=settings.tolerance_s,
        )

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """One Stripe delivery is one event; ``payload`` keeps the whole event for ``to_canonical``."""
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise PayloadError(f"body is not JSON: {error}") from error
        try:
            envelope = msgspec.convert(payload, _Envelope)
        except msgspec.ValidationError as error:
            raise PayloadError(f"body is not a Stripe event: {error}") from error
        return [
            InboundEvent(
                source_event_id=envelope.id,
                type=envelope.type,
                occurred_at=datetime.fromtimestamp(envelope.created, UTC),
                payload=payload,
            )
        ]

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """The canonical change an event means, per the table in the module doc; ``[]`` for the rest."""
        obj = event.payload["data"]["object"]
        match event.type:
            case "customer.created" | "customer.updated":
                return [Change(type="customer.upserted", entity=_customer(obj, refs, "active"))]
            case "customer.deleted":
                return [Change(type="customer.deleted", entity=_customer(obj, refs, "deleted"))]
            case "invoice.finalized":
                return [Change(type="invoice.issued", entity=_invoice(obj, refs, "issued"))]
            case "invoice.voided":
                return [Change(type="invoice.voided", entity=_invoice(obj, refs, "void"))]
            case "invoice_payment.paid":
                return [Change(type="payment.settled", entity=self._payment(ctx, obj, refs))]
            case _:
                return []

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event carrying its object as Stripe has it now, for a replay after a fix at the source.

        The id, type and time stay: it is still the same event, only with fresher data.
        """
        obj = event.payload["data"]["object"]
        kind, object_id = obj.get("object"), obj.get("id")
        if not isinstance(kind, str) or not isinstance(object_id, str):
            raise ConnectorError(Category.DATA, f"stripe event {event.source_event_id} names no object to refetch")
        data = {**event.payload["data"], "object": self.fetch(ctx, kind, object_id)}
        return msgspec.structs.replace(event, payload={**event.payload, "data": data})

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """``GET /v1/<collection>/{id}`` for a customer, invoice or invoice_payment."""
        collection = _COLLECTIONS.get(entity_type)
        if collection is None:
            raise ConnectorError(
                Category.DATA, f"stripe cannot fetch {entity_type!r}; it fetches {', '.join(_COLLECTIONS)}"
            )
        settings = _settings(ctx)
        url = f"{settings.base_url.rstrip('/')}/v1/{collection}/{quote(external_id, safe='')}"
        headers = {
            "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
            "Stripe-Version": API_VERSION,
        }
        try:
            response = ctx.http.get(url, headers=headers, timeout=settings.timeout_s)
            response.raise_for_status()
            record = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise self.classify(error) from error
        if not isinstance(record, dict):
            raise ConnectorError(Category.DATA, f"stripe answered GET {url} with a non-object")
        return record

    def classify(self, error: Exception) -> ConnectorError:
        """:func:`~crossledger.plugins.http.classify_http`, refined by Stripe's own retry advice."""
        classified = classify_http(error, SYSTEM)
        if isinstance(error, httpx.HTTPStatusError):
            return _classify_response(classified, error.response)
        return classified

    def sandbox(self) -> Sandbox:
        """A fresh Stripe emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.stripe.sandbox import StripeSandbox

        return StripeSandbox()

    def _payment(self, ctx: Context, obj: dict[str, Any], refs: Refs) -> Payment:
        """An ``invoice_payment`` does not name its customer: the invoice it pays does, so read it."""
        paid = _decode(obj, _InvoicePayment, "invoice_payment")
        customer = self.fetch(ctx, "invoice", paid.invoice).get("customer")
        if not isinstance(customer, str):
            raise ConnectorError(Category.DATA, f"stripe invoice {paid.invoice} has no customer")
        return _payment(paid, customer, refs)


def _settings(ctx: Context) -> StripeSettings:
    if not isinstance(ctx.settings, StripeSettings):
        raise TypeError(f"the Stripe connector needs StripeSettings, got {type(ctx.settings).__name__}")
    return ctx.settings
