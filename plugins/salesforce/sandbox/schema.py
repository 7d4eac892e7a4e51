"""The sandbox org's objects and fields, and how Salesforce accepts a value for each field type.

Account and Contact are Salesforce's own: every standard field their describe lists (the
``describes/`` files: a real org's describe results, API v48.0, that org's own custom fields
removed), with the describe's type, length, nillability and whether it can be created or
updated, so records carry every standard field and SOQL can name any of them. On top of them the
org is set up the way the hub's installation guide asks (docs/connectors/salesforce.md): the hub's
custom fields on Account and Contact, and two custom objects, ``Invoice__c`` and ``Payment__c``
(with a custom object's standard system fields). Every object has ``CurrencyIsoCode`` (the org
has multiple currencies) and the ``CrossLedger_Id__c`` External ID field; it is deliberately *not*
Unique, as in many real orgs, so duplicates made outside the hub surface as ``300 Multiple
Choices`` on upsert instead of being impossible.

Account's ``Type`` picklist is unrestricted, as in most orgs, so the API takes any value up to its
length. Lookups to objects the sandbox does not hold (``User``, ``RecordType``...) take any id of
that object's key prefix; a record made without an owner is owned by the API's run-as user, as in
a real org, and so are its ``CreatedById`` and ``LastModifiedById``.

Values are checked the way the REST API checks them, with its error codes: unknown or read-only
fields, text longer than the field (``STRING_TOO_LONG``), malformed emails, ids of the wrong
object, values outside a restricted picklist, numbers, booleans and dates in the wrong JSON type.
Currency and number values are stored as :class:`~decimal.Decimal` rounded half-up to the field's
scale, dates as :class:`~datetime.date`, datetimes as :class:`~datetime.datetime`. A ``null``
clears a field, unless it is required. Derived fields are kept in step with what they derive from:
compound addresses (``BillingAddress``) and a contact's ``Name``.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

from crossledger.plugins.salesforce import ids

DESCRIBE_DIR = Path(__file__).parent / "describes"
CURRENCIES = frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "KWD", "CHF"})
"""The org's active currencies (Setup > Manage Currencies); USD is the corporate currency."""
CORPORATE_CURRENCY = "USD"
TEXT_KINDS = frozenset({"string", "textarea", "email", "url", "phone", "picklist", "multipicklist", "combobox", "id",
                        "reference", "encryptedstring"})
NUMBER_KINDS = frozenset({"currency", "double", "percent", "int"})
UNHELD_KEY_PREFIXES = {"User": "005", "RecordType": "012", "Individual": "0PK", "DandBCompany": "06E",
                       "OperatingHours": "0OH", "Group": "00G"}
"""Objects that records point at but the sandbox does not hold: any id of their key prefix is taken."""
ADDRESS_PARTS = {"Street": "street", "City": "city", "State": "state", "PostalCode": "postalCode",
                 "Country": "country", "Latitude": "latitude", "Longitude": "longitude",
                 "GeocodeAccuracy": "geocodeAccuracy"}
