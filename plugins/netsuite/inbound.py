"""NetSuite -> the hub: ERP-owned changes found by polling SuiteQL, and their canonical meaning.

NetSuite sends no webhooks, so the hub asks. Each :meth:`Poller.poll` runs one SuiteQL query per
stream, customers first (so a customer born in NetSuite is known before a payment names it), then
transactions; reads each changed record through the record service (sublists included); and hands
back one :class:`~crossledger.plugins.types.InboundEvent` per change that is news to the hub:

==================  ============================================  ===========================================
stream              rows                                          event -> canonical change
==================  ============================================  ===========================================
``customer``        every customer changed                        ``customer.changed`` -> ``customer.upserted``
                                                                  (partial: ``financial``)
``transaction``     invoices that post (``posting = 'T'``)        ``invoice.posted`` -> ``invoice.posted``
                                                                  (partial: ``posting``)
``transaction``     customer payments the hub did not write        ``customerpayment.entered`` ->
                                                                  ``payment.settled``
``transaction``     any of the above, and credit memos, refunds    ``customer.balance_moved`` ->
                    and payments whoever wrote them: per customer  ``customer.upserted`` (partial: ``financial``)
==================  ============================================  ===========================================

**Derived figures follow the events that move them.** A customer's open balance is computed from
its transactions: an invoice posting, a payment, a credit memo or a refund changes it without
touching the customer record (its ``lastmodifieddate`` stays), so the customer stream alone would
not see it. So each poll reads again, once, every customer a transaction row names, and announces
its balance as ``customer.balance_moved`` (keyed by the last such transaction and its timestamp,
so a poll repeated reads it once); a balance that did not change is no news to the hub.

**The cursor** is JSON holding, per stream, the last row read: its ``lastmodifieddate`` and ``id``.
Rows are read in that order and a poll continues strictly after that pair, so rows sharing a
timestamp are neither skipped nor repeated however the pages fall. NetSuite stamps changes to the
second, so a row written later in the same second could sort before the cursor; the poll therefore
reads only seconds that are over (``lastmodifieddate`` before now less ``poll_settle_s``).

**Event ids** are stable per change, so the hub's inbox drops a change read twice (a poll repeated
after a crash, say): ``customer:{id}:{lastmodifieddate}`` and ``customerpayment:{id}:{...}`` (every
edit is news), but ``invoice.posted:{id}``: posting happens once, while a posted invoice is modified
again whenever a payment or credit settles it, which must not announce the posting again.

**Ids.** A record the hub wrote carries its canonical id as external id
(:func:`~crossledger.canonical.entities.external_key`); anything else is named through the hub's
cross-references. Dimensions travel as NetSuite internal ids (``{"terms": "2", "subsidiary": "1"}``),
the form :mod:`.outbound` writes them in, and ``open_balance`` is the customer's A/R balance in its
currency.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from crossledger.canonical.entities import (
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
    from_external_key,
)
from crossledger.canonical.money import Money, from_decimal, zero
from crossledger.plugins.errors import Category, ConnectorError, exception_reason
from crossledger.plugins.netsuite.outbound import SYSTEM
from crossledger.plugins.netsuite.settings import NetSuiteSettings
from crossledger.plugins.types import Change, InboundEvent, PollResult, Refs

SuiteQL = Callable[[str, int], dict[str, Any]]
"""Runs a query, answering the first page of at most that many rows."""
ReadRecord = Callable[[str, str], dict[str, Any] | None]
"""Reads a record (type, internal id) with its sublists; None when it is gone."""

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
SQL_TIMESTAMP = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
"""The same format as an Oracle format model: SuiteQL shows datetimes as bare dates unless asked."""
Timestamp = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]

OBSERVED_RECORDS = {"customer.changed": "customer", "customer.balance_moved": "customer",
                    "invoice.posted": "invoice", "customerpayment.entered": "customerpayment"}
"""The inbound event types and the record type each carries."""


# --- polling --------------------------------------------------------------------------------


class Position(msgspec.Struct, frozen=True):
    """The last row a stream read."""

    modified: Timestamp
    id: int


class Cursor(msgspec.Struct, frozen=True):
    customer: Position
    transaction: Position


class Row(msgspec.Struct, frozen=True):
    """One row of a stream's query (SuiteQL answers text, and leaves NULL columns out)."""

    id: int
    modified: Timestamp
    type: str | None = None
    externalid: str | None = None
    entity: int | None = None


