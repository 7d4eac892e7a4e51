"""The hub as it runs in production: separate processes over Redis.

``crossledger sandbox`` writes the configuration, ``crossledger serve`` answers webhooks,
``crossledger worker`` runs the actors. A worker killed with SIGKILL in the middle of deliveries is
restarted, and every event still lands exactly once; a dead letter is replayed from the CLI.
"""

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CROSSLEDGER, Processes, redis_url, sandbox_config
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import load_settings
from crossledger.core.store import open_store
from crossledger.devtools.bench.run import signed
from crossledger.devtools.demo.billing import BILLING
from crossledger.devtools.demo.drivers import Sandboxes
from crossledger.devtools.demo.erp import ERPS
from crossledger.devtools.demo.reconcile import reconcile
from crossledger.devtools.demo.run import StripeDriver, free_port
from crossledger.devtools.sandboxes import PAIRS, Topology

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CROSSLEDGER, *args], env=env, capture_output=True, text=True, timeout=60)


def test_serve_and_worker_processes_on_redis(tmp_path: Path, processes: Processes) -> None:
    broker, store_url = redis_url(11), redis_url(12)
    sandbox_port, hub_port = free_port(), free_port()
    config = sandbox_config(tmp_path, processes, sandbox_port, hub_port,
                            "\n[hub]\nredis_heartbeat_timeout_ms = 3000\nredis_maintenance_chance = 200000\n"
                            "min_backoff_ms = 100\nmax_backoff_ms = 1000\ncircuit_cooldown_s = 1.0\n"
                            "lease_ttl_s = 5.0\ntime_limit_s = 4\n")
    env = {**os.environ, "CROSSLEDGER_CONFIG": str(config), "CROSSLEDGER_BROKER": broker,
           "CROSSLEDGER_STORE": store_url}
    processes.start("serve", "--port", str(hub_port), env=env, name="serve")
    worker = processes.start("worker", "--processes", "1", "--threads", "4", env=env, name="worker")
    hub = f"http://127.0.0.1:{hub_port}"
    assert wait_until(lambda: _ready(hub), 30), (tmp_path / "serve.log").read_text()

    settings = load_settings(config, environ={})
    stripe = StripeDriver(settings.connectors["stripe"]["base_url"], settings.connectors["stripe"]["api_key"])
    sandboxes = f"http://127.0.0.1:{sandbox_port}"
    store = open_store(f"{store_url}?namespace=crossledger")

    def matches() -> bool:
        return reconcile(_state(sandboxes, "stripe"), _state(sandboxes, "netsuite"), store).ok

    customers = [stripe.post("/v1/customers", name=f"Proc {n}", email=f"p{n}@example.com") for n in range(3)]
    for n in range(6):
        _invoice(stripe, customers[n % 3]["id"], 1_000 * (n + 1), pay=n % 2 == 0)
    assert wait_until(matches, 60), reconcile(_state(sandboxes, "stripe"), _state(sandboxes, "netsuite"),
                                              store).problems

    # SIGKILL a worker while NetSuite holds its requests, then restart it.
    httpx.post(f"{sandboxes}/netsuite/_sandbox/faults", json={"mode": "latency", "latency_ms": 1500})
    for n in range(4):
        _invoice(stripe, customers[n % 3]["id"], 20_000 + n, pay=True)
    assert wait_until(lambda: _held_requests(sandboxes) >= 2, 20), "no delivery reached NetSuite"
    processes.kill(worker)
    httpx.delete(f"{sandboxes}/netsuite/_sandbox/faults")
    processes.start("worker", "--processes", "1", "--threads", "4", env=env, name="worker-2")
    assert wait_until(matches, 90), reconcile(_state(sandboxes, "stripe"), _state(sandboxes, "netsuite"),
                                              store).problems
    netsuite = _state(sandboxes, "netsuite")
    for kind in ("customer", "invoice", "customerpayment"):
        counts = Counter(record["externalId"] for record in netsuite[kind])
        assert set(counts.values()) == {1}, f"duplicate {kind}: {counts}"
    assert len(netsuite["invoice"]) == 10

    # An invariant breach: dead-lettered as data, replayed once from the CLI after refetching. The
    # refetched invoice is either as the hub has it (nothing moves) or newer (paid since: written
    # once more over the same NetSuite record).
    invoice = stripe.get("/v1/invoices", limit=1)["data"][0]
    broken = {**invoice, "total": invoice["total"] + 7}
    body = json.dumps({"id": "evt_broken", "object": "event", "type": "invoice.finalized",
                       "created": int(time.time()), "data": {"object": broken}}).encode()
    secret = settings.connectors["stripe"]["webhook_secret"]
    assert httpx.post(f"{hub}/webhooks/stripe", content=body, headers=signed(secret, body)).status_code == 200
    assert wait_until(lambda: store.dlq_count() == 1, 30)
    [letter] = store.dlq_list()
    assert letter.category == "data"
    listed = cli(env, "dlq", "list")
    assert letter.id in listed.stdout
    replayed = cli(env, "dlq", "replay", letter.id, "--refresh")
    assert replayed.returncode == 0, replayed.stderr
    assert cli(env, "dlq", "replay", letter.id).returncode == 1
    assert wait_until(lambda: store.dlq_count() == 0 and _settled(store, letter.correlation_id or ""), 30)
    traced = cli(env, "trace", letter.correlation_id or "")
    assert traced.returncode == 0 and "ingest" in traced.stdout
    assert len(_state(sandboxes, "netsuite")["invoice"]) == 10

    # The hub's logs name the dead-lettered message by its id, never the customers it carried.
    logs = "".join((tmp_path / f"{name}.log").read_text() for name in ("serve", "worker", "worker-2"))
    assert "dead-lettered message" in logs
    for customer in customers:
        assert customer["email"] not in logs and customer["name"] not in logs, customer["email"]


