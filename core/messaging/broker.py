"""Broker wiring: the msgspec encoder, the explicit middleware list, memory or Redis.

Order matters (reference: Dramatiq's actor options are checked against middleware at
declaration), so the broker is built completely here before any actor is declared.
Dramatiq's ``Retries`` and ``AgeLimit`` are deliberately absent: the hub's
:class:`~crossledger.core.messaging.retries.Retries` replaces both with the hub's error taxonomy.

Only Dramatiq's public API is used: brokers are built, messages enqueued, consumed and acked or
failed through it; the hub never reads a broker's internal keys. What the broker dead-letters (a
message for an actor this hub does not declare; one the retry middleware failed) is not read back
from it: the message is still in the hub's record of messages in flight, so the recovery sweep
sends it again and, past ``max_age_s``, writes the hub's dead letter (:mod:`.middleware`).

**The ``memory`` broker is Dramatiq's** :class:`~dramatiq.brokers.stub.StubBroker`, **on purpose.**
Dramatiq documents it for tests, because its queues live in the process and die with it. The
embedded hub does not rely on the broker for durability: every message is recorded in flight in
the store before it is enqueued (and before a webhook is answered 2xx), and settled only once it
has its outcome. That record is the write-ahead log of the in-process queue: a hub that starts
sends again whatever it still holds (:meth:`~crossledger.core.hub.runtime.Runtime.resume_in_flight`).
So all a broker of our own would add is a second copy of what the store already keeps; StubBroker
gives the in-process queueing, delays and worker integration through the same public interface as
the Redis broker (``enqueue``, ``consume``, ``declare_queue``, ``join``).
"""

from typing import Any

import dramatiq
import msgspec
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.encoder import Encoder
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.middleware import CurrentMessage, Middleware, ShutdownNotifications, TimeLimit
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

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


RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 1.0


def reconnecting_client(url: str, retry_s: float) -> redis.Redis:
    """A Redis client whose commands ride out a lost connection for up to ``retry_s`` seconds,
    reconnecting with exponential backoff (from 0.1 s up to 1 s between tries) before they fail.

    Dramatiq's consumers handle a connection error by dropping what they held in memory (their
    delayed messages stay claimed by a live worker) and can even die of one; a Redis that restarts
    within ``retry_s`` is never noticed. A retried command may run twice (its first answer lost):
    an enqueue twice is a duplicate message, harmless since deliveries are idempotent; a fetch
    twice leaves the first batch claimed, which the hub's recovery sweep sends again.
    """
    retries, waited = 0, 0.0
    backoff = ExponentialBackoff(cap=RECONNECT_MAX_S, base=RECONNECT_FIRST_S)
    while waited + backoff.compute(retries + 1) <= retry_s:
        retries += 1
        waited += backoff.compute(retries)
    return redis.Redis.from_url(url, retry=Retry(backoff, retries),
                                retry_on_error=[redis.ConnectionError, redis.TimeoutError])


class HubRedisBroker(RedisBroker):
    """Dramatiq's RedisBroker, with a lost connection while enqueueing raised as Dramatiq's own
    :class:`~dramatiq.errors.ConnectionClosed`, as its consumers raise it for every other command.

    A worker's consumer thread enqueues each delayed message once it is due; a redis-py error there
    escapes the thread's clean-up too, and the thread dies: that process no longer reads the queue.
    As ``ConnectionClosed`` it is the connection error the thread handles (it restarts).
    """

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        try:
            return super().enqueue(message, delay=delay)
        except (redis.ConnectionError, redis.TimeoutError) as error:  # a stalled socket too (Dramatiq #894)
            raise ConnectionClosed(error) from error


def build_broker(url: str, *, namespace: str, middleware: list[Middleware], time_limit_ms: int,
                 heartbeat_timeout_ms: int, maintenance_chance: int, retry_s: float) -> dramatiq.Broker:
    """A StubBroker (``memory``) or a RedisBroker (``redis://...``), set as Dramatiq's global broker.

    The hub's own ``middleware`` (Retries, Recovery) comes first: Dramatiq calls ``after_*``
    hooks in reverse order, so Retries decides a message's fate only once TimeLimit and
    ShutdownNotifications are done with the thread. While it waits for Redis to come back, no
    time limit or shutdown interrupt may land in it (it would kill the worker thread)."""
    middleware = [*middleware, TimeLimit(time_limit=time_limit_ms), ShutdownNotifications(), CurrentMessage()]
    dramatiq.set_encoder(MsgspecEncoder())
    broker: dramatiq.Broker
    if url == "memory":
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        broker = HubRedisBroker(
            client=reconnecting_client(url, retry_s),
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
