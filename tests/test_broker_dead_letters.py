"""Messages the broker dead-lettered (one for an actor the hub does not declare, say) reach the hub's
dead letters, and settle there."""

from pathlib import Path

import pytest
from conftest import redis_url
from crossledger.actors import declare
from crossledger.core.runtime import INGEST, Runtime
from crossledger.core.settings import HubSettings, Settings


@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_broker_dead_letters_are_swept_into_the_hub(tmp_path: Path, broker: str) -> None:
    url = "memory" if broker == "memory" else redis_url(13)
    runtime = Runtime(Settings(hub=HubSettings(broker=url, store=f"sqlite:///{tmp_path}/hub.db"),
                               connectors={"stripe": {"api_key": "sk", "webhook_secret": "whsec"}}))
    declare(runtime)  # declares the queues, as every hub process does
    try:
        runtime.send(INGEST, "stripe", {"source_event_id": "evt_1"}, "corr-1", 1.0)
        consumer = runtime.broker.consume("crossledger-ingest", timeout=1000)
        message = next(message for message in consumer if message is not None)
        consumer.nack(message)  # what a worker does with a message it cannot run
        assert runtime.store.inflight_count() == 1
        consumer.close()

        assert runtime.sweep_broker_dead_letters() == 1
        assert runtime.sweep_broker_dead_letters() == 0
        [letter] = runtime.store.dlq_list()
        assert letter.category == "broker"
        assert runtime.store.inflight_count() == 0
        assert letter.id.startswith("broker-")
        assert letter.correlation_id == "corr-1"
        assert letter.message["args"][0] == "stripe"
        runtime.replay_dead_letter(letter.id)
        assert runtime.store.dlq_count() == 0
    finally:
        runtime.close()
