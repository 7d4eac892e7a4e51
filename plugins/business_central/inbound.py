"""What Business Central tells the hub: webhook notifications, polling, and the mapping to canonical.

**Notifications** are thin: ``{"value": [{"subscriptionId", "clientState", "resource",
"changeType", "lastModifiedDateTime", ...}]}``, with no signature; every notification must carry
the configured ``client_state`` (:func:`verify`). Each becomes an event naming its record; the
record is read when the event is translated (:meth:`Translator.changes`), so what the hub sees is
the record as it is then, not as it was 30 s earlier. A ``collection`` notification (too many
changes to list) names the entity set with a ``lastDateTimeModified gt`` filter: its translation
lists every record changed since then.

**Polling** is the fallback that catches a lost notification: each stream (customers, sales
invoices, payment journal lines) is read in ``lastModifiedDateTime`` order from the cursor, ``$filter``
``lastModifiedDateTime gt`` it (or equal to it and ``id gt`` the cursor's id, a GUID written bare as
OData v4 wants: Business Central refuses ``id gt '…'``) and below a horizon ``poll_settle_s`` ago.
A polled record and the
notification of the same change get the same event id (entity set, record id and modification
time), so the hub's inbox drops whichever comes second.

**Subscriptions** expire after three days. :func:`maintain` (called by every poll, which the
scheduler runs) creates the missing ones and renews those expiring within ``renew_before_s`` with
``PATCH`` and ``If-Match``; Business Central repeats the ``validationToken`` handshake on both,
which the hub's webhook endpoint answers through :meth:`webhook_handshake
<crossledger.plugins.business_central.connector.BusinessCentralConnector.webhook_handshake>`.

**Mapping** (the ERP is the system of record for accounting state): a customer speaks for its
``financial`` group (payment terms and tax area as dimensions); a posted invoice for its
``posting`` group (and says it is paid once nothing remains open); a payment line someone entered
in Business Central (not one the hub wrote) is a settled payment applied to its invoice.
"""

import hmac
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from crossledger.canonical.entities import Customer, Invoice, InvoiceLine, Payment, PaymentApplication, canonical_id
from crossledger.canonical.money import from_decimal, zero
from crossledger.plugins.business_central.auth import SYSTEM
from crossledger.plugins.business_central.client import ApiClient, Record
from crossledger.plugins.business_central.outbound import HUB_KEY_PREFIX, Setup
from crossledger.plugins.business_central.settings import BusinessCentralSettings
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, SignatureError, exception_reason
from crossledger.plugins.types import Change, InboundEvent, PollResult, Refs

log = logging.getLogger(__name__)

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
STREAMS = {"customers": "customers", "salesInvoices": "salesInvoices", "customerPayments": "customerPayments"}
"""The entity sets polled, each a stream with its own position in the cursor."""
EXPANDS = {"salesInvoices": "salesInvoiceLines"}
_RESOURCE = re.compile(r"companies\((?P<company>[^)]+)\)/(?P<entity_set>\w+)(?:\((?P<id>[^)]+)\))?"
                       r"(?:\?(?P<query>.*))?$")
_SINCE = re.compile(r"lastDateTimeModified(?:%20|\s)+gt(?:%20|\s)+(?P<at>[0-9T:.\-]+Z)")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
"""A GUID as OData v4 writes it in a ``$filter``: bare, never quoted (``id gt 8d5e…``)."""


class Notification(msgspec.Struct, frozen=True, rename="camel"):
    subscription_id: str
    resource: str
    change_type: str
    last_modified_date_time: str
    client_state: str = ""


class Notifications(msgspec.Struct, frozen=True):
    value: list[Notification]


def _notifications(body: bytes) -> list[Notification]:
    try:
        return msgspec.json.decode(body, type=Notifications).value
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise PayloadError(f"not a Business Central notification: {exception_reason(error)}") from None


def verify(settings: BusinessCentralSettings, body: bytes) -> None:
    """Every notification in the body carries a configured ``client_state`` (compared in constant
    time); Business Central signs nothing, so this is all that tells its notifications from a forgery."""
    states = [state.encode() for state in settings.client_states()]
    if not states:
        raise SignatureError("no client_state is configured for business_central: notifications cannot be verified")
    try:
        notifications = _notifications(body)
    except PayloadError as error:
        raise SignatureError(f"unverifiable body: {error}") from None
    if not notifications:
        raise SignatureError("a notification body with no notifications")
    for notification in notifications:
        given = notification.client_state.encode()
        if not any(hmac.compare_digest(given, state) for state in states):
            raise SignatureError("a notification's clientState is not the configured one")


