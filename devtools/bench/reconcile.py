"""``crossledger bench reconcile``: a full reconciliation of N invoices with their customers and
payments, Stripe against NetSuite, read through the APIs; its time, read rate and peak memory.

The sandboxes run in a process of their own (:mod:`.ledgers`: seeded directly, then drifted
behind the hub's back), so this process is the reconciler alone: a hub runtime on a fresh SQLite
store, configured with nothing but the sandboxes' URLs and credentials, running
:class:`~crossledger.core.reconcile.Reconciler` once, in full. Memory is the process's peak
resident set (``getrusage``), against what it held before the run began; ``--tracemalloc`` adds the
peak of Python's own allocations during the run (tracing makes the run several times slower). The
time is the run's wall time, the sandboxes' answers included; the reconciler's own CPU time is
shown beside it.

The run must find exactly the findings the drifts make (each in its class, and the balances of
their months) and nothing else: otherwise the bench says what differs and exits 1.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossledger.core.processes.composition import hub_runtime
from crossledger.core.processes.embedded import wait_until
from crossledger.core.reconcile import Reconciler
from crossledger.core.settings import HubSettings, Settings
from rich.console import Console
from rich.table import Table

SEED_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Figures:
    """One run, measured."""

    invoices: int
    seeded: dict[str, int]
    seconds: float
    cpu_seconds: float
    read: dict[str, int]
    rss_before_kb: int
    rss_peak_kb: int
    traced_peak: int | None
    missed: list[tuple[str, str]]
    unexpected: list[tuple[str, str]]
    found: dict[str, int]

    @property
    def records_read(self) -> int:
        return sum(self.read.values())


def _cpu_seconds() -> float:
    """The CPU time this process (the reconciler, not the sandboxes) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_kb() -> int:
    """The resident set now (``VmRSS``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(invoices: int, *, page_size: int | None, traced: bool, workdir: Path) -> Figures:
    """Start the seeded sandboxes, reconcile once, stop them (see the module doc)."""
    ready = workdir / "ready.json"
    sandboxes = subprocess.Popen([sys.executable, "-m", "crossledger.devtools.bench.ledgers", "--invoices",
                                  str(invoices), "--ready", str(ready)], stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: ready.exists() or sandboxes.poll() is not None, timeout=SEED_TIMEOUT_S, interval=0.2)
        if not ready.exists():
            raise RuntimeError(f"the bench's sandboxes exited ({sandboxes.returncode}) before they were seeded")
        time.sleep(0.1)  # the file is written in one call; let it land
        plan: dict[str, Any] = json.loads(ready.read_text())
        settings = Settings(hub=HubSettings(broker="memory", store=f"sqlite:///{workdir}/hub.db"),
                            connectors=plan["connectors"])
        runtime = hub_runtime(settings)[0]
        reconciler = Reconciler(runtime, page_size=page_size)
        before = _rss_kb()
        if traced:
            tracemalloc.start()
        started, cpu = time.perf_counter(), _cpu_seconds()
        report = reconciler.run(since=None)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
        tracemalloc.stop()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        sandboxes.terminate()
        sandboxes.wait(timeout=30)
    expected = {(cls, subject) for cls, subject in plan["expected"]}
    found = {(finding.cls, finding.subject) for finding in report.findings}
    return Figures(invoices=invoices, seeded=plan["seeded"], seconds=seconds, cpu_seconds=cpu,
                   read=dict(report.run.counts),
                   rss_before_kb=before, rss_peak_kb=peak, traced_peak=traced_peak,
                   missed=sorted(expected - found), unexpected=sorted(found - expected),
                   found=dict(Counter(finding.cls for finding in report.findings)))


def show(figures: Figures, console: Console) -> None:
    seeded = ", ".join(f"{count:,} {name}" for name, count in figures.seeded.items())
    console.print(f"reconciled {seeded} (Stripe against NetSuite, each read through its API)")
    table = Table()
    for column in ("records read", "time", "records/s", "reconciler CPU", "peak RSS", "RSS before the run",
                   "traced peak"):
        table.add_column(column, justify="right")
    traced = "-" if figures.traced_peak is None else f"{figures.traced_peak / 2**20:.1f} MiB"
    table.add_row(f"{figures.records_read:,}", f"{figures.seconds:.1f} s",
                  f"{figures.records_read / figures.seconds:,.0f}", f"{figures.cpu_seconds:.1f} s",
                  f"{figures.rss_peak_kb / 1024:.1f} MiB",
                  f"{figures.rss_before_kb / 1024:.1f} MiB", traced)
    console.print(table)
    console.print("read: " + ", ".join(f"{name} {count:,}" for name, count in sorted(figures.read.items())))
    console.print("findings: " + ", ".join(f"{cls} {count}" for cls, count in sorted(figures.found.items())))
    for cls, subject in figures.missed:
        console.print(f"[red]not found:[/red] {cls} {subject}")
    for cls, subject in figures.unexpected:
        console.print(f"[red]not injected:[/red] {cls} {subject}")
    if not (figures.missed or figures.unexpected):
        console.print("[green]every injected drift found, nothing else[/green]")


def run_reconcile_bench(*, invoices: int, page_size: int | None, traced: bool, console: Console) -> int:
    """Measure, print; 0 when the findings are exactly the injected drifts', else 1."""
    with tempfile.TemporaryDirectory(prefix="crossledger-bench-") as workdir:
        figures = measure(invoices, page_size=page_size, traced=traced, workdir=Path(workdir))
    show(figures, console)
    return 1 if figures.missed or figures.unexpected else 0
