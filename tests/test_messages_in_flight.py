"""The record of messages in flight, the recovery sweep that sends again what never settled, and
Governance waiting for Redis instead of failing a message (see also test_broker_crash.py)."""

import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from conftest import redis_url
from crossledger.actors import declare
from crossledger.core.middleware import Governance
from crossledger.core.runtime import INGEST, Runtime
from crossledger.core.settings import HubSettings, Settings
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.testing.redis_server import RedisServer, RedisUnavailable
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError

STRIPE = {"stripe": {"api_key": "sk", "webhook_secret": "whsec"}}
REDRIVE_AFTER_S = 1.5


def _runtime(broker: str, store: str, **hub: float) -> Runtime:
    runtime = Runtime(Settings(hub=HubSettings(broker=broker, store=store, time_limit_s=1, lease_ttl_s=2, **hub),
                               connectors=STRIPE))
    declare(runtime)  # declares the queues, as every hub process does
    return runtime


def _fetch(runtime: Runtime, queue: str) -> MessageProxy:
    """One message off ``queue``, fetched the way a worker fetches it (and then held: never acked)."""
    consumer = runtime.broker.consume(queue, timeout=1000)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message: MessageProxy | None = next(consumer)
        if message is not None:
            return message
    raise AssertionError(f"nothing arrived on {queue}")


