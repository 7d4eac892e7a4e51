"""The two steps every event goes through: ingest (source side) and deliver (target side).

``ingest``: inbound event -> connector.to_canonical -> invariants -> source ownership check ->
golden record -> event log -> routes. Returns the (target, envelope) pairs to deliver.

``deliver``: circuit check -> stale check -> target ownership -> plan (delivering missing
dependencies first) -> for each operation: skip if already acknowledged, probe if an earlier
attempt was ambiguous, else execute with a deterministic idempotency key -> cross-reference ->
audit. Failures leave as classified :class:`ConnectorError`; the :mod:`middleware` decides.
Returns follow-on deliveries: when a target gets its first id for a customer, a ``customer.linked``
event tells the other systems that id (each stores it where it has a field for it).
"""

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

import msgspec
from crossledger.canonical.entities import ENTITY_TYPES, Entity
from crossledger.canonical.events import Envelope, decode_envelope, encode_envelope, new_envelope
from crossledger.canonical.invariants import violations
from crossledger.core import metrics
from crossledger.core.policy import OwnershipPolicy, PolicyViolation
from crossledger.core.refs import LinkedRefs, StoreRefs
from crossledger.core.router import Router
from crossledger.core.stores.base import INGEST_PART, AuditRecord, Circuit, Golden, LoggedEvent, OutcomePart, Store
from crossledger.plugins.connector import Connector, NotSupported
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency, translation_error
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.types import Capability, Context, InboundEvent, Operation, Outcome, Refs

log = logging.getLogger(__name__)

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
CIRCUIT_CACHE_S = 1.0
LEASE_WAIT_S = 2.0
LEASE_RETRY_S = 1.0
INGEST_LEASE = "golden"
PARTIAL_FROM = "partial-from:"
"""Applied versions under this prefix are the last partial change seen from each source."""
"""The lease namespace that serializes ingest of one record (deliveries use the target's name)."""
LINKED = ".linked"
"""Suffix of the hub's cross-reference events: they write only other systems' ids, so they are not
ordered against the record's versions (an older one must not be dropped as stale)."""

Deliveries = list[tuple[str, dict[str, Any]]]
"""(target, encoded envelope) pairs to enqueue for ``deliver``."""


@dataclass(frozen=True)
class FollowOns:
    """What became of one delivery (``delivered``, ``parked`` on an open circuit, or ``stale``), the
    deliveries that follow from it (cross-reference links), and the marks to clear once those are
    enqueued."""

    status: Literal["delivered", "parked", "stale"]
    deliveries: Deliveries = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ingested:
    """What an inbound event became: the canonical events the hub accepted (routed or not), the
    deliveries their routes ask for, and the outcome ledger's parts already settled (why a change
    was no news, or an accepted event was routed nowhere)."""

    events: list[Envelope]
    deliveries: Deliveries
    settled: dict[str, OutcomePart] = field(default_factory=dict)


def effect(target: str, envelope_id: str) -> str:
    """The outcome ledger's token for one delivery of one event (:class:`OutcomeRecord` pending)."""
    return f"{target}|{envelope_id}"


def noop(reason: str) -> OutcomePart:
    return OutcomePart(outcome="noop", reason=reason)


class JourneyReply(TypedDict):
    """Carried by a delivery a journey step asked for: whom to tell how it went, and ids the target
    is to record beyond the hub's cross-references (:class:`~crossledger.plugins.journey.Write`)."""

    id: str
    step: str
    phase: Literal["run", "compensate"]
    write: str
    links: dict[str, str]
    decides: bool


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


def version_of(envelope: Envelope) -> int:
    """Order of updates to one entity: when the source says it happened, in microseconds."""
    return int(envelope.occurred_at.timestamp() * 1_000_000)


