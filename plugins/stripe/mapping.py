"""Inbound: what a Stripe event means canonically.

::

    Stripe event                              canonical change         entity
    customer.created, customer.updated     -> customer.upserted        Customer
    customer.deleted (or any customer      -> customer.deleted         Customer (status deleted)
      event whose object is deleted)
    customer.subscription.created          -> subscription.created     Subscription
    customer.subscription.updated          -> subscription.amended     Subscription (status changes too)
    customer.subscription.deleted          -> subscription.cancelled   Subscription (status canceled)
    invoice.finalized                      -> invoice.issued           Invoice (status: see below)
                                              + subscription.renewed   Subscription, when the invoice bills
                                                                       a new period (subscription_cycle)
    invoice.voided                         -> invoice.voided           Invoice (status: see below)
    invoice.marked_uncollectible           -> invoice.issued           Invoice (status: see below, so
                                                                       uncollectible)
    invoice.paid                           -> invoice.paid             Invoice (partial: status, so paid)
    invoice_payment.paid                   -> payment.settled          Payment, applied to its invoice
    credit_note.created                    -> credit_memo.issued       CreditMemo against its invoice (applied
                                                                       for its pre-payment part)
    refund.created, refund.updated         -> refund.issued            Refund of a charge, with its status

Every other event type is acknowledged and ignored. ``invoice.paid`` says only that the invoice's
status is now paid (paid in full, or credited down to nothing): it speaks for the invoice's
``status`` group alone, so the CRM's copy of the invoice follows. The payment itself is
``invoice_payment.paid``'s, which says which payment settled the invoice, for how much, and when
(an invoice marked uncollectible can still be paid, and that payment maps the same way);
``charge.refunded`` to ``refund.created``, which fires once per refund (``charge.refunded``
restates the charge and all its refunds), so each refund is one ``refund.issued`` under the
refund's own id, whatever the redeliveries. ``refund.updated`` maps the same way: a refund created
``pending`` is booked by the ERP only once an update says it ``succeeded`` (a ``failed`` or
``canceled`` one never is), and an update that changes nothing the hub keeps is the same record
again, which the hub does not route a second time.

**Status comes from the object, not the event type.** The hub re-reads an object (``refetch``) to
settle two events stamped in the same second, or to replay one after a fix, and maps the fresh
object under the original event type: an ``invoice.finalized`` read back after the invoice was
voided must still say ``void``, and a ``customer.updated`` read back after a deletion (Stripe then
answers ``{"id", "deleted": true}``) must say deleted. So an invoice's status is its own ``status``
(``open`` is canonically ``issued``; ``paid``, ``void`` and ``uncollectible`` keep their names), the
event type deciding only for a ``draft`` or unstated one; a customer is deleted when the event or
the object says so, and then the change is ``customer.deleted`` whatever the event.

Some events do not carry all their entity needs, so the mapping reads it from Stripe (at the
pinned API version): the invoice a payment or credit note belongs to (its customer, the total
credited), the charge a refund returns (what was paid, and through which invoice payment), the
subscription an invoice renews, and a subscription's product when its price does not say its tier.

Amounts stay in Stripe's integer minor units all the way through: Stripe already speaks the
canonical unit, so :func:`~crossledger.canonical.money.money` only normalizes the currency and JPY
or KWD amounts cannot drift. Inconsistent documents are mapped as they are (a line in another
currency than its invoice keeps its own): the hub's invariant check, not the connector, decides
what a total that does not add up, or a document in two currencies, means. A time no system can
hold (``due_date: 10**18``) is refused naming its field (:func:`~crossledger.canonical.bounds.from_epoch`).

Payloads are decoded with msgspec into the few fields the mapping reads, so a malformed object
fails with a precise path (``Expected `int`, got `str` - at `$.total```) and a ``data`` error
rather than a ``KeyError`` deep inside the mapping.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from crossledger.canonical.bounds import from_epoch
from crossledger.canonical.entities import (
    Address,
    CreditMemo,
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
    Refund,
    Subscription,
    SubscriptionItem,
)
from crossledger.canonical.money import money, normalize_currency
from crossledger.plugins.errors import Category, ConnectorError, exception_reason
from crossledger.plugins.stripe.client import SYSTEM, StripeApi
from crossledger.plugins.types import Change, Refs

HUB_ID = "crossledger_id"
"""The metadata key in which a customer the hub created carries its canonical id."""

Currency = Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")]

InvoiceStatus = Literal["draft", "issued", "paid", "void", "uncollectible"]
"""The canonical invoice statuses (:class:`~crossledger.canonical.entities.Invoice`)."""


class _Wire(msgspec.Struct, frozen=True):
    """Base of the decoded shapes: immutable, and blind to the many fields the mapping ignores."""


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
    currency: Currency | None = None  # every line says its own; a line in another currency is data at fault
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
    status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None
    subscription: str | None = None
    parent: _InvoiceParent | None = None
    billing_reason: str | None = None

    def subscription_id(self) -> str | None:
        """The subscription that billed this invoice, from the old field or the new ``parent``."""
        if self.subscription:
            return self.subscription
        if self.parent and self.parent.type == "subscription_details" and self.parent.subscription_details:
            return self.parent.subscription_details.subscription
        return None


class _InvoiceTotal(_Wire, frozen=True):
    """What a credit note's mapping needs of the invoice it credits."""

    total: int
    currency: Currency


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


