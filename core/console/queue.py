"""The exceptions queue: everything waiting for a person, in one list, and what a person does to it.

An item is a dead letter (``dead-letter:<id>``; one refused by an ownership rule, category
``policy``, is a *conflict* held for a person), a journey run parked for a person (``journey:<id>``,
also a conflict in the outcome ledger's terms), or a finding of the latest finished reconciliation
run (``finding:<id>``). Its state is Open, Acknowledged, Resolved or Ignored: a dead letter replayed
(or a journey resumed or finished) is Resolved and one discarded (or cancelled) Ignored whatever was
noted; otherwise the state a person set
(:class:`~crossledger.core.store.base.TriageRecord`), Open by default.

The actions go through the paths the CLI and ``/v1`` use: a retry is
:meth:`Runtime.replay_dead_letter` (a journey's: the engine's ``resume``), a repair
:class:`~crossledger.core.reconcile.repair.Repairs` (a dry run first), a discard
:meth:`Runtime.discard_dead_letter` with its reason (a journey's: ``cancel``). Every action is
recorded in the console's audit log (:meth:`Store.action_add`): who, when, what.
"""

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import msgspec
from crossledger.core.reconcile import Repairs, RepairSummary
from crossledger.core.reconcile.engine import latest_finished
from crossledger.core.store.base import (
    ActionRecord,
    DeadLetter,
    DeadLetterState,
    FindingRecord,
    JourneyRecord,
    TriageRecord,
    TriageState,
)

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

STATES: tuple[TriageState, ...] = get_args(TriageState)
ACTIVE: tuple[TriageState, ...] = ("open", "acknowledged")
LISTED = 500
"""Dead letters read a state at a time, the longest waiting first: a queue of more says so."""
LETTER_STATES: dict[TriageState, DeadLetterState] = {"resolved": "replayed", "ignored": "discarded"}
"""The dead letters' own states that make their items resolved or ignored (an open one is as triaged)."""
Kind = Literal["dead_letter", "conflict", "journey", "finding"]
DEAD_LETTER, JOURNEY, FINDING = "dead-letter:", "journey:", "finding:"


@dataclass
class Item:
    """One row of the queue."""

    id: str
    kind: Kind
    cls: str
    system: str
    subject: str
    summary: str
    since: float
    state: TriageState
    triage: TriageRecord
    retryable: bool = False
    repair: dict[str, Any] | None = None
    records: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The item's own id in its source (the dead letter's, the finding's)."""
        return self.id.split(":", 1)[1]


@dataclass(frozen=True)
class Filters:
    system: str | None = None
    cls: str | None = None
    min_age_s: float | None = None
    state: str = "active"

    def keeps(self, item: Item, now: float) -> bool:
        states = ACTIVE if self.state == "active" else STATES if self.state == "all" else (self.state,)
        return (item.state in states and (self.system is None or item.system == self.system)
                and (self.cls is None or item.cls == self.cls)
                and (self.min_age_s is None or now - item.since >= self.min_age_s))


