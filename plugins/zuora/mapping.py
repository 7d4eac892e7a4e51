"""Inbound: what a Zuora callout means canonically, read from the objects it names.

A callout is thin: crossledger's callout template (docs/connectors/zuora.md) sends the event's name,
the object's type and id, and the object's ``updatedDate``::

    {"eventType": "InvoicePosted", "objectType": "Invoice", "objectId": "8a8082c4...",
     "updatedDate": "2026-01-05T10:00:00Z"}

The connector reads the object as Zuora has it *now* (:func:`read`), so a callout sent twice, late
or out of order maps to the current state and never to a stale one::

    eventType                              object read                      canonical change
    AccountCreated, AccountUpdated      -> GET /v1/accounts/{id}         -> customer.upserted   Customer
    InvoicePosted (standard event 1110) -> GET /v1/invoices/{id} + items -> invoice.issued      Invoice
    PaymentProcessed                    -> GET /v1/payments/{id} + parts -> payment.settled     Payment, applied
    CreditMemoPosted                    -> GET /v1/creditmemos/{id}      -> credit_memo.issued  CreditMemo
                                           + the invoice it credits
    RefundProcessed                     -> GET /v1/refunds/{id}          -> refund.issued       Refund
                                           + the payment or memo refunded
    CreateSubscription (order action)   -> GET /v1/subscriptions/{number} -> subscription.created   Subscription
    ChangePlan (an upgrade, downgrade)  -> the same                    -> subscription.amended
    RenewSubscription                   -> the same                    -> subscription.renewed
    CancelSubscription                  -> the same                    -> subscription.cancelled
    Suspend, Resume                     -> the same                    -> subscription.amended

Every other event type is acknowledged and ignored. Amounts are Zuora's decimals in major units
(numbers, or strings where Zuora's description says so), turned into minor units of the account's
currency by :func:`~crossledger.canonical.money.from_decimal` (JPY has none, KWD three). An
invoice's tax is its ``taxAmount``, its lines its items (each item's ``chargeAmount``, tax apart).
A Zuora invoice is ``Posted`` (canonically issued) until it is paid: a ``balance`` of zero on a
posted invoice with a positive amount means paid. A credit memo credits the invoice it refers to
(``referredInvoiceId``): what it ``applied`` to the invoice's balance is its ``appliedAmount``. A
subscription is known by its *number*, the same across the versions each order action makes (a
new id each time); an item per rate plan charge (``plan`` the rate plan's ``productRatePlanId``;
the subscription's ``plan_tier`` the first tier its rate plans' catalog entries name in the
``tier_field`` custom field),
its period the current term, ``Cancelled`` canonically ``canceled`` and ``Suspended`` (what a
tenant's collections make of a customer who stopped paying) ``paused``. A
refund returns part of a payment or of a credit memo (the ``paid_total`` it may not exceed is that
document's amount), in the currency of that document; its status is Zuora's (``Processed`` is
``succeeded``).
"""

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

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
from crossledger.canonical.money import Money, from_decimal, normalize_currency
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.types import Change, Refs
from crossledger.plugins.zuora.client import SYSTEM, ZuoraApi

EVENTS: Final[dict[str, tuple[str, str]]] = {
    "AccountCreated": ("Account", "customer.upserted"),
    "AccountUpdated": ("Account", "customer.upserted"),
    "InvoicePosted": ("Invoice", "invoice.issued"),
    "PaymentProcessed": ("Payment", "payment.settled"),
    "CreditMemoPosted": ("CreditMemo", "credit_memo.issued"),
    "RefundProcessed": ("Refund", "refund.issued"),
    "CreateSubscription": ("Subscription", "subscription.created"),
    "ChangePlan": ("Subscription", "subscription.amended"),
    "RenewSubscription": ("Subscription", "subscription.renewed"),
    "CancelSubscription": ("Subscription", "subscription.cancelled"),
    "Suspend": ("Subscription", "subscription.amended"),
    "Resume": ("Subscription", "subscription.amended"),
}
"""The callouts the hub maps: event type -> (the object it names, the canonical change)."""

