"""The NetSuite connector: the hub's documents into the ERP, and the ERP's own changes back out.

NetSuite is reached over SuiteTalk REST, ``{base_url}/services/rest``, with token-based auth.
Outbound, every canonical event becomes at most a few writes to the record service
(:mod:`.outbound`):

==========================  ==========================================================================
canonical event             NetSuite write
==========================  ==========================================================================
``customer.upserted``       ``PUT customer/eid:{eid}``
``customer.deleted``        ``PATCH customer/{id}`` with ``isInactive: true`` (nothing if never sent)
``customer.deactivated``    the same as ``customer.deleted``: the record stays, inactive
``customer.suspended``      ``PATCH customer/{id}`` with ``creditHoldOverride: ON`` (a credit hold)
``customer.reinstated``     ``PATCH customer/{id}`` with ``creditHoldOverride: AUTO`` (the hold released)
``customer.linked``         ``PATCH customer/{id}``: only the ``custentity_cl_*_id`` cross-references
``invoice.issued``          ``PUT invoice/eid:{eid}``: one line per canonical line, then tax, discount
``invoice.voided``          ``PUT creditmemo/eid:{invoice eid}.void`` crediting the whole invoice
``payment.settled``         ``PUT customerpayment/eid:{eid}`` applied to the paid invoices
``credit_memo.issued``      ``PUT creditmemo/eid:{eid}`` applied to the credited invoice for its ``applied`` part
``refund.issued``           ``PUT customerrefund/eid:{eid}`` paying out a credit memo or a payment (succeeded ones only)
``journal_entry.posted``    ``PUT journalentry/eid:{eid}`` with its debit and credit lines
``subscription.*``          ``PUT customrecord_cl_subscription/eid:{eid}`` (a custom record)
==========================  ==========================================================================

Inbound, :meth:`NetSuiteConnector.poll` reads what changed through SuiteQL (:mod:`.inbound`):
invoices that posted, payments entered by NetSuite users, customers' terms, subsidiary and balance.

**Idempotency.** NetSuite's synchronous API has no idempotency key (``X-NetSuite-Idempotency-Key``
only works for asynchronous requests). What it has is the *external id*: ``PUT
/{type}/eid:{externalId}`` creates the record the first time and updates that same record ever
after. The external id is derived from the canonical id (:func:`.outbound.external_id_for`), so
sending an operation twice, or after a timeout, can never create a second record.

**Money.** NetSuite amounts are decimal JSON numbers in the document's currency. They are
converted from canonical minor units by :func:`~crossledger.canonical.money.to_decimal` only,
kept as :class:`~decimal.Decimal` in the planned body and written with their exact digits
(``1.234`` KWD, ``1500`` JPY), never through a float; read back, by ``from_decimal`` only.

**Reading back.** Writes answer ``204 No Content``; the new record's id is only in the
``Location`` header, sent when the write created the record. An update answers without it, so
the connector reads the record to learn its id.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import msgspec
from crossledger.canonical.entities import (
    CreditMemo,
    Customer,
    Invoice,
    JournalEntry,
    Payment,
    Refund,
    Subscription,
    from_external_key,
)
from crossledger.canonical.events import Envelope
from crossledger.canonical.money import from_decimal
from crossledger.plugins.connector import BaseConnector, all_records
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.http import classify_http, error_code, retry_after_seconds, status_category, status_line
from crossledger.plugins.netsuite.inbound import OBSERVED_RECORDS, Poller, Translator, carrying
from crossledger.plugins.netsuite.listing import LISTED, as_record, listed_page
from crossledger.plugins.netsuite.outbound import (
    CAP_APPLICATIONS,
    CURRENCY_LIST,
    CUSTOMER_UPSERT,
    RECORD_TYPES,
    SYSTEM,
    Planner,
    record_path,
)
from crossledger.plugins.netsuite.settings import NetSuiteSettings
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    InboundEvent,
    Operation,
    Outcome,
    Page,
    PollResult,
    Projection,
    Refs,
    Sandbox,
    SystemKind,
)
from pydantic import BaseModel

API_PREFIX = "/services/rest"
SUBSCRIPTION_EVENTS = frozenset({"subscription.created", "subscription.amended", "subscription.renewed",
                                 "subscription.cancelled"})

RATE_LIMIT_CODES = frozenset({"CONCURRENCY_LIMIT_EXCEEDED", "SSS_REQUEST_LIMIT_EXCEEDED"})
"""Error codes that mean "too many requests" whatever the status (RESTlets answer 400)."""

_JSON = msgspec.json.Encoder(decimal_format="number")


def _reflects(record: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether ``record`` already holds the body's fields (sublists, which NetSuite only shows
    as links, are not compared). References compare by id, amounts as decimals."""
    def same(wanted: Any, actual: Any) -> bool:
        if isinstance(wanted, dict):
            return isinstance(actual, dict) and str(actual.get("id")) == str(wanted.get("id"))
        if isinstance(wanted, Decimal):
            return isinstance(actual, int | Decimal) and Decimal(actual) == wanted
        return bool(wanted == actual)

    return all(same(value, record.get(name)) for name, value in body.items()
               if not (isinstance(value, dict) and "items" in value))


