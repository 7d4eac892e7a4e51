"""``crossledger bench``: what a pipeline event costs against a bare Dramatiq message.

Both halves run as the hub runs in production, on the same Redis and with the same worker settings
(``--processes`` × ``--threads`` Dramatiq workers in their own processes). The Redis is a
``redis-server`` the bench starts on a free port and removes afterwards, unless ``--redis-url``
names one; there it writes and then deletes only keys under its own ``bench-*`` namespaces.

1. **no-op**: N messages to an actor that does nothing are enqueued, then ``dramatiq`` worker
   processes drain them; the clock runs from the first message acked to the last (so the workers'
   start-up is not counted).
2. **pipeline**: ``crossledger serve`` and ``crossledger worker`` run in their own processes, the
   sandboxes in theirs. N signed Stripe ``customer.created`` webhooks are POSTed at once; each becomes
   an ``ingest`` and a ``deliver`` message and an OAuth-signed upsert in the NetSuite sandbox. Then
   N/4 more arrive at a steady half of the measured rate. Latency is from the hub's receipt of the
   webhook to the acknowledged delivery, both read from the audit trail.

The per-message ratio divides the pipeline's cost per message (two an event) by the no-op's.
Figures are printed, never asserted.
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import redis
from crossledger.core.demo import free_port
from crossledger.core.embedded import wait_until
from crossledger.core.settings import write_private
from crossledger.core.stores import open_store
from crossledger.core.stores.base import AuditRecord, Store
from crossledger.plugins.stripe.signature import signature_header
from crossledger.testing.redis_server import RedisServer
from rich.console import Console
from rich.table import Table

WEBHOOK_SECRET = "whsec_bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (Linux ``/proc``); 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            children = [int(child) for child in listing.read().split()]
    except (OSError, ValueError, IndexError):
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in children)


@contextlib.contextmanager
def processes(*commands: tuple[list[str], dict[str, str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run commands in the background for the length of the block."""
    running = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for command, env in commands]
    try:
        yield running
    finally:
        for process in running:
            process.terminate()
        for process in running:
            process.wait(30)


def crossledger(*args: str) -> list[str]:
    return [sys.executable, "-m", "crossledger.core", *args]


def bench_noop(redis_url: str, messages: int, workers: int, threads: int) -> tuple[float, float]:
    """Messages per second that Dramatiq worker processes drain when the actor does nothing, and the
    workers' CPU milliseconds per message."""
    namespace = f"bench-noop-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CROSSLEDGER_BENCH_REDIS": redis_url, "CROSSLEDGER_BENCH_NAMESPACE": namespace}
    os.environ.update({"CROSSLEDGER_BENCH_REDIS": redis_url, "CROSSLEDGER_BENCH_NAMESPACE": namespace})
    from crossledger.core import bench_noop as noop_module

    client = redis.Redis.from_url(redis_url)
    pending = f"{namespace}:{noop_module.QUEUE}.msgs"  # a message leaves this hash when it is acked
    command = [sys.executable, "-m", "dramatiq", "crossledger.core.bench_noop", "--processes", str(workers),
               "--threads", str(threads)]
    for _ in range(messages):
        noop_module.noop.send()
    with processes((command, env)) as (worker,):
        # Time the draining, not the workers' start: from the first message acked to the last.
        if not wait_until(lambda: client.hlen(pending) < messages, timeout=60, interval=0.001):
            raise RuntimeError("the no-op workers did not start")
        started, cpu_before = time.perf_counter(), cpu_seconds(worker.pid)
        if not wait_until(lambda: client.hlen(pending) == 0, timeout=600, interval=0.005):
            raise RuntimeError("the no-op workers did not drain the queue")
        elapsed = time.perf_counter() - started
        cpu_ms = (cpu_seconds(worker.pid) - cpu_before) * 1000 / messages
    noop_module.broker.close()
    dramatiq.set_broker(None)  # type: ignore[arg-type]
    forget(client, namespace)
    return (messages - 1) / elapsed, cpu_ms


