"""The journey engine: runs the journeys plugins declare (:mod:`crossledger.plugins.journey_definition`).

A run is a :class:`~crossledger.core.store.base.JourneyRecord` in the store, advanced by the
``journey`` actor one message at a time, under the run's lease:

1. A trigger (an ingested canonical event, or ``POST /v1/journeys/<name>``) stores the run, once
   per key, and sends ``journey(id)``.
2. ``journey(id)`` starts every pending step whose prerequisites are done: its ``run`` does its
   lookups inline and returns writes, which leave as ordinary ``deliver`` messages carrying a reply
   address. The step is *running* until each write is acknowledged.
3. The runtime hands each write's outcome to :meth:`Engine.on_outcome`, which answers
   ``journey(id, report)``: done, queued (the target's circuit is open: the
   write waits among the target's parked deliveries, spending no retries, and goes on when the
   target is back), or failed (refused for good, or out of retries: the hub's retry policy applies
   to the write as to any delivery, and its last word comes here instead of a dead letter). A
   step whose lookups run out of retries is an outcome too (:class:`StepExhausted`).
4. A failed step compensates (every done step's ``compensate``, last first) or parks the run, per
   its ``on_failure``. When every step is done the run is completed.
5. News about the subject routed to a system the journey covers, while its run is under way, is
   held by the run (``journey(id, hold)``) and delivered when it completes.

**Crash safety.** Messages are sent before the state that records them is stored: a crash in
between sends them again on redelivery, which is harmless, as every write's idempotency key is
derived from the run, step and phase. Step functions may therefore run more than once, and must be
safe to run again (their lookups, identity claims and record changes are idempotent). A worker
that starts sends ``resume`` to every unfinished run no message has touched for a while, which
re-sends the writes of its running steps (their acknowledged effects are skipped).

**Dependencies.** The engine sends through the hub's :class:`~crossledger.core.hub.outbox.Outbox`
and hears back only through :meth:`Engine.on_outcome` (and :meth:`Engine.routed` for an ingest's
deliveries); it never calls the runtime. It has one explicit dependency on the pipeline: the
pipeline's leases (a run's, a record's, an identity's) and its bound connectors (a step's lookups,
classified as the pipeline classifies a delivery's failure), so a step and a delivery serialize on
the same leases and read systems the same way.
"""

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import msgspec
from crossledger.canonical.entities import ContractTerms, Entity
from crossledger.canonical.events import Envelope, encode_envelope, new_envelope
from crossledger.core.hub.ledger import Ledger
from crossledger.core.hub.outbox import JourneyReply, Outbox, Report
from crossledger.core.hub.pipeline import INGEST_LEASE, Deliveries, DeliveryStatus, Pipeline, effect, merged
from crossledger.core.hub.roles import Roles
from crossledger.core.store.base import (
    FINISHED,
    AuditRecord,
    Golden,
    JourneyRecord,
    JourneyState,
    OutcomePart,
    StepRecord,
    Store,
)
from crossledger.core.telemetry import alerts, metrics, safelog
from crossledger.plugins.connector import Connector
from crossledger.plugins.errors import ConnectorError, described
from crossledger.plugins.journey_definition import (
    Journey,
    JourneyInputError,
    OnFailure,
    PastRun,
    Step,
    StepFailed,
    Trigger,
    Write,
)
from crossledger.plugins.types import Context

log = logging.getLogger(__name__)
T = TypeVar("T")

JOURNEY_LEASE = "journey"
IDENTITY_LEASE = "identity"
UNFINISHED: tuple[JourneyState, ...] = ("running", "waiting", "compensating", "parked")
RESUME_AFTER_S = 30.0
"""A worker that starts resumes the unfinished runs no message has touched for this long."""
SETTLED = ("done",)
COMPENSATING = "_compensating"
"""Marks a run's data while it compensates, so a parked compensation resumes as one."""
HELD = "_held"
"""A run's data: the routed deliveries held until it completes, as [target, envelope] pairs."""

class StepRetry(ConnectorError):
    """A step's lookup failed in a way a retry may fix; the hub's retry policy applies to the
    ``journey`` message. When retries run out, the step fails with this reason."""

    def __init__(self, journey_id: str, step: str, phase: Literal["run", "compensate"],
                 failure: ConnectorError) -> None:
        super().__init__(failure.category, failure.message, retry_after=failure.retry_after)
        self.journey_id = journey_id
        self.step = step
        self.phase = phase


@dataclass(frozen=True)
class Written:
    """A journey's write was delivered, superseded (``stale``), or parked on an open circuit."""

    reply: JourneyReply
    target: str
    status: DeliveryStatus | Literal["parked"]