def parse(body: bytes, company_id: str) -> list[InboundEvent]:
    """One event per notification about the configured company, its id that of the change (see the
    module doc).

    A notification about another company is dropped, not refused: its clientState was ours, so it
    is authentic (another company's subscription made with the same app and client state, say), it
    is just not this connector's to read, and the company id decides which API paths are read.
    Refusing it would refuse the batch it came in with, ours too: Business Central retries a 5xx
    (the same refusal each time) and deletes the subscription on any other error status.
    """
    events = []
    for notification in _notifications(body):
        match = _RESOURCE.search(notification.resource)
        if match is None or not _TIMESTAMP.match(notification.last_modified_date_time):
            raise PayloadError("a notification without a Business Central resource and time")
        if match["company"].strip("'").lower() != company_id.lower():
            log.warning("%s notification about another company than the configured one dropped: %s",
                        SYSTEM, notification.resource)
            continue
        entity_set, record_id = match["entity_set"], match["id"]
        if notification.change_type == "collection":
            since = _SINCE.search(notification.resource)
            source_event_id = f"{entity_set}:collection:{since['at'] if since else ''}:" \
                              f"{notification.last_modified_date_time}"
        else:
            source_event_id = _event_id(entity_set, record_id or "", notification.last_modified_date_time)
        events.append(InboundEvent(source_event_id=source_event_id, type=f"{entity_set}.{notification.change_type}",
                                   occurred_at=moment(notification.last_modified_date_time),
                                   payload={"notification": msgspec.to_builtins(notification)}))
    return events


def _event_id(entity_set: str, record_id: str, modified: str) -> str:
    return f"{entity_set}:{record_id}:{modified}"


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- polling ---------------------------------------------------------------------------------------


class Position(msgspec.Struct, frozen=True):
    modified: str
    id: str


def decode_cursor(cursor: str | None, since: datetime) -> dict[str, Position]:
    """Each stream's position. A stream not read yet starts at ``since`` and the nil GUID, which
    every record's id follows (a cursor of an earlier release holds ``""`` there: the same start)."""
    start = Position(modified=_timestamp(since), id=BLANK_GUID)
    if cursor is None:
        return dict.fromkeys(STREAMS, start)
    try:
        positions = msgspec.json.decode(cursor, type=dict[str, Position])
    except msgspec.DecodeError as error:
        raise ConnectorError(Category.DATA, f"{SYSTEM} poll cursor is not one: {exception_reason(error)}") from error
    positions = {stream: Position(at.modified, at.id or BLANK_GUID) for stream, at in positions.items()}
    for at in positions.values():  # both go into a $filter bare: each must be what it claims to be
        if not (_TIMESTAMP.match(at.modified) and _GUID.match(at.id)):
            raise ConnectorError(Category.DATA, f"{SYSTEM} poll cursor holds a position that is not a time and id")
    return {stream: positions.get(stream, start) for stream in STREAMS}


class Poller:
    """One poll of one company: each stream read from its position, in modification order."""

    def __init__(self, api: ApiClient, setup: Setup, now: float) -> None:
        self.api = api
        self.setup = setup
        self.settings = api.settings
        self.horizon = _timestamp(datetime.fromtimestamp(now - self.settings.poll_settle_s, UTC))

    def poll(self, cursor: str | None) -> PollResult:
        positions = decode_cursor(cursor, self.settings.poll_since)
        events: list[InboundEvent] = []
        has_more = False
        for stream, entity_set in STREAMS.items():
            at = positions[stream]
            window = (f"lastModifiedDateTime lt {self.horizon} and (lastModifiedDateTime gt {at.modified} or "
                      f"(lastModifiedDateTime eq {at.modified} and id gt {at.id}))")
            records = self.list(entity_set, window, self.settings.poll_page_size + 1)
            has_more = has_more or len(records) > self.settings.poll_page_size
            for record in records[:self.settings.poll_page_size]:
                positions[stream] = Position(modified=record["lastModifiedDateTime"], id=record["id"])
                events.append(carrying(entity_set, record))
        return PollResult(events=events, cursor=msgspec.json.encode(positions).decode(), has_more=has_more)

    def list(self, entity_set: str, filter_: str | None, top: int) -> list[Record]:
        """Up to ``top`` records of the entity set, in modification order; all of them without a filter."""
        params = {"$orderby": "lastModifiedDateTime,id", "$top": str(top)}
        if filter_ is not None:
            params["$filter"] = filter_
        if entity_set in EXPANDS:
            params["$expand"] = EXPANDS[entity_set]
        path = self._path(entity_set)
        return [record for page in self.api.pages(path, params) for record in page]

    def _path(self, entity_set: str) -> str:
        if entity_set == "customerPayments":
            return self.api.company(f"/customerPaymentJournals({self.setup.payment_journal()})/customerPayments")
        return self.api.company(f"/{entity_set}")


