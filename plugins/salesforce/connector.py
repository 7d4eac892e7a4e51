"""The Salesforce connector: the CRM's accounts and contacts in, ERP and billing facts out.

**Inbound**, ``POST /webhooks/salesforce`` takes two kinds of body, told apart by their first
character (so a misleading Content-Type cannot route a body around its check):

- *Outbound messages* (SOAP, ``<``): Salesforce's own push (:mod:`.soap`). Salesforce signs
  nothing; the check is that ``OrganizationId`` is our org's. Each notification becomes one event
  keyed by the notification id, and the answer is the Ack Salesforce waits for, or a SOAP fault.
- *Change Data Capture events* (JSON, ``{``) in the CometD envelope, from the relay that
  subscribes to the org's change events, signed with ``cdc_secret`` (:mod:`.relay`). One event
  per changed record, keyed ``{transactionKey}:{sequenceNumber}:{recordId}``. Updates carry only the
  changed fields, so :meth:`~SalesforceConnector.to_canonical` reads the whole record again; creates
  carry every set field; deletes become ``customer.deleted`` / ``contact.deleted``. Platform events
  parse too, and are ignored.

:mod:`.mapping` says what maps to what. **Outbound**, every write is idempotent by construction: an
upsert by External ID (``PATCH /sobjects/{Object}/CrossLedger_Id__c/{external key}``: 201 created,
200 updated, 300 when the value is not unique) or an update by Salesforce id. After an ambiguous
failure, :meth:`~SalesforceConnector.probe` reads the record back and compares it with the write.
Suspension is a flag on the Account (``Account_Status__c``): ``customer.suspended`` sets it,
``customer.reinstated`` clears it; ``customer.deactivated`` plans nothing.

Requests go through :class:`~.client.RestClient` (session tokens, ``Sforce-Limit-Info``, error
codes); :attr:`SalesforceConnector.last_limit_info` holds each org's last reported API usage.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import msgspec
from crossledger.canonical.bounds import from_epoch
from crossledger.canonical.entities import Contact, ContractTerms, Customer, Invoice, Payment
from crossledger.canonical.events import Envelope
from crossledger.plugins.connector import BaseConnector, all_records
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, SchemaError, SignatureError
from crossledger.plugins.salesforce import ids, mapping, relay, soap
from crossledger.plugins.salesforce.client import ApiUsage, RestClient, UsageMonitor, classify, decode
from crossledger.plugins.salesforce.settings import SalesforceSettings
from crossledger.plugins.tokens import TokenCache
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
    InboundEvent,
    Operation,
    Outcome,
    Page,
    Projection,
    Refs,
    Sandbox,
    SystemKind,
)
from pydantic import BaseModel

log = logging.getLogger(__name__)

SYSTEM = mapping.SYSTEM
OUTBOUND_MESSAGE = "outbound_message"
"""The event type suffix of a notification: ``Account.outbound_message``."""


class _CometEvent(msgspec.Struct, frozen=True):
    replayId: int  # Salesforce's own field names
    EventUuid: str | None = None


class _CometData(msgspec.Struct, frozen=True):
    payload: dict[str, Any]
    event: _CometEvent


class _CometEnvelope(msgspec.Struct, frozen=True):
    data: _CometData
    channel: str


class _ChangeEventHeader(msgspec.Struct, frozen=True):
    entityName: str
    changeType: str
    recordIds: list[str]
    transactionKey: str
    sequenceNumber: int
    commitTimestamp: int


def _is_soap(body: bytes) -> bool:
    return body.lstrip()[:1] == b"<"


@contextmanager
def _soap_errors() -> Iterator[None]:
    """Unreadable XML is a :class:`PayloadError` (400); readable XML that is not an outbound message
    a :class:`SchemaError` (422). Salesforce gets either as a SOAP fault."""
    try:
        yield
    except soap.UnreadableXml as error:
        raise PayloadError(f"not a well-formed outbound message: {error}") from error
    except soap.SoapError as error:
        raise SchemaError(f"not an outbound message: {error}") from error


def _header(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _flatten(fields: dict[str, Any]) -> dict[str, Any]:
    """CDC's compound fields as the REST API's flat ones: ``BillingAddress: {"City": ...}`` becomes
    ``BillingCity``, a contact's ``Name: {"FirstName": ...}`` becomes ``FirstName``."""
    flat: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, dict) and name == "Name":
            flat.update(value)
        elif isinstance(value, dict) and name.endswith("Address"):
            flat.update({f"{name.removesuffix('Address')}{part}": inner for part, inner in value.items()})
        else:
            flat[name] = value
    return flat


