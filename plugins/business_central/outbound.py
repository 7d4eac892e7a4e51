"""Canonical events -> Business Central writes: the plan, and how each planned write is made.

Business Central has no idempotency key and no upsert by external id. What it has are **natural
keys** the hub fills in and looks up before it creates anything: a customer's ``number`` and a
document's or payment line's ``externalDocumentNumber``, both derived from the canonical id
(:func:`natural_key`), so a repeat, or a retry after a timeout, finds the record the first attempt
made instead of making another.

**Concurrency.** Updates carry ``If-Match`` with the ETag read just before. When a Business Central
user changed the record in between, the answer is 412: the writer reads the record again and
applies the same body to the fresh copy. The body holds only the fields the event speaks for (the
hub's ownership rules already stripped what this event's source does not own), so what the user
changed in the ERP's own fields (payment terms, tax area, blocking) survives the re-apply.

**Documents.** An invoice is created as a draft with its lines (deep insert), then posted with the
bound action ``Microsoft.NAV.post`` (draft -> open). A draft left by an attempt that failed
before posting has its lines replaced in one atomic ``$batch`` (``Isolation: snapshot``) and is
posted; a posted one is left alone (Business Central documents are immutable once posted). A void
is ``Microsoft.NAV.cancel``, which makes the corrective credit memo.

**Payments** are lines of the customer payment journal, one per invoice the payment settles,
applied to it (``appliesToInvoiceId``), the ``amount`` received (positive, as the API shows a
receipt), all made in one atomic ``$batch``. They wait in the journal until someone in Business
Central posts it: the v2.0 API has no action that posts a payment journal.

Amounts are decimals in the document's currency (:func:`~crossledger.canonical.money.to_decimal`).
"""

import hashlib
from datetime import datetime
from typing import Any, Final

from crossledger.canonical.entities import CreditMemo, Customer, Invoice, Payment
from crossledger.canonical.money import Money, to_decimal
from crossledger.plugins.business_central.auth import SYSTEM
from crossledger.plugins.business_central.client import ApiClient, Record, answered, is_conflict
from crossledger.plugins.business_central.settings import BusinessCentralSettings
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.limits import Limits, check_lengths
from crossledger.plugins.types import Operation, Outcome, Refs

HUB_KEY_PREFIX: Final = "CL-"
"""How the natural keys the hub makes begin: a payment line with one is the hub's own."""
DUPLICATE_KEY: Final = "Internal_EntityWithSameKeyExists"
CUSTOMER_NUMBER_LENGTH: Final = 20
DOCUMENT_NUMBER_LENGTH: Final = 35

ENTITY_SETS: Final = {"customer": "customers", "invoice": "salesInvoices", "creditmemo": "salesCreditMemos",
                      "payment": "customerPayments"}
"""Canonical entity type -> the entity set it is written to and read from."""

CUSTOMER_LIMITS: Final[Limits] = {"displayName": 100, "email": 80, "phoneNumber": 30, "addressLine1": 100,
                                  "addressLine2": 50, "city": 30, "state": 30, "country": 10, "postalCode": 20,
                                  "website": 80, "taxRegistrationNumber": 20}
LINE_LIMITS: Final[Limits] = {"description": 100}
BLOCKED: Final = {"customer.deleted": "All", "customer.deactivated": "All", "customer.suspended": "Invoice",
                  "customer.reinstated": " "}
"""A customer's ``blocked`` for each status change: ``All`` takes no documents at all, ``Invoice``
no new invoices (a suspension), ``" "`` nothing blocked."""
DIMENSION_REFERENCES: Final = {"terms": ("paymentTermsId", "paymentTerms"), "tax_area": ("taxAreaId", "taxAreas")}
"""Canonical customer dimensions and the reference fields (and setup entity sets) they are written to."""


def natural_key(canonical_id: str, length: int) -> str:
    """``CL-`` and the canonical id's digest, cut to ``length`` characters: deterministic, so every
    retry looks up the same record, and within Business Central's field lengths (a customer number
    takes 20 characters, an external document number 35)."""
    return HUB_KEY_PREFIX + hashlib.sha256(canonical_id.encode()).hexdigest()[:length - len(HUB_KEY_PREFIX)].upper()