class Queue:
    """The queue over a runtime: :meth:`items` to list, the rest to act (each recorded)."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.repairs = Repairs(runtime)

    # -- reading ------------------------------------------------------------------------------------
    def items(self, filters: Filters = Filters(), limit: int = LISTED) -> list[Item]:
        """The items that pass ``filters``, oldest first (the longest waiting at the top); of the
        dead letters, the ``limit`` longest waiting in each of their states the filter shows."""
        triaged = {record.id: record for record in self.store.triages()}
        found = [self._letter(letter, triaged) for state in self._letter_states(filters)
                 for letter in self.store.dlq_list(state=state, category=filters.cls, limit=limit, oldest_first=True,
                                                   target=None if filters.system == "hub" else filters.system)]
        journeys = {record.id: record for record in self.store.journeys(state="parked", limit=limit)}
        for item_id in triaged:  # those a person handled, in whatever state they are now
            if item_id.startswith(JOURNEY) and (known := self.store.journey_get(item_id.removeprefix(JOURNEY))):
                journeys[known.id] = known
        found += [self._journey(record, triaged) for record in journeys.values()]
        run = latest_finished(self.store)
        if run is not None:
            found += [self._finding(finding, triaged) for finding in self.store.reconciliation_findings(run.id)]
        now = time.time()
        return sorted((item for item in found if filters.keeps(item, now)), key=lambda item: item.since)

    @staticmethod
    def _letter_states(filters: Filters) -> list[DeadLetterState]:
        """The dead letters' states whose items ``filters`` may show: open ones always (a person
        triages them to any state), replayed ones as resolved, discarded ones as ignored."""
        shown = ACTIVE if filters.state == "active" else STATES if filters.state == "all" else (filters.state,)
        return ["open", *(LETTER_STATES[state] for state in shown if state in LETTER_STATES)]

    def open_letters(self) -> int:
        """How many dead letters are open, listed or not."""
        return self.store.dlq_count("open")

    def item(self, item_id: str) -> Item | None:
        triaged = self.store.triage_get(item_id)
        known = {item_id: triaged} if triaged else {}
        if item_id.startswith(DEAD_LETTER):
            letter = self.store.dlq_get(item_id.removeprefix(DEAD_LETTER))
            return None if letter is None else self._letter(letter, known)
        if item_id.startswith(JOURNEY):
            record = self.store.journey_get(item_id.removeprefix(JOURNEY))
            return None if record is None else self._journey(record, known)
        run = latest_finished(self.store)
        findings = self.store.reconciliation_findings(run.id) if run else []
        wanted = item_id.removeprefix(FINDING)
        return next((self._finding(f, known) for f in findings if f.id == wanted), None)

    @staticmethod
    def _letter(letter: DeadLetter, triaged: dict[str, TriageRecord]) -> Item:
        item_id = DEAD_LETTER + letter.id
        triage = triaged.get(item_id) or TriageRecord(id=item_id, opened_at=letter.created_at)
        state: TriageState = {"replayed": "resolved", "discarded": "ignored"}.get(  # type: ignore[assignment]
            letter.state, triage.state)
        conflict = letter.category == "policy"
        return Item(id=item_id, kind="conflict" if conflict else "dead_letter", cls=letter.category,
                    system=letter.target or "hub", subject=letter.correlation_id or letter.id,
                    summary=letter.reason, since=letter.created_at, state=state, triage=triage,
                    retryable=letter.state == "open")

    @staticmethod
    def _journey(record: JourneyRecord, triaged: dict[str, TriageRecord]) -> Item:
        item_id = JOURNEY + record.id
        triage = triaged.get(item_id) or TriageRecord(id=item_id, opened_at=record.updated_at)
        state: TriageState = triage.state if record.state == "parked" else (
            "ignored" if record.state == "cancelled" else "resolved")
        failed = [name for name, step in record.steps.items() if step.status == "failed"]
        waiting = sorted({system for step in record.steps.values() for system in step.waiting_on})
        return Item(id=item_id, kind="journey", cls="parked journey", system=", ".join(waiting) or "hub",
                    subject=record.id, summary=f"{record.name}: {record.reason or 'parked'}"
                    + (f" (failed step: {', '.join(failed)})" if failed else ""),
                    since=record.updated_at, state=state, triage=triage,
                    retryable=record.state == "parked")

    @staticmethod
    def _finding(finding: FindingRecord, triaged: dict[str, TriageRecord]) -> Item:
        item_id = FINDING + finding.id
        triage = triaged.get(item_id) or TriageRecord(id=item_id, opened_at=finding.first_seen)
        return Item(id=item_id, kind="finding", cls=finding.cls, system=finding.system, subject=finding.subject,
                    summary=finding.detail, since=finding.first_seen, state=triage.state, triage=triage,
                    repair=finding.repair, records=finding.records)

    # -- acting -------------------------------------------------------------------------------------
    def _record(self, user: str, action: str, item: Item, detail: str = "", *, state: TriageState | None = None,
                assignee: str | None = None, note: str | None = None) -> None:
        """Save the item's new handling and the action in the audit log."""
        now = time.time()
        triage = item.triage
        changes: dict[str, Any] = {"updated_at": now}
        if state is not None:
            changes["state"] = state
            changes["resolved_at"] = now if state in ("resolved", "ignored") else None
        if assignee is not None:
            changes["assignee"] = assignee or None
        if note:
            changes["notes"] = [*triage.notes, {"by": user, "at": now, "text": note}]
        self.store.triage_put(msgspec.structs.replace(triage, **changes))
        self.store.action_add(ActionRecord(at=now, user=user, action=action, item=item.id, detail=detail))

    def set_state(self, user: str, item: Item, state: TriageState) -> None:
        if state not in STATES:
            raise ValueError(f"the state must be one of {', '.join(STATES)}")
        self._record(user, f"mark {state}", item, state=state)

    def assign(self, user: str, item: Item, assignee: str) -> None:
        if assignee and self.store.user_get(assignee) is None:
            raise ValueError(f"no user {assignee!r} to assign to")
        self._record(user, "assign", item, f"to {assignee}" if assignee else "unassigned", assignee=assignee)

    def note(self, user: str, item: Item, text: str) -> None:
        if not text:
            raise ValueError("the note is empty")
        self._record(user, "note", item, text[:500], note=text[:2000])

    def retry(self, user: str, item: Item) -> None:
        """Replay the item's dead letter (:meth:`Runtime.replay_dead_letter`), or resume its parked
        journey run: Resolved once sent."""
        if not item.retryable:
            raise ValueError(f"{item.id} cannot be retried: it is {item.state}")
        if item.kind == "journey":
            self.runtime.journeys.resume(item.key)
            self._record(user, "retry", item, f"journey run {item.key} resumed", state="resolved")
        else:
            self.runtime.replay_dead_letter(item.key)
            self._record(user, "retry", item, f"dead letter {item.key} replayed", state="resolved")

    def discard(self, user: str, item: Item, reason: str) -> None:
        """Close the item without acting: a dead letter is discarded with ``reason``, a parked journey
        run cancelled, a finding ignored (the reason in the audit log)."""
        if not reason:
            raise ValueError("say why it needs no action: the reason is required")
        if item.kind == "journey":
            self.runtime.journeys.cancel(item.key)
        elif item.kind != "finding":
            self.runtime.discard_dead_letter(item.key, reason)
        self._record(user, "discard", item, reason[:500], state="ignored")

    def repair(self, user: str, item: Item, *, apply: bool) -> RepairSummary:
        """The finding's repair: its dry run, or with ``apply`` the repair enqueued (then Resolved)."""
        run, findings = self.repairs.select(None, ids=[item.key])
        summary = self.repairs.run(run, findings, apply=apply)
        if apply:
            failed = "; ".join(summary.failed)
            self._record(user, "repair", item, failed or f"{summary.enqueued} repair(s) enqueued",
                         state=None if failed else "resolved")
        return summary

    def bulk_retry(self, user: str, items: list[Item], *, apply: bool) -> list[Item]:
        """The retryable among ``items``: a dry run lists them, ``apply`` retries each (and records it)."""
        chosen = [item for item in items if item.retryable]
        if apply:
            for item in chosen:
                self.retry(user, item)
        return chosen


def filters_from(values: dict[str, str]) -> Filters:
    """The queue's filters from a query or a form (``system``, ``class``, ``age`` in hours, ``state``)."""
    age = values.get("age", "").strip()
    try:
        min_age_s = float(age) * 3600 if age else None
    except ValueError:
        raise ValueError(f"the age is a number of hours, not {age[:20]!r}") from None
    state = values.get("state") or "active"
    if state not in (*STATES, "active", "all"):
        raise ValueError(f"the state must be active, all or one of {', '.join(STATES)}")
    return Filters(system=values.get("system") or None, cls=values.get("class") or None, min_age_s=min_age_s,
                   state=state)