"""A compound address's component fields (``BillingCity``) and their keys in the address (``city``)."""
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SOAP_TYPES = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "int": "xsd:int",
               "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double", "date": "xsd:date",
               "datetime": "xsd:dateTime", "address": "urn:address"}


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
    """One field: its API name, type and the constraints the API enforces on writes.

    ``createable`` / ``updateable``: whether a create or an update may set it; ``required``: a
    create must give it (not nillable, and nothing defaults it); ``compound``: the compound field
    this one is a component of (``BillingCity`` of ``BillingAddress``); ``described``: the entry
    Salesforce's describe has for it (standard fields), served as it is."""

    name: str
    kind: str
    label: str = ""
    length: int = 255
    scale: int = 2
    precision: int = 18
    required: bool = False
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    custom: bool = True
    external_id: bool = False
    references: str | None = None
    cascade_delete: bool = False  # deleting the referenced record deletes this one
    options: frozenset[str] | None = None  # a restricted picklist's values
    compound: str | None = None
    default: Any = None
    """The value a create gives the field when the body does not (``IsDeleted``: false)."""
    described: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def from_describe(cls, entry: Mapping[str, Any]) -> "Field":
        """The field a describe entry describes."""
        kind = entry["type"]
        return cls(
            entry["name"], kind, entry["label"], length=entry["length"] or (18 if kind in ("id", "reference") else 0),
            scale=entry["scale"], precision=entry["precision"],
            required=not entry["nillable"] and entry["createable"] and not entry["defaultedOnCreate"],
            createable=entry["createable"], updateable=entry["updateable"], nillable=entry["nillable"],
            custom=entry["custom"], external_id=entry["externalId"],
            references=entry["referenceTo"][0] if entry["referenceTo"] else None,
            options=frozenset(v["value"] for v in entry["picklistValues"]) if entry["restrictedPicklist"] else None,
            compound=entry["compoundFieldName"], default=entry["defaultValue"], described=entry,
        )

    @property
    def writable(self) -> bool:
        return self.createable or self.updateable

    @property
    def filterable(self) -> bool:
        """Whether a SOQL comparison may filter on it: not on long text areas, nor on compound fields
        (their describe says filterable, but only for ``DISTANCE``, which the sandbox has not)."""
        if self.kind in ("address", "location"):
            return False
        if self.described is not None:
            return bool(self.described["filterable"])
        return not (self.kind == "textarea" and self.length > 255)

    def describe(self) -> dict[str, Any]:
        """The field as ``GET /sobjects/{Type}/describe`` lists it."""
        if self.described is not None:
            return dict(self.described)
        text = self.kind in TEXT_KINDS
        numeric = self.kind in NUMBER_KINDS - {"int"}
        return {
            "aggregatable": self.kind != "textarea", "aiPredictionField": False, "autoNumber": False,
            "byteLength": self.length * 3 if text and self.kind not in ("id", "reference") else
            (18 if self.kind in ("id", "reference") else 0),
            "calculated": False, "calculatedFormula": None, "cascadeDelete": self.cascade_delete,
            "caseSensitive": False, "compoundFieldName": self.compound, "controllerName": None,
            "createable": self.createable, "custom": self.custom, "defaultValue": self.default,
            "defaultValueFormula": None, "defaultedOnCreate": self.default is not None or not self.createable,
            "dependentPicklist": False, "deprecatedAndHidden": False, "digits": 0,
            "displayLocationInDecimal": False, "encrypted": False, "externalId": self.external_id,
            "extraTypeInfo": None, "filterable": self.filterable or self.kind in ("address", "location"),
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False, "groupable": self.kind not in ("textarea", "double", "currency",
                                                                                 "percent", "datetime", "address"),
            "highScaleNumber": False, "htmlFormatted": False, "idLookup": self.kind == "id" or self.external_id,
            "inlineHelpText": None, "label": self.label or self.name, "length": self.length if text else 0,
            "mask": None, "maskType": None, "name": self.name, "nameField": self.name == "Name",
            "namePointing": False, "nillable": self.nillable, "permissionable": self.custom and self.nillable,
            "picklistValues": [{"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}
                               for value in sorted(self.options or ())],
            "polymorphicForeignKey": False, "precision": self.precision if numeric else 0,
            "queryByDistance": False, "referenceTargetField": None,
            "referenceTo": [self.references] if self.references else [],
            "relationshipName": self.name.removesuffix("__c") + "__r" if self.references and self.custom else None,
            "relationshipOrder": None, "restrictedDelete": False, "restrictedPicklist": self.options is not None,
            "scale": self.scale if numeric else 0, "searchPrefilterable": False,
            "soapType": _SOAP_TYPES.get(self.kind, "xsd:string"), "sortable": self.kind != "textarea",
            "type": self.kind, "unique": False, "updateable": self.updateable, "writeRequiresMasterRead": False,
        }

    def accept(self, value: Any) -> Any:
        """``value`` from a JSON body as stored, or :class:`SalesforceError`; None clears the field."""
        if value is None:
            if not self.nillable:
                raise SalesforceError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{self.name}]",
                                      [self.name])
            return None
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise parser_error(value, "boolean")
            return value
        if self.kind in NUMBER_KINDS:
            return self._number(value)
        if self.kind == "date":
            return self._date(value)
        if self.kind == "datetime":
            return self._datetime(value)
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
            what = "invalid currency code" if self.name == "CurrencyIsoCode" else \
                "bad value for restricted picklist field"
            raise SalesforceError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                  f"{self.label or self.name}: {what}: {text}", [self.name])
        return text

    def _number(self, value: Any) -> Decimal | int:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise parser_error(value, self.kind)
        if self.kind == "int":
            if Decimal(str(value)) != int(value):
                raise parser_error(value, "int")
            return int(value)
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-self.scale), rounding=ROUND_HALF_UP)

    def _date(self, value: Any) -> date:
        try:
            if isinstance(value, str) and len(value) == 10:
                return date.fromisoformat(value)
        except ValueError:
            pass
        raise parser_error(value, "date")

    def _datetime(self, value: Any) -> datetime:
        """``2024-01-31T17:32:28.000+0000``, ``...Z`` or ``...+00:00``; kept in UTC."""
        if isinstance(value, str):
            text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value.replace("Z", "+00:00"))
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None:
                return moment.astimezone(UTC)
        raise parser_error(value, "datetime")

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
    """One object: its API name, its 3-character id prefix, its fields, and its key in ``/_sandbox/state``.

    ``standard`` are Salesforce's fields (from a describe, or a custom object's system fields),
    ``own_fields`` the org's custom ones; every object also has ``CurrencyIsoCode`` and
    ``CrossLedger_Id__c``. ``label``/``plural`` name it in its describe."""

    name: str
    key_prefix: str
    state_key: str
    own_fields: tuple[Field, ...]
    standard: tuple[Field, ...]
    label: str
    plural: str
    fields: tuple[Field, ...] = field(init=False)

    def __post_init__(self) -> None:
        common = (Field("CurrencyIsoCode", "picklist", "Currency ISO Code", length=3, options=CURRENCIES,
                        custom=False, default=CORPORATE_CURRENCY),
                  Field("CrossLedger_Id__c", "string", "CrossLedger Id", external_id=True))
        object.__setattr__(self, "fields", self.standard + self.own_fields + common)

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

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

    def components(self, compound: Field) -> list[tuple[Field, str]]:
        """A compound address's component fields, each with its key in the address."""
        prefix = compound.name.removesuffix("Address")
        return [(part, key) for part in self.fields if part.compound == compound.name
                for suffix, key in ADDRESS_PARTS.items() if part.name == prefix + suffix]

    def derive(self, record: dict[str, Any]) -> None:
        """Set the fields Salesforce derives from others: compound addresses (``null`` while every
        component is) and a contact's ``Name``."""
        for compound in self.fields:
            if compound.kind == "address":
                parts = {key: record.get(part.name) for part, key in self.components(compound)}
                record[compound.name] = parts if any(value is not None for value in parts.values()) else None
        if self.name == "Contact":
            record["Name"] = " ".join(part for part in (record.get("FirstName"), record.get("LastName")) if part)


