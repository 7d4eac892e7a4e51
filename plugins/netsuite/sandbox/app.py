"""A local emulator of NetSuite's SuiteTalk REST record service (``/services/rest/record/v1``).

What a connector meets in the real service, and so meets here:

- **TBA on every request** (see :mod:`crossledger.plugins.netsuite.auth`): a bad signature, an
  unknown consumer or token, the wrong realm, a stale timestamp or a replayed nonce all answer
  401 ``INVALID_LOGIN`` with no hint why; the reason goes to :meth:`NetSuiteSandbox.login_audit_trail`,
  like NetSuite's Login Audit Trail. The signed URL is rebuilt from the raw request, so the
  sandbox verifies correctly when mounted under a prefix such as ``/netsuite``.
- **Writes answer 204 with an empty body.** ``POST /{type}`` creates; ``PUT /{type}/eid:{x}``
  upserts by external id (the only idempotency NetSuite offers synchronously). The new record's id
  is only in the ``Location`` header, which is sent when a record was created.
- **Reads** (``GET /{type}/{id}`` or ``/{type}/eid:{x}``) return the record with ``links``, ids as
  strings, references as ``{"id", "refName"}``, dates ``2024-01-31`` and datetimes in UTC
  (``2024-01-31T17:32:28Z``). Sublists are links unless ``?expandSubResources=true``, and can be
  read on their own at ``/{type}/{id}/{sublist}``. Collections page with ``limit`` (at most 1000)
  and ``offset`` (a multiple of the limit; 400 past the first 100,000 results) and link
  ``first``/``previous``/``next``/``last``.
- **Errors** have NetSuite's RFC 7807-like shape: ``type``, ``title``, ``status`` and
  ``o:errorDetails`` with ``detail``, ``o:errorCode`` and ``o:errorPath``.
- **Bookkeeping rules** a careless connector trips over: references must exist (customers; the
  seeded items, currencies, subsidiaries, terms and accounts in :data:`SEEDED`); a transaction is in
  one of its customer's currencies (see below); amounts are JSON numbers with no more decimals than the currency has
  (JPY none, KWD three); an invoice's total is the sum of its lines; payments and credit memos apply
  to open invoices of the same customer for at most their amount remaining; journal entries
  balance. Unknown body fields are dropped, or rejected with ``X-NetSuite-PropertyNameValidation:
  error``; field names match case-insensitively, as NetSuite's do (``companyname`` is ``companyName``).
- **Ledger state a poller reads back**: every write stamps ``lastModifiedDate``; a customer shows
  its A/R ``balance`` (posted invoices and refunds less payments and credit memos); with
  ``approval_routing`` on (NetSuite's invoice approval), a new invoice waits in *Pending Approval*
  (``approvalStatus`` 1, not posting, not payable) until a user approves it with ``PATCH
  /invoice/{id}`` ``{"approvalStatus": {"id": "2"}}``.
- **SuiteQL** (``POST /services/rest/query/v1/suiteql?limit=&offset=`` with ``Prefer: transient`` and
  ``{"q": "SELECT ..."}``) over the ``transaction`` and ``customer`` tables, paged like collections
  (``limit`` at most 1000, ``offset`` a multiple of it, and no page past the first 100,000 results);
  see :mod:`crossledger.plugins.netsuite.sandbox.suiteql` for the dialect.
- **Customers' currencies** (the Multiple Currencies feature): a customer has a primary ``currency``,
  its subsidiary's base currency unless given, and may transact in it and in the currencies on its
  ``currencyList`` sublist (lines ``{"currency": {"id": ...}}``, keyed by currency, so adding one
  twice keeps one line). A transaction in any other currency is refused with 400 ``USER_ERROR`` at
  ``currency``: "Invalid currency reference key 4 for entity 12.", as NetSuite refuses it. The
  primary currency cannot be changed once the customer has transactions (400 ``USER_ERROR``).
- **Customers' standard fields the hub writes**: ``vatRegNumber`` (the tax registration) and the
  credit hold ``creditHoldOverride``, a select field written and shown like a reference (``{"id":
  "ON"}``; ``AUTO``, ``ON`` or ``OFF``, anything else a 400) and ``AUTO`` on a new customer.
- **Customizations an integration relies on**: the custom record ``customrecord_cl_subscription`` and
  the customer fields ``custentity_cl_*_id`` exist, as an administrator would have created them.
- **Concurrency governance**: more than ``concurrency_limit`` requests in flight answer 429.

Not emulated: record actions and transforms, asynchronous requests (``Prefer: respond-async``), the
``q`` filter on collections, item lines priced by ``rate`` alone, sublist-level field validation,
SuiteQL joins, and time zones (the integration user's is UTC).
"""

import copy
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any, TypeGuard
from urllib.parse import quote

import msgspec
from crossledger.canonical.money import exponent
from crossledger.plugins.emulator import Faults, build_app
from crossledger.plugins.netsuite.auth import Clock, InvalidLogin, TbaCredentials, TbaVerifier
from crossledger.plugins.netsuite.sandbox import suiteql
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

RECORD_ROOT = "/services/rest/record/v1"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
MAX_LIMIT = 1000
MAX_RESULTS = 100_000
"""How far a collection or a SuiteQL query can be paged (1,000 pages of 1,000) without SuiteAnalytics Connect."""
BASE_CURRENCY_ID = "1"
SUBSIDIARY_CURRENCIES = {"1": "1", "2": "2", "3": "3"}
"""Each seeded subsidiary's base currency (USD, GBP, CAD): a new customer's primary currency by default."""
STRICT_NAMES_HEADER = "x-netsuite-propertynamevalidation"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

SEEDED: dict[str, dict[str, str]] = {
    "currency": {"1": "USD", "2": "GBP", "3": "CAD", "4": "EUR", "5": "JPY", "6": "KWD"},
    "item": {"1": "Services", "2": "Tax", "3": "Discount"},
    "subsidiary": {"1": "Parent Company", "2": "UK", "3": "Canada"},
    "terms": {"1": "Net 15", "2": "Net 30", "3": "Net 60", "4": "Due on receipt"},
    "account": {"1": "Accounts Receivable", "2": "Undeposited Funds", "10": "Checking", "14": "Sales"},
    "approvalstatus": {"1": "Pending Approval", "2": "Approved", "3": "Rejected"},
    "creditholdoverride": {"AUTO": "Auto", "ON": "On", "OFF": "Off"},
}
"""The account's setup records, by list and internal id. Currencies are named by ISO code. Select
fields with fixed values (a customer's credit hold) are lists too: written and shown the same way."""

