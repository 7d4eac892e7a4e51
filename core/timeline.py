"""One transaction's timeline, from the audit records.

A key is a correlation id (one inbound event and everything it caused), a journey run's id (the
trail of its correlation), or a canonical entity id; for an entity, the timeline joins the whole
trails of every correlation that touched it, so an invoice shows its webhook, ingest, parking,
probing and delivery, and those of its payments. Each correlation's outcome (the outcome ledger:
:mod:`crossledger.core.ledger`) is the step ``outcome`` in its trail.
"""

from datetime import UTC, datetime

from crossledger.core.stores.base import AuditRecord, OutcomeRecord, Store
from rich.table import Table


def timeline(store: Store, key: str, *, related: list[str] | None = None) -> list[AuditRecord]:
    """The audit records of ``key`` (and of the ``related`` entities), oldest first, with the outcome
    of each inbound message among them."""
    records = _trails(store, key, related or [])
    outcomes = [store.outcome_get(correlation) for correlation in dict.fromkeys(r.correlation_id for r in records)]
    return sorted(records + [outcome_record(found) for found in outcomes if found is not None],
                  key=lambda record: record.at)


def outcome_record(outcome: OutcomeRecord) -> AuditRecord:
    """A message's ledger entry as a line of its timeline."""
    if outcome.outcome == "pending":
        detail = "under way: " + ", ".join(outcome.pending)
    elif outcome.outcome == "delivered":
        detail = "to " + ", ".join(outcome.targets)
    else:
        detail = (f"{outcome.category}: " if outcome.category else "") + (outcome.reason or "")
    return AuditRecord(at=outcome.updated_at, correlation_id=outcome.correlation_id, step="outcome",
                       status=outcome.outcome, system=outcome.source, detail=detail)


def _trails(store: Store, key: str, related: list[str]) -> list[AuditRecord]:
    trail = store.audit_trail(key)
    if trail:
        return trail
    run = store.journey_get(key)
    if run is not None:
        return store.audit_trail(run.correlation_id)
    correlations = {record.correlation_id for subject in [key, *related]
                    for record in store.audit_for_subject(subject)}
    return [record for correlation in correlations for record in store.audit_trail(correlation)]


def when(ts: float) -> str:
    """A Unix time as UTC with milliseconds, for tables."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def timeline_table(records: list[AuditRecord], title: str) -> Table:
    table = Table(title=f"trace {title}")
    for column in ("time (UTC)", "step", "system", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("subject", "detail"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(when(record.at), record.step, record.system or "", record.status, record.subject or "",
                      record.detail or "")
    return table
