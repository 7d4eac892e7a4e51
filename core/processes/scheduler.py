"""The scheduler: every ``poll_interval_s``, one ``poll`` message per pull system; and, when
``reconcile_interval_s`` is set, an incremental reconciliation (:mod:`crossledger.core.reconcile`).

Polling only enqueues; workers do the polling. Several schedulers (a redeploy's overlap, say) are
harmless: a poll holds a lease in the store, so a second poll of the same system in the same
instant returns at once, and the inbox drops anything admitted twice. A reconciliation runs here,
in a thread of its own (it reads the systems and writes only its findings), under a lease in the
store, so two schedulers never run one at the same time.
"""

import logging
import threading
import uuid

from crossledger.core.hub.runtime import Runtime
from crossledger.core.reconcile import Reconciler
from crossledger.core.reconcile.engine import ReconciliationBusy, default_since

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._owner = uuid.uuid4().hex

    def tick(self) -> list[str]:
        """Enqueue one poll per pull system; which ones."""
        sources = self.runtime.pollable()
        for source in sources:
            self.runtime.outbox.poll(source)
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

    def reconcile(self) -> str | None:
        """One incremental reconciliation, unless another is under way (here, in another scheduler,
        or asked for by an operator); its run id."""
        try:
            return Reconciler(self.runtime).run(since=default_since(self.runtime.store)).run.id
        except ReconciliationBusy:
            return None

    def reconcile_forever(self) -> None:
        """Reconcile every ``reconcile_interval_s`` until :meth:`stop`; a failed run is logged (and kept
        as failed) and the next one tries again."""
        every = self.runtime.settings.hub.reconcile_interval_s or 0.0
        while not self._stop.wait(every):
            try:
                self.reconcile()
            except Exception:
                log.exception("scheduled reconciliation failed; next in %.1f s", every)

    def start(self) -> "Scheduler":
        loops = [(self.run, "crossledger-scheduler")]
        if self.runtime.settings.hub.reconcile_interval_s is not None:
            loops.append((self.reconcile_forever, "crossledger-reconcile"))
        for loop, name in loops:
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