def signed(secret: str, body: bytes) -> dict[str, str]:
    """The headers Stripe sends with ``body``, signed now with ``secret``."""
    return {"Stripe-Signature": signature_header(secret, int(time.time()), body), "Content-Type": "application/json"}


def customer_event(n: int) -> bytes:
    created = int(time.time())
    customer: dict[str, object] = {
        "id": f"cus_bench{n:06d}", "object": "customer", "name": f"Bench {n}", "email": f"b{n}@example.com",
        "address": None, "phone": None, "currency": "usd", "metadata": {}, "created": created, "livemode": False}
    event = {"id": f"evt_bench{n:06d}_{uuid.uuid4().hex[:6]}", "object": "event", "api_version": "2025-10-29",
             "created": created, "data": {"object": customer}, "livemode": False, "pending_webhooks": 1,
             "request": {"id": None, "idempotency_key": None}, "type": "customer.created"}
    return json.dumps(event).encode()


def start_sandboxes(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``crossledger sandbox`` in its own process, as the external systems are; its config."""
    config = workdir / "sandbox.toml"
    process = subprocess.Popen(crossledger("sandbox", "--port", str(free_port()), "--write-config", str(config)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    cpu_ms_per_event: dict[str, float]  # by role (web, workers, sandboxes), over the burst


def _phase(store: Store, numbers: range) -> Iterator[list[AuditRecord]]:
    """The audit trail of each bench event whose sequence number is in ``numbers``."""
    for event in store.events(source="stripe", type="customer.upserted", limit=1_000_000):
        number = int(event.envelope["source_event_id"].split("_")[1].removeprefix("bench"))
        if number in numbers:
            yield store.audit_trail(event.correlation_id)


def latencies(store: Store, numbers: range) -> list[float]:
    """Receipt-to-delivery seconds of the delivered events of a phase, from the audit trail."""
    found = []
    for trail in _phase(store, numbers):
        received = [r.at for r in trail if r.step == "webhook"]
        done = [r.at for r in trail if r.status == "delivered"]
        if received and done:
            found.append(max(done) - min(received))
    return found


def delivered(store: Store, numbers: range) -> int:
    return sum(1 for trail in _phase(store, numbers) if any(r.status == "delivered" for r in trail))


def last_delivery(store: Store, numbers: range) -> float:
    return max(r.at for trail in _phase(store, numbers) for r in trail if r.status == "delivered")


def bench_pipeline(redis_url: str, messages: int, workers: int, threads: int) -> PipelineFigures:
    """Throughput with N webhooks at once, then latency at a steady half of that rate."""
    with tempfile.TemporaryDirectory() as workdir:
        sandbox, every = start_sandboxes(Path(workdir))
        # The measured path is webhook -> NetSuite. The customers are invented (Stripe has none of
        # them), so cross-references are not written back either.
        connectors = {name: every[name] for name in ("stripe", "netsuite")}
        connectors["stripe"]["webhook_secret"] = WEBHOOK_SECRET
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        config = Path(workdir) / "hub.toml"
        write_private(config, "\n".join(
            [f'[hub]\nbroker = "{redis_url}"\nstore = "{redis_url}?namespace={namespace}"\nnamespace = "{namespace}"']
            + [f"[connectors.{name}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in section.items())
               for name, section in connectors.items()]
            + ['[routes]\n"customer.linked" = []']))
        env = {**os.environ, "CROSSLEDGER_CONFIG": str(config)}
        port = free_port()
        store = open_store(f"{redis_url}?namespace={namespace}")
        hub = f"http://127.0.0.1:{port}"
        try:
            with processes((crossledger("serve", "--port", str(port)), env),
                           (crossledger("worker", "--processes", str(workers), "--threads", str(threads)), env)
                           ) as (web, worker):
                if not wait_until(lambda: _ready(hub), 60):
                    raise RuntimeError("crossledger serve did not become ready")
                roles = {"web (serve)": web.pid, "workers": worker.pid, "sandboxes": sandbox.pid}
                return _drive(hub, store, messages, roles)
        finally:
            sandbox.terminate()
            store.close()
            forget(redis.Redis.from_url(redis_url), namespace)


def _drive(hub: str, store: Store, messages: int, roles: dict[str, int]) -> PipelineFigures:
    client = httpx.Client(base_url=hub, timeout=30)

    def post(n: int) -> None:
        body = customer_event(n)
        status = client.post("/webhooks/stripe", content=body, headers=signed(WEBHOOK_SECRET, body)).status_code
        if status != 200:
            raise RuntimeError(f"webhook rejected with {status}")

    def complete(numbers: range) -> None:
        if not wait_until(lambda: delivered(store, numbers) >= len(numbers), timeout=600, interval=0.5):
            raise RuntimeError("the pipeline did not deliver every event")

    burst = range(messages)
    cpu_before = {role: cpu_seconds(pid) for role, pid in roles.items()}
    started = time.time()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, burst))
    complete(burst)
    cpu = {role: (cpu_seconds(pid) - cpu_before[role]) * 1000 / messages for role, pid in roles.items()}
    burst_rate = messages / (last_delivery(store, burst) - started)

    paced_rate = max(1.0, burst_rate / 2)
    paced = range(messages, messages + max(50, messages // 4))
    paced_start = time.time()
    for offset, n in enumerate(paced):
        time.sleep(max(0.0, paced_start + offset / paced_rate - time.time()))
        post(n)
    complete(paced)
    return PipelineFigures(burst_rate, latencies(store, burst), paced_rate, latencies(store, paced), cpu)


def _ready(hub: str) -> bool:
    try:
        return httpx.get(f"{hub}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def ms(values: list[float], percentile: int) -> str:
    return f"{statistics.quantiles(values, n=100)[percentile - 1] * 1000:,.0f} ms"


def forget(client: redis.Redis, namespace: str) -> None:
    """Delete the keys one bench phase wrote (its own namespace), and nothing else of the server's."""
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
    client.close()


def run_bench(*, messages: int, processes: int, threads: int, redis_url: str | None, console: Console) -> None:
    """Run both halves on ``redis_url``, or (by default) on a ``redis-server`` of its own on a free port."""
    with contextlib.ExitStack() as owned:
        if redis_url is None:
            redis_url = owned.enter_context(RedisServer()).url(0)
        redis.Redis.from_url(redis_url).ping()
        console.print(f"{messages} messages; workers: {processes} process(es) x {threads} threads; Redis {redis_url}")
        noop_rate, noop_cpu_ms = bench_noop(redis_url, messages, processes, threads)
        figures = bench_pipeline(redis_url, messages, processes, threads)
    table = Table(title="crossledger bench")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("raw Dramatiq no-op", f"{noop_rate:,.0f} msg/s")
    table.add_row("crossledger webhook -> NetSuite", f"{figures.burst_rate:,.0f} events/s")
    table.add_row("messages per event", "2 (ingest, deliver)")
    table.add_row("cost per message vs no-op", f"{noop_rate / (figures.burst_rate * 2):.1f}x")
    table.add_row(f"latency p50 / p99 at {figures.paced_rate:,.0f} events/s",
                  f"{ms(figures.paced_latencies, 50)} / {ms(figures.paced_latencies, 99)}")
    table.add_row(f"latency p50 / p99, {messages} at once",
                  f"{ms(figures.burst_latencies, 50)} / {ms(figures.burst_latencies, 99)}")
    table.add_row("CPU per no-op message (workers)", f"{noop_cpu_ms:.2f} ms")
    for role, cpu_ms in figures.cpu_ms_per_event.items():
        table.add_row(f"CPU per event: {role}", f"{cpu_ms:.2f} ms")
    console.print(table)