DELETIONS = ("DELETE", "GAP_DELETE")
MAX_BATCH = 2000
"""The most records one SOQL answer carries (Salesforce's largest batch): a listing page's default."""
"""Change types that remove a record (UNDELETE restores one: it is read again like an update)."""


def _change_type(record: mapping.Record) -> str:
    """``CREATE``, ``UPDATE``, ``DELETE``, ``UNDELETE`` or ``GAP_*`` for a CDC event; ``UPSERT`` for a
    record that is whole (an outbound message or a REST read)."""
    header = record.get("ChangeEventHeader")
    return str(header.get("changeType", "UPSERT")) if isinstance(header, dict) else "UPSERT"


def _several(op: Operation, response: httpx.Response) -> ConnectorError:
    """The 300 of an External ID on several records: only a person can tell which one is right."""
    matches = [str(url).rsplit("/", 1)[-1] for url in decode(response)]
    return ConnectorError(Category.DATA, f"{op.canonical_id}: several Salesforce records carry its external id "
                                         f"({', '.join(matches)}); merge them, or clear the field on all but one",
                          status=300)


def _settings(ctx: Context) -> SalesforceSettings:
    return ctx.settings_as(SalesforceSettings)


class SalesforceConnector(BaseConnector):
    """Salesforce as the CRM: outbound messages and relayed CDC events in, REST writes out."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.CRM
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX,
         Capability.LIST}
    )
    settings_model: ClassVar[type[BaseModel]] = SalesforceSettings
    lists: ClassVar[frozenset[str]] = frozenset({"customer"})
    lists_since: ClassVar[frozenset[str]] = frozenset({"customer"})
    # Outbound messages are SOAP 1.1 (text/xml); the CDC relay posts JSON.
    webhook_media_types: ClassVar[frozenset[str]] = frozenset({"text/xml", "application/json"})

    def __init__(self) -> None:
        self._sessions = TokenCache()
        self._usage = UsageMonitor()

    @property
    def last_limit_info(self) -> dict[str, ApiUsage]:
        """The last ``Sforce-Limit-Info`` each org (by ``base_url``) reported: calls used and allowed."""
        return self._usage.last()

    # -- inbound -----------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """An outbound message must name our org; a relayed CDC event must carry the relay's signature."""
        settings = _settings(ctx)
        if _is_soap(body):
            with _soap_errors():
                claimed = soap.organization_id(body)
            if claimed is None or not ids.same(claimed, settings.organization_id):
                raise SignatureError(f"Invalid OrganizationId {claimed!r}: this endpoint takes outbound messages of "
                                     f"org {settings.organization_id} only")
            return
        secrets = [secret.get_secret_value() for secret in (settings.cdc_secret, settings.previous_cdc_secret)
                   if secret is not None]
        relay.verify(_header(headers, relay.HEADER), body, secrets, now=ctx.clock())

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        try:
            if _is_soap(body):
                with _soap_errors():
                    return self._notifications(ctx, body)
            return self._relayed(ctx, body)
        except msgspec.ValidationError as error:  # JSON, but not the CometD envelope
            raise SchemaError(f"not a relayed CometD event: {error}") from error
        except ValueError as error:  # bad dates, say
            kind = "outbound message" if _is_soap(body) else "relayed CometD event"
            raise PayloadError(f"not a well-formed {kind}: {error}") from error

    def webhook_reply(self, events: list[InboundEvent]) -> tuple[int, str, bytes]:
        """The Ack for outbound messages (anything else makes Salesforce send them again); JSON for the relay."""
        if any(event.type.endswith(f".{OUTBOUND_MESSAGE}") for event in events):
            return 200, soap.CONTENT_TYPE, soap.ACK
        return 200, "application/json", b'{"received": true}'

    def webhook_error(self, status: int, message: str) -> tuple[int, str, bytes] | None:
        """A SOAP fault: Salesforce shows its ``faultstring`` in the outbound message queue."""
        return status, soap.CONTENT_TYPE, soap.fault(message, sender_at_fault=status < 500)

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        record = event.payload
        sobject = mapping.sobject_of(record)
        entity_type = mapping.ENTITY_TYPES.get(sobject)
        if entity_type not in ("customer", "contact") or not record.get("Id"):
            return []
        external_id_field = _settings(ctx).external_id_field
        change = _change_type(record)
        if change in DELETIONS:
            gone = mapping.deleted(entity_type, record, refs, external_id_field)
            return [Change(type=f"{entity_type}.deleted", entity=gone, groups=("status",))]
        # UPDATE, UNDELETE and GAP_* events do not hold the record. An outbound message does, but it
        # is vouched for only by an org id, which is no secret: its record is read back over the
        # authenticated API, and only a well-formed Salesforce id is asked for.
        if change not in ("CREATE", "UPSERT") or event.type.endswith(f".{OUTBOUND_MESSAGE}"):
            record_id = ids.normalize(str(record.get("Id")))
            if record_id is None:
                return []
            current = self._current(ctx, sobject, record_id)
            if current is None:
                return []  # deleted since: its DELETE event follows
            record = current
        entity = (mapping.customer if entity_type == "customer" else mapping.contact)(record, refs, external_id_field)
        return [Change(type=f"{entity_type}.upserted", entity=entity)]

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event with its record as Salesforce has it now (nothing to read for a deletion)."""
        record = event.payload
        sobject = mapping.sobject_of(record)
        if sobject not in mapping.ENTITY_TYPES or not record.get("Id") or _change_type(record) in DELETIONS:
            return event
        return msgspec.structs.replace(event, payload=self.fetch(ctx, sobject, mapping.record_id(record)))

    def _notifications(self, ctx: Context, body: bytes) -> list[InboundEvent]:
        message = soap.parse(body)
        events = []
        for notification in message.notifications:
            record = {"attributes": {"type": notification.sobject}, **notification.fields}
            events.append(InboundEvent(
                source_event_id=notification.id,
                type=f"{notification.sobject}.{OUTBOUND_MESSAGE}",
                occurred_at=mapping.modified_at(record) or datetime.fromtimestamp(ctx.clock(), UTC),
                payload=record,
            ))
        return events

    def _relayed(self, ctx: Context, body: bytes) -> list[InboundEvent]:
        envelope = msgspec.convert(json.loads(body), _CometEnvelope)
        payload = dict(envelope.data.payload)
        raw_header = payload.pop("ChangeEventHeader", None)
        if raw_header is None:  # a platform event: /event/Low_Ink__e
            name = envelope.channel.rsplit("/", 1)[-1]
            event = envelope.data.event
            return [InboundEvent(
                source_event_id=event.EventUuid or f"{envelope.channel}:{event.replayId}",
                type=name,
                occurred_at=mapping.modified_at(payload) or datetime.fromtimestamp(ctx.clock(), UTC),
                payload={"attributes": {"type": name}, **payload},
            )]
        header = msgspec.convert(raw_header, _ChangeEventHeader)
        fields = _flatten(payload)
        return [
            InboundEvent(
                source_event_id=f"{header.transactionKey}:{header.sequenceNumber}:{record_id}",
                type=f"{header.entityName}.{header.changeType}",
                occurred_at=from_epoch(header.commitTimestamp / 1000, "ChangeEventHeader.commitTimestamp"),
                payload={"attributes": {"type": header.entityName}, **fields, "Id": record_id,
                         "ChangeEventHeader": raw_header},
            )
            for record_id in header.recordIds
        ]

    # -- outbound ----------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        planner = mapping.Planner(_settings(ctx), refs)
        match event.type, event.data:
            case "customer.upserted", Customer() as customer:
                return [planner.customer(customer)]
            case "customer.linked", Customer() as customer:
                return planner.link(customer)
            case "customer.suspended" | "customer.reinstated", Customer() as customer:
                return [planner.suspension(customer, suspended=event.type == "customer.suspended")]
            case "contact.upserted", Contact() as contact:
                return [planner.contact(contact)]
            case "invoice.posted", Invoice() as invoice:
                return [planner.invoice(invoice)]
            case "invoice.issued" | "invoice.paid" | "invoice.voided", Invoice() as invoice:
                return planner.invoice_status(invoice)
            case "payment.settled", Payment() as payment:
                return [planner.payment(payment)]
        return []  # customer.deactivated among them: the account is the CRM's to close, not the hub's

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """Send the write. Its path (External ID or record id) makes a repeat harmless, so the
        idempotency key is not needed on the wire."""
        client = self._client(ctx)
        payload = op.payload
        response = client.request(payload["method"], client.data_path(payload["path"]), body=payload["body"],
                                  allow=frozenset({300}))
        if response.status_code == 300:
            raise _several(op, response)
        if response.status_code in (200, 201):
            result = decode(response)
            created = bool(result.get("created", response.status_code == 201))
            return Outcome(external_id=str(result["id"]), created=created)
        if "id" in payload:  # 204 from an update by id
            return Outcome(external_id=str(payload["id"]))
        record = decode(client.request("GET", client.data_path(payload["path"])))  # 204 from an upsert before v46
        return Outcome(external_id=str(record["Id"]))

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """Did the write land? The record must exist *and* hold what the write set, or an update lost
        in a timeout would pass for done."""
        client = self._client(ctx)
        response = client.request("GET", client.data_path(op.payload["path"]), allow=frozenset({300, 404}))
        if response.status_code == 404:
            return None
        if response.status_code == 300:
            raise _several(op, response)
        record = decode(response)
        if not mapping.reflects(record, op.payload["body"]):
            return None
        return Outcome(external_id=str(record["Id"]), record=record)

    # -- reads -------------------------------------------------------------------------------------

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """One record by canonical entity type (or sObject name) and Salesforce id."""
        sobject = mapping.SOBJECTS.get(entity_type, entity_type)
        record = self._current(ctx, sobject, external_id)
        if record is None:
            raise ConnectorError(Category.DATA, f"salesforce has no {sobject} {external_id}", status=404)
        return record

    def contract_terms(self, ctx: Context, customer_id: str) -> ContractTerms:
        """The contract on the Account ``customer_id`` (:func:`~.mapping.contract_of`)."""
        return mapping.contract_of(self.fetch(ctx, "customer", customer_id))

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of the entity type, page after page (:meth:`records_page`)."""
        return all_records(self, ctx, entity_type, page_size=page_size)

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """One page by SOQL, keyset-paged: the records after the ``Id`` ``cursor``, by ``Id``, ``LIMIT``
        ``page_size`` (2,000 by default, Salesforce's largest batch). A query locator
        (``nextRecordsUrl``) would expire while an interrupted run waits, the last id read does not.
        ``since`` is ``SystemModstamp >= ...``, the stamp Salesforce moves on every change, the
        user's and the system's (``LastModifiedDate`` misses the latter)."""
        sobject = mapping.SOBJECTS.get(entity_type)
        if sobject is None:
            raise ConnectorError(Category.DATA, f"salesforce lists {', '.join(mapping.SOBJECTS)}, not {entity_type!r}")
        if cursor is not None and ids.normalize(cursor) is None:
            raise ConnectorError(Category.DATA, f"a salesforce listing cursor is the last Id read, not {cursor!r}")
        client = self._client(ctx)
        fields = mapping.query_fields(sobject, client.settings.external_id_field)
        limit = page_size or MAX_BATCH
        where = [f"Id > '{cursor}'"] if cursor else []
        if since is not None:
            where.append(f"SystemModstamp >= {since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        query = f"SELECT {', '.join(fields)} FROM {sobject}{condition} ORDER BY Id LIMIT {limit}"
        page = decode(client.request("GET", client.data_path("/query"), params={"q": query}))
        records = list(page["records"])
        return Page(records=records, next=str(records[-1]["Id"]) if len(records) == limit else None)

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """An Account (``customer``) by its name and ``Email__c`` (its key, in lower case). Accounts
        are matched by the hub's cross-references, so the external-id field is not needed here."""
        if entity_type not in self.lists:
            raise ConnectorError(Category.DATA, f"salesforce reconciles customers, not {entity_type!r}")
        email, modified = record.get("Email__c"), record.get("LastModifiedDate")
        changed_at = datetime.strptime(modified, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() \
            if isinstance(modified, str) else None
        return Projection(id=str(record["Id"]), key=str(email).lower() if email else None,
                          values={"name": record.get("Name"), "email": email}, changed_at=changed_at)

    def classify(self, error: Exception) -> ConnectorError:
        return classify(error)

    def sandbox(self) -> Sandbox:
        """A fresh org emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.salesforce.sandbox.app import SalesforceSandbox

        return SalesforceSandbox()

    def _client(self, ctx: Context) -> RestClient:
        return RestClient(_settings(ctx), ctx.http, self._sessions, self._usage)

    def _current(self, ctx: Context, sobject: str, record_id: str) -> dict[str, Any] | None:
        """The record as it is now, or None when it is gone."""
        client = self._client(ctx)
        path = f"/sobjects/{quote(sobject, safe='')}/{quote(record_id, safe='')}"
        response = client.request("GET", client.data_path(path), allow=frozenset({404}))
        if response.status_code == 404:
            return None
        current: dict[str, Any] = decode(response)
        return current


__all__ = ["SalesforceConnector", "SalesforceSettings"]