@dataclass(frozen=True)
class WriteFailed:
    """A journey's write was refused for good or ran out of retries."""

    reply: JourneyReply
    target: str
    reason: str


@dataclass(frozen=True)
class StepExhausted:
    """A step's lookups ran out of retries."""

    error: StepRetry


StepOutcome = Written | WriteFailed | StepExhausted
"""What the runtime tells the engine about the messages a run sent (:meth:`Engine.on_outcome`)."""


class JourneySettings(msgspec.Struct, frozen=True, kw_only=True):
    """``[journeys.<name>]``: ``enabled``, ``sla_s``, the step policy (``after.<step>``: the steps
    it waits for; ``on_failure.<step>``: ``compensate`` or ``park``) and the journey's own keys
    (``options``)."""

    enabled: bool = True
    sla_s: float | None = None
    after: dict[str, tuple[str, ...]] = {}
    on_failure: dict[str, OnFailure] = {}
    options: dict[str, Any] = {}

    @classmethod
    def parse(cls, journey: Journey, raw: Mapping[str, Any]) -> "JourneySettings":
        """Validate a table against the journey it configures; ``ValueError`` with one line."""
        where = f"[journeys.{journey.name}]"
        enabled, sla_s = raw.get("enabled", True), raw.get("sla_s")
        if not isinstance(enabled, bool):
            raise ValueError(f"{where} enabled must be true or false")
        if sla_s is not None and (isinstance(sla_s, bool) or not isinstance(sla_s, int | float) or sla_s <= 0):
            raise ValueError(f"{where} sla_s must be a positive number of seconds")
        steps = [step.name for step in journey.steps]
        after, on_failure = raw.get("after", {}), raw.get("on_failure", {})
        if not isinstance(after, dict) or not isinstance(on_failure, dict):
            raise ValueError(f"{where} after and on_failure must be tables keyed by step name")
        for step, needs in after.items():
            if step not in steps or not isinstance(needs, list) or any(n not in steps or n == step for n in needs):
                raise ValueError(f"{where} after.{step} must be a step's list of other steps "
                                 f"(steps: {', '.join(steps)})")
        for step, policy in on_failure.items():
            if step not in steps or policy not in tuple(OnFailure):
                raise ValueError(f"{where} on_failure.{step} must name a step and be compensate or park "
                                 f"(steps: {', '.join(steps)})")
        options = {key: value for key, value in raw.items() if key not in ("enabled", "sla_s", "after", "on_failure")}
        return cls(enabled=enabled, sla_s=None if sla_s is None else float(sla_s),
                   after={step: tuple(needs) for step, needs in after.items()},
                   on_failure={step: OnFailure(policy) for step, policy in on_failure.items()}, options=options)


