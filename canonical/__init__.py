"""The canonical model: what every connector translates to and from.

Pure data, built on msgspec Structs (frozen, keyword-only). Nothing here imports any other part of
crossledger, so the model can be shared by connectors, the runtime and third-party plugins alike.
"""

from crossledger.canonical.entities import (
    Address,
    Contact,
    ContractTerms,
    CreditMemo,
    Customer,
    Entitlement,
    Entity,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    Payment,
    PaymentApplication,
    Refund,
    Subscription,
    SubscriptionItem,
    SupportCase,
    canonical_id,
    external_key,
    from_external_key,
)
from crossledger.canonical.events import Envelope, EventType, decode_envelope, encode_envelope, new_envelope
from crossledger.canonical.invariants import violations
from crossledger.canonical.money import Money, exponent, from_decimal, to_decimal

__all__ = [
    "Address",
    "Contact",
    "ContractTerms",
    "CreditMemo",
    "Customer",
    "Entitlement",
    "Entity",
    "Envelope",
    "EventType",
    "Invoice",
    "InvoiceLine",
    "JournalEntry",
    "JournalLine",
    "Money",
    "Payment",
    "PaymentApplication",
    "Refund",
    "Subscription",
    "SubscriptionItem",
    "SupportCase",
    "canonical_id",
    "decode_envelope",
    "encode_envelope",
    "exponent",
    "external_key",
    "from_decimal",
    "from_external_key",
    "new_envelope",
    "to_decimal",
    "violations",
]