class _PaidInvoice(_Wire, frozen=True):
    """An invoice payment as a refund's mapping reads it: which payment, of which invoice."""

    id: str
    invoice: str


class _Recurring(_Wire, frozen=True):
    interval: Literal["day", "week", "month", "year"]
    interval_count: int = 1


class _Price(_Wire, frozen=True):
    id: str
    recurring: _Recurring
    product: str | dict[str, Any]  # an id, or the product itself when expanded
    unit_amount: int | None = None
    lookup_key: str | None = None
    metadata: dict[str, str] = {}

    def product_id(self) -> str:
        return self.product if isinstance(self.product, str) else str(self.product.get("id"))


class _SubscriptionItem(_Wire, frozen=True):
    price: _Price
    quantity: int | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None


class _SubscriptionItems(_Wire, frozen=True):
    data: list[_SubscriptionItem]


SubscriptionStatus = Literal["trialing", "active", "past_due", "unpaid", "canceled", "incomplete",
                             "incomplete_expired", "paused"]


class _Subscription(_Wire, frozen=True):
    id: str
    customer: str
    currency: Currency
    status: SubscriptionStatus
    items: _SubscriptionItems
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    # Before API version 2025-03-31 the period was the subscription's; now it is each item's.
    current_period_start: int | None = None
    current_period_end: int | None = None


class _CreditNote(_Wire, frozen=True):
    id: str
    invoice: str
    customer: str
    currency: Currency
    total: int
    created: int
    effective_at: int | None = None
    reason: str | None = None
    memo: str | None = None
    type: str | None = None
    pre_payment_amount: int | None = None

    def applied(self) -> int | None:
        """How much of the credit lowered the invoice's amount due: ``pre_payment_amount``; where an
        older API version does not say it, all of a ``pre_payment`` note and none of a
        ``post_payment`` one. The rest (``post_payment_amount``) was refunded, credited to the
        customer's balance or credited outside Stripe."""
        if self.pre_payment_amount is not None:
            return self.pre_payment_amount
        return {"pre_payment": self.total, "post_payment": 0}.get(self.type or "")


class _NoteRefund(_Wire, frozen=True):
    refund: str | None = None


class _CreditNoteRefunds(_Wire, frozen=True):
    """A credit note as a refund's mapping reads it: the refunds it made."""

    id: str
    refunds: list[_NoteRefund] = []


class _Refund(_Wire, frozen=True):
    id: str
    amount: int
    currency: Currency
    created: int
    status: Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
    charge: str | None = None
    customer: str | None = None
    reason: str | None = None


class _Charge(_Wire, frozen=True):
    id: str
    amount: int
    currency: Currency
    customer: str | None = None
    payment_intent: str | None = None


_Shape = TypeVar("_Shape", bound=msgspec.Struct)


def decode(obj: dict[str, Any], shape: type[_Shape], kind: str) -> _Shape:
    """``obj`` as ``shape``; a mismatch is the sender's fault, so it is a ``data`` error."""
    try:
        return msgspec.convert(obj, shape)
    except msgspec.ValidationError as error:
        message = f"stripe {kind} {obj.get('id')!r} is malformed: {exception_reason(error)}"
        raise ConnectorError(Category.DATA, message) from error


def _time(epoch: int | None, field: str) -> datetime | None:
    """Stripe's epoch seconds as a datetime; a time no system can hold is refused naming ``field``
    (:func:`~crossledger.canonical.bounds.from_epoch`), a ``data`` error."""
    return None if epoch is None else from_epoch(epoch, field)


