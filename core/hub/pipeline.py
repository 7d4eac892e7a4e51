"""The two steps every event goes through: ingest (source side) and deliver (target side).

``ingest``: inbound event -> connector.to_canonical -> invariants -> source ownership check ->
golden record -> event log -> routes. Returns the (target, envelope) pairs to deliver.

``deliver``: the record's lease, which marks the attempt -> stale check -> target ownership -> plan
(delivering missing dependencies first) -> for each operation: skip if already acknowledged, probe if
an earlier attempt may have reached the target with it (it was ambiguous, or it died under way), else
execute with a deterministic idempotency key (a new one after each answer that the call failed:
:func:`wire_key`) -> cross-reference -> audit. Failures leave as classified
:class:`ConnectorError`; the hub's middleware (:mod:`crossledger.core.messaging.retries`) decides.
Returns a :class:`Delivery`: what became of it, and the deliveries that follow from it (when a target
gets its first id for a customer, a ``customer.linked`` event tells the other systems that id, each
storing it where it has a field for it). The pipeline sends nothing and calls nothing above it: the
runtime enqueues what it returns.
"""

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from crossledger.canonical.entities import ENTITY_TYPES, Entity
from crossledger.canonical.events import Envelope, decode_envelope, encode_envelope, new_envelope
from crossledger.canonical.invariants import violations
from crossledger.core.hub.outbox import JourneyReply
from crossledger.core.hub.policy import OwnershipPolicy, PolicyViolation
from crossledger.core.hub.refs import LinkedRefs, StoreRefs
from crossledger.core.hub.router import Router
from crossledger.core.store.base import (
    INGEST_PART,
    AuditRecord,
    Golden,
    LoggedEvent,
    OutcomePart,
    Read,
    Store,
    Unit,
)
from crossledger.core.store.base import Delivery as DeliveryState
from crossledger.core.telemetry import metrics
from crossledger.plugins.connector import Connector, NotSupported
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency, translation_error
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.types import Capability, Context, InboundEvent, Operation, Outcome, Refs

# The event that (re)creates an entity in a target when another event depends on it.
DEPENDENCY_EVENTS = {
    "customer": "customer.upserted",
    "contact": "contact.upserted",
    "subscription": "subscription.created",
    "invoice": "invoice.issued",
    "payment": "payment.settled",
    "creditmemo": "credit_memo.issued",
}
MAX_DEPENDENCY_DEPTH = 3
LEASE_WAIT_S = 2.0
LEASE_RETRY_S = 1.0
INGEST_LEASE = "golden"
"""The lease namespace that serializes ingest of one record (deliveries use the target's name)."""
PARTIAL_FROM = "partial-from:"
"""Applied versions under this prefix are the last partial change seen from each source."""
LINKED = ".linked"
"""Suffix of the hub's cross-reference events: they write only other systems' ids, so they are not
ordered against the record's versions (an older one must not be dropped as stale)."""

Deliveries = list[tuple[str, dict[str, Any]]]
"""(target, encoded envelope) pairs to enqueue for ``deliver``."""


DeliveryStatus = Literal["delivered", "stale"]


@dataclass(frozen=True)
class Delivery:
    """What became of one delivery (``delivered``, or ``stale``: a newer version was there first),
    the deliveries that follow from it (cross-reference links) with the marks to clear once those
    are enqueued (:meth:`Pipeline.links_sent`), and the fields the target withheld."""

    status: DeliveryStatus
    follow_ons: Deliveries = field(default_factory=list)
    link_marks: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)


@dataclass
class _Notes:
    """What one delivery notes on its way, handed down to each operation it performs: the records
    the target gave a first id (``linking`` only: a journey's write tells no one), and the fields
    withheld."""

    linking: bool
    linked: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ingested:
    """What an inbound event became: the canonical events the hub accepted (routed or not), the
    deliveries their routes ask for, the outcome ledger's parts already settled (why a change was
    no news, or an accepted event was routed nowhere), and the canonical ids of every change the
    event carried, accepted or not (what its outcome entry says the message is about)."""

    events: list[Envelope]
    deliveries: Deliveries
    settled: dict[str, OutcomePart] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)


def effect(target: str, envelope_id: str) -> str:
    """The outcome ledger's token for one delivery of one event (:class:`OutcomeRecord` pending)."""
    return f"{target}|{envelope_id}"


def noop(reason: str) -> OutcomePart:
    return OutcomePart(outcome="noop", reason=reason)