def journey_id(name: str, key: str) -> str:
    """A run's id: the same journey and key always name the same run."""
    return f"{name}-" + hashlib.sha256(f"{name}|{key}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Claim:
    """A journey's claim on a routed delivery: its outcome part (None: pending while a run holds
    it), why, and the run that holds it."""

    part: OutcomePart | None
    why: str
    hold: str | None = None


@dataclass
class Routed:
    """An ingest's deliveries after the journeys took theirs: those to send, the ledger parts the
    journeys settled, and the deliveries held by runs ((run id, target, envelope))."""

    deliveries: Deliveries
    settled: dict[str, OutcomePart] = field(default_factory=dict)
    holds: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def pending(self) -> list[str]:
        """The ledger tokens of the deliveries sent or held (not those held for a person, settled as
        conflicts): settled when delivered, or dropped."""
        held = [effect(target, envelope["id"]) for _, target, envelope in self.holds]
        return [effect(target, envelope["id"]) for target, envelope in self.deliveries] + \
            [token for token in held if token not in self.settled]


@dataclass
class Engine:
    """Starts, advances, resumes and cancels journey runs. One per runtime."""

    store: Store
    pipeline: Pipeline
    journeys: dict[str, Journey]
    settings: dict[str, JourneySettings]
    outbox: Outbox
    ledger: Ledger
    roles: Roles

    def __post_init__(self) -> None:
        # Every ingested event is checked for triggers: look them up by its type, once built.
        self._by_type: dict[str, list[tuple[Journey, Trigger]]] = {}
        for journey in self.enabled():
            for trigger in journey.triggers:
                self._by_type.setdefault(trigger.event_type, []).append((journey, trigger))

    # -- starting -----------------------------------------------------------------------------------
    def routed(self, events: list[Envelope], deliveries: Deliveries) -> "Routed":
        """After an ingest: start the journeys its events trigger, and return the routes' deliveries
        less those a journey takes over (:attr:`Journey.covers`): settled at once in the outcome
        ledger, or held by a run (sent by :meth:`hold` once the ledger has them pending)."""
        claims: dict[tuple[str, str], Claim] = {}  # (event id, target) -> what the journey does with it
        for event in events:
            for journey, trigger in self._triggers(event):
                key = trigger.key(event)
                if trigger.starts(event, View(self)):
                    data = trigger.inputs(event) if trigger.inputs else {}
                    run: JourneyRecord | None = self.start(
                        journey, subject=trigger.subject(event), key=key, data=data,
                        correlation_id=event.correlation_id, trigger=event.id)[0]
                elif journey.covers:
                    run = self.store.journey_get(journey_id(journey.name, key))
                else:
                    continue  # it takes over no system's routes: no run of it changes where this goes
                for target in filter(None, map(self.roles.system, journey.covers)):
                    claim = self._claim(journey, run, event, target)
                    if claim is not None:
                        claims.setdefault((event.id, target), claim)
        routed = Routed(deliveries=[] if claims else deliveries)
        for target, envelope in deliveries if claims else ():
            claim = claims.get((envelope["id"], target))
            if claim is None:
                routed.deliveries.append((target, envelope))
                continue
            self._audit_envelope(envelope, target, claim.why)
            if claim.hold is not None:
                routed.holds.append((claim.hold, target, envelope))
            if claim.part is not None:
                routed.settled[effect(target, envelope["id"])] = claim.part
        return routed

    def hold(self, holds: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Hand the held deliveries to their runs (:meth:`routed`)."""
        for run_id, target, envelope in holds:
            self.outbox.journey(run_id, Report(status="hold", target=target, envelope=envelope))

    def dropped(self, target: str, envelope: dict[str, Any], part: OutcomePart, run: JourneyRecord) -> None:
        """A held delivery its run will not release: settled in the ledger with the reason."""
        self._audit(run, "dropped", f"{envelope['type']} held for {target}: {part.reason}", target)
        self.ledger.settle(envelope, target, part, [])

    def _claim(self, journey: Journey, run: JourneyRecord | None, event: Envelope, target: str) -> "Claim | None":
        """What ``journey`` does with the event's delivery to ``target``, a system it covers; None
        when nothing: the delivery goes by the routes, as it does once no run is or will be making
        the subject there (the system has it already: born there, or onboarded before).

        An unfinished run makes it (its own trigger) or holds it until it completes (news its steps
        may have missed); a run parked or undone holds it for a person. A system without the subject
        gets nothing from the routes: a journey's step is what creates it there (a prospect is not
        pushed to billing; a second CRM account of a known company is not billed twice)."""
        if run is not None and run.state not in FINISHED:
            if run.trigger == event.id:
                return Claim(OutcomePart(outcome="delivered", target=f"journey:{run.id}"),
                             "a journey's to make")
            if run.state == "parked":
                why = f"held by journey run {run.id}, parked for an operator: {run.reason}"
                return Claim(OutcomePart(outcome="conflict", target=target, reason=why), why, hold=run.id)
            return Claim(None, "held until the journey completes", hold=run.id)  # pending until released
        if run is not None and run.state != "completed":
            why = f"{journey.name} run {run.id} was {run.state} ({run.reason}); not delivered to {target} " \
                  f"until it is onboarded again"
            return Claim(OutcomePart(outcome="conflict", target=target, reason=why), why)
        if self.store.xref_get(event.subject, target) is not None:
            return None
        why = f"{target} does not have {event.subject}: " + (
            f"{journey.name} makes it there when a run starts" if run is None
            else f"{journey.name} run {run.id} completed without making it there")
        return Claim(OutcomePart(outcome="noop", target=target, reason=why), why)

    def _triggers(self, event: Envelope) -> list[tuple[Journey, Trigger]]:
        playing = self.roles.role_of(event.source)
        return [(journey, trigger) for journey, trigger in self._by_type.get(event.type, ())
                if trigger.matches(event, playing)]

    def enabled(self) -> list[Journey]:
        return [journey for name, journey in self.journeys.items()
                if self.settings.get(name, JourneySettings()).enabled]

    def _audit_envelope(self, envelope: dict[str, Any], target: str, why: str) -> None:
        self.store.audit(AuditRecord(at=time.time(), correlation_id=envelope["correlation_id"], step="route",
                                     status="journey", system=target, event_id=envelope["id"],
                                     subject=envelope["subject"], detail=f"{envelope['type']} to {target}: {why}"))

    def start_by_hand(self, name: str, body: dict[str, Any]) -> tuple[JourneyRecord, bool]:
        """``POST /v1/journeys/<name>``: the run, and whether it is new. Raises ``KeyError`` for an
        unknown or disabled journey, :class:`JourneyInputError` for unacceptable input."""
        journey = next((j for j in self.enabled() if j.name == name), None)
        if journey is None:
            raise KeyError(name)
        if journey.start is None:
            raise JourneyInputError(f"journey {name} starts from its triggers only")
        start = journey.start(body)
        return self.start(journey, subject=start.subject, key=start.key, data=start.data,
                          correlation_id=uuid.uuid4().hex, trigger="api")

    def start(self, journey: Journey, *, subject: str, key: str, data: dict[str, Any], correlation_id: str,
              trigger: str) -> tuple[JourneyRecord, bool]:
        """Store the run unless its key has one, and send it on its way; (the run, whether new)."""
        now = time.time()
        record = JourneyRecord(
            id=journey_id(journey.name, key), name=journey.name, version=journey.version, key=key,
            subject=subject, state="running", correlation_id=correlation_id, started_at=now, updated_at=now,
            steps={step.name: StepRecord() for step in journey.steps}, data=data, trigger=trigger,
            sla_s=self._sla(journey),
        )
        # A trigger seen again (every edit of a won account) is the common case: read before writing.
        existing = self.store.journey_get(record.id)
        if existing is None and not self.store.journey_start(record):
            existing = self.store.journey_get(record.id)  # started elsewhere just now
            assert existing is not None, "journey_start refused a run the store does not have"
        if existing is not None:
            if existing.state in ("compensated", "cancelled"):
                # Undone or stopped: the trigger seen again (the cause fixed at the source) starts
                # a new run, keyed after the old one.
                return self.start(journey, subject=subject, key=f"{key}#after:{existing.id}", data=data,
                                  correlation_id=correlation_id, trigger=trigger)
            if existing.state not in FINISHED:
                self.outbox.journey(existing.id, None)  # harmless if it is moving already
            return existing, False
        metrics.journeys_started.labels(journey.name).inc()
        self._audit(record, "started", f"{journey.name} v{journey.version} for {subject} ({trigger})")
        self.outbox.journey(record.id, None)
        return record, True

    def needs(self, journey: Journey, step: str) -> tuple[str, ...]:
        """The steps ``step`` waits for: as configured, else as the journey declares."""
        configured = self.settings.get(journey.name)
        if configured is not None and step in configured.after:
            return configured.after[step]
        return journey.needs(step)

    def on_failure(self, journey: Journey, step: Step) -> OnFailure:
        configured = self.settings.get(journey.name)
        if configured is not None and step.name in configured.on_failure:
            return configured.on_failure[step.name]
        return step.on_failure

    def _sla(self, journey: Journey) -> float | None:
        configured = self.settings.get(journey.name)
        return configured.sla_s if configured and configured.sla_s is not None else journey.sla_s

    # -- advancing ----------------------------------------------------------------------------------
    def advance(self, run_id: str, report: Report | None) -> None:
        """The ``journey`` actor: apply ``report``, then move the run as far as it can go now."""
        with self.pipeline.entity_lease(JOURNEY_LEASE, run_id):
            record = self.store.journey_get(run_id)
            if record is None:
                log.warning("journey %s is not in the store; message dropped", run_id)
                return
            journey = self.journeys.get(record.name)
            run = Run(self, record, journey)
            try:
                run.advance(report)
            finally:
                self.store.journey_put(run.record())

    def on_outcome(self, outcome: StepOutcome) -> None:
        """What became of a message a run sent, told to the run: a write delivered (or superseded:
        stale) is done, one parked on an open circuit is queued, one refused or out of retries fails
        its step, as do lookups out of retries."""
        if isinstance(outcome, StepExhausted):
            error = outcome.error
            self.outbox.journey(error.journey_id, Report(status="failed", step=error.step, phase=error.phase,
                                                         detail=f"gave up retrying: {error.message}"))
            return
        reply = outcome.reply
        report = Report(step=reply["step"], phase=reply["phase"], target=outcome.target, write=reply["write"])
        if isinstance(outcome, WriteFailed):
            report["status"], report["detail"] = "failed", outcome.reason
        elif outcome.status == "parked":
            report["status"] = "queued"
            report["detail"] = f"{outcome.target} is unavailable (circuit open); the write waits for it"
        else:
            report["status"] = "done"
        self.outbox.journey(reply["id"], report)

    # -- operating ----------------------------------------------------------------------------------
    def resume(self, run_id: str) -> JourneyRecord:
        """An operator's ``resume``: a parked run retries its failed step (a compensation that
        failed is tried again); an unfinished one is nudged. Raises ``KeyError``/``ValueError``."""
        with self.pipeline.entity_lease(JOURNEY_LEASE, run_id):
            record = self._get(run_id)
            if record.state in FINISHED:
                raise ValueError(f"journey {run_id} is {record.state}; there is nothing to resume")
            steps = dict(record.steps)
            if record.state == "parked":
                compensating = record.data.get(COMPENSATING) is True
                for name, step in steps.items():
                    if step.status == "failed" and not compensating:
                        steps[name] = msgspec.structs.replace(step, status="pending", waiting_on=[], detail=None)
                state: Any = "compensating" if compensating else "running"
                record = msgspec.structs.replace(record, state=state, steps=steps, reason=None,
                                                 updated_at=time.time())
                self.store.journey_put(record)
            self._audit(record, "resumed", "by an operator")
        self.outbox.journey(run_id, Report(status="resume"))
        return record

    def cancel(self, run_id: str) -> JourneyRecord:
        """An operator's ``cancel``: the run stops where it is; what its steps did stays done."""
        with self.pipeline.entity_lease(JOURNEY_LEASE, run_id):
            record = self._get(run_id)
            if record.state in FINISHED:
                raise ValueError(f"journey {run_id} is already {record.state}")
            now = time.time()
            held = record.data.get(HELD, [])
            data = {key: value for key, value in record.data.items() if key != HELD}
            record = msgspec.structs.replace(record, state="cancelled", finished_at=now, updated_at=now,
                                             reason="cancelled by an operator", data=data)
            self.store.journey_put(record)
        Run(self, record, self.journeys.get(record.name)).drop(held)
        self._audit(record, "cancelled", "by an operator; steps already done stay done")
        return record

    def overdue(self) -> dict[str, int]:
        """Unfinished runs past their SLA now, by journey (every enabled journey, zeros included)."""
        counts = dict.fromkeys((journey.name for journey in self.enabled()), 0)
        now = time.time()
        for state in UNFINISHED:
            for record in self.store.journeys(state=state, limit=10_000):
                if record.sla_s is not None and now - record.started_at > record.sla_s:
                    counts[record.name] = counts.get(record.name, 0) + 1
        return counts

    def recover(self) -> int:
        """At worker start: resume unfinished runs no message has touched for a while."""
        resumed = 0
        for state in ("running", "waiting", "compensating"):
            for record in self.store.journeys(state=state, limit=10_000):
                if time.time() - record.updated_at > RESUME_AFTER_S:
                    self.outbox.journey(record.id, Report(status="resume"))
                    resumed += 1
        return resumed

    def _get(self, run_id: str) -> JourneyRecord:
        record = self.store.journey_get(run_id)
        if record is None:
            raise KeyError(f"no journey {run_id!r}")
        return record

    def _audit(self, record: JourneyRecord, status: str, detail: str, system: str | None = None) -> None:
        self.store.audit(AuditRecord(at=time.time(), correlation_id=record.correlation_id,
                                     step=f"journey {record.name}", status=status, system=system,
                                     subject=record.subject, detail=f"{record.id}: {detail}"))


