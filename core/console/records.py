"""One record's state in every system: the row the transactions pages and the order-to-cash chain
are built from.

A row is a canonical record (its golden record, its ids in every system from the identity map) and
what became of the messages about it (the outcome ledger, the open dead letters): each system shows
its id when the record is there, else why not (a dead letter's reason, a delivery still pending),
and the row says where it is stuck.

A page's rows are read together (:class:`Rows`), in three round trips however many records it shows.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crossledger.core.store.base import DeadLetter, JourneyRecord, LoggedEvent, OutcomeRecord, Store, StoredRecord


@dataclass
class SystemState:
    system: str
    external_id: str | None
    state: str
    detail: str = ""


@dataclass
class Row:
    subject: str
    entity: str
    data: dict[str, Any]
    systems: list[SystemState]
    outcome: str
    stuck: str
    updated_at: float | None
    correlations: list[str] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    journey: JourneyRecord | None = None
    """The latest journey run about the record."""


class Rows:
    """The rows of a page's records, read in batches: for the records not read yet, one round trip
    for them (:meth:`Store.records_get`: golden record, ids, audit records, latest journey run), one
    for the outcomes of their messages and one for the events those outcomes and the open dead
    letters name. A page asks for all its records at once (:meth:`read`), then builds their rows
    from what it read; ``letters`` are the open dead letters (read once a page)."""

    def __init__(self, store: Store, systems: list[str], letters: list[DeadLetter]) -> None:
        self.store = store
        self.systems = systems
        self.letters = letters
        self._records: dict[str, StoredRecord] = {}
        self._outcomes: dict[str, OutcomeRecord] = {}
        self._events: dict[str, LoggedEvent] = {}
        self._rows: dict[str, Row] = {}

    def read(self, subjects: Iterable[str]) -> None:
        """Read what the rows of ``subjects`` are built from, those not read yet, in three round trips."""
        wanted = [subject for subject in dict.fromkeys(subjects) if subject not in self._records]
        if not wanted:
            return
        records = self.store.records_get(wanted)
        self._records.update(records)
        correlations = {audit.correlation_id for record in records.values() for audit in record.audit}
        outcomes = self.store.outcomes_get(sorted(correlations - set(self._outcomes)))
        self._outcomes.update(outcomes)
        named = {event_id for outcome in outcomes.values() for token in [*outcome.pending, *outcome.parts]
                 if (event_id := token.partition("|")[2])}
        named |= {letter.event_id for letter in self.letters
                  if letter.event_id and letter.correlation_id in correlations}
        self._events.update(self.store.events_get(sorted(named - set(self._events))))

    def record(self, subject: str) -> StoredRecord:
        """What the store keeps about ``subject`` (read now if the page did not ask for it)."""
        self.read([subject])
        return self._records[subject]

    def row(self, subject: str) -> Row:
        if subject not in self._rows:
            self._rows[subject] = self._describe(self.record(subject))
        return self._rows[subject]

    def _describe(self, record: StoredRecord) -> Row:
        subject = record.canonical_id
        correlations = list(dict.fromkeys(audit.correlation_id for audit in record.audit))
        outcomes = [found for correlation in correlations if (found := self._outcomes.get(correlation)) is not None]

        def about_it(event_id: str | None) -> bool:
            """Whether a message's event is about ``subject``: a message about several records (an invoice
            that names its customer) holds up only its own record. An event the log does not hold (an
            ingest's, dead-lettered before it was logged) counts for every record its message names."""
            if event_id is None:
                return True
            event = self._events.get(event_id)
            return event is None or event.subject == subject

        letters = [letter for letter in self.letters
                   if letter.correlation_id in correlations and about_it(letter.event_id)]
        pending = {target for outcome in outcomes for target, _, event_id in
                   (token.partition("|") for token in outcome.pending) if about_it(event_id or None)}

        def done(system: str) -> bool:
            """Whether a delivery of this record to ``system`` settled delivered or with nothing to do."""
            return any(target == system and part.outcome in ("delivered", "noop") and about_it(event_id or None)
                       for outcome in outcomes for (target, _, event_id), part in
                       ((token.partition("|"), part) for token, part in outcome.parts.items()))

        links = record.xrefs
        states = []
        for system in self.systems:
            dead = next((letter for letter in letters if letter.target == system), None)
            if dead is not None:
                states.append(SystemState(system, links.get(system), "dead letter", dead.reason))
            elif system in pending:
                states.append(SystemState(system, links.get(system), "pending", "a delivery is under way or parked"))
            elif system in links:
                states.append(SystemState(system, links[system], "in step"))
            elif done(system):  # delivered with nothing to keep (a CRM that shows invoices on the account)
                states.append(SystemState(system, None, "in step", "delivered; the system keeps no record id of it"))
            else:
                states.append(SystemState(system, None, "absent"))
        latest = max(outcomes, key=lambda outcome: outcome.updated_at, default=None)
        stuck = next((f"{state.system}: {state.state} ({state.detail})" for state in states
                      if state.state in ("dead letter", "pending")), "")
        golden = record.golden
        return Row(subject=subject, entity=subject.split("/", 1)[0], data=golden.data if golden else {},
                   systems=states, outcome=latest.outcome if latest else "—", stuck=stuck,
                   updated_at=latest.updated_at if latest else None, correlations=correlations, letters=letters,
                   journey=record.journey)
