"""The canonical entities every system's records are translated into.

Identifiers are canonical ids (``customer/stripe/cus_123``: entity type, the system that first
told us about the record, and that system's id); each system's own ids live in the store's
cross-references, never on the entity. References between entities use canonical ids.

Each entity names its *field groups*: the unit of ownership in the system-of-record policy (the
CRM owns a customer's ``profile``, the ERP its ``financial`` dimensions, and so on).
"""

from datetime import datetime
from typing import ClassVar, Literal

import msgspec
from crossledger.canonical.money import Money


class _Entity(msgspec.Struct, frozen=True, kw_only=True, tag_field="entity", tag=str.lower):
    id: str
    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def kind(cls) -> str:
        return cls.__name__.lower()


def canonical_id(entity_type: str, system: str, external_id: str) -> str:
    """The canonical id of a record first seen in ``system`` under ``external_id``."""
    return f"{entity_type}/{system}/{external_id}"


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
    status: Literal["active", "suspended", "deleted"] = "active"
    # ERP-owned: subsidiary, payment terms, tax registration, and any other dimension.
    dimensions: dict[str, str] = {}

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "profile": ("name", "email", "phone", "address", "tax_id", "legal_entity", "currency"),
        "hierarchy": ("parent_id",),
        "financial": ("dimensions",),
        "status": ("status",),
    }


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
    """A credit against one invoice; it never exceeds what it credits (``credited_total``)."""

    customer_id: str
    invoice_id: str
    amount: Money
    credited_total: Money
    reason: str | None = None
    issued_at: datetime | None = None

    field_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("customer_id", "invoice_id", "amount", "credited_total", "reason", "issued_at"),
    }


Entity = Customer | Invoice | Payment | CreditMemo

ENTITY_TYPES: dict[str, type[_Entity]] = {cls.kind(): cls for cls in (Customer, Invoice, Payment, CreditMemo)}
