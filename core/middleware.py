"""The hub's two Dramatiq middlewares: Governance (what becomes of a processed message) and Recovery
(the periodic sweep that sends again what the broker lost).

Governance replaces Dramatiq's Retries and AgeLimit: after a failed attempt the runtime either
re-enqueues the message with a backoff or writes a dead letter; after a successful one it settles
the message in the hub's record of messages in flight. Dramatiq swallows exceptions raised in
``after_*`` hooks and then acks the message (reference dramatiq-pluggy.md §1.6, Dramatiq PR #545),
so a retry or dead letter that cannot be written (Redis down) would end the message silently.
Governance instead keeps trying, with backoff, until Redis answers again; should it not answer
within ``patience_s``, the message stays in that record, where the recovery sweep finds it. Any
other error there is a bug: the message is failed at once, so the broker dead-letters it and the
recovery sweep moves it into the hub's dead letters.

Recovery runs in every worker process (and the embedded hub): every ``interval_s`` one of them
sends again the messages that record says are overdue (:meth:`Runtime.recover_messages`).

Actors declare the classified errors (``ConnectorError``) in their ``throws`` option: Dramatiq then
writes an INFO line for them instead of an ERROR with a traceback (which :mod:`crossledger.core.safelog`
leaves out), and the runtime writes the retry or the dead letter as one line. Only a defect (any
other exception) gets a traceback.
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

FailureHandler = Callable[[dramatiq.Broker, MessageProxy, BaseException], None]
SuccessHandler = Callable[[MessageProxy], None]
FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0
OUTAGES = (redis.ConnectionError, redis.TimeoutError, BrokerConnectionError, sqlite3.OperationalError)
"""Errors that say the broker or the store cannot be reached (or is busy) right now: waited out."""


class Governance(Middleware):
    def __init__(self, on_failure: FailureHandler, on_success: SuccessHandler, *, patience_s: float) -> None:
        self.on_failure = on_failure
        self.on_success = on_success
        self.patience_s = patience_s
        self._stopping = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping.clear()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Stop waiting for Redis: a stopping worker must not hang on it (what was not written
        stays recorded as in flight, and the recovery sweep sends it again)."""
        self._stopping.set()

    @property
    def actor_options(self) -> set[str]:
        return {"throws"}  # read by Dramatiq's worker (Retries, which declares it too, is not used)

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            self._persist(message, "settle", lambda: self.on_success(message))
        else:
            self._persist(message, "retry or dead-letter", lambda: self.on_failure(broker, message, exception))

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
                log.critical("could not %s message %s; failing it to the broker", what, message.message_id,
                             exc_info=True)
                message.fail()
                return
            self._stopping.wait(wait)
            wait = min(wait * 2, MAX_WAIT_S)


class Recovery(Middleware):
    """Calls ``sweep`` every ``interval_s`` on a background thread while a worker runs."""

    def __init__(self, sweep: Callable[[], int], *, interval_s: float) -> None:
        self.sweep = sweep
        self.interval_s = interval_s
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        threading.Thread(target=self._run, name="crossledger-recovery", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception as error:  # Redis still down, say: the next round tries again
                log.warning("recovery sweep failed (%s: %s); next one in %.0f s", type(error).__name__, error,
                            self.interval_s)
