"""One Business Central company's records, and the rules its API enforces on them.

Entity sets are tables of JSON records keyed by GUID. Every write stamps ``lastModifiedDateTime``
(milliseconds, UTC) and a new ETag version, and reports the change to :attr:`Books.changed` (the
webhook notifier's feed). What a careless client trips over:

- **Concurrency**: ``PATCH`` and ``DELETE`` need ``If-Match`` with the record's current ETag (or
  ``*``); none is 400 ``BadRequest_InvalidToken``, a stale one 412 ``Request_EntityChanged``.
- **Documents**: a sales invoice or credit memo is created ``Draft``; only a draft takes line
  changes; ``Microsoft.NAV.post`` needs at least one line and a customer not blocked for invoicing,
  gives the document its posted number and opens it (``Open``, ``remainingAmount`` its total).
  ``Microsoft.NAV.cancel`` of an open, unpaid invoice makes its corrective credit memo and sets it
  ``Canceled``. A posted credit memo with an ``invoiceId`` closes that much of the invoice.
- **Payments** (``customerPaymentJournals({id})/customerPayments``) are journal lines: they sit
  unposted (the v2.0 API has no action to post them) until a user posts the journal
  (:meth:`Books.post_payment_journal`), which applies each line to its invoice and removes it.
- **References** must exist: customers, items (by id or ``lineObjectNumber``), currencies (the
  local currency has no record: its code, or blank, means LCY), payment terms, tax areas.
- **Amounts** are decimals with no more places than the currency allows.
"""

import copy
import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from crossledger.canonical.money import exponent
from crossledger.plugins.business_central.sandbox.odata import Record, etag

LOCAL_CURRENCY = "USD"
BLANK_GUID = "00000000-0000-0000-0000-000000000000"
CUSTOMER_BLOCKED = ("", " ", "Ship", "Invoice", "All")
"""``blocked`` values: ``" "`` (or blank) none, ``Ship``, ``Invoice`` (no new documents), ``All``."""

SEEDED: dict[str, list[Record]] = {
    "items": [
        {"number": "SERVICES", "displayName": "Subscription services", "type": "Service", "unitPrice": 0},
        {"number": "TAX", "displayName": "Sales tax", "type": "Service", "unitPrice": 0},
        {"number": "DISCOUNT", "displayName": "Discount", "type": "Service", "unitPrice": 0},
    ],
    "currencies": [
        {"code": code, "displayName": name, "symbol": symbol, "amountDecimalPlaces": places,
         "amountRoundingPrecision": Decimal(precision)}
        for code, name, symbol, places, precision in (
            ("EUR", "Euro", "€", "2:2", "0.01"), ("GBP", "Pound Sterling", "£", "2:2", "0.01"),
            ("CAD", "Canadian dollar", "$", "2:2", "0.01"), ("JPY", "Japanese yen", "¥", "0:0", "1"),
            ("KWD", "Kuwaiti dinar", "KD", "3:3", "0.001"))
    ],
    "paymentTerms": [
        {"code": code, "displayName": name, "dueDateCalculation": calc, "discountDateCalculation": "",
         "discountPercent": 0, "calculateDiscountOnCreditMemos": False}
        for code, name, calc in (("NET15", "Net 15 days", "15D"), ("NET30", "Net 30 days", "30D"),
                                 ("COD", "Cash on delivery", "0D"))
    ],
    "taxAreas": [
        {"code": "NONTAX", "displayName": "Not taxable", "taxType": "Sales Tax"},
        {"code": "STANDARD", "displayName": "Standard rate", "taxType": "Sales Tax"},
    ],
    "customerPaymentJournals": [
        {"code": "CASHRCPT", "displayName": "Cash receipts", "balancingAccountId": BLANK_GUID,
         "balancingAccountNumber": ""},
    ],
}
"""The company's setup, as a new Business Central company (CRONUS-like) has it."""

