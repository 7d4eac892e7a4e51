"""``crossledger demo``: a month of order-to-cash from Stripe to NetSuite, on the sandboxes.

Everything runs in this process with no service: the Stripe and NetSuite sandboxes on one port, the
hub (memory broker, SQLite store) on another. The demo drives Stripe's API over HTTP like a billing
team would, takes NetSuite down for a while in the middle, re-sends some webhooks as Stripe does,
waits for the pipeline to drain, then reconciles NetSuite against Stripe.
"""

import json
import logging
import random
import socket
import tempfile
import time
from typing import Any

import httpx
from crossledger.core import metrics
from crossledger.core.embedded import EmbeddedHub
from crossledger.core.reconcile import Report, reconcile
from crossledger.core.sandboxes import SandboxSet
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.timeline import timeline, timeline_table
from crossledger.plugins import load_plugins
from crossledger.plugins.sandbox import ServerThread
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

CURRENCIES = ("usd", "eur", "jpy")
# Exclusive tax rates per currency: VAT on EUR invoices, consumption tax on JPY (whole yen); none on USD.
TAX_RATES = {"eur": ("VAT", "20"), "jpy": ("Consumption tax", "10")}
# A plausible price range per currency, in minor units.
PRICE_RANGE = {"usd": (1_500, 90_000), "eur": (1_500, 90_000), "jpy": (2_000, 90_000)}
DUPLICATE_DELIVERIES = 8


