"""The no-op actor the benchmark measures Dramatiq itself with (``dramatiq crossledger.core.bench_noop``).

Same encoder and Redis as the hub; the broker URL and namespace come from the environment.
"""

import os

import dramatiq
from crossledger.core.broker import MsgspecEncoder
from dramatiq.brokers.redis import RedisBroker

NAMESPACE = os.environ.get("CROSSLEDGER_BENCH_NAMESPACE", "bench-noop")
QUEUE = "noop"

dramatiq.set_encoder(MsgspecEncoder())
broker = RedisBroker(url=os.environ["CROSSLEDGER_BENCH_REDIS"], namespace=NAMESPACE)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    """Does nothing: what is left is the cost of a message."""