DEMO_CUSTOMERS: list[Record] = [
    {"number": number, "displayName": name, "email": email, "city": city, "state": state, "country": "US",
     "addressLine1": street, "postalCode": postal}
    for number, name, email, street, city, state, postal in (
        ("10000", "Adatum Corporation", "robert.townes@contoso.com", "192 Market Square", "Atlanta", "GA", "31772"),
        ("20000", "Trey Research", "helen.ray@contoso.com", "153 Thomas Drive", "Chicago", "IL", "61236"),
        ("30000", "School of Fine Art", "meagan.bond@contoso.com", "10 Deerfield Road", "Miami", "FL", "37125"))
]
"""The demo company's customers (CRONUS's), with ids fixed by :func:`demo_id` so a test can name them."""


def demo_id(entity_set: str, number: str) -> str:
    """The fixed GUID of a demo record."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"business-central-demo/{entity_set}/{number}"))

WRITABLE: dict[str, frozenset[str]] = {
    "customers": frozenset({"number", "displayName", "type", "addressLine1", "addressLine2", "city", "state",
                            "country", "postalCode", "phoneNumber", "email", "website", "taxLiable", "taxAreaId",
                            "taxRegistrationNumber", "currencyId", "currencyCode", "paymentTermsId",
                            "shipmentMethodId", "paymentMethodId", "blocked"}),
    "salesInvoices": frozenset({"number", "externalDocumentNumber", "invoiceDate", "postingDate", "dueDate",
                                "customerId", "customerNumber", "currencyId", "currencyCode", "paymentTermsId",
                                "pricesIncludeTax", "discountAmount", "email", "salesInvoiceLines"}),
    "salesCreditMemos": frozenset({"number", "externalDocumentNumber", "creditMemoDate", "postingDate", "dueDate",
                                   "customerId", "customerNumber", "currencyId", "currencyCode", "paymentTermsId",
                                   "invoiceId", "invoiceNumber", "pricesIncludeTax", "discountAmount", "email",
                                   "salesCreditMemoLines"}),
    "salesInvoiceLines": frozenset({"sequence", "itemId", "accountId", "lineType", "lineObjectNumber",
                                    "description", "unitPrice", "quantity", "discountAmount", "discountPercent",
                                    "taxCode"}),
    "customerPayments": frozenset({"lineNumber", "customerId", "customerNumber", "postingDate", "documentNumber",
                                   "externalDocumentNumber", "amount", "appliesToInvoiceId",
                                   "appliesToInvoiceNumber", "description", "comment"}),
    "items": frozenset({"number", "displayName", "type", "unitPrice", "blocked"}),
    "taxAreas": frozenset({"code", "displayName", "taxType"}),
    "paymentTerms": frozenset({"code", "displayName", "dueDateCalculation", "discountDateCalculation",
                               "discountPercent", "calculateDiscountOnCreditMemos"}),
    "currencies": frozenset({"code", "displayName", "symbol", "amountDecimalPlaces", "amountRoundingPrecision"}),
    "customerPaymentJournals": frozenset({"code", "displayName", "balancingAccountId"}),
}
WRITABLE["salesCreditMemoLines"] = WRITABLE["salesInvoiceLines"]

LINES = {"salesInvoices": "salesInvoiceLines", "salesCreditMemos": "salesCreditMemoLines",
         "customerPaymentJournals": "customerPayments"}
"""The lines each header entity set has, as a navigation property."""
PARENT_FIELD = {"salesInvoiceLines": "documentId", "salesCreditMemoLines": "documentId",
                "customerPayments": "journalId"}
"""The field of a line naming its header."""
AMOUNT_FIELDS = frozenset({"unitPrice", "amount", "discountAmount"})
DATE_FIELDS = frozenset({"invoiceDate", "postingDate", "dueDate", "creditMemoDate"})
NUMBER_SERIES = {"customers": "C", "salesInvoices": "S-INV", "salesCreditMemos": "S-CR", "items": "I"}
POSTED_SERIES = {"salesInvoices": "PS-INV", "salesCreditMemos": "PS-CR"}
NOTIFYING = frozenset({"customers", "salesInvoices", "salesCreditMemos", "customerPaymentJournals", "items"})
"""Entity sets webhook subscriptions can watch; a line's change is notified as its header's."""


class BCError(Exception):
    """A refused request, answered in Business Central's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(entity_set: str, key: str) -> BCError:
    return BCError(404, "BadRequest_ResourceNotFound",
                   f"The {entity_set} resource with the key '{key}' was not found.")


