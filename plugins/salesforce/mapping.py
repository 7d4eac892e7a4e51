"""What maps to what between Salesforce records and the canonical model.

Inbound (Account and Contact, from outbound messages, CDC events or REST reads: all three arrive
here as a flat record ``{"attributes": {"type"}, "Id", field: value}``; outbound messages give every
value as text)::

    Account                                    Customer
      Name, Phone, Website, Email__c             name, phone, website, email
      BillingStreet (two lines), BillingCity,    address (line1, line2, city, state,
      BillingState, BillingPostalCode,           postal_code, country)
      BillingCountry
      ParentId                                   parent_id (the parent account's canonical id)
      Tax_Id__c, CurrencyIsoCode                 tax_id, currency
      Type                                       lifecycle: "Prospect" -> "prospect", "Customer..."
                                                   -> "customer", anything else or unset -> None
      Payment_Terms__c                           dimensions["terms"] (ERP-owned: the hub strips it)
    Contact                                    Contact
      AccountId                                  customer_id
      FirstName, LastName, Email, Phone, Title   first_name, last_name, email, phone, title

**Closed won.** The hub does not read Opportunities. The org's flow moves an account whose
Opportunity is Closed Won to ``Type`` "Customer - Direct"; that change reaches the hub like any
account edit (an outbound message or a CDC UPDATE), as ``lifecycle`` turning to "customer".

The contract behind a subscription is read from the Account (:func:`contract_of`, which the
connector's ``contract_terms`` answers with): ``Contract_Term_Months__c``, ``OwnerId`` (the account
owner, a User id) and ``Legal_Entity__c``.

A record's canonical id is the one in its External ID field (``CrossLedger_Id__c``) when the hub
made it, else the cross-reference of its Salesforce id (``refs.canonical_id``).

Outbound, :class:`Planner` writes the same fields the other way, plus what the ERP owns
(``dimensions["terms"]`` -> ``Payment_Terms__c``, ``open_balance`` -> ``Open_Balance__c``) and
the other systems' ids (``Stripe_Customer_Id__c``, ``NetSuite_Id__c``,
``Zendesk_Organization_Id__c``), and two custom objects: ``invoice.posted`` -> ``Invoice__c``,
``payment.settled`` -> ``Payment__c``; ``invoice.issued`` (an invoice issued again, as
uncollectible), ``invoice.paid`` and ``invoice.voided`` carry billing's status to the
``Invoice__c`` of a posted invoice. A field left unset canonically is left out of the body,
never cleared: the hub resets fields Salesforce owns before planning, and those must not be wiped.
One field is cleared on purpose: ``Open_Balance__c``, when the ERP's balance is in another currency
than the account's (:func:`open_balance`), rather than show the figure in the wrong currency.
Text longer than its field takes (:data:`TEXT_LIMITS`) is a ``data`` error naming the field.
``Type`` is Salesforce's too: the hub sets it only on an account it creates (a customer onboarded
from the API: "Customer - Direct" for a customer, "Prospect" for a prospect), never on an update.

Suspension is a flag on the Account: ``customer.suspended`` sets ``Account_Status__c`` to
"Suspended" and ``customer.reinstated`` clears it (``null``), so a suspension undone leaves the
account as it was. Ordinary upserts never write the flag. ``customer.deactivated`` (a journey
undoing its step elsewhere) asks nothing of Salesforce: the account is the CRM's, not the hub's.

Writes go by the record's Salesforce id when it is known (the cross-reference, or the id inside a
``<entity>/salesforce/<id>`` canonical id), otherwise as an upsert by External ID, which makes a
retry after a lost answer update the record the first attempt created.
"""

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote

import msgspec
from crossledger.canonical.entities import (
    Address,
    Contact,
    ContractTerms,
    Customer,
    Invoice,
    Payment,
    external_key,
    from_external_key,
)
from crossledger.canonical.money import Money, to_decimal
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.limits import Limits, check_lengths
from crossledger.plugins.salesforce import ids
from crossledger.plugins.salesforce.settings import SalesforceSettings
from crossledger.plugins.types import Operation, Refs

SYSTEM = "salesforce"

