"""The hub's retry middleware: what becomes of a message once a worker has processed it.

It replaces Dramatiq's ``Retries`` and ``AgeLimit`` with the hub's error taxonomy
(:class:`~crossledger.plugins.errors.Category`):

* a message that succeeded settles (it leaves the hub's record of messages in flight);
* a failure the taxonomy calls retryable is sent again after a backoff (:meth:`RetryPolicy.delay_ms`):
  the target's Retry-After when it gave one, else exponential backoff with jitter. A rate limit and
  a target that is down spend no retries (``retries`` counts the others, up to ``max_retries``),
  yet their delay grows with every attempt all the same; nothing is retried past ``max_age_s``;
* any other failure, or one out of retries, is given up (:meth:`Hub.give_up`): a dead letter
  (:mod:`.dead_letters`), or, for a message a journey sent, the journey's to handle.

An exception that is not a classified :class:`~crossledger.plugins.errors.ConnectorError` is a
defect, retried as ``transient`` (a traceback was logged where it was raised).

**Writing a message's fate while Redis is down.** Dramatiq swallows exceptions raised in
``after_*`` hooks and then acks the message (reference dramatiq-pluggy.md §1.6, Dramatiq PR #545),
so a retry or dead letter that cannot be written would end the message silently. :class:`Retries`
keeps trying instead, waiting longer each time, while the broker or the store is unreachable; should
it not answer within ``patience_s``, or should the worker stop, the message is left in the record of
messages in flight, where the recovery sweep finds it (:mod:`.middleware`). Any other error there is
a bug: it is logged and the message failed to the broker; the record keeps it, and the recovery
sweep sends it again until ``max_age_s``, then dead-letters it.

Actors declare the classified errors in their ``throws`` option: Dramatiq then writes an INFO line
for them instead of an ERROR with a traceback, and this middleware writes the retry or the dead
letter as one line.
"""

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
import redis
from crossledger.core.hub.outbox import MessageContext
from crossledger.core.telemetry import metrics, safelog
from crossledger.plugins.errors import Category, ConnectorError, described
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0
OUTAGES = (redis.ConnectionError, redis.TimeoutError, BrokerConnectionError, sqlite3.OperationalError)
"""Errors that say the broker or the store cannot be reached (or is busy) right now: waited out."""
BUDGET_FREE = (Category.RATE_LIMITED, Category.TARGET_DOWN)
""""Not now" rather than "failed": retried without spending the retry budget (the age limit bounds them)."""


class Hub(Protocol):
    """What the middleware asks of the hub (:class:`~crossledger.core.hub.runtime.Runtime`)."""

    def settle(self, message: MessageProxy) -> None:
        """``message`` has its outcome: out of the record of messages in flight."""

    def retry(self, message: dramatiq.Message[Any], delay_ms: int, error: ConnectorError) -> bool:
        """Send ``message`` (the failed one's copy, its options counted on) again after ``delay_ms``;
        False when the hub parks it instead, for its target's circuit to close."""

    def give_up(self, message: MessageProxy, error: ConnectorError, reason: str) -> None:
        """No more attempts: dead-letter ``message``, or tell the journey that sent it; and settle it."""

    def about(self, message: MessageProxy) -> MessageContext:
        """What ``message`` carries (its system, for the log line)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how far apart, a failed message is tried again (``[hub]`` settings)."""

    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int
    max_age_s: float

    def delay_ms(self, options: dict[str, Any], sent_at_ms: int, error: ConnectorError) -> int | None:
        """How long to wait before the next attempt, or None: no next attempt."""
        if not error.category.retryable or time.time() * 1000 - sent_at_ms >= self.max_age_s * 1000:
            return None
        if error.category not in BUDGET_FREE and int(options.get("retries", 0)) >= self.max_retries:
            return None
        # The delay grows with every attempt, budget-free ones included: a rate limit without
        # Retry-After must not be hammered at the minimum backoff for days.
        return self.backoff_ms(int(options.get("attempts", 1)) - 1, error.retry_after)

    def backoff_ms(self, earlier_attempts: int, retry_after: float | None) -> int:
        """The target's Retry-After (plus a little jitter), or exponential backoff with jitter: a delay
        drawn from [50%, 100%] of ``min_backoff * 2**earlier_attempts``, capped at ``max_backoff``."""
        if retry_after is not None:
            return int(retry_after * 1000 + random.uniform(0, 250))
        ceiling = min(self.max_backoff_ms, self.min_backoff_ms * 2 ** min(earlier_attempts, 30))
        return int(ceiling * random.uniform(0.5, 1.0))