def carrying(entity_set: str, record: Record) -> InboundEvent:
    """The event of a record read now (polled, or read for a notification)."""
    modified = str(record.get("lastModifiedDateTime", ""))
    return InboundEvent(source_event_id=_event_id(entity_set, str(record["id"]), modified),
                        type=f"{entity_set}.changed", occurred_at=moment(modified),
                        payload={"record": msgspec.to_builtins(record)})


# --- subscriptions ---------------------------------------------------------------------------------


def maintain(api: ApiClient, now: float) -> None:
    """Create the missing subscriptions and renew the expiring ones (see the module doc). A
    failure is logged, not raised: polling, which follows, still catches every change."""
    settings = api.settings
    if settings.notification_url is None or settings.client_state is None:
        return
    try:
        current = api.get("/subscriptions").get("value", [])
        for entity_set in settings.subscribe_to:
            resource = f"/api/v2.0/companies({settings.company_id})/{entity_set}"
            mine = [s for s in current if s.get("resource", "").lstrip("/") == resource.lstrip("/")
                    and s.get("notificationUrl") == settings.notification_url]
            if not mine:
                api.request("POST", "/subscriptions", body={
                    "notificationUrl": settings.notification_url, "resource": resource,
                    "clientState": settings.client_state.get_secret_value()})
                continue
            for subscription in mine:
                expires = moment(subscription["expirationDateTime"]).timestamp()
                if expires - now <= settings.renew_before_s:
                    api.request("PATCH", f"/subscriptions('{subscription['subscriptionId']}')",
                                body={"clientState": settings.client_state.get_secret_value()},
                                headers={"If-Match": subscription["@odata.etag"]})
    except ConnectorError as failure:
        log.warning("%s webhook subscriptions not maintained (polling still catches changes): %s", SYSTEM, failure)


# --- to canonical ----------------------------------------------------------------------------------