SOBJECTS = {"customer": "Account", "contact": "Contact", "invoice": "Invoice__c", "payment": "Payment__c"}
"""Canonical entity type -> the sObject that holds it."""
ENTITY_TYPES = {sobject: entity_type for entity_type, sobject in SOBJECTS.items()}

LINK_FIELDS = {"stripe": "Stripe_Customer_Id__c", "zuora": "Zuora_Account_Id__c", "netsuite": "NetSuite_Id__c",
               "business_central": "Business_Central_Id__c", "zendesk": "Zendesk_Organization_Id__c"}
"""Where an Account keeps the id another system has for the same customer."""

Lifecycle = Literal["prospect", "customer"]
ACCOUNT_TYPES: dict[Lifecycle, str] = {"prospect": "Prospect", "customer": "Customer - Direct"}
"""The Account ``Type`` the hub gives an account it creates, by the customer's lifecycle."""
TEXT_LIMITS: dict[str, Limits] = {
    "Account": {"Name": 255, "Phone": 40, "Website": 255, "Email__c": 80, "BillingStreet": 255, "BillingCity": 40,
                "BillingState": 80, "BillingPostalCode": 20, "BillingCountry": 80, "Tax_Id__c": 40,
                "Payment_Terms__c": 40},
    "Contact": {"FirstName": 40, "LastName": 80, "Email": 80, "Phone": 40, "Title": 128},
    "Invoice__c": {"Name": 80},
    "Payment__c": {"Name": 80, "Method__c": 40},
}
"""The lengths the objects' describe gives for the text fields the hub writes (a custom object's
Name takes 80; the custom fields are the integration's, as docs/connectors/salesforce.md sets them up)."""

STATUS_FIELD = "Account_Status__c"
SUSPENDED = "Suspended"
CONTRACT_FIELDS = ("Contract_Term_Months__c", "OwnerId", "Legal_Entity__c")

FIELDS = {
    "Account": ("Id", "Name", "Phone", "Website", "Email__c", "BillingStreet", "BillingCity", "BillingState",
                "BillingPostalCode", "BillingCountry", "ParentId", "Tax_Id__c", "CurrencyIsoCode", "Type",
                "Payment_Terms__c", "Open_Balance__c", *LINK_FIELDS.values(), *CONTRACT_FIELDS, "LastModifiedDate",
                "SystemModstamp"),
    "Contact": ("Id", "AccountId", "FirstName", "LastName", "Email", "Phone", "Title", "LastModifiedDate",
                "SystemModstamp"),
    "Invoice__c": ("Id", "Name", "Account__c", "Total__c", "CurrencyIsoCode", "Status__c", "Posting_Status__c",
                   "Issued_Date__c", "Due_Date__c", "LastModifiedDate", "SystemModstamp"),
    "Payment__c": ("Id", "Name", "Account__c", "Invoice__c", "Amount__c", "CurrencyIsoCode", "Received_Date__c",
                   "Method__c", "LastModifiedDate", "SystemModstamp"),
}
"""The fields the connector reads of each object (with the External ID field, in :func:`query_fields`)."""

Record = dict[str, Any]


def query_fields(sobject: str, external_id_field: str) -> tuple[str, ...]:
    return (*FIELDS[sobject], external_id_field)


def sobject_of(record: Record) -> str:
    attributes = record.get("attributes")
    return str(attributes.get("type", "")) if isinstance(attributes, dict) else ""


def text(record: Record, name: str) -> str | None:
    """A field as text, None when unset or blank (outbound messages send every value as text)."""
    value = record.get(name)
    if value is None:
        return None
    return str(value).strip() or None


def record_id(record: Record) -> str:
    raw = text(record, "Id") or ""
    return ids.normalize(raw) or raw


def modified_at(record: Record) -> datetime | None:
    """When the record last changed, from the first of its audit stamps it carries."""
    for name in ("LastModifiedDate", "SystemModstamp", "CreatedDate"):
        value = text(record, name)
        if value:
            return datetime.fromisoformat(value)
    return None


# --- inbound --------------------------------------------------------------------------------


