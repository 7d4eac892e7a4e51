"""The message contract: one msgspec Struct per actor, with the actor's name and queue.

A message's arguments on the wire are its Struct's fields in order (``array_like``): ``ingest``'s
are ``[source, event, correlation_id, received_at]``. The actors decode them back into the Struct
(:func:`decode`), so a message that does not fit its actor is refused with the field that is wrong,
before any work. Nothing but :mod:`crossledger.actors` builds these messages.

=============  ==================  ================================================================
actor          queue               message
=============  ==================  ================================================================
ingest         crossledger-ingest  :class:`Ingest`
deliver        crossledger-deliver :class:`Deliver`
probe_target   crossledger-deliver :class:`Probe`
drain_target   crossledger-deliver :class:`Drain`
replay         crossledger-ingest  :class:`Replay`
poll           crossledger-ingest  :class:`Poll`
journey        crossledger-ingest  :class:`Journey`
=============  ==================  ================================================================
"""

from typing import Any, ClassVar, TypeVar

import dramatiq
import msgspec
from crossledger.core.hub.outbox import JourneyReply, Report
from crossledger.core.hub.runtime import ReplaySelection
from crossledger.core.messaging.broker import DELIVER_QUEUE, INGEST_QUEUE


class Message(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A message's arguments; subclasses name their actor and queue."""

    actor: ClassVar[str]
    queue: ClassVar[str]

    def message(self) -> dramatiq.Message[Any]:
        """This message, ready to dispatch."""
        return dramatiq.Message(queue_name=self.queue, actor_name=self.actor,
                                args=tuple(msgspec.to_builtins(self)), kwargs={}, options={})


class Ingest(Message, frozen=True):
    """An inbound event as the source's connector parsed it, admitted at ``received_at``."""

    actor = "ingest"
    queue = INGEST_QUEUE
    source: str
    event: dict[str, Any]
    correlation_id: str
    received_at: float


class Deliver(Message, frozen=True):
    """One canonical event (encoded envelope) into one target; ``reply`` for a journey's write."""

    actor = "deliver"
    queue = DELIVER_QUEUE
    target: str
    envelope: dict[str, Any]
    reply: JourneyReply | None = None


class Probe(Message, frozen=True):
    """Half-open circuit: try one parked delivery of ``target``."""

    actor = "probe_target"
    queue = DELIVER_QUEUE
    target: str


class Drain(Message, frozen=True):
    """Send again what is parked for ``target`` (and, with ``follow_up``, once more a little later)."""

    actor = "drain_target"
    queue = DELIVER_QUEUE
    target: str
    follow_up: bool = True


class Replay(Message, frozen=True):
    """Deliver logged canonical events again."""

    actor = "replay"
    queue = INGEST_QUEUE
    selection: ReplaySelection


class Poll(Message, frozen=True):
    """Ask a pull system for its changes since the last cursor."""

    actor = "poll"
    queue = INGEST_QUEUE
    source: str


class Journey(Message, frozen=True):
    """Advance one journey run, telling it ``report`` first."""

    actor = "journey"
    queue = INGEST_QUEUE
    run_id: str
    report: Report | None = None


MESSAGES: dict[str, type[Message]] = {kind.actor: kind for kind in (Ingest, Deliver, Probe, Drain, Replay, Poll,
                                                                    Journey)}


M = TypeVar("M", bound=Message)


def decode(kind: type[M], args: tuple[Any, ...] | list[Any]) -> M:
    """A message's arguments as its Struct (``msgspec.ValidationError`` naming the field that is wrong).

    ``msgspec.convert`` reads the builtins Dramatiq's decoder produced; msgspec caches the Struct's
    decoding plan on first use, so there is nothing more to precompile."""
    return msgspec.convert(args, kind)
