"""Repairs of a run's findings, through the hub's own idempotent effects.

A finding's ``repair`` is one of two actions, proposed only towards a system that is *not* the
system of record for what differs (:mod:`.engine` proposes none otherwise):

- ``deliver``: send the hub's golden record to the system that drifted, as a ``deliver`` message,
  exactly as a replay or a missing dependency would. Its source event id is
  ``reconcile:<run>:<target>:<subject>``, so its idempotency key is the same however often the
  repair of that run is applied: it writes once. Targets write by external id (NetSuite's
  ``eid:`` upsert), so a record deleted by hand is made again and a drifted one is overwritten.
  The message opens its own outcome entry (source ``reconcile``), so its result reads like any
  other's in ``crossledger trace``.
- ``recover``: the source's connector reads the record as it is now and wraps it as the event its
  dropped webhook would have carried (``Connector.recover``); the hub admits it like a webhook
  (deduplicated by that event's id) and routes it, so the golden record is brought up to date and
  every target gets it. A record unchanged since the hub last admitted it makes the same event,
  a duplicate that does nothing: that repair is reported failed (:class:`AlreadyAdmitted`), not applied.

:meth:`Repairs.run` with ``apply=False`` is the dry run: the count and a preview of what would be
sent, nothing enqueued. Several findings about one record (a total and a status that differ) are
one repair.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crossledger.canonical.events import encode_envelope, new_envelope
from crossledger.core.hub.pipeline import effect
from crossledger.core.reconcile.engine import EVENT_TYPES, latest_finished
from crossledger.core.store.base import AuditRecord, FindingClass, FindingRecord, ReconciliationRun

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

log = logging.getLogger(__name__)

SOURCE = "reconcile"
"""The source name repairs are admitted and accounted under (outcome entries, audit steps)."""


@dataclass
class RepairSummary:
    """What a dry run would do, or what an apply did: ``count`` repairs over ``findings`` findings."""

    run_id: str
    applied: bool
    count: int
    findings: int
    without_repair: int
    preview: list[dict[str, Any]] = field(default_factory=list)
    #: Repairs the hub could not do at apply time (the golden record gone, a connector's refusal).
    failed: list[str] = field(default_factory=list)

    @property
    def enqueued(self) -> int:
        """The repairs an apply enqueued (none for a dry run): its count less those that failed."""
        return self.count - len(self.failed) if self.applied else 0

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run_id, "applied": self.applied, "count": self.count, "enqueued": self.enqueued,
                "findings": self.findings, "without_repair": self.without_repair, "preview": self.preview,
                "failed": self.failed}


class AlreadyAdmitted(Exception):
    """A ``recover`` repair read the record as the hub already has it: admitting it again does nothing."""


class Repairs:
    """Selects a run's findings and repairs them (see the module doc)."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.store = runtime.store

    def select(self, run_id: str | None = None, *, cls: FindingClass | None = None, system: str | None = None,
               ids: list[str] | None = None) -> tuple[ReconciliationRun, list[FindingRecord]]:
        """The findings of ``run_id`` (the latest finished run by default) that match every filter.
        Raises KeyError for an unknown run, ValueError for a system that is not configured."""
        if system is not None and system not in self.runtime.connectors:
            configured = ", ".join(sorted(self.runtime.connectors))
            raise ValueError(f"no system {system!r} is configured here (configured: {configured})")
        run = self.store.reconciliation_get(run_id) if run_id else latest_finished(self.store)
        if run is None:
            raise KeyError(f"no reconciliation run {run_id!r}" if run_id else "no reconciliation has run yet")
        found = self.store.reconciliation_findings(run.id, cls=cls, system=system)
        return run, [f for f in found if ids is None or f.id in ids]

    def run(self, run: ReconciliationRun, findings: list[FindingRecord], *, apply: bool) -> RepairSummary:
        """The dry run (``apply`` false) or the repairs themselves, one per record and action."""
        planned: dict[tuple[str, ...], tuple[dict[str, Any], list[str]]] = {}
        for finding in findings:
            if finding.repair is not None:
                repair = finding.repair
                key = (repair["action"], repair.get("target") or repair.get("source", ""), repair["subject"])
                planned.setdefault(key, (repair, []))[1].append(finding.id)
        summary = RepairSummary(run.id, apply, len(planned), len(findings),
                                sum(1 for f in findings if f.repair is None))
        for repair, finding_ids in planned.values():
            summary.preview.append({**repair, "findings": finding_ids})
            if apply:
                try:
                    self._apply(run.id, repair)
                except Exception as error:  # one repair's failure must not stop the others
                    summary.failed.append(f"{repair['action']} {repair['subject']}: {type(error).__name__}: {error}")
                    log.warning("reconciliation %s: %s of %s failed: %s", run.id, repair["action"],
                                repair["subject"], type(error).__name__)
        if apply:
            log.info("reconciliation %s: %d repairs enqueued, %d failed", run.id, summary.enqueued,
                     len(summary.failed))
        return summary

    def _apply(self, run_id: str, repair: dict[str, Any]) -> None:
        if repair["action"] == "deliver":
            self._deliver(run_id, repair["target"], repair["subject"])
        elif repair["action"] == "recover":
            bound = self.runtime.connectors[repair["source"]]
            event = bound.connector.recover(bound.ctx, repair["entity"], repair["id"])
            if not self.runtime.admit(repair["source"], event, via=SOURCE):
                raise AlreadyAdmitted(f"{repair['source']}'s {repair['entity']} {repair['id']} is unchanged since the "
                                      "hub last admitted it (a recovered event's id hashes the record), so there is "
                                      "nothing new to route: see how that event ended in crossledger trace or the "
                                      "dead letters")
        else:
            raise ValueError(f"unknown repair action {repair['action']!r}")

    def _deliver(self, run_id: str, target: str, subject: str) -> None:
        golden = self.store.golden_get(subject)
        if golden is None:
            raise LookupError(f"the hub has no golden record of {subject}")
        source_event_id = f"{SOURCE}:{run_id}:{target}:{subject}"
        envelope = new_envelope(
            id=uuid.uuid5(uuid.NAMESPACE_URL, source_event_id).hex,
            type=EVENT_TYPES.get(golden.entity_type, f"{golden.entity_type}.upserted"),
            source="hub", source_event_id=source_event_id, data=golden.entity(),
            # The golden record's own version: never newer than what the target applied last, so the
            # repair cannot make a later genuine change look stale; an equal version writes the golden
            # record as it is (the pipeline's settled state).
            occurred_at=datetime.fromtimestamp(golden.version / 1_000_000, UTC),
        )
        now = time.time()
        # One unit of work, as an ingest's: the outcome entry with its pending delivery, the audit
        # record and the delivery recorded in flight commit together, and the delivery is enqueued
        # after; an entry can never wait for a delivery that was never sent.
        with self.runtime.handling(settle=False) as unit:
            self.runtime.ledger.opened(envelope.correlation_id, SOURCE, now, [effect(target, envelope.id)], {}, unit,
                                       subjects=[subject])
            unit.audit(AuditRecord(at=now, correlation_id=envelope.correlation_id, step=SOURCE, status="repair",
                                   system=target, event_id=envelope.id, subject=subject,
                                   detail=f"run {run_id}: deliver the golden record of {subject} to {target}"))
            self.runtime.outbox.deliver(target, encode_envelope(envelope))