class View:
    """What a trigger reads of the hub (:class:`~crossledger.plugins.journey_definition.HubView`); a run's
    steps read the same, and more (:class:`Run`)."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    def golden(self, canonical_id: str) -> Entity | None:
        golden = self.engine.store.golden_get(canonical_id)
        if golden is None:
            return None
        return golden.entity()

    def external_id(self, canonical_id: str, system: str) -> str | None:
        found = self.engine.roles.system(system)
        return None if found is None else self.engine.store.xref_get(canonical_id, found)

    def latest(self, journey: str, subject: str) -> PastRun | None:
        found = self.engine.store.journeys(name=journey, subject=subject, limit=1)
        if not found:
            return None
        return PastRun(state=found[0].state, started_at=found[0].started_at, data=found[0].data)


class Run(View):
    """One advance of one run: a working copy of its record, stored by the engine at the end."""

    def __init__(self, engine: Engine, record: JourneyRecord, journey: Journey | None) -> None:
        super().__init__(engine)
        self.journey = journey
        self.id = record.id
        self.subject = record.subject
        self.data: dict[str, Any] = dict(record.data)
        self._record = record
        self._steps = dict(record.steps)
        self._state = record.state
        self._reason = record.reason
        self._finished_at = record.finished_at
        self._breached = record.sla_breached

    def record(self) -> JourneyRecord:
        return msgspec.structs.replace(
            self._record, state=self._state, steps=self._steps, data=self.data, reason=self._reason,
            finished_at=self._finished_at, updated_at=time.time(), sla_breached=self._breached)

    # -- the state machine --------------------------------------------------------------------------
    def advance(self, report: Report | None) -> None:
        if report is not None and report.get("status") == "hold":
            self._hold(report.get("target", ""), report.get("envelope", {}))
            return
        if self._state in FINISHED:
            return
        if self.journey is None:
            self._park(f"no journey named {self._record.name!r} is installed")
            return
        if self.journey.version != self._record.version:
            log.warning("journey %s started as %s v%d runs on v%d", self.id, self.journey.name,
                        self._record.version, self.journey.version)
        resend = report is not None and report.get("status") == "resume"
        if report is not None and not resend:
            self._apply(report)
        if self._state == "compensating":
            self._compensate(resend)
        elif self._state != "parked":
            self._forward(resend)
        self._check_sla()

    def _apply(self, report: Report) -> None:
        """A write's outcome (or a step's lookups out of retries) reported back."""
        name, phase = report.get("step", ""), report.get("phase", "run")
        step = self._steps.get(name)
        status, target, detail = report.get("status"), report.get("target"), report.get("detail") or ""
        expected = ["compensating"] if phase == "compensate" else ["running", "queued"]
        if status == "failed" and target is None:
            # The step's own lookups ran out of retries: it never got as far as sending its writes.
            expected.append("done" if phase == "compensate" else "pending")
        if step is None or step.status not in expected:
            return  # a late or repeated report about a step that has moved on
        if report.get("write") is not None and report.get("write") not in step.waiting_on:
            return  # about a write already acknowledged (a copy re-sent by a resume landed)
        if status == "failed":
            self._step_failed(name, phase, detail, target)
        elif status == "queued" and phase == "run":
            if step.status != "queued":
                self._alert_queued(name, target or "?", detail)
            self._set(name, status="queued", detail=detail)
        elif status == "done":
            waiting = [token for token in step.waiting_on if token != report.get("write")]
            if waiting:
                self._set(name, waiting_on=waiting)
            else:
                self._settle(name, phase, "")

    def _forward(self, resend: bool) -> None:
        assert self.journey is not None
        retrying: dict[str, StepRetry] = {}
        progressed = True
        while progressed:
            failed = [name for name, step in self._steps.items() if step.status == "failed"]
            if failed:
                self._fail(self.journey.step(failed[0]))
                return
            progressed = False
            for step in self.journey.steps:
                record = self._steps[step.name]
                ready = all(self._steps[need].status in SETTLED for need in self.engine.needs(self.journey, step.name))
                if step.name in retrying or not ((record.status == "pending" and ready) or
                                                 (resend and record.status == "running")):
                    continue
                try:
                    self._run_step(step, "run", only=record.waiting_on if record.status == "running" else None)
                except StepRetry as retry:
                    retrying[step.name] = retry  # the steps that do not need it go on meanwhile
                    continue
                progressed = progressed or record.status == "pending"
            resend = False
        statuses = [step.status for step in self._steps.values()]
        if all(status in SETTLED for status in statuses):
            self._complete()
        else:
            self._state = "waiting" if "queued" in statuses else "running"
        if retrying:
            raise next(iter(retrying.values()))

    def _fail(self, step: Step) -> None:
        assert self.journey is not None
        reason = f"step {step.name} failed: {self._steps[step.name].detail}"
        if self.engine.on_failure(self.journey, step) is OnFailure.PARK:
            self._park(reason)
            return
        self._state, self._reason = "compensating", reason
        self.data[COMPENSATING] = True
        self.engine._audit(self._record, "compensating", reason)
        self._compensate(resend=False)

    def _compensate(self, resend: bool) -> None:
        """Undo the done steps, last first, one at a time; then the run is compensated."""
        assert self.journey is not None
        if any(step.status in ("running", "queued") for step in self._steps.values()):
            return  # a write still under way may land: undo it too, once it reports
        for step in reversed(self.journey.steps):
            record = self._steps[step.name]
            if record.status == "compensating":
                if resend:
                    self._run_step(step, "compensate", only=record.waiting_on)
                return
            if record.status != "done":
                continue
            self._run_step(step, "compensate")
            if self._steps[step.name].status == "compensating" or self._state == "parked":
                return
        self._state, self._finished_at = "compensated", time.time()
        self.drop(self.data.pop(HELD, []))  # nothing was made for them to update
        metrics.journeys_compensated.labels(self._record.name).inc()
        alerts.journey(self._record.name, self.id, "compensated", self._reason or "")
        self.engine._audit(self._record, "compensated", self._reason or "")

    def _run_step(self, step: Step, phase: Literal["run", "compensate"], only: list[str] | None = None) -> None:
        """Run a step's function (or its compensation) and send its writes; with ``only``, send
        again the writes still unacknowledged (a resume)."""
        function = step.run if phase == "run" else step.compensate
        record = self._steps[step.name]
        self._set(step.name, attempts=record.attempts + 1, started_at=record.started_at or time.time())
        try:
            writes = [self._resolved(write) for write in function(self) or []] if function is not None else []
        except StepFailed as failure:
            self._step_failed(step.name, phase, str(failure))
            return
        except ConnectorError as error:
            if error.category.retryable:
                raise StepRetry(self.id, step.name, phase, error) from error
            self._step_failed(step.name, phase, str(error))
            return
        except Exception as error:  # a defect in the step's code: no retry fixes it
            log.exception("journey %s step %s (%s) raised", self.id, step.name, phase)
            self._step_failed(step.name, phase, described(error, safelog.REASON_TYPES))
            return
        tokens = {f"{index}:{write.target}": write for index, write in enumerate(writes)}
        if only is not None:
            tokens = {token: write for token, write in tokens.items() if token in only}
            for token, write in tokens.items():
                self._send(step.name, phase, token, write)
            return
        if not tokens:
            self._settle(step.name, phase, "nothing to write" if function is not None else "nothing to undo")
            return
        for token, write in tokens.items():
            self._send(step.name, phase, token, write)
        self._set(step.name, status="running" if phase == "run" else "compensating", waiting_on=sorted(tokens))
        self.engine._audit(self._record, f"{phase} sent", f"{step.name}: " + ", ".join(
            f"{write.event_type} to {write.target}" for write in tokens.values()))

    def _settle(self, name: str, phase: str, note: str) -> None:
        """A step's writes are all acknowledged (or it had none)."""
        status: Any = "done" if phase == "run" else "compensated"
        self._set(name, status=status, waiting_on=[], detail=note or None, finished_at=time.time())
        self.engine._audit(self._record, "step done" if phase == "run" else "compensated",
                           f"{name}" + (f" ({note})" if note else ""))

    def _step_failed(self, name: str, phase: str, reason: str, target: str | None = None) -> None:
        """A forward step that fails fails the run (per its policy); a compensation that fails
        parks it, the step left done so that ``resume`` tries the compensation again."""
        if phase == "run":
            self._set(name, status="failed", detail=reason, waiting_on=[], finished_at=time.time())
            self.engine._audit(self._record, "step failed", f"{name}: {reason}", target)
            return
        self._set(name, status="done", detail=f"compensation failed: {reason}", waiting_on=[])
        self._park(f"compensating {name} failed: {reason} (after {self._reason})")

    def _send(self, step: str, phase: Literal["run", "compensate"], token: str, write: Write) -> None:
        golden = self.engine.store.golden_get(write.entity.id)
        occurred = datetime.fromtimestamp(golden.version / 1_000_000, UTC) if golden else datetime.now(UTC)
        envelope = new_envelope(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"journey/{self.id}/{step}/{phase}/{token}").hex,
            type=write.event_type, source="hub", source_event_id=f"journey:{self.id}:{step}:{phase}",
            data=write.entity, occurred_at=occurred, correlation_id=self._record.correlation_id,
        )
        reply = JourneyReply(id=self.id, step=step, phase=phase, write=token, links=dict(write.links),
                             decides=write.decides)
        self.engine.outbox.deliver(write.target, encode_envelope(envelope), reply)

    def _hold(self, target: str, envelope: dict[str, Any]) -> None:
        """News about the subject for a system the run covers: delivered once the run completes (if
        that system then has the subject), dropped if the run is undone or cancelled."""
        if self._state == "completed":
            self._release([(target, envelope)])
        elif self._state not in FINISHED:
            held = self.data.setdefault(HELD, [])
            if [target, envelope] not in held:
                held.append([target, envelope])
        else:
            self.drop([(target, envelope)])

    def _release(self, held: list[Any]) -> None:
        for target, envelope in held:
            if self.engine.store.xref_get(self.subject, target) is not None:
                self.engine.outbox.deliver(target, envelope)
                self.engine._audit(self._record, "released", f"{envelope['type']} held for {target}", target)
            else:
                self.engine.dropped(target, envelope, OutcomePart(outcome="noop", target=target, reason=(
                    f"journey run {self.id} completed without making {self.subject} in {target}")), self._record)

    def drop(self, held: list[Any]) -> None:
        """Held deliveries of a run undone (a conflict for the person who sees the run's reason) or
        cancelled (an operator's decision: a no-op)."""
        outcome: Any = "noop" if self._state == "cancelled" else "conflict"
        for target, envelope in held:
            self.engine.dropped(target, envelope, OutcomePart(outcome=outcome, target=target, reason=(
                f"journey run {self.id} was {self._state} ({self._reason}); not delivered")), self._record)

    def _complete(self) -> None:
        now = time.time()
        self._state, self._finished_at, self._reason = "completed", now, None
        self.data.pop(COMPENSATING, None)
        self._release(self.data.pop(HELD, []))
        duration = now - self._record.started_at
        metrics.journeys_completed.labels(self._record.name).inc()
        metrics.journey_duration.labels(self._record.name).observe(duration)
        self.engine._audit(self._record, "completed", f"in {duration:.1f} s")

    def _park(self, reason: str) -> None:
        self._state, self._reason = "parked", reason
        metrics.journeys_parked.labels(self._record.name).inc()
        alerts.journey(self._record.name, self.id, "parked", reason)
        self.engine._audit(self._record, "parked", reason)

    def _alert_queued(self, step: str, target: str, detail: str) -> None:
        metrics.journey_steps_queued.labels(self._record.name, target).inc()
        log.warning("journey %s step %s is queued: %s", self.id, step, detail)
        alerts.journey(self._record.name, self.id, "queued", f"{step}: {detail}")
        self.engine._audit(self._record, "queued", f"{step}: {detail}", target)

    def _check_sla(self) -> None:
        sla = self._record.sla_s
        if sla is None or self._breached:
            return
        end = self._finished_at or time.time()
        if end - self._record.started_at > sla:
            self._breached = True
            metrics.journeys_sla_breached.labels(self._record.name).inc()
            self.engine._audit(self._record, "sla breached", f"not completed within {sla:g} s")

    def _set(self, name: str, **changes: Any) -> None:
        self._steps[name] = msgspec.structs.replace(self._steps[name], **changes)

    # -- what step functions see (JourneyRun) -------------------------------------------------------
    def configured(self, system: str) -> bool:
        return self.engine.roles.system(system) in self.engine.pipeline.connectors

    def save(self, entity: Entity, groups: tuple[str, ...] | None = None) -> None:
        # Under the ingest lease, at the record's own version: a source's change racing with this
        # one is neither lost nor made stale by it (the hub's write is not a newer version).
        store = self.engine.store
        with self.engine.pipeline.entity_lease(INGEST_LEASE, entity.id):
            current = store.golden_get(entity.id)
            if current is not None and groups is not None:
                entity = merged(current.entity(), entity, groups)
            store.golden_put(Golden(
                canonical_id=entity.id, entity_type=entity.kind(),
                version=current.version if current else version_of_now(), data=msgspec.to_builtins(entity),
                source_event_id=current.source_event_id if current else f"journey:{self.id}"))

    def link(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        self.engine.store.xref_put(canonical_id, entity_type, self._named(system), external_id)

    def fetch(self, system: str, entity_type: str, external_id: str) -> dict[str, Any]:
        return self._read(system, lambda connector, ctx: connector.fetch(ctx, entity_type, external_id))

    def contract_terms(self, system: str, customer_id: str) -> ContractTerms:
        return self._read(system, lambda connector, ctx: connector.contract_terms(ctx, customer_id))

    def _read(self, system: str, read: Callable[[Connector, Context], T]) -> T:
        """A lookup in ``system``, its failure classified as the hub classifies a delivery's."""
        bound = self.engine.pipeline.bound(self._named(system))
        try:
            return read(bound.connector, bound.ctx)
        except Exception as error:
            raise self.engine.pipeline.classified(bound, error) from error

    def _named(self, system: str) -> str:
        """The connector a step's system (a name, or a role such as ``billing``) stands for."""
        return self.engine.roles.system(system) or system

    def _resolved(self, write: Write) -> Write:
        """``write`` with its target and its links' systems named by connector."""
        return replace(write, target=self._named(write.target),
                       links={self._named(system): found for system, found in write.links.items()})

    def settings(self) -> Mapping[str, Any]:
        configured = self.engine.settings.get(self._record.name)
        return configured.options if configured else {}

    def remember(self, canonical_id: str, entity_type: str, key: str, value: str) -> str:
        # A durable mark like a delivery's state, taken under a lease: the first claim wins.
        mark = f"identity|{entity_type}|{key}|{value}"
        store = self.engine.store
        with self.engine.pipeline.entity_lease(IDENTITY_LEASE, mark):
            holder = store.delivery_get(mark)
            if holder is not None and holder.external_id:
                return holder.external_id
            store.delivery_set(mark, "acknowledged", canonical_id)
            return canonical_id


def version_of_now() -> int:
    """A version for a record the hub makes itself: now, in microseconds (as :func:`version_of`)."""
    return int(time.time() * 1_000_000)


