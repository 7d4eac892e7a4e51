"""The circuit breaker middleware: a target system that is down gets no deliveries until a probe
finds it back.

Each target has one circuit in the store, shared by every process (:class:`Circuits` reads it at
most once a second per process):

* **closed**: deliveries run. A delivery that fails because its target is down
  (:attr:`~crossledger.plugins.errors.Category.TARGET_DOWN`) counts; ``threshold`` such failures in
  a row open the circuit, and the one that opens it schedules a probe after the cooldown. The retry
  middleware (:mod:`.retries`), whose hook runs after this one's, then parks a delivery that found
  its target down while the circuit is open (the one that opened it too) instead of retrying it on
  a timer (:meth:`~crossledger.core.hub.runtime.Runtime.retry`). A delivery that succeeds closes it.
* **open**: a delivery's message is not run. It is parked (:meth:`Hub.park`: kept in the store in
  order, its message settled, its journey told the write waits), and Dramatiq skips it.
* **half open**: the ``probe_target`` actor tries one parked delivery. Success closes the circuit
  and drains what is parked; a target still down keeps it open and probes again later
  (:meth:`~crossledger.core.hub.runtime.Runtime.probe_target`). The probe is its own actor, so
  its attempt neither meets this middleware's check nor counts as a failure.

A circuit open for far longer than a probe takes lost its probe (a process died while holding it):
the next delivery parked on it probes again, restarting the clock so only that one does.
"""

import logging
import time
from typing import Protocol

import dramatiq
from crossledger.core.hub.outbox import Carried
from crossledger.core.store.base import Circuit, Store
from crossledger.plugins.errors import Category, ConnectorError
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

log = logging.getLogger(__name__)

CACHE_S = 1.0
"""How long a process trusts the circuit it read: a delivery that slips past a circuit opened
meanwhile fails, counts, and is parked on its retry."""


class Hub(Protocol):
    """What the middleware asks of the hub (:class:`~crossledger.core.hub.runtime.Runtime`)."""

    def carried(self, message: MessageProxy) -> Carried | None:
        """The delivery ``message`` carries; None for a message of any other actor."""

    def park(self, message: MessageProxy, delivery: Carried, why: str) -> None:
        """Keep ``delivery`` until its target's circuit closes, and settle ``message``."""

    def schedule_probe(self, target: str) -> None:
        """Try one parked delivery of ``target`` after the cooldown."""


class Circuits:
    """The targets' circuits as this process sees them: the store's word, trusted for
    :data:`CACHE_S`."""

    def __init__(self, store: Store, *, threshold: int, stale_open_s: float) -> None:
        self.store = store
        self.threshold = threshold
        self.stale_open_s = stale_open_s
        self._seen: dict[str, tuple[float, Circuit]] = {}

    def _remember(self, circuit: Circuit) -> Circuit:
        self._seen[circuit.target] = (time.monotonic(), circuit)
        return circuit

    def current(self, target: str) -> Circuit:
        seen = self._seen.get(target)
        if seen is None or time.monotonic() - seen[0] > CACHE_S:
            return self._remember(self.store.circuit_get(target))
        return seen[1]

    def open(self, target: str) -> Circuit | None:
        """The target's circuit if it is open, on the store's word (a cached open one is read again:
        it may have closed since); None when deliveries may go."""
        if self.current(target).status != "open":
            return None
        circuit = self._remember(self.store.circuit_get(target))
        return circuit if circuit.status == "open" else None

    def failed(self, target: str) -> bool:
        """A delivery found ``target`` down: count it; True when this failure opened the circuit."""
        circuit = self._remember(self.store.circuit_failure(target, self.threshold, time.time()))
        return circuit.status == "open" and circuit.failures == self.threshold

    def succeeded(self, target: str) -> None:
        """A delivery went through: a circuit with failures counted closes."""
        if self.current(target).failures:
            self.closed(target)

    def closed(self, target: str) -> None:
        self.store.circuit_close(target)
        self._seen.pop(target, None)

    def reopened(self, target: str) -> None:
        """Open again from now (a probe found the target still down, or a lost probe is replaced)."""
        self.store.circuit_reopen(target, time.time())
        self._seen.pop(target, None)

    def probe_lost(self, circuit: Circuit) -> bool:
        return circuit.opened_at is not None and time.time() - circuit.opened_at > self.stale_open_s


class CircuitBreaker(Middleware):
    """Parks deliveries to a target whose circuit is open, and counts the failures that open it
    (see the module)."""

    def __init__(self, hub: Hub, circuits: Circuits) -> None:
        self.hub = hub
        self.circuits = circuits

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        delivery = self.hub.carried(message)
        if delivery is None:
            return
        circuit = self.circuits.open(delivery.target)
        if circuit is None:
            return
        self.hub.park(message, delivery, "circuit open")
        if self.circuits.probe_lost(circuit):
            log.warning("circuit for %s open for over %.0f s without a probe: probing again", delivery.target,
                        self.circuits.stale_open_s)
            self.circuits.reopened(delivery.target)
            self.hub.schedule_probe(delivery.target)
        raise SkipMessage(f"{delivery.target}'s circuit is open: parked")

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        delivery = self.hub.carried(message)
        if delivery is None:
            return
        if exception is None:
            self.circuits.succeeded(delivery.target)
        elif isinstance(exception, ConnectorError) and exception.category is Category.TARGET_DOWN \
                and self.circuits.failed(delivery.target):
            self.hub.schedule_probe(delivery.target)