def canonical_of(entity_type: str, record: Record, refs: Refs, external_id_field: str) -> str:
    """The record's canonical id: from its External ID when the hub wrote it, else by cross-reference."""
    key = text(record, external_id_field)
    known = from_external_key(key) if key else None
    if known is not None and known.startswith(f"{entity_type}/"):
        return known
    return refs.canonical_id(entity_type, SYSTEM, record_id(record))


def _reference(refs: Refs, entity_type: str, value: str | None) -> str | None:
    if value is None:
        return None
    return refs.canonical_id(entity_type, SYSTEM, ids.normalize(value) or value)


def _address(record: Record) -> Address | None:
    line1, _, line2 = (text(record, "BillingStreet") or "").partition("\n")
    address = Address(line1=line1.strip() or None, line2=line2.strip() or None, city=text(record, "BillingCity"),
                      state=text(record, "BillingState"), postal_code=text(record, "BillingPostalCode"),
                      country=text(record, "BillingCountry"))
    return None if address == Address() else address


def lifecycle(account_type: str | None) -> Lifecycle | None:
    """Where an Account ``Type`` puts the customer: only "Prospect" and the "Customer ..." values
    say; partners and "Other" are neither."""
    if account_type == ACCOUNT_TYPES["prospect"]:
        return "prospect"
    if account_type is not None and account_type.startswith("Customer"):
        return "customer"
    return None


def _whole(record: Record, name: str) -> int | None:
    """A number field of scale 0 as an int: REST gives a JSON number (maybe ``12.0``), an outbound
    message text."""
    value = text(record, name)
    if value is None:
        return None
    try:
        number = Decimal(value)
        if number == number.to_integral_value():
            return int(number)
    except (InvalidOperation, OverflowError):  # not a number; infinity
        pass
    raise ConnectorError(Category.DATA, f"{record_id(record)}: {name} is {value!r}, not a whole number")


def contract_of(record: Record) -> ContractTerms:
    """The contract terms on a fetched Account (``fetch(ctx, "customer", id)``): the term in months,
    the account owner's User id (18 characters) and the legal entity; None where unset."""
    owner = text(record, "OwnerId")
    return ContractTerms(contract_term_months=_whole(record, "Contract_Term_Months__c"),
                         contract_owner=(ids.normalize(owner) or owner) if owner else None,
                         legal_entity=text(record, "Legal_Entity__c"))


def customer(record: Record, refs: Refs, external_id_field: str) -> Customer:
    terms = text(record, "Payment_Terms__c")
    currency = text(record, "CurrencyIsoCode")
    return Customer(
        id=canonical_of("customer", record, refs, external_id_field),
        name=text(record, "Name") or record_id(record),
        email=text(record, "Email__c"),
        phone=text(record, "Phone"),
        website=text(record, "Website"),
        address=_address(record),
        tax_id=text(record, "Tax_Id__c"),
        currency=currency.upper() if currency else None,
        parent_id=_reference(refs, "customer", text(record, "ParentId")),
        lifecycle=lifecycle(text(record, "Type")),
        dimensions={"terms": terms} if terms else {},
    )


def contact(record: Record, refs: Refs, external_id_field: str) -> Contact:
    return Contact(
        id=canonical_of("contact", record, refs, external_id_field),
        customer_id=_reference(refs, "customer", text(record, "AccountId")),
        first_name=text(record, "FirstName"),
        last_name=text(record, "LastName") or record_id(record),
        email=text(record, "Email"),
        phone=text(record, "Phone"),
        title=text(record, "Title"),
    )


def deleted(entity_type: str, record: Record, refs: Refs, external_id_field: str) -> Customer | Contact:
    """A deleted record as the entity the hub marks deleted; only its status is news (a partial
    change of the ``status`` group), so the placeholder name never reaches the golden record."""
    canonical = canonical_of(entity_type, record, refs, external_id_field)
    if entity_type == "customer":
        return Customer(id=canonical, name=record_id(record), status="deleted")
    return Contact(id=canonical, last_name=record_id(record), status="deleted")


# --- outbound -------------------------------------------------------------------------------


def _present(body: Record) -> Record:
    """The body without unset fields (None, and the empty name the hub resets a name to)."""
    return {name: value for name, value in body.items() if value is not None and value != ""}