def classified(exception: BaseException) -> ConnectorError:
    """A failure as the taxonomy has it: a defect (anything unclassified) is ``transient``."""
    if isinstance(exception, ConnectorError):
        return exception
    return ConnectorError(Category.TRANSIENT, described(exception, safelog.REASON_TYPES))


class Retries(Middleware):
    """Settles a processed message, or retries it with backoff, or gives it up (see the module)."""

    def __init__(self, hub: Hub, policy: RetryPolicy, *, patience_s: float) -> None:
        self.hub = hub
        self.policy = policy
        self.patience_s = patience_s
        self._stopping = threading.Event()

    @property
    def actor_options(self) -> set[str]:
        return {"throws"}  # read by Dramatiq's worker (its own Retries, which declares it too, is not used)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping.clear()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Stop waiting for Redis: a stopping worker must not hang on it (what was not written
        stays recorded as in flight, and the recovery sweep sends it again)."""
        self._stopping.set()

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            self._persist(message, "settle", lambda: self.hub.settle(message))
        else:
            self._persist(message, "retry or dead-letter", lambda: self._failed(message, exception))

    def _failed(self, message: MessageProxy, exception: BaseException) -> None:
        error = classified(exception)
        attempts = int(message.options.get("attempts", 1))
        delay = self.policy.delay_ms(message.options, message.message_timestamp, error)
        if delay is None:
            reason = f"gave up after {attempts} attempts: {error.message}" if error.category.retryable \
                else error.message
            self.hub.give_up(message, error, reason)
            return
        retries = int(message.options.get("retries", 0)) + (0 if error.category in BUDGET_FREE else 1)
        options = {**message.options, "retries": retries, "attempts": attempts + 1, "last_error": str(error)[:1000]}
        if not self.hub.retry(message.copy(options=options), delay, error):
            log.warning("parked message %s for %s: its circuit is open (attempt %d found it down)",
                        safelog.message_ref(message), self.hub.about(message).system or "-", attempts)
            return
        # One line for a planned retry; a defect's traceback was written when it was raised.
        log.warning("retrying message %s for %s in %d ms: attempt %d failed (%s)", safelog.message_ref(message),
                    self.hub.about(message).system or "-", delay, attempts,
                    error.category if isinstance(exception, ConnectorError) else type(exception).__name__)
        metrics.retried.labels(str(error.category)).inc()

    def _persist(self, message: MessageProxy, what: str, write: Callable[[], None]) -> None:
        """``write`` until it succeeds, waiting longer between tries while the broker or the store
        is unreachable, for at most ``patience_s`` or until the worker stops; then leave the message
        to the recovery sweep."""
        deadline = time.monotonic() + self.patience_s
        wait = FIRST_WAIT_S
        while True:
            try:
                write()
                return
            except OUTAGES as error:
                if self._stopping.is_set() or time.monotonic() + wait > deadline:
                    why = "the worker is stopping" if self._stopping.is_set() else f"for {self.patience_s:.0f} s"
                    log.critical("could not %s message %s (%s: %s; %s); the recovery sweep will send it again",
                                 what, message.message_id, type(error).__name__, error, why)
                    return
                log.warning("could not %s message %s (%s: %s); trying again in %.1f s", what, message.message_id,
                            type(error).__name__, error, wait)
            except Exception:
                log.critical("could not %s message %s; failing it to the broker (the recovery sweep sends it "
                             "again)", what, message.message_id, exc_info=True)
                message.fail()
                return
            self._stopping.wait(wait)
            wait = min(wait * 2, MAX_WAIT_S)