STREAMS = {
    "customer": "SELECT id, externalid, TO_CHAR(lastmodifieddate, '{format}') AS modified FROM customer",
    "transaction": ("SELECT id, type, externalid, entity, TO_CHAR(lastmodifieddate, '{format}') AS modified "
                    "FROM transaction WHERE ((type = 'CustInvc' AND posting = 'T') "
                    "OR type IN ('CustPymt', 'CustCred', 'CustRfnd'))"),
}
"""Each stream's query, without the window :func:`_windowed` adds."""


def _timestamp(text: str) -> str:
    return f"TO_TIMESTAMP('{text}', '{SQL_TIMESTAMP}')"


def _windowed(query: str, after: Position, before: str) -> str:
    """The query limited to rows after ``after`` (by modification time, then id) and modified
    before ``before``, in that order."""
    query = query.format(format=SQL_TIMESTAMP)
    since = _timestamp(after.modified)
    window = (f"lastmodifieddate < {_timestamp(before)} AND (lastmodifieddate > {since} "
              f"OR (lastmodifieddate = {since} AND id > {after.id}))")
    joiner = " AND " if " WHERE " in query else " WHERE "
    return f"{query}{joiner}{window} ORDER BY lastmodifieddate, id"


def _format(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIMESTAMP)


def _moment(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP).replace(tzinfo=UTC)


def decode_cursor(cursor: str | None, since: datetime) -> Cursor:
    """The cursor the last poll returned, or the start (``poll_since``) when there is none."""
    if cursor is None:
        start = Position(modified=_format(since), id=0)
        return Cursor(customer=start, transaction=start)
    try:
        return msgspec.json.decode(cursor, type=Cursor)
    except msgspec.DecodeError as error:
        raise ConnectorError(Category.DATA,
                             f"netsuite poll cursor {cursor!r} is not one: {exception_reason(error)}") from error


def _rows(page: dict[str, Any]) -> list[Row]:
    try:
        return msgspec.convert(page.get("items", []), list[Row], strict=False)
    except msgspec.ValidationError as error:
        raise ConnectorError(Category.DATA, "netsuite SuiteQL answered rows the poll cannot read: "
                                            f"{exception_reason(error)}") from error