def _date(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _amount(value: Money | None) -> Decimal | None:
    return None if value is None else to_decimal(value)


def open_balance(entity: Customer) -> tuple[Decimal | None, str | None]:
    """``Open_Balance__c`` for the account, and what is withheld from it, if anything. The ERP
    computes a customer's balance in its own primary currency; an account shows it in its currency
    (``CurrencyIsoCode``, billing's). When the two differ (a customer that had transactions in the
    ERP before billing fixed another currency, which the ERP then keeps as primary), or billing has
    not fixed one yet (the account is in whatever currency the org gave it), the balance is not
    synced: the field is cleared (None), never shown as a number in another currency. The hub keeps
    the balance, so it shows once the currencies agree."""
    balance = entity.open_balance
    if balance is None or balance.currency == entity.currency:
        return _amount(balance), None
    account = f"the account is in {entity.currency}" if entity.currency else "billing has not fixed a currency yet"
    return None, (f"open balance not synced to {entity.id}: the ERP keeps it in {balance.currency}, {account}; "
                  "Open_Balance__c is cleared rather than show it in another currency")


def _born_here(canonical: str) -> str | None:
    """The Salesforce id inside a ``<entity>/salesforce/<id>`` canonical id."""
    _, system, external = canonical.split("/", 2) if canonical.count("/") >= 2 else ("", "", "")
    return external if system == SYSTEM and external else None


class Planner:
    """Canonical entities as Salesforce writes, for one org's settings and the hub's cross-references."""

    def __init__(self, settings: SalesforceSettings, refs: Refs) -> None:
        self.external_id_field = settings.external_id_field
        self.refs = refs

    def salesforce_id(self, canonical: str) -> str | None:
        return self.refs.external_id(canonical, SYSTEM) or _born_here(canonical)

    def require(self, entity_type: str, canonical: str) -> str:
        """The Salesforce id of a record the write points at, or :class:`MissingDependency`."""
        found = self.salesforce_id(canonical)
        if found is None:
            raise MissingDependency(entity_type, canonical)
        return found

    def links(self, customer_id: str) -> Record:
        """The other systems' ids for the customer, in the Account fields that hold them."""
        return _present({field: self.refs.external_id(customer_id, system) for system, field in LINK_FIELDS.items()})

    def customer(self, entity: Customer) -> Operation:
        address = entity.address or Address()
        street = "\n".join(line for line in (address.line1, address.line2) if line)
        balance, withheld = open_balance(entity)
        body = {
            "Name": entity.name,
            "Phone": entity.phone,
            "Website": entity.website,
            "Email__c": entity.email,
            "BillingStreet": street,
            "BillingCity": address.city,
            "BillingState": address.state,
            "BillingPostalCode": address.postal_code,
            "BillingCountry": address.country,
            "ParentId": self.require("customer", entity.parent_id) if entity.parent_id else None,
            "Tax_Id__c": entity.tax_id,
            "CurrencyIsoCode": entity.currency,
            "Payment_Terms__c": entity.dimensions.get("terms"),
            "Open_Balance__c": balance,
            **self.links(entity.id),
        }
        created_with = {"Type": ACCOUNT_TYPES[entity.lifecycle]} if entity.lifecycle else {}
        written = self._write("customer.upsert", "customer", entity.id, body, created_with)
        if withheld is None:
            return written
        cleared = {**written.payload, "body": {**written.payload["body"], "Open_Balance__c": None}}
        return msgspec.structs.replace(written, payload=cleared, withheld=withheld)

    def suspension(self, entity: Customer, *, suspended: bool) -> Operation:
        """``customer.suspended`` / ``customer.reinstated``: set or clear the Account's flag, by id."""
        account = self.require("customer", entity.id)
        name = "account.suspend" if suspended else "account.reinstate"
        return _operation(name, "customer", entity.id, "PATCH", f"/sobjects/Account/{account}",
                          {STATUS_FIELD: SUSPENDED if suspended else None}, account)

    def link(self, entity: Customer) -> list[Operation]:
        """``customer.linked``: only the other systems' ids, on the Account that already exists."""
        fields = self.links(entity.id)
        if not fields:
            return []
        account = self.require("customer", entity.id)
        return [_operation("customer.link", "customer", entity.id, "PATCH", f"/sobjects/Account/{account}", fields,
                           account)]

    def contact(self, entity: Contact) -> Operation:
        body = {
            "AccountId": self.require("customer", entity.customer_id) if entity.customer_id else None,
            "FirstName": entity.first_name,
            "LastName": entity.last_name,
            "Email": entity.email,
            "Phone": entity.phone,
            "Title": entity.title,
        }
        return self._write("contact.upsert", "contact", entity.id, body)

    def invoice(self, entity: Invoice) -> Operation:
        body = {
            "Name": entity.number or entity.id.rsplit("/", 1)[-1],
            "Account__c": self.require("customer", entity.customer_id),
            "Total__c": to_decimal(entity.total),
            "CurrencyIsoCode": entity.currency,
            "Status__c": entity.status,
            "Posting_Status__c": entity.posting_status,
            "Issued_Date__c": _date(entity.issued_at),
            "Due_Date__c": _date(entity.due_at),
        }
        return self._write("invoice.upsert", "invoice", entity.id, body)

    def invoice_status(self, entity: Invoice) -> list[Operation]:
        """``invoice.issued``, ``invoice.paid``, ``invoice.voided``: billing's status on the invoice
        Salesforce shows.
        Salesforce shows posted invoices only; until the ERP posts it, the posting (which carries
        the status then) is what brings the invoice, so a status change before it plans nothing."""
        if entity.posting_status != "posted" and self.salesforce_id(entity.id) is None:
            return []
        return [self.invoice(entity)]

    def payment(self, entity: Payment) -> Operation:
        applied = entity.applications[0].invoice_id if entity.applications else None
        body = {
            "Name": entity.id.rsplit("/", 1)[-1],
            "Account__c": self.require("customer", entity.customer_id),
            "Invoice__c": self.salesforce_id(applied) if applied else None,  # invoices reach Salesforce once posted
            "Amount__c": to_decimal(entity.amount),
            "CurrencyIsoCode": entity.amount.currency,
            "Received_Date__c": _date(entity.received_at),
            "Method__c": entity.method,
        }
        return self._write("payment.upsert", "payment", entity.id, body)

    def _write(self, name: str, entity_type: str, canonical: str, body: Record,
               created_with: Record | None = None) -> Operation:
        """By Salesforce id when known (stamping the External ID on records made elsewhere), else an
        upsert by External ID, which may create the record: only then go the ``created_with`` fields
        (an upsert that finds the record, after a lost answer, sets them to the same values)."""
        sobject = SOBJECTS[entity_type]
        check_lengths(SYSTEM, f"{sobject} for {canonical}", body, TEXT_LIMITS[sobject])
        key = external_key(canonical)
        known = self.salesforce_id(canonical)
        if known is not None:
            return _operation(name, entity_type, canonical, "PATCH", f"/sobjects/{sobject}/{known}",
                              {**_present(body), self.external_id_field: key}, known)
        path = f"/sobjects/{sobject}/{self.external_id_field}/{quote(key, safe='')}"
        return _operation(name, entity_type, canonical, "PATCH", path, _present({**body, **(created_with or {})}))


def _operation(name: str, entity_type: str, canonical: str, method: str, path: str, body: Record,
               salesforce_id: str | None = None) -> Operation:
    payload: Record = {"method": method, "path": path, "body": body}
    if salesforce_id is not None:
        payload["id"] = salesforce_id
    return Operation(name=name, entity_type=entity_type, canonical_id=canonical, payload=payload)


def reflects(record: Record, body: Record) -> bool:
    """Whether ``record`` (read back) already holds every field of ``body`` (a planned write)."""
    def same(wanted: Any, actual: Any) -> bool:
        if isinstance(wanted, Decimal):
            return isinstance(actual, int | Decimal) and not isinstance(actual, bool) and Decimal(actual) == wanted
        return bool(wanted == actual)

    return all(same(value, record.get(name)) for name, value in body.items())
