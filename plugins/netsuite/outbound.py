"""Canonical events -> NetSuite record service writes (the connector's ``plan``).

Every write is an upsert by external id (``PUT /record/v1/{type}/eid:{external key}``) of a whole
document, except the customer's status changes (``customer.deleted``, ``customer.deactivated``,
``customer.suspended``, ``customer.reinstated``) and ``customer.linked``, which ``PATCH`` a customer
the hub already knows the internal id of. Bodies keep amounts as :class:`~decimal.Decimal` in the
document's currency (converted by :func:`~crossledger.canonical.money.to_decimal` only) and leave
out what the canonical record does not say (``None``), so an upsert never clears a field. Text
longer than NetSuite takes (:data:`TEXT_LIMITS`) is a ``data`` error naming the field.
"""

from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec
from crossledger.canonical.entities import (
    CreditMemo,
    Customer,
    Invoice,
    JournalEntry,
    JournalLine,
    Payment,
    Refund,
    Subscription,
    external_key,
)
from crossledger.canonical.money import Money, to_decimal
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.limits import Limits, check_lengths
from crossledger.plugins.netsuite.settings import NetSuiteSettings
from crossledger.plugins.types import Operation, Refs

SYSTEM = "netsuite"

RECORD_TYPES = {"customer": "customer", "invoice": "invoice", "payment": "customerpayment",
                "creditmemo": "creditmemo", "refund": "customerrefund", "journalentry": "journalentry",
                "subscription": "customrecord_cl_subscription"}
"""Canonical entity type -> the NetSuite record type it is written to and read from."""

CUSTOMER_REFERENCE_DIMENSIONS = ("subsidiary", "terms")
"""Canonical customer dimensions written as NetSuite references (``{"terms": {"id": "2"}}``);
a dimension the ERP does not know under that name is left out."""

CREDIT_HOLD = "creditHoldOverride"
"""The customer's credit hold: ``ON`` holds it whatever its balance, ``OFF`` never, ``AUTO`` (the
default) holds it once it is over its credit limit. A select field, written as ``{"id": "ON"}``."""

CROSS_REFERENCE_FIELDS = {"salesforce": "custentity_cl_salesforce_id", "stripe": "custentity_cl_stripe_id",
                          "zuora": "custentity_cl_zuora_id", "zendesk": "custentity_cl_zendesk_id"}
"""The custom entity fields on a NetSuite customer that hold the other systems' ids for it."""

FREE_FORM_TEXT = 300
"""What a custom free-form text field takes (NetSuite's custom field types)."""

TEXT_LIMITS: dict[str, Limits] = {
    "customer": {"companyName": 83, **dict.fromkeys(CROSS_REFERENCE_FIELDS.values(), FREE_FORM_TEXT)},
    "subscription": dict.fromkeys(("custrecord_cl_plan_tier", "custrecord_cl_status", "custrecord_cl_contract_owner",
                                   "custrecord_cl_legal_entity"), FREE_FORM_TEXT),
}
"""The text fields of the records the hub writes whose limits NetSuite documents, by canonical entity
type: a company name takes 83 characters, custom free-form text fields 300."""

ADDRESS_LIMITS: Limits = {"addr1": 150, "addr2": 150, "city": 50}
"""A customer's address book address: its street lines and city."""

CURRENCY_LIST = "currencyList"
"""The customer's sublist of the currencies it may transact in besides its primary one."""

CUSTOMER_UPSERT = "customer.upsert"
"""The operation writing a customer; its primary currency may be refused (see the connector)."""

GROWING_SUBLISTS = frozenset({CURRENCY_LIST})
"""Sublists the hub adds lines to rather than sends whole: NetSuite keys their lines (a currency
listed again stays one line), and lines others added must stay."""

CAP_APPLICATIONS = "cap_applications"
"""Payload flag of a void: before sending, shrink each ``apply`` line to what its invoice still has
open (see :meth:`~crossledger.plugins.netsuite.connector.NetSuiteConnector.execute`)."""


def external_id_for(canonical_id: str) -> str:
    """The NetSuite external id of a canonical record: ``invoice/stripe/in_123`` ->
    ``invoice.stripe.in_123`` (:func:`~crossledger.canonical.entities.external_key`). Deterministic,
    so every retry upserts the same record, and recognisable when the record is read back."""
    return external_key(canonical_id)


def record_path(record_type: str, key: str) -> str:
    """``/record/v1/{type}/{key}``, the key (an internal id or ``eid:...``) percent-encoded."""
    return f"/record/v1/{record_type}/{quote(key, safe=':')}"


