"""The event envelope: one canonical fact about one entity, with where it came from and why.

Types are dotted and past tense (``invoice.issued``). ``correlation_id`` follows one business
transaction across every system and step; ``causation_id`` names the event that caused this one.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from crossledger.canonical.entities import Entity
from crossledger.canonical.versions import CURRENT_VERSIONS, VersionError, upcast

EventType = str


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: EventType
    version: int
    source: str
    source_event_id: str
    occurred_at: datetime
    received_at: datetime
    correlation_id: str
    causation_id: str | None
    subject: str
    data: Entity


def now() -> datetime:
    return datetime.now(UTC)


def new_envelope(
    *,
    type: EventType,
    source: str,
    source_event_id: str,
    data: Entity,
    occurred_at: datetime,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    id: str | None = None,
    received_at: datetime | None = None,
) -> Envelope:
    """An envelope at the current version of ``type``.

    Pass ``id`` to make it deterministic (the hub derives it from the source event, so ingesting
    the same source event twice yields the same envelope); otherwise it is new. The correlation id
    defaults to the envelope id.
    """
    if type not in CURRENT_VERSIONS:
        raise VersionError(f"unknown event type {type!r}")
    event_id = id or uuid.uuid4().hex
    return Envelope(
        id=event_id,
        type=type,
        version=CURRENT_VERSIONS[type],
        source=source,
        source_event_id=source_event_id,
        occurred_at=occurred_at,
        received_at=received_at or now(),
        correlation_id=correlation_id or event_id,
        causation_id=causation_id,
        subject=data.id,
        data=data,
    )


def encode_envelope(envelope: Envelope) -> dict[str, Any]:
    """The envelope as JSON-ready builtins (what travels inside a Dramatiq message)."""
    return msgspec.to_builtins(envelope)  # type: ignore[no-any-return]


def decode_envelope(raw: dict[str, Any]) -> Envelope:
    """Upcast an envelope dict to the current version and validate it into an :class:`Envelope`."""
    if raw.get("version") != CURRENT_VERSIONS.get(raw.get("type", "")):
        raw = upcast(dict(raw))
    return msgspec.convert(raw, Envelope)
