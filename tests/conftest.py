"""Fixtures shared by the whole suite. Each area's own fixtures live in its test module."""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from crossledger.core.processes.embedded import EmbeddedHub, wait_until
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.store import RedisStore, SQLiteStore, Store
from crossledger.devtools.demo.reconcile import Report, reconcile
from crossledger.devtools.demo.run import StripeDriver, free_port
from crossledger.devtools.sandboxes import SandboxSet
from crossledger.plugins import load_plugins
from crossledger.plugins.emulator import ServerThread
from crossledger.testing.redis_server import RedisServer, RedisUnavailable
from crossledger.testing.specs.answers import Recorder
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.kits import salesforce as salesforce_kit
from tests.kits import zendesk as zendesk_kit

_redis: RedisServer | None = None


def redis_url(db: int) -> str:
    """A Redis URL on its own db number of the suite's private server (started on first use)."""
    global _redis
    if _redis is None:
        try:
            _redis = RedisServer().start()
        except RedisUnavailable as missing:
            if os.environ.get("CI"):  # CI installs redis-server: a missing one is a failure, not a skip
                raise
            pytest.skip(str(missing))
    url = _redis.url(db)
    redis.Redis.from_url(url).flushdb()  # our own server: earlier tests' keys only
    return url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _redis is not None:
        _redis.stop()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend of the store in turn, empty: SQLite (a file in tmp_path), then Redis (db 9, in a
    namespace of its own)."""
    opened: Store
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "store.db")
    else:
        opened = RedisStore(redis_url(9), namespace=f"test-{uuid.uuid4().hex}")
    yield opened
    opened.reset()
    opened.close()


# -- one connector's sandbox on loopback --------------------------------------------------------
# A connector's test module defines a module-scoped ``sandbox`` fixture; these serve it, give one
# HTTP client for the module, and (opted into with ``usefixtures``) clear faults after each test.


@pytest.fixture(scope="module")
def served_app(sandbox: Any) -> Any:
    """What ``server`` serves: the module's sandbox; a module may override it to serve the sandbox
    wrapped, e.g. in a :class:`~crossledger.testing.specs.answers.Recorder`."""
    return sandbox.app


@pytest.fixture(scope="module")
def server(served_app: Any) -> Iterator[ServerThread]:
    thread = ServerThread(served_app).start()
    yield thread
    thread.stop()


@pytest.fixture
def as_the_vendor_answers(served_app: Any) -> Iterator[None]:
    """Fails a test in which the served sandbox, checked against its vendor's published description,
    answered anything the vendor would not (opted into with ``usefixtures``)."""
    yield
    if isinstance(served_app, Recorder):
        departures = served_app.take_departures()
        assert departures == [], "\n".join(departures)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def no_faults_left(server: ServerThread) -> Iterator[None]:
    yield
    httpx.delete(f"{server.url}/_sandbox/faults").raise_for_status()


# -- a whole system on loopback: sandboxes + embedded hub ------------------------------------------




SPEC_CHECKED: dict[str, Callable[[Any], Recorder]] = {"zendesk": zendesk_kit.checked,
                                                      "salesforce": salesforce_kit.checked}
"""The sandboxes whose every answer a system checks against their vendors' published descriptions."""


@dataclass
class System:
    hub: EmbeddedHub
    sandboxes: SandboxSet
    server: ServerThread
    stripe_driver: StripeDriver | None
    checked: dict[str, Recorder] = field(default_factory=dict)

    @property
    def stripe(self) -> StripeDriver:
        """Someone working in Stripe (a system with Stripe for billing)."""
        assert self.stripe_driver is not None, "this system has no Stripe"
        return self.stripe_driver

    def departures(self) -> list[str]:
        """What the checked sandboxes answered that their vendors would not, since the last call."""
        return [f"{name}: {found}" for name, app in self.checked.items() for found in app.take_departures()]

    def state(self, system: str) -> dict[str, Any]:
        return self.sandboxes.sandboxes[system].state()  # type: ignore[attr-defined,no-any-return]

    def fault(self, system: str, **spec: Any) -> None:
        httpx.post(f"{self.server.url}/{system}/_sandbox/faults", json=spec).raise_for_status()

    def clear_fault(self, system: str) -> None:
        httpx.delete(f"{self.server.url}/{system}/_sandbox/faults").raise_for_status()

    def reconcile(self) -> Report:
        return reconcile(self.state("stripe"), self.state("netsuite"), self.hub.runtime.store)

    def settled(self) -> bool:
        webhooks = self.sandboxes.sandboxes["stripe"].wait_for_webhooks(0)  # type: ignore[attr-defined]
        return bool(webhooks) and self.hub.idle()

    def stop(self) -> None:
        """Stop the hub, then the sandboxes it talks to."""
        self.hub.stop()
        self.server.stop()

    def settle(self, condition: Callable[[], bool] = lambda: True, timeout: float = 30) -> None:
        settled = wait_until(lambda: self.settled() and condition(), timeout)
        letters = [(letter.category, letter.reason) for letter in self.hub.runtime.store.dlq_list()]
        assert settled, f"the system did not settle in time (dead letters: {letters})"

    def customer(self, name: str = "Acme Ltd") -> dict[str, Any]:
        return self.stripe.post("/v1/customers", name=name, email=f"{name.split()[0].lower()}@example.com")

    def invoice(self, customer: str, amounts: list[int], currency: str = "usd", *,
                pay: bool = False) -> dict[str, Any]:
        for amount in amounts:
            self.stripe.post("/v1/invoiceitems", customer=customer, amount=amount, currency=currency,
                             description=f"line {amount}")
        invoice = self.stripe.post("/v1/invoices", customer=customer, collection_method="send_invoice",
                                   days_until_due=30)
        invoice = self.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        if pay:
            invoice = self.stripe.post(f"/v1/invoices/{invoice['id']}/pay", paid_out_of_band="true")
        return invoice