def idempotency_key(target: str, envelope: Envelope, op: Operation) -> str:
    """Stable for one effect: the same source event, target and operation give the same key,
    however many times the event is received, retried or replayed."""
    raw = f"{target}|{envelope.source}|{envelope.source_event_id}|{envelope.type}|{op.name}|{op.canonical_id}"
    return "cl-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


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
        circuit_threshold: int,
        on_circuit_open: Callable[[str], None],
        lease_ttl_s: float,
        stale_open_s: float,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.connectors = connectors
        self.policy = policy
        self.router = router
        self.refs = StoreRefs(store)
        self.circuit_threshold = circuit_threshold
        self.on_circuit_open = on_circuit_open
        self.lease_ttl_s = lease_ttl_s
        self.stale_open_s = stale_open_s
        self._local = threading.local()
        self._circuits: dict[str, tuple[float, Circuit]] = {}

    # -- helpers ------------------------------------------------------------------------------------
    def bound(self, name: str) -> Bound:
        try:
            return self.connectors[name]
        except KeyError:
            raise DataError(f"connector {name!r} is not configured") from None

    @contextmanager
    def audit_batch(self) -> Iterator[None]:
        """Collect this thread's audit records and write them in one round trip at the end, failures
        included (the records are written before the exception leaves)."""
        if getattr(self._local, "batch", None) is not None:
            yield
            return
        batch: list[AuditRecord] = []
        self._local.batch = batch
        try:
            yield
        finally:
            self._local.batch = None
            if batch:
                self.store.audit(*batch)

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
        batch = getattr(self._local, "batch", None)
        if batch is None:
            self.store.audit(record)
        else:
            batch.append(record)

    def circuit(self, target: str) -> Circuit:
        """The target's circuit, read from the shared store at most once a second per process:
        a delivery that slips past a just-opened circuit fails, counts, and parks itself anyway."""
        now = time.monotonic()
        cached = self._circuits.get(target)
        if cached is None or now - cached[0] > CIRCUIT_CACHE_S:
            cached = (now, self.store.circuit_get(target))
            self._circuits[target] = cached
        return cached[1]

    def forget_circuit(self, target: str) -> None:
        self._circuits.pop(target, None)

    @contextmanager
    def entity_lease(self, target: str, subject: str) -> Iterator[None]:
        """Serialize deliveries of one entity to one target across every worker: the stale check and
        the writes happen under a lease in the shared store. A holder that crashed frees it after
        ``lease_ttl_s``; a delivery that cannot get it in time is retried later.

        Re-entrant within a thread: a void whose invoice must be delivered first leases the invoice
        once, not twice.
        """
        key, owner = f"{target}|{subject}", uuid.uuid4().hex
        held: set[str] = self._local.__dict__.setdefault("leases", set())
        if key in held:
            yield
            return
        deadline = time.monotonic() + LEASE_WAIT_S
        while not self.store.lock_acquire(key, owner, self.lease_ttl_s):
            if time.monotonic() > deadline:
                # "Not now, try again shortly": like a rate limit, it spends no retries (the age limit
                # still bounds it), since the holder may be a crashed worker whose lease must expire.
                raise ConnectorError(Category.RATE_LIMITED, f"{subject} is being delivered to {target} elsewhere",
                                     retry_after=LEASE_RETRY_S)
            time.sleep(0.02)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            self.store.lock_release(key, owner)

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
    def ingest(self, source: str, raw_event: dict[str, Any], correlation_id: str, received_at: float) -> Ingested:
        with self.audit_batch():
            return self._ingest(source, raw_event, correlation_id, received_at)

    def _ingest(self, source: str, raw_event: dict[str, Any], correlation_id: str, received_at: float) -> Ingested:
        bound = self.bound(source)
        event = msgspec.convert(raw_event, InboundEvent)
        try:
            changes = bound.connector.to_canonical(bound.ctx, event, self.refs)
        except Exception as error:
            raise self.classified(bound, error, f"{source} {event.type} {event.source_event_id}") from error
        deliveries: Deliveries = []
        accepted: list[Envelope] = []
        settled: dict[str, OutcomePart] = {}
        for index, change in enumerate(changes):
            envelope = new_envelope(
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{event.source_event_id}/{index}").hex,
                type=change.type,
                source=source,
                source_event_id=event.source_event_id,
                data=change.entity,
                occurred_at=event.occurred_at,
                correlation_id=correlation_id,
                received_at=datetime.fromtimestamp(received_at, UTC),
            )
            # One record is ingested by one worker at a time: the golden record is read, merged and
            # written back, and two sources at once must not undo each other.
            with self.entity_lease(INGEST_LEASE, envelope.subject):
                routed = self._accept(envelope, event, change.groups)
            if isinstance(routed, str):
                settled[f"{INGEST_PART}:{index}"] = noop(routed)
                continue
            accepted.append(routed[0])
            deliveries += [(target, encode_envelope(routed[0])) for target in routed[1]]
            if not routed[1]:
                settled[effect("-", routed[0].id)] = noop(f"{routed[0].type} from {source} is routed to no target")
        if not changes:
            why = f"{event.type} carries nothing the hub syncs"
            metrics.events_ignored.labels(source, event.type).inc()
            self.audit(None, "ingest", "ignored", correlation_id=correlation_id, system=source, detail=why)
            settled[INGEST_PART] = noop(why)
        return Ingested(accepted, deliveries, settled)

    def _accept(self, envelope: Envelope, event: InboundEvent,
                groups: tuple[str, ...] | None) -> tuple[Envelope, list[str]] | str:
        """Validate, apply the source's ownership, update the golden record; return the event as
        accepted and its targets, or why it is not news.

        A change that leaves the golden record as it was is not routed: it is the echo of the hub's
        own write coming back (or news of nothing the hub syncs)."""
        kind = envelope.data.kind()
        golden = self.store.golden_get(envelope.subject)
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
        fresh = self.store.golden_put(Golden(
            canonical_id=envelope.subject, entity_type=kind, version=version,
            data=msgspec.to_builtins(envelope.data), source_event_id=envelope.source_event_id,
        ))
        if not fresh:
            why = "stale: a newer version of this record was already received"
            self.audit(envelope, "ingest", "stale", system=envelope.source, detail=why)
            return why
        self.store.log_event(LoggedEvent(
            id=envelope.id, type=envelope.type, source=envelope.source, subject=envelope.subject,
            correlation_id=envelope.correlation_id, occurred_at=envelope.occurred_at.timestamp(),
            envelope=encode_envelope(envelope),
        ))
        targets = self.router.targets(envelope.type, envelope.source)
        self.audit(envelope, "ingest", "routed", system=envelope.source,
                   detail=f"{envelope.type} -> {', '.join(targets) or 'no target'}")
        return envelope, targets

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
        self.store.set_applied_version(key, envelope.subject, version)
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
    def deliver(self, target: str, raw_envelope: dict[str, Any], *, bypass_circuit: bool = False,
                reply: JourneyReply | None = None) -> FollowOns:
        """Deliver one event to ``target``; returns what became of it and what follows from it.

        A journey's write (``reply`` set) sends no link events: the journey tells each system the
        others' ids itself, in its own order."""
        linked: list[str] = []
        self._local.linked = None if reply is not None else linked
        withheld: list[str] = []
        self._local.withheld = withheld
        with self.audit_batch():
            status, envelope = self._deliver(target, raw_envelope, bypass_circuit=bypass_circuit, reply=reply)
        if status != "delivered" or not linked or reply is not None:
            return FollowOns(status, withheld=withheld)
        return FollowOns(status, self._links(target, envelope, linked),
                         [link_mark(target, canonical_id) for canonical_id in dict.fromkeys(linked)], withheld)

    def followed(self, follow_ons: "FollowOns") -> None:
        """The follow-ons are enqueued: clear their link marks."""
        for mark in follow_ons.marks:
            self.store.delivery_set(mark, "acknowledged")

    def _deliver(self, target: str, raw_envelope: dict[str, Any], *, bypass_circuit: bool,
                 reply: JourneyReply | None) -> tuple[Literal["delivered", "parked", "stale"], Envelope]:
        envelope = decode_envelope(raw_envelope)
        bound = self.bound(target)
        circuit = self.circuit(target)
        if circuit.status == "open" and not bypass_circuit:
            circuit = self.store.circuit_get(target)  # the cache may be stale: decide on the store's word
            self._circuits[target] = (time.monotonic(), circuit)
        if circuit.status == "open" and not bypass_circuit:
            self.park(target, raw_envelope, envelope, "circuit open", reply)
            if circuit.opened_at is not None and time.time() - circuit.opened_at > self.stale_open_s:
                # Open for far longer than a probe takes: its probe was lost (a process died). Probe
                # again, and restart the clock so only this delivery does.
                self.store.circuit_reopen(target, time.time())
                self.on_circuit_open(target)
            return "parked", envelope
        refs: Refs = LinkedRefs(self.refs, envelope.subject, reply["links"]) if reply and reply["links"] else self.refs
        decided = reply is not None and reply.get("decides", False)
        try:
            with self.entity_lease(target, envelope.subject):
                if envelope.type.endswith(LINKED):
                    outcomes = self._apply(bound, target, envelope, refs, depth=0, decided=decided)
                else:
                    applied = self.store.applied_version(target, envelope.subject)
                    version = version_of(envelope)
                    if applied is not None and version < applied:
                        self.audit(envelope, "deliver", "stale", system=target,
                                   detail="a newer version was already delivered")
                        return "stale", envelope
                    if applied == version:  # the same instant again: write the settled state, not this copy
                        envelope = self._settled(envelope)
                    outcomes = self._apply(bound, target, envelope, refs, depth=0, decided=decided)
                    self.store.set_applied_version(target, envelope.subject, version)
        except Exception as error:
            failure = self.classified(bound, error)
            if failure.category is Category.TARGET_DOWN and not bypass_circuit:
                now = time.time()
                circuit = self.store.circuit_failure(target, self.circuit_threshold, now)
                self._circuits[target] = (time.monotonic(), circuit)
                if circuit.status == "open":
                    if circuit.failures == self.circuit_threshold:
                        self.on_circuit_open(target)
                    self.park(target, raw_envelope, envelope, str(failure), reply)
                    return "parked", envelope
            raise failure from error
        if circuit.failures and not bypass_circuit:
            self.store.circuit_close(target)
            self.forget_circuit(target)
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

    def park(self, target: str, raw_envelope: dict[str, Any], envelope: Envelope, why: str,
             reply: JourneyReply | None = None) -> None:
        message: dict[str, Any] = {"target": target, "envelope": raw_envelope}
        if reply is not None:
            message["reply"] = reply
        self.store.park(target, message)
        metrics.parked.labels(target).inc()
        self.audit(envelope, "deliver", "parked", system=target, detail=why)

    def _apply(self, bound: Bound, target: str, envelope: Envelope, refs: Refs, depth: int,
               decided: bool = False) -> list[Outcome]:
        """Plan and execute ``envelope`` in ``target``, delivering missing dependencies first.

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
                self._deliver_dependency(bound, target, envelope, missing, refs, depth)
                delivered.add(missing.canonical_id)
            except Exception as error:
                raise self.classified(bound, error, f"{target} plan of {envelope.type} {envelope.subject}") from error
        outcomes = [self._perform(bound, target, envelope, op) for op in operations]
        if not operations:
            self.audit(envelope, "deliver", "nothing to do", system=target)
        return outcomes

    def _deliver_dependency(self, bound: Bound, target: str, envelope: Envelope, missing: MissingDependency,
                            refs: Refs, depth: int) -> None:
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
        with self.entity_lease(target, golden.canonical_id):
            self._apply(bound, target, dependency, refs, depth + 1)
            self.store.set_applied_version(target, golden.canonical_id, golden.version)

    def _perform(self, bound: Bound, target: str, envelope: Envelope, op: Operation) -> Outcome:
        """Execute one operation exactly once in effect."""
        key = idempotency_key(target, envelope, op)
        state = self.store.delivery_get(key)
        outcome: Outcome | None = None
        if state is not None and state.status == "acknowledged" and state.external_id:
            outcome = Outcome(external_id=state.external_id)
            self.audit(envelope, op.name, "already done", system=target, detail=f"{target} id {state.external_id}")
        elif state is not None and state.status in ("sent", "ambiguous") and \
                Capability.PROBE in bound.connector.capabilities:
            # The earlier attempt may have landed (a timeout after sending, or a crash mid-call).
            outcome = self._probe(bound, op, key)
            self.audit(envelope, op.name, "probed", system=target,
                       detail=f"earlier attempt was {state.status}; "
                              + (f"found {outcome.external_id}" if outcome else "not applied, sending again"))
        if outcome is None:
            self.store.delivery_set(key, "sent")
            try:
                outcome = bound.connector.execute(bound.ctx, op, key)
            except Exception as error:
                failure = self.classified(bound, error)
                # Only a timeout after sending may have landed; any other answer says it did not.
                self.store.delivery_set(key, "ambiguous" if failure.category is Category.AMBIGUOUS else "failed")
                self.audit(envelope, op.name, "failed", system=target, detail=str(failure))
                raise failure from error
            self.audit(envelope, op.name, "delivered", system=target,
                       detail=f"{target} id {outcome.external_id}" + (" (created)" if outcome.created else "")
                       + (f"; withheld: {op.withheld}" if op.withheld else ""))
        withheld: list[str] | None = getattr(self._local, "withheld", None)
        if op.withheld and withheld is not None:  # recorded with the delivery's outcome (see deliver)
            withheld.append(op.withheld)
        self.store.delivery_set(key, "acknowledged", outcome.external_id)
        self._note_link(target, op, outcome)
        self.store.xref_put(op.canonical_id, op.entity_type, target, outcome.external_id)
        return outcome

    def _note_link(self, target: str, op: Operation, outcome: Outcome) -> None:
        """A first id in ``target`` must reach the other systems. The mark is durable until the
        link events are enqueued, so a delivery that fails later, or a lost enqueue, sends them on
        its retry (when the cross-reference is no longer new). A journey's write tells no one: the
        journey does, in its own order."""
        linked: list[str] | None = getattr(self._local, "linked", None)
        if linked is None or not self.router.targets(f"{op.entity_type}{LINKED}", target):
            return  # nobody to tell: no store work on the delivery path
        mark = link_mark(target, op.canonical_id)
        if self.store.xref_get(op.canonical_id, target) != outcome.external_id:
            self.store.delivery_set(mark, "sent", outcome.external_id)
        else:
            pending = self.store.delivery_get(mark)
            if pending is None or pending.status != "sent":
                return
        linked.append(op.canonical_id)

    def _probe(self, bound: Bound, op: Operation, key: str) -> Outcome | None:
        try:
            return bound.connector.probe(bound.ctx, op, key)
        except Exception as error:
            raise self.classified(bound, error) from error