class Translator:
    """Maps the records events carry (or name) onto canonical changes."""

    def __init__(self, api: ApiClient, setup: Setup, refs: Refs, poller: Callable[[], Poller]) -> None:
        self.api = api
        self.setup = setup
        self.refs = refs
        self.settings = api.settings
        self.poller = poller

    def changes(self, event: InboundEvent) -> list[Change]:
        entity_set = event.type.split(".", 1)[0]
        if "record" in event.payload:
            return self.of_record(entity_set, event.payload["record"])
        notification = msgspec.convert(event.payload["notification"], Notification)
        if notification.change_type == "deleted":
            return []  # the ERP keeps its records; a deleted draft is no news
        if notification.change_type == "collection":
            return self.collection(entity_set, notification)
        match = _RESOURCE.search(notification.resource)
        if match is None or match["id"] is None:
            return []
        if entity_set == "customerPaymentJournals":  # a line changed: read the journal's lines
            return self.collection("customerPayments", None)
        params = {"$expand": EXPANDS[entity_set]} if entity_set in EXPANDS else None
        record = self.api.get_if_any(self.api.company(f"/{entity_set}({match['id']})"), params)
        return [] if record is None else self.of_record(entity_set, record)

    def collection(self, entity_set: str, notification: Notification | None) -> list[Change]:
        """Every record of the entity set changed since the notification's window began (a payment
        journal's lines: all of them; they leave the journal when posted)."""
        stream = "customerPayments" if entity_set == "customerPaymentJournals" else entity_set
        since = _SINCE.search(notification.resource) if notification is not None else None
        filter_ = f"lastModifiedDateTime gt {since['at']}" if since else None
        changes: list[Change] = []
        for record in self.poller().list(stream, filter_, self.settings.poll_page_size):
            changes += self.of_record(stream, record)
        return changes

    def of_record(self, entity_set: str, record: Record) -> list[Change]:
        try:
            if entity_set == "customers":
                return [Change(type="customer.upserted", entity=self.customer(record), groups=("financial",))]
            if entity_set == "salesInvoices" and record.get("status") in ("Open", "Paid"):
                return [Change(type="invoice.posted", entity=self.invoice(record), groups=("posting",))]
            if entity_set == "customerPayments" and not str(record.get("externalDocumentNumber", "")).startswith(
                    HUB_KEY_PREFIX):
                return [Change(type="payment.settled", entity=self.payment(record))]
        except (KeyError, TypeError, ValueError) as error:
            raise ConnectorError(Category.DATA, f"{SYSTEM} {entity_set} record is malformed: "
                                                f"{exception_reason(error)}") from error
        return []

    def _own(self, entity_type: str, record: Record, key_field: str) -> str:
        """The canonical id of a customer or invoice. One the hub made carries the hub's natural key
        (``key_field`` starts with ``CL-``); if the hub has no cross-reference for it yet, its own
        write is being read back before the write's unit of work committed, and a new identity
        would duplicate the record everywhere: a transient failure, read again once it is recorded."""
        record_id = str(record["id"])
        canonical = self.refs.canonical_id(entity_type, SYSTEM, record_id)
        if canonical == canonical_id(entity_type, SYSTEM, record_id) \
                and str(record.get(key_field) or "").startswith(HUB_KEY_PREFIX):
            raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} {entity_type} {record_id} is the hub's own write, "
                                                     "not recorded by the hub yet")
        return canonical

    def _currency(self, code: str | None) -> str:
        return code or self.settings.local_currency

    def customer(self, record: Record) -> Customer:
        dimensions = {name: code for name, field, entity_set in (("terms", "paymentTermsId", "paymentTerms"),
                                                                 ("tax_area", "taxAreaId", "taxAreas"))
                      if (code := self.setup.code(entity_set, record.get(field))) is not None}
        return Customer(
            id=self._own("customer", record, "number"),
            name=record.get("displayName") or f"Business Central customer {record.get('number')}",
            email=record.get("email") or None,
            phone=record.get("phoneNumber") or None,
            currency=self._currency(record.get("currencyCode")),
            status="suspended" if record.get("blocked") in ("Invoice", "All") else "active",
            dimensions=dimensions,
        )

    def invoice(self, record: Record) -> Invoice:
        currency = self._currency(record.get("currencyCode"))
        lines: list[InvoiceLine] = []
        tax = discount = zero(currency)
        for line in record.get("salesInvoiceLines", []):
            amount = from_decimal(Decimal(str(line["amountIncludingTax"])), currency)
            if line.get("lineObjectNumber") == self.settings.tax_item_number:
                tax += amount
            elif line.get("lineObjectNumber") == self.settings.discount_item_number:
                discount -= amount
            else:
                quantity = Decimal(str(line.get("quantity", 1)))
                lines.append(InvoiceLine(description=line.get("description") or "",
                                         quantity=int(quantity) if quantity == int(quantity) and quantity > 0 else 1,
                                         amount=amount))
        total = Decimal(str(record["totalAmountIncludingTax"]))
        paid = record.get("status") == "Paid" or (Decimal(str(record.get("remainingAmount", total))) == 0 and total > 0)
        return Invoice(
            id=self._own("invoice", record, "externalDocumentNumber"),
            customer_id=self.refs.canonical_id("customer", SYSTEM, str(record["customerId"])),
            number=record.get("number"),
            currency=currency,
            lines=lines,
            tax=tax,
            discount=discount,
            total=from_decimal(total, currency),
            status="paid" if paid else "issued",
            posting_status="posted",
            issued_at=_midnight(record.get("invoiceDate")),
            due_at=_midnight(record.get("dueDate")),
        )

    def payment(self, record: Record) -> Payment:
        invoice_id = record.get("appliesToInvoiceId") or BLANK_GUID
        invoice = self.api.get_if_any(self.api.company(f"/salesInvoices({invoice_id})")) \
            if invoice_id != BLANK_GUID else None
        currency = self._currency(invoice.get("currencyCode") if invoice else None)
        amount = from_decimal(Decimal(str(record["amount"])), currency)
        applications = [PaymentApplication(invoice_id=self.refs.canonical_id("invoice", SYSTEM, invoice_id),
                                           amount=amount)] if invoice is not None else []
        return Payment(
            id=self.refs.canonical_id("payment", SYSTEM, str(record["id"])),
            customer_id=self.refs.canonical_id("customer", SYSTEM, str(record["customerId"])),
            amount=amount,
            received_at=_midnight(record.get("postingDate")),
            applications=applications,
        )


def _midnight(text: Any) -> datetime | None:
    if not text:
        return None
    day = date.fromisoformat(str(text)[:10])
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
