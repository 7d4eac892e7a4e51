"""The record of messages in flight, the recovery sweep that sends again what never settled, and
the retry middleware waiting for Redis instead of failing a message (see also test_broker_crash.py)."""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from conftest import redis_url
from crossledger.actors import declare
from crossledger.actors.messages import Ingest
from crossledger.core.hub.runtime import Runtime
from crossledger.core.messaging.retries import Retries
from crossledger.core.settings import HubSettings, Settings
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.testing.redis_server import RedisServer, RedisUnavailable
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError

STRIPE = {"stripe": {"api_key": "sk", "webhook_secret": "whsec"}}
REDRIVE_AFTER_S = 1.5


Hub = Callable[..., Runtime]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """``hub(broker, store=..., **hub_settings)``: a runtime with the actors declared (as every hub
    process has them), on a SQLite store in ``tmp_path`` unless told; closed after the test."""
    opened: list[Runtime] = []

    def start(broker: str, store: str = f"sqlite:///{tmp_path}/hub.db", **settings: float) -> Runtime:
        runtime = Runtime(Settings(hub=HubSettings(broker=broker, store=store, time_limit_s=1, lease_ttl_s=2,
                                                   **settings), connectors=STRIPE))
        declare(runtime)
        opened.append(runtime)
        return runtime

    yield start
    for runtime in opened:
        runtime.close()


@pytest.fixture
def crashable_redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer(appendonly=True).start()
    except RedisUnavailable as missing:
        pytest.skip(str(missing))
    yield server
    server.stop()


def _fetch(runtime: Runtime, queue: str) -> MessageProxy:
    """One message off ``queue``, fetched the way a worker fetches it (and then held: never acked)."""
    consumer = runtime.broker.consume(queue, timeout=1000)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message: MessageProxy | None = next(consumer)
        if message is not None:
            return message
    raise AssertionError(f"nothing arrived on {queue}")


