"""Broker wiring: the msgspec encoder, the explicit middleware list, memory or Redis.

Order matters (reference: Dramatiq's actor options are checked against middleware at
declaration), so the broker is built completely here before any actor is declared.
``Retries`` and ``AgeLimit`` are deliberately absent: :class:`~crossledger.core.middleware.Governance`
replaces both with the hub's error taxonomy.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import msgspec
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.encoder import Encoder
from dramatiq.errors import DecodeError
from dramatiq.middleware import CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

INGEST_QUEUE = "crossledger-ingest"
DELIVER_QUEUE = "crossledger-deliver"


class MsgspecEncoder(Encoder):
    """JSON on the wire like Dramatiq's default encoder, several times faster."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    def encode(self, data: dict[str, Any]) -> bytes:
        return self._encoder.encode(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            decoded: dict[str, Any] = self._decoder.decode(data)
        except msgspec.DecodeError as error:
            raise DecodeError(f"cannot decode message: {error}", data, error) from None
        return decoded


def build_broker(url: str, *, namespace: str, governance: Middleware, time_limit_ms: int,
                 heartbeat_timeout_ms: int, maintenance_chance: int) -> dramatiq.Broker:
    """A StubBroker (``memory``) or a RedisBroker (``redis://...``), set as Dramatiq's global broker."""
    middleware: list[Middleware] = [
        TimeLimit(time_limit=time_limit_ms),
        ShutdownNotifications(),
        CurrentMessage(),
        governance,
    ]
    dramatiq.set_encoder(MsgspecEncoder())
    broker: dramatiq.Broker
    if url == "memory":
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        broker = RedisBroker(
            url=url,
            namespace=f"{namespace}-dramatiq",
            middleware=middleware,
            heartbeat_timeout=heartbeat_timeout_ms,
            maintenance_chance=maintenance_chance,
            dead_message_ttl=30 * 86_400_000,
        )
    else:
        raise ValueError(f"broker must be 'memory' or a redis:// URL, not {url!r}")
    dramatiq.set_broker(broker)
    return broker


BrokerDeadLetter = tuple[str, dramatiq.Message[Any], Callable[[], None]]


def broker_dead_letters(broker: dramatiq.Broker) -> Iterator[BrokerDeadLetter]:
    """Messages the broker itself dead-lettered: (stable id, message, discard).

    Only the Governance fallback puts messages there (a retry or dead letter that could not be
    written), so the hub sweeps them into its own dead letters. Call ``discard`` once the message is
    safely recorded elsewhere.
    """
    queues = (INGEST_QUEUE, DELIVER_QUEUE)
    if isinstance(broker, RedisBroker):
        client = broker.client
        for queue in queues:
            key = f"{broker.namespace}:{queue}.XQ"
            for raw_id in client.zrange(key, 0, -1):
                message_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                data = client.hget(f"{key}.msgs", message_id)
                if data is None:
                    continue

                def discard(key: str = key, message_id: str = message_id) -> None:
                    client.zrem(key, message_id)
                    client.hdel(f"{key}.msgs", message_id)

                yield message_id, dramatiq.Message.decode(data), discard
    elif isinstance(broker, StubBroker):
        for queue in queues:
            letters = broker.dead_letters_by_queue[queue]
            for proxy in list(letters):
                yield proxy.message_id, proxy._message, lambda proxy=proxy, letters=letters: letters.remove(proxy)
