"""The Dramatiq actors, and the outbox that sends their messages. Thin on purpose: each actor decodes
its message (:mod:`crossledger.actors.messages`) and calls into the runtime.

=============  ==================================================================================
ingest         an inbound event -> canonical events -> one ``deliver`` message per routed target
deliver        one canonical event into one target system
probe_target   half-open circuit: try one parked delivery; on success close and drain
drain_target   re-enqueue what is parked for a target
replay         deliver logged canonical events again (by source, type, time; effects made are skipped)
poll           ask a pull system (NetSuite) for its changes since the last cursor; admit them
journey        advance one journey run: apply a step's report, start the steps that can go
=============  ==================================================================================

Retries and dead letters are not the actors' business: failures leave as classified errors and the
hub's middleware applies the policy (:mod:`crossledger.core.messaging.retries`; the actors declare
those errors as ``throws``: expected, so Dramatiq does not log each one as an ERROR with a
traceback). Actors are declared per broker by :func:`declare`, so tests and the embedded mode can
build several runtimes in one process.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dramatiq
import msgspec
from crossledger.actors.messages import (
    MESSAGES,
    Deliver,
    Drain,
    Ingest,
    Journey,
    Message,
    Poll,
    Probe,
    Replay,
    decode,
)
from crossledger.core.hub.outbox import AnyMessage, Carried, JourneyReply, MessageContext, Report
from crossledger.core.hub.runtime import ReplaySelection, Runtime
from crossledger.plugins.errors import Category, ConnectorError, exception_reason


class ActorOutbox:
    """The runtime's :class:`~crossledger.core.hub.outbox.Outbox`: each send is one of the actors'
    messages, dispatched through the runtime (recorded in flight, then enqueued)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _send(self, message: Message, delay_ms: int | None = None) -> None:
        self.runtime.dispatch(message.message(), delay_ms)

    def ingest(self, source: str, event: dict[str, Any], correlation_id: str, received_at: float) -> None:
        self._send(Ingest(source, event, correlation_id, received_at))

    def deliver(self, target: str, envelope: dict[str, Any], reply: JourneyReply | None = None) -> None:
        self._send(Deliver(target, envelope, reply))

    def probe(self, target: str, delay_ms: int) -> None:
        self._send(Probe(target), delay_ms)

    def drain(self, target: str, follow_up: bool, delay_ms: int | None = None) -> None:
        self._send(Drain(target, follow_up), delay_ms)

    def replay(self, selection: Mapping[str, Any]) -> None:
        self._send(Replay(msgspec.convert(selection, ReplaySelection)))

    def poll(self, source: str) -> None:
        self._send(Poll(source))

    def journey(self, run_id: str, report: Report | None = None) -> None:
        self._send(Journey(run_id, report))

    def resend(self, actor: str, args: Sequence[Any], *, refresh: bool) -> bool:
        kind = MESSAGES.get(actor)
        if kind is None:
            raise ValueError(f"no actor {actor!r} is declared here")
        message = decode(kind, list(args))
        refreshed = refresh and isinstance(message, Ingest)  # only an inbound event has a source object to re-read
        if isinstance(message, Ingest) and refreshed:
            message = msgspec.structs.replace(message, event=self.runtime.refreshed(message.source, message.event))
        self._send(message)
        return refreshed

    def carried(self, message: AnyMessage) -> Carried | None:
        if message.actor_name != Deliver.actor:
            return None
        try:
            decoded = decode(Deliver, message.args)
        except msgspec.ValidationError:
            return None  # the actor refuses it, as a data dead letter
        return Carried(decoded.target, decoded.envelope, decoded.reply)

    def about(self, message: AnyMessage) -> MessageContext:
        kind = MESSAGES.get(message.actor_name)
        if kind not in (Ingest, Deliver):
            return MessageContext()
        try:
            decoded = decode(kind, message.args)
        except msgspec.ValidationError:
            return MessageContext()
        if isinstance(decoded, Ingest):
            return MessageContext(system=decoded.source, correlation_id=decoded.correlation_id)
        assert isinstance(decoded, Deliver)
        envelope = decoded.envelope
        return MessageContext(system=decoded.target, target=decoded.target,
                              correlation_id=envelope.get("correlation_id"), subject=envelope.get("subject"),
                              event_id=envelope.get("id"), reply=decoded.reply)


def declare(runtime: Runtime) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare the hub's actors on ``runtime.broker``, bind their outbox to ``runtime``, and return
    the actors by name."""

    def ingest(message: Ingest) -> None:
        runtime.ingested(message.source, message.event, message.correlation_id, message.received_at)

    def deliver(message: Deliver) -> None:
        runtime.deliver(message.target, message.envelope, message.reply)

    def probe_target(message: Probe) -> None:
        runtime.probe_target(message.target)

    def drain_target(message: Drain) -> None:
        runtime.drain_target(message.target, message.follow_up)

    def replay(message: Replay) -> None:
        runtime.replay_events(**msgspec.structs.asdict(message.selection))

    def poll(message: Poll) -> None:
        runtime.poll(message.source)

    def journey(message: Journey) -> None:
        runtime.journeys.advance(message.run_id, message.report)

    handlers: list[tuple[type[Any], Callable[[Any], None]]] = [
        (Ingest, ingest), (Deliver, deliver), (Probe, probe_target), (Drain, drain_target), (Replay, replay),
        (Poll, poll), (Journey, journey)]
    runtime.bind(ActorOutbox(runtime))
    return {kind.actor: _actor(runtime.broker, kind, handler) for kind, handler in handlers}


def _actor(broker: dramatiq.Broker, kind: type[Message], handler: Callable[[Any], None]) -> dramatiq.Actor[Any, Any]:
    """An actor named and queued as ``kind`` says, whose arguments are decoded into ``kind``."""

    def run(*args: Any) -> None:
        try:
            message = decode(kind, args)
        except msgspec.ValidationError as error:  # no retry makes it fit: a data dead letter at once
            # A ConnectorError's text is logged and kept as it is: only the path, not the value quoted.
            raise ConnectorError(Category.DATA, f"a {kind.actor} message that breaks its contract: "
                                                f"{exception_reason(error)}") from None
        handler(message)

    run.__name__ = run.__qualname__ = kind.actor
    return dramatiq.Actor(run, broker=broker, actor_name=kind.actor, queue_name=kind.queue, priority=0,
                          options={"throws": (ConnectorError,)})