REFERENCES: dict[str, str] = {
    "entity": "customer",
    "customer": "customer",
    "parent": "customer",
    "doc": "transaction",
    "currency": "currency",
    "subsidiary": "subsidiary",
    "terms": "terms",
    "account": "account",
    "item": "item",
    "approvalStatus": "approvalstatus",
    "creditHoldOverride": "creditholdoverride",
    "custrecord_cl_customer": "customer",
    "custrecord_cl_currency": "currency",
}
"""What a ``{"id": ...}`` reference under each field name points at: a seeded list, a record
type, or any ``transaction``. The same names mean the same thing in body fields and sublist lines."""

AMOUNT_FIELDS = frozenset({"amount", "payment", "debit", "credit", "total", "custrecord_cl_recurring_amount"})
DATE_FIELDS = frozenset({"tranDate", "dueDate", "custrecord_cl_period_start", "custrecord_cl_period_end"})
PENDING_APPROVAL, APPROVED = "1", "2"
"""``approvalStatus`` ids: a new invoice under approval routing is pending until a user approves it."""

MEDIA_TYPE = "application/vnd.oracle.resource+json"
_JSON = msgspec.json.Encoder(decimal_format="number")

Fields = dict[str, Any]


# --- errors ---------------------------------------------------------------------------------

_RFC2616 = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html"
_ERROR_TYPES = {
    400: f"{_RFC2616}#sec10.4.1",
    401: _RFC2616,
    404: f"{_RFC2616}#sec10.4.5",
    405: f"{_RFC2616}#sec10.4.6",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: f"{_RFC2616}#sec10.5.1",
    503: f"{_RFC2616}#sec10.5.4",
}

INVALID_LOGIN_DETAIL = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)
CONCURRENCY_DETAIL = "Concurrent request limit exceeded. Request blocked."