def _address(address: Address | None) -> Address | None:
    """Stripe sends an all-null hash for "no address"; canonically that is no address at all."""
    return address if address is not None and address != Address() else None


def _hub_id(metadata: dict[str, str]) -> str | None:
    """The canonical id a customer the hub created carries, if it carries one that looks like it."""
    value = metadata.get(HUB_ID)
    return value if value and value.startswith("customer/") and value.count("/") >= 2 else None


def customer(obj: dict[str, Any], refs: Refs, status: Literal["active", "deleted"]) -> Customer:
    """A Stripe customer as a canonical Customer.

    A customer the hub created itself carries its canonical id in ``metadata[crossledger_id]``;
    honouring it closes the loop, so the echo of the hub's own write is recognised as the same
    record instead of minting a second one, even before the hub stored the cross-reference.
    """
    found = decode(obj, _Customer, "customer")
    return Customer(
        id=_hub_id(found.metadata) or refs.canonical_id("customer", SYSTEM, found.id),
        name=found.name or found.email or found.id,
        email=found.email,
        phone=found.phone,
        address=_address(found.address),
        currency=normalize_currency(found.currency) if found.currency else None,
        tax_id=None,
        status=status,
    )


INVOICE_STATUSES: dict[str, InvoiceStatus] = {"open": "issued", "paid": "paid", "void": "void",
                                              "uncollectible": "uncollectible"}
"""A Stripe invoice's ``status`` -> the canonical one; ``draft`` is left to the event (see the module doc)."""


def _read_ahead(refs: Refs, *records: tuple[str, str | None]) -> None:
    """The canonical ids of these Stripe records (entity type, Stripe id), read in one round trip:
    each ``refs.canonical_id`` that follows finds its answer read."""
    refs.prefetch([(entity, SYSTEM, stripe_id) for entity, stripe_id in records if stripe_id])


def invoice(found: _Invoice, refs: Refs, event_status: InvoiceStatus) -> Invoice:
    """A Stripe invoice as a canonical Invoice, amounts copied as they are (see the module doc). Its
    status is the invoice's own; ``event_status`` (what the event says happened) only stands in for
    a draft or unstated one."""
    currency = normalize_currency(found.currency)
    subscription = found.subscription_id()
    _read_ahead(refs, ("invoice", found.id), ("customer", found.customer), ("subscription", subscription))
    return Invoice(
        id=refs.canonical_id("invoice", SYSTEM, found.id),
        customer_id=refs.canonical_id("customer", SYSTEM, found.customer),
        number=found.number,
        currency=currency,
        lines=[
            InvoiceLine(
                description=line.description or "",
                quantity=1 if line.quantity is None else line.quantity,
                amount=money(line.amount, line.currency or currency),
            )
            for line in found.lines.data
        ],
        tax=money(sum(tax.amount for tax in found.total_taxes or []), currency),
        discount=money(sum(discount.amount for discount in found.total_discount_amounts or []), currency),
        total=money(found.total, currency),
        status=INVOICE_STATUSES.get(found.status or "", event_status),
        issued_at=_time(found.status_transitions.finalized_at, "status_transitions.finalized_at"),
        due_at=_time(found.due_date, "due_date"),
        subscription_id=refs.canonical_id("subscription", SYSTEM, subscription) if subscription else None,
    )


def payment(obj: dict[str, Any], refs: Refs, api: StripeApi) -> Payment:
    """A paid ``invoice_payment`` as a canonical Payment, applied in full to its invoice. An invoice
    payment does not name its customer: the invoice it pays does, so that is read."""
    paid = decode(obj, _InvoicePayment, "invoice_payment")
    customer_id = api.fetch("invoice", paid.invoice).get("customer")
    if not isinstance(customer_id, str):
        raise ConnectorError(Category.DATA, f"stripe invoice {paid.invoice} has no customer")
    amount = money(paid.amount_paid, paid.currency)
    _read_ahead(refs, ("payment", paid.id), ("customer", customer_id), ("invoice", paid.invoice))
    return Payment(
        id=refs.canonical_id("payment", SYSTEM, paid.id),
        customer_id=refs.canonical_id("customer", SYSTEM, customer_id),
        amount=amount,
        received_at=_time(paid.status_transitions.paid_at, "status_transitions.paid_at"),
        method=paid.payment.type,
        applications=[
            PaymentApplication(invoice_id=refs.canonical_id("invoice", SYSTEM, paid.invoice), amount=amount)
        ],
    )