PATHS: Final[dict[str, str]] = {"Account": "/v1/accounts", "Invoice": "/v1/invoices", "Payment": "/v1/payments",
                                 "CreditMemo": "/v1/creditmemos", "Refund": "/v1/refunds",
                                 "Subscription": "/v1/subscriptions"}
"""Where each object the callouts name is read: ``{path}/{id}``."""


def amount(value: object, currency: str, field: str) -> Money:
    """A Zuora decimal (a number, or a numeric string) as Money in ``currency``."""
    try:
        return from_decimal(Decimal(str(value)), currency)
    except (InvalidOperation, ValueError) as error:
        raise ConnectorError(Category.DATA, f"{SYSTEM} {field} is not a decimal amount") from error


def when(value: object) -> datetime | None:
    """A Zuora date (``2026-01-05``) or date-time (ISO 8601, or the tenant-local ``2026-01-05 10:00:00``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError as error:
        raise ConnectorError(Category.DATA, f"{SYSTEM} sent a date that is not one") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read(api: ZuoraApi, object_type: str, object_id: str, tier_field: str | None = None) -> dict[str, Any]:
    """The object as Zuora has it now, with what mapping it needs beside it: an invoice's items
    (``_items``), a payment's applications (``_parts``), the invoice a credit memo credits
    (``_invoice``), the payment or credit memo a refund returns (``_source``), the tier each of a
    subscription's rate plans buys (``_tiers``, from the catalog's ``tier_field``)."""
    record = api.get(f"{PATHS[object_type]}/{object_id}")
    if object_type == "Subscription" and tier_field:
        record["_tiers"] = {plan_id: _tier(api, plan_id, tier_field) for plan_id in
                            {str(plan.get("productRatePlanId")) for plan in record.get("ratePlans", [])}}
    if object_type == "Invoice":
        record["_items"] = api.get(f"/v1/invoices/{object_id}/items").get("invoiceItems", [])
    elif object_type == "Payment":
        record["_parts"] = api.get(f"/v1/payments/{object_id}/parts").get("parts", [])
    elif object_type == "CreditMemo" and record.get("referredInvoiceId"):
        record["_invoice"] = api.get(f"/v1/invoices/{record['referredInvoiceId']}")
    elif object_type == "Refund":
        source = ("Payment", record["paymentId"]) if record.get("paymentId") else ("CreditMemo", record["creditMemoId"])
        record["_source"] = read(api, *source)
    return record


def _tier(api: ZuoraApi, product_rate_plan_id: str, tier_field: str) -> str | None:
    """The tier the catalog's rate plan buys; ``None`` when it says none, or is no longer in the
    catalog (a subscription keeps a rate plan the catalog has since dropped)."""
    try:
        found = api.get(f"/v1/object/product-rate-plan/{product_rate_plan_id}").get(tier_field)
    except ConnectorError as error:
        if error.category is not Category.DATA:
            raise
        return None
    return found if isinstance(found, str) and found else None


def customer(record: dict[str, Any], refs: Refs, hub_id_field: str) -> Customer:
    """A Zuora account (``GET /v1/accounts/{id}``) as a canonical Customer. An account the hub made
    carries its canonical id in the hub-id custom field: honouring it closes the loop, so the callout
    about the hub's own write is the same customer, not a second one."""
    basic = record.get("basicInfo") or {}
    contact = record.get("billToContact") or {}
    billing = record.get("billingAndPayment") or {}
    hub_id = basic.get(hub_id_field)
    address = Address(line1=contact.get("address1"), line2=contact.get("address2"), city=contact.get("city"),
                      state=contact.get("state"), postal_code=contact.get("zipCode"), country=contact.get("country"))
    status = basic.get("status")
    return Customer(
        id=hub_id if isinstance(hub_id, str) and hub_id.startswith("customer/")
        else refs.canonical_id("customer", SYSTEM, str(basic["id"])),
        name=basic.get("name") or str(basic["id"]),
        email=contact.get("workEmail") or None,
        phone=contact.get("workPhone") or None,
        address=None if address == Address() else address,
        currency=normalize_currency(billing["currency"]) if billing.get("currency") else None,
        status="deleted" if status == "Canceled" else "active",
    )