@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_message_a_live_worker_holds_for_good_is_sent_again_once_overdue(tmp_path: Path, broker: str) -> None:
    runtime = _runtime("memory" if broker == "memory" else redis_url(9), f"sqlite:///{tmp_path}/hub.db",
                       redrive_after_s=REDRIVE_AFTER_S)
    try:
        runtime.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
        held = _fetch(runtime, "crossledger-ingest")
        assert runtime.store.inflight_count() == 1
        assert runtime.recover_messages() == 0  # not overdue yet: it may just be slow

        time.sleep(REDRIVE_AFTER_S + 0.1)
        assert runtime.recover_messages() == 1
        again = _fetch(runtime, "crossledger-ingest")
        assert (again.message_id, again.actor_name, list(again.args)) == \
            (held.message_id, INGEST, ["stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0])
        assert runtime.recover_messages() == 0  # sent again at most once per period
        assert [r.status for r in runtime.store.audit_trail("corr-1")] == ["redriven"]

        runtime.settle(again)
        assert runtime.store.inflight_count() == 0
        time.sleep(REDRIVE_AFTER_S + 0.1)
        assert runtime.recover_messages() == 0
    finally:
        runtime.close()


def test_a_message_that_never_settles_within_the_age_limit_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    runtime = _runtime("memory", f"sqlite:///{tmp_path}/hub.db", redrive_after_s=REDRIVE_AFTER_S, max_age_s=1)
    try:
        runtime.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
        time.sleep(REDRIVE_AFTER_S + 0.1)
        assert runtime.recover_messages() == 0
        [letter] = runtime.store.dlq_list()
        assert (letter.category, letter.correlation_id) == ("broker", "corr-1")
        assert letter.reason.startswith("never settled in 1 s")
        assert runtime.store.inflight_count() == 0
    finally:
        runtime.close()


def test_what_an_embedded_hub_had_queued_when_it_crashed_is_sent_by_the_next_one(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/hub.db"
    crashed = _runtime("memory", store, redrive_after_s=REDRIVE_AFTER_S)
    crashed.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
    crashed.close()  # the memory broker's queue is gone with the process

    runtime = _runtime("memory", store, redrive_after_s=REDRIVE_AFTER_S)
    try:
        time.sleep(REDRIVE_AFTER_S + 0.1)
        assert runtime.recover_messages() == 1
        message = _fetch(runtime, "crossledger-ingest")
        assert list(message.args) == ["stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0]
    finally:
        runtime.close()


@pytest.fixture
def crashable_redis() -> RedisServer:
    try:
        return RedisServer(appendonly=True)
    except RedisUnavailable as missing:
        pytest.skip(str(missing))


@pytest.mark.redis
def test_governance_waits_for_redis_and_retries_the_message_instead_of_failing_it(
        crashable_redis: RedisServer) -> None:
    with crashable_redis as server:
        runtime = _runtime(server.url(1), server.url(2), redis_retry_s=0, redrive_after_s=30)
        try:
            runtime.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
            message = _fetch(runtime, "crossledger-ingest")
            [governance] = [m for m in runtime.broker.middleware if isinstance(m, Governance)]

            # Redis crashes as the attempt fails, and is back 2 s later: the retry is written then.
            server.kill()
            restart = threading.Timer(2.0, server.start)
            restart.start()
            governance.after_process_message(runtime.broker, message,
                                             exception=ConnectorError(Category.TRANSIENT, "netsuite timed out"))
            restart.join()

            assert not message.failed
            retry = _fetch(runtime, "crossledger-ingest.DQ")
            assert (retry.message_id, retry.options["retries"]) == (message.message_id, 1)
            assert runtime.store.inflight_count() == 1 and runtime.store.dlq_count() == 0
            assert [r.status for r in runtime.store.audit_trail("corr-1")] == ["retry"]
        finally:
            runtime.close()


@pytest.mark.redis
def test_a_stopping_worker_stops_waiting_for_redis_and_leaves_the_message_to_the_sweep(
        crashable_redis: RedisServer, tmp_path: Path) -> None:
    with crashable_redis as server:
        runtime = _runtime(server.url(1), f"sqlite:///{tmp_path}/hub.db", redis_retry_s=0, redrive_after_s=30)
        try:
            runtime.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
            message = _fetch(runtime, "crossledger-ingest")
            [governance] = [m for m in runtime.broker.middleware if isinstance(m, Governance)]
            server.kill()
            waiting = threading.Thread(target=governance.after_process_message, args=(runtime.broker, message),
                                       kwargs={"exception": ConnectorError(Category.TRANSIENT, "netsuite timed out")})
            waiting.start()
            time.sleep(0.5)
            assert waiting.is_alive()  # waiting for Redis
            governance.before_worker_shutdown(runtime.broker, dramatiq.Worker(runtime.broker))
            waiting.join(2)
            assert not waiting.is_alive() and not message.failed
            assert runtime.store.inflight_count() == 1  # the sweep sends it again once a worker runs
        finally:
            runtime.close()


def test_a_bug_in_failure_handling_fails_the_message_at_once_instead_of_waiting(tmp_path: Path) -> None:
    runtime = _runtime("memory", f"sqlite:///{tmp_path}/hub.db", redrive_after_s=30)
    try:
        corrupt: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="crossledger-ingest", actor_name=INGEST, args=("stripe", {}, "c", 1.0), kwargs={},
            options={"retries": "many"})
        runtime.dispatch(corrupt)
        message = _fetch(runtime, "crossledger-ingest")
        [governance] = [m for m in runtime.broker.middleware if isinstance(m, Governance)]
        started = time.monotonic()
        governance.after_process_message(runtime.broker, message,
                                         exception=ConnectorError(Category.TRANSIENT, "netsuite timed out"))
        assert message.failed and time.monotonic() - started < 1  # to the broker's dead letters, then the hub's
    finally:
        runtime.close()


@pytest.mark.redis
def test_an_enqueue_without_redis_is_the_broker_connection_error_worker_threads_survive(
        crashable_redis: RedisServer, tmp_path: Path) -> None:
    """A consumer thread moving a due delayed message dies of any other error (Dramatiq 2.2)."""
    with crashable_redis as server:
        runtime = _runtime(server.url(1), f"sqlite:///{tmp_path}/hub.db", redis_retry_s=0.5)
        try:
            server.kill()
            started = time.monotonic()
            with pytest.raises(BrokerConnectionError):
                runtime.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
            assert time.monotonic() - started >= 0.3  # it tried to reconnect first (after 0.1 s, 0.2 s)
            assert runtime.store.inflight_count() == 1  # recorded: the sweep sends it once Redis is back
        finally:
            runtime.close()


def test_a_message_is_not_sent_again_while_it_may_still_be_running() -> None:
    with pytest.raises(ValueError, match="redrive_after_s"):
        HubSettings(time_limit_s=60, redrive_after_s=60)