def subscription(obj: dict[str, Any], refs: Refs, api: StripeApi) -> Subscription:
    """A Stripe subscription as a canonical Subscription: an item per subscription item (``plan`` is
    the price's lookup key, else its id), the period of its items, and its tier (:func:`_tier`)."""
    found = decode(obj, _Subscription, "subscription")
    currency = normalize_currency(found.currency)
    items = []
    for item in found.items.data:
        if item.price.unit_amount is None:
            raise ConnectorError(Category.DATA, f"stripe subscription {found.id}: price {item.price.id} has no "
                                                "whole unit amount (tiered and sub-unit prices are not mapped)")
        items.append(SubscriptionItem(
            plan=item.price.lookup_key or item.price.id,
            product=item.price.product_id(),
            quantity=1 if item.quantity is None else item.quantity,
            unit_amount=money(item.price.unit_amount, currency),
            interval=item.price.recurring.interval,
            interval_count=item.price.recurring.interval_count,
        ))
    first = found.items.data[0] if found.items.data else None
    start = first.current_period_start if first and first.current_period_start is not None \
        else found.current_period_start
    end = first.current_period_end if first and first.current_period_end is not None else found.current_period_end
    _read_ahead(refs, ("subscription", found.id), ("customer", found.customer))
    return Subscription(
        id=refs.canonical_id("subscription", SYSTEM, found.id),
        customer_id=refs.canonical_id("customer", SYSTEM, found.customer),
        currency=currency,
        items=items,
        status=found.status,
        plan_tier=_tier([item.price for item in found.items.data], api),
        current_period_start=_time(start, "current_period_start"),
        current_period_end=_time(end, "current_period_end"),
        cancel_at_period_end=found.cancel_at_period_end,
        canceled_at=_time(found.canceled_at, "canceled_at"),
    )


def _tier(prices: list[_Price], api: StripeApi) -> str | None:
    """What support entitlements key on: ``metadata["tier"]`` of a price, else of its product (read
    from Stripe unless expanded), else the first lookup key; None when nothing says."""
    for price in prices:
        if price.metadata.get("tier"):
            return price.metadata["tier"]
    products: dict[str, dict[str, Any]] = {}
    for price in prices:
        product_id = price.product_id()
        if product_id not in products:
            products[product_id] = price.product if isinstance(price.product, dict) else api.fetch("product",
                                                                                                   product_id)
        tier = (products[product_id].get("metadata") or {}).get("tier")
        if isinstance(tier, str) and tier:
            return tier
    return next((price.lookup_key for price in prices if price.lookup_key), None)


def credit_memo(obj: dict[str, Any], refs: Refs, api: StripeApi) -> CreditMemo:
    """A credit note as a canonical CreditMemo: its total, against the total of the invoice it
    credits, applied to that invoice for the part that lowered its amount due."""
    note = decode(obj, _CreditNote, "credit_note")
    credited = decode(api.fetch("invoice", note.invoice), _InvoiceTotal, "invoice")
    applied = note.applied()
    _read_ahead(refs, ("creditmemo", note.id), ("customer", note.customer), ("invoice", note.invoice))
    return CreditMemo(
        id=refs.canonical_id("creditmemo", SYSTEM, note.id),
        customer_id=refs.canonical_id("customer", SYSTEM, note.customer),
        invoice_id=refs.canonical_id("invoice", SYSTEM, note.invoice),
        amount=money(note.total, note.currency),
        credited_total=money(credited.total, credited.currency),
        applied=None if applied is None else money(applied, note.currency),
        reason=note.reason or note.memo,
        issued_at=_time(note.effective_at or note.created, "effective_at" if note.effective_at else "created"),
    )