def invoice(record: dict[str, Any], refs: Refs) -> Invoice:
    """A Zuora invoice and its items as a canonical Invoice (see the module doc)."""
    currency = normalize_currency(str(record["currency"]))
    total = amount(record.get("amount", 0), currency, "invoice amount")
    balance = amount(record.get("balance", 0), currency, "invoice balance")
    lines = [
        InvoiceLine(description=str(item.get("chargeName") or item.get("description") or ""),
                    quantity=int(Decimal(str(item.get("quantity") or 1))),
                    amount=amount(item.get("chargeAmount", 0), currency, "invoice item chargeAmount"))
        for item in record.get("_items", [])
    ]
    paid = record.get("status") == "Posted" and total.amount > 0 and balance.amount == 0
    return Invoice(
        id=refs.canonical_id("invoice", SYSTEM, str(record["id"])),
        customer_id=refs.canonical_id("customer", SYSTEM, str(record["accountId"])),
        number=record.get("invoiceNumber"),
        currency=currency,
        lines=lines,
        tax=amount(record.get("taxAmount", 0), currency, "invoice taxAmount"),
        discount=amount(record.get("discount", 0) or 0, currency, "invoice discount"),
        total=total,
        status="paid" if paid else "issued" if record.get("status") == "Posted" else "draft",
        issued_at=when(record.get("postedDate") or record.get("invoiceDate")),
        due_at=when(record.get("dueDate")),
    )


def payment(record: dict[str, Any], refs: Refs) -> Payment:
    """A processed Zuora payment as a canonical Payment, applied to the invoices its parts name."""
    currency = normalize_currency(str(record["currency"]))
    return Payment(
        id=refs.canonical_id("payment", SYSTEM, str(record["id"])),
        customer_id=refs.canonical_id("customer", SYSTEM, str(record["accountId"])),
        amount=amount(record["amount"], currency, "payment amount"),
        received_at=when(record.get("effectiveDate")),
        method=str(record.get("type") or "") or None,
        applications=[
            PaymentApplication(invoice_id=refs.canonical_id("invoice", SYSTEM, str(part["invoiceId"])),
                               amount=amount(part["amount"], currency, "payment part amount"))
            for part in record.get("_parts", []) if part.get("invoiceId")
        ],
    )


def credit_memo(record: dict[str, Any], refs: Refs) -> CreditMemo:
    """A posted Zuora credit memo as a canonical CreditMemo against the invoice it refers to."""
    if not record.get("referredInvoiceId"):
        raise ConnectorError(Category.DATA, f"{SYSTEM} credit memo {record.get('id')} credits no invoice")
    currency = normalize_currency(str(record["currency"]))
    credited = record["_invoice"]
    return CreditMemo(
        id=refs.canonical_id("creditmemo", SYSTEM, str(record["id"])),
        customer_id=refs.canonical_id("customer", SYSTEM, str(record["accountId"])),
        invoice_id=refs.canonical_id("invoice", SYSTEM, str(record["referredInvoiceId"])),
        amount=amount(record["amount"], currency, "credit memo amount"),
        credited_total=amount(credited["amount"], normalize_currency(str(credited["currency"])), "invoice amount"),
        applied=amount(record.get("appliedAmount", 0), currency, "credit memo appliedAmount"),
        reason=record.get("reasonCode"),
        issued_at=when(record.get("postedOn") or record.get("creditMemoDate")),
    )


REFUND_STATUSES: Final[dict[str, Literal["pending", "succeeded", "failed", "canceled"]]] = {
    "Processed": "succeeded", "Processing": "pending", "Error": "failed", "Canceled": "canceled"}
"""A Zuora refund's ``status`` -> the canonical one."""


