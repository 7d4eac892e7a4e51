"""``crossledger bench``: what a pipeline event costs against a bare Dramatiq message.

Both halves run on the same Redis server, in this process, with the same number of worker threads:

1. **no-op**: N messages to an actor that does nothing are enqueued, then a worker drains them.
2. **pipeline**: N signed Stripe ``customer.created`` webhooks are POSTed to the hub's HTTP app; each
   becomes an ``ingest`` and a ``deliver`` message and an OAuth-signed upsert in the NetSuite
   sandbox, which runs in its own process like the real system would. Latency is from webhook
   receipt to acknowledged delivery (the ``delivered`` hook).

The per-message ratio divides the pipeline's cost per message (two messages an event) by the
no-op's. Figures are printed, never asserted.
"""

import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import redis
from crossledger.canonical.events import Envelope
from crossledger.core.broker import MsgspecEncoder
from crossledger.core.demo import free_port
from crossledger.core.embedded import EmbeddedHub, wait_until
from crossledger.core.settings import HubSettings, Settings
from crossledger.plugins import hookimpl
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

    def take(self) -> list[float]:
        with self.lock:
            taken, self.latencies = self.latencies, []
        return taken

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


def start_sandboxes(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``crossledger sandbox`` in its own process, as the external systems are; its config."""
    config = workdir / "sandbox.toml"
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "crossledger.core", "sandbox", "--port", str(port),
                                "--write-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_until(config.exists, 30):
        process.kill()
        raise RuntimeError("the sandbox process did not start")
    return process, tomllib.loads(config.read_text())["connectors"]


@dataclass
class PipelineFigures:
    burst_rate: float  # events/s when N webhooks arrive at once
    burst_latencies: list[float]
    paced_rate: float  # the steady rate of the latency phase
    paced_latencies: list[float]


def bench_pipeline(redis_url: str, messages: int, threads: int) -> PipelineFigures:
    """Throughput with N webhooks at once, then latency at a steady half of that rate."""
    with tempfile.TemporaryDirectory() as workdir:
        sandbox, connectors = start_sandboxes(Path(workdir))
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    connectors["stripe"]["webhook_secret"] = "whsec_bench"
    settings = Settings(
        hub=HubSettings(broker=redis_url, store=f"{redis_url}?namespace={namespace}", namespace=namespace),
        connectors=connectors,
    )
    probe = LatencyProbe()
    hub = EmbeddedHub(settings, threads=threads)
    hub.runtime.plugins.register(probe, name="bench-latency")
    hub.start()
    client = httpx.Client(base_url=hub.url, timeout=30)

    def post(n: int) -> None:
        body = customer_event(n)
        status = client.post("/webhooks/stripe", content=body, headers=signed("whsec_bench", body)).status_code
        if status != 200:
            raise RuntimeError(f"webhook rejected with {status}")

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(post, range(messages)))
        wait_until(lambda: len(probe.latencies) >= messages, timeout=600)
        burst_rate = messages / (time.perf_counter() - started)
        burst = probe.take()

        paced_rate = max(1.0, burst_rate / 2)
        paced = max(50, messages // 4)
        paced_start = time.perf_counter()
        for n in range(paced):
            time.sleep(max(0.0, paced_start + n / paced_rate - time.perf_counter()))
            post(messages + n)
        wait_until(lambda: len(probe.latencies) >= paced, timeout=600)
    finally:
        hub.stop()
        sandbox.terminate()
        redis.Redis.from_url(redis_url).flushdb()
    return PipelineFigures(burst_rate, burst, paced_rate, probe.take())


def ms(latencies: list[float], percentile: int) -> str:
    return f"{statistics.quantiles(latencies, n=100)[percentile - 1] * 1000:,.0f} ms"


def run_bench(*, messages: int, processes: int, threads: int, redis_url: str, console: Console) -> None:
    if processes != 1:
        raise ValueError("the benchmark runs its workers in this process: --processes must be 1")
    redis.Redis.from_url(redis_url).ping()
    console.print(f"{messages} messages, {threads} worker threads, Redis {redis_url}")
    noop_rate = bench_noop(redis_url, messages, threads)
    figures = bench_pipeline(redis_url, messages, threads)
    table = Table(title="crossledger bench")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("raw Dramatiq no-op", f"{noop_rate:,.0f} msg/s")
    table.add_row("crossledger webhook -> NetSuite", f"{figures.burst_rate:,.0f} events/s")
    table.add_row("messages per event", "2 (ingest, deliver)")
    table.add_row("cost per message vs no-op", f"{noop_rate / (figures.burst_rate * 2):.1f}x")
    table.add_row(f"latency p50 / p99 at {figures.paced_rate:,.0f} events/s",
                  f"{ms(figures.paced_latencies, 50)} / {ms(figures.paced_latencies, 99)}")
    table.add_row(f"latency p50 / p99, {messages} at once", f"{ms(figures.burst_latencies, 50)} / "
                  f"{ms(figures.burst_latencies, 99)}")
    console.print(table)