def customer_number(canonical_id: str) -> str:
    return natural_key(canonical_id, CUSTOMER_NUMBER_LENGTH)


def document_number(canonical_id: str) -> str:
    return natural_key(canonical_id, DOCUMENT_NUMBER_LENGTH)


def _date(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _present(body: Record) -> Record:
    return {name: value for name, value in body.items() if value is not None}


def quoted(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def _operation(name: str, entity_type: str, canonical_id: str, **payload: Any) -> Operation:
    return Operation(name=name, entity_type=entity_type, canonical_id=canonical_id, payload=payload)


class Planner:
    """Maps canonical entities onto Business Central writes for one company's settings."""

    def __init__(self, settings: BusinessCentralSettings, refs: Refs) -> None:
        self.settings = settings
        self.refs = refs

    def require(self, entity_type: str, canonical_id: str) -> str:
        """The Business Central id of a record the write depends on, or :class:`MissingDependency`."""
        found: str | None = self.refs.external_id(canonical_id, SYSTEM)
        if found is None:
            raise MissingDependency(entity_type, canonical_id)
        return found

    def customer(self, customer: Customer) -> Operation:
        address = customer.address
        body = _present({
            "displayName": customer.name,
            "type": "Company",
            "email": customer.email,
            "phoneNumber": customer.phone,
            "website": customer.website,
            "taxRegistrationNumber": customer.tax_id,
            "currencyCode": customer.currency,
            "addressLine1": address.line1 if address else None,
            "addressLine2": address.line2 if address else None,
            "city": address.city if address else None,
            "state": address.state if address else None,
            "country": address.country if address else None,
            "postalCode": address.postal_code if address else None,
        })
        check_lengths(SYSTEM, f"customer {customer.id}", body, CUSTOMER_LIMITS)
        dimensions = {name: code for name, code in customer.dimensions.items() if name in DIMENSION_REFERENCES}
        # A customer the hub knows in Business Central already (one born there, under its own
        # number) is updated by its id; only an unknown one is created under the hub's number.
        known = self.refs.external_id(customer.id, SYSTEM)
        return _operation("customer.upsert", "customer", customer.id, key=customer_number(customer.id), body=body,
                          dimensions=dimensions, create=known is None, id=known)

    def block(self, event_type: str, customer: Customer) -> list[Operation]:
        """``blocked`` for a status change; nothing for a customer that never reached Business Central."""
        known = self.refs.external_id(customer.id, SYSTEM)
        if known is None:
            return []
        name = "customer.unblock" if BLOCKED[event_type] == " " else f"customer.block_{BLOCKED[event_type].lower()}"
        return [_operation(name, "customer", customer.id, key=customer_number(customer.id),
                           body={"blocked": BLOCKED[event_type]}, dimensions={}, create=False, id=known)]

    def invoice(self, invoice: Invoice) -> Operation:
        lines = [self._line(self.settings.item_number, line.amount, line.description, line.quantity)
                 for line in invoice.lines]
        if invoice.tax.amount > 0:
            lines.append(self._line(self.settings.tax_item_number, invoice.tax, "Tax"))
        if invoice.discount.amount > 0:
            lines.append(self._line(self.settings.discount_item_number, invoice.discount, "Discount", sign=-1))
        header = _present({
            "customerId": self.require("customer", invoice.customer_id),
            "externalDocumentNumber": document_number(invoice.id),
            "invoiceDate": _date(invoice.issued_at),
            "postingDate": _date(invoice.issued_at),
            "dueDate": _date(invoice.due_at),
            "currencyCode": invoice.currency,
        })
        return _operation("invoice.upsert", "invoice", invoice.id, entity_set="salesInvoices",
                          key=header["externalDocumentNumber"], header=header, lines=lines)

    def void(self, invoice: Invoice) -> Operation:
        return _operation("invoice.cancel", "invoice", invoice.id, invoice_id=self.require("invoice", invoice.id))

    def credit_memo(self, memo: CreditMemo) -> Operation:
        """A credit memo for the invoice it credits, posted: Business Central applies it to the
        invoice, closing that much of it."""
        header = _present({
            "customerId": self.require("customer", memo.customer_id),
            "invoiceId": self.require("invoice", memo.invoice_id),
            "externalDocumentNumber": document_number(memo.id),
            "creditMemoDate": _date(memo.issued_at),
            "currencyCode": memo.amount.currency,
        })
        lines = [self._line(self.settings.item_number, memo.amount, memo.reason or "Credit")]
        return _operation("credit_memo.upsert", "creditmemo", memo.id, entity_set="salesCreditMemos",
                          key=header["externalDocumentNumber"], header=header, lines=lines)

    def payment(self, payment: Payment) -> Operation:
        """One journal line per invoice the payment settles (or one unapplied line)."""
        key = document_number(payment.id)
        customer_id = self.require("customer", payment.customer_id)
        applied = [(self.require("invoice", a.invoice_id), a.amount)
                   for a in payment.applications if a.amount.amount > 0]
        base = _present({"customerId": customer_id, "externalDocumentNumber": key,
                         "postingDate": _date(payment.received_at), "description": "Payment"})
        lines = ([{**base, "appliesToInvoiceId": invoice_id, "amount": to_decimal(amount)}
                  for invoice_id, amount in applied]
                 or [{**base, "amount": to_decimal(payment.amount)}])
        return _operation("payment.create", "payment", payment.id, key=key, lines=lines)

    @staticmethod
    def _line(item_number: str, amount: Money, description: str, quantity: int = 1, sign: int = 1) -> Record:
        line = {"lineType": "Item", "lineObjectNumber": item_number, "description": description[:100],
                "quantity": quantity, "unitPrice": sign * to_decimal(amount) / quantity}
        if to_decimal(amount) % quantity:  # a unit price with more places than the currency: one line of the total
            line.update(quantity=1, unitPrice=sign * to_decimal(amount))
        check_lengths(SYSTEM, "document line", line, LINE_LIMITS)
        return line


class Writer:
    """Makes planned writes in one company, through one :class:`ApiClient`."""

    def __init__(self, api: ApiClient, setup: "Setup") -> None:
        self.api = api
        self.setup = setup
        self.settings = api.settings

    def execute(self, op: Operation) -> Outcome:
        payload = op.payload
        if op.name.startswith("customer."):
            return self.customer(payload)
        if op.name == "invoice.cancel":
            return self.cancel(payload["invoice_id"])
        if op.name == "payment.create":
            return self.payment(payload)
        return self.document(payload)

    # customers

    def find_customer(self, key: str) -> Record | None:
        return self.api.find(self.api.company("/customers"), f"number eq {quoted(key)}")

    def customer(self, payload: Record) -> Outcome:
        """Create the customer under its number; when the number is taken (made before), update
        that customer. The number is the customer's primary key, so two deliveries racing each
        other still make one customer."""
        body = {**payload["body"], **self.setup.references(payload["dimensions"])}
        if payload["create"]:
            try:
                created = self.api.request("POST", self.api.company("/customers"),
                                           body={"number": payload["key"], **body})
                return Outcome(external_id=str(created.json()["id"]), created=True)
            except ConnectorError as refused:
                if not answered(refused, DUPLICATE_KEY):
                    raise
        known = payload.get("id")
        current = (self.api.get_if_any(self.api.company(f"/customers({known})")) if known
                   else self.find_customer(payload["key"]))
        if current is None:
            raise ConnectorError(Category.DATA, f"{SYSTEM} has no customer {known or payload['key']} to update")
        return Outcome(external_id=str(self.patch("customers", current, body)["id"]))

    def patch(self, entity_set: str, current: Record, body: Record) -> Record:
        """``body`` onto the record with ``If-Match``; on 412 the record is read again and the body
        applied to the fresh copy, up to ``max_conflict_retries`` times."""
        for attempt in range(1, self.settings.max_conflict_retries + 1):
            if all(current.get(name) == value for name, value in body.items()):
                return current  # already so: no write, no new ETag
            path = self.api.company(f"/{entity_set}({current['id']})")
            try:
                updated: Record = self.api.request("PATCH", path, body=body,
                                                   headers={"If-Match": current["@odata.etag"]}).json()
                return updated
            except ConnectorError as refused:
                if not is_conflict(refused) or attempt == self.settings.max_conflict_retries:
                    raise
                current = self.api.get(path)
        raise AssertionError("unreachable")

    # documents

    def find_document(self, entity_set: str, key: str) -> Record | None:
        lines = "salesInvoiceLines" if entity_set == "salesInvoices" else "salesCreditMemoLines"
        return self.api.find(self.api.company(f"/{entity_set}"), f"externalDocumentNumber eq {quoted(key)}",
                             expand=lines)

    def document(self, payload: Record) -> Outcome:
        """Find by external document number; create it with its lines, or replace a draft's lines;
        then post it."""
        entity_set, lines_set = payload["entity_set"], ("salesInvoiceLines" if payload["entity_set"] == "salesInvoices"
                                                        else "salesCreditMemoLines")
        self.setup.check_document(payload["header"].get("currencyCode"),
                                  {line["lineObjectNumber"] for line in payload["lines"]})
        current = self.find_document(entity_set, payload["key"])
        created = current is None
        if current is None:
            current = self.api.request("POST", self.api.company(f"/{entity_set}"),
                                       body={**payload["header"], lines_set: payload["lines"]}).json()
        elif current["status"] != "Draft":
            return Outcome(external_id=str(current["id"]), record=current)  # posted: done before
        else:
            self.replace_lines(entity_set, lines_set, current, payload["lines"])
        document_id = str(current["id"])
        self.api.request("POST", self.api.company(f"/{entity_set}({document_id})/Microsoft.NAV.post"))
        return Outcome(external_id=document_id, created=created)

    def replace_lines(self, entity_set: str, lines_set: str, draft: Record, lines: list[Record]) -> None:
        """A draft's lines replaced by ``lines``, all or nothing, in one ``$batch``."""
        base = f"companies({self.settings.company_id})/{entity_set}({draft['id']})/{lines_set}"
        requests = [{"method": "DELETE", "url": f"{base}({line['id']})", "headers": {"If-Match": "*"}}
                    for line in draft.get(lines_set, [])]
        requests += [{"method": "POST", "url": base, "body": line} for line in lines]
        self.api.batch(requests, atomic=True)

    def cancel(self, invoice_id: str) -> Outcome:
        invoice = self.api.get(self.api.company(f"/salesInvoices({invoice_id})"))
        if invoice["status"] in ("Canceled", "Corrective"):
            return Outcome(external_id=invoice_id, record=invoice)
        self.api.request("POST", self.api.company(f"/salesInvoices({invoice_id})/Microsoft.NAV.cancel"))
        return Outcome(external_id=invoice_id)

    # payments

    def payment_lines(self, key: str) -> tuple[str, list[Record]]:
        """The payment journal's id, and the lines already in it with this external document number."""
        journal = self.setup.payment_journal()
        path = self.api.company(f"/customerPaymentJournals({journal})/customerPayments")
        return journal, self.api.get(path, {"$filter": f"externalDocumentNumber eq {quoted(key)}"})["value"]

    def payment(self, payload: Record) -> Outcome:
        journal, existing = self.payment_lines(payload["key"])
        made = {line.get("appliesToInvoiceId") for line in existing}
        missing = [line for line in payload["lines"]
                   if line.get("appliesToInvoiceId", "00000000-0000-0000-0000-000000000000") not in made]
        url = f"companies({self.settings.company_id})/customerPaymentJournals({journal})/customerPayments"
        answers = self.api.batch([{"method": "POST", "url": url, "body": line} for line in missing],
                                 atomic=True) if missing else []
        first = answers[0] if answers else existing[0]
        return Outcome(external_id=str(first["id"]), created=bool(answers))

    def probe(self, op: Operation) -> Outcome | None:
        """Whether a write that timed out landed: its record found by its natural key."""
        payload = op.payload
        if op.name.startswith("customer."):
            found = self.find_customer(payload["key"])
            if found is None or any(found.get(k) != v for k, v in payload["body"].items()):
                return None
            return Outcome(external_id=str(found["id"]), record=found)
        if op.name == "payment.create":
            _, lines = self.payment_lines(payload["key"])
            return Outcome(external_id=str(lines[0]["id"])) if len(lines) == len(payload["lines"]) else None
        if op.name == "invoice.cancel":
            invoice = self.api.get(self.api.company(f"/salesInvoices({payload['invoice_id']})"))
            return Outcome(external_id=str(invoice["id"])) if invoice["status"] == "Canceled" else None
        document = self.find_document(payload["entity_set"], payload["key"])
        if document is None or document["status"] == "Draft":
            return None  # not there, or not posted yet: executing again finishes it
        return Outcome(external_id=str(document["id"]), record=document)


class Setup:
    """The company's setup records the hub refers to (payment terms, tax areas, currencies, items,
    the payment journal), read in one ``$batch`` the first time a call needs them."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.settings = api.settings
        self._tables: dict[str, list[Record]] | None = None

    def tables(self) -> dict[str, list[Record]]:
        if self._tables is None:
            company = f"companies({self.settings.company_id})"
            journal = quoted(self.settings.payment_journal)
            requests = {"paymentTerms": f"{company}/paymentTerms", "taxAreas": f"{company}/taxAreas",
                        "currencies": f"{company}/currencies", "items": f"{company}/items",
                        "customerPaymentJournals": f"{company}/customerPaymentJournals?$filter=code eq {journal}"}
            answers = self.api.batch([{"method": "GET", "url": url} for url in requests.values()], atomic=False)
            self._tables = {name: list(answer.get("value", [])) for name, answer in zip(requests, answers, strict=True)}
        return self._tables

    def references(self, dimensions: dict[str, str]) -> Record:
        """The reference fields for the customer's dimensions (``{"terms": "NET30"}`` ->
        ``{"paymentTermsId": ...}``); a code the company lacks is a data error."""
        fields = {}
        for name, code in dimensions.items():
            field, entity_set = DIMENSION_REFERENCES[name]
            found = next((r for r in self.tables()[entity_set] if r.get("code") == code), None)
            if found is None:
                raise ConnectorError(Category.DATA, f"{SYSTEM} has no {entity_set} record {code!r} for the customer's "
                                                    f"{name}; set it up in Business Central, then replay")
            fields[field] = found["id"]
        return fields

    def code(self, entity_set: str, record_id: str | None) -> str | None:
        """The code of a setup record by id (None for the blank GUID or an unknown id)."""
        return next((r.get("code") for r in self.tables()[entity_set] if r.get("id") == record_id), None)

    def check_document(self, currency: str | None, items: set[str]) -> None:
        """A document's currency and items exist in the company: a clear ``data`` error naming
        what to set up, before anything is written."""
        if currency not in (None, self.settings.local_currency) and not any(
                r.get("code") == currency for r in self.tables()["currencies"]):
            raise ConnectorError(Category.DATA, f"{SYSTEM} company has no currency {currency}; add it in Business "
                                                "Central (Currencies), then replay")
        missing = items - {str(r.get("number")) for r in self.tables()["items"]}
        if missing:
            raise ConnectorError(Category.DATA, f"{SYSTEM} company has no items {sorted(missing)}; create them or set "
                                                "item_number, tax_item_number, discount_item_number")

    def payment_journal(self) -> str:
        journals = self.tables()["customerPaymentJournals"]
        if not journals:
            raise ConnectorError(Category.DATA, f"{SYSTEM} has no customer payment journal "
                                                f"{self.settings.payment_journal!r}; set payment_journal")
        return str(journals[0]["id"])