def invalid(message: str) -> BCError:
    return BCError(400, "BadRequest", message)


def application_error(message: str) -> BCError:
    """A business rule refusing a write (Business Central's validation errors)."""
    return BCError(400, "Application_InvalidArgument", message)


def timestamp(moment: float) -> str:
    """``2024-01-31T09:34:21.123Z``: Business Central's datetimes, to the millisecond."""
    at = datetime.fromtimestamp(moment, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Change:
    """A write to a notifying entity set, as a webhook notification reports it."""

    entity_set: str
    record_id: str
    change_type: str
    at: str


class Books:
    """The company's tables; not thread-safe (the sandbox serialises requests)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.company_id = str(uuid.uuid4())
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in WRITABLE}
        self.versions: dict[str, int] = {}
        self.changed: list[Change] = []
        self._numbers = itertools.count(1001)
        self._last_stamp = ""
        for entity_set, records in SEEDED.items():
            for record in records:
                self._insert(entity_set, dict(record), notify=False)
        for customer in DEMO_CUSTOMERS:
            self._insert("customers", self._complete("customers", {"id": demo_id("customers", customer["number"]),
                                                                   **customer}), notify=False)

    # -- generic -----------------------------------------------------------------------------------

    def stamp(self) -> str:
        """Now, strictly after the last stamp (two writes in one millisecond are still ordered)."""
        now = timestamp(self.clock())
        if now <= self._last_stamp:
            moment = datetime.strptime(self._last_stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            now = timestamp(moment.timestamp() + 0.001)
        self._last_stamp = now
        return now

    def etag_of(self, record: Record) -> str:
        return etag(self.versions[record["id"]], record["id"])

    def get(self, entity_set: str, key: str) -> Record:
        record = self.tables[entity_set].get(key)
        if record is None:
            raise not_found(entity_set, key)
        return record

    def check_etag(self, record: Record, if_match: str | None) -> None:
        if not if_match:
            raise BCError(400, "BadRequest_InvalidToken",
                          "Could not validate the client concurrency token required by the service. Please "
                          "provide a valid token in the client request.")
        if if_match.strip() != "*" and if_match.strip() != self.etag_of(record):
            raise BCError(412, "Request_EntityChanged",
                          "Another user has already changed the record.")

    def _insert(self, entity_set: str, record: Record, *, notify: bool = True) -> Record:
        record["id"] = record.get("id") or str(uuid.uuid4())
        if record["id"] in self.tables[entity_set]:
            raise BCError(409, "Internal_EntityWithSameKeyExists",
                          f"The record in table {entity_set} already exists.")
        self.tables[entity_set][record["id"]] = record
        self._touch(entity_set, record, "created", notify)
        return record

    def _touch(self, entity_set: str, record: Record, change_type: str, notify: bool = True) -> None:
        record["lastModifiedDateTime"] = self.stamp()
        self.versions[record["id"]] = self.versions.get(record["id"], 0) + 1
        if not notify:
            return
        parent_field = PARENT_FIELD.get(entity_set)
        if parent_field is not None:  # a line's change is notified as its header's
            header_set = next(h for h, lines in LINES.items() if lines == entity_set)
            header = self.tables[header_set].get(record.get(parent_field, ""))
            if header is not None:
                self._touch(header_set, header, "updated")
            return
        if entity_set in NOTIFYING:
            self.changed.append(Change(entity_set, record["id"], change_type, record["lastModifiedDateTime"]))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All the writes inside, or none of them (``$batch`` with ``Isolation: snapshot``)."""
        saved = (copy.deepcopy(self.tables), dict(self.versions), list(self.changed), self._last_stamp)
        try:
            yield
        except BaseException:
            self.tables, self.versions, self.changed, self._last_stamp = saved
            raise

    # -- create, update, delete ----------------------------------------------------------------------

    def create(self, entity_set: str, body: Record, parent: Record | None = None) -> Record:
        lines = body.pop(LINES.get(entity_set, ""), None)
        record = self._checked(entity_set, {}, body)
        if parent is not None:
            self._require_draft(parent)
            record[PARENT_FIELD[entity_set]] = parent["id"]
        if entity_set in ("customers", "items") and any(r.get("number") == record.get("number")
                                                        for r in self.tables[entity_set].values()):
            raise BCError(400, "Internal_EntityWithSameKeyExists",
                          f"The record in table {entity_set} already exists. Identification fields and values: "
                          f"No.='{record['number']}'")
        record = self._insert(entity_set, self._complete(entity_set, record))
        if lines is not None:  # deep insert
            if not isinstance(lines, list):
                raise invalid(f"'{LINES[entity_set]}' must be an array")
            for line in lines:
                self.create(LINES[entity_set], dict(line), parent=record)
        self._recompute(entity_set, record)
        return record

    def update(self, entity_set: str, record: Record, body: Record, if_match: str | None) -> Record:
        self.check_etag(record, if_match)
        if entity_set in ("salesInvoices", "salesCreditMemos"):
            self._require_draft(record)
        if entity_set in PARENT_FIELD and entity_set != "customerPayments":
            self._require_draft(self._header(entity_set, record))
        record.update(self._checked(entity_set, record, body))
        self._complete(entity_set, record)
        self._touch(entity_set, record, "updated")
        self._recompute(entity_set, record)
        return record

    def delete(self, entity_set: str, record: Record, if_match: str | None) -> None:
        self.check_etag(record, if_match)
        if entity_set in PARENT_FIELD and entity_set != "customerPayments":
            self._require_draft(self._header(entity_set, record))
        if record.get("status") not in (None, "Draft"):
            raise application_error(f"You cannot delete a posted document: No.={record.get('number')}.")
        del self.tables[entity_set][record["id"]]
        if entity_set in PARENT_FIELD:
            self._touch(entity_set, record, "updated")
            self._recompute(entity_set, record)
        elif entity_set in NOTIFYING:
            self.changed.append(Change(entity_set, record["id"], "deleted", self.stamp()))

    def lines_of(self, header_set: str, header_id: str) -> list[Record]:
        line_set = LINES[header_set]
        field = PARENT_FIELD[line_set]
        return sorted((line for line in self.tables[line_set].values() if line.get(field) == header_id),
                      key=lambda line: line.get("sequence") or line.get("lineNumber") or 0)

    def _header(self, line_set: str, line: Record) -> Record:
        header_set = next(h for h, lines in LINES.items() if lines == line_set)
        return self.get(header_set, line[PARENT_FIELD[line_set]])

    @staticmethod
    def _require_draft(header: Record) -> None:
        if "status" in header and header["status"] != "Draft":
            raise application_error(f"Status must be equal to 'Draft' in the document: No.={header.get('number')}. "
                                    f"Current value is '{header['status']}'.")

    def _checked(self, entity_set: str, current: Record, body: Record) -> Record:
        """The body's fields, known and well typed, references resolved."""
        allowed = WRITABLE[entity_set]
        for name in body:
            if name not in allowed and not name.startswith("@odata."):
                raise invalid(f"The property '{name}' does not exist on type 'Microsoft.NAV.{entity_set}'.")
        fields = {name: value for name, value in body.items() if not name.startswith("@odata.")}
        for name in DATE_FIELDS & fields.keys():
            try:
                datetime.strptime(str(fields[name]), "%Y-%m-%d")
            except ValueError:
                raise invalid(f"Cannot convert the literal '{fields[name]}' to the expected type 'Edm.Date'.") from None
        for name in AMOUNT_FIELDS & fields.keys():
            if isinstance(fields[name], bool) or not isinstance(fields[name], int | float | Decimal):
                raise invalid(f"Cannot convert a value to target type 'Edm.Decimal' for '{name}'.")
            fields[name] = Decimal(str(fields[name]))
        if entity_set == "customers" and fields.get("blocked", " ") not in CUSTOMER_BLOCKED:
            raise invalid(f"Cannot convert the literal '{fields['blocked']}' to the expected type 'Edm.String'.")
        return fields

    def _complete(self, entity_set: str, record: Record) -> Record:
        """Defaults, numbers and resolved references, as Business Central fills them in."""
        if entity_set in NUMBER_SERIES and not record.get("number"):
            record["number"] = f"{NUMBER_SERIES[entity_set]}{next(self._numbers)}"
        if entity_set == "customers":
            record.setdefault("type", "Company")
            record.setdefault("blocked", " ")
            for name in ("addressLine1", "addressLine2", "city", "state", "country", "postalCode", "phoneNumber",
                         "email", "website", "taxRegistrationNumber"):
                record.setdefault(name, "")
            record.setdefault("taxLiable", False)
            self._currency(record)
            self._reference(record, "paymentTermsId", "paymentTerms")
            self._reference(record, "taxAreaId", "taxAreas")
            area = self.tables["taxAreas"].get(record["taxAreaId"])
            record["taxAreaDisplayName"] = area["displayName"] if area else ""
            record.setdefault("shipmentMethodId", BLANK_GUID)
            record.setdefault("paymentMethodId", BLANK_GUID)
        elif entity_set in ("salesInvoices", "salesCreditMemos"):
            self._document(entity_set, record)
        elif entity_set in ("salesInvoiceLines", "salesCreditMemoLines"):
            self._line(entity_set, record)
        elif entity_set == "customerPayments":
            self._payment(record)
        return record

    def _currency(self, record: Record) -> None:
        code = record.get("currencyCode")
        if code in (None, "", LOCAL_CURRENCY):
            record["currencyCode"], record["currencyId"] = LOCAL_CURRENCY, BLANK_GUID
            return
        found = next((c for c in self.tables["currencies"].values() if c["code"] == code), None)
        if found is None:
            raise application_error(f"The field Currency Code of table {record.get('number', 'record')} contains a "
                                    f"value ({code}) that cannot be found in the related table (Currency).")
        record["currencyId"] = found["id"]

    def _reference(self, record: Record, field: str, entity_set: str) -> None:
        value = record.get(field) or BLANK_GUID
        if value != BLANK_GUID and value not in self.tables[entity_set]:
            raise application_error(f"The {entity_set} with id '{value}' does not exist.")
        record[field] = value

    def _customer(self, record: Record) -> Record:
        customer_id, number = record.get("customerId"), record.get("customerNumber")
        customer = (self.tables["customers"].get(customer_id) if customer_id else
                    next((c for c in self.tables["customers"].values() if c["number"] == number), None))
        if customer is None:
            raise application_error(f"The customer '{customer_id or number}' does not exist.")
        return customer

    def _document(self, entity_set: str, record: Record) -> None:
        customer = self._customer(record)
        if customer["blocked"] == "All":
            raise application_error(f"You cannot create this type of document when Customer {customer['number']} "
                                    "is blocked with type All")
        record.update(customerId=customer["id"], customerNumber=customer["number"],
                      customerName=customer["displayName"])
        record.setdefault("currencyCode", customer["currencyCode"])
        self._currency(record)
        record.setdefault("paymentTermsId", customer["paymentTermsId"])
        self._reference(record, "paymentTermsId", "paymentTerms")
        date_field = "invoiceDate" if entity_set == "salesInvoices" else "creditMemoDate"
        today = self.stamp()[:10]
        record.setdefault(date_field, today)
        record.setdefault("postingDate", record[date_field])
        record.setdefault("dueDate", record[date_field])
        record.setdefault("externalDocumentNumber", "")
        record.setdefault("pricesIncludeTax", False)
        record.setdefault("discountAmount", Decimal(0))
        record.setdefault("status", "Draft")
        if entity_set == "salesCreditMemos":
            invoice_id = record.get("invoiceId") or BLANK_GUID
            if invoice_id != BLANK_GUID:
                invoice = self.get("salesInvoices", invoice_id)
                record["invoiceNumber"] = invoice["number"]
            record["invoiceId"] = invoice_id
            record.setdefault("invoiceNumber", "")
        else:
            record.setdefault("remainingAmount", Decimal(0))

    def _line(self, entity_set: str, record: Record) -> None:
        record.setdefault("lineType", "Item")
        item_id, number = record.get("itemId"), record.get("lineObjectNumber")
        if record["lineType"] == "Item":
            item = (self.tables["items"].get(item_id) if item_id else
                    next((i for i in self.tables["items"].values() if i["number"] == number), None))
            if item is None:
                raise application_error(f"The item '{item_id or number}' does not exist.")
            record.update(itemId=item["id"], lineObjectNumber=item["number"])
            record.setdefault("description", item["displayName"])
        record.setdefault("quantity", Decimal(1))
        record.setdefault("unitPrice", Decimal(0))
        record.setdefault("discountAmount", Decimal(0))
        header = self._header(entity_set, record)
        places = exponent(header["currencyCode"])
        for name in ("unitPrice", "discountAmount"):
            if -Decimal(record[name]).as_tuple().exponent > places:  # type: ignore[operator]
                raise application_error(f"{name} {record[name]} has more decimals than {header['currencyCode']} "
                                        f"allows ({places}).")
        quantity = Decimal(str(record["quantity"]))
        amount = quantity * Decimal(record["unitPrice"]) - Decimal(record["discountAmount"])
        record.update(quantity=quantity, amountExcludingTax=amount, totalTaxAmount=Decimal(0),
                      amountIncludingTax=amount, netAmount=amount, taxPercent=Decimal(0))
        if not record.get("sequence"):
            siblings = [line.get("sequence") or 0 for line in self.lines_of(
                next(h for h, lines in LINES.items() if lines == entity_set), header["id"])]
            record["sequence"] = max(siblings, default=0) + 10000

    def _payment(self, record: Record) -> None:
        customer = self._customer(record)
        record.update(customerId=customer["id"], customerNumber=customer["number"])
        invoice_id = record.get("appliesToInvoiceId") or BLANK_GUID
        if invoice_id != BLANK_GUID:
            invoice = self.get("salesInvoices", invoice_id)
            if invoice["status"] not in ("Open", "Paid"):
                raise application_error(f"Invoice {invoice['number']} is not posted: a payment applies to "
                                        "posted invoices only.")
            record["appliesToInvoiceNumber"] = invoice["number"]
        record["appliesToInvoiceId"] = invoice_id
        record.setdefault("appliesToInvoiceNumber", "")
        record.setdefault("postingDate", self.stamp()[:10])
        record.setdefault("documentNumber", f"G{next(self._numbers)}")
        record.setdefault("externalDocumentNumber", "")
        record.setdefault("amount", Decimal(0))
        record.setdefault("description", "")
        record.setdefault("comment", "")
        if not record.get("lineNumber"):
            record["lineNumber"] = max((p.get("lineNumber") or 0 for p in self.tables["customerPayments"].values()
                                        if p.get("journalId") == record.get("journalId")), default=0) + 10000

    def _recompute(self, entity_set: str, record: Record) -> None:
        """A document's totals from its lines."""
        header_set = entity_set if entity_set in ("salesInvoices", "salesCreditMemos") else None
        header = record
        if entity_set in ("salesInvoiceLines", "salesCreditMemoLines"):
            header = self._header(entity_set, record)
            header_set = "salesInvoices" if entity_set == "salesInvoiceLines" else "salesCreditMemos"
        if header_set is None:
            return
        total = sum((Decimal(line["amountIncludingTax"]) for line in self.lines_of(header_set, header["id"])),
                    Decimal(0)) - Decimal(header.get("discountAmount", 0))
        header.update(totalAmountExcludingTax=total, totalTaxAmount=Decimal(0), totalAmountIncludingTax=total)
        if header_set == "salesInvoices" and header["status"] == "Draft":
            header["remainingAmount"] = total

    # -- actions -------------------------------------------------------------------------------------

    def post(self, entity_set: str, record: Record) -> None:
        """``Microsoft.NAV.post``: Draft -> Open (a credit memo applied to its invoice closes it)."""
        if record["status"] != "Draft":
            raise application_error(f"Status must be equal to 'Draft' in the document: No.={record['number']}. "
                                    f"Current value is '{record['status']}'.")
        if not self.lines_of(entity_set, record["id"]):
            raise application_error("There is nothing to post.")
        customer = self.get("customers", record["customerId"])
        if customer["blocked"] in ("Invoice", "All"):
            raise application_error(f"You cannot post this type of document when Customer {customer['number']} is "
                                    f"blocked with type {customer['blocked']}")
        record["number"] = f"{POSTED_SERIES[entity_set]}{next(self._numbers)}"
        record["status"] = "Open"
        if entity_set == "salesInvoices":
            record["remainingAmount"] = record["totalAmountIncludingTax"]
        elif record.get("invoiceId", BLANK_GUID) != BLANK_GUID:
            invoice = self.get("salesInvoices", record["invoiceId"])
            self._settle(invoice, Decimal(record["totalAmountIncludingTax"]))
            record["status"] = "Paid"
        self._touch(entity_set, record, "updated")

    def cancel(self, record: Record) -> None:
        """``Microsoft.NAV.cancel`` of a posted invoice: its corrective credit memo, and Canceled."""
        if record["status"] != "Open" or record["remainingAmount"] != record["totalAmountIncludingTax"]:
            raise application_error(f"You cannot cancel the posted sales invoice {record['number']} because it is "
                                    f"{'not posted' if record['status'] == 'Draft' else 'fully or partially paid'}.")
        memo = self.create("salesCreditMemos", {"customerId": record["customerId"], "invoiceId": record["id"],
                                                "currencyCode": record["currencyCode"],
                                                "externalDocumentNumber": record["externalDocumentNumber"]})
        for line in self.lines_of("salesInvoices", record["id"]):
            self.create("salesCreditMemoLines", {name: line[name] for name in ("lineType", "itemId", "description",
                                                                                "quantity", "unitPrice")},
                        parent=memo)
        memo.update(status="Corrective", number=f"{POSTED_SERIES['salesCreditMemos']}{next(self._numbers)}")
        record.update(status="Canceled", remainingAmount=Decimal(0))
        self._touch("salesInvoices", record, "updated")

    def _settle(self, invoice: Record, amount: Decimal) -> None:
        if amount > Decimal(invoice["remainingAmount"]):
            raise application_error(f"The amount {amount} is more than invoice {invoice['number']} has open "
                                    f"({invoice['remainingAmount']}).")
        invoice["remainingAmount"] = Decimal(invoice["remainingAmount"]) - amount
        if invoice["remainingAmount"] == 0:
            invoice["status"] = "Paid"
        self._touch("salesInvoices", invoice, "updated")

    def post_payment_journal(self, journal_id: str) -> int:
        """A user posts the journal: each line's amount (a receipt, shown positive by the API) settles
        its invoice, and the line leaves the journal. How many lines were posted."""
        lines = self.lines_of("customerPaymentJournals", journal_id)
        for line in lines:
            if line["appliesToInvoiceId"] != BLANK_GUID:
                self._settle(self.get("salesInvoices", line["appliesToInvoiceId"]), Decimal(line["amount"]))
            del self.tables["customerPayments"][line["id"]]
        if lines:
            self._touch("customerPaymentJournals", self.get("customerPaymentJournals", journal_id), "updated")
        return len(lines)

    def edit(self, entity_set: str, record_id: str, changes: Record) -> Record:
        """A Business Central user changes a record in the client (no ETag: the UI holds the lock)."""
        record = self.get(entity_set, record_id)
        return self.update(entity_set, record, changes, "*")
