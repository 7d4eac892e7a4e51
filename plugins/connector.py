"""The Connector protocol: what a system's plugin implements.

A connector is a plain object, stateless between calls: everything it needs at run time arrives in
a :class:`~crossledger.plugins.types.Context` (validated settings, an HTTP client, a clock). The
hub calls it from many worker threads and processes at once.

Inbound::

    verify_webhook -> parse_webhook -> to_canonical          (push systems)
    webhook_handshake(query, headers, body)                  (optional, AnswersHandshakes: an endpoint check)
    poll(cursor) -> to_canonical                             (pull systems)
    records(entity type) -> project(record)                  (every record, paging: reconciliation)
    records_page(entity type, cursor, since) -> Page         (optional, ListsPages: one page, changed since)
    recover(entity type, id)                                 (the event a dropped webhook would have carried)

Outbound::

    plan(event) -> [Operation] -> execute(op, key) -> Outcome
                                  probe(op, key)   -> Outcome | None   (after an ambiguous outcome)

:class:`BaseConnector` gives every optional method a default that says "not supported", so a
connector implements only its capabilities.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from crossledger.canonical import ContractTerms, Envelope
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, described
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
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


@runtime_checkable
class Connector(Protocol):
    # What a connector is, declared on its class.
    name: ClassVar[str]
    kind: ClassVar[SystemKind]
    version: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    settings_model: ClassVar[type[BaseModel]]
    #: The canonical entity types ``records`` lists and ``project`` reads (with ``Capability.LIST``).
    lists: ClassVar[frozenset[str]]

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Raise SignatureError unless the body was signed by the system with our secret."""

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """Split a verified body into events; raise PayloadError when it is not the system's format."""

    def webhook_reply(self, events: list[InboundEvent]) -> tuple[int, str, bytes]:
        """The (status, content type, body) the system expects once its events are accepted."""

    def webhook_error(self, status: int, message: str) -> tuple[int, str, bytes] | None:
        """The refusal in the system's own shape (a SOAP fault, say); None for the hub's JSON error."""

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """Translate one inbound event into canonical changes (none when the hub does not care)."""

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event with its object read again from the system (replay after a fix at the source)."""

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        """The writes that bring this system in line with the event; raise MissingDependency."""

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """Perform one write, using the system's own idempotency mechanism with ``idempotency_key``."""

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """Read back whether ``op`` already took effect (after a timeout); None when it did not."""

    def poll(self, ctx: Context, cursor: str | None) -> PollResult:
        """Changes since ``cursor`` (pull systems)."""

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """One record in the system's own JSON form (enrichment and reconciliation)."""

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a canonical entity type, in the system's own JSON form, following the
        system's pagination (``page_size`` records a request, the system's default when None)."""

    def contract_terms(self, ctx: Context, customer_id: str) -> ContractTerms:
        """The contract terms the system holds on its customer ``customer_id`` (a CRM's account):
        what the subscription journey enriches a subscription with. Part of ``FETCH``."""

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """A listed record as reconciliation compares it; None for one outside the books (a draft,
        a deleted record the list still shows)."""

    def recover(self, ctx: Context, entity_type: str, external_id: str) -> InboundEvent:
        """The inbound event that brings the record in as it is now, as if the system's webhook for it
        had arrived (one that was dropped); its source event id is stable for the same record state, so
        recovering twice is admitted once."""

    def classify(self, error: Exception) -> ConnectorError:
        """Map any failure from this connector's calls onto the taxonomy."""

    def sandbox(self) -> Sandbox:
        """A fresh in-memory emulator of the system."""


@runtime_checkable
class ReadsJsonWebhooks(Protocol):
    """Optional for a connector whose webhooks are JSON: it takes the body as the hub decoded it.

    The hub decodes a JSON body once, to check that it can travel through the hub (nesting, 64-bit
    integers), before any connector reads it; a connector with this method is handed that document,
    verified and checked, instead of the bytes to :meth:`Connector.parse_webhook`, so the body is
    not decoded twice. ``parse_webhook`` stays: the hub calls it for a body of another media type.
    """

    def parse_webhook_json(self, ctx: Context, headers: Headers, document: Any) -> list[InboundEvent]:
        """Split a verified, decoded JSON body into events; raise PayloadError or SchemaError as
        :meth:`Connector.parse_webhook` does."""


@runtime_checkable
class TakesSomeEvents(Protocol):
    """Optional for a connector that writes only some canonical event types: a route carries to it
    only those (routes name roles, so a route to "the ERP" leaves out an ERP that keeps no refunds,
    and that gap shows in ``crossledger policy``). A journey's write is not a route: it still
    reaches the connector, whose ``plan`` answers it with nothing to do.

    Kept apart from :class:`Connector` like :class:`AnswersHandshakes`; without it, a connector is
    routed every event type its routes name."""

    takes: ClassVar[frozenset[str]]


@runtime_checkable
class ListsPages(Protocol):
    """Optional for a ``Capability.LIST`` connector: its listing one page at a time, resumable from
    a page's cursor, and filtered by the system itself to the records changed since a moment.

    Reconciliation reads through this when a connector has it: an incremental run asks for what
    changed since its last run (``since``, a UTC datetime) for the entity types in ``lists_since``,
    and keeps each page's ``next`` with the run, so a run that stops resumes at the page after the
    last it finished. A connector without it (one written before it) is listed with
    :meth:`Connector.records`, in full on every run, and a stopped run reads it again from its
    start. Kept apart from :class:`Connector` like :class:`AnswersHandshakes`."""

    #: The entity types whose listing the system filters by "changed since" (a NetSuite
    #: ``lastmodifieddate``, a Salesforce ``SystemModstamp``, Stripe's events since). Any other is
    #: listed in full whatever ``since`` says: a filter by creation time alone does not count, since
    #: an edit or a payment moves no creation time.
    lists_since: ClassVar[frozenset[str]]

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """The page of ``entity_type`` records that starts at ``cursor`` (the first page when None),
        ``page_size`` records or the system's default, in the system's own JSON form as
        :meth:`Connector.records` yields them. With ``since`` (for a type in ``lists_since``), only
        the records the system changed (or made) at or after it, by the system's own filter: a
        record changed in the very second ``since`` falls in must be listed. A record may appear on
        two pages (a time-based export repeats the records of its boundary second); reconciliation
        keeps the last."""


def all_records(connector: ListsPages, ctx: Context, entity_type: str, *, page_size: int | None = None,
                since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every record :meth:`ListsPages.records_page` lists, page after page: a built-in connector's
    :meth:`Connector.records`."""
    cursor: str | None = None
    while True:
        page = connector.records_page(ctx, entity_type, cursor=cursor, since=since, page_size=page_size)
        yield from page.records
        if page.next is None:
            return
        cursor = page.next


@runtime_checkable
class AnswersHandshakes(Protocol):
    """Optional for a connector whose system checks the webhook endpoint before sending to it.

    Kept apart from :class:`Connector` so a connector written before it (and not built on
    :class:`BaseConnector`) still satisfies the protocol; the hub asks ``isinstance`` first."""

    def webhook_handshake(self, query: Mapping[str, str], headers: Headers,
                          body: bytes) -> tuple[int, str, bytes] | None:
        """The answer to a request that is the system checking the webhook endpoint rather than
        delivering events (Business Central POSTs ``?validationToken=...`` and wants the token
        back), or None when the request is an ordinary delivery. Called before the signature is
        checked: such a request carries none."""


def json_body(body: bytes) -> Any:
    """A webhook body decoded as JSON, for a :class:`ReadsJsonWebhooks` connector's
    ``parse_webhook`` to hand to its ``parse_webhook_json``; :class:`PayloadError` if it is not JSON."""
    try:
        return json.loads(body)
    except ValueError as error:
        raise PayloadError(f"body is not JSON: {error}") from error


class NotSupported(ConnectorError):
    def __init__(self, connector: str, what: str) -> None:
        super().__init__(Category.DATA, f"connector {connector!r} does not support {what}")


class BaseConnector:
    """Defaults for the optional parts of :class:`Connector`. Subclass and fill in what you support."""

    name: ClassVar[str]
    kind: ClassVar[SystemKind]
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    settings_model: ClassVar[type[BaseModel]]
    #: The media types (``application/json``) a webhook body may declare; any other is refused with
    #: 415 before the body is read. Empty: any. A request without a Content-Type is always read.
    webhook_media_types: ClassVar[frozenset[str]] = frozenset()
    lists: ClassVar[frozenset[str]] = frozenset()

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        raise NotSupported(self.name, "webhooks")

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        raise NotSupported(self.name, "webhooks")

    def webhook_reply(self, events: list[InboundEvent]) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"received": true}'

    def webhook_error(self, status: int, message: str) -> tuple[int, str, bytes] | None:
        return None

    def webhook_handshake(self, query: Mapping[str, str], headers: Headers,
                          body: bytes) -> tuple[int, str, bytes] | None:
        """:meth:`AnswersHandshakes.webhook_handshake`: by default, no request is a handshake."""
        return None

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        return []

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        raise NotSupported(self.name, "refetching an event's object")

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        raise NotSupported(self.name, "delivery")

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        raise NotSupported(self.name, "delivery")

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        raise NotSupported(self.name, "probe")

    def poll(self, ctx: Context, cursor: str | None) -> PollResult:
        raise NotSupported(self.name, "polling")

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        raise NotSupported(self.name, "fetch")

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        raise NotSupported(self.name, "listing records")

    def contract_terms(self, ctx: Context, customer_id: str) -> ContractTerms:
        raise NotSupported(self.name, "contract terms")

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        raise NotSupported(self.name, "reconciliation")

    def recover(self, ctx: Context, entity_type: str, external_id: str) -> InboundEvent:
        raise NotSupported(self.name, "recovering a record's event")

    def classify(self, error: Exception) -> ConnectorError:
        if isinstance(error, ConnectorError):
            return error
        return ConnectorError(Category.TRANSIENT, described(error))

    def sandbox(self) -> Sandbox:
        raise NotSupported(self.name, "a sandbox")
