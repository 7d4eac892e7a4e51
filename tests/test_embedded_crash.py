"""The embedded default (``crossledger run``: memory broker, SQLite store) across a crash and a stop.

50 signed Stripe invoice webhooks are answered 2xx while NetSuite answers slowly, so most of them
are still queued in the process when it is SIGKILLed (or stopped with SIGTERM, as a supervisor
stops it). The hub restarts on the same store, and every event answered 2xx reaches NetSuite
exactly once, or is dead-lettered with its reason; nothing is left unsettled. SIGTERM and SIGINT
end the process with exit 0 within ``[hub] shutdown_grace_s``.
"""

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Processes, sandbox_config
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import load_settings
from crossledger.core.store import open_store
from crossledger.devtools.bench.run import signed
from crossledger.devtools.demo.run import StripeDriver, free_port

pytestmark = pytest.mark.slow
INVOICES = 50
GRACE_S = 5
HUB = (f"\n[hub]\nmin_backoff_ms = 100\nmax_backoff_ms = 1000\ncircuit_cooldown_s = 1.0\nlease_ttl_s = 5.0\n"
       f"time_limit_s = 4\nworker_threads = 4\nshutdown_grace_s = {GRACE_S}\n")
"""Four worker threads against a NetSuite answering in 1 s: a backlog of tens of seconds. The
recovery sweep keeps its default (300 s): what the restart resumes is not its doing."""


class EmbeddedRun:
    """The sandboxes and ``crossledger run`` on a SQLite store in ``tmp_path``."""

    def __init__(self, tmp_path: Path, processes: Processes) -> None:
        self.tmp_path = tmp_path
        self.processes = processes
        sandbox_port, self.port = free_port(), free_port()
        config = sandbox_config(tmp_path, processes, sandbox_port, self.port, HUB)
        store_url = f"sqlite:///{tmp_path / 'hub.db'}"
        self.env = {**os.environ, "CROSSLEDGER_CONFIG": str(config), "CROSSLEDGER_BROKER": "memory",
                    "CROSSLEDGER_STORE": store_url}
        self.url = f"http://127.0.0.1:{self.port}"
        self.sandboxes = f"http://127.0.0.1:{sandbox_port}"
        settings = load_settings(config, environ={})
        self.secret = settings.connectors["stripe"]["webhook_secret"]
        self.stripe = StripeDriver(settings.connectors["stripe"]["base_url"], settings.connectors["stripe"]["api_key"])
        self.store_url = store_url
        self.runs = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        process = self.processes.start("run", "--port", str(self.port), env=self.env, name=f"run-{self.runs}")
        assert wait_until(self.ready, 30), self.logs()
        return process

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def netsuite(self) -> dict[str, Any]:
        return httpx.get(f"{self.sandboxes}/netsuite/_sandbox/state").json()  # type: ignore[no-any-return]

    def netsuite_fault(self, **spec: Any) -> None:
        httpx.post(f"{self.sandboxes}/netsuite/_sandbox/faults", json=spec).raise_for_status()

    def netsuite_fine(self) -> None:
        httpx.delete(f"{self.sandboxes}/netsuite/_sandbox/faults").raise_for_status()

    def invoice_events(self) -> list[bytes]:
        """Stripe's events for one customer and ``INVOICES`` finalized invoices, its sandbox told
        to hold its own webhooks: this test posts them itself and sees each answer."""
        httpx.post(f"{self.sandboxes}/stripe/_sandbox/webhooks", json={"hold": True}).raise_for_status()
        customer = self.stripe.post("/v1/customers", name="Crash Test", email="crash@example.com")["id"]
        for n in range(INVOICES):
            self.stripe.post("/v1/invoiceitems", customer=customer, amount=1_000 + n, currency="usd",
                             description="work")
            invoice = self.stripe.post("/v1/invoices", customer=customer)
            self.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        wanted = [event for kind in ("invoice.finalized", "customer.created")
                  for event in self.stripe.get("/v1/events", type=kind, limit=100)["data"]]
        assert [event["type"] for event in wanted].count("invoice.finalized") == INVOICES
        return [httpx.Response(200, json=event).content for event in reversed(wanted)]

    def post(self, body: bytes) -> int:
        return httpx.post(f"{self.url}/webhooks/stripe", content=body, headers=signed(self.secret, body)).status_code

    def logs(self) -> str:
        return self.processes.logs()



@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["sigkill", "sigterm", "ctrl-c"])
def test_every_accepted_event_lands_once_after_the_embedded_hub_stops_mid_backlog(
        tmp_path: Path, processes: Processes, stop: signal.Signals) -> None:
    hub = EmbeddedRun(tmp_path, processes)
    events = hub.invoice_events()
    run = hub.start()
    hub.netsuite_fault(mode="latency", latency_ms=1_000)
    answers = [hub.post(body) for body in events]
    assert answers == [200] * len(events), answers
    time.sleep(2)  # a few deliveries reach NetSuite; most are still queued
    assert len(hub.netsuite()["invoice"]) < INVOICES // 2, "the backlog drained before the stop"

    stopped_at = time.monotonic()
    os.killpg(run.pid, stop)
    code = run.wait(GRACE_S + 10)
    if stop != signal.SIGKILL:
        assert code == 0, hub.logs()
        assert time.monotonic() - stopped_at < GRACE_S + 1, "the stop overran its grace period"
    hub.netsuite_fine()
    hub.start()

    store = open_store(hub.store_url)

    def accounted() -> bool:
        return len(hub.netsuite()["invoice"]) + len(store.dlq_list()) >= INVOICES

    assert wait_until(accounted, 60), f"{len(hub.netsuite()['invoice'])} of {INVOICES} delivered\n{hub.logs()}"
    letters = {letter.id: f"{letter.category}: {letter.reason}" for letter in store.dlq_list()}
    counts = Counter(record["externalId"] for record in hub.netsuite()["invoice"])
    assert set(counts.values()) <= {1}, f"duplicate invoices: {counts}"
    assert len(counts) + len(letters) == INVOICES, letters
    assert all(reason for reason in letters.values()), letters
    assert wait_until(lambda: store.inflight_count() == 0, 30), f"{store.inflight_count()} messages never settled"