class NetSuiteError(Exception):
    """A failed request, answered in NetSuite's error shape with one ``o:errorDetails`` entry."""

    def __init__(self, status: int, code: str, detail: str, *, path: str | None = None,
                 query_param: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = {"detail": detail, "o:errorCode": code}
        if path:
            self.detail["o:errorPath"] = path
        if query_param is not None:
            self.detail["o:errorQueryParam"] = query_param

    def response(self) -> Response:
        body = {
            "type": _ERROR_TYPES.get(self.status, _RFC2616),
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "o:errorDetails": [self.detail],
        }
        return _resource(body, "error", status=self.status)


def _invalid(path: str | None, detail: str) -> NetSuiteError:
    """The 400 ``INVALID_CONTENT`` NetSuite gives for a bad value, pointing at it."""
    return NetSuiteError(400, "INVALID_CONTENT", f"Error while accessing resource: {detail}", path=path)


def _user_error(path: str | None, detail: str) -> NetSuiteError:
    """The 400 ``USER_ERROR`` NetSuite gives when a business rule refuses the record."""
    return NetSuiteError(400, "USER_ERROR", detail, path=path)


def _invalid_value(path: str, value: object) -> NetSuiteError:
    field = path.rsplit(".", 1)[-1]
    return _invalid(path, f"You have entered an Invalid Field Value {value} for the following field: {field}")


_FAULTS = {
    429: ("CONCURRENCY_LIMIT_EXCEEDED", CONCURRENCY_DETAIL),
    500: ("UNEXPECTED_ERROR", "An unexpected error occurred. Error ID: sandbox-fault"),
    503: ("SERVICE_UNAVAILABLE", "NetSuite is unavailable; the account may be under maintenance."),
}


def fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault in NetSuite's error shape, with Retry-After on a 429."""
    code, detail = _FAULTS[status]
    response = NetSuiteError(status, code, detail).response()
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _resource(body: Any, kind: str, *, status: int = 200) -> Response:
    """A JSON response; Decimals leave as JSON numbers with their exact digits."""
    return Response(_JSON.encode(body), status_code=status, media_type=f"{MEDIA_TYPE}; type={kind}")


# --- reading bodies -------------------------------------------------------------------------


def _lines(fields: Fields, sublist: str) -> list[Fields]:
    """The lines of a sublist (``{"items": [...]}``), or none."""
    value = fields.get(sublist)
    return list(value["items"]) if _is_sublist(value) else []


KEYED_SUBLISTS = {"apply": "doc", "currencyList": "currency"}
"""Sublists whose lines are identified by a reference field; the rest only ever grow on update."""


def _merge_sublist(name: str, old: object, new: object, replace: frozenset[str]) -> object:
    if name in replace or not _is_sublist(new) or not _is_sublist(old):
        return new
    lines = list(old["items"])
    key = KEYED_SUBLISTS.get(name)
    for line in new["items"]:
        match = next((index for index, existing in enumerate(lines)
                      if key and isinstance(line, dict) and existing.get(key) == line.get(key)), None)
        if match is None:
            lines.append(line)
        else:
            lines[match] = {**lines[match], **line}
    return {**new, "items": lines}


def _is_sublist(value: object) -> TypeGuard[Fields]:
    return isinstance(value, dict) and isinstance(value.get("items"), list)


def _walk(fields: Fields) -> Iterator[tuple[str, str, Any]]:
    """Every ``(path, name, value)`` in a body: top-level fields, then each sublist line's fields.

    Paths are NetSuite's ``o:errorPath`` form, e.g. ``item.items[0].item``.
    """
    for name, value in fields.items():
        if not _is_sublist(value):
            yield name, name, value
            continue
        for index, line in enumerate(value["items"]):
            if not isinstance(line, dict):
                raise _invalid(f"{name}.items[{index}]", "a sublist line must be an object")
            for line_name, line_value in line.items():
                yield f"{name}.items[{index}].{line_name}", line_name, line_value


def _ref(fields: Fields, name: str | None) -> str | None:
    """The id a reference field holds (ids may arrive as numbers; they are strings in NetSuite)."""
    value = fields.get(name) if name else None
    return str(value["id"]) if isinstance(value, dict) and "id" in value else None


def _number(value: object, path: str) -> Decimal:
    """An amount as an exact Decimal; JSON strings and booleans are not numbers."""
    if value is None:
        raise _user_error(path, f"Please enter a value for {path}.")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _invalid_value(path, json.dumps(value, default=str))
    return Decimal(value)


def _places(value: Decimal) -> int:
    """Significant decimal places: 1.50 has one, 1500 has none."""
    exponent_ = value.normalize().as_tuple().exponent
    return max(0, -exponent_) if isinstance(exponent_, int) else 0


def _applications(fields: Fields) -> list[tuple[int, Fields]]:
    """The ``apply`` lines marked ``"apply": true``, with their index."""
    return [(index, line) for index, line in enumerate(_lines(fields, "apply")) if line.get("apply") is True]


def _applied_total(fields: Fields) -> Decimal:
    return sum((_number(line.get("amount"), f"apply.items[{index}].amount")
                for index, line in _applications(fields)), Decimal(0))


def _item_total(fields: Fields) -> Decimal:
    return sum((_number(line.get("amount"), f"item.items[{index}].amount")
                for index, line in enumerate(_lines(fields, "item"))), Decimal(0))


def _payment_total(fields: Fields) -> Decimal:
    return _number(fields.get("payment"), "payment")


def _has_lines(sublist: str) -> Callable[[Fields], None]:
    """A check that the document has at least one line in ``sublist``."""

    def check(fields: Fields) -> None:
        if not _lines(fields, sublist):
            raise _user_error(sublist, "You must enter at least one line item for this transaction.")

    return check


def _balanced(fields: Fields) -> None:
    """A journal entry's debits must equal its credits."""
    def side(name: str) -> Decimal:
        return sum((_number(line.get(name, 0), f"line.items[{index}].{name}")
                    for index, line in enumerate(_lines(fields, "line"))), Decimal(0))

    debits, credits = side("debit"), side("credit")
    if debits != credits:
        raise _user_error("line", f"The transaction is out of balance: debits {debits} != credits {credits}.")


def _named(fields: Fields) -> None:
    """A customer needs a name: a company's, or a person's."""
    if not any(fields.get(name) for name in ("companyName", "entityId", "firstName", "lastName")):
        raise _user_error("companyName", "Please enter a value for Company Name.")


def _has_name(fields: Fields) -> None:
    """A custom record type with a Name field (the default) needs a name on every record."""
    if not fields.get("name"):
        raise _user_error("name", "Please enter a value for Name.")


def _check_values(fields: Fields, currency_code: str) -> None:
    """Dates are ISO dates; amounts are JSON numbers within the currency's decimal places."""
    places = exponent(currency_code)
    for path, name, value in _walk(fields):
        if name in DATE_FIELDS and not _is_iso_date(value):
            raise _invalid_value(path, value)
        if name in AMOUNT_FIELDS and _places(_number(value, path)) > places:
            raise _invalid(path, f"the amount {value} has more decimal places than {currency_code} allows "
                                 f"({places})")


def customer_currencies(fields: Fields) -> set[str]:
    """The ids of the currencies a customer may transact in: its primary one and its currency list."""
    listed = {_ref(line, "currency") for line in _lines(fields, "currencyList")}
    return {currency for currency in (_ref(fields, "currency"), *listed) if currency is not None}


def _is_iso_date(value: object) -> bool:
    """``2024-01-31`` and nothing else (no time, no compact ``20240131``)."""
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# --- record types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """A transaction status as REST shows it: ``{"id": "paidInFull", "refName": "Paid In Full"}``."""

    id: str
    ref_name: str


@dataclass(frozen=True)
class RecordType:
    """What the sandbox knows about one record type.

    ``family`` names the id sequence: transactions share one (an invoice and a payment never have
    the same id), entities another, each custom record type its own. ``entity_field`` holds the
    customer reference and ``currency_field`` the currency. ``total`` says how the document's
    amount is computed; ``applies_to`` lists the record types its ``apply`` sublist may settle;
    ``open_field`` names the computed balance still open, and ``statuses`` are shown while it is
    open and once it reaches zero. ``code`` is the transaction's ``type`` in SuiteQL, and
    ``receivable`` how its total moves the customer's A/R balance (+1 a debit, -1 a credit).
    ``defaults`` are the values a new record gets for the fields the create leaves out.
    """

    name: str
    fields: tuple[str, ...]
    family: str = "transaction"
    entity_field: str | None = None
    currency_field: str = "currency"
    total: Callable[[Fields], Decimal] | None = None
    applies_to: tuple[str, ...] = ()
    open_field: str | None = None
    statuses: tuple[Status, Status] | None = None
    checks: tuple[Callable[[Fields], None], ...] = ()
    code: str | None = None
    receivable: int = 0
    defaults: Fields = dataclass_field(default_factory=dict)

    def accept(self, body: Fields, strict: bool) -> Fields:
        """The body with field names in NetSuite's spelling; unknown names dropped, or refused
        when the client asked for ``X-NetSuite-PropertyNameValidation: error``."""
        known = {name.lower(): name for name in self.fields}
        accepted = {}
        for name, value in body.items():
            spelled = known.get(name.lower())
            if spelled is not None:
                accepted[spelled] = value
            elif strict:
                raise _invalid(name, f"Invalid field name: {name} is not a field of {self.name}.")
        return accepted


_TRANSACTION_FIELDS = ("externalId", "tranId", "tranDate", "currency", "exchangeRate", "subsidiary", "memo")
_PAYMENT_FIELDS = (*_TRANSACTION_FIELDS, "customer", "account", "apply", "paymentMethod")

CROSS_REFERENCE_FIELDS = ("custentity_cl_salesforce_id", "custentity_cl_stripe_id", "custentity_cl_zuora_id",
                          "custentity_cl_zendesk_id")
"""Custom entity fields (free-form text) an administrator adds to customers for other systems' ids."""

SUBSCRIPTION_RECORD = "customrecord_cl_subscription"
PENDING_APPROVAL_STATUS = Status("pendingApproval", "Pending Approval")

RECORD_TYPES: tuple[RecordType, ...] = (
    RecordType(
        "customer",
        ("externalId", "entityId", "companyName", "firstName", "lastName", "isPerson", "email", "phone",
         "subsidiary", "currency", "terms", "parent", "isInactive", "comments", "addressBook", "vatRegNumber",
         "creditHoldOverride", "currencyList", *CROSS_REFERENCE_FIELDS),
        family="entity",
        checks=(_named,),
        defaults={"creditHoldOverride": {"id": "AUTO"}},  # the credit limit decides
    ),
    RecordType(
        "invoice",
        (*_TRANSACTION_FIELDS, "entity", "dueDate", "terms", "otherRefNum", "location", "department", "class",
         "item", "total", "approvalStatus"),
        entity_field="entity",
        total=_item_total,
        open_field="amountRemaining",
        statuses=(Status("open", "Open"), Status("paidInFull", "Paid In Full")),
        checks=(_has_lines("item"),),
        code="CustInvc",
        receivable=1,
    ),
    RecordType(
        "creditmemo",
        (*_TRANSACTION_FIELDS, "entity", "location", "department", "class", "item", "apply", "total",
         "createdFrom"),
        entity_field="entity",
        total=_item_total,
        applies_to=("invoice",),
        open_field="unapplied",
        statuses=(Status("open", "Open"), Status("fullyApplied", "Fully Applied")),
        checks=(_has_lines("item"),),
        code="CustCred",
        receivable=-1,
    ),
    RecordType(
        "customerpayment",
        (*_PAYMENT_FIELDS, "payment", "toBeEmailed", "undepFunds"),
        entity_field="customer",
        total=_payment_total,
        applies_to=("invoice",),
        open_field="unapplied",
        code="CustPymt",
        receivable=-1,
    ),
    RecordType(
        "customerRefund",
        _PAYMENT_FIELDS,
        entity_field="customer",
        total=_applied_total,
        applies_to=("creditmemo", "customerpayment"),
        code="CustRfnd",
        receivable=1,
    ),
    RecordType(
        "journalentry",
        (*_TRANSACTION_FIELDS, "approved", "line"),
        checks=(_has_lines("line"), _balanced),
        code="Journal",
    ),
    RecordType(
        SUBSCRIPTION_RECORD,
        ("externalId", "name", "isInactive", "custrecord_cl_customer", "custrecord_cl_plan_tier",
         "custrecord_cl_status", "custrecord_cl_recurring_amount", "custrecord_cl_currency",
         "custrecord_cl_period_start", "custrecord_cl_period_end", "custrecord_cl_contract_term",
         "custrecord_cl_contract_owner", "custrecord_cl_legal_entity"),
        family=SUBSCRIPTION_RECORD,
        currency_field="custrecord_cl_currency",
        checks=(_has_name,),
    ),
)
_BY_NAME = {record_type.name.lower(): record_type for record_type in RECORD_TYPES}
_TRANSACTIONS = tuple(rt.name for rt in RECORD_TYPES if rt.family == "transaction")


def record_type(name: str) -> RecordType:
    """The record type named in a URL; NetSuite matches the name case-insensitively."""
    found = _BY_NAME.get(name.lower())
    if found is None:
        raise NetSuiteError(404, "INVALID_RECORD_TYPE", f"Record type '{name}' does not exist.")
    return found


# --- the books ------------------------------------------------------------------------------


@dataclass
class Record:
    """One stored record: the fields clients set (balances are computed, never stored)."""

    type: RecordType
    id: str
    fields: Fields
    created: str
    modified: str

    @property
    def name(self) -> str:
        """What references to this record show as ``refName``."""
        for field in ("companyName", "entityId", "tranId", "name"):
            if self.fields.get(field):
                return str(self.fields[field])
        return f"{self.type.name} #{self.id}"

    @property
    def customer(self) -> str | None:
        """The id of the customer a transaction belongs to."""
        return _ref(self.fields, self.type.entity_field)


class Books:
    """The account's records, their validation and their computed balances. Not thread-safe on
    its own: :class:`NetSuiteSandbox` serializes access.

    Balances are never stored. An invoice's amount remaining is computed from the payments and
    credit memos that apply to it *now*, so replacing or deleting one of them can never leave a
    stale balance behind; so is a customer's A/R balance.

    ``approval_routing`` is NetSuite's invoice approval: invoices are created pending approval and
    neither post nor accept payments until approved. Without it every invoice posts when saved.
    """

    def __init__(self, clock: Clock, approval_routing: bool = False) -> None:
        self._clock = clock
        self._approval_routing = approval_routing
        self._records: dict[str, dict[str, Record]] = {rt.name: {} for rt in RECORD_TYPES}
        # externalId -> internal id per record type: an upsert finds its record without a scan, so a
        # sandbox that holds many records answers as fast as an empty one (the bench, the soak).
        self._external_ids: dict[str, dict[str, str]] = {rt.name: {} for rt in RECORD_TYPES}
        # What applies to each document (document id -> applying record id -> amount) and each customer's
        # transactions: balances and the checks that need them cost the records involved, not a scan of
        # the books, so a SuiteQL listing of 100,000 invoices is linear (the reconciliation bench).
        self._applied: dict[str, dict[str, Decimal]] = {}
        self._transactions: dict[str, set[tuple[str, str]]] = {}
        self._sequences = {family: itertools.count(1) for family in {rt.family for rt in RECORD_TYPES}}
        self.version = 0
        """Counts the writes: what was read from the books is still true while it has not moved."""
        self._tables: dict[str, tuple[int, suiteql.Table]] = {}

    # lookups

    def records(self, rt: RecordType) -> list[Record]:
        return sorted(self._records[rt.name].values(), key=lambda record: int(record.id))

    def get(self, rt: RecordType, key: str) -> Record:
        """By internal id, or by external id when ``key`` is ``eid:{externalId}``."""
        by_external_id = key.startswith("eid:")
        found = self._by_external_id(rt, key[4:]) if by_external_id else self._records[rt.name].get(key)
        if found is None:
            raise NetSuiteError(404, "NONEXISTENT_ID",
                                "The record instance does not exist. Provide a valid record instance ID.")
        return found

    def _by_external_id(self, rt: RecordType, external_id: str) -> Record | None:
        record_id = self._external_ids[rt.name].get(external_id)
        return None if record_id is None else self._records[rt.name][record_id]

    def _index(self, record: Record) -> None:
        """Enter ``record``, as stored now, in the indexes (external id, applications, customer's)."""
        self.version += 1
        if (external_id := record.fields.get("externalId")) is not None:
            self._external_ids[record.type.name][str(external_id)] = record.id
        for index, line in _applications(record.fields):
            doc = _ref(line, "doc")
            if doc is not None:
                applied = self._applied.setdefault(doc, {})
                applied[record.id] = applied.get(record.id, Decimal(0)) + _number(line.get("amount"),
                                                                                   f"apply.items[{index}].amount")
        if record.type.family == "transaction" and (customer := record.customer) is not None:
            self._transactions.setdefault(customer, set()).add((record.type.name, record.id))

    def _unindex(self, record: Record) -> None:
        """Take ``record``, as stored now, out of the indexes (before it changes or goes)."""
        self.version += 1
        external_id = record.fields.get("externalId")
        if external_id is not None and self._external_ids[record.type.name].get(str(external_id)) == record.id:
            del self._external_ids[record.type.name][str(external_id)]
        for _, line in _applications(record.fields):
            self._applied.get(_ref(line, "doc") or "", {}).pop(record.id, None)
        if record.customer is not None:
            self._transactions.get(record.customer, set()).discard((record.type.name, record.id))

    def _find(self, type_names: tuple[str, ...], record_id: str | None) -> Record | None:
        return next((self._records[name][record_id] for name in type_names
                     if record_id in self._records[name]), None)

    def _ref_name(self, target: str, ref: str) -> str | None:
        """The name behind a reference, or None when it points at nothing."""
        if target in SEEDED:
            return SEEDED[target].get(ref)
        record = self._find(_TRANSACTIONS if target == "transaction" else (target,), ref)
        return None if record is None else record.name

    # writes

    def create(self, rt: RecordType, fields: Fields) -> Record:
        """A new record with its type's defaults; a transaction is dated today unless told
        otherwise, as in NetSuite."""
        fields = {**copy.deepcopy(rt.defaults), **fields}
        if rt.family == "transaction":
            fields.setdefault("tranDate", datetime.fromtimestamp(self._clock(), UTC).date().isoformat())
        if rt.name == "customer" and _ref(fields, "currency") is None:
            fields["currency"] = {"id": SUBSIDIARY_CURRENCIES.get(_ref(fields, "subsidiary") or "", BASE_CURRENCY_ID)}
        if self._needs_approval(rt):
            fields.setdefault("approvalStatus", {"id": PENDING_APPROVAL})
        self._validate(rt, fields, None)
        now = self._now()
        record = Record(rt, str(next(self._sequences[rt.family])), fields, now, now)
        self._records[rt.name][record.id] = record
        self._index(record)
        return record

    def upsert(self, rt: RecordType, external_id: str, fields: Fields,
               replace: frozenset[str] = frozenset()) -> tuple[Record, bool]:
        """Create the record with this external id, or update it; True when created."""
        fields = {**fields, "externalId": external_id}
        existing = self._by_external_id(rt, external_id)
        if existing is None:
            return self.create(rt, fields), True
        return self.update(existing, fields, replace), False

    def update(self, record: Record, changes: Fields, replace: frozenset[str] = frozenset()) -> Record:
        """Set the given fields. A sublist named in ``replace`` (``?replace=item``) is replaced; any
        other sublist given is merged into the existing one, as NetSuite does: lines of a keyed
        sublist (``apply``, keyed by its document) update their match, other lines are added."""
        merged = {**record.fields, **{name: _merge_sublist(name, record.fields.get(name), value, replace)
                                      for name, value in changes.items()}}
        if (record.type.name == "customer" and _ref(merged, "currency") != _ref(record.fields, "currency")
                and self._transacted(record)):
            raise _user_error("currency", "This currency cannot be changed after transactions involving this "
                                          "customer have been saved.")
        self._validate(record.type, merged, record.id)
        self._unindex(record)
        record.fields = merged
        record.modified = self._now()
        self._index(record)
        return record

    def _transacted(self, customer: Record) -> bool:
        """Whether any transaction is the customer's."""
        return bool(self._transactions.get(customer.id))

    def delete(self, record: Record) -> None:
        if any(self._depends_on(other, record) for records in self._records.values()
               for other in records.values()):
            raise _user_error(None, "This record cannot be deleted because it has dependent records.")
        del self._records[record.type.name][record.id]
        self._unindex(record)

    @staticmethod
    def _depends_on(other: Record, record: Record) -> bool:
        """Whether ``other`` references ``record`` (as its customer, an applied document...)."""
        names = {record.type.name} | ({"transaction"} if record.type.family == "transaction" else set())
        return any(REFERENCES.get(name) in names and _ref({name: value}, name) == record.id
                   for _, name, value in _walk(other.fields))

    def _now(self) -> str:
        return utc_timestamp(self._clock)

    # validation

    def _validate(self, rt: RecordType, fields: Fields, record_id: str | None) -> None:
        """Refuse the record (as it would be after this write) unless NetSuite would save it."""
        self._check_external_id(rt, fields.get("externalId"), record_id)
        self._check_references(fields)
        currency = self._settle_currency(rt, fields)
        _check_values(fields, SEEDED["currency"][currency])
        for check in rt.checks:
            check(fields)
        self._check_total(rt, fields)
        self._check_applications(rt, fields, record_id, currency)

    def _check_external_id(self, rt: RecordType, external_id: object, record_id: str | None) -> None:
        """An external id names one record of its type."""
        holder = self._by_external_id(rt, str(external_id)) if external_id is not None else None
        if holder is not None and holder.id != record_id:
            raise _user_error("externalId", f"A {rt.name} with external id {external_id} already exists.")

    def _check_references(self, fields: Fields) -> None:
        for path, name, value in _walk(fields):
            target = REFERENCES.get(name)
            if target is None:
                continue
            if not isinstance(value, dict) or "id" not in value:
                raise _invalid(path, f"the field {name} must be a reference such as {{\"id\": \"1\"}}")
            if self._ref_name(target, str(value["id"])) is None:
                raise _invalid_value(path, value["id"])

    def _settle_currency(self, rt: RecordType, fields: Fields) -> str:
        """The document's currency id: a transaction without one takes its customer's primary one (or
        the base currency), and one that names a currency must name one of its customer's."""
        customer = self._find(("customer",), _ref(fields, rt.entity_field))
        currency = _ref(fields, rt.currency_field)
        if currency is None:
            currency = (_ref(customer.fields, "currency") if customer else None) or BASE_CURRENCY_ID
            if rt.family == "transaction":
                fields["currency"] = {"id": currency}
        elif customer is not None and currency not in customer_currencies(customer.fields):
            raise _user_error(rt.currency_field, f"Invalid currency reference key {currency} for entity "
                                                 f"{customer.id}.")
        return currency

    def _check_total(self, rt: RecordType, fields: Fields) -> None:
        """Compute the total (which needs every line priced); a total sent must agree with it."""
        if rt.total is None:
            return
        total = rt.total(fields)
        if "total" in fields and _number(fields["total"], "total") != total:
            raise _invalid("total", f"the total {fields['total']} is not the sum of the lines, {total}")

    def _check_applications(self, rt: RecordType, fields: Fields, record_id: str | None,
                            currency: str) -> None:
        """Each applied document must be posted and open, the same customer's, in the same currency,
        and take no more than its amount remaining; together they take no more than this document."""
        customer = _ref(fields, rt.entity_field)
        for index, line in _applications(fields):
            path = f"apply.items[{index}]"
            doc = self._find(rt.applies_to, _ref(line, "doc"))
            if (doc is None or doc.customer != customer or _ref(doc.fields, "currency") != currency
                    or not self.posting(doc)):
                raise _invalid_value(f"{path}.doc", _ref(line, "doc"))
            amount = _number(line.get("amount"), f"{path}.amount")
            remaining = self.open_balance(doc, excluding=record_id)
            if not 0 < amount <= remaining:
                raise _user_error(f"{path}.amount", f"You cannot apply {amount} to {doc.type.name} {doc.id}: "
                                                    f"its amount remaining is {remaining}.")
        if rt.total is not None and _applied_total(fields) > rt.total(fields):
            raise _user_error("apply", "The applied amounts exceed the amount of the transaction.")

    # balances

    def _needs_approval(self, rt: RecordType) -> bool:
        return self._approval_routing and rt.name == "invoice"

    def posting(self, record: Record) -> bool:
        """Whether the transaction is in the general ledger: all are, but an invoice pending approval."""
        return not self._needs_approval(record.type) or _ref(record.fields, "approvalStatus") == APPROVED

    def total(self, record: Record) -> Decimal:
        return record.type.total(record.fields) if record.type.total else Decimal(0)

    def customer_balance(self, customer: Record) -> Decimal:
        """The customer's A/R balance: what its posted transactions debit less what they credit."""
        transactions = (self._records[name][record_id] for name, record_id in self._transactions.get(customer.id, ()))
        return sum((record.type.receivable * self.total(record) for record in transactions
                    if record.type.receivable and self.posting(record)), Decimal(0))

    def _applied_to(self, doc: Record, excluding: str | None) -> Decimal:
        """What other documents (except ``excluding``, the one being rewritten) apply to ``doc``."""
        return sum((amount for applier, amount in self._applied.get(doc.id, {}).items() if applier != excluding),
                   Decimal(0))

    def open_balance(self, record: Record, excluding: str | None = None) -> Decimal:
        """Its amount, less what it applies to others, less what others apply to it."""
        return self.total(record) - _applied_total(record.fields) - self._applied_to(record, excluding)

    def _balances(self, record: Record) -> Fields:
        rt = record.type
        if rt.family == "entity":
            return {"balance": self.customer_balance(record)}
        if rt.total is None:
            return {}
        balances: Fields = {"total": self.total(record)}
        if rt.applies_to:
            balances["applied"] = _applied_total(record.fields)
        if rt.open_field:
            remaining = self.open_balance(record)
            balances[rt.open_field] = remaining
            if rt.statuses:
                status = rt.statuses[remaining == 0] if self.posting(record) else PENDING_APPROVAL_STATUS
                balances["status"] = {"id": status.id, "refName": status.ref_name}
        return balances

    # rendering

    def render(self, record: Record, api_root: str, *, expand: bool = True) -> Fields:
        """The record as GET returns it. Without ``expand`` sublists are links, as in NetSuite."""
        url = f"{api_root}/{record.type.name}/{record.id}"
        body: Fields = {"links": [_link("self", url)], "id": record.id,
                        "createdDate": record.created, "lastModifiedDate": record.modified}
        for name, value in record.fields.items():
            if not _is_sublist(value):
                body[name] = self._named_ref(name, value)
            elif expand:
                body[name] = {"items": self.render_lines(value["items"])}
            else:
                body[name] = {"links": [_link("self", f"{url}/{name}")]}
        return body | self._balances(record)

    def render_lines(self, lines: list[Fields]) -> list[Fields]:
        return [{name: self._named_ref(name, value) for name, value in line.items()} for line in lines]

    def _named_ref(self, name: str, value: Any) -> Any:
        target = REFERENCES.get(name)
        if target is None or not isinstance(value, dict):
            return value
        id_ = str(value["id"])
        return {"id": id_, "refName": self._ref_name(target, id_)}

    # SuiteQL

    def table(self, name: str) -> suiteql.Table | None:
        """The SuiteQL table ``name`` over the records as they are now; None for an unknown table.
        The same table while the books do not change, with what queries learnt of it (the values its
        rows computed, the orders keyset pages bisect): a page after an id costs the page."""
        columns = SUITEQL_TABLES.get(name)
        if columns is None:
            return None
        kept = self._tables.get(name)
        if kept is None or kept[0] != self.version:
            kinds = [rt for rt in RECORD_TYPES if rt.code] if name == "transaction" else [record_type(name)]
            rows = [_Row(self, record, columns) for rt in kinds for record in self.records(rt)]
            kept = self._tables[name] = (self.version, suiteql.Table(name, tuple(columns), rows))
        return kept[1]


class _Row(Mapping[str, suiteql.Value]):
    """A record as a SuiteQL row: each column computed when a query first reads it (a query over
    100,000 invoices reads ``type`` and ``id`` of every transaction, balances only of its rows)."""

    __slots__ = ("_books", "_columns", "_read", "_record")

    def __init__(self, books: Books, record: Record, columns: dict[str, "Column"]) -> None:
        self._books, self._record, self._columns = books, record, columns
        self._read: dict[str, suiteql.Value] = {}

    def __getitem__(self, column: str) -> suiteql.Value:
        if column not in self._read:
            self._read[column] = self._columns[column](self._books, self._record)
        return self._read[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def utc_timestamp(clock: Clock) -> str:
    """NetSuite's datetime form: ISO 8601 in UTC, to the second, ``Z``-suffixed."""
    return datetime.fromtimestamp(clock(), UTC).strftime(TIMESTAMP_FORMAT)


# --- SuiteQL tables -------------------------------------------------------------------------
# Columns are SuiteQL's names (lower case); references are internal ids, numbers as in NetSuite's
# analytics data source; datetimes are the integration user's time, here UTC.

Column = Callable[[Books, Record], suiteql.Value]


def _field(name: str) -> Column:
    return lambda books, record: record.fields.get(name)


def _id_of(name: str | None) -> Column:
    def value(books: Books, record: Record) -> suiteql.Value:
        found = _ref(record.fields, name)
        return Decimal(found) if found is not None else None

    return value


def _day(name: str) -> Column:
    def value(books: Books, record: Record) -> suiteql.Value:
        raw = record.fields.get(name)
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None

    return value


def _instant(stamp: str) -> datetime:
    return datetime.strptime(stamp, TIMESTAMP_FORMAT)


def _flag(value: object) -> str:
    return "T" if value else "F"


_COMMON_COLUMNS: dict[str, Column] = {
    "id": lambda books, record: Decimal(record.id),
    "externalid": _field("externalId"),
    "lastmodifieddate": lambda books, record: _instant(record.modified),
}

SUITEQL_TABLES: dict[str, dict[str, Column]] = {
    "transaction": {
        **_COMMON_COLUMNS,
        "type": lambda books, record: record.type.code,
        "tranid": _field("tranId"),
        "trandate": _day("tranDate"),
        "duedate": _day("dueDate"),
        "entity": lambda books, record: _id_of(record.type.entity_field)(books, record),
        "currency": _id_of("currency"),
        "memo": _field("memo"),
        "foreigntotal": lambda books, record: books.total(record) if record.type.total else None,
        "foreignamountremaining": lambda books, record: (books.open_balance(record) if record.type.open_field
                                                         else None),
        "approvalstatus": _id_of("approvalStatus"),
        "posting": lambda books, record: _flag(books.posting(record)),
        "createddate": lambda books, record: _instant(record.created),
    },
    "customer": {
        **_COMMON_COLUMNS,
        **{name.lower(): _field(name) for name in ("entityId", "companyName", "firstName", "lastName", "email",
                                                   "phone", *CROSS_REFERENCE_FIELDS)},
        "isinactive": lambda books, record: _flag(record.fields.get("isInactive")),
        "terms": _id_of("terms"),
        "subsidiary": _id_of("subsidiary"),
        "currency": _id_of("currency"),
        "parent": _id_of("parent"),
        "balancesearch": lambda books, record: books.customer_balance(record),
        "datecreated": lambda books, record: _instant(record.created),
    },
}
"""The tables :meth:`Books.table` serves, as column -> how to read it off a record."""


def _link(rel: str, href: str) -> dict[str, str]:
    return {"rel": rel, "href": href}


def _collection(url: str, items: list[Fields], total: int, limit: int, offset: int) -> Fields:
    """NetSuite's paged collection envelope around one page of ``items``."""

    def page(at: int) -> dict[str, str]:
        return {"href": f"{url}?limit={limit}&offset={at}"}

    last = max(0, (total - 1) // limit * limit)
    links = [{"rel": "self", **page(offset)}, {"rel": "first", **page(0)}]
    if offset > 0:
        links.append({"rel": "previous", **page(max(0, offset - limit))})
    if offset + limit < total:
        links.append({"rel": "next", **page(offset + limit)})
    links.append({"rel": "last", **page(last)})
    return {"links": links, "count": len(items), "hasMore": offset + limit < total, "items": items,
            "offset": offset, "totalResults": total}


# --- HTTP -----------------------------------------------------------------------------------


class ConcurrencyGate:
    """NetSuite's concurrency governance: beyond ``limit`` requests in flight, answer 429.

    It wraps the whole app, fault injection included, so a request held by a latency fault still
    occupies its slot, just as a slow request does in NetSuite. Control routes are not counted.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/_sandbox/" in scope["path"]:
            await self.app(scope, receive, send)
            return
        if not self._enter():
            refusal = NetSuiteError(429, "CONCURRENCY_LIMIT_EXCEEDED", CONCURRENCY_DETAIL).response()
            await refusal(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _enter(self) -> bool:
        with self._lock:
            if self._in_flight >= self.limit:
                return False
            self._in_flight += 1
            return True


@dataclass(frozen=True)
class Call:
    """One authenticated request to the record service, parsed."""

    request: Request
    url: str
    record_type: RecordType
    body: Fields

    @property
    def replace(self) -> frozenset[str]:
        """Sublists to replace rather than merge: ``?replace=item,apply``."""
        raw = self.request.query_params.get("replace", "")
        return frozenset(name.strip() for name in raw.split(",") if name.strip())

    @property
    def api_root(self) -> str:
        """``{scheme}://{host}{mount prefix}/services/rest/record/v1``, for links and Location."""
        return self.url[: self.url.index(RECORD_ROOT) + len(RECORD_ROOT)]

    @property
    def key(self) -> str:
        return str(self.request.path_params["key"])


Handler = Callable[[Call], Response]


def _query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise NetSuiteError(400, "INVALID_PARAMETER", f"Invalid value for the parameter {name}: {raw}.",
                            query_param=name)
    return int(raw)


def _paging(request: Request) -> tuple[int, int]:
    """``limit`` (1 to 1000, default 1000) and ``offset`` from the query string: a multiple of the
    limit, and below :data:`MAX_RESULTS` (results past it cannot be paged to: a client narrows the
    query instead, ``WHERE id > {last id}``)."""
    limit, offset = _query_int(request, "limit", MAX_LIMIT), _query_int(request, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:
        raise NetSuiteError(400, "INVALID_PARAMETER", f"The limit must be between 1 and {MAX_LIMIT}.",
                            query_param="limit")
    if offset % limit:
        raise NetSuiteError(400, "INVALID_PARAMETER", "The offset must be a multiple of the limit.",
                            query_param="offset")
    if offset + limit > MAX_RESULTS:
        raise NetSuiteError(400, "INVALID_PARAMETER", f"The offset and limit reach past the first {MAX_RESULTS} "
                            "results, which is as far as paging goes.", query_param="offset")
    return limit, offset


_PATH_SAFE = "/:@!$&'()*+,;="
"""Characters RFC 3986 allows unencoded in a path, as HTTP clients send them."""


def _public_url(request: Request) -> str:
    """The absolute URL the client addressed, and so signed: scheme, ``Host`` header, the raw
    (still percent-encoded) path, and the query. The raw path keeps any mount prefix, which
    ``scope["path"]`` handling varies on between frameworks."""
    scope = request.scope
    raw_path: bytes = scope.get("raw_path") or quote(scope["path"], safe=_PATH_SAFE).encode()
    query: bytes = scope.get("query_string", b"")
    url = f"{scope['scheme']}://{request.headers.get('host', request.url.netloc)}{raw_path.decode('latin-1')}"
    return f"{url}?{query.decode('latin-1')}" if query else url


def _parse_body(raw: bytes) -> Fields:
    """A JSON object, numbers with a fraction as exact Decimals."""
    if not raw:
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as error:
        raise _invalid(None, f"the request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise _invalid(None, "the request body must be a JSON object")
    return body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number NetSuite accepts")


def _no_content(location: str | None = None) -> Response:
    return Response(status_code=204, headers={"Location": location} if location else None)


class NetSuiteSandbox:
    """An in-memory NetSuite account behind SuiteTalk REST; thread-safe.

    Serve :attr:`app` (e.g. with :class:`~crossledger.plugins.emulator.ServerThread`), point the
    connector at it with :meth:`connector_settings`, and read what was written with :meth:`state`.
    """

    def __init__(self, *, concurrency_limit: int = 10, account_id: str | None = None,
                 clock: Clock = time.time, approval_routing: bool = False) -> None:
        self.credentials = TbaCredentials.generate(account_id or f"TSTDRV{secrets.randbelow(10**7):07d}")
        self.faults = Faults()
        self._books = Books(clock, approval_routing)
        self._verifier = TbaVerifier(self.credentials, clock)
        self._clock = clock
        self._lock = threading.RLock()
        self._audit: list[dict[str, str]] = []
        self._last_query: tuple[tuple[str, int], suiteql.Result] | None = None
        self._app = build_app(self._routes(), faults=self.faults, state=self.state,
                              fault_response=fault_response)
        self._app.add_middleware(ConcurrencyGate, limit=concurrency_limit)

    @property
    def app(self) -> Any:
        return self._app

    @property
    def books(self) -> Books:
        """The account's records, for a developer tool that seeds many at once (the reconciliation
        bench) rather than through the API; writes are validated as the API's are. No connector
        reaches it."""
        return self._books

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        creds = self.credentials
        return {"base_url": base_url, "account_id": creds.account_id, "consumer_key": creds.consumer_key,
                "consumer_secret": creds.consumer_secret, "token_id": creds.token_id,
                "token_secret": creds.token_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Nothing to do: NetSuite has no webhooks; the hub polls it."""

    def state(self) -> dict[str, Any]:
        """Every record by type, as GET with ``expandSubResources=true`` shows it (JSON builtins)."""
        with self._lock:
            records = {rt.name: [self._books.render(r, RECORD_ROOT) for r in self._books.records(rt)]
                       for rt in RECORD_TYPES}
        return msgspec.json.decode(_JSON.encode(records), type=dict[str, Any])

    def login_audit_trail(self) -> list[dict[str, str]]:
        """Failed logins with the reason NetSuite only shows here (``nonce_used``, ...)."""
        with self._lock:
            return list(self._audit)

    # routing

    def _routes(self) -> list[BaseRoute]:
        return [
            self._route("/{type}", {"GET": self._list, "POST": self._create}),
            self._route("/{type}/{key}", {"GET": self._read, "PUT": self._upsert, "PATCH": self._update,
                                          "DELETE": self._delete}),
            self._route("/{type}/{key}/{sublist}", {"GET": self._read_sublist}),
            Route(SUITEQL_PATH, self._guarded(self._suiteql), methods=["POST"]),
        ]

    def _route(self, path: str, handlers: dict[str, Handler]) -> Route:
        """A record service route: the body parsed for the record type in the path."""

        def dispatch(request: Request, url: str, raw: bytes) -> Response:
            rt = record_type(request.path_params["type"])
            strict = request.headers.get(STRICT_NAMES_HEADER, "").lower() == "error"
            call = Call(request, url.partition("?")[0], rt, rt.accept(_parse_body(raw), strict))
            return handlers["GET" if request.method == "HEAD" else request.method](call)

        return Route(RECORD_ROOT + path, self._guarded(dispatch), methods=list(handlers))

    def _guarded(self, handle: Callable[[Request, str, bytes], Response]) -> Callable[[Request], Any]:
        """An endpoint whose requests are authenticated, then handled one at a time against the books
        (``handle(request, public url, raw body)``), a :class:`NetSuiteError` becoming NetSuite's
        error response."""

        async def endpoint(request: Request) -> Response:
            try:
                url = _public_url(request)
                self._authenticate(request, url)
                raw = await request.body()
                with self._lock:
                    return handle(request, url, raw)
            except NetSuiteError as error:
                return error.response()

        return endpoint

    def _authenticate(self, request: Request, url: str) -> None:
        try:
            self._verifier.verify(request.method, url, request.headers.get("authorization"))
        except InvalidLogin as failure:
            with self._lock:
                self._audit.append({"date": utc_timestamp(self._clock), "status": "Failure",
                                    "detail": failure.reason})
            raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN_DETAIL) from failure

    # handlers: called with the lock held

    def _list(self, call: Call) -> Response:
        limit, offset = _paging(call.request)
        records = self._books.records(call.record_type)
        url = f"{call.api_root}/{call.record_type.name}"
        items = [{"links": [_link("self", f"{url}/{record.id}")], "id": record.id}
                 for record in records[offset: offset + limit]]
        return _resource(_collection(url, items, len(records), limit, offset), "collection")

    def _create(self, call: Call) -> Response:
        record = self._books.create(call.record_type, call.body)
        return _no_content(self._location(call, record))

    def _read(self, call: Call) -> Response:
        record = self._books.get(call.record_type, call.key)
        expand = call.request.query_params.get("expandSubResources", "").lower() == "true"
        return _resource(self._books.render(record, call.api_root, expand=expand), "singular-resource")

    def _upsert(self, call: Call) -> Response:
        if not call.key.startswith("eid:"):
            raise NetSuiteError(405, "METHOD_NOT_ALLOWED", "PUT is only supported on eid:{externalId} paths.")
        record, created = self._books.upsert(call.record_type, call.key[4:], call.body, call.replace)
        return _no_content(self._location(call, record) if created else None)

    def _update(self, call: Call) -> Response:
        self._books.update(self._books.get(call.record_type, call.key), call.body, call.replace)
        return _no_content()

    def _delete(self, call: Call) -> Response:
        self._books.delete(self._books.get(call.record_type, call.key))
        return _no_content()

    def _read_sublist(self, call: Call) -> Response:
        record = self._books.get(call.record_type, call.key)
        name = call.request.path_params["sublist"]
        lines = _lines(record.fields, name)
        if not _is_sublist(record.fields.get(name)):
            raise NetSuiteError(404, "NONEXISTENT_ID", f"The sublist {name} does not exist on this record.")
        url = f"{call.api_root}/{record.type.name}/{record.id}/{name}"
        page = _collection(url, self._books.render_lines(lines), len(lines), MAX_LIMIT, 0)
        return _resource(page, "collection")

    def _suiteql(self, request: Request, url: str, raw: bytes) -> Response:
        """One page of a SuiteQL query's rows, in the collection envelope (items carry empty links)."""
        if "transient" not in request.headers.get("prefer", "").lower():
            raise NetSuiteError(400, "INVALID_HEADER", "SuiteQL requests must include the header Prefer: transient.")
        limit, offset = _paging(request)
        query = _parse_body(raw).get("q")
        if not isinstance(query, str):
            raise NetSuiteError(400, "INVALID_PARAMETER", "The request body must hold the query as q.",
                                query_param="q")
        rows = self._query_rows(query)
        try:
            items = [{"links": [], **row} for row in rows.page(offset, limit)]
        except suiteql.SuiteQLError as error:
            raise NetSuiteError(400, "INVALID_PARAMETER", str(error), query_param="q") from error
        return _resource(_collection(url.partition("?")[0], items, len(rows), limit, offset), "collection")

    def _query_rows(self, query: str) -> suiteql.Result:
        """A query's rows. They are kept while the books do not change, so paging through a result
        set runs its query once, as NetSuite's paged results do. (A keyset page, ``... id > N ORDER
        BY id``, is a query of its own; the engine answers it from the table's order by id.)"""
        key = (query, self._books.version)
        if self._last_query is None or self._last_query[0] != key:
            try:
                self._last_query = (key, suiteql.select(query, self._books.table))
            except suiteql.SuiteQLError as error:
                raise NetSuiteError(400, "INVALID_PARAMETER", str(error), query_param="q") from error
        return self._last_query[1]

    @staticmethod
    def _location(call: Call, record: Record) -> str:
        return f"{call.api_root}/{record.type.name}/{record.id}"