def attempt_mark(target: str, envelope: Envelope) -> str:
    """The delivery-state key that marks the attempts to deliver ``envelope`` to ``target``
    (:meth:`Pipeline.attempting`). Made of what each of its operations' idempotency keys is made of,
    but the operation: one mark stands for every operation the delivery may send."""
    return f"attempt|{target}|{envelope.source}|{envelope.source_event_id}|{envelope.type}"


def link_mark(target: str, canonical_id: str) -> str:
    """The delivery-state key that says ``target``'s first id for a record is yet to be told."""
    return f"link|{target}|{canonical_id}"


def _check_invariants(envelope: Envelope) -> None:
    problems = violations(envelope.data)
    if problems:
        raise DataError("; ".join(problems))


def merged(golden: Entity, partial: Entity, groups: tuple[str, ...]) -> Entity:
    """``golden`` with the fields of ``groups`` taken from ``partial``: what a partial change means."""
    fields = type(golden).field_groups
    unknown = [group for group in groups if group not in fields]
    if unknown:
        raise ValueError(f"{golden.kind()} has no field group {unknown[0]!r}")
    return msgspec.structs.replace(golden, **{f: getattr(partial, f) for g in groups for f in fields[g]})


@dataclass(frozen=True)
class Bound:
    """A connector with the context it runs in."""

    connector: Connector
    ctx: Context


def references(entity: Entity) -> list[str]:
    """The canonical ids of the other records ``entity`` names in its own fields (an invoice's
    ``customer_id``): each an ``entity type/system/external id``, told apart from other ids that
    way (a ``tax_id`` is not one)."""
    named = (getattr(entity, name) for name in entity.__struct_fields__ if name.endswith("_id"))
    return [value for value in named if isinstance(value, str) and value.split("/", 1)[0] in ENTITY_TYPES]


def version_of(envelope: Envelope) -> int:
    """Order of updates to one entity: when the source says it happened, in microseconds."""
    return int(envelope.occurred_at.timestamp() * 1_000_000)


def idempotency_key(target: str, envelope: Envelope, op: Operation) -> str:
    """Stable for one effect: the same source event, target and operation give the same key,
    however many times the event is received, retried or replayed. The operation's state is kept
    under it; what goes on the wire is :func:`wire_key`."""
    raw = f"{target}|{envelope.source}|{envelope.source_event_id}|{envelope.type}|{op.name}|{op.canonical_id}"
    return "cl-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def wire_key(key: str, generation: int) -> str:
    """The idempotency key an operation's call sends, after ``generation`` definite failures.

    Stripe and Zuora store the first answer to a key, failures included (a 500 once execution
    started; Zuora every answer, for 24 hours), and replay it: a retry under the key of a call that
    failed would get that failure back until the message dead-letters. So each definite failure
    moves the operation to a new key, while a call that may still land (:func:`keeps_key`) keeps
    its key, for the vendor to replay what really became of it. Generation 0 is ``key`` itself (a
    delivery that never failed sends what an earlier release sent); after, 45 characters or so,
    well within the shortest limit of the connectors' idempotency headers (Stripe 255, Zuora 254)."""
    return key if generation == 0 else f"{key}-{generation}"


KEY_IN_DOUBT = frozenset({409, 504})
"""Answers that say a call under a key may still land: 409, a request with the same key still in
progress (Zuora, Stripe, Zendesk); 504, a gateway that gave up waiting on the vendor, which may
finish the request all the same."""


def keeps_key(failure: ConnectorError) -> bool:
    """Whether the next call of a failed operation sends the same key: after a call that may have
    landed (no answer after sending: ``ambiguous``; or an answer in :data:`KEY_IN_DOUBT`), so the
    vendor replays what became of it. Any other answer is definite: the call did not land, and the
    vendor may have stored that answer under the key (:func:`wire_key`)."""
    return failure.category is Category.AMBIGUOUS or failure.status in KEY_IN_DOUBT


class DataError(ConnectorError):
    def __init__(self, message: str) -> None:
        super().__init__(Category.DATA, message)


