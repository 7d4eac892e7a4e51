"""``crossledger bench``: what a pipeline event costs against a bare Dramatiq message.

Both halves run on the same Redis server, in this process, with the same number of worker threads:

1. **no-op**: N messages to an actor that does nothing are enqueued, then a worker drains them.
2. **pipeline**: N signed Stripe ``customer.created`` webhooks are POSTed to the hub's HTTP app; each
   becomes an ``ingest`` and a ``deliver`` message and an OAuth-signed upsert in the NetSuite
   sandbox. Latency is from webhook receipt to acknowledged delivery (the ``delivered`` hook).

The per-message ratio divides the pipeline's cost per message (two messages an event) by the
no-op's. Figures are printed, never asserted.
"""

import hashlib
import hmac
import json
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import httpx
import redis
from crossledger.canonical.events import Envelope
from crossledger.core.broker import MsgspecEncoder
from crossledger.core.embedded import EmbeddedHub, wait_until
from crossledger.core.sandboxes import SandboxSet
from crossledger.core.settings import HubSettings, Settings
from crossledger.plugins import hookimpl, load_plugins
from crossledger.plugins.sandbox import ServerThread
from crossledger.plugins.types import Outcome
from dramatiq.brokers.redis import RedisBroker
from rich.console import Console
from rich.table import Table


def bench_noop(redis_url: str, messages: int, threads: int) -> float:
    """Messages per second a Dramatiq worker drains from Redis when the actor does nothing."""
    dramatiq.set_encoder(MsgspecEncoder())
    broker = RedisBroker(url=redis_url, namespace=f"bench-noop-{uuid.uuid4().hex[:6]}")
    done = threading.Semaphore(0)

    def noop() -> None:
        done.release()

    actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(noop, broker=broker, actor_name="noop", queue_name="noop",
                                                     priority=0, options={})
    for _ in range(messages):
        actor.send()
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    started = time.perf_counter()
    worker.start()
    for _ in range(messages):
        done.acquire()
    elapsed = time.perf_counter() - started
    worker.stop()
    broker.flush_all()
    broker.close()
    return messages / elapsed


class LatencyProbe:
    """A plugin that records webhook-to-delivery latency of every delivered event."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    @hookimpl
    def crossledger_event_delivered(self, event: Envelope, target: str, outcome: Outcome) -> None:
        with self.lock:
            self.latencies.append(time.time() - event.received_at.timestamp())


def signed(secret: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={digest}", "Content-Type": "application/json"}


def customer_event(n: int) -> bytes:
    created = int(time.time())
    customer = {"id": f"cus_bench{n:06d}", "object": "customer", "name": f"Bench {n}", "email": f"b{n}@example.com",
                "address": None, "phone": None, "currency": "usd", "metadata": {}, "created": created,
                "livemode": False}
    event = {"id": f"evt_bench{n:06d}_{uuid.uuid4().hex[:6]}", "object": "event", "api_version": "2025-10-29",
             "created": created, "data": {"object": customer}, "livemode": False, "pending_webhooks": 1,
             "request": {"id": None, "idempotency_key": None}, "type": "customer.created"}
    return json.dumps(event).encode()


def bench_pipeline(redis_url: str, messages: int, threads: int) -> tuple[float, list[float]]:
    """Events per second from webhook to NetSuite sandbox, and each event's latency in seconds."""
    plugins = load_plugins()
    sandboxes = SandboxSet(plugins.connectors, ["stripe", "netsuite"])
    sandbox_server = ServerThread(sandboxes.app).start()
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    store_url = f"{redis_url}?namespace={namespace}"
    settings = Settings(
        hub=HubSettings(broker=redis_url, store=store_url, namespace=namespace),
        connectors={**sandboxes.config(sandbox_server.url)},
    )
    settings.connectors["stripe"]["webhook_secret"] = "whsec_bench"
    probe = LatencyProbe()
    hub = EmbeddedHub(settings, threads=threads)
    hub.runtime.plugins.register(probe, name="bench-latency")
    hub.start()
    bodies = [customer_event(n) for n in range(messages)]
    client = httpx.Client(base_url=hub.url, timeout=30)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda body: client.post("/webhooks/stripe", content=body, headers=signed("whsec_bench", body)).status_code,
            bodies))
    if any(status != 200 for status in statuses):
        raise RuntimeError(f"webhooks rejected: {sorted(set(statuses))}")
    wait_until(lambda: len(probe.latencies) >= messages, timeout=600)
    elapsed = time.perf_counter() - started
    hub.stop()
    sandbox_server.stop()
    redis.Redis.from_url(redis_url).flushdb()
    return len(probe.latencies) / elapsed, probe.latencies


def run_bench(*, messages: int, processes: int, threads: int, redis_url: str, console: Console) -> None:
    if processes != 1:
        raise ValueError("the benchmark runs its workers in this process: --processes must be 1")
    redis.Redis.from_url(redis_url).ping()
    console.print(f"{messages} messages, {threads} worker threads, Redis {redis_url}")
    noop_rate = bench_noop(redis_url, messages, threads)
    console.print(f"no-op: {noop_rate:,.0f} messages/s")
    event_rate, latencies = bench_pipeline(redis_url, messages, threads)
    per_message = noop_rate / (event_rate * 2)
    quantiles = statistics.quantiles(latencies, n=100)
    table = Table(title="crossledger bench")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("raw Dramatiq no-op", f"{noop_rate:,.0f} msg/s")
    table.add_row("crossledger webhook -> NetSuite", f"{event_rate:,.0f} events/s")
    table.add_row("messages per event", "2 (ingest, deliver)")
    table.add_row("cost per message vs no-op", f"{per_message:.1f}x")
    table.add_row("latency p50", f"{quantiles[49] * 1000:.0f} ms")
    table.add_row("latency p99", f"{quantiles[98] * 1000:.0f} ms")
    console.print(table)
    console.print(f"{len(latencies)} events delivered")