def _error_details(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        details = json.loads(response.content).get("o:errorDetails", [])
    except (ValueError, AttributeError):
        return []
    return [detail for detail in details if isinstance(detail, dict)]


def _describe(detail: dict[str, Any]) -> str:
    """``INVALID_CONTENT at item.items[0].item``: the code and the path, not the detail (it quotes values)."""
    where = f" at {detail['o:errorPath']}" if detail.get("o:errorPath") else ""
    return f"{error_code(detail.get('o:errorCode'))}{where}"


def _refused_for_currency(refused: ConnectorError) -> bool:
    """Whether NetSuite refused the write for its ``currency`` (400 ``USER_ERROR`` at ``currency``):
    a document in a currency its customer does not take, or a customer's primary currency changed
    after its first transaction."""
    cause = refused.__cause__
    return (isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 400
            and any(detail.get("o:errorCode") == "USER_ERROR" and detail.get("o:errorPath") == "currency"
                    for detail in _error_details(cause.response)))


def _customer_lacking_currency(refused: ConnectorError, body: dict[str, Any]) -> str | None:
    """The customer whose currencies a refused document's currency is not among, or None when
    that is not why it was refused."""
    if not _refused_for_currency(refused):
        return None
    customer = body.get("entity") or body.get("customer")
    return str(customer["id"]) if isinstance(customer, dict) and "id" in customer else None


def _settings(ctx: Context) -> NetSuiteSettings:
    return ctx.settings_as(NetSuiteSettings)


def _record_type(entity_type: str) -> str:
    """The NetSuite record type for a canonical entity type (or a NetSuite record type as it is)."""
    return RECORD_TYPES.get(entity_type, entity_type)


class NetSuiteConnector(BaseConnector):
    """Delivers canonical events to NetSuite and polls it for the changes it owns, over SuiteTalk
    REST with token-based auth."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.ERP
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DELIVER, Capability.PROBE, Capability.POLL, Capability.FETCH, Capability.SANDBOX, Capability.LIST}
    )
    settings_model: ClassVar[type[BaseModel]] = NetSuiteSettings
    lists: ClassVar[frozenset[str]] = frozenset(LISTED)
    lists_since: ClassVar[frozenset[str]] = frozenset(LISTED)

    # -- outbound ------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        planner = Planner(_settings(ctx), refs)
        match event.type, event.data:
            case "customer.upserted", Customer() as customer:
                return [planner.customer(customer)]
            case "customer.deleted" | "customer.deactivated", Customer() as customer:
                return planner.deactivate(customer)
            case "customer.suspended", Customer() as customer:
                return planner.credit_hold(customer, held=True)
            case "customer.reinstated", Customer() as customer:
                return planner.credit_hold(customer, held=False)
            case "customer.linked", Customer() as customer:
                return planner.link(customer)
            case "invoice.issued", Invoice() as invoice:
                return [planner.invoice(invoice)]
            case "invoice.voided", Invoice() as invoice:
                return [planner.void(invoice)]
            case "payment.settled", Payment() as payment:
                return [planner.payment(payment)]
            case "credit_memo.issued", CreditMemo() as memo:
                return [planner.credit_memo(memo)]
            case "refund.issued", Refund() as refund:
                return planner.refund(refund)
            case "journal_entry.posted", JournalEntry() as entry:
                return [planner.journal_entry(entry)]
            case event_type, Subscription() as subscription if event_type in SUBSCRIPTION_EVENTS:
                return [planner.subscription(subscription)]
        return []

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """Send the write. The external id in its path makes a repeat harmless, so the
        idempotency key is not needed on the wire."""
        payload = op.payload
        body = payload["body"]
        if payload.get(CAP_APPLICATIONS):
            body = self._capped(ctx, payload["path"], body)

        def send() -> httpx.Response:
            return self._request(ctx, payload["method"], payload["path"], body=body, params=payload.get("params"))

        try:
            response = send()
        except ConnectorError as refused:
            if op.name == CUSTOMER_UPSERT and "currency" in body and _refused_for_currency(refused):
                # The customer has transactions, so its primary currency stays: billing's currency
                # joins its currency list instead (a keyed sublist: listing it again is harmless).
                body = {**{name: value for name, value in body.items() if name != "currency"},
                        CURRENCY_LIST: {"items": [{"currency": body["currency"]}]}}
            elif (customer := _customer_lacking_currency(refused, body)) is not None:
                self._take_currency(ctx, op, customer, body["currency"])
            else:
                raise
            response = send()
        location = response.headers.get("location")
        if location:
            return Outcome(external_id=location.rstrip("/").rsplit("/", 1)[-1], created=True)
        return Outcome(external_id=str(self._read(ctx, payload["path"])["id"]))

    def _take_currency(self, ctx: Context, op: Operation, customer: str, currency: dict[str, str]) -> None:
        """Let the customer transact in ``currency``, or say, naming the field, that the document is
        in a currency its customer lacks. A customer without transactions takes it as its primary
        currency, as billing fixes a customer's currency at its first bill (the customer's own update
        may still be on its way); one with transactions gets it on its currency list (a keyed
        sublist: adding it again is harmless)."""
        settings = _settings(ctx)
        if not settings.add_customer_currencies:
            raise ConnectorError(
                Category.DATA, f"{SYSTEM} refused {op.name} {op.canonical_id}: currency "
                f"{settings.currency_code(currency['id'])} is not among customer {customer}'s currencies; add it "
                "to the customer's currency list in NetSuite (or set add_customer_currencies), then replay")
        path = record_path("customer", customer)
        try:
            self._request(ctx, "PATCH", path, body={"currency": currency})
        except ConnectorError as refused:
            if not _refused_for_currency(refused):
                raise
            self._request(ctx, "PATCH", path, body={CURRENCY_LIST: {"items": [{"currency": currency}]}})

    def _capped(self, ctx: Context, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with each ``apply`` line cut to what its invoice has open now, plus what this very
        document (``path``) already applies to it, so a repeat of the write lands the same; a line
        with nothing left to apply is dropped."""
        current = self._request(ctx, "GET", path, params={"expandSubResources": "true"}, missing_ok=True)
        already: dict[str, Decimal] = {}
        if current.status_code != 404:
            for line in _decode(current).get("apply", {}).get("items", []):
                already[str(line["doc"]["id"])] = Decimal(line["amount"])
        lines = []
        for line in body["apply"]["items"]:
            doc = str(line["doc"]["id"])
            invoice = self._read(ctx, record_path("invoice", doc))
            amount = min(line["amount"], Decimal(invoice["amountRemaining"]) + already.get(doc, Decimal(0)))
            if amount > 0:
                lines.append({**line, "amount": amount})
        return {**body, "apply": {"items": lines}}

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """After an ambiguous failure: did the write land? The record must exist *and* hold what
        the write set, otherwise an update lost in a timeout would pass for done."""
        response = self._request(ctx, "GET", op.payload["path"], missing_ok=True)
        if response.status_code == 404:
            return None
        record = _decode(response)
        if not _reflects(record, op.payload["body"]):
            return None
        return Outcome(external_id=str(record["id"]), record=record)

    # -- inbound -------------------------------------------------------------------------------

    def poll(self, ctx: Context, cursor: str | None) -> PollResult:
        """What changed in NetSuite since ``cursor`` (see :mod:`.inbound`)."""
        return Poller(_settings(ctx), lambda query, limit: self._suiteql(ctx, query, limit),
                      lambda record_type, record_id: self._read_if_any(ctx, record_type, record_id),
                      ctx.clock()).poll(cursor)

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        return Translator(_settings(ctx), refs).changes(event)

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event carrying its record as NetSuite has it now (same id, type and time)."""
        record_type = OBSERVED_RECORDS.get(event.type)
        record_id = event.payload.get("record", {}).get("id")
        if record_type is None or record_id is None:
            raise ConnectorError(Category.DATA, f"netsuite event {event.source_event_id} names no record to refetch")
        return msgspec.structs.replace(event, payload=carrying(self.fetch(ctx, record_type, str(record_id))))

    # -- reading -------------------------------------------------------------------------------

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """A record with its sublists, by canonical entity type (or NetSuite record type) and id."""
        return self._read(ctx, record_path(_record_type(entity_type), external_id), expand=True)

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of the type as reconciliation reads it, page after page (:meth:`records_page`)."""
        return all_records(self, ctx, entity_type, page_size=page_size)

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """One page from SuiteQL (:mod:`.listing`): up to 1,000 rows (``page_size``) after the row id
        ``cursor``, changed at or after ``since`` by ``lastmodifieddate``, each row named as the record
        service names its fields."""
        if entity_type not in LISTED:
            raise ConnectorError(Category.DATA, f"netsuite lists {', '.join(sorted(LISTED))}, not {entity_type!r}")
        settings = _settings(ctx)
        rows, following = listed_page(LISTED[entity_type], cursor, since, page_size,
                                      lambda query, limit: self._suiteql(ctx, query, limit))
        return Page(records=[as_record(row, settings.currency_code) for row in rows], next=following)

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """Customers (company name, email, currency), invoices (total, amount remaining, currency,
        open while something remains, the month of their ``tranDate``), and payments, credit memos and
        refunds (total, currency, month). The mark is the ``externalId`` the hub gave the record, read
        back as the canonical id; the credit memo that books a void is its invoice's, not a credit note."""
        mark = from_external_key(str(record.get("externalId") or ""))
        modified = record.get("lastModifiedDate")
        changed_at = datetime.strptime(modified, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() \
            if isinstance(modified, str) else None
        currency = (record.get("currency") or {}).get("refName")
        if entity_type == "customer":
            email = record.get("email")
            return Projection(id=str(record["id"]), mark=mark, changed_at=changed_at,
                              key=str(email).lower() if email else None, values={
                "name": record.get("companyName"), "email": record.get("email"),
                **({"currency": str(currency)} if currency else {})})
        if entity_type == "invoice":
            remaining = from_decimal(str(record.get("amountRemaining") or 0), str(currency)).amount
            return Projection(id=str(record["id"]), mark=mark, changed_at=changed_at, key=record.get("tranId"), values={
                "currency": str(currency), "total": from_decimal(str(record["total"]), str(currency)).amount,
                "amount_remaining": remaining, "status": "open" if remaining > 0 else "settled",
            }, period=str(record.get("tranDate") or "")[:7] or None)
        if entity_type in self.lists:
            if mark is not None and not mark.startswith(f"{entity_type}/"):
                return None  # a void's credit memo: reconciled as its invoice's status, not as a credit note
            return Projection(id=str(record["id"]), mark=mark, changed_at=changed_at, values={
                "currency": str(currency), "total": from_decimal(str(record["total"]), str(currency)).amount,
            }, period=str(record.get("tranDate") or "")[:7] or None)
        raise ConnectorError(Category.DATA, f"netsuite reconciles {', '.join(sorted(self.lists))}, not {entity_type!r}")

    def _read(self, ctx: Context, path: str, *, expand: bool = False) -> dict[str, Any]:
        params = {"expandSubResources": "true"} if expand else None
        return _decode(self._request(ctx, "GET", path, params=params))

    def _read_if_any(self, ctx: Context, record_type: str, record_id: str) -> dict[str, Any] | None:
        response = self._request(ctx, "GET", record_path(record_type, record_id),
                                 params={"expandSubResources": "true"}, missing_ok=True)
        return None if response.status_code == 404 else _decode(response)

    def _suiteql(self, ctx: Context, query: str, limit: int, offset: int = 0) -> dict[str, Any]:
        """One page of a SuiteQL query (``Prefer: transient`` is what NetSuite requires)."""
        params = {"limit": str(limit), **({"offset": str(offset)} if offset else {})}
        response = self._request(ctx, "POST", "/query/v1/suiteql", body={"q": query}, params=params,
                                 headers={"Prefer": "transient"})
        return _decode(response)

    # -- errors and HTTP -----------------------------------------------------------------------

    def classify(self, error: Exception) -> ConnectorError:
        """The shared HTTP taxonomy, with NetSuite's own error codes in the message, and its
        concurrency-limit codes read as rate limiting whatever the status."""
        if not isinstance(error, httpx.HTTPStatusError):
            return classify_http(error, SYSTEM)
        response = error.response
        details = _error_details(response)
        codes = {detail.get("o:errorCode") for detail in details}
        request = error.request
        return ConnectorError(
            Category.RATE_LIMITED if codes & RATE_LIMIT_CODES else status_category(response.status_code),
            f"{SYSTEM} {request.method} {request.url.path}: {status_line(response)}"
            f"{': ' if details else ''}{'; '.join(map(_describe, details))}",
            retry_after=retry_after_seconds(response),
            status=response.status_code,
        )

    def sandbox(self) -> Sandbox:
        """A fresh NetSuite emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox

        return NetSuiteSandbox()

    @staticmethod
    def _url(ctx: Context, path: str) -> str:
        return _settings(ctx).base_url.rstrip("/") + API_PREFIX + path

    def _request(self, ctx: Context, method: str, path: str, *, body: dict[str, Any] | None = None,
                 params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                 missing_ok: bool = False) -> httpx.Response:
        """One signed call to ``path`` under ``/services/rest``."""
        return self._send(ctx, method, self._url(ctx, path), body=body, params=params, headers=headers,
                          missing_ok=missing_ok)

    def _send(self, ctx: Context, method: str, url: str, *, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
              missing_ok: bool = False) -> httpx.Response:
        """One signed call; any failure leaves classified as a :class:`ConnectorError`."""
        settings = _settings(ctx)
        sent = {"Accept": "application/json", "X-NetSuite-PropertyNameValidation": "error", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        try:
            response: httpx.Response = ctx.http.request(
                method, url, params=params, headers=sent, content=None if body is None else _JSON.encode(body),
                auth=settings.auth(), timeout=settings.timeout_s,
            )
            if not (missing_ok and response.status_code == 404):
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise self.classify(error) from error
        return response


def _decode(response: httpx.Response) -> dict[str, Any]:
    """A response body, amounts as exact Decimals."""
    decoded: dict[str, Any] = json.loads(response.content, parse_float=Decimal)
    return decoded
