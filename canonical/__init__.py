"""The canonical model: what every connector translates to and from.

Pure data, built on msgspec Structs (frozen, keyword-only). Nothing here imports any other part of
crossledger, so the model can be shared by connectors, the runtime and third-party plugins alike.
"""

from crossledger.canonical.entities import (
    Address,
    CreditMemo,
    Customer,
    Entity,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
)
from crossledger.canonical.events import Envelope, EventType, decode_envelope, encode_envelope, new_envelope
from crossledger.canonical.invariants import violations
from crossledger.canonical.money import Money, exponent, from_decimal, to_decimal

__all__ = [
    "Address",
    "CreditMemo",
    "Customer",
    "Entity",
    "Envelope",
    "EventType",
    "Invoice",
    "InvoiceLine",
    "Money",
    "Payment",
    "PaymentApplication",
    "decode_envelope",
    "encode_envelope",
    "exponent",
    "from_decimal",
    "new_envelope",
    "to_decimal",
    "violations",
]