class StripeDriver:
    """Calls the Stripe API the way the official client does: form-encoded POSTs, Bearer key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    def post(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.http.post(path, data=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def drive_month(stripe: StripeDriver, netsuite_faults: str, *, customers: int, invoices: int,
                progress: Progress) -> dict[str, int]:
    """Create the customers and invoices; NetSuite goes down from 1/3 to 1/2 of the way through."""
    rng = random.Random(7)
    task = progress.add_task("billing in Stripe", total=customers + invoices)
    tax_rates = {currency: stripe.post("/v1/tax_rates", display_name=name, percentage=percent, inclusive="false")["id"]
                 for currency, (name, percent) in TAX_RATES.items()}
    made = []
    for n in range(customers):
        currency = CURRENCIES[n % len(CURRENCIES)]
        made.append(stripe.post("/v1/customers", name=f"Customer {n + 1:02d} Ltd", email=f"billing{n + 1}@example.com",
                                **{"metadata[segment]": rng.choice(["smb", "mid", "enterprise"])})
                    | {"demo_currency": currency})
        progress.advance(task)
    outage = (invoices // 3, invoices // 2)
    stats = {"paid": 0, "voided": 0, "open": 0}
    for n in range(invoices):
        if n == outage[0]:
            httpx.post(netsuite_faults, json={"mode": "down"}).raise_for_status()
            progress.console.log("NetSuite is down")
        if n == outage[1]:
            httpx.delete(netsuite_faults).raise_for_status()
            progress.console.log("NetSuite is back")
        customer = made[n % customers]
        currency = customer["demo_currency"]
        for line in range(rng.randint(1, 3)):
            low, high = PRICE_RANGE[currency]
            stripe.post("/v1/invoiceitems", customer=customer["id"], currency=currency,
                        amount=rng.randrange(low, high, 100), description=f"Service line {line + 1}")
        taxes = {"default_tax_rates[0]": tax_rates[currency]} if currency in tax_rates else {}
        invoice = stripe.post("/v1/invoices", customer=customer["id"], collection_method="send_invoice",
                              days_until_due=30, **taxes)
        stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        if n == invoices // 4:
            stripe.post(f"/v1/invoices/{invoice['id']}/void")
            stats["voided"] += 1
        elif n % 4 != 3:
            stripe.post(f"/v1/invoices/{invoice['id']}/pay", paid_out_of_band="true")
            stats["paid"] += 1
        else:
            stats["open"] += 1
        progress.advance(task)
    events = stripe.get("/v1/events", limit=100)["data"]
    for event in rng.sample(events, min(DUPLICATE_DELIVERIES, len(events))):
        stripe.post(f"/_sandbox/events/{event['id']}/resend")
    stats["duplicates_sent"] = min(DUPLICATE_DELIVERIES, len(events))
    return stats


def run_demo(*, customers: int, invoices: int, timeout: float, store: str | None, json_summary: bool,
             console: Console) -> int:
    # Failures here are expected and classified (the outage); the audit tells them, not tracebacks.
    logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plugins = load_plugins()
    sandboxes = SandboxSet(plugins.connectors, ["stripe", "netsuite"])
    sandbox_server = ServerThread(sandboxes.app).start()
    hub_port = free_port()
    sandboxes.subscribe(f"http://127.0.0.1:{hub_port}")
    store_url = store or f"sqlite:///{tempfile.mkdtemp(prefix='crossledger-demo-')}/hub.db"
    settings = Settings(
        hub=HubSettings(broker="memory", store=store_url, min_backoff_ms=200, max_backoff_ms=4000,
                        circuit_cooldown_s=1.0),
        connectors=sandboxes.config(sandbox_server.url),
    )
    stripe_config = settings.connectors["stripe"]
    stripe = StripeDriver(stripe_config["base_url"], stripe_config["api_key"])
    faults_url = f"{sandbox_server.url}/netsuite/_sandbox/faults"
    started = time.monotonic()
    with EmbeddedHub(settings, port=hub_port) as hub:
        console.print(f"hub on {hub.url}, sandboxes on {sandbox_server.url} (store {store_url})")
        with Progress(console=console, transient=json_summary) as progress:
            stats = drive_month(stripe, faults_url, customers=customers, invoices=invoices, progress=progress)
            report = wait_for_match(hub, sandboxes, progress, timeout)
        elapsed = time.monotonic() - started
        show_transaction(hub, stripe, console)
        summary = summarize(hub, report, stats, elapsed)
        show_summary(summary, report, console)
    sandbox_server.stop()
    if json_summary:
        print(json.dumps(summary, sort_keys=True))
    return 0 if report.ok else 1


def wait_for_match(hub: EmbeddedHub, sandboxes: SandboxSet, progress: Progress, timeout: float) -> Report:
    """Poll until NetSuite matches Stripe and the hub is idle, or the time is up."""
    task = progress.add_task("NetSuite catching up", total=None)
    deadline = time.monotonic() + timeout
    report = Report(problems=["not checked yet"])
    while time.monotonic() < deadline:
        report = reconcile(sandboxes.sandboxes["stripe"].state(),  # type: ignore[attr-defined]
                           sandboxes.sandboxes["netsuite"].state(), hub.runtime.store)  # type: ignore[attr-defined]
        done = report.counts.get("netsuite_invoices", 0)
        progress.update(task, total=report.counts.get("stripe_invoices_finalized"), completed=done,
                        description=f"NetSuite catching up ({len(report.problems)} differences)")
        if report.ok and hub.idle():
            break
        time.sleep(0.25)
    progress.update(task, completed=report.counts.get("netsuite_invoices", 0))
    return report


def show_transaction(hub: EmbeddedHub, stripe: StripeDriver, console: Console) -> None:
    """The timeline of one paid invoice and its payment, preferring one that lived through the outage."""
    store = hub.runtime.store
    paid = [i for i in stripe.get("/v1/invoices", limit=100)["data"] if i["status"] == "paid"]
    candidates = [store.xref_find("invoice", "stripe", invoice["id"]) or "" for invoice in paid]
    if not candidates:
        return
    parked = [c for c in candidates if any(r.status == "parked" for r in store.audit_for_subject(c))]
    invoice_id = (parked or candidates)[0]
    stripe_id = invoice_id.rsplit("/", 1)[-1]
    payments = stripe.get("/v1/invoice_payments", invoice=stripe_id)["data"]
    related = [store.xref_find("payment", "stripe", payment["id"]) or "" for payment in payments]
    console.print(timeline_table(timeline(store, invoice_id, related=related), f"{invoice_id} and its payment"))


def summarize(hub: EmbeddedHub, report: Report, stats: dict[str, int], elapsed: float) -> dict[str, Any]:
    store = hub.runtime.store
    return {
        "ok": report.ok,
        **report.counts,
        "invoices_paid": stats["paid"],
        "invoices_voided": stats["voided"],
        "duplicate_deliveries_sent": stats["duplicates_sent"],
        "parked_during_outage": int(metrics.registry.get_sample_value("crossledger_parked_total",
                                                                       {"target": "netsuite"}) or 0),
        "retries": int(sum(metrics.registry.get_sample_value("crossledger_retried_total", {"category": c}) or 0
                           for c in ("transient", "rate_limited", "target_down", "ambiguous"))),
        "dead_letters": store.dlq_count("open"),
        "still_parked": store.parked_count("netsuite"),
        "problems": report.problems[:20],
        "seconds": round(elapsed, 1),
    }


def show_summary(summary: dict[str, Any], report: Report, console: Console) -> None:
    table = Table(title="Stripe -> NetSuite")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in summary.items():
        if key not in ("problems", "ok"):
            table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    for problem in report.problems[:20]:
        console.print(f"[red]mismatch:[/red] {problem}")
    verdict = "[green]NetSuite matches Stripe.[/green]" if report.ok else "[red]NetSuite does NOT match Stripe.[/red]"
    console.print(verdict)
