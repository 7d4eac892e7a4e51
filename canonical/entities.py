"""The canonical entities every system's records are translated into.

Identifiers are canonical ids (``customer/stripe/cus_123``: entity type, the system that first
told us about the record, and that system's id); each system's own ids live in the store's
cross-references, never on the entity. References between entities use canonical ids.

Each entity names its *field groups*: the unit of ownership in the system-of-record policy (the
CRM owns a customer's ``profile``, the ERP its ``financial`` dimensions, and so on).
"""

from datetime import datetime
from typing import ClassVar, Literal, TypedDict

import msgspec
from crossledger.canonical.money import Money


class _Entity(msgspec.Struct, frozen=True, kw_only=True, tag_field="entity", tag=str.lower):
    id: str
    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Fields that never become unknown again once known: a change leaving one unset means its
    # source does not know it yet, not that it was cleared, so the hub keeps the value it has.
    settled_once_known: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def kind(cls) -> str:
        return cls.__name__.lower()


def canonical_id(entity_type: str, system: str, external_id: str) -> str:
    """The canonical id of a record first seen in ``system`` under ``external_id``."""
    return f"{entity_type}/{system}/{external_id}"


def external_key(canonical_id: str) -> str:
    """The canonical id as a value safe in a URL path segment and in the external-id fields of other
    systems (NetSuite ``externalId``, Salesforce external-id fields, Zendesk ``external_id``):
    ``invoice/stripe/in_1`` -> ``invoice.stripe.in_1``. Records the hub creates carry it, so the
    hub recognises them when they come back, even before it has stored the cross-reference."""
    return canonical_id.replace("/", ".", 2)


def from_external_key(key: str) -> str | None:
    """The canonical id an :func:`external_key` stands for; None when ``key`` is not one (a record
    made by someone else). Exact: entity types and system names never contain dots."""
    entity, dot, rest = key.partition(".")
    system, dot2, external_id = rest.partition(".")
    if not (dot and dot2 and external_id) or entity not in ENTITY_TYPES or not system:
        return None
    return canonical_id(entity, system, external_id)


class Address(msgspec.Struct, frozen=True, kw_only=True):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class Customer(_Entity, frozen=True, kw_only=True):
    """A customer account, with its hierarchy, legal entity and financial dimensions."""

    name: str
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    tax_id: str | None = None
    legal_entity: str | None = None
    parent_id: str | None = None
    currency: str | None = None
    website: str | None = None
    # Where the CRM has the account: a prospect, or a customer (the deal is closed won).
    lifecycle: Literal["prospect", "customer"] | None = None
    status: Literal["active", "suspended", "deleted"] = "active"
    # ERP-owned: subsidiary, payment terms, tax registration, and any other dimension.
    dimensions: dict[str, str] = {}
    # ERP-owned: what the customer owes, as the ledger says.
    open_balance: Money | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "profile": ("name", "email", "phone", "address", "tax_id", "legal_entity", "website", "lifecycle"),
        # Its own group: billing fixes a customer's currency at the first bill, whoever owns the profile.
        "currency": ("currency",),
        "hierarchy": ("parent_id",),
        "financial": ("dimensions", "open_balance"),
        "status": ("status",),
    }
    # Stripe fixes a customer's currency at its first bill (or subscription): until then it has none.
    settled_once_known: ClassVar[tuple[str, ...]] = ("currency",)


class Contact(_Entity, frozen=True, kw_only=True):
    """A person at a customer (a Salesforce Contact, a Zendesk end user)."""

    customer_id: str | None = None
    first_name: str | None = None
    last_name: str
    email: str | None = None
    phone: str | None = None
    title: str | None = None
    status: Literal["active", "deleted"] = "active"

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "profile": ("customer_id", "first_name", "last_name", "email", "phone", "title"),
        "status": ("status",),
    }


class SubscriptionItem(msgspec.Struct, frozen=True, kw_only=True):
    """One priced line of a subscription: ``plan`` is the price's stable key (lookup key or id)."""

    plan: str
    product: str | None = None
    quantity: int = 1
    unit_amount: Money
    interval: Literal["day", "week", "month", "year"] = "month"
    interval_count: int = 1


class Subscription(_Entity, frozen=True, kw_only=True):
    """A recurring contract. ``plan_tier`` is what support entitlements key on (``pro``, ...)."""

    customer_id: str
    currency: str
    items: list[SubscriptionItem]
    status: Literal["trialing", "active", "past_due", "unpaid", "canceled", "incomplete",
                    "incomplete_expired", "paused"]
    plan_tier: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    # The contract behind it, as the CRM has it: term in months, the account owner, the legal entity.
    contract_term_months: int | None = None
    contract_owner: str | None = None
    legal_entity: str | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "currency", "items", "plan_tier", "current_period_start",
                     "current_period_end", "cancel_at_period_end", "canceled_at"),
        "status": ("status",),
        "contract": ("contract_term_months", "contract_owner", "legal_entity"),
    }

    def recurring_total(self) -> Money:
        """What one period costs: the sum of unit amount times quantity over the items."""
        return Money(amount=sum(item.unit_amount.amount * item.quantity for item in self.items),
                     currency=self.currency)


