"""The recovery middleware: what a worker does at boot, and the periodic sweep that sends again what
the broker lost.

The hub records every message among the messages in flight before it is enqueued, and a message
leaves that record only when it has its outcome (:mod:`.retries`). So a message the broker lost (a
Redis restarted without its data), one a live worker holds for good (Dramatiq drops the delayed
messages it holds in memory when Redis goes away, though they stay claimed), one the broker
dead-lettered (an actor this hub does not declare; a failure the retry middleware could not write)
and one recorded and never enqueued all stay in that record. Every ``interval_s``, one worker
process (or the embedded hub) sends them again once they are overdue
(:meth:`~crossledger.core.hub.runtime.Runtime.recover_messages`); one that never settles within
``max_age_s`` becomes a dead letter. The broker's own dead-letter queue is never read.

At worker boot (not at import, so importing the actors module has no effects) it runs ``on_boot``:
probing the circuits left open and resuming the journey runs no message has touched for a while.
"""

import logging
import threading
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


class Recovery(Middleware):
    """Runs ``on_boot`` when a worker boots, then ``sweep`` every ``interval_s`` on a background
    thread while the worker runs."""

    def __init__(self, sweep: Callable[[], int], *, on_boot: Callable[[], None], interval_s: float) -> None:
        self.sweep = sweep
        self.on_boot = on_boot
        self.interval_s = interval_s
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        try:
            self.on_boot()
        except Exception as error:  # Redis down at boot, say: the sweep and the next boot cover it
            log.warning("recovery at worker boot failed (%s: %s)", type(error).__name__, error)
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
