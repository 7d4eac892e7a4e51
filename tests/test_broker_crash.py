"""Fault injection across real processes: ``crossledger serve``, ``crossledger worker``, the sandboxes,
and a Redis (AOF, ``fsync always``) that is SIGKILLed and restarted on the same data mid-flight.

One run goes through the whole matrix, each fault while Stripe keeps billing: events delivered
out of order and re-sent five times, NetSuite rate-limiting (429) and failing (500), NetSuite down
long enough to open the circuit, NetSuite committing writes and losing the answers, the worker group
SIGKILLed while NetSuite holds its requests, and Redis SIGKILLed while the workers hold fetched
messages (deliveries in flight, and rate-limited retries waiting in memory for their time) and while
the web process is accepting webhooks. At the end every accepted event has
exactly one outcome: each Stripe invoice and payment is in NetSuite once, there are no dead letters,
and no message is left unsettled (the hub's record of messages in flight is empty).
"""

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Processes, sandbox_config
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import load_settings
from crossledger.core.store import open_store
from crossledger.core.store.base import Store
from crossledger.devtools.demo.reconcile import reconcile
from crossledger.devtools.demo.run import StripeDriver, free_port
from crossledger.testing.redis_server import RedisServer, RedisUnavailable

pytestmark = [pytest.mark.redis, pytest.mark.slow]
HUB = ("\n[hub]\nredis_heartbeat_timeout_ms = 3000\nredis_maintenance_chance = 200000\nmin_backoff_ms = 100\n"
       "max_backoff_ms = 1000\ncircuit_cooldown_s = 1.0\nlease_ttl_s = 5.0\ntime_limit_s = 4\n"
       "redis_retry_s = 1.0\nredrive_after_s = 8.0\n")
"""A dead worker's messages come back after 3 s, leases lapse after 5 s, backoffs are at most 1 s.
Broker commands give up on Redis after 1 s, so the 3 s crash reaches Dramatiq and the hub (the
default, 3 s, would hide most of it from them), and what never settles is sent again after 8 s."""


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer(appendonly=True).start()
    except RedisUnavailable as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    yield server
    server.stop()


class Hub:
    """The sandboxes, ``serve`` and a ``worker`` group on a Redis this test may crash."""

    def __init__(self, tmp_path: Path, processes: Processes, redis_server: RedisServer) -> None:
        self.tmp_path = tmp_path
        self.processes = processes
        self.redis = redis_server
        sandbox_port, hub_port = free_port(), free_port()
        config = sandbox_config(tmp_path, processes, sandbox_port, hub_port, HUB)
        store_url = redis_server.url(2)
        self.env = {**os.environ, "CROSSLEDGER_CONFIG": str(config), "CROSSLEDGER_BROKER": redis_server.url(1),
                    "CROSSLEDGER_STORE": store_url}
        processes.start("serve", "--port", str(hub_port), env=self.env, name="serve")
        self.workers = 0
        self.worker = self.start_worker()
        self.url = f"http://127.0.0.1:{hub_port}"
        assert wait_until(self.ready, 30), (tmp_path / "serve.log").read_text()
        self.sandboxes = f"http://127.0.0.1:{sandbox_port}"
        settings = load_settings(config, environ={})
        self.stripe = StripeDriver(settings.connectors["stripe"]["base_url"], settings.connectors["stripe"]["api_key"])
        self.store: Store = open_store(f"{store_url}?namespace=crossledger")

    def start_worker(self) -> Any:
        self.workers += 1
        self.worker = self.processes.start("worker", "--processes", "2", "--threads", "4", env=self.env,
                                           name=f"worker-{self.workers}")
        return self.worker

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def state(self, system: str) -> dict[str, Any]:
        return httpx.get(f"{self.sandboxes}/{system}/_sandbox/state").json()  # type: ignore[no-any-return]

    def netsuite_fault(self, **spec: Any) -> None:
        httpx.post(f"{self.sandboxes}/netsuite/_sandbox/faults", json=spec).raise_for_status()

    def netsuite_fine(self) -> None:
        httpx.delete(f"{self.sandboxes}/netsuite/_sandbox/faults").raise_for_status()

    def netsuite_hits(self) -> int:
        return int(httpx.get(f"{self.sandboxes}/netsuite/_sandbox/faults").json()["hits"])

    def webhooks(self, **command: Any) -> None:
        httpx.post(f"{self.sandboxes}/stripe/_sandbox/webhooks", json=command).raise_for_status()

    def resend(self, event_id: str) -> None:
        httpx.post(f"{self.sandboxes}/stripe/_sandbox/events/{event_id}/resend").raise_for_status()

    def bill(self, customer: str, amount: int, *, pay: bool) -> None:
        self.stripe.post("/v1/invoiceitems", customer=customer, amount=amount, currency="usd", description="work")
        invoice = self.stripe.post("/v1/invoices", customer=customer)
        self.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        if pay:
            self.stripe.post(f"/v1/invoices/{invoice['id']}/pay", paid_out_of_band="true")

    def bill_under(self, fault: dict[str, Any], customers: list[str], first_amount: int, *, hits: int) -> None:
        """With NetSuite under ``fault``, bill a paid invoice for each customer, and wait until
        NetSuite has had ``hits`` requests since (deliveries are in flight)."""
        self.netsuite_fault(**fault)
        before = self.netsuite_hits()
        for n, customer in enumerate(customers):
            self.bill(customer, first_amount + n, pay=True)
        assert wait_until(lambda: self.netsuite_hits() >= before + hits, 20), f"NetSuite saw no {fault['mode']}"

    def problems(self) -> list[str]:
        problems: list[str] = reconcile(self.state("stripe"), self.state("netsuite"), self.store).problems
        return problems

    def in_step(self) -> bool:
        return not self.problems()

    def logs(self) -> str:
        return self.processes.logs()



