"""One transaction's timeline, from the audit records.

A key is a correlation id (one inbound event and everything it caused), a journey run's id (the
trail of its correlation), a canonical entity id, or any system's id for a record or an event: a
Stripe ``cus_...`` or ``evt_...``, a Salesforce ``001...``, a NetSuite internal id, a Zendesk id.
For an entity, the timeline joins the whole trails of every correlation that touched it, so an
invoice shows its webhook, ingest, parking, probing and delivery, and those of its payments. A
system's id is found through the store's cross-references (record ids) and its inbox (event ids).
Each correlation's outcome (the outcome ledger: :mod:`crossledger.core.hub.ledger`) is the step
``outcome`` in its trail.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from crossledger.canonical.entities import ENTITY_TYPES
from crossledger.core.store.base import AuditRecord, OutcomeRecord, Store
from rich import box
from rich.markup import escape
from rich.table import Table


def timeline(store: Store, key: str, *, related: list[str] | None = None,
             systems: Iterable[str] = ()) -> list[AuditRecord]:
    """The audit records of ``key`` (and of the ``related`` entities), oldest first, with the outcome
    of each inbound message among them; a key none of the hub's own ids match is looked up as an id
    in each of ``systems`` (connector names)."""
    records = _trails(store, key, related or [], list(systems))
    outcomes = [store.outcome_get(correlation) for correlation in dict.fromkeys(r.correlation_id for r in records)]
    return sorted(records + [outcome_record(found) for found in outcomes if found is not None],
                  key=lambda record: record.at)


def outcome_record(outcome: OutcomeRecord) -> AuditRecord:
    """A message's ledger entry as a line of its timeline, with the record it is about as its
    subject when it is about one (a message of several changes leaves that to its lines)."""
    if outcome.outcome == "pending":
        detail = "under way: " + ", ".join(outcome.pending)
    elif outcome.outcome == "delivered":
        detail = "to " + ", ".join(outcome.targets)
    else:
        detail = (f"{outcome.category}: " if outcome.category else "") + (outcome.reason or "")
    subject = outcome.subjects[0] if outcome.subjects and len(outcome.subjects) == 1 else None
    return AuditRecord(at=outcome.updated_at, correlation_id=outcome.correlation_id, step="outcome",
                       status=outcome.outcome, system=outcome.source, subject=subject, detail=detail)


def _trails(store: Store, key: str, related: list[str], systems: list[str]) -> list[AuditRecord]:
    trail = store.audit_trail(key)
    if trail:
        return trail
    run = store.journey_get(key)
    if run is not None:
        return store.audit_trail(run.correlation_id)
    records = _of_subjects(store, [key, *related])
    if records or not systems:
        return records
    correlations, subjects = system_id(store, key, systems)
    found = [record for correlation in correlations for record in store.audit_trail(correlation)]
    return _oldest_first(found + _of_subjects(store, subjects))


def system_id(store: Store, key: str, systems: list[str]) -> tuple[set[str], set[str]]:
    """What ``key`` is as one of ``systems``' ids: the correlations of the inbound events with that
    source event id, and the canonical ids of the records linked to it (an id may mean several)."""
    correlations = {entry.correlation_id for system in systems
                    if (entry := store.inbox_get(system, key)) is not None}
    lookups = [("xref_find", (entity_type, system, key)) for system in systems for entity_type in ENTITY_TYPES]
    subjects = {canonical for canonical in store.read(lookups) or [] if canonical is not None}  # one round trip
    return correlations, subjects


def _of_subjects(store: Store, subjects: Iterable[str]) -> list[AuditRecord]:
    correlations = {record.correlation_id for subject in subjects for record in store.audit_for_subject(subject)}
    return _oldest_first([record for correlation in correlations for record in store.audit_trail(correlation)])


def _oldest_first(records: list[AuditRecord]) -> list[AuditRecord]:
    unique = {(record.at, record.correlation_id, record.step, record.status, record.detail): record
              for record in records}
    return sorted(unique.values(), key=lambda record: record.at)


def when(ts: float) -> str:
    """A Unix time as UTC with milliseconds, for tables."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


NARROW = 120
"""A console narrower than this shows a step's system above the step, not beside it."""


def timeline_table(records: list[AuditRecord], title: str, width: int | None = None) -> Table:
    """The timeline as a table that reads at 80 columns: no column rules, the day once in the title
    when every step is on it (each row then shows the time of day), the system and its step in one
    cell (on a console ``width`` narrower than :data:`NARROW`, the system above the step), and a
    record's canonical id above its detail only where the subject changes, since a transaction's
    steps are mostly about one record."""
    days = {datetime.fromtimestamp(record.at, UTC).date() for record in records}
    one_day = len(days) == 1
    table = Table(title=f"trace {title}" + (f" on {days.pop().isoformat()} (UTC)" if one_day else ""),
                  box=box.SIMPLE_HEAD)
    table.add_column("time" if one_day else "time (UTC)", no_wrap=True)
    table.add_column("system, step", max_width=16 if width is not None and width < NARROW else None)
    table.add_column("status")
    table.add_column("detail", overflow="fold", ratio=1)
    shown = None
    for record in records:
        at = when(record.at)
        detail = escape(record.detail or "")
        if record.subject and record.subject != shown:
            detail = f"[dim]{escape(record.subject)}[/dim]" + (f"\n{detail}" if detail else "")
            shown = record.subject
        table.add_row(at[11:] if one_day else at, f"{record.system} {record.step}" if record.system else record.step,
                      record.status, detail)
    return table