def start_system(tmp_path: Path, routes: dict[str, list[str]] | None = None,
                 systems: tuple[str, ...] = ("stripe", "netsuite"), journeys: dict[str, Any] | None = None,
                 netsuite: dict[str, Any] | None = None, ownership: dict[str, Any] | None = None,
                 topology: dict[str, str] | None = None, **hub: Any) -> System:
    sandboxes = SandboxSet(load_plugins().connectors, list(systems))
    checked = {name: SPEC_CHECKED[name](sandbox.app) for name, sandbox in sandboxes.sandboxes.items()
               if name in SPEC_CHECKED}
    served = Starlette(routes=[Mount(f"/{name}", app=checked.get(name, sandbox.app))
                               for name, sandbox in sandboxes.sandboxes.items()])
    server = ServerThread(served).start()
    port = free_port()
    sandboxes.subscribe(f"http://127.0.0.1:{port}")
    connectors = sandboxes.config(server.url)
    if "netsuite" in connectors:
        connectors["netsuite"] |= {"timeout_s": 1.0, **(netsuite or {})}
    options = {"broker": "memory", "store": f"sqlite:///{tmp_path}/hub.db", "min_backoff_ms": 50,
               "max_backoff_ms": 400, "circuit_cooldown_s": 0.5, "max_retries": 4, "poll_interval_s": 0.3, **hub}
    settings = Settings(hub=HubSettings(**options), connectors=connectors, routes=routes or {},
                        journeys=journeys or {}, ownership=ownership or {}, topology=topology or {})
    hub_process = EmbeddedHub(settings, port=port, threads=4).start()
    stripe = connectors.get("stripe")
    driver = StripeDriver(stripe["base_url"], stripe["api_key"]) if stripe else None
    return System(hub_process, sandboxes, server, driver, checked)


class Current:
    """An ASGI app forwarding to the app the running test installed: one server for a module
    (starting and stopping uvicorn is the slow part), a fresh sandbox per test. It records the
    requests, so tests can see what a client sent."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.requests: list[tuple[str, str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"], scope["query_string"].decode()))
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[ServerThread, Current]]:
    """A loopback server for the module, serving whatever app the test installs in ``host[1].app``."""
    current = Current()
    thread = ServerThread(current).start()
    yield thread, current
    thread.stop()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    running = start_system(tmp_path)
    yield running
    running.stop()


# -- crossledger commands as processes --------------------------------------------------------------
CROSSLEDGER = str(Path(sys.executable).with_name("crossledger"))


class Processes:
    """``crossledger`` commands run as processes of their own, each in its own session and with its
    log in ``tmp_path``; whatever still runs is stopped after the test (the ``processes`` fixture)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen([CROSSLEDGER, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.running.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def logs(self) -> str:
        """The end of every process's log, for a failed assertion to show."""
        return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in sorted(self.tmp_path.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()


def sandbox_config(tmp_path: Path, processes: Processes, sandbox_port: int, hub_port: int, hub: str,
                   pair: tuple[str, ...] = ()) -> Path:
    """Serve every sandbox (``crossledger sandbox``) and return the configuration it writes for a hub
    on ``hub_port`` (for the billing and ERP ``pair`` gives as options, ``--billing zuora``...), with
    the ``[hub]`` table ``hub`` added."""
    config = tmp_path / "hub.toml"
    processes.start("sandbox", "--port", str(sandbox_port), "--hub-url", f"http://127.0.0.1:{hub_port}",
                    "--write-config", str(config), *pair, name="sandbox")
    assert wait_until(config.exists, 30), "crossledger sandbox wrote no config"
    with config.open("a") as extra:
        extra.write(hub)
    return config