def eid_path(record_type: str, canonical_id: str) -> str:
    """Where the upsert of a canonical record goes: ``/record/v1/{type}/eid:{external id}``."""
    return record_path(record_type, f"eid:{external_id_for(canonical_id)}")


def _ref(internal_id: str) -> dict[str, str]:
    return {"id": internal_id}


def _date(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _amount(value: Money | None) -> Any:
    return None if value is None else to_decimal(value)


def _present(body: dict[str, Any]) -> dict[str, Any]:
    """The body without unset fields: an upsert leaves what it does not mention untouched."""
    return {name: value for name, value in body.items() if value is not None}


def _operation(name: str, entity_type: str, canonical_id: str, method: str, path: str,
               body: dict[str, Any], params: dict[str, str] | None = None) -> Operation:
    payload: dict[str, Any] = {"method": method, "path": path, "body": body}
    if params:
        payload["params"] = params
    return Operation(name=name, entity_type=entity_type, canonical_id=canonical_id, payload=payload)


def _upsert(name: str, entity_type: str, canonical_id: str, body: dict[str, Any]) -> Operation:
    """A ``PUT .../eid:{eid}`` of ``body`` to the entity type's record, keyed by the canonical id."""
    body = {"externalId": external_id_for(canonical_id), **_present(body)}
    check_lengths(SYSTEM, f"{entity_type} {canonical_id}", body, TEXT_LIMITS.get(entity_type, {}))
    # An update merges sublists unless told to replace them (lines would pile up on every repeat):
    # the hub always sends whole documents, so every sublist it sends replaces the one there.
    sublists = sorted(name for name, value in body.items()
                      if isinstance(value, dict) and "items" in value and name not in GROWING_SUBLISTS)
    params = {"replace": ",".join(sublists)} if sublists else None
    path = eid_path(RECORD_TYPES[entity_type], canonical_id)
    return _operation(name, entity_type, canonical_id, "PUT", path, body, params)


def _apply(documents: list[tuple[str, Money]]) -> dict[str, Any]:
    """The ``apply`` sublist settling each (document id, amount); NetSuite refuses zero amounts."""
    return {"items": [{"doc": _ref(doc), "apply": True, "amount": to_decimal(amount)}
                      for doc, amount in documents if amount.amount > 0]}


class Planner:
    """Maps canonical entities onto NetSuite request bodies for one account's settings."""

    def __init__(self, settings: NetSuiteSettings, refs: Refs) -> None:
        self.settings = settings
        self.refs = refs

    def require(self, entity_type: str, canonical_id: str) -> str:
        """The NetSuite id of a record the write depends on, or :class:`MissingDependency`."""
        internal_id: str | None = self.refs.external_id(canonical_id, SYSTEM)
        if internal_id is None:
            raise MissingDependency(entity_type, canonical_id)
        return internal_id

    # customers

    def customer(self, customer: Customer) -> Operation:
        dimensions = {name: _ref(customer.dimensions[name])
                      for name in CUSTOMER_REFERENCE_DIMENSIONS if name in customer.dimensions}
        # NetSuite needs a subsidiary to create a customer; afterwards the ERP owns it, so an update
        # from another system must not reset it to the default. A subsidiary the customer itself
        # carries (among its dimensions, spread last) wins over the default either way. The currency
        # is billing's (the only system that owns it): it is the customer's primary currency, which
        # NetSuite computes the customer's balance in, so it follows billing on every write. NetSuite
        # allows that until the customer's first transaction; after it the connector lists the
        # currency instead (see NetSuiteConnector.execute).
        creating = self.refs.external_id(customer.id, SYSTEM) is None
        body = {
            "companyName": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "vatRegNumber": customer.tax_id,
            "subsidiary": _ref(self.settings.subsidiary_id) if creating else None,
            "currency": self.settings.currency(customer.currency) if customer.currency else None,
            "addressBook": self._address_book(customer),
            **dimensions,
        }
        return _upsert(CUSTOMER_UPSERT, "customer", customer.id, body)

    @staticmethod
    def _address_book(customer: Customer) -> dict[str, Any] | None:
        address = customer.address
        if address is None:
            return None
        fields = {"addr1": address.line1, "addr2": address.line2, "city": address.city, "state": address.state,
                  "zip": address.postal_code, "country": address.country}
        check_lengths(SYSTEM, f"customer {customer.id} address", fields, ADDRESS_LIMITS)
        line = {"defaultBilling": True, "defaultShipping": True, "addressBookAddress": _present(fields)}
        return {"items": [line]}

    def deactivate(self, customer: Customer) -> list[Operation]:
        """``isInactive``: the customer stays, with its history, but takes no new transactions."""
        internal_id: str | None = self.refs.external_id(customer.id, SYSTEM)
        if internal_id is None:
            return []  # never reached NetSuite: nothing to deactivate
        path = record_path("customer", internal_id)
        return [_operation("customer.deactivate", "customer", customer.id, "PATCH", path, {"isInactive": True})]

    def credit_hold(self, customer: Customer, held: bool) -> list[Operation]:
        """Put the customer on credit hold (``ON``), or release it (back to ``AUTO``, the credit
        limit deciding again, not ``OFF``, which would exempt it for good)."""
        name, override = ("customer.credit_hold", "ON") if held else ("customer.release_hold", "AUTO")
        path = record_path("customer", self.require("customer", customer.id))
        return [_operation(name, "customer", customer.id, "PATCH", path, {CREDIT_HOLD: _ref(override)})]

    def link(self, customer: Customer) -> list[Operation]:
        """Only the other systems' ids, into the customer's custom entity fields: the profile is
        not this event's to write. Nothing to do while no other system has an id for it."""
        body = {field: external_id for system, field in CROSS_REFERENCE_FIELDS.items()
                if (external_id := self.refs.external_id(customer.id, system)) is not None}
        if not body:
            return []
        check_lengths(SYSTEM, f"customer {customer.id}", body, TEXT_LIMITS["customer"])
        path = record_path("customer", self.require("customer", customer.id))
        return [_operation("customer.link", "customer", customer.id, "PATCH", path, body)]

    # receivables

    def invoice(self, invoice: Invoice) -> Operation:
        lines = [self._line(self.settings.item_id, line.amount, line.description, line.quantity)
                 for line in invoice.lines]
        if invoice.tax.amount > 0:
            lines.append(self._line(self.settings.tax_item_id, invoice.tax, "Tax"))
        if invoice.discount.amount > 0:
            lines.append(self._line(self.settings.discount_item_id, invoice.discount, "Discount", sign=-1))
        body = {
            "entity": _ref(self.require("customer", invoice.customer_id)),
            "tranId": invoice.number,
            "tranDate": _date(invoice.issued_at),
            "dueDate": _date(invoice.due_at),
            "currency": self.settings.currency(invoice.currency),
            "item": {"items": lines},
        }
        return _upsert("invoice.upsert", "invoice", invoice.id, body)

    @staticmethod
    def _line(item_id: str, amount: Money, description: str, quantity: int = 1, sign: int = 1) -> dict[str, Any]:
        return {"item": _ref(item_id), "description": description, "quantity": quantity,
                "amount": sign * to_decimal(amount)}

    def void(self, invoice: Invoice) -> Operation:
        """A credit memo for the whole invoice, applied to it for as much as it still has open when
        it is sent: NetSuite's way to cancel a receivable while keeping the audit trail. Keyed
        ``{invoice}.void``, so it is made once."""
        invoice_id = self.require("invoice", invoice.id)
        operation = self._credit("invoice.void", f"{invoice.id}.void", invoice.customer_id, invoice_id,
                                 invoice.total, invoice.total, f"Void of invoice {invoice.number or invoice.id}", None)
        return msgspec.structs.replace(operation, payload={**operation.payload, CAP_APPLICATIONS: True})

    def credit_memo(self, memo: CreditMemo) -> Operation:
        """A credit memo applied to its invoice for exactly the part the source says lowered what the
        invoice asked for (all of it when the source does not say). The rest, credited after the
        invoice was paid (a Stripe credit note that refunds), stays on the customer's account, where
        a customer refund pays it out. So the memo books the same whether the invoice's payment
        reaches NetSuite before it or after; an application the invoice has no room for is refused
        by NetSuite (a data error naming the amount remaining), never cut down to fit."""
        invoice_id = self.require("invoice", memo.invoice_id)
        return self._credit("credit_memo.upsert", memo.id, memo.customer_id, invoice_id, memo.amount,
                            memo.amount if memo.applied is None else memo.applied, memo.reason or "Credit",
                            memo.issued_at)

    def _credit(self, name: str, canonical_id: str, customer_id: str, invoice_id: str, amount: Money,
                applied: Money, memo: str, issued_at: datetime | None) -> Operation:
        """A credit memo of ``amount`` applying ``applied`` of it to its invoice (nothing, when that is
        zero). ``createdFrom`` names the invoice either way, as a memo NetSuite makes from an invoice
        does."""
        body = {
            "entity": _ref(self.require("customer", customer_id)),
            "createdFrom": _ref(invoice_id),
            "tranDate": _date(issued_at),
            "currency": self.settings.currency(amount.currency),
            "memo": memo,
            "item": {"items": [self._line(self.settings.item_id, amount, memo)]},
            "apply": _apply([(invoice_id, applied)]),
        }
        return _upsert(name, "creditmemo", canonical_id, body)

    def payment(self, payment: Payment) -> Operation:
        applied = [(self.require("invoice", application.invoice_id), application.amount)
                   for application in payment.applications]
        body = {
            "customer": _ref(self.require("customer", payment.customer_id)),
            "currency": self.settings.currency(payment.amount.currency),
            "account": _ref(self.settings.ar_account_id),
            "payment": to_decimal(payment.amount),
            "tranDate": _date(payment.received_at),
            "apply": _apply(applied),
        }
        return _upsert("payment.upsert", "payment", payment.id, body)

    def refund(self, refund: Refund) -> list[Operation]:
        """A customer refund paying out what it returns: the credit memo's unapplied credit when the
        refund names one, else the customer payment's unapplied amount. NetSuite refuses to refund
        more than the document has left, as it refuses a payment already applied in full.

        Only a refund that ``succeeded`` moved money, so only that one is booked: a ``pending`` one
        is booked when the source reports it succeeded (the same canonical id, so the same record),
        a ``failed`` or ``canceled`` one never."""
        if refund.status != "succeeded":
            return []
        if refund.credit_memo_id is not None:
            doc = self.require("creditmemo", refund.credit_memo_id)
        elif refund.payment_id is not None:
            doc = self.require("payment", refund.payment_id)
        else:
            raise ConnectorError(Category.DATA, f"refund {refund.id} names neither the credit memo it pays out "
                                                f"nor the payment it returns; NetSuite needs one to apply it to")
        purpose = f"Refund for invoice {refund.invoice_id}" if refund.invoice_id else "Refund"
        body = {
            "customer": _ref(self.require("customer", refund.customer_id)),
            "currency": self.settings.currency(refund.amount.currency),
            "account": _ref(self.settings.refund_account_id),
            "tranDate": _date(refund.issued_at),
            "memo": f"{purpose}: {refund.reason}" if refund.reason else purpose,
            "apply": _apply([(doc, refund.amount)]),
        }
        return [_upsert("refund.upsert", "refund", refund.id, body)]

    # the ledger and the rest

    def journal_entry(self, entry: JournalEntry) -> Operation:
        body = {
            "subsidiary": _ref(entry.subsidiary or self.settings.subsidiary_id),
            "currency": self.settings.currency(entry.currency),
            "tranDate": _date(entry.posted_at),
            "memo": entry.memo,
            "line": {"items": [self._journal_line(line) for line in entry.lines]},
        }
        return _upsert("journal_entry.upsert", "journalentry", entry.id, body)

    def _journal_line(self, line: JournalLine) -> dict[str, Any]:
        return _present({"account": self.settings.account(line.account), "debit": _amount(line.debit),
                         "credit": _amount(line.credit), "memo": line.memo})

    def subscription(self, subscription: Subscription) -> Operation:
        """The custom record ``customrecord_cl_subscription``: SuiteBilling's own subscription record
        needs that module, a custom record works in any account (docs/connectors/netsuite.md)."""
        body = {
            "name": subscription.id,
            "custrecord_cl_customer": _ref(self.require("customer", subscription.customer_id)),
            "custrecord_cl_plan_tier": subscription.plan_tier,
            "custrecord_cl_status": subscription.status,
            "custrecord_cl_recurring_amount": to_decimal(subscription.recurring_total()),
            "custrecord_cl_currency": self.settings.currency(subscription.currency),
            "custrecord_cl_period_start": _date(subscription.current_period_start),
            "custrecord_cl_period_end": _date(subscription.current_period_end),
            "custrecord_cl_contract_term": subscription.contract_term_months,
            "custrecord_cl_contract_owner": subscription.contract_owner,
            "custrecord_cl_legal_entity": subscription.legal_entity,
        }
        return _upsert("subscription.upsert", "subscription", subscription.id, body)
