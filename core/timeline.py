"""One transaction's timeline, from the audit records.

A key is a correlation id (one inbound event and everything it caused), a journey run's id (the
trail of its correlation), or a canonical entity id; for an entity, the timeline joins the whole
trails of every correlation that touched it, so an invoice shows its webhook, ingest, parking,
probing and delivery, and those of its payments.
"""

from datetime import UTC, datetime

from crossledger.core.stores.base import AuditRecord, Store
from rich.table import Table


def timeline(store: Store, key: str, *, related: list[str] | None = None) -> list[AuditRecord]:
    """The audit records of ``key`` (and of the ``related`` entities), oldest first."""
    trail = store.audit_trail(key)
    if trail:
        return trail
    run = store.journey_get(key)
    if run is not None:
        return store.audit_trail(run.correlation_id)
    correlations = {record.correlation_id for subject in [key, *(related or [])]
                    for record in store.audit_for_subject(subject)}
    records = [record for correlation in correlations for record in store.audit_trail(correlation)]
    return sorted(records, key=lambda record: record.at)


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