class PolicyError(ConnectorError):
    def __init__(self, message: str) -> None:
        super().__init__(Category.POLICY, message)


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        plugins: CrossledgerPluginManager,
        connectors: dict[str, Bound],
        policy: OwnershipPolicy,
        router: Router,
        lease_ttl_s: float,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.connectors = connectors
        self.policy = policy
        self.router = router
        self.refs = StoreRefs(store, self._unit)
        self.lease_ttl_s = lease_ttl_s
        self._local = threading.local()

    # -- helpers ------------------------------------------------------------------------------------
    def bound(self, name: str) -> Bound:
        try:
            return self.connectors[name]
        except KeyError:
            raise DataError(f"connector {name!r} is not configured") from None

    @contextmanager
    def working(self, unit: Unit | None = None) -> Iterator[Unit]:
        """The scope of one message's work in this thread: its writes are collected in ``unit`` for
        the caller to commit with what it decides next (the outcome ledger, the messages it sends),
        its leases held until then (each released in that commit, so no other worker reads the record
        before its write lands). Without a ``unit``, one of its own is committed when the scope ends,
        failures included. Nested scopes are the outer one."""
        current: Unit | None = getattr(self._local, "unit", None)
        if current is not None:
            yield current
            return
        own = unit is None
        working = Unit() if unit is None else unit
        self._local.unit, self._local.leases = working, {}
        try:
            yield working
        finally:
            leases: dict[str, str] = self._local.leases
            for key, owner in leases.items():
                working.lock_release(key, owner)
            self._local.unit, self._local.leases = None, {}
            if own:
                self.store.commit(working)

    def _write(self) -> Unit:
        """Where this message's writes go: the unit of its :meth:`working` scope (every write of
        ingest and deliver happens within one)."""
        unit = self._unit()
        if unit is None:
            raise RuntimeError("store writes of a message are made within Pipeline.working")
        return unit

    def _unit(self) -> Unit | None:
        """The unit of the message this thread works on, if any."""
        unit: Unit | None = getattr(self._local, "unit", None)
        return unit

    def _flush(self) -> None:
        """Commit what this message wrote so far, for a read that must see it (a dependency's new
        cross-reference, the record a second change of one event merges into)."""
        unit = self._unit()
        if unit is not None and unit.writes:
            done = Unit()
            done.writes, unit.writes = unit.writes, []
            self.store.commit(done)

    def audit(self, envelope: Envelope | None, step: str, status: str, *, correlation_id: str | None = None,
              system: str | None = None, detail: str | None = None) -> None:
        record = AuditRecord(
            at=time.time(),
            correlation_id=correlation_id or (envelope.correlation_id if envelope else "-"),
            step=step,
            status=status,
            system=system,
            event_id=envelope.id if envelope else None,
            subject=envelope.subject if envelope else None,
            detail=detail,
        )
        unit = self._unit()
        if unit is None:
            self.store.audit(record)
        else:
            unit.audit(record)

    @contextmanager
    def entity_lease(self, target: str, subject: str, reads: Sequence[Read] = (),
                     watch: str | None = None, attempt: str | None = None) -> Iterator[list[Any]]:
        """Serialize deliveries of one entity to one target across every worker: the stale check and
        the writes happen under a lease in the shared store. A holder that crashed frees it after
        ``lease_ttl_s``; a delivery that cannot get it in time is retried later.

        Re-entrant within a thread: a void whose invoice must be delivered first leases the invoice
        once, not twice. Within a message's :meth:`working` scope the lease is held until the scope's
        unit is committed. Yields what ``reads`` answer (:meth:`Store.read`), read under the lease in
        the round trip that takes it, with the ledger entry of ``watch`` (a correlation id) when the
        lease is taken there; led by the attempt mark ``attempt`` as it was before the lease marked it
        (see :meth:`attempting`).
        """
        key, owner = f"{target}|{subject}", uuid.uuid4().hex
        held: dict[str, str] = self._local.__dict__.setdefault("leases", {})
        if key in held:
            yield self.store.read(reads, attempt=attempt) or [] if reads or attempt else []
            return
        deadline = time.monotonic() + LEASE_WAIT_S
        lease = (key, owner, self.lease_ttl_s)
        while (answers := self.store.read(reads, lease=lease, watch=watch, attempt=attempt)) is None:
            if time.monotonic() > deadline:
                # "Not now, try again shortly": like a rate limit, it spends no retries (the age limit
                # still bounds it), since the holder may be a crashed worker whose lease must expire.
                raise ConnectorError(Category.RATE_LIMITED, f"{subject} is being delivered to {target} elsewhere",
                                     retry_after=LEASE_RETRY_S)
            time.sleep(0.02)
        held[key] = owner
        if self._unit() is not None:
            yield answers  # released by the scope's commit
            return
        try:
            yield answers
        finally:
            del held[key]
            self.store.lock_release(key, owner)

    @contextmanager
    def attempting(self, target: str, envelope: Envelope, reads: Sequence[Read] = (),
                   watch: str | None = None) -> Iterator[tuple[DeliveryState | None, list[Any]]]:
        """One attempt to deliver ``envelope`` to ``target``, under its record's lease
        (:meth:`entity_lease`, with ``reads`` and ``watch``), which marks the attempt in the round
        trip that takes it (:func:`attempt_mark`): ``sent``, until the attempt ends well
        (``acknowledged``) or fails with each operation it sent on record (``failed``; see
        :meth:`_perform`). A worker that dies between an external call and its commit leaves the mark
        ``sent``, so the next attempt probes before it sends again, and a first attempt writes
        nothing before its calls. Yields the mark as the lease found it (None: the first attempt),
        and what ``reads`` answer."""
        mark = attempt_mark(target, envelope)
        with self.entity_lease(target, envelope.subject, reads, watch=watch, attempt=mark) as (earlier, *answers):
            try:
                yield earlier, answers
            except Exception:
                if earlier is None or earlier.status != "sent":  # else a dead attempt's calls stay unaccounted for
                    self._write().delivery_set(mark, "failed")
                raise
        self._write().delivery_set(mark, "acknowledged")

    @staticmethod
    def classified(bound: Bound, error: Exception, translating: str | None = None) -> ConnectorError:
        """``error`` as the taxonomy has it: already classified, or as its connector classifies it.
        While ``translating`` (a payload to canonical, or canonical to a plan), a failure on a value
        the code did not expect is a ``data`` error (:func:`~crossledger.plugins.errors.translation_error`)."""
        if isinstance(error, ConnectorError):
            return error
        if translating is not None and (refused := translation_error(error, translating)) is not None:
            return refused
        return bound.connector.classify(error)

    # -- ingest -------------------------------------------------------------------------------------
    def ingest(self, source: str, raw_event: dict[str, Any], correlation_id: str, received_at: float,
               unit: Unit | None = None) -> Ingested:
        """Ingest one inbound event; its writes go into ``unit`` (see :meth:`working`)."""
        with self.working(unit):
            return self._ingest(source, raw_event, correlation_id, received_at)

    def _ingest(self, source: str, raw_event: dict[str, Any], correlation_id: str, received_at: float) -> Ingested:
        bound = self.bound(source)
        event = msgspec.convert(raw_event, InboundEvent)
        translating = f"{source} {event.type} {event.source_event_id}"
        try:
            changes = bound.connector.to_canonical(bound.ctx, event, self.refs)
            # What the connector made of it becomes envelopes here: a change no hub can carry (an
            # event type it does not know) is the translation's data error too, not an outage.
            envelopes = [new_envelope(
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{event.source_event_id}/{index}").hex,
                type=change.type,
                source=source,
                source_event_id=event.source_event_id,
                data=change.entity,
                occurred_at=event.occurred_at,
                correlation_id=correlation_id,
                received_at=datetime.fromtimestamp(received_at, UTC),
            ) for index, change in enumerate(changes)]
        except Exception as error:
            raise self.classified(bound, error, translating) from error
        deliveries: Deliveries = []
        accepted: list[Envelope] = []
        settled: dict[str, OutcomePart] = {}
        for index, (change, envelope) in enumerate(zip(changes, envelopes, strict=True)):
            if index:
                self._flush()  # the next change may be about the same record: it reads this one's write
            # One record is ingested by one worker at a time: the golden record is read, merged and
            # written back, and two sources at once must not undo each other.
            with self.entity_lease(INGEST_LEASE, envelope.subject, [("golden_get", (envelope.subject,))]) as (golden,):
                routed = self._accept(envelope, event, change.groups, golden)
            if isinstance(routed, str):
                settled[f"{INGEST_PART}:{index}"] = noop(routed)
                continue
            accepted.append(routed[0])
            deliveries += [(target, routed[2]) for target in routed[1]]  # one copy: nobody changes it
            if not routed[1]:
                settled[effect("-", routed[0].id)] = noop(f"{routed[0].type} from {source} is routed to no target")
        if not changes:
            why = f"{event.type} carries nothing the hub syncs"
            metrics.events_ignored.labels(source, event.type).inc()
            self.audit(None, "ingest", "ignored", correlation_id=correlation_id, system=source, detail=why)
            settled[INGEST_PART] = noop(why)
        return Ingested(accepted, deliveries, settled, list(dict.fromkeys(e.subject for e in envelopes)))

    def _accept(self, envelope: Envelope, event: InboundEvent, groups: tuple[str, ...] | None,
                golden: Golden | None) -> tuple[Envelope, list[str], dict[str, Any]] | str:
        """Validate, apply the source's ownership, update the ``golden`` record (as read under its
        lease); return the event as accepted, its targets and its encoding, or why it is not news.

        A change that leaves the golden record as it was is not routed: it is the echo of the hub's
        own write coming back (or news of nothing the hub syncs)."""
        kind = envelope.data.kind()
        previous = msgspec.convert(golden.data, ENTITY_TYPES[kind]) if golden else None
        if groups is None:  # a whole record is judged as the source sent it
            _check_invariants(envelope)
        if golden is not None and golden.version == version_of(envelope) and \
                golden.source_event_id not in (None, envelope.source_event_id):
            envelope = self._break_tie(envelope, event)
            if groups is None:  # and as the source has it now, when it was read again
                _check_invariants(envelope)
        if groups is not None:  # merged after the tie-break (a re-read is partial too), then judged
            if self._older_than_last_from(envelope):
                return f"a newer change from {envelope.source} was already received"
            if golden is not None and previous is not None:
                envelope = self._merge(envelope, golden, previous, groups)
            _check_invariants(envelope)
        try:
            decision = self.policy.check_source(envelope, previous)
        except PolicyViolation as violation:
            raise PolicyError(str(violation)) from None
        envelope = decision.envelope
        for stripped in decision.stripped:
            self.audit(envelope, "ownership", "stripped", system=envelope.source, detail=stripped)
        if previous is not None and envelope.data == previous:
            why = "the record is as the hub already has it (an echo of the hub's own write, or no synced change)"
            if decision.stripped:  # the change was to fields another system owns: the policy's no
                why = f"the ownership rules stripped {'; '.join(decision.stripped)}; the rest is as the hub has it"
            self.audit(envelope, "ingest", "unchanged", system=envelope.source, detail=why)
            return why
        version = version_of(envelope)
        if golden is not None and golden.version > version:  # read under the record's lease: still so
            why = "stale: a newer version of this record was already received"
            self.audit(envelope, "ingest", "stale", system=envelope.source, detail=why)
            return why
        unit = self._write()
        encoded = encode_envelope(envelope)
        unit.golden_put(Golden(  # the record as the envelope carries it: encoded once for both
            canonical_id=envelope.subject, entity_type=kind, version=version,
            data=encoded["data"], source_event_id=envelope.source_event_id,
        ))
        unit.log_event(LoggedEvent(
            id=envelope.id, type=envelope.type, source=envelope.source, subject=envelope.subject,
            correlation_id=envelope.correlation_id, occurred_at=envelope.occurred_at.timestamp(),
            envelope=encoded,
        ))
        targets = self.router.targets(envelope.type, envelope.source)
        self.audit(envelope, "ingest", "routed", system=envelope.source,
                   detail=f"{envelope.type} -> {', '.join(targets) or 'no target'}")
        return envelope, targets, encoded

    def _older_than_last_from(self, envelope: Envelope) -> bool:
        """Whether a partial change is older than the last one its source sent about the record
        (ingest runs in parallel and retries, so a source's changes may arrive out of order); if
        not, it becomes the last one."""
        key, version = f"{PARTIAL_FROM}{envelope.source}", version_of(envelope)
        last = self.store.applied_version(key, envelope.subject)
        if last is not None and version < last:
            self.audit(envelope, "ingest", "stale", system=envelope.source,
                       detail=f"a newer change from {envelope.source} was already received")
            return True
        self._write().set_applied_version(key, envelope.subject, version)
        return False

    @staticmethod
    def _merge(envelope: Envelope, golden: Golden, previous: Entity, groups: tuple[str, ...]) -> Envelope:
        """The partial change laid over the golden record. It speaks only for groups its source
        owns, so against other sources it is ordered by arrival: a source that stamps whole seconds
        (NetSuite) must not lose its change to another source's edit of other fields, stamped in
        milliseconds, in the same second. Against its own source's changes it is ordered by its
        version (:meth:`_older_than_last_from`)."""
        try:
            data = merged(previous, envelope.data, groups)
        except ValueError as unknown:
            raise DataError(str(unknown)) from None
        occurred_at = envelope.occurred_at
        if version_of(envelope) <= golden.version:
            occurred_at = datetime.fromtimestamp((golden.version + 1) / 1_000_000, UTC)
        return msgspec.structs.replace(envelope, data=data, occurred_at=occurred_at)

    def _break_tie(self, envelope: Envelope, event: InboundEvent) -> Envelope:
        """Two different events about one record with the same version (Stripe's clock has whole
        seconds, and it does not promise order): which is newer cannot be told from them, so ask the
        source for the record as it is now. Without a way to ask, the later arrival wins."""
        bound = self.bound(envelope.source)
        try:
            if Capability.FETCH not in bound.connector.capabilities:
                raise NotSupported(envelope.source, "refetching")
            current = bound.connector.to_canonical(bound.ctx, bound.connector.refetch(bound.ctx, event), self.refs)
        except NotSupported:
            self.audit(envelope, "ingest", "tie", system=envelope.source,
                       detail="two versions in one instant; the later arrival wins")
            return envelope
        except Exception as error:
            raise self.classified(bound, error, f"{envelope.source} {event.type} {event.source_event_id}") from error
        for change in current:
            if change.entity.id == envelope.subject:
                self.audit(envelope, "ingest", "tie", system=envelope.source,
                           detail=f"two versions in one instant; took the record as {envelope.source} has it now")
                return msgspec.structs.replace(envelope, data=change.entity)
        return envelope

    # -- deliver ------------------------------------------------------------------------------------
    def deliver(self, target: str, raw_envelope: dict[str, Any], *, reply: JourneyReply | None = None,
                unit: Unit | None = None) -> Delivery:
        """Deliver one event to ``target``; returns what became of it and what follows from it. Its
        writes go into ``unit`` (see :meth:`working`).

        A journey's write (``reply`` set) sends no link events: the journey tells each system the
        others' ids itself, in its own order."""
        notes = _Notes(linking=reply is None)
        with self.working(unit):
            status, envelope = self._deliver(target, raw_envelope, reply=reply, notes=notes)
            if status != "delivered" or not notes.linked:
                return Delivery(status, withheld=notes.withheld)
            self._flush()  # the links carry the new cross-references
            return Delivery(status, self._links(target, envelope, notes.linked),
                            [link_mark(target, canonical_id) for canonical_id in dict.fromkeys(notes.linked)],
                            notes.withheld)

    def links_sent(self, delivery: Delivery) -> None:
        """The delivery's follow-ons are enqueued: clear their link marks."""
        for mark in delivery.link_marks:
            self.store.delivery_set(mark, "acknowledged")

    def _deliver(self, target: str, raw_envelope: dict[str, Any], *, reply: JourneyReply | None,
                 notes: _Notes) -> tuple[DeliveryStatus, Envelope]:
        envelope = decode_envelope(raw_envelope)
        bound = self.bound(target)
        refs: Refs = LinkedRefs(self.refs, envelope.subject, reply["links"]) if reply and reply["links"] else self.refs
        decided = reply is not None and reply.get("decides", False)
        # The record's and the records it names' ids at the target, read with the lease: the
        # target's connector asks for them while it plans (an invoice's customer), served by the refs.
        known = [envelope.subject, *references(envelope.data)]
        reads: list[Read] = [("applied_version", (target, envelope.subject)),
                             *[("xref_get", (canonical_id, target)) for canonical_id in known]]
        try:
            # The message's outcome ledger entry, which its unit settles, is read with them.
            with self.attempting(target, envelope, reads, watch=envelope.correlation_id) as (
                    earlier, (applied, *external_ids)):
                links = self._write().links
                for canonical_id, external_id in zip(known, external_ids, strict=True):
                    links.setdefault((canonical_id, target), external_id)
                if envelope.type.endswith(LINKED):
                    outcomes = self._apply(bound, target, envelope, earlier, refs, notes, depth=0, decided=decided)
                else:
                    version = version_of(envelope)
                    if applied is not None and version < applied:
                        self.audit(envelope, "deliver", "stale", system=target,
                                   detail="a newer version was already delivered")
                        return "stale", envelope
                    if applied == version:  # the same instant again: write the settled state, not this copy
                        envelope = self._settled(envelope)
                    outcomes = self._apply(bound, target, envelope, earlier, refs, notes, depth=0, decided=decided)
                    self._write().set_applied_version(target, envelope.subject, version)
        except Exception as error:
            raise self.classified(bound, error) from error
        metrics.delivery_latency.labels(target).observe(max(0.0, time.time() - envelope.received_at.timestamp()))
        for outcome in outcomes:
            self.plugins.notify("crossledger_event_delivered", event=envelope, target=target, outcome=outcome)
        metrics.events_delivered.labels(target, envelope.type).inc()
        return "delivered", envelope

    def _links(self, target: str, cause: Envelope, linked: list[str]) -> Deliveries:
        """``<entity>.linked`` events for the records ``target`` has just given its first id, routed
        to the other systems so each can store that id."""
        deliveries: Deliveries = []
        for canonical_id in dict.fromkeys(linked):
            golden = self.store.golden_get(canonical_id)
            if golden is None:  # a record the target gave an id without the hub having it: nothing to tell
                self.audit(cause, "link", "skipped", system=target,
                           detail=f"{target} gave {canonical_id} an id, but the hub has no record of it to link")
                continue
            external_id = self.store.xref_get(canonical_id, target)
            link = new_envelope(
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"linked/{canonical_id}/{target}/{external_id}").hex,
                type=f"{golden.entity_type}{LINKED}",
                source=target,
                source_event_id=f"linked:{target}:{external_id}",
                data=golden.entity(),
                occurred_at=cause.occurred_at,
                correlation_id=cause.correlation_id,
                causation_id=cause.id,
            )
            targets = self.router.targets(link.type, target)
            self.audit(link, "link", "routed", system=target,
                       detail=f"{target} id {external_id} -> {', '.join(targets) or 'no target'}")
            deliveries += [(other, encode_envelope(link)) for other in targets]
        return deliveries

    def _settled(self, envelope: Envelope) -> Envelope:
        golden = self.store.golden_get(envelope.subject)
        if golden is None or golden.version != version_of(envelope):
            return envelope
        return msgspec.structs.replace(envelope, data=golden.entity())

    def _apply(self, bound: Bound, target: str, envelope: Envelope, earlier: DeliveryState | None, refs: Refs,
               notes: _Notes, depth: int, decided: bool = False) -> list[Outcome]:
        """Plan and execute ``envelope`` in ``target``, delivering missing dependencies first; ``earlier``
        is the delivery's attempt mark as its lease found it (:meth:`attempting`).

        The fields ``target`` owns are reset before planning, so no other system's copy overwrites
        them, unless the write is ``decided``: a journey's step decided them (the subsidiary and
        terms of a customer onboarding creates in the ERP). A target without the record yet is
        seeded with what the record's system of birth could give (see :mod:`.policy`)."""
        held = refs.external_id(envelope.subject, target) is not None
        for_target = envelope if decided else self.policy.for_target(envelope, target, held=held)
        delivered: set[str] = set()
        while True:
            try:
                operations = bound.connector.plan(bound.ctx, for_target, refs)
                break
            except MissingDependency as missing:
                if depth >= MAX_DEPENDENCY_DEPTH:
                    raise DataError(f"dependencies nest too deep: {missing}") from None
                if missing.canonical_id in delivered:  # delivering it did not give the target an id
                    raise DataError(f"{target} still lacks {missing.canonical_id} after delivering it") from None
                self._deliver_dependency(bound, target, envelope, missing, refs, notes, depth)
                delivered.add(missing.canonical_id)
            except Exception as error:
                raise self.classified(bound, error, f"{target} plan of {envelope.type} {envelope.subject}") from error
        outcomes = [self._perform(bound, target, envelope, earlier, op, notes) for op in operations]
        if not operations:
            self.audit(envelope, "deliver", "nothing to do", system=target)
        return outcomes

    def _deliver_dependency(self, bound: Bound, target: str, envelope: Envelope, missing: MissingDependency,
                            refs: Refs, notes: _Notes, depth: int) -> None:
        golden = self.store.golden_get(missing.canonical_id)
        if golden is None:
            raise ConnectorError(Category.TRANSIENT,
                                 f"{missing}, and the hub has not received {missing.canonical_id} yet")
        entity = golden.entity()
        dependency = new_envelope(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"golden/{golden.canonical_id}/{golden.version}").hex,
            type=DEPENDENCY_EVENTS.get(golden.entity_type, f"{golden.entity_type}.upserted"),
            source="hub",
            source_event_id=f"golden:{golden.canonical_id}@{golden.version}",
            data=entity,
            occurred_at=envelope.occurred_at,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.id,
        )
        self.audit(dependency, "deliver", "dependency", system=target,
                   detail=f"{target} lacks {missing.entity_type} {missing.canonical_id}; delivering it first")
        # Leases are taken downwards only (payment -> invoice -> customer), so they cannot deadlock.
        with self.attempting(target, dependency) as (earlier, _):
            self._apply(bound, target, dependency, earlier, refs, notes, depth + 1)
            self._write().set_applied_version(target, golden.canonical_id, golden.version)
        self._flush()  # the plan that needed it reads its cross-reference next

    def _perform(self, bound: Bound, target: str, envelope: Envelope, earlier: DeliveryState | None, op: Operation,
                 notes: _Notes) -> Outcome:
        """Execute one operation exactly once in effect. Every call it makes is on record before any
        failure leaves it: the outcome in the unit, a failure in the store (see :meth:`attempting`)."""
        key = idempotency_key(target, envelope, op)
        # A first attempt (no mark before its own) finds no operation done: nothing to read.
        state = None if earlier is None else self._state(key, earlier)
        generation = 0 if state is None else state.generation
        sent = wire_key(key, generation)  # what the last call that may have landed sent, and this one sends
        in_doubt = state is not None and state.status in ("sent", "ambiguous")
        outcome: Outcome | None = None
        if state is not None and state.status == "acknowledged" and state.external_id:
            outcome = Outcome(external_id=state.external_id)
            self.audit(envelope, op.name, "already done", system=target, detail=f"{target} id {state.external_id}")
        elif state is not None and in_doubt and Capability.PROBE in bound.connector.capabilities:
            # The earlier attempt may have landed (a timeout after sending, or a crash mid-call).
            outcome = self._probe(bound, op, sent)
            self.audit(envelope, op.name, "probed", system=target,
                       detail=f"earlier attempt was {state.status}; "
                              + (f"found {outcome.external_id}" if outcome else "not applied, sending again"))
        if outcome is None:
            try:
                outcome = bound.connector.execute(bound.ctx, op, sent)
            except Exception as error:
                failure = self.classified(bound, error)
                self._failed(key, generation, failure, in_doubt)
                self.audit(envelope, op.name, "failed", system=target, detail=str(failure))
                raise failure from error
            self.audit(envelope, op.name, "delivered", system=target,
                       detail=f"{target} id {outcome.external_id}" + (" (created)" if outcome.created else "")
                       + (f"; withheld: {op.withheld}" if op.withheld else ""))
        unit = self._write()
        unit.delivery_set(key, "acknowledged", outcome.external_id, generation)
        if op.withheld:  # recorded with the delivery's outcome (see deliver)
            notes.withheld.append(op.withheld)
        self._note_link(target, op, outcome, notes)
        unit.xref_put(op.canonical_id, op.entity_type, target, outcome.external_id)
        return outcome

    def _failed(self, key: str, generation: int, failure: ConnectorError, in_doubt: bool) -> None:
        """Put on record that the call of operation ``key`` under ``generation`` failed, in the store
        at once (the unit dies with the failure). Only a call that may still land keeps its key
        (:func:`keeps_key`): ``ambiguous`` after no answer, the next attempt probes first; any other
        answer says it did not land, so the next call sends the next generation's key. It stays
        ``ambiguous`` while an earlier call it followed is in doubt (``in_doubt``): an answer given
        before the vendor ran this call, a 503 or a 429, says nothing of that one, which the vendor
        would no longer replay under a new key; so the next attempt still probes before it sends."""
        ambiguous = in_doubt or failure.category is Category.AMBIGUOUS
        self.store.delivery_set(key, "ambiguous" if ambiguous else "failed",
                                generation=generation if keeps_key(failure) else generation + 1)

    def _state(self, key: str, earlier: DeliveryState) -> DeliveryState | None:
        """What a later attempt knows of the operation ``key``: its state, unless an attempt died
        under way (the delivery's mark ``earlier`` is ``sent``) and it is not done; that attempt may
        have sent it without recording anything, so it counts as sent, under the key of the
        operation's generation as its state has it."""
        state = self.store.delivery_get(key)
        if earlier.status == "sent" and (state is None or state.status != "acknowledged"):
            return msgspec.structs.replace(earlier, key=key, generation=0 if state is None else state.generation)
        return state

    def _note_link(self, target: str, op: Operation, outcome: Outcome, notes: _Notes) -> None:
        """A first id in ``target`` must reach the other systems. The mark is durable until the
        link events are enqueued, so a delivery that fails later, or a lost enqueue, sends them on
        its retry (when the cross-reference is no longer new). A journey's write tells no one: the
        journey does, in its own order."""
        if not notes.linking or not self.router.targets(f"{op.entity_type}{LINKED}", target):
            return  # nobody to tell: no store work on the delivery path
        mark = link_mark(target, op.canonical_id)
        if self.store.xref_get(op.canonical_id, target) != outcome.external_id:
            self._write().delivery_set(mark, "sent", outcome.external_id)
        else:
            pending = self.store.delivery_get(mark)
            if pending is None or pending.status != "sent":
                return
        notes.linked.append(op.canonical_id)

    def _probe(self, bound: Bound, op: Operation, key: str) -> Outcome | None:
        try:
            return bound.connector.probe(bound.ctx, op, key)
        except Exception as error:
            raise self.classified(bound, error) from error
