"""The Store protocol: all durable state of the hub behind one interface, two backends.

SQLite is the embedded default (one node, one file); Redis is shared by horizontally scaled
workers. Both pass the same conformance suite (tests/test_store_conformance.py). Every method is
safe to call from many threads (and, for Redis and SQLite-in-WAL, many processes) at once; the
methods documented as *atomic* must stay correct under that concurrency.

Records are msgspec Structs; ``dict`` fields hold JSON-ready builtins.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, Protocol, TypeVar

import msgspec
from crossledger.canonical.entities import ENTITY_TYPES, Entity
from crossledger.core.telemetry import metrics

R = TypeVar("R")

encode_json = msgspec.json.Encoder().encode
"""msgspec JSON, by an encoder built once (the backends encode every record they write)."""
decode_json = msgspec.json.Decoder().decode
"""Untyped JSON (a message, a parked delivery), by a decoder built once."""


_DECODERS: dict[Any, Any] = {}


def decoder(cls: type[R]) -> msgspec.json.Decoder[R]:
    """The JSON decoder of ``cls`` records, built on first use and kept (a race builds two: harmless)."""
    found: msgspec.json.Decoder[R] | None = _DECODERS.get(cls)
    if found is None:
        found = _DECODERS[cls] = msgspec.json.Decoder(cls)
    return found


Read = tuple[str, tuple[Any, ...]]
"""One read of :meth:`Store.read`: a read method's name and its arguments."""

InboxStatus = Literal["new", "pending", "duplicate"]
# An operation's state: ambiguous: no answer after sending, it may have landed; failed: the target
# answered that it did not; acknowledged: done, with the target's id. A delivery's attempt mark
# (Store.read's ``attempt``): sent: an attempt is under way (or its worker died); failed: the attempts
# so far ended, each operation they sent with its state; acknowledged: delivered.
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


def inbox_entry(source: str, source_event_id: str, payload: dict[str, Any], correlation_id: str,
                received_at: float, *, enqueued: bool, received: "AuditRecord | None") -> InboxEntry:
    """The entry :meth:`Store.inbox_add` writes, once the audit record of the event's receipt is
    checked: a receipt is about no subject yet (nothing has translated the event)."""
    if received is not None and received.subject is not None:
        raise ValueError("the audit record of an event's receipt is about no subject yet")
    return InboxEntry(source=source, source_event_id=source_event_id, correlation_id=correlation_id,
                      received_at=received_at, payload=payload, enqueued=enqueued)


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
    # An operation's count of definite failures: which idempotency key its next call sends (see
    # crossledger.core.hub.pipeline.wire_key). 0 for a record of an earlier release, and for a mark.
    generation: int = 0


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

    ``subjects`` says what the message is about, so a reader of many entries (the console's KPIs)
    needs no audit trail: the canonical ids (``invoice/stripe/in_1``: each starts with its entity
    type) of the changes its ingest made of the source's event, in order, news or not, or of the
    record a reconciliation's repair delivers. Empty: about no record the hub keeps (an event the
    hub does not sync). None: not known when the entry was written (a dead-lettered ingest's
    changes died with it; an earlier release did not record it); the audit trail still says. It
    rides in the entry's own write (the ingest's open), so it costs no round trip.
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
    subjects: list[str] | None = None