def _held(runtime: Runtime) -> MessageProxy:
    """An ingest sent and fetched by a worker (the way :func:`_fetch` says)."""
    runtime.outbox.ingest("stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
    return _fetch(runtime, "crossledger-ingest")


def _retries(runtime: Runtime) -> Retries:
    [retries] = [m for m in runtime.broker.middleware if isinstance(m, Retries)]
    return retries


def _attempt_failed(runtime: Runtime, message: MessageProxy) -> None:
    """What a worker does once an attempt at ``message`` failed: the retry middleware decides its fate."""
    _retries(runtime).after_process_message(runtime.broker, message,
                                               exception=ConnectorError(Category.TRANSIENT, "netsuite timed out"))


@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_message_a_live_worker_holds_for_good_is_sent_again_once_overdue(hub: Hub, broker: str) -> None:
    runtime = hub("memory" if broker == "memory" else redis_url(9), redrive_after_s=REDRIVE_AFTER_S)
    held = _held(runtime)
    assert runtime.store.inflight_count() == 1
    assert runtime.recover_messages() == 0  # not overdue yet: it may just be slow

    time.sleep(REDRIVE_AFTER_S + 0.1)
    assert runtime.recover_messages() == 1
    again = _fetch(runtime, "crossledger-ingest")
    assert (again.message_id, again.actor_name, list(again.args)) == \
        (held.message_id, "ingest", ["stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0])
    assert runtime.recover_messages() == 0  # sent again at most once per period
    assert [r.status for r in runtime.store.audit_trail("corr-1")] == ["redriven"]

    runtime.settle(again)
    assert runtime.store.inflight_count() == 0
    time.sleep(REDRIVE_AFTER_S + 0.1)
    assert runtime.recover_messages() == 0


def test_a_message_that_never_settles_within_the_age_limit_is_dead_lettered_with_its_reason(hub: Hub) -> None:
    runtime = hub("memory", redrive_after_s=REDRIVE_AFTER_S, max_age_s=1)
    runtime.outbox.ingest("stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
    time.sleep(REDRIVE_AFTER_S + 0.1)
    assert runtime.recover_messages() == 0
    [letter] = runtime.store.dlq_list()
    assert (letter.category, letter.correlation_id) == ("broker", "corr-1")
    assert letter.reason.startswith("never settled in 1 s")
    assert runtime.store.inflight_count() == 0


def test_what_an_embedded_hub_had_queued_when_it_crashed_is_sent_by_the_next_one(hub: Hub) -> None:
    crashed = hub("memory", redrive_after_s=REDRIVE_AFTER_S)
    crashed.outbox.ingest("stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
    crashed.close()  # the memory broker's queue is gone with the process

    runtime = hub("memory", redrive_after_s=REDRIVE_AFTER_S)
    time.sleep(REDRIVE_AFTER_S + 0.1)
    assert runtime.recover_messages() == 1
    message = _fetch(runtime, "crossledger-ingest")
    assert list(message.args) == ["stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0]


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_an_embedded_hub_resumes_at_once_what_the_last_one_left_in_flight(
        hub: Hub, tmp_path: Path, store: str) -> None:
    url = f"{redis_url(10)}?namespace=resume-{uuid.uuid4().hex}" if store == "redis" else f"sqlite:///{tmp_path}/hub.db"
    crashed = hub("memory", url)  # the default redrive_after_s: the recovery sweep would wait 300 s
    crashed.outbox.ingest("stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
    crashed.dispatch(Ingest("stripe", {"source_event_id": "evt_2"}, "corr-2", 1.0).message(), 60_000)  # a retry waiting
    crashed.close()  # the memory broker's queue is gone with the process

    runtime = hub("memory", url)
    assert runtime.recover_messages() == 0
    assert runtime.resume_in_flight() == 2
    resumed = {_fetch(runtime, "crossledger-ingest").args[2] for _ in range(2)}
    assert resumed == {"corr-1", "corr-2"}
    assert [r.detail for r in runtime.store.audit_trail("corr-1")] == \
        ["resumed on start: the hub stopped before it settled"]
    assert runtime.store.inflight_count() == 2  # until they settle


@pytest.mark.redis
def test_the_retry_middleware_waits_for_redis_and_retries_the_message_instead_of_failing_it(
        hub: Hub, crashable_redis: RedisServer) -> None:
    runtime = hub(crashable_redis.url(1), crashable_redis.url(2), redis_retry_s=0, redrive_after_s=30)
    message = _held(runtime)

    # Redis crashes as the attempt fails, and is back 2 s later: the retry is written then.
    crashable_redis.kill()
    restart = threading.Timer(2.0, crashable_redis.start)
    restart.start()
    _attempt_failed(runtime, message)
    restart.join()

    assert not message.failed
    retry = _fetch(runtime, "crossledger-ingest.DQ")
    assert (retry.message_id, retry.options["retries"]) == (message.message_id, 1)
    assert runtime.store.inflight_count() == 1 and runtime.store.dlq_count() == 0
    assert [r.status for r in runtime.store.audit_trail("corr-1")] == ["retry"]


@pytest.mark.redis
def test_a_stopping_worker_stops_waiting_for_redis_and_leaves_the_message_to_the_sweep(
        hub: Hub, crashable_redis: RedisServer) -> None:
    runtime = hub(crashable_redis.url(1), redis_retry_s=0, redrive_after_s=30)
    message = _held(runtime)
    crashable_redis.kill()
    waiting = threading.Thread(target=_attempt_failed, args=(runtime, message))
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive()  # waiting for Redis
    _retries(runtime).before_worker_shutdown(runtime.broker, dramatiq.Worker(runtime.broker))
    waiting.join(2)
    assert not waiting.is_alive() and not message.failed
    assert runtime.store.inflight_count() == 1  # the sweep sends it again once a worker runs


def test_a_bug_in_failure_handling_fails_the_message_at_once_instead_of_waiting(hub: Hub) -> None:
    runtime = hub("memory", redrive_after_s=30)
    corrupt: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="crossledger-ingest", actor_name="ingest", args=("stripe", {}, "c", 1.0), kwargs={},
        options={"retries": "many"})
    runtime.dispatch(corrupt)
    message = _fetch(runtime, "crossledger-ingest")
    started = time.monotonic()
    _attempt_failed(runtime, message)
    assert message.failed and time.monotonic() - started < 1  # to the broker's dead letters, then the hub's


@pytest.mark.redis
def test_an_enqueue_without_redis_is_the_broker_connection_error_worker_threads_survive(
        hub: Hub, crashable_redis: RedisServer) -> None:
    """A consumer thread moving a due delayed message dies of any other error (Dramatiq 2.2)."""
    runtime = hub(crashable_redis.url(1), redis_retry_s=0.5)
    crashable_redis.kill()
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError):
        runtime.outbox.ingest("stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
    assert time.monotonic() - started >= 0.3  # it tried to reconnect first (after 0.1 s, 0.2 s)
    assert runtime.store.inflight_count() == 1  # recorded: the sweep sends it once Redis is back


def test_a_message_is_not_sent_again_while_it_may_still_be_running() -> None:
    with pytest.raises(ValueError, match="redrive_after_s"):
        HubSettings(time_limit_s=60, redrive_after_s=60)
