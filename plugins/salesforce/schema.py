"""The sandbox org's objects and fields, and how Salesforce accepts a value for each field type.

The org is set up the way the hub's installation guide asks (docs/connectors/salesforce.md):
Account and Contact with the hub's custom fields, and two custom objects, ``Invoice__c`` and
``Payment__c``. Every object has the ``CrossLedger_Id__c`` External ID field; it is deliberately
*not* Unique, as in many real orgs, so duplicates made outside the hub surface as ``300 Multiple
Choices`` on upsert instead of being impossible.

Besides the hub's own fields, Account has the standard ``Type`` picklist (a new org's values are
"Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller", "Installation
Partner", "Technology Partner" and "Other"; it is unrestricted, as in most orgs, so the API takes any
value) and ``OwnerId``, a lookup to a User. Users are not emulated: any id with the User key prefix
(``005``) is taken, and an account made without one is owned by the API's run-as user, as in a real
org.

Values are checked the way the REST API checks them, with its error codes: unknown or read-only
fields, text longer than the field, malformed emails, ids of the wrong object, currencies the org
does not have, numbers and dates in the wrong JSON type. Currency and number values are stored as
:class:`~decimal.Decimal` rounded half-up to the field's scale, dates as :class:`~datetime.date`.
A ``null`` clears a field, unless it is required.
"""

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from crossledger.plugins.salesforce import ids

