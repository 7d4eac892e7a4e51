"""Dead letters: a message the hub gives up on, kept for an operator with its reason.

Writing one is five things, always together: the dead letter itself (replayable, discardable), its
part of the outcome ledger (the transaction's answer becomes ``dead_letter``), an audit record on
the transaction's timeline, a metric and an alert; plugins hear of it through the
``crossledger_event_dead_lettered`` hook. The first three are one unit of work with the message's
leaving the record of messages in flight: one commit, all or none, so no crash in between leaves a
letter without its outcome or a message settled without its letter. :class:`DeadLetters` does them,
for the retry middleware (:mod:`.retries`: a message out of retries, or refused for good) and for
the recovery sweep (a message that never settled within ``max_age_s``).

A letter's id derives from its message's id (:func:`letter_id`), so writing it again (a write
retried after the store came back, a copy the recovery sweep sent) records it once.
"""

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from crossledger.core.hub.ledger import Ledger
from crossledger.core.hub.outbox import AnyMessage, MessageContext
from crossledger.core.store.base import AuditRecord, DeadLetter, Store, Unit
from crossledger.core.telemetry import alerts, metrics, safelog

log = logging.getLogger(__name__)


def letter_id(message: AnyMessage) -> str:
    """One dead letter per message, however often it is written."""
    return hashlib.sha256(message.message_id.encode()).hexdigest()[:16]


class DeadLetters:
    """Writes dead letters. ``about`` says what a message carries (the actors' outbox knows);
    ``notify`` calls a plugin hook by name."""

    def __init__(self, store: Store, ledger: Ledger, *, about: Callable[[AnyMessage], MessageContext],
                 notify: Callable[..., Any]) -> None:
        self.store = store
        self.ledger = ledger
        self.about = about
        self.notify = notify

    def write(self, message: AnyMessage, category: str, reason: str) -> DeadLetter:
        """Dead-letter ``message`` (which then leaves the record of messages in flight)."""
        context = self.about(message)
        letter = DeadLetter(
            id=letter_id(message), created_at=time.time(), actor=message.actor_name, target=context.target,
            category=category, reason=reason, event_id=context.event_id, correlation_id=context.correlation_id,
            message={"queue_name": message.queue_name, "actor_name": message.actor_name, "args": list(message.args),
                     "kwargs": dict(message.kwargs)},
            attempts=int(message.options.get("attempts", 1)),
        )
        unit = Unit()
        unit.dlq_add(letter)
        self.ledger.dead_lettered(letter, unit)
        unit.audit(AuditRecord(at=letter.created_at, correlation_id=context.correlation_id or "-",
                               step=message.actor_name, status="dead-lettered", system=context.system,
                               event_id=context.event_id, subject=context.subject,
                               detail=f"{category}: {reason} (dead letter {letter.id})"))
        unit.inflight_settle(message.message_id)
        self.store.commit(unit)
        self.ledger.committed(unit)
        log.warning("dead-lettered message %s for %s: %s (dead letter %s)", safelog.message_ref(message),
                    context.target or context.system or "-", category, letter.id)
        metrics.dead_lettered.labels(category).inc()
        alerts.dead_lettered(letter.id, category, context.target, reason)
        self.notify("crossledger_event_dead_lettered", event_id=letter.event_id or "", target=context.target,
                    category=category, reason=reason)
        return letter