def refund(obj: dict[str, Any], refs: Refs, api: StripeApi) -> Refund:
    """A refund as a canonical Refund of what its charge paid.

    When the charge paid an invoice, the refund names that invoice and the invoice payment the
    charge settled, under the same canonical id ``invoice_payment.paid`` gave it, so the ERP applies
    the refund to that very payment; when a credit note made the refund, it names the credit memo.
    """
    found = decode(obj, _Refund, "refund")
    if found.charge is None:
        raise ConnectorError(Category.DATA, f"stripe refund {found.id} names no charge")
    charge = decode(api.fetch("charge", found.charge), _Charge, "charge")
    customer_id = found.customer or charge.customer
    if customer_id is None:
        raise ConnectorError(Category.DATA, f"stripe refund {found.id}: charge {charge.id} has no customer")
    paid = _invoice_payment_of(charge, api)
    _read_ahead(refs, ("refund", found.id), ("customer", customer_id), ("payment", paid.id if paid else None),
                ("invoice", paid.invoice if paid else None))
    return Refund(
        id=refs.canonical_id("refund", SYSTEM, found.id),
        customer_id=refs.canonical_id("customer", SYSTEM, customer_id),
        amount=money(found.amount, found.currency),
        paid_total=money(charge.amount, charge.currency),
        payment_id=refs.canonical_id("payment", SYSTEM, paid.id) if paid else None,
        invoice_id=refs.canonical_id("invoice", SYSTEM, paid.invoice) if paid else None,
        credit_memo_id=_credit_memo_of(found.id, paid.invoice, refs, api) if paid else None,
        reason=found.reason,
        status="pending" if found.status == "requires_action" else found.status,
        issued_at=_time(found.created, "created"),
    )


def _invoice_payment_of(charge: _Charge, api: StripeApi) -> _PaidInvoice | None:
    """The invoice payment a charge settled: the one whose payment is the charge's payment intent."""
    if charge.payment_intent is None:
        return None
    query = {"payment[type]": "payment_intent", "payment[payment_intent]": charge.payment_intent}
    found = next(api.list_all("invoice_payments", query, page_size=1), None)
    return None if found is None else decode(found, _PaidInvoice, "invoice_payment")


def _credit_memo_of(refund_id: str, invoice_id: str, refs: Refs, api: StripeApi) -> str | None:
    """The credit memo of the invoice's credit note that made this refund, if one did."""
    for obj in api.list_all("credit_notes", {"invoice": invoice_id}):
        note = decode(obj, _CreditNoteRefunds, "credit_note")
        if any(entry.refund == refund_id for entry in note.refunds):
            return refs.canonical_id("creditmemo", SYSTEM, note.id)
    return None


def changes(event_type: str, obj: dict[str, Any], refs: Refs, api: StripeApi) -> list[Change]:
    """The canonical changes an event means, per the table in the module doc; ``[]`` for the rest."""
    match event_type:
        case "customer.created" | "customer.updated" | "customer.deleted":
            # A customer read back after its deletion is ``{"id", "deleted": true}``, whatever the event.
            if event_type == "customer.deleted" or obj.get("deleted") is True:
                return [Change(type="customer.deleted", entity=customer(obj, refs, "deleted"))]
            return [Change(type="customer.upserted", entity=customer(obj, refs, "active"))]
        case "customer.subscription.created":
            return [Change(type="subscription.created", entity=subscription(obj, refs, api))]
        case "customer.subscription.updated":
            return [Change(type="subscription.amended", entity=subscription(obj, refs, api))]
        case "customer.subscription.deleted":
            return [Change(type="subscription.cancelled", entity=subscription(obj, refs, api))]
        case "invoice.finalized":
            return _issued(decode(obj, _Invoice, "invoice"), refs, api)
        case "invoice.voided":
            return [Change(type="invoice.voided", entity=invoice(decode(obj, _Invoice, "invoice"), refs, "void"))]
        case "invoice.marked_uncollectible":
            # Not a void: the invoice is still owed and still payable; only its status changed.
            found = decode(obj, _Invoice, "invoice")
            return [Change(type="invoice.issued", entity=invoice(found, refs, "uncollectible"))]
        case "invoice.paid":
            paid = invoice(decode(obj, _Invoice, "invoice"), refs, "paid")
            return [Change(type="invoice.paid", entity=paid, groups=("status",))]
        case "invoice_payment.paid":
            return [Change(type="payment.settled", entity=payment(obj, refs, api))]
        case "credit_note.created":
            return [Change(type="credit_memo.issued", entity=credit_memo(obj, refs, api))]
        case "refund.created" | "refund.updated":
            return [Change(type="refund.issued", entity=refund(obj, refs, api))]
        case _:
            return []


def _issued(found: _Invoice, refs: Refs, api: StripeApi) -> list[Change]:
    """An issued invoice; one that bills a subscription's new period also renews the subscription,
    read as Stripe has it now (the invoice does not carry it)."""
    issued = [Change(type="invoice.issued", entity=invoice(found, refs, "issued"))]
    subscription_id = found.subscription_id()
    if found.billing_reason != "subscription_cycle" or subscription_id is None:
        return issued
    renewed = subscription(api.fetch("subscription", subscription_id), refs, api)
    return [*issued, Change(type="subscription.renewed", entity=renewed)]
