"""``crossledger bench``: the hand-written baseline does the hub's work, and a run prints both and their ratios."""

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
from crossledger.devtools.bench.run import (
    CUSTOMERS,
    Effects,
    create_customers,
    invoice_event,
    invoice_key,
    run_baseline,
    run_hub,
    send_all,
    setting_for,
    warm_up,
)

from tests.conftest import CROSSLEDGER

PER_WRITE = {"id", "links", "externalId", "createdDate", "lastModifiedDate"}
"""What differs between two writes of the same invoice: the record's identity and when it was written."""


def invoices(sandbox_url: str, tag: str) -> dict[str, dict[str, Any]]:
    """The NetSuite sandbox's invoices of events tagged ``tag``, by invoice number, less :data:`PER_WRITE`."""
    state = httpx.get(f"{sandbox_url}/netsuite/_sandbox/state", timeout=30).json()
    return {record["tranId"]: {name: value for name, value in record.items() if name not in PER_WRITE}
            for record in state["invoice"] if record["externalId"].startswith(f"invoice.stripe.in_{tag}_")}


def test_the_baseline_writes_the_invoices_the_hub_writes() -> None:
    events = range(CUSTOMERS + 3)  # every bench customer, some twice
    with setting_for("embedded", None, 1, 2) as setting:
        create_customers(setting)
        for tag, run_side in (("hub", run_hub), ("base", run_baseline)):
            effects = Effects(setting)
            with run_side(setting) as running:
                warm_up(running.url, effects, f"{tag}w")  # up, and past its start
                send_all(running.url, [invoice_event(tag, n) for n in events])
                effects.wait_for([invoice_key(tag, n) for n in events], timeout=120)
        by_hub, by_baseline = invoices(setting.sandbox_url, "hub"), invoices(setting.sandbox_url, "base")
    assert len(by_hub) == len(events)
    assert all(len(record["item"]["items"]) == 3 for record in by_hub.values())  # two lines and the tax
    assert by_baseline == by_hub


def test_a_small_bench_prints_both_sides_and_their_ratios(tmp_path: Path) -> None:
    result = subprocess.run([CROSSLEDGER, "bench", "--messages", "20", "--rounds", "1"], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout
    for mode in ("redis", "embedded"):
        assert re.search(rf"{mode} round 1: hub \d+ events/s", output), output
        assert re.search(rf"{mode} round 1: baseline \d+ events/s", output), output
    assert output.count("hand-written Dramatiq") == 2, output
    throughput = re.findall(r"throughput, N at once \W+ ([\d,]+) events/s \W+ ([\d,]+) events/s \W+ ([\d.]+)x", output)
    assert len(throughput) == 2, output
    for row in ("latency p50 at half rate", "latency p99 at half rate"):
        assert len(re.findall(rf"{row} \W+ [\d,]+ ms \W+ [\d,]+ ms \W+ [\d.]+x", output)) == 2, output
    # A tiny run's CPU may round to no clock tick at all (10 ms over 20 events): then the ratio is n/a.
    for role in ("web", "workers", "redis store", "redis broker", "web + worker (one process)", "sandbox"):
        cpu = rf"CPU per event: {re.escape(role)} \W+ [\d.]+ ms \W+ [\d.]+ ms \W+ ([\d.]+x|n/a)"
        assert re.search(cpu, output), output
    round_trips = re.findall(r"store round trips per event \W+ (\S+) \W+ (\S+) \W+ (\S+)", output)
    redis_trips, embedded_trips = round_trips
    assert float(redis_trips[1]) >= 2  # the baseline's dedupe and customer lookup, at least
    assert embedded_trips == ("n/a", "n/a", "n/a")


def test_the_reconciliation_bench_finds_exactly_the_drifts_it_injected() -> None:
    """2,000 invoices, read 50 a request: the drifts behind the hub's back are found, each
    in its class, and nothing else; the figures are printed."""
    result = subprocess.run([CROSSLEDGER, "bench", "reconcile", "--invoices", "2000", "--page-size", "50"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "200 customers, 2,000 invoices, 1,800 payments" in result.stdout
    assert "every injected drift found, nothing else" in result.stdout
    assert ("findings: amount_mismatch 1, balance 4, duplicate 1, field_drift 1, missing 2, orphan 1, "
            "status_mismatch 2") in result.stdout
    assert re.search(r"│\s+8,000 │ [\d.]+ s │\s+[\d,]+ │\s+[\d.]+ s │\s+[\d.]+ MiB │", result.stdout), result.stdout
