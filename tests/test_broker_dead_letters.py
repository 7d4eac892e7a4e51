"""A message the broker dead-letters (one for an actor this hub does not declare, say) is never read
back from the broker: it stays in the hub's record of messages in flight, the recovery sweep sends it
again, and once it is older than ``max_age_s`` it becomes the hub's dead letter, with its reason."""

import time
from pathlib import Path

import dramatiq
import pytest
from conftest import redis_url
from crossledger.actors import declare
from crossledger.core.hub.runtime import Runtime
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import HubSettings, Settings


@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_message_for_an_undeclared_actor_ends_as_a_hub_dead_letter_with_its_reason(tmp_path: Path,
                                                                                     broker: str) -> None:
    url = "memory" if broker == "memory" else redis_url(13)
    runtime = Runtime(Settings(hub=HubSettings(broker=url, store=f"sqlite:///{tmp_path}/hub.db", time_limit_s=1,
                                               lease_ttl_s=2, redrive_after_s=1.2, max_age_s=2),
                               connectors={"stripe": {"api_key": "sk", "webhook_secret": "whsec"}}))
    declare(runtime)
    worker = dramatiq.Worker(runtime.broker, worker_threads=1, worker_timeout=100)
    retired: dramatiq.Message[object] = dramatiq.Message(
        queue_name="crossledger-ingest", actor_name="retired_actor", args=("stripe",), kwargs={}, options={})
    try:
        runtime.dispatch(retired)  # what an older release left queued, say
        worker.start()
        assert runtime.store.inflight_count() == 1
        time.sleep(1.0)
        assert runtime.store.dlq_count() == 0  # dead-lettered by the broker, which the hub does not read
        assert runtime.store.inflight_count() == 1

        # The letter is written first, then the message settles (a crash in between writes the
        # same letter again: its id derives from the message's).
        assert wait_until(lambda: runtime.store.dlq_count() == 1 and runtime.store.inflight_count() == 0, timeout=10)
        [letter] = runtime.store.dlq_list()
        assert (letter.actor, letter.category) == ("retired_actor", "broker")
        assert letter.reason.startswith("never settled in 2 s")
        redriven = [r for r in runtime.store.audit_trail("-") if r.step == "retired_actor"]
        assert redriven and {r.status for r in redriven} <= {"redriven", "dead-lettered"}
    finally:
        worker.stop()
        runtime.close()