def refund(record: dict[str, Any], refs: Refs) -> Refund:
    """A Zuora refund as a canonical Refund of the payment or credit memo it returns."""
    source = record["_source"]
    currency = normalize_currency(str(source["currency"]))
    memo_id = record.get("creditMemoId")
    invoice_id = source.get("referredInvoiceId") if memo_id else None
    return Refund(
        id=refs.canonical_id("refund", SYSTEM, str(record["id"])),
        customer_id=refs.canonical_id("customer", SYSTEM, str(record["accountId"])),
        amount=amount(record["amount"], currency, "refund amount"),
        paid_total=amount(source["amount"], currency, "refunded document amount"),
        payment_id=refs.canonical_id("payment", SYSTEM, str(record["paymentId"])) if record.get("paymentId") else None,
        credit_memo_id=refs.canonical_id("creditmemo", SYSTEM, str(memo_id)) if memo_id else None,
        invoice_id=refs.canonical_id("invoice", SYSTEM, str(invoice_id)) if invoice_id else None,
        reason=record.get("reasonCode"),
        status=REFUND_STATUSES.get(str(record.get("status")), "pending"),
        issued_at=when(record.get("refundDate")),
    )


INTERVALS: Final[dict[str, tuple[Literal["month", "year"], int]]] = {
    "Month": ("month", 1), "Quarter": ("month", 3), "Semi_Annual": ("month", 6), "Annual": ("year", 1)}
"""A charge's ``billingPeriod`` -> the canonical interval and interval count."""


def subscription(record: dict[str, Any], refs: Refs) -> Subscription:
    """The latest version of a Zuora subscription as a canonical Subscription (see the module doc)."""
    currency = normalize_currency(str(record["currency"]))
    status = record.get("status")
    cancelled = status == "Cancelled"
    items = [
        SubscriptionItem(plan=str(plan.get("productRatePlanId") or plan.get("ratePlanName")),
                         product=plan.get("productName") or plan.get("ratePlanName"),
                         quantity=int(Decimal(str(charge.get("quantity") or 1))),
                         unit_amount=amount(charge.get("price", 0), currency, "rate plan charge price"),
                         interval=INTERVALS.get(str(charge.get("billingPeriod")), ("month", 1))[0],
                         interval_count=INTERVALS.get(str(charge.get("billingPeriod")), ("month", 1))[1])
        for plan in record.get("ratePlans", []) for charge in plan.get("ratePlanCharges", [])
    ]
    return Subscription(
        id=refs.canonical_id("subscription", SYSTEM, str(record["subscriptionNumber"])),
        customer_id=refs.canonical_id("customer", SYSTEM, str(record["accountId"])),
        currency=currency,
        items=items,
        status="canceled" if cancelled else "paused" if status == "Suspended" else "active",
        plan_tier=next((tier for plan in record.get("ratePlans", [])
                        if (tier := record.get("_tiers", {}).get(str(plan.get("productRatePlanId"))))), None),
        current_period_start=when(record.get("termStartDate")),
        current_period_end=when(record.get("termEndDate")),
        canceled_at=when(record.get("subscriptionEndDate")) if cancelled else None,
        contract_term_months=record.get("initialTerm") if record.get("initialTermPeriodType") == "Month" else None,
    )


def changes(event_type: str, record: dict[str, Any], refs: Refs, hub_id_field: str) -> list[Change]:
    """The canonical changes a callout means, from its object read now; ``[]`` for the rest."""
    match EVENTS.get(event_type, ("", ""))[1]:
        case "customer.upserted":
            found = customer(record, refs, hub_id_field)
            return [Change(type="customer.deleted" if found.status == "deleted" else "customer.upserted",
                           entity=found)]
        case "invoice.issued":
            return [Change(type="invoice.issued", entity=invoice(record, refs))]
        case "payment.settled":
            return [Change(type="payment.settled", entity=payment(record, refs))]
        case "credit_memo.issued":
            return [Change(type="credit_memo.issued", entity=credit_memo(record, refs))]
        case "refund.issued":
            return [Change(type="refund.issued", entity=refund(record, refs))]
        case "subscription.created" | "subscription.amended" | "subscription.renewed" | "subscription.cancelled":
            return [Change(type=EVENTS[event_type][1], entity=subscription(record, refs))]
    return []
