"""The Connector protocol: what a system's plugin implements.

A connector is a plain object, stateless between calls: everything it needs at run time arrives in
a :class:`~crossledger.plugins.types.Context` (validated settings, an HTTP client, a clock). The
hub calls it from many worker threads and processes at once.

Inbound::

    verify_webhook -> parse_webhook -> to_canonical          (push systems)
    poll(cursor) -> to_canonical                             (pull systems)
    records(entity type)                                     (every record, paging: reconciliation)

Outbound::

    plan(event) -> [Operation] -> execute(op, key) -> Outcome
                                  probe(op, key)   -> Outcome | None   (after an ambiguous outcome)

:class:`BaseConnector` gives every optional method a default that says "not supported", so a
connector implements only its capabilities.
"""

from collections.abc import Iterator
from typing import Any, ClassVar, Protocol, runtime_checkable

from crossledger.canonical import Envelope
from crossledger.plugins.errors import Category, ConnectorError, described
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
    InboundEvent,
    Operation,
    Outcome,
    PollResult,
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

    def classify(self, error: Exception) -> ConnectorError:
        """Map any failure from this connector's calls onto the taxonomy."""

    def sandbox(self) -> Sandbox:
        """A fresh in-memory emulator of the system."""


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

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        raise NotSupported(self.name, "webhooks")

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        raise NotSupported(self.name, "webhooks")

    def webhook_reply(self, events: list[InboundEvent]) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"received": true}'

    def webhook_error(self, status: int, message: str) -> tuple[int, str, bytes] | None:
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

    def classify(self, error: Exception) -> ConnectorError:
        if isinstance(error, ConnectorError):
            return error
        return ConnectorError(Category.TRANSIENT, described(error))

    def sandbox(self) -> Sandbox:
        raise NotSupported(self.name, "a sandbox")