def test_every_accepted_event_lands_once_through_faults_and_a_redis_crash(
        tmp_path: Path, processes: Processes, redis_server: RedisServer) -> None:
    hub = Hub(tmp_path, processes, redis_server)
    customers = [hub.stripe.post("/v1/customers", name=f"Crash {n}", email=f"c{n}@example.com")["id"]
                 for n in range(3)]

    # Out of order, then each event five times more.
    hub.webhooks(hold=True)
    for n in range(3):
        hub.bill(customers[n], 1_000 + n, pay=True)
    hub.webhooks(release="reverse")
    for event in hub.stripe.get("/v1/events", limit=6)["data"]:
        for _ in range(5):
            hub.resend(event["id"])
    assert wait_until(hub.in_step, 40), hub.problems()

    # A 429 storm, then 500s, then NetSuite down long enough to open the circuit.
    for fault, amount in (({"mode": "http_429", "count": 12, "retry_after": 1}, 2_000),
                          ({"mode": "http_500", "count": 6}, 3_000), ({"mode": "down"}, 4_000)):
        hub.netsuite_fault(**fault)
        for n in range(2):
            hub.bill(customers[n], amount + n, pay=n == 0)
        if fault["mode"] == "down":
            time.sleep(4)
            hub.netsuite_fine()
    # Writes that land while their answers are lost.
    hub.netsuite_fault(mode="timeout_after_commit", latency_ms=6_000, count=2)
    hub.bill(customers[2], 5_000, pay=True)
    assert wait_until(hub.in_step, 60), hub.problems()

    # The worker group SIGKILLed while NetSuite holds its requests, and restarted.
    hub.bill_under({"mode": "latency", "latency_ms": 1_500}, customers, 6_000, hits=2)
    hub.processes.kill(hub.worker)
    hub.netsuite_fine()
    hub.start_worker()
    assert wait_until(hub.in_step, 60), hub.problems()

    # Redis SIGKILLed while the workers hold fetched messages (deliveries NetSuite is answering
    # slowly, and retries of rate-limited ones waiting in the workers' memory for their time), and
    # while Stripe keeps sending webhooks to the web process; restarted on the same data 3 s later.
    hub.bill_under({"mode": "latency", "latency_ms": 1_500}, customers, 7_000, hits=3)
    hub.bill_under({"mode": "http_429", "retry_after": 3}, customers[:2], 7_500, hits=2)
    time.sleep(1.5)  # their retries reach the workers (due after Retry-After, 3 s), which hold them
    hub.redis.kill()
    for n in range(3):
        hub.bill(customers[n], 8_000 + n, pay=n != 1)
    time.sleep(3)
    hub.redis.start()
    hub.netsuite_fine()

    assert wait_until(hub.in_step, 90), f"{hub.problems()}\n{hub.logs()}"
    netsuite = hub.state("netsuite")
    for kind in ("customer", "invoice", "customerpayment"):
        counts = Counter(record["externalId"] for record in netsuite[kind])
        assert set(counts.values()) == {1}, f"duplicate {kind}: {counts}"
    finalized = [i for i in hub.state("stripe")["invoices"] if i["status"] in ("open", "paid")]
    assert len(netsuite["invoice"]) == len(finalized) == 21
    letters = [(letter.category, letter.reason) for letter in hub.store.dlq_list()]
    assert letters == [], json.dumps(letters)
    assert wait_until(lambda: hub.store.inflight_count() == 0, 30), \
        f"{hub.store.inflight_count()} messages never settled"