class Poller:
    """One poll of one account: the queries, the reads, and the events they make."""

    def __init__(self, settings: NetSuiteSettings, suiteql: SuiteQL, read: ReadRecord, now: float) -> None:
        self.settings = settings
        self.suiteql = suiteql
        self.read = read
        # Whole seconds only, and only once they are poll_settle_s over.
        self.horizon = _format(datetime.fromtimestamp(int(now - settings.poll_settle_s), UTC))

    def poll(self, cursor: str | None) -> PollResult:
        positions = msgspec.structs.asdict(decode_cursor(cursor, self.settings.poll_since))
        events: list[InboundEvent] = []
        has_more = False
        for stream, query in STREAMS.items():
            page = self.suiteql(_windowed(query, positions[stream], self.horizon), self.settings.poll_page_size)
            moved: dict[int, Row] = {}  # customer -> the last of its transactions on this page
            for row in _rows(page):
                positions[stream] = Position(modified=row.modified, id=row.id)
                event = self._event(stream, row)
                if event is not None:
                    events.append(event)
                if stream == "transaction" and row.entity is not None:
                    moved[row.entity] = row
            events += filter(None, (self._balance(customer, row) for customer, row in moved.items()))
            has_more = has_more or bool(page.get("hasMore"))
        return PollResult(events=events, cursor=msgspec.json.encode(Cursor(**positions)).decode(),
                          has_more=has_more)

    def _event(self, stream: str, row: Row) -> InboundEvent | None:
        """The event a changed row means, with its record read; None when it is no news."""
        record_id, modified = str(row.id), row.modified
        if stream == "customer":
            return self._read("customer.changed", record_id, f"customer:{record_id}:{modified}", modified)
        if row.type == "CustInvc":
            return self._read("invoice.posted", record_id, f"invoice.posted:{record_id}", modified)
        if row.type == "CustPymt" and _hub_key(row.externalid, "payment") is None:
            return self._read("customerpayment.entered", record_id, f"customerpayment:{record_id}:{modified}",
                              modified)
        return None  # a payment the hub wrote itself, a credit memo, a refund: only the balance is news

    def _balance(self, customer: int, last: Row) -> InboundEvent | None:
        """The customer's balance after its transactions on this page, ``last`` the latest of them."""
        source_event_id = f"customer.balance:{customer}:{last.id}:{last.modified}"
        return self._read("customer.balance_moved", str(customer), source_event_id, last.modified)

    def _read(self, event_type: str, record_id: str, source_event_id: str, modified: str) -> InboundEvent | None:
        """The event carrying the record read now; None when it is gone (nothing left to tell)."""
        record = self.read(OBSERVED_RECORDS[event_type], record_id)
        if record is None:
            return None
        return InboundEvent(source_event_id=source_event_id, type=event_type, occurred_at=_moment(modified),
                            payload=carrying(record))


def _hub_key(external_id: str | None, entity_type: str) -> str | None:
    """The canonical id an external id stands for, if the hub wrote it for this entity type."""
    found = from_external_key(external_id) if external_id is not None else None
    return found if found is not None and found.startswith(f"{entity_type}/") else None


# --- to canonical ---------------------------------------------------------------------------


class _Wire(msgspec.Struct, frozen=True, rename="camel"):
    """The fields of a NetSuite record the mapping reads (ids are strings, amounts decimals)."""


class _Ref(_Wire, frozen=True):
    id: str


T = TypeVar("T")


class _Sublist(_Wire, Generic[T], frozen=True):
    items: list[T] = []


class _ItemLine(_Wire, frozen=True):
    item: _Ref
    amount: Decimal
    description: str | None = None
    quantity: Decimal = Decimal(1)


class _ApplyLine(_Wire, frozen=True):
    doc: _Ref
    amount: Decimal
    apply: bool = False


class _Customer(_Wire, frozen=True):
    id: str
    external_id: str | None = None
    company_name: str | None = None
    entity_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    currency: _Ref | None = None
    terms: _Ref | None = None
    subsidiary: _Ref | None = None
    balance: Decimal | None = None
    is_inactive: bool = False


class _Invoice(_Wire, frozen=True):
    id: str
    entity: _Ref
    currency: _Ref
    total: Decimal
    external_id: str | None = None
    tran_id: str | None = None
    tran_date: date | None = None
    due_date: date | None = None
    amount_remaining: Decimal | None = None
    item: _Sublist[_ItemLine] = _Sublist()


class _Payment(_Wire, frozen=True):
    id: str
    customer: _Ref
    currency: _Ref
    payment: Decimal
    tran_date: date | None = None
    apply: _Sublist[_ApplyLine] = _Sublist()


_Shape = TypeVar("_Shape", bound=_Wire)


def _decode(event: InboundEvent, shape: type[_Shape]) -> _Shape:
    """The event's record as ``shape``; a record that does not fit is a ``data`` error."""
    record = event.payload.get("record")
    try:
        return msgspec.convert(record, shape, strict=False)
    except msgspec.ValidationError as error:
        raise ConnectorError(Category.DATA, f"netsuite {OBSERVED_RECORDS[event.type]} in event "
                                            f"{event.source_event_id} is malformed: {exception_reason(error)}"
                             ) from error


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


