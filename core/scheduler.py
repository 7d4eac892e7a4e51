"""The scheduler: every ``poll_interval_s``, one ``poll`` message per pull system.

It only enqueues; workers do the polling. Several schedulers (a redeploy's overlap, say) are
harmless: a poll holds a lease in the store, so a second poll of the same system in the same
instant returns at once, and the inbox drops anything admitted twice.
"""

import logging
import threading

from crossledger.core.runtime import POLL, Runtime

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        """Enqueue one poll per pull system; which ones."""
        sources = self.runtime.pollable()
        for source in sources:
            self.runtime.send(POLL, source)
        return sources

    def run(self) -> None:
        """Tick until :meth:`stop`; a broker hiccup is logged and the next tick tries again."""
        interval = self.runtime.settings.hub.poll_interval_s
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed; next tick in %.1f s", interval)
            self._stop.wait(interval)

    def start(self) -> "Scheduler":
        self._thread = threading.Thread(target=self.run, name="crossledger-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
