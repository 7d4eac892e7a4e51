"""``crossledger bench``: the hub against a hand-written Dramatiq pipeline doing the same work, in one run.

The work is Stripe's ``invoice.finalized`` -> a NetSuite invoice: verify the webhook's signature,
take the event once by its id, enqueue it, decode it, map it to a NetSuite invoice and upsert it by
external id, signed with OAuth 1.0a, in the NetSuite sandbox. The hub does it through its pipeline;
:mod:`~crossledger.devtools.bench.baseline` does it as a competent engineer would by hand. Invoices
(not customers) because an invoice needs its customer's NetSuite id, which both sides look up in
their store: the comparison includes the lookup a real integration makes. The customers are created
once, before any timing, through the hub (``customer.created`` webhooks); the baseline is given
their NetSuite ids, read from the sandbox. Each invoice is then one delivery on both sides.

Two modes, both by default:

- **redis**: the hub as ``crossledger serve`` + ``crossledger worker`` (``--processes`` ×
  ``--threads``); the baseline as its web process + ``dramatiq`` workers with the same counts. The
  broker and the store are two ``redis-server``\\s the bench starts (the baseline's dedupe keys and
  customer ids on the store's): the store's ``INFO stats`` ``total_reads_processed`` counts what
  its clients sent it (a command, or a pipeline or transaction read at once), so its growth per
  event is the store round trips an event costs.
- **embedded**: the hub as ``crossledger run`` (SQLite store, memory broker, web and worker in one
  process); the baseline as one process serving its app with a Dramatiq worker on a stub broker
  inside, SQLite dedupe. In-process SQLite has no round trips to count: n/a.

Both sides write to the same sandbox program (:mod:`~crossledger.devtools.bench.sandbox`), which
stamps every invoice it writes; each phase gets a fresh one holding only the customers (see
:func:`fresh_sandbox`). Each round runs the hub, then the baseline, each in processes started for
it and warmed up with a few events; the figures are the medians over ``--rounds``. A round:

1. **throughput**: N webhooks at once (8 senders); events/s from the first send to the last
   invoice written; CPU of each process role (``/proc``, children included) and store round trips
   over the same span, per event.
2. **latency**: N/4 more (at least 50) at a steady half of that rate; each event's latency runs
   from its sender starting the POST to the sandbox answering its invoice's upsert: the same two
   points on the same clock for both sides, and what a user of the integration waits.

``--soak N`` instead sends N events through the hub alone at ``--rate`` events/s and samples each
process's RSS every N/20 events. Figures are printed, never asserted.
"""

import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import redis
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import HubSettings, write_private
from crossledger.core.store import open_store
from crossledger.devtools.bench import baseline
from crossledger.devtools.demo.run import free_port
from crossledger.plugins.stripe.signature import signature_header
from crossledger.testing.redis_server import RedisServer
from rich.console import Console
from rich.table import Table

WEBHOOK_SECRET = "whsec_bench"
CUSTOMERS = 20
"""Bench customers the invoices are spread over."""
WARM_UP = 20
SENDERS = 8
Mode = Literal["redis", "embedded"]
MODES: tuple[Mode, ...] = ("redis", "embedded")
ROUND_TRIPS_MEANING = ("store round trips: requests the store's redis-server read from its clients "
                       "(INFO stats total_reads_processed; a pipeline or MULTI read at once counts once), per event")


# -- the processes ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (Linux ``/proc``); 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in children(pid))


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB (``/proc``); 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            own = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0) / 1024
    except OSError:
        return 0.0
    return own + sum(rss_mib(child) for child in children(pid))


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except (OSError, ValueError):
        return []


