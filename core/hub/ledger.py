"""The outcome ledger: every accepted inbound message ends in exactly one accounted outcome.

An inbound message (a webhook or a poll result admitted into the inbox) is known by its
correlation id. Its ingest opens its entry with the set of effects it sent on their way (one token,
``target|event id``, per ``deliver`` message), the parts it settled itself (why a change was no
news; what a journey did with a delivery it covers) and what the message is about (the canonical
ids of its changes: ``subjects``, read by the console's KPIs). Each ``deliver`` settles its own token, adding
the tokens of the link deliveries it sends in the same atomic write; when nothing is pending the
entry concludes (:func:`~crossledger.core.store.base.concluded`):

============  ========================================================================================
delivered     every effect landed (or was handed to a journey run, which accounts for it from there);
              the reason says what a delivery deliberately withheld, if anything (a balance its
              target could only show in another currency than the account's)
noop          nothing to do, with the reasons: no news (an echo, unchanged, stale), an ignored type,
              routed nowhere, a delivery superseded by a newer version
conflict      held for a person: an ownership rule that rejects the change, a parked or undone journey
dead_letter   a part was dead-lettered: its class (category) and reason
============  ========================================================================================

Replaying a dead letter moves its part back to pending, so its delivery concludes the message
again (delivered, say); discarding one records the discard in the reason, the outcome staying a
dead letter. A delivery parked on an open circuit stays pending until it is drained and delivered.
One store write per message step, at most: the ingest's open and each delivery's settle, each in
the commit of the message's unit of work (with the writes it decided and the messages it sends).
"""

import time
from typing import Any

from crossledger.core.hub.pipeline import effect
from crossledger.core.store.base import INGEST_PART, DeadLetter, OutcomePart, OutcomeRecord, Store, Unit
from crossledger.core.telemetry import metrics
from crossledger.plugins.errors import Category


def subjects_of(store: Store, outcome: OutcomeRecord) -> list[str]:
    """The canonical ids ``outcome``'s message is about: its entry's ``subjects``, with no read; for
    an entry that does not say (an earlier release's, a dead-lettered ingest's), those its audit
    trail names, in one read."""
    if outcome.subjects is not None:
        return outcome.subjects
    return [record.subject for record in store.audit_trail(outcome.correlation_id) if record.subject]


def _token(letter: DeadLetter) -> str | None:
    """The part of its message a dead letter is: its ingest (no target), or one delivery; None for a
    message that carries no inbound event (a journey's, a poll's)."""
    if letter.correlation_id is None:
        return None
    if letter.target is None:
        return INGEST_PART
    return effect(letter.target, letter.event_id) if letter.event_id else None


def _counted(record: OutcomeRecord | None) -> None:
    if record is not None and record.outcome != "pending":
        metrics.outcomes.labels(record.outcome, record.source).inc()


def dead_letter_part(category: str, reason: str, target: str | None = None) -> OutcomePart:
    """A dead letter's part: refused by an ownership rule, it is a conflict held for a person."""
    if category == Category.POLICY:
        return OutcomePart(outcome="conflict", target=target, category=category, reason=reason)
    return OutcomePart(outcome="dead_letter", target=target, category=category, reason=reason)


class Ledger:
    """The runtime's side of the ledger: opens, settles and counts (``crossledger_outcomes``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def opened(correlation_id: str, source: str, received_at: float, pending: list[str],
               parts: dict[str, OutcomePart], unit: Unit, *, subjects: list[str] | None) -> None:
        """An ingest's entry: the effects it sends (``pending``), the parts it settled and the canonical
        ids of the records the message is about (``subjects``, None when not known:
        :class:`~crossledger.core.store.base.OutcomeRecord`); in ``unit`` (:meth:`committed` counts
        it)."""
        unit.outcome_open(OutcomeRecord(correlation_id=correlation_id, source=source, received_at=received_at,
                                        updated_at=time.time(), pending=pending, parts=parts, subjects=subjects))

    def settle(self, envelope: dict[str, Any], target: str, part: OutcomePart, follow_ons: list[str],
               unit: Unit | None = None) -> None:
        """A routed delivery is done with (delivered or superseded), sending ``follow_ons``; in ``unit``,
        when given (then :meth:`committed` counts it)."""
        correlation_id, token = envelope["correlation_id"], effect(target, envelope["id"])
        if unit is not None:
            unit.outcome_settle(correlation_id, token, part, follow_ons)
        else:
            _counted(self.store.outcome_settle(correlation_id, token, part, follow_ons))

    @staticmethod
    def committed(unit: Unit) -> None:
        """``unit`` is committed: count the outcome it concluded, if it did."""
        _counted(unit.entry)

    def dead_lettered(self, letter: DeadLetter, unit: Unit) -> None:
        """A message of an inbound event was dead-lettered: its ingest, or one of its deliveries; in
        ``unit`` (:meth:`committed` counts it)."""
        token = _token(letter)
        if token is None or letter.correlation_id is None:
            return
        part = dead_letter_part(letter.category, letter.reason, letter.target)
        if token == INGEST_PART:
            source, _, _, received_at = letter.message["args"]
            # What the ingest made of the event died with it: what the message is about is not known.
            self.opened(letter.correlation_id, str(source), float(received_at), [], {INGEST_PART: part}, unit,
                        subjects=None)
        else:
            unit.outcome_settle(letter.correlation_id, token, part)

    def replayed(self, letter: DeadLetter) -> None:
        """A dead delivery is sent again: its part is pending until it settles once more (a replayed
        ingest opens its entry again itself)."""
        token = _token(letter)
        if token not in (None, INGEST_PART) and letter.correlation_id is not None:
            self.store.outcome_settle(letter.correlation_id, token, None, amend=True)


def discarded(store: Store, letter: DeadLetter, why: str) -> None:
    """An operator discarded ``letter`` because ``why``: its message's outcome says so (it stays a
    dead letter, now settled for good). Called once the letter's state changed."""
    token = _token(letter)
    if token is None or letter.correlation_id is None:
        return
    part = dead_letter_part(letter.category, f"{letter.reason} (discarded by an operator: {why})", letter.target)
    store.outcome_settle(letter.correlation_id, token, part, amend=True)