@cache
def describe_file(name: str) -> dict[str, Any]:
    """The describe result shipped for ``name`` (Account or Contact)."""
    loaded: dict[str, Any] = json.loads((DESCRIBE_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def _standard(name: str, **overrides: dict[str, Any]) -> tuple[Field, ...]:
    """The standard fields of ``name``'s describe; ``overrides`` change a few of a field's attributes
    (by field name) where the org behaves beyond what the describe says (deleting an account deletes
    its contacts, though ``AccountId`` is no master-detail)."""
    fields = [Field.from_describe(entry) for entry in describe_file(name)["fields"]]
    return tuple(replace(f, **overrides.get(f.name, {})) for f in fields)


def _system() -> tuple[Field, ...]:
    """A custom object's standard fields: its id and the audit fields every record has, its owner."""
    def read_only(field_name: str, kind: str, field_label: str, nillable: bool = False, **more: Any) -> Field:
        return Field(field_name, kind, field_label, length=18 if kind in ("id", "reference") else 0,
                     createable=False, updateable=False, nillable=nillable, custom=False, **more)

    return (
        read_only("Id", "id", "Record ID"),
        Field("OwnerId", "reference", "Owner ID", length=18, nillable=False, custom=False, references="User"),
        read_only("IsDeleted", "boolean", "Deleted", default=False),
        read_only("CreatedDate", "datetime", "Created Date"),
        read_only("CreatedById", "reference", "Created By ID", references="User"),
        read_only("LastModifiedDate", "datetime", "Last Modified Date"),
        read_only("LastModifiedById", "reference", "Last Modified By ID", references="User"),
        read_only("SystemModstamp", "datetime", "System Modstamp"),
        read_only("LastViewedDate", "datetime", "Last Viewed Date", nillable=True),
        read_only("LastReferencedDate", "datetime", "Last Referenced Date", nillable=True),
    )


def _text(name: str, label: str, length: int = 255, **options: Any) -> Field:
    return Field(name, "string", label, length=length, **options)


ACCOUNT = SObjectType("Account", "001", "accounts", (
    _text("Tax_Id__c", "Tax Id", 40),
    Field("Email__c", "email", "Billing Email", length=80),
    _text("Payment_Terms__c", "Payment Terms", 40),
    Field("Open_Balance__c", "currency", "Open Balance", scale=3),
    _text("Stripe_Customer_Id__c", "Stripe Customer Id"),
    _text("Zuora_Account_Id__c", "Zuora Account Id"),
    _text("NetSuite_Id__c", "NetSuite Id"),
    _text("Business_Central_Id__c", "Business Central Id"),
    _text("Zendesk_Organization_Id__c", "Zendesk Organization Id"),
    Field("Contract_Term_Months__c", "double", "Contract Term (Months)", scale=0),
    _text("Legal_Entity__c", "Legal Entity"),
    Field("Account_Status__c", "picklist", "Account Status", length=40),
), _standard("Account"), "Account", "Accounts")
CONTACT = SObjectType("Contact", "003", "contacts", (), _standard("Contact", AccountId={"cascade_delete": True}),
                      "Contact", "Contacts")
INVOICE = SObjectType("Invoice__c", "a0B", "invoices", (
    _text("Name", "Invoice Number", 80, required=True, nillable=False, custom=False),
    Field("Account__c", "reference", "Account", references="Account"),
    Field("Total__c", "currency", "Total", scale=3),
    _text("Status__c", "Status", 40),
    _text("Posting_Status__c", "Posting Status", 40),
    Field("Issued_Date__c", "date", "Issued Date"),
    Field("Due_Date__c", "date", "Due Date"),
), _system(), "Invoice", "Invoices")
PAYMENT = SObjectType("Payment__c", "a0C", "payments", (
    _text("Name", "Payment Reference", 80, required=True, nillable=False, custom=False),
    Field("Account__c", "reference", "Account", references="Account"),
    Field("Invoice__c", "reference", "Invoice", references="Invoice__c"),
    Field("Amount__c", "currency", "Amount", scale=3),
    Field("Received_Date__c", "date", "Received Date"),
    _text("Method__c", "Method", 40),
), _system(), "Payment", "Payments")

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