@contextlib.contextmanager
def stopped_cleanly() -> Iterator[None]:
    """SIGTERM as Ctrl-C: the bench's ``finally`` blocks stop the processes it started, and remove its
    folders and Redis servers, instead of leaving them behind."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def crossledger(*args: str) -> list[str]:
    return [sys.executable, "-m", "crossledger.core", *args]


# -- the events -------------------------------------------------------------------------------


def signed(secret: str, body: bytes) -> dict[str, str]:
    """The headers Stripe sends with ``body``, signed now with ``secret``."""
    return {"Stripe-Signature": signature_header(secret, int(time.time()), body), "Content-Type": "application/json"}


def _event(event_id: str, event_type: str, obj: dict[str, Any], created: int) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "api_version": "2025-10-29", "created": created,
                       "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
                       "request": {"id": None, "idempotency_key": None}, "type": event_type}).encode()


def customer_event(n: int) -> bytes:
    """A ``customer.created`` event for bench customer ``n`` (a fresh event id each call)."""
    created = int(time.time())
    customer: dict[str, object] = {
        "id": f"cus_bench{n:06d}", "object": "customer", "name": f"Bench {n}", "email": f"b{n}@example.com",
        "address": None, "phone": None, "currency": "usd", "metadata": {}, "created": created, "livemode": False}
    return _event(f"evt_bench{n:06d}_{uuid.uuid4().hex[:6]}", "customer.created", customer, created)


def invoice_event(tag: str, n: int) -> bytes:
    """An ``invoice.finalized`` event: invoice ``in_{tag}_{n}`` of bench customer ``n % CUSTOMERS``,
    two lines and tax, due in 30 days."""
    created = int(time.time())
    first, second, tax = 1000 + n % 997, 250 + n % 89, 100 + n % 13
    lines = [{"id": f"il_{tag}_{n}_{k}", "object": "line_item", "amount": amount, "currency": "usd",
              "description": description, "quantity": quantity}
             for k, (amount, description, quantity) in enumerate(((first, "Platform", 1), (second, "Seats", 5)))]
    invoice = {"id": f"in_{tag}_{n:06d}", "object": "invoice", "customer": f"cus_bench{n % CUSTOMERS:06d}",
               "currency": "usd", "number": f"BENCH-{n:06d}", "status": "open", "billing_reason": "manual",
               "lines": {"object": "list", "data": lines}, "total": first + second + tax,
               "total_taxes": [{"amount": tax}], "total_discount_amounts": [],
               "status_transitions": {"finalized_at": created}, "due_date": created + 30 * 86400}
    return _event(f"evt_{tag}_{n:06d}", "invoice.finalized", invoice, created)


# -- one side, running ------------------------------------------------------------------------


@dataclass
class Setting:
    """What both sides of one mode share: the sandbox, the Redis servers, the work folder."""

    mode: Mode
    workdir: Path
    sandbox_pid: int
    sandbox_url: str
    connectors: dict[str, Any]
    processes: int
    threads: int
    broker_url: str = "memory"
    store_url: str | None = None  # the hub's store on Redis
    namespace: str = "bench"
    redis_pids: dict[str, int] = field(default_factory=dict)  # role -> pid, for servers the bench started
    customer_ids: dict[str, str] = field(default_factory=dict)  # Stripe id -> NetSuite internal id

    def effects(self, since: int) -> list[tuple[str, str, float]]:
        answer = httpx.get(f"{self.sandbox_url}/_bench/effects", params={"since": since}, timeout=30)
        return [(kind, key, at) for kind, key, at in answer.json()]

    def store_reads(self) -> int | None:
        """``total_reads_processed`` of the store's own server; None when the store has none to itself."""
        if self.store_url is None or "redis store" not in self.redis_pids:
            return None
        client = redis.Redis.from_url(self.store_url)
        try:
            return int(client.info("stats")["total_reads_processed"])
        finally:
            client.close()


@dataclass
class Running:
    url: str
    roles: dict[str, int]  # role -> pid whose CPU (children included) it is
    store_url: str | None = None  # the hub's store, whose audit trails say where an event's time went


def hub_store_url(setting: Setting) -> str:
    return f"{setting.store_url}?namespace={setting.namespace}" if setting.store_url else \
        f"sqlite:///{setting.workdir / 'hub.db'}"