def hour_of(at: float) -> int:
    """The start of the UTC hour ``at`` falls in, in epoch seconds."""
    return int(at // 3600) * 3600


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


KEPT_ON_OPEN: tuple[LedgerState, ...] = ("delivered", "noop")
"""The states of an entry that :meth:`Store.outcome_open` leaves as they are (see :func:`replaces`)."""


def replaces(existing: OutcomeRecord | None, record: OutcomeRecord) -> bool:
    """Whether :meth:`Store.outcome_open` may replace ``existing`` with ``record``: a dead letter or
    conflict (replayed), or a pending entry when the ingest ran again and sends its deliveries again;
    not a delivered or no-op one (a redelivered ingest finds the record as it left it: no news), nor
    a pending one by an open that sends nothing: an ingest run again after its commit (a worker
    killed before the broker's ack, a message sent again) finds no news, and its deliveries, under
    way, must still settle the entry they belong to."""
    if existing is None:
        return True
    return existing.outcome not in KEPT_ON_OPEN and not (existing.outcome == "pending" and not record.pending)


class StoredRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the store keeps about one canonical record, read for many records at once
    (:meth:`Store.records_get`): its golden record, each system's id of it, its audit records
    (oldest first) and its most recently started journey run."""

    canonical_id: str
    golden: Golden | None = None
    xrefs: dict[str, str] = {}
    audit: list[AuditRecord] = []
    journey: JourneyRecord | None = None


SEARCHED_FIELDS = ("name", "email")
"""The fields of a golden record the store indexes for :meth:`Store.golden_named`."""


def search_terms(data: dict[str, Any]) -> list[str]:
    """The index terms of a golden record: the casefolded words of its :data:`SEARCHED_FIELDS`, and
    each email whole and its domain (so ``ann@acme.example`` is found by ``ann``, ``acme``,
    ``acme.example`` or ``ann@acme``). A query matches a record when each of its words starts one
    of its terms (:func:`query_words`)."""
    terms: set[str] = set()
    for name in SEARCHED_FIELDS:
        value = data.get(name)
        if isinstance(value, str):
            folded = value.casefold()
            terms.update(re.findall(r"\w+", folded))
            if "@" in folded:
                email = "".join(folded.split())
                terms.update((email, email.rpartition("@")[2]))
    return sorted(term for term in terms if term)


def query_words(query: str) -> list[str]:
    """The words of a search by name or email, casefolded: each must start a term of a record found."""
    return list(dict.fromkeys(query.casefold().split()))


class RoundTrips:
    """How many round trips a store made (``crossledger_store_round_trips_total{store}`` too): what
    the hot path is measured by, since each costs a network or disk wait and the server's CPU.

    A Redis command or pipeline sent and answered is one (a retry after a reconnect is another); an
    SQLite statement outside a transaction, or a whole transaction, is one."""

    def __init__(self, store: str) -> None:
        self._metric = metrics.store_round_trips.labels(store)
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1
        self._metric.inc()


OutcomeChange = Callable[[OutcomeRecord | None], OutcomeRecord | None]
"""A change to one outcome ledger entry: the entry as it is (None: there is none) to the entry to
write, or None to leave it as it is. Applied atomically: the entry cannot change in between."""


def opening(record: OutcomeRecord) -> OutcomeChange:
    """:meth:`Store.outcome_open` as a change: ``record``, concluded, unless the existing entry stays."""
    return lambda existing: concluded(record, time.time()) if replaces(existing, record) else None


def settling(token: str, part: OutcomePart | None, follow_ons: list[str] | None = None, *,
             amend: bool = False) -> OutcomeChange:
    """:meth:`Store.outcome_settle` as a change."""
    return lambda record: None if record is None else settled(record, token, part, follow_ons or [], time.time(),
                                                              amend=amend)


DECISIONS = frozenset({"golden_put", "log_event"})
"""The writes of a unit that a failed message leaves to its retry (:meth:`Unit.failed`)."""


class Unit:
    """A unit of work: what handling one message decided, committed by :meth:`Store.commit` in one
    round trip, all or none.

    Collected are writes whose result nobody waits for, in order, and at most one change to an
    outcome ledger entry, applied atomically with them (its result in :attr:`entry` once
    committed). A decision that must be taken first (``inbox_add``, ``lock_acquire``) runs at once.
    Reads do not see a unit's writes until it is committed. The methods mean what the
    :class:`Store` methods of the same name mean.
    """

    def __init__(self) -> None:
        self.writes: list[tuple[str, tuple[Any, ...]]] = []
        self.ledger: tuple[str, OutcomeChange] | None = None
        self.opening: OutcomeRecord | None = None
        """The entry :meth:`outcome_open` opens (a change a backend may apply without reading first)."""
        self.entry: OutcomeRecord | None = None
        """After the commit: the ledger entry as the unit wrote it, None when it left it as it was."""
        self.links: dict[tuple[str, str], str | None] = {}
        """(canonical id, system) -> external id: the cross-references this unit links, and those its
        message read (:class:`~crossledger.core.hub.refs.StoreRefs`), as they will be once committed."""
        self.found: dict[tuple[str, str, str], str | None] = {}
        """(entity type, system, external id) -> canonical id: the lookups its message read ahead
        (:meth:`~crossledger.core.hub.refs.StoreRefs.prefetch`)."""

    def __bool__(self) -> bool:
        return bool(self.writes) or self.ledger is not None

    def failed(self) -> None:
        """What is left to commit of a message that failed: its audit records, the leases it
        releases, and what it recorded of the calls it made (delivery states, cross-references); not
        its decisions (the golden record merged, the event logged, its outcome ledger change), which
        its retry takes again. Were the golden record kept, the retry would find the record as it
        left it and conclude "no news": the change would reach no target."""
        self.writes = [write for write in self.writes if write[0] not in DECISIONS]
        self.ledger = self.opening = None

    def outcome_open(self, record: OutcomeRecord) -> None:
        self._change(record.correlation_id, opening(record))
        self.opening = record

    def outcome_settle(self, correlation_id: str, token: str, part: OutcomePart | None,
                       follow_ons: list[str] | None = None) -> None:
        self._change(correlation_id, settling(token, part, follow_ons))

    def _change(self, correlation_id: str, change: OutcomeChange) -> None:
        if self.ledger is not None:
            raise ValueError("a unit of work changes one outcome ledger entry at most")
        self.ledger = (correlation_id, change)

    def audit(self, *records: AuditRecord) -> None:
        if records:
            self.writes.append(("audit", records))

    def log_event(self, event: LoggedEvent) -> None:
        self.writes.append(("log_event", (event,)))

    def golden_put(self, record: Golden) -> None:
        """Stored unless a newer version is (the caller, holding the record's lease, read it first)."""
        self.writes.append(("golden_put", (record,)))

    def xref_put(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        self.writes.append(("xref_put", (canonical_id, entity_type, system, external_id)))
        self.links[canonical_id, system] = external_id

    def set_applied_version(self, target: str, canonical_id: str, version: int) -> None:
        self.writes.append(("set_applied_version", (target, canonical_id, version)))

    def delivery_set(self, key: str, status: DeliveryStatus, external_id: str | None = None,
                     generation: int = 0) -> None:
        self.writes.append(("delivery_set", (key, status, external_id, generation)))

    def inbox_mark_enqueued(self, source: str, source_event_id: str) -> None:
        self.writes.append(("inbox_mark_enqueued", (source, source_event_id)))

    def dlq_add(self, letter: DeadLetter) -> None:
        self.writes.append(("dlq_add", (letter,)))

    def inflight_put(self, message_id: str, message: dict[str, Any], due_at: float) -> None:
        self.writes.append(("inflight_put", (message_id, message, due_at)))

    def park(self, target: str, message: dict[str, Any]) -> None:
        self.writes.append(("park", (target, message)))

    def inflight_settle(self, message_id: str) -> None:
        self.writes.append(("inflight_settle", (message_id,)))

    def lock_release(self, key: str, owner: str) -> None:
        self.writes.append(("lock_release", (key, owner)))


@contextmanager
def unit_of(store: "Store") -> Iterator[Unit]:
    """:meth:`Store.unit` for any backend: collect, then commit once the block ends without an error."""
    unit = Unit()
    yield unit
    store.commit(unit)


FindingClass = Literal["missing", "duplicate", "orphan", "amount_mismatch", "status_mismatch", "field_drift",
                       "balance"]
RunState = Literal["running", "done", "failed"]


class FindingRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One difference a reconciliation run found between systems (see :mod:`crossledger.core.reconcile`).

    ``id`` is stable across runs for the same difference, so ``first_seen`` carries over and a
    finding's age is how long the systems have disagreed, not when it was last looked at."""

    id: str
    run_id: str
    cls: FindingClass = msgspec.field(name="class")
    entity: str
    subject: str
    #: The system the difference is in (the downstream one; for a balance, the ERP).
    system: str
    #: Each system's record: ``{system: {"id": ..., "values": {...}}}`` (a list of them for a duplicate).
    records: dict[str, Any]
    rule: str
    detail: str
    first_seen: float
    repair: dict[str, Any] | None = None


LISTING_BATCH = 1000
"""How many kept projections ``listing_scan`` reads a round trip."""


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """How far a reconciliation run read one system's records of one entity type, kept with the run
    after every page (:mod:`crossledger.core.reconcile`).

    The projections read are kept in the store under ``generation`` (``listing_put``): a full read
    fills a generation of its own, a read of what changed ``since`` updates the generation of the
    last finished run's read, which it then stands for. ``cursor`` is the connector's cursor of the
    next page, so a run that stops resumes there; ``done`` once the last page was read. ``read_at``:
    when the run that read it started, the moment the generation holds the system as of."""

    generation: str
    read_at: float
    since: float | None = None
    cursor: str | None = None
    done: bool = False


class ReconciliationRun(msgspec.Struct, frozen=True, kw_only=True):
    """One reconciliation run: what it read (``counts``, records by ``system.entity``) and what it found
    (``findings``, by class)."""

    id: str
    started_at: float
    state: RunState = "running"
    finished_at: float | None = None
    since: float | None = None
    counts: dict[str, int] = {}
    findings: dict[str, int] = {}
    error: str | None = None
    #: The comparisons finished (``entity:source``), whose counts and findings are kept: where a run
    #: that stopped before the end is resumed.
    checkpoint: list[str] = []
    #: What the run read of each system (``system.entity``): where its projections are kept and how
    #: far the reading got, page by page (see :class:`Listing`).
    listings: dict[str, Listing] = {}



Role = Literal["viewer", "operator"]
"""What a console user may do: a viewer looks, an operator acts (:mod:`crossledger.core.console`)."""
TriageState = Literal["open", "acknowledged", "resolved", "ignored"]


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A person who signs in to the operator console: the scrypt hash of their password, with its
    salt (hex), never the password itself."""

    name: str
    role: Role
    salt: str
    password_hash: str
    created_at: float
    #: Which of the user's console sessions are valid: a session carries the epoch it was signed in
    #: under, and a new one (at sign-out, or the user added again) revokes every session before it.
    session_epoch: str = ""


class TriageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A person's handling of one item of the exceptions queue (a dead letter, a conflict, a finding),
    known by the item's id (``dead-letter:<id>``, ``finding:<id>``): its state, who has it, the
    notes, and when it was resolved (for the time-to-resolve figure)."""

    id: str
    state: TriageState = "open"
    assignee: str | None = None
    notes: list[dict[str, Any]] = []
    updated_at: float = 0.0
    #: Since when the item has been waiting (its dead letter's time, its finding's first sighting).
    opened_at: float | None = None
    resolved_at: float | None = None


class ActionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a person did in the console, for its audit log: who, when, what, to which item."""

    at: float
    user: str
    action: str
    item: str
    detail: str = ""


class Store(Protocol):
    round_trips: RoundTrips

    # -- units of work ------------------------------------------------------------------------------
    def unit(self) -> AbstractContextManager[Unit]:
        """A :class:`Unit` to collect writes in, committed when the ``with`` block ends (not when an
        exception leaves it)."""

    def commit(self, unit: Unit) -> None:
        """*Atomic.* Apply the unit's writes, in order, in one round trip (a Redis ``MULTI``
        transaction, one SQLite transaction); nothing for an empty unit."""

    def read(self, reads: Sequence[Read], *, lease: tuple[str, str, float] | None = None,
             watch: str | None = None, attempt: str | None = None) -> list[Any] | None:
        """What several reads answer, in their order, in one round trip. Each is a read method's name
        and arguments: ``golden_get``, ``xref_get``, ``xref_find``, ``applied_version``,
        ``delivery_get`` or ``circuit_get``. With ``lease`` (key, owner, ttl_s) the lease is taken first, as
        :meth:`lock_acquire` takes it, and the reads are made under it; None when it is held by
        someone else.

        ``attempt`` is the key of a delivery's attempt mark (a delivery state): *atomically* with
        taking the lease (and only once it is taken; without ``lease``, under one held already), the
        mark becomes ``sent``, and the state it had before (None: never attempted) leads the answers.
        So an attempt is on record before its external call at no round trip of its own, and the next
        attempt knows whether this one died under way.

        ``watch`` names the correlation id of the outcome ledger entry the unit these reads are for
        will change (a delivery's settle): a backend may read the entry now, in the same round trip,
        for this thread's next :meth:`commit` to change it from, atomically still (Redis: ``WATCH``
        here, the commit's transaction fails and is redone if the entry changed in between)."""

    # -- inbox: ingress dedupe by source event id -------------------------------------------------
    def inbox_add(self, source: str, source_event_id: str, payload: dict[str, Any],
                  correlation_id: str, received_at: float,
                  inflight: tuple[str, dict[str, Any], float] | None = None,
                  received: AuditRecord | None = None) -> InboxStatus:
        """*Atomic.* Record an inbound event. ``new``: first time (stored); ``pending``: seen before,
        and not known to be enqueued (the caller enqueues it again); ``duplicate``: seen before and
        enqueued (the caller drops it).

        ``inflight`` (message id, message, due at, as :meth:`inflight_put` takes them) is the message
        that takes a new event on, recorded in flight in the same step; the entry then counts as
        enqueued at once, since should the enqueue never happen, the recovery sweep sends that
        message. A caller whose enqueue fails says so (:meth:`inbox_mark_pending`), so the sender's
        retry enqueues it without waiting for the sweep. Without ``inflight``, a new entry is pending
        until :meth:`inbox_mark_enqueued`. ``received`` is an audit record (about no subject:
        nothing is ingested yet) written with a new entry. So admission is one round trip: the
        entry, its message in flight, its audit record."""

    def inbox_mark_enqueued(self, source: str, source_event_id: str) -> None: ...

    def inbox_mark_pending(self, source: str, source_event_id: str) -> None:
        """The enqueue of a new entry's message failed: the next copy of the event enqueues it."""

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

    def golden_for_customer(self, customer_id: str, *, entity_type: str | None = None,
                            limit: int = 500, offset: int = 0) -> list[Golden]:
        """The golden records whose ``customer_id`` is ``customer_id`` (the customer's subscriptions,
        invoices, payments, entitlements, ...), of ``entity_type`` if given, by canonical id, at most
        ``limit`` after the first ``offset``: what the console's order-to-cash chain is built from,
        a page at a time."""

    def golden_named(self, query: str, *, limit: int = 100) -> list[str]:
        """The canonical ids, in order, of the first ``limit`` golden records (by id) each of whose
        :func:`query_words` starts one of their :func:`search_terms` (words of a name or email):
        an index the store keeps as it writes golden records (:meth:`golden_put`), built for the
        records of an earlier release once (SQLite: when the file is opened; Redis: at the first
        search). The index holds personal data, as the golden records do: it is never logged."""

    # -- batch reads: a page's records in a few round trips (the console) ---------------------------
    def records_get(self, canonical_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """*One round trip.* Each canonical id's :class:`StoredRecord` (an empty one for an id the
        store knows nothing of); SQLite: one query with ``IN`` per kind, in one session; Redis: one
        pipeline."""

    def outcomes_get(self, correlation_ids: Sequence[str]) -> dict[str, OutcomeRecord]:
        """*One round trip.* The outcome ledger entries of those messages that have one."""

    def events_get(self, event_ids: Sequence[str]) -> dict[str, LoggedEvent]:
        """*One round trip.* The logged events of those ids that are logged."""

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

    def delivery_set(self, key: str, status: DeliveryStatus, external_id: str | None = None,
                     generation: int = 0) -> None:
        """Replace the state of ``key``, its ``generation`` included (:class:`Delivery`)."""

    # -- dead letters -----------------------------------------------------------------------------
    def dlq_add(self, letter: DeadLetter) -> None: ...

    def dlq_get(self, letter_id: str) -> DeadLetter | None: ...

    def dlq_list(self, *, state: DeadLetterState | None = "open", category: str | None = None,
                 target: str | None = None, limit: int = 100, oldest_first: bool = False) -> list[DeadLetter]:
        """Newest first (the longest waiting first with ``oldest_first``)."""

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
    def park(self, target: str, message: dict[str, Any]) -> None:
        """*Atomic.* Put ``message`` at the end of ``target``'s line: its id is its place in it."""

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

    def lock_renew(self, key: str, owner: str, ttl_s: float) -> bool:
        """*Atomic.* Extend ``owner``'s lease on ``key`` to ``ttl_s`` from now; False, and nothing
        changed, when ``owner`` no longer holds it (its ttl ran out, taken over or not).
        :meth:`lock_acquire` by the holder does not extend it: it answers False."""

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

    def concluded_by_hour(self, since: float) -> dict[tuple[int, LedgerState], int]:
        """How many entries concluded in each UTC hour from the one ``since`` falls in, by (the
        hour's start, epoch seconds; the outcome): an entry counts once, in the hour and outcome of
        its latest conclusion (a replayed dead letter that was then delivered, as delivered). One
        round trip, however many entries."""

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

    # -- reconciliation (added methods; see crossledger.core.reconcile) ------------------------------
    def reconciliation_put(self, run: ReconciliationRun, findings: list[FindingRecord] | None = None) -> None:
        """Save ``run`` (replacing an earlier save of it); with ``findings``, replace its findings too."""

    def reconciliation_get(self, run_id: str) -> ReconciliationRun | None: ...

    def reconciliations(self, *, limit: int = 20) -> list[ReconciliationRun]:
        """The latest runs, newest first."""

    def reconciliation_latest_done(self, *, full: bool = False) -> ReconciliationRun | None:
        """The newest run that finished (``state`` done), however many failed or running runs came
        after it; with ``full``, the newest finished full run (``since`` None). None when there is none."""

    def reconciliation_findings(self, run_id: str, *, cls: FindingClass | None = None,
                                system: str | None = None) -> list[FindingRecord]:
        """A run's findings, in the order they were found; ``cls`` and ``system`` filter."""

    def listing_put(self, generation: str, items: Sequence[tuple[str, bytes | None]]) -> None:
        """Keep each (record id, packed projection) in ``generation``, replacing what it held under
        that id; a None projection removes the id (a record now outside the books)."""

    def listing_scan(self, generation: str) -> Iterator[bytes]:
        """Every packed projection ``generation`` holds, each once, read a batch at a time (not all at
        once), in no order a caller may rely on."""

    def listing_drop(self, generation: str) -> None:
        """Forget ``generation`` and all it holds."""

    # -- the operator console (see crossledger.core.console) -----------------------------------------
    def user_put(self, user: UserRecord) -> None:
        """Add the user, or replace the one of that name (a new password or role)."""

    def user_get(self, name: str) -> UserRecord | None: ...

    def user_new_epoch(self, name: str, epoch: str) -> bool:
        """*Atomic.* Give the user ``epoch`` as their session epoch (every session signed in under
        another is refused from now on: a sign-out), the rest of the record as it is (a password or
        role set in between stays); False when there is no such user."""

    def users(self) -> list[UserRecord]:
        """Every user, by name."""

    def triage_put(self, record: TriageRecord) -> None:
        """Save a person's handling of one exception (replacing the earlier save)."""

    def triage_get(self, item_id: str) -> TriageRecord | None: ...

    def triages(self) -> list[TriageRecord]:
        """Every saved handling, most recently updated first."""

    def action_add(self, record: ActionRecord) -> None:
        """Append to the console's audit log."""

    def actions(self, *, item: str | None = None, limit: int = 100) -> list[ActionRecord]:
        """The audit log, newest first; ``item`` filters to one exception's actions."""

    def secret(self, name: str, candidate: str) -> str:
        """*Atomic.* The secret kept under ``name``: ``candidate`` is kept if none is yet (the first
        caller wins, every process then signs with the same one)."""