def _ready(hub: str) -> bool:
    try:
        return httpx.get(f"{hub}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _state(base: str, system: str) -> dict[str, Any]:
    return httpx.get(f"{base}/{system}/_sandbox/state").json()  # type: ignore[no-any-return]


def _invoice(stripe: StripeDriver, customer: str, amount: int, *, pay: bool) -> None:
    stripe.post("/v1/invoiceitems", customer=customer, amount=amount, currency="usd", description="work")
    invoice = stripe.post("/v1/invoices", customer=customer)
    stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
    if pay:
        stripe.post(f"/v1/invoices/{invoice['id']}/pay", paid_out_of_band="true")


def _held_requests(base: str) -> int:
    """How many requests NetSuite's latency fault is holding or has held: deliveries in flight."""
    return int(httpx.get(f"{base}/netsuite/_sandbox/faults").json()["hits"])


def _settled(store: Any, correlation_id: str) -> bool:
    return any((r.step, r.status) in (("ingest", "unchanged"), ("invoice.upsert", "delivered"))
               for r in store.audit_trail(correlation_id))


@pytest.mark.parametrize("topology", PAIRS, ids=[str(pair) for pair in PAIRS])
def test_each_pair_written_by_crossledger_sandbox_books_billing_in_its_erp_over_redis(
        tmp_path: Path, processes: Processes, topology: Topology) -> None:
    """``crossledger sandbox --billing ... --erp ...`` configures the hub for that pair alone; serve
    and worker processes on a Redis broker and store book what billing issues and is paid in its ERP."""
    broker, store_url = redis_url(11), redis_url(12)
    sandbox_port, hub_port = free_port(), free_port()
    config = sandbox_config(tmp_path, processes, sandbox_port, hub_port,
                            "\n[hub]\nmin_backoff_ms = 100\nmax_backoff_ms = 1000\ncircuit_cooldown_s = 1.0\n",
                            ("--billing", topology.billing.value, "--erp", topology.erp.value))
    settings = load_settings(config, environ={})
    assert set(settings.connectors) == set(topology.systems) and settings.topology == topology.roles()
    env = {**os.environ, "CROSSLEDGER_CONFIG": str(config), "CROSSLEDGER_BROKER": broker,
           "CROSSLEDGER_STORE": store_url}
    processes.start("serve", "--port", str(hub_port), env=env, name="serve")
    processes.start("worker", "--processes", "1", "--threads", "4", env=env, name="worker")
    hub = f"http://127.0.0.1:{hub_port}"
    assert wait_until(lambda: _ready(hub), 30), processes.logs()

    sandboxes = Sandboxes(f"http://127.0.0.1:{sandbox_port}")
    billing = BILLING[topology.billing_system](settings.connectors[topology.billing_system], sandboxes)
    books = ERPS[topology.erp_system](settings.connectors[topology.erp_system], sandboxes)
    customer = billing.customer("Redis Pair Co")
    invoice = billing.invoice(customer, "USD", [2_500])
    billing.pay(invoice, by_card=True)
    canonical_invoice = f"invoice/{topology.billing_system}/{invoice}"

    def booked() -> bool:
        state = sandboxes.state(topology.erp_system)
        invoices = books.invoices(state, canonical_invoice)
        return len(invoices) == 1 and len(books.payments_of(state, invoices[0])) == 1

    assert wait_until(booked, 60), processes.logs()