def hub_config(setting: Setting) -> Path:
    hub = {"broker": setting.broker_url, "store": hub_store_url(setting), "namespace": setting.namespace,
           "shutdown_grace_s": 5}
    connectors = {name: dict(setting.connectors[name]) for name in ("stripe", "netsuite")}
    connectors["stripe"]["webhook_secret"] = WEBHOOK_SECRET
    sections = [f"[hub]\n{_toml(hub)}"] + [f"[connectors.{name}]\n{_toml(section)}"
                                           for name, section in connectors.items()]
    config = setting.workdir / "hub.toml"
    # The customers' NetSuite ids need not go back to Stripe: the measured path ends in NetSuite.
    write_private(config, "\n".join([*sections, '[routes]\n"customer.linked" = []']))
    return config


def _toml(section: dict[str, Any]) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in section.items())


@contextlib.contextmanager
def run_hub(setting: Setting) -> Iterator[Running]:
    env = {**os.environ, "CROSSLEDGER_CONFIG": str(hub_config(setting))}
    port = free_port()
    if setting.mode == "embedded":
        commands = [(crossledger("run", "--port", str(port), "--threads", str(setting.threads)), env)]
        names = ["web + worker (one process)"]
    else:
        commands = [(crossledger("serve", "--port", str(port)), env),
                    (crossledger("worker", "--processes", str(setting.processes), "--threads",
                                 str(setting.threads)), env)]
        names = ["web", "workers"]
    with processes(*commands) as started:
        yield Running(f"http://127.0.0.1:{port}", _roles(setting, names, started), hub_store_url(setting))


def baseline_env(setting: Setting) -> dict[str, str]:
    """The baseline's workers poll an empty queue as often as the hub's (``worker_idle_poll_ms``), so
    that the latencies compare the pipelines, not a setting."""
    store = setting.store_url or f"sqlite:///{setting.workdir / 'baseline.db'}"
    idle_poll_ms = str(HubSettings().worker_idle_poll_ms)
    return {**os.environ, "dramatiq_worker_timeout": idle_poll_ms, "BASELINE_BROKER": setting.broker_url,
            "BASELINE_STORE": store, "BASELINE_NAMESPACE": setting.namespace, "BASELINE_SECRET": WEBHOOK_SECRET,
            "BASELINE_NETSUITE": json.dumps(setting.connectors["netsuite"])}


@contextlib.contextmanager
def run_baseline(setting: Setting) -> Iterator[Running]:
    env = baseline_env(setting)
    port = free_port()
    web = [sys.executable, "-m", "crossledger.devtools.bench.baseline", "--port", str(port),
           "--threads", str(setting.threads)]
    if setting.mode == "embedded":
        commands, names = [(web, env)], ["web + worker (one process)"]
    else:
        workers = [sys.executable, "-m", "dramatiq", "crossledger.devtools.bench.baseline:broker",
                   "--processes", str(setting.processes), "--threads", str(setting.threads)]
        commands, names = [(web, env), (workers, env)], ["web", "workers"]
    with processes(*commands) as started:
        yield Running(f"http://127.0.0.1:{port}", _roles(setting, names, started))


