"""Governance: the hub's retry and dead-letter policy, in place of Dramatiq's Retries and AgeLimit.

After a failed attempt the runtime either re-enqueues the message with a backoff, or writes a dead
letter. Dramatiq swallows exceptions raised in ``after_*`` hooks and then *acks* the message
(reference dramatiq-pluggy.md §1.6, Dramatiq PR #545): a retry that cannot be re-enqueued would
be lost. Here, when neither a retry nor a dead letter can be written, the message is failed, so
the broker nacks it into its own dead-letter queue (or, if even that fails, leaves it unacked to
be redelivered) instead of acking it.

Actors declare the classified errors (``ConnectorError``) in their ``throws`` option: Dramatiq then
writes an INFO line for them instead of an ERROR with a traceback (which :mod:`crossledger.core.safelog`
leaves out), and the runtime writes the retry or the dead letter as one line. Only a defect (any
other exception) gets a traceback.
"""

import logging
from collections.abc import Callable

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

FailureHandler = Callable[[dramatiq.Broker, MessageProxy, BaseException], None]


class Governance(Middleware):
    def __init__(self, handler: FailureHandler) -> None:
        self.handler = handler

    @property
    def actor_options(self) -> set[str]:
        return {"throws"}  # read by Dramatiq's worker (Retries, which declares it too, is not used)

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        try:
            self.handler(broker, message, exception)
        except Exception:
            log.critical("could not retry or dead-letter message %s; failing it to the broker",
                         message.message_id, exc_info=True)
            message.fail()