class ContractTerms(TypedDict):
    """The contract behind a customer's subscriptions as a CRM holds it on the customer's account:
    the :class:`Subscription`'s ``contract`` field group, None where unset."""

    contract_term_months: int | None
    contract_owner: str | None
    legal_entity: str | None


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True):
    description: str
    quantity: int = 1
    amount: Money


class Invoice(_Entity, frozen=True, kw_only=True):
    """A receivable. ``total`` must equal the lines plus tax minus discounts."""

    customer_id: str
    number: str | None = None
    currency: str
    lines: list[InvoiceLine]
    tax: Money
    discount: Money
    total: Money
    status: Literal["draft", "issued", "paid", "void", "uncollectible"]
    posting_status: Literal["unposted", "posted"] = "unposted"
    issued_at: datetime | None = None
    due_at: datetime | None = None
    subscription_id: str | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "number", "currency", "lines", "tax", "discount", "total",
                     "issued_at", "due_at", "subscription_id"),
        "status": ("status",),
        "posting": ("posting_status",),
    }


class PaymentApplication(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a payment applied to one invoice."""

    invoice_id: str
    amount: Money


class Payment(_Entity, frozen=True, kw_only=True):
    customer_id: str
    amount: Money
    received_at: datetime | None = None
    method: str | None = None
    applications: list[PaymentApplication] = []

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "amount", "received_at", "method", "applications"),
    }


class CreditMemo(_Entity, frozen=True, kw_only=True):
    """A credit against one invoice; it never exceeds what it credits (``credited_total``).

    ``applied`` is the part of the credit that lowered what the invoice still asked for (settled
    against its open balance); the rest was credited after the invoice was paid and goes back to the
    customer (a refund, their balance, or outside billing). It is the source's statement, fixed when
    the credit was issued, so the ERP books the same whatever order the invoice's payments and
    credits reach it in. None when the source does not say: the whole credit is applied."""

    customer_id: str
    invoice_id: str
    amount: Money
    credited_total: Money
    applied: Money | None = None
    reason: str | None = None
    issued_at: datetime | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "invoice_id", "amount", "credited_total", "applied", "reason", "issued_at"),
    }


class Refund(_Entity, frozen=True, kw_only=True):
    """Money returned to a customer; it never exceeds what was paid (``paid_total``).

    ``payment_id`` is the payment refunded, ``invoice_id`` the invoice that payment settled, and
    ``credit_memo_id`` the credit the refund pays out, when the source says so."""

    customer_id: str
    amount: Money
    paid_total: Money
    payment_id: str | None = None
    invoice_id: str | None = None
    credit_memo_id: str | None = None
    reason: str | None = None
    status: Literal["pending", "succeeded", "failed", "canceled"] = "succeeded"
    issued_at: datetime | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "amount", "paid_total", "payment_id", "invoice_id", "credit_memo_id",
                     "reason", "issued_at"),
        "status": ("status",),
    }


class JournalLine(msgspec.Struct, frozen=True, kw_only=True):
    """One side of a journal entry: exactly one of ``debit`` and ``credit`` is set."""

    account: str
    debit: Money | None = None
    credit: Money | None = None
    memo: str | None = None


class JournalEntry(_Entity, frozen=True, kw_only=True):
    """A ledger posting; its debits equal its credits. ``reference_id`` is the canonical document it
    books (a refund, a credit memo), when there is one."""

    currency: str
    lines: list[JournalLine]
    memo: str | None = None
    reference_id: str | None = None
    subsidiary: str | None = None
    posted_at: datetime | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("currency", "lines", "memo", "reference_id", "subsidiary", "posted_at"),
    }


class Entitlement(_Entity, frozen=True, kw_only=True):
    """What support a customer is entitled to, derived from its subscription."""

    customer_id: str
    plan_tier: str | None = None
    sla: str | None = None
    status: Literal["active", "suspended", "cancelled"] = "active"
    subscription_id: str | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "plan_tier", "sla", "subscription_id"),
        "status": ("status",),
    }


class SupportCase(_Entity, frozen=True, kw_only=True):
    """A support ticket."""

    customer_id: str | None = None
    contact_id: str | None = None
    subject: str
    description: str | None = None
    status: Literal["new", "open", "pending", "hold", "solved", "closed"] = "new"
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    opened_at: datetime | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "contact_id", "subject", "description", "priority", "opened_at"),
        "status": ("status",),
    }


Entity = (Customer | Contact | Subscription | Invoice | Payment | CreditMemo | Refund | JournalEntry
          | Entitlement | SupportCase)

ENTITY_TYPES: dict[str, type[Entity]] = {
    cls.kind(): cls
    for cls in (Customer, Contact, Subscription, Invoice, Payment, CreditMemo, Refund, JournalEntry, Entitlement,
                SupportCase)
}