def _roles(setting: Setting, names: list[str], started: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    return {**dict(zip(names, (process.pid for process in started), strict=True)), **setting.redis_pids,
            "sandbox": setting.sandbox_pid}


SIDES: dict[str, Callable[[Setting], contextlib.AbstractContextManager[Running]]] = {
    "hub": run_hub, "baseline": run_baseline}


# -- driving ------------------------------------------------------------------------------------


class Effects:
    """The invoices (or customers) the sandbox has written, read as they come."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.seen: dict[str, float] = {}  # external id -> when its upsert was answered (first time)
        self.read_at_start = self._read = len(setting.effects(0))

    def wait_for(self, keys: list[str], timeout: float = 600) -> dict[str, float]:
        """When each of ``keys`` (external ids) was written; raises if some are not within ``timeout``."""
        def all_written() -> bool:
            fresh = self.setting.effects(self._read)
            self._read += len(fresh)
            for _, key, at in fresh:
                self.seen.setdefault(key, at)
            return all(key in self.seen for key in keys)

        if not wait_until(all_written, timeout=timeout, interval=0.05):
            missing = sum(1 for key in keys if key not in self.seen)
            raise RuntimeError(f"{missing} of {len(keys)} records were not written within {timeout:.0f} s")
        return {key: self.seen[key] for key in keys}


def post(client: httpx.Client, body: bytes) -> None:
    response = client.post("/webhooks/stripe", content=body, headers=signed(WEBHOOK_SECRET, body))
    if response.status_code != 200:
        raise RuntimeError(f"webhook answered {response.status_code}")


def invoice_key(tag: str, n: int) -> str:
    return f"invoice.stripe.in_{tag}_{n:06d}"


def send_all(url: str, bodies: list[bytes]) -> None:
    """POST the webhooks from :data:`SENDERS` threads at once."""
    local = threading.local()

    def send(body: bytes) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        post(local.client, body)

    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        list(pool.map(send, bodies))


def send_paced(url: str, bodies: list[bytes], rate: float, every: Callable[[int], None] | None = None) -> list[float]:
    """POST the webhooks one by one at ``rate`` a second; when each was started. ``every(k)`` is
    called after the k-th."""
    client = httpx.Client(base_url=url, timeout=60)
    started, sent = time.time(), []
    for k, body in enumerate(bodies):
        time.sleep(max(0.0, started + k / rate - time.time()))
        sent.append(time.time())
        post(client, body)
        if every is not None:
            every(k + 1)
    client.close()
    return sent


def warm_up(url: str, effects: Effects, tag: str) -> None:
    """A few events through a side just started, so that neither side's start-up is timed."""
    client = httpx.Client(base_url=url, timeout=30)
    if not wait_until(lambda: _accepts(client, invoice_event(tag, 0)), timeout=60, interval=0.1):
        raise RuntimeError(f"nothing answers webhooks on {url}")
    send_all(url, [invoice_event(tag, n) for n in range(1, WARM_UP)])
    effects.wait_for([invoice_key(tag, n) for n in range(WARM_UP)], timeout=120)
    client.close()


def _accepts(client: httpx.Client, body: bytes) -> bool:
    try:
        post(client, body)
        return True
    except (httpx.HTTPError, RuntimeError):
        return False


@dataclass
class Figures:
    """One side's measures in one round."""

    rate: float  # events/s, N at once
    paced_rate: float
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]  # role -> CPU ms an event
    round_trips: float | None  # store round trips an event; None where not measurable
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> p50, p99 ms (the hub's)


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def measure(setting: Setting, running: Running, events: int, tag: str) -> Figures:
    effects = Effects(setting)
    warm_up(running.url, effects, f"{tag}w")
    burst = [invoice_event(tag, n) for n in range(events)]
    cpu_before = {role: cpu_seconds(pid) for role, pid in running.roles.items()}
    reads_before = setting.store_reads()
    started = time.time()
    send_all(running.url, burst)
    written = effects.wait_for([invoice_key(tag, n) for n in range(events)])
    rate = events / (max(written.values()) - started)
    cpu_ms = {role: (cpu_seconds(pid) - cpu_before[role]) * 1000 / events for role, pid in running.roles.items()}
    reads_after = setting.store_reads()
    round_trips = None if reads_before is None or reads_after is None else (reads_after - reads_before) / events

    paced_rate = rate / 2
    paced = range(events, events + max(50, events // 4))
    sent = send_paced(running.url, [invoice_event(tag, n) for n in paced], paced_rate)
    done = effects.wait_for([invoice_key(tag, n) for n in paced])
    latencies = [(done[invoice_key(tag, n)] - at) * 1000 for n, at in zip(paced, sent, strict=True)]
    timed = [(f"evt_{tag}_{n:06d}", at, done[invoice_key(tag, n)]) for n, at in zip(paced, sent, strict=True)]
    stages = {} if running.store_url is None else stage_percentiles(running.store_url, timed)
    return Figures(rate, paced_rate, percentile(latencies, 50), percentile(latencies, 99), cpu_ms, round_trips, stages)


STAGES = ("webhook: POST started -> admitted", "ingest: admitted -> routed", "delivery: routed -> NetSuite answered")
"""Where the hub's latency goes, read from each event's audit trail (the hub's own clock marks on
the same machine's clock as the sender's and the sandbox's): the web process (HTTP, signature,
the inbox and the enqueue); the ``ingest`` message's wait in its queue and its work up to routing;
then its commit, the ``deliver`` message's wait in its queue, its reads and the NetSuite call."""


def stage_percentiles(store_url: str, events: list[tuple[str, float, float]]) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of each of :data:`STAGES` over ``events`` (Stripe event id, sent, written)."""
    store = open_store(store_url)
    spans: dict[str, list[float]] = {stage: [] for stage in STAGES}
    try:
        for event_id, sent, written in events:
            entry = store.inbox_get("stripe", event_id)
            trail = {} if entry is None else {(r.step, r.status): r.at for r in store.audit_trail(entry.correlation_id)}
            received, routed = trail.get(("webhook", "received")), trail.get(("ingest", "routed"))
            if received is None or routed is None:
                raise RuntimeError(f"the hub's audit trail of {event_id} lacks its admission or its routing")
            for stage, span in zip(STAGES, (received - sent, routed - received, written - routed), strict=True):
                spans[stage].append(span * 1000)
    finally:
        store.close()
    return {stage: (percentile(values, 50), percentile(values, 99)) for stage, values in spans.items()}


def create_customers(setting: Setting) -> None:
    """The bench customers, in NetSuite through the hub (its cross-references with them), and their
    NetSuite ids in the baseline's store. Before any timing."""
    effects = Effects(setting)
    with run_hub(setting) as hub:
        client = httpx.Client(base_url=hub.url, timeout=30)
        if not wait_until(lambda: _accepts(client, customer_event(0)), timeout=60, interval=0.1):
            raise RuntimeError(f"crossledger did not answer webhooks on {hub.url}")
        send_all(hub.url, [customer_event(n) for n in range(1, CUSTOMERS)])
        keys = [f"customer.stripe.cus_bench{n:06d}" for n in range(CUSTOMERS)]
        effects.wait_for(keys, timeout=120)
    netsuite = baseline.NetSuite(setting.connectors["netsuite"])
    setting.customer_ids = {key.rsplit(".", 1)[1]: netsuite.internal_id("customer", key) for key in keys}
    baseline.open_store(baseline_env(setting)["BASELINE_STORE"], setting.namespace).save_customers(setting.customer_ids)


# -- the run --------------------------------------------------------------------------------------


@contextlib.contextmanager
def sandbox_process(workdir: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """A bench sandbox process (:mod:`~crossledger.devtools.bench.sandbox`): its pid, URL and connector settings."""
    config = workdir / f"sandbox-{uuid.uuid4().hex[:6]}.toml"
    command = [sys.executable, "-m", "crossledger.devtools.bench.sandbox", "--write-config", str(config)]
    with processes((command, dict(os.environ))) as (sandbox,):
        if not wait_until(config.exists, 30):
            raise RuntimeError("the bench's sandbox process did not start")
        written = tomllib.loads(config.read_text())
        yield sandbox.pid, written["url"], written["connectors"]


@contextlib.contextmanager
def fresh_sandbox(setting: Setting) -> Iterator[None]:
    """A new, empty sandbox process for one phase, holding only the bench customers, under the same
    NetSuite ids as in the first (where the hub created them, so its cross-references hold here too).

    Why: the NetSuite sandbox finds a record by external id by scanning its records, so each write
    costs more the more invoices it holds; in one sandbox for a whole run, later phases (and so the
    side that runs second) would pay for the earlier ones."""
    first = (setting.sandbox_pid, setting.sandbox_url, setting.connectors)
    with sandbox_process(setting.workdir) as (pid, url, connectors):
        netsuite = baseline.NetSuite(connectors["netsuite"])
        for stripe_id, internal_id in sorted(setting.customer_ids.items(), key=lambda item: int(item[1])):
            key = f"customer.stripe.{stripe_id}"
            netsuite.upsert("customer", key, {"companyName": stripe_id, "subsidiary": {"id": "1"},
                                              "currency": {"id": baseline.CURRENCIES["USD"]}})
            if netsuite.internal_id("customer", key) != internal_id:
                raise RuntimeError(f"customer {stripe_id} did not get NetSuite id {internal_id} again")
        setting.sandbox_pid, setting.sandbox_url, setting.connectors = pid, url, connectors
        try:
            yield
        finally:
            setting.sandbox_pid, setting.sandbox_url, setting.connectors = first


@contextlib.contextmanager
def setting_for(mode: Mode, redis_url: str | None, processes_: int, threads: int) -> Iterator[Setting]:
    """The first sandbox process, and for ``redis`` the broker's and the store's servers, for one mode."""
    with stopped_cleanly(), contextlib.ExitStack() as owned:
        workdir = Path(owned.enter_context(tempfile.TemporaryDirectory(prefix="crossledger-bench-")))
        pid, url, connectors = owned.enter_context(sandbox_process(workdir))
        setting = Setting(mode, workdir, pid, url, connectors, processes_, threads,
                          namespace=f"bench-{uuid.uuid4().hex[:6]}")
        if mode == "redis" and redis_url is None:
            store, broker = (owned.enter_context(RedisServer()) for _ in range(2))
            assert store.process and broker.process
            setting.store_url, setting.broker_url = store.url(0), broker.url(0)
            setting.redis_pids = {"redis store": store.process.pid, "redis broker": broker.process.pid}
        elif mode == "redis":
            assert redis_url is not None
            setting.store_url = setting.broker_url = redis_url
            owned.callback(forget, redis_url, setting.namespace)
        yield setting


def forget(redis_url: str, namespace: str) -> None:
    """Delete the keys the bench wrote on a server it did not start (its namespace), nothing else."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
    client.close()


def bench_mode(mode: Mode, *, events: int, rounds: int, processes_: int, threads: int, redis_url: str | None,
               console: Console) -> dict[str, list[Figures]]:
    """Hub and baseline alternately, ``rounds`` times each; every round's figures by side."""
    found: dict[str, list[Figures]] = {side: [] for side in SIDES}
    with setting_for(mode, redis_url, processes_, threads) as setting:
        create_customers(setting)
        for number in range(rounds):
            for side, run_side in SIDES.items():
                with fresh_sandbox(setting), run_side(setting) as running:
                    figures = measure(setting, running, events, f"{side[0]}{mode[0]}{number}")
                found[side].append(figures)
                console.print(f"{mode} round {number + 1}: {side} {figures.rate:,.0f} events/s, "
                              f"p50/p99 {figures.p50_ms:,.0f}/{figures.p99_ms:,.0f} ms")
    return found


def table(mode: Mode, found: dict[str, list[Figures]], events: int, setting_note: str) -> Table:
    """Medians of each side, and hub / baseline."""
    hub, base = found["hub"], found["baseline"]

    def median(figures: list[Figures], read: Callable[[Figures], float | None]) -> float | None:
        values = [value for value in map(read, figures) if value is not None]
        return statistics.median(values) if values else None

    result = Table(title=f"{mode}: medians of {len(hub)} round(s), {events} events each; {setting_note}")
    for column in ("measure", "crossledger", "hand-written Dramatiq", "hub / baseline"):
        result.add_column(column, justify="left" if column == "measure" else "right")

    def row(name: str, read: Callable[[Figures], float | None], unit: str, digits: int = 0) -> None:
        mine, theirs = median(hub, read), median(base, read)
        shown = [("n/a" if value is None else f"{value:,.{digits}f}{unit}") for value in (mine, theirs)]
        ratio = f"{mine / theirs:.2f}x" if mine is not None and theirs else "n/a"
        result.add_row(name, *shown, ratio)

    row("throughput, N at once", lambda f: f.rate, " events/s")
    for role in hub[0].cpu_ms:
        row(f"CPU per event: {role}", functools.partial(_cpu, role=role), " ms", 2)
    row("store round trips per event", lambda f: f.round_trips, "", 1)
    row("latency p50 at half rate", lambda f: f.p50_ms, " ms")
    row("latency p99 at half rate", lambda f: f.p99_ms, " ms")
    for stage in STAGES:
        row(f"  hub's {stage}, p50", functools.partial(_stage, stage=stage, at=0), " ms")
        row(f"  hub's {stage}, p99", functools.partial(_stage, stage=stage, at=1), " ms")
    return result


def _cpu(figures: Figures, role: str) -> float | None:
    return figures.cpu_ms.get(role)


def _stage(figures: Figures, stage: str, at: int) -> float | None:
    found = figures.stages.get(stage)
    return None if found is None else found[at]


def run_bench(*, messages: int, processes: int, threads: int, redis_url: str | None, rounds: int,
              modes: tuple[Mode, ...], console: Console) -> dict[Mode, dict[str, list[Figures]]]:
    """Both sides in each of ``modes``, their medians and ratios printed; every round's figures returned."""
    console.print(f"{messages} events a round, {rounds} round(s); workers {processes} process(es) x "
                  f"{threads} threads (embedded: one process, {threads} threads)")
    results: dict[Mode, dict[str, list[Figures]]] = {}
    for mode in modes:
        found = bench_mode(mode, events=messages, rounds=rounds, processes_=processes, threads=threads,
                           redis_url=redis_url, console=console)
        results[mode] = found
        if mode == "redis":
            note = "store and broker on separate redis-servers" if redis_url is None else \
                "store and broker on the given Redis (round trips n/a: the server is shared)"
        else:
            note = "SQLite + memory broker (round trips n/a: SQLite is in-process)"
        console.print(table(mode, found, messages, note))
    console.print(f"Latency: from the sender starting the webhook's POST to the NetSuite sandbox answering the "
                  f"invoice's upsert. The {ROUND_TRIPS_MEANING}. CPU includes each process's children.")
    return results


# -- the soak ---------------------------------------------------------------------------------------


def soak(*, events: int, rate: float, mode: Mode, processes: int, threads: int, redis_url: str | None,
         console: Console) -> list[tuple[int, dict[str, float]]]:
    """``events`` through the hub at ``rate`` a second; each role's RSS (MiB) every ``events/20``."""
    samples: list[tuple[int, dict[str, float]]] = []
    with setting_for(mode, redis_url, processes, threads) as setting:
        create_customers(setting)
        with run_hub(setting) as running:
            effects = Effects(setting)
            warm_up(running.url, effects, "soakw")
            step = max(1, events // 20)

            def sample(sent: int) -> None:
                """RSS of each role, and how many sent invoices are not written yet (a backlog grows
                memory without any leak: the soak is only meaningful while it stays small)."""
                backlog = sent - sum(1 for _, key, _ in setting.effects(effects.read_at_start)
                                     if key.startswith("invoice.stripe.in_soak_"))
                samples.append((sent, {role: rss_mib(pid) for role, pid in running.roles.items()}))
                console.print(f"{sent:>8} events, {backlog:>6} not yet written: " + ", ".join(
                    f"{role} {mib:,.0f} MiB" for role, mib in samples[-1][1].items()))

            sample(0)
            sent = send_paced(running.url, [invoice_event("soak", n) for n in range(events)], rate,
                                     lambda count: sample(count) if count % step == 0 and count < events else None)
            effects.wait_for([invoice_key("soak", n) for n in range(events)], timeout=1800)
            sample(events)  # every invoice written
    tenth = next(values for sent, values in samples if sent >= events // 10)
    end = samples[-1][1]
    achieved = (events - 1) / (sent[-1] - sent[0]) if events > 1 else rate
    growth = Table(title=f"soak: {events} events at {rate:g}/s (sent at {achieved:,.1f}/s) through the hub ({mode}); "
                         "RSS, MiB")
    for column in ("process", f"at {events // 10} events", f"at {events} events", "growth"):
        growth.add_column(column, justify="left" if column == "process" else "right")
    for role in end:
        growth.add_row(role, f"{tenth[role]:,.1f}", f"{end[role]:,.1f}", f"{end[role] - tenth[role]:+,.1f}")
    console.print(growth)
    return samples
