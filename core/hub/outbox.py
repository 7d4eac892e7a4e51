"""What the hub sends, as the hub needs to say it: the :class:`Outbox` protocol.

The runtime, the circuit breaker and the journey engine ask for work to be done later (an event
to ingest, one to deliver, a parked target to probe, a run to advance) by calling an outbox. The
actors own the message contract: :mod:`crossledger.actors` implements this protocol by building its
own message types (one msgspec Struct per actor, with the actor's name and queue) and binds it to a
runtime with :meth:`~crossledger.core.hub.runtime.Runtime.bind`. So calls point one way (actor ->
hub -> outbox), and core never imports the actors.

Every send goes through :meth:`~crossledger.core.hub.runtime.Runtime.dispatch`: recorded among the
messages in flight before it is enqueued.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

import dramatiq
from dramatiq.broker import MessageProxy

AnyMessage = MessageProxy | dramatiq.Message[Any]


class JourneyReply(TypedDict):
    """Carried by a delivery a journey step asked for: whom to tell how it went, and ids the target
    is to record beyond the hub's cross-references (:class:`~crossledger.plugins.journey_definition.Write`)."""

    id: str
    step: str
    phase: Literal["run", "compensate"]
    write: str
    links: dict[str, str]
    decides: bool


class Report(TypedDict, total=False):
    """What ``journey(id, report)`` is told: a write's outcome, a step's failure, ``resume``, or
    ``hold``: a routed delivery of news about the subject, held until the run completes."""

    status: Literal["done", "queued", "failed", "resume", "hold"]
    step: str
    phase: Literal["run", "compensate"]
    target: str
    write: str
    detail: str
    envelope: dict[str, Any]


@dataclass(frozen=True)
class MessageContext:
    """What a message says about the event it carries, for audit records, logs and dead letters;
    and, for a journey's write, the journey to report to (``reply``)."""

    system: str | None = None
    target: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    event_id: str | None = None
    reply: JourneyReply | None = None


@dataclass(frozen=True)
class Carried:
    """The delivery a ``deliver`` message carries: its target, the canonical event, and the journey
    to report to when a journey's step asked for the write."""

    target: str
    envelope: dict[str, Any]
    reply: JourneyReply | None = None


class Outbox(Protocol):
    """The messages the hub sends, one method per actor; and what a sent message is about."""

    def ingest(self, source: str, event: dict[str, Any], correlation_id: str, received_at: float) -> None:
        """An inbound event, admitted and deduplicated, to turn into canonical events and route."""

    def deliver(self, target: str, envelope: dict[str, Any], reply: JourneyReply | None = None) -> None:
        """One canonical event into one target; ``reply`` when a journey's step asked for it."""

    def probe(self, target: str, delay_ms: int) -> None:
        """Try one parked delivery of ``target`` once ``delay_ms`` have passed (half-open circuit)."""

    def drain(self, target: str, follow_up: bool, delay_ms: int | None = None) -> None:
        """Send again what is parked for ``target``."""

    def replay(self, selection: Mapping[str, Any]) -> None:
        """Deliver logged canonical events again (a :class:`~crossledger.core.hub.runtime.ReplaySelection`)."""

    def poll(self, source: str) -> None:
        """Ask a pull system for its changes since the last cursor."""

    def journey(self, run_id: str, report: Report | None = None) -> None:
        """Advance one journey run, telling it ``report`` first."""

    def resend(self, actor: str, args: Sequence[Any], *, refresh: bool) -> bool:
        """Send again, as a new message, one for ``actor`` with ``args`` (as a dead letter recorded
        it); with ``refresh``, an inbound event re-read from its source first. Whether it was."""

    def about(self, message: AnyMessage) -> MessageContext:
        """What ``message`` (one this outbox sent) is about; an empty context for any other."""

    def carried(self, message: AnyMessage) -> Carried | None:
        """The delivery ``message`` carries, when it is one of ``deliver``'s (and keeps its
        contract); None for any other."""


class Unbound:
    """The outbox of a runtime no actors are bound to: sending is a wiring error."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"outbox.{name}: no actors are bound to this runtime "
                           "(crossledger.actors.declare binds them)")
