"""The Store protocol: all durable state of the hub behind one interface, two backends.

SQLite is the embedded default (one node, one file); Redis is shared by horizontally scaled
workers. Both pass the same conformance suite (tests/test_store_conformance.py). Every method is
safe to call from many threads (and, for Redis and SQLite-in-WAL, many processes) at once; the
methods documented as *atomic* must stay correct under that concurrency.

Records are msgspec Structs; ``dict`` fields hold JSON-ready builtins.
"""

from typing import Any, Literal, Protocol

import msgspec
from crossledger.canonical.entities import ENTITY_TYPES, Entity

InboxStatus = Literal["new", "pending", "duplicate"]
# sent: the call is under way (or its worker died); ambiguous: no answer after sending, it may have
# landed; failed: the target answered that it did not; acknowledged: done, with the target's id.
DeliveryStatus = Literal["sent", "acknowledged", "ambiguous", "failed"]
CircuitStatus = Literal["closed", "open"]
DeadLetterState = Literal["open", "replayed", "discarded"]


class InboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    source_event_id: str
    correlation_id: str
    received_at: float
    payload: dict[str, Any]
    enqueued: bool


class LoggedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One canonical event as ingested: the replay source."""

    id: str
    type: str
    source: str
    subject: str
    correlation_id: str
    occurred_at: float
    envelope: dict[str, Any]


class Golden(msgspec.Struct, frozen=True, kw_only=True):
    canonical_id: str
    entity_type: str
    version: int
    data: dict[str, Any]
    source_event_id: str | None = None  # which inbound event wrote it (to tell ties apart)

    def entity(self) -> Entity:
        """The record as the canonical entity it holds."""
        return msgspec.convert(self.data, ENTITY_TYPES[self.entity_type])


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    status: DeliveryStatus
    external_id: str | None
    updated_at: float


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    created_at: float
    actor: str
    target: str | None
    category: str
    reason: str
    event_id: str | None
    correlation_id: str | None
    message: dict[str, Any]
    attempts: int
    state: DeadLetterState = "open"
    # Set when an operator discards the letter: when, and why it needs no delivery.
    discarded_at: float | None = None
    discard_reason: str | None = None


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    correlation_id: str
    step: str
    status: str
    system: str | None = None
    event_id: str | None = None
    subject: str | None = None
    detail: str | None = None


class Circuit(msgspec.Struct, frozen=True, kw_only=True):
    target: str
    status: CircuitStatus
    failures: int
    opened_at: float | None


JourneyState = Literal["running", "waiting", "completed", "compensating", "compensated", "parked", "cancelled"]
"""running: steps under way; waiting: a step is queued on a system that is down; compensating and
compensated: a step failed and the steps before it are being (or have been) undone; parked: stopped
for an operator; completed and cancelled end it."""
StepStatus = Literal["pending", "running", "queued", "done", "failed", "compensating", "compensated"]
FINISHED: tuple[JourneyState, ...] = ("completed", "compensated", "cancelled")


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a journey run. ``waiting_on``: the systems whose acknowledgement the step awaits."""

    status: StepStatus = "pending"
    waiting_on: list[str] = []
    attempts: int = 0
    detail: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class JourneyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One run of a journey: the unit ``crossledger journeys`` shows, resumes and cancels.

    ``id`` is derived from the journey's name and ``key``, so a trigger seen twice names the same
    run. ``data`` holds the run's inputs and what its steps recorded (JSON values).
    """

    id: str
    name: str
    version: int
    key: str
    subject: str
    state: JourneyState
    correlation_id: str
    started_at: float
    updated_at: float
    steps: dict[str, StepRecord]
    data: dict[str, Any] = {}
    trigger: str | None = None
    finished_at: float | None = None
    reason: str | None = None
    sla_s: float | None = None
    sla_breached: bool = False


OutcomeKind = Literal["delivered", "noop", "conflict", "dead_letter"]
"""What became of an accepted inbound message: its effects were delivered; nothing was to be done
(with the reason); it is held for a person (a conflict); or it was dead-lettered (with its class)."""
LedgerState = Literal["pending", "delivered", "noop", "conflict", "dead_letter"]
OUTCOME_PRECEDENCE: tuple[OutcomeKind, ...] = ("dead_letter", "conflict", "delivered", "noop")
"""How a message's parts add up: the first kind any part has is the message's outcome."""
INGEST_PART = "ingest"
"""The part of a message that is its ingest (a dead-lettered ingest, an event that was no news)."""


class OutcomePart(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one effect of a message: one routed delivery (its ``target``), or its ingest."""

    outcome: OutcomeKind
    target: str | None = None
    reason: str | None = None
    category: str | None = None


class OutcomeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome ledger's entry for one accepted inbound message (its correlation id).

    ``pending`` are the tokens of effects still under way (``target|event id``), ``parts`` what
    became of those settled. While anything is pending the outcome is ``pending``; once nothing is,
    :func:`concluded` decides it from the parts (:data:`OUTCOME_PRECEDENCE`).
    """

    correlation_id: str
    source: str
    received_at: float
    updated_at: float
    outcome: LedgerState = "pending"
    reason: str | None = None
    category: str | None = None
    targets: list[str] = []
    pending: list[str] = []
    parts: dict[str, OutcomePart] = {}


def concluded(record: OutcomeRecord, now: float) -> OutcomeRecord:
    """``record`` with its outcome decided, if nothing is pending: a dead letter in any part makes
    the message a dead letter with that part's class and reason; else a conflict; else delivered
    (to the targets whose parts were, with what those deliveries deliberately withheld, if anything);
    else a no-op with the reasons of its parts."""
    if record.pending:
        return msgspec.structs.replace(record, outcome="pending", reason=None, category=None, targets=[],
                                       updated_at=now)
    parts = [record.parts[token] for token in sorted(record.parts)]
    kind = next((kind for kind in OUTCOME_PRECEDENCE if any(part.outcome == kind for part in parts)), "noop")
    deciding = [part for part in parts if part.outcome == kind]
    reasons = list(dict.fromkeys(part.reason for part in deciding if part.reason))
    targets = sorted({part.target for part in deciding if part.target}) if kind == "delivered" else []
    return msgspec.structs.replace(
        record, outcome=kind, targets=targets, updated_at=now,
        reason="; ".join(reasons) or None,
        category=deciding[0].category if kind in ("dead_letter", "conflict") and deciding else None)


def settled(record: OutcomeRecord, token: str, part: OutcomePart | None, follow_ons: list[str], now: float, *,
            amend: bool = False) -> OutcomeRecord | None:
    """``record`` with ``token`` settled as ``part`` and ``follow_ons`` pending in its place; None when
    ``token`` is not pending (settled before: a redelivered message, or not one of this message's
    effects). With ``amend``, a token already settled is settled again (``part`` None: pending again,
    a dead letter replayed)."""
    if token not in record.pending and not (amend and token in record.parts):
        return None
    pending = [other for other in record.pending if other != token]
    parts = {other: value for other, value in record.parts.items() if other != token}
    if part is None:
        pending.append(token)
    else:
        parts[token] = part
    pending += [other for other in follow_ons if other not in parts and other not in pending]
    return concluded(msgspec.structs.replace(record, pending=pending, parts=parts), now)


def replaces(existing: OutcomeRecord | None) -> bool:
    """Whether :meth:`Store.outcome_open` may replace ``existing``: a pending entry (the ingest ran
    again after a crash, and sends its deliveries again) or a dead letter or conflict (replayed); not
    a delivered or no-op one (a redelivered ingest finds the record as it left it: no news)."""
    return existing is None or existing.outcome in ("pending", "dead_letter", "conflict")


class Store(Protocol):
    # -- inbox: ingress dedupe by source event id -------------------------------------------------
    def inbox_add(self, source: str, source_event_id: str, payload: dict[str, Any],
                  correlation_id: str, received_at: float) -> InboxStatus:
        """*Atomic.* Record an inbound event. ``new``: first time (stored, not yet enqueued);
        ``pending``: seen before but never marked enqueued (the caller enqueues it again);
        ``duplicate``: already enqueued (the caller drops it)."""

    def inbox_mark_enqueued(self, source: str, source_event_id: str) -> None: ...

    def inbox_get(self, source: str, source_event_id: str) -> InboxEntry | None: ...

    # -- event log: every canonical event ingested ------------------------------------------------
    def log_event(self, event: LoggedEvent) -> None:
        """Append (idempotent by ``event.id``)."""

    def get_event(self, event_id: str) -> LoggedEvent | None: ...

    def events(self, *, source: str | None = None, type: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1000) -> list[LoggedEvent]:
        """Logged events matching every given filter (``since`` and ``until`` inclusive), oldest
        ``occurred_at`` first, ties by id."""

    # -- golden records: latest canonical state per entity ------------------------------------------
    def golden_get(self, canonical_id: str) -> Golden | None: ...

    def golden_put(self, record: Golden) -> bool:
        """*Atomic.* Store unless a record with a higher version exists; False when stale.
        An equal version overwrites (the same event seen again)."""

    # -- cross-references: canonical id <-> each system's id ---------------------------------------
    def xref_put(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        """Link both ways; the latest link wins: it replaces the record's previous id in ``system`` and
        any other record's link to ``external_id``."""

    def xref_get(self, canonical_id: str, system: str) -> str | None: ...

    def xref_find(self, entity_type: str, system: str, external_id: str) -> str | None:
        """The canonical id that ``system`` knows as ``external_id`` for this entity type."""

    def xrefs(self, canonical_id: str) -> dict[str, str]:
        """Every system's id for the canonical record."""

    # -- applied versions: drop stale out-of-order updates per (target, entity) -------------------
    def applied_version(self, target: str, canonical_id: str) -> int | None: ...

    def set_applied_version(self, target: str, canonical_id: str, version: int) -> None:
        """*Atomic.* Keep the maximum of the stored and the given version."""

    # -- delivery states: effect-level idempotency ---------------------------------------------------
    def delivery_get(self, key: str) -> Delivery | None: ...

    def delivery_set(self, key: str, status: DeliveryStatus, external_id: str | None = None) -> None: ...

    # -- dead letters -----------------------------------------------------------------------------
    def dlq_add(self, letter: DeadLetter) -> None: ...

    def dlq_get(self, letter_id: str) -> DeadLetter | None: ...

    def dlq_list(self, *, state: DeadLetterState | None = "open", category: str | None = None,
                 target: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""

    def dlq_set_state(self, letter_id: str, state: DeadLetterState) -> bool:
        """*Atomic.* Move an open letter to ``replayed``/``discarded``; False if it was not open
        (so two operators replaying at once replay it once)."""

    def dlq_count(self, state: DeadLetterState = "open") -> int: ...

    # -- audit timeline ---------------------------------------------------------------------------
    def audit(self, *records: AuditRecord) -> None:
        """Append the records, in one round trip."""

    def audit_trail(self, correlation_id: str) -> list[AuditRecord]:
        """Oldest first."""

    def audit_for_subject(self, subject: str) -> list[AuditRecord]:
        """Oldest first; every record whose subject is the given canonical id."""

    # -- circuit breakers, shared by every worker --------------------------------------------------
    def circuit_get(self, target: str) -> Circuit:
        """A target never seen is closed with no failures."""

    def circuit_failure(self, target: str, threshold: int, now: float) -> Circuit:
        """*Atomic.* Count one failure; open the circuit (opened_at=now) at ``threshold``. An open
        circuit keeps its opened_at."""

    def circuit_close(self, target: str) -> None:
        """Reset to closed with no failures."""

    def circuit_reopen(self, target: str, now: float) -> None:
        """Keep it open from ``now`` (a probe while open failed)."""

    # -- parked work: messages held while a target's circuit is open -------------------------------
    def park(self, target: str, message: dict[str, Any]) -> None: ...

    def parked(self, target: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` parked messages with their ids, oldest first, left in place: a caller
        re-enqueues them and only then calls :meth:`unpark`, so a crash in between re-sends (the
        deliveries are idempotent) instead of losing them."""

    def unpark(self, target: str, ids: list[str]) -> int:
        """*Atomic.* Remove these parked messages; how many were still there."""

    def parked_count(self, target: str) -> int: ...

    # -- leases: per-entity serialization across workers -----------------------------------------
    def lock_acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        """*Atomic.* Take the lease on ``key`` for ``owner`` if it is free or its holder's ttl ran out
        (a crashed holder); False while someone else holds it."""

    def lock_release(self, key: str, owner: str) -> None:
        """*Atomic.* Give the lease back, only if ``owner`` still holds it."""

    # -- journeys -------------------------------------------------------------------------------
    def journey_start(self, record: JourneyRecord) -> bool:
        """*Atomic.* Store a new run unless one with its id exists; False when it does (the same
        trigger seen again)."""

    def journey_put(self, record: JourneyRecord) -> None:
        """Replace the stored run (the caller holds the run's lease)."""

    def journey_get(self, journey_id: str) -> JourneyRecord | None: ...

    def journeys(self, *, name: str | None = None, state: JourneyState | None = None, subject: str | None = None,
                 limit: int = 100) -> list[JourneyRecord]:
        """Runs matching every given filter, most recently started first."""

    # -- poll cursors -----------------------------------------------------------------------------
    def cursor_get(self, name: str) -> str | None: ...

    def cursor_set(self, name: str, value: str) -> None: ...

    # -- lifecycle --------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise if the backing service cannot be reached."""

    def reset(self) -> None:
        """Delete everything this store holds (tests and the demo)."""

    def close(self) -> None: ...

    # -- the outcome ledger: one outcome per accepted inbound message ------------------------------
    def outcome_open(self, record: OutcomeRecord) -> bool:
        """*Atomic.* Store a message's entry (concluded at once if nothing is pending), unless
        :func:`replaces` says the existing one stays; whether it was stored."""

    def outcome_settle(self, correlation_id: str, token: str, part: OutcomePart | None,
                       follow_ons: list[str] | None = None, *, amend: bool = False) -> OutcomeRecord | None:
        """*Atomic.* Settle one pending effect (:func:`settled`): the entry as it now is, or None
        when nothing changed (``token`` was not pending, or there is no entry)."""

    def outcome_get(self, correlation_id: str) -> OutcomeRecord | None: ...

    def outcomes(self, *, outcome: LedgerState | None = None, source: str | None = None,
                 limit: int = 100) -> list[OutcomeRecord]:
        """Entries matching every given filter, most recently received first."""

    def outcome_counts(self) -> dict[tuple[LedgerState, str], int]:
        """How many entries are in each state, by (state, source)."""

    # -- discarding dead letters ------------------------------------------------------------------
    def dlq_discard(self, letter_id: str, reason: str, at: float) -> bool:
        """*Atomic.* Close an open letter as ``discarded``, recording ``reason`` and ``at`` in it;
        False if it was not open (already replayed or discarded, or no such letter)."""

    # -- messages in flight: every message sent to the broker and not yet settled ----------------
    def inflight_put(self, message_id: str, message: dict[str, Any], due_at: float) -> None:
        """Record ``message`` (again: a retry, or sent again by the recovery sweep) as due to be
        worked on at ``due_at`` (Unix seconds)."""

    def inflight_settle(self, message_id: str) -> None:
        """The message has its outcome: forget it (nothing happens if it is not recorded)."""

    def inflight_overdue(self, before: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` recorded messages due before ``before``, with their ids, longest overdue first."""

    def inflight_count(self) -> int: ...