class Translator:
    """Maps the records polled events carry onto canonical changes, for one account's settings."""

    def __init__(self, settings: NetSuiteSettings, refs: Refs) -> None:
        self.settings = settings
        self.refs = refs

    def changes(self, event: InboundEvent) -> list[Change]:
        match event.type:
            case "customer.changed" | "customer.balance_moved":
                return [Change(type="customer.upserted", entity=self.customer(_decode(event, _Customer)),
                               groups=("financial",))]
            case "invoice.posted":
                return [Change(type="invoice.posted", entity=self.invoice(_decode(event, _Invoice)),
                               groups=("posting",))]
            case "customerpayment.entered":
                return [Change(type="payment.settled", entity=self.payment(_decode(event, _Payment)))]
        return []

    def _id(self, entity_type: str, external_id: str | None, internal_id: str) -> str:
        """A record the hub wrote names itself; any other is known by its cross-reference."""
        own = _hub_key(external_id, entity_type)
        return own if own is not None else self.refs.canonical_id(entity_type, SYSTEM, internal_id)

    def _named(self, entity_type: str, internal_id: str) -> str:
        return self.refs.canonical_id(entity_type, SYSTEM, internal_id)

    def customer(self, record: _Customer) -> Customer:
        """The whole customer as NetSuite has it; the change speaks for its financial group only."""
        currency = self.settings.currency_code(record.currency.id) if record.currency else None
        person = " ".join(part for part in (record.first_name, record.last_name) if part)
        dimensions = {name: ref.id for name, ref in (("terms", record.terms), ("subsidiary", record.subsidiary))
                      if ref is not None}
        balance = (from_decimal(record.balance, currency)
                   if currency is not None and record.balance is not None else None)
        return Customer(
            id=self._id("customer", record.external_id, record.id),
            name=record.company_name or record.entity_id or person or f"NetSuite customer {record.id}",
            email=record.email,
            phone=record.phone,
            currency=currency,
            status="suspended" if record.is_inactive else "active",
            dimensions=dimensions,
            open_balance=balance,
        )

    def invoice(self, record: _Invoice) -> Invoice:
        """The invoice as NetSuite has it: tax and discount items become the canonical totals."""
        currency = self.settings.currency_code(record.currency.id)
        lines: list[InvoiceLine] = []
        tax = discount = zero(currency)
        for line in record.item.items:
            amount = from_decimal(line.amount, currency)
            if line.item.id == self.settings.tax_item_id:
                tax += amount
            elif line.item.id == self.settings.discount_item_id:
                discount -= amount  # written as a negative line
            else:
                lines.append(InvoiceLine(description=line.description or "", quantity=int(line.quantity),
                                         amount=amount))
        paid = record.amount_remaining == 0 and record.total > 0
        return Invoice(
            id=self._id("invoice", record.external_id, record.id),
            customer_id=self._named("customer", record.entity.id),
            number=record.tran_id,
            currency=currency,
            lines=lines,
            tax=tax,
            discount=discount,
            total=from_decimal(record.total, currency),
            status="paid" if paid else "issued",
            posting_status="posted",
            issued_at=_midnight(record.tran_date),
            due_at=_midnight(record.due_date),
        )

    def payment(self, record: _Payment) -> Payment:
        """A payment entered in NetSuite, applied to the invoices its apply sublist marks."""
        currency = self.settings.currency_code(record.currency.id)

        def money(value: Decimal) -> Money:
            return from_decimal(value, currency)

        return Payment(
            id=self._named("payment", record.id),
            customer_id=self._named("customer", record.customer.id),
            amount=money(record.payment),
            received_at=_midnight(record.tran_date),
            applications=[PaymentApplication(invoice_id=self._named("invoice", line.doc.id), amount=money(line.amount))
                          for line in record.apply.items if line.apply],
        )


def carrying(record: dict[str, Any]) -> dict[str, Any]:
    """An event payload holding ``record`` as JSON builtins (amounts as exact decimal strings)."""
    return {"record": msgspec.to_builtins(record)}