CURRENCIES = frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "KWD", "CHF"})
"""The org's active currencies (Setup > Manage Currencies); USD is the corporate currency."""
CORPORATE_CURRENCY = "USD"
TEXT_KINDS = frozenset({"string", "textarea", "email", "url", "phone", "picklist", "id", "reference"})
NUMBER_KINDS = frozenset({"currency", "double"})
UNHELD_KEY_PREFIXES = {"User": "005"}
"""Objects that records point at but the sandbox does not hold: any id of their key prefix is taken."""
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class SalesforceError(Exception):
    """A refused request, answered as Salesforce does: a JSON array of ``{message, errorCode, fields}``."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        error: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]


def not_found() -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")


def parser_error(value: object, kind: str) -> SalesforceError:
    return SalesforceError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {kind} from "
                                                     f"{type(value).__name__} value {value!r} or request may be "
                                                     "missing a required field")


@dataclass(frozen=True)
class Field:
    """One field: its API name, type and the constraints the API enforces on writes."""

    name: str
    kind: str
    label: str = ""
    length: int = 255
    scale: int = 2
    required: bool = False
    writable: bool = True
    external_id: bool = False
    references: str | None = None
    cascade_delete: bool = False  # deleting the referenced record deletes this one
    options: frozenset[str] | None = None  # a restricted picklist's values

    def accept(self, value: Any) -> Any:
        """``value`` from a JSON body as stored, or :class:`SalesforceError`; None clears the field."""
        if value is None:
            if self.required:
                raise SalesforceError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{self.name}]",
                                      [self.name])
            return None
        if self.kind in NUMBER_KINDS:
            return self._number(value)
        if self.kind == "date":
            return self._date(value)
        if isinstance(value, dict | list):
            raise parser_error(value, "string")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if self.kind == "reference":
            return self._reference(text)
        if len(text) > self.length:
            raise SalesforceError(400, "STRING_TOO_LONG", f"{self.label or self.name}: data value too large: "
                                                          f"{text[:40]} (max length={self.length})", [self.name])
        if self.kind == "email" and not _EMAIL.fullmatch(text):
            raise SalesforceError(400, "INVALID_EMAIL_ADDRESS", f"{self.label or self.name}: invalid email "
                                                                f"address: {text}", [self.name])
        if self.options is not None and text not in self.options:
            raise SalesforceError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                  f"{self.label or self.name}: invalid currency code: {text}", [self.name])
        return text

    def _number(self, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise parser_error(value, self.kind)
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-self.scale), rounding=ROUND_HALF_UP)

    def _date(self, value: Any) -> date:
        try:
            if isinstance(value, str) and len(value) == 10:
                return date.fromisoformat(value)
        except ValueError:
            pass
        raise parser_error(value, "date")

    def _reference(self, text: str) -> str:
        normalized = ids.normalize(text)
        label = self.label or self.name
        if normalized is None:
            raise SalesforceError(400, "MALFORMED_ID", f"{label}: id value of incorrect type: {text}", [self.name])
        if self.references is not None and not normalized.startswith(key_prefix(self.references)):
            raise SalesforceError(400, "FIELD_INTEGRITY_EXCEPTION", f"{label}: id value of incorrect type: {text}",
                                  [self.name])
        return normalized


@dataclass(frozen=True)
class SObjectType:
    """One object: its API name, its 3-character id prefix, its fields, and its key in ``/_sandbox/state``."""

    name: str
    key_prefix: str
    state_key: str
    own_fields: tuple[Field, ...]
    fields: tuple[Field, ...] = field(init=False)

    def __post_init__(self) -> None:
        audit = (Field("Id", "id", "Record ID", length=18, writable=False),)
        stamps = tuple(Field(name, "datetime", writable=False)
                       for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"))
        common = (Field("CurrencyIsoCode", "picklist", "Currency ISO Code", length=3, options=CURRENCIES),
                  Field("CrossLedger_Id__c", "string", "CrossLedger Id", external_id=True))
        object.__setattr__(self, "fields", audit + self.own_fields + common + stamps)

    def find(self, name: str) -> Field | None:
        """The field named ``name``, case-insensitively (as the API matches names)."""
        lowered = name.lower()
        return next((candidate for candidate in self.fields if candidate.name.lower() == lowered), None)

    def require(self, name: str) -> Field:
        found = self.find(name)
        if found is None:
            raise SalesforceError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {self.name}",
                                  [name])
        return found


def _text(name: str, label: str, length: int = 255, **options: Any) -> Field:
    return Field(name, "string", label, length=length, **options)


ACCOUNT = SObjectType("Account", "001", "accounts", (
    _text("Name", "Account Name", required=True),
    Field("Phone", "phone", "Account Phone", length=40),
    Field("Website", "url", "Website"),
    Field("Description", "textarea", "Account Description", length=32000),
    Field("BillingStreet", "textarea", "Billing Street"),
    _text("BillingCity", "Billing City", 40),
    _text("BillingState", "Billing State/Province", 80),
    _text("BillingPostalCode", "Billing Zip/Postal Code", 20),
    _text("BillingCountry", "Billing Country", 80),
    Field("Type", "picklist", "Account Type", length=255),
    Field("ParentId", "reference", "Parent Account ID", references="Account"),
    Field("OwnerId", "reference", "Owner ID", length=18, required=True, references="User"),
    _text("Tax_Id__c", "Tax Id", 40),
    Field("Email__c", "email", "Billing Email", length=80),
    _text("Payment_Terms__c", "Payment Terms", 40),
    Field("Open_Balance__c", "currency", "Open Balance", scale=3),
    _text("Stripe_Customer_Id__c", "Stripe Customer Id"),
    _text("NetSuite_Id__c", "NetSuite Id"),
    _text("Zendesk_Organization_Id__c", "Zendesk Organization Id"),
    Field("Contract_Term_Months__c", "double", "Contract Term (Months)", scale=0),
    _text("Legal_Entity__c", "Legal Entity"),
    Field("Account_Status__c", "picklist", "Account Status", length=40),
))
CONTACT = SObjectType("Contact", "003", "contacts", (
    Field("AccountId", "reference", "Account ID", references="Account", cascade_delete=True),
    _text("FirstName", "First Name", 40),
    _text("LastName", "Last Name", 80, required=True),
    Field("Email", "email", "Email", length=80),
    Field("Phone", "phone", "Business Phone", length=40),
    _text("Title", "Title", 128),
))
INVOICE = SObjectType("Invoice__c", "a0B", "invoices", (
    _text("Name", "Invoice Number", 80, required=True),
    Field("Account__c", "reference", "Account", references="Account"),
    Field("Total__c", "currency", "Total", scale=3),
    _text("Status__c", "Status", 40),
    _text("Posting_Status__c", "Posting Status", 40),
    Field("Issued_Date__c", "date", "Issued Date"),
    Field("Due_Date__c", "date", "Due Date"),
))
PAYMENT = SObjectType("Payment__c", "a0C", "payments", (
    _text("Name", "Payment Reference", 80, required=True),
    Field("Account__c", "reference", "Account", references="Account"),
    Field("Invoice__c", "reference", "Invoice", references="Invoice__c"),
    Field("Amount__c", "currency", "Amount", scale=3),
    Field("Received_Date__c", "date", "Received Date"),
    _text("Method__c", "Method", 40),
))

OBJECTS: dict[str, SObjectType] = {sobject.name: sobject for sobject in (ACCOUNT, CONTACT, INVOICE, PAYMENT)}


def key_prefix(sobject_name: str) -> str:
    """The 3-character id prefix of an object, held by the sandbox or not."""
    held = OBJECTS.get(sobject_name)
    return held.key_prefix if held is not None else UNHELD_KEY_PREFIXES[sobject_name]


def find_sobject(name: str) -> SObjectType | None:
    """The object named ``name``, case-insensitively."""
    return next((sobject for key, sobject in OBJECTS.items() if key.lower() == name.lower()), None)


def sobject_type(name: str) -> SObjectType:
    """The object named ``name``, or the 404 the REST API gives for any other."""
    found = find_sobject(name)
    if found is None:
        raise SalesforceError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}' "
                                                "is not supported")
    return found
