"""The KPIs page: the figures the seeds' readers are judged by, from the hub's own records, with
simple charts over time (inline SVG, drawn on the server).

Over the last :data:`HOURS` hours, from the store's count of the messages concluded in each hour
(:meth:`~crossledger.core.store.base.Store.concluded_by_hour`, however many there were):

- **sync success rate**: the share of concluded messages delivered or with nothing to do;
- a chart of the messages delivered and dead-lettered, hour by hour.

Over the latest :data:`SCANNED` entries of the outcome ledger (the page says how many and since
when: at a busy hub, minutes):

- **invoice-to-ERP latency**, p50 and p95: from an invoice event's arrival to its delivery to the
  ERP (systems of kind ``erp``), with its chart by hour; what a message is about, its outcome entry
  says (:func:`_about_invoice`), so the page reads no message's audit trail;
- **duplicate rate**: the latest reconciliation's duplicates per record read;
- **open exceptions** and their age, and the median **time to resolve** the resolved ones;
- **SLA breaches**, by the ``[kpis]`` settings (:class:`~crossledger.core.settings.KpiSettings`):
  invoices not in the ERP within ``invoice_posted_within_s`` (delivered late, or still not
  delivered after it); payments not reflected in the support desk's entitlements within
  ``payment_entitled_within_s`` (a journey run a payment started, such as a suspended customer's
  reinstatement, whose entitlement step finished late or not yet, counted from the run's start);
  and journey runs past their own SLA.

The charts' slots are the last 24 UTC hours, the current one on the right.
"""

import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crossledger.core.console.access import Access
from crossledger.core.console.chain import entitlement_steps
from crossledger.core.console.queue import Queue
from crossledger.core.console.render import page
from crossledger.core.console.sessions import Session
from crossledger.core.hub.ledger import subjects_of
from crossledger.core.reconcile.engine import latest_finished
from crossledger.core.store.base import JourneyRecord, LedgerState, OutcomeRecord, Store, hour_of
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

SCANNED = 1000
HOURS = 24
CHART_W, CHART_H = 720, 160


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str
    css: str


@dataclass
class Chart:
    """Bars over the last :data:`HOURS` hours, scaled to the largest value, ready for the template."""

    title: str
    bars: list[Bar] = field(default_factory=list)
    peak: str = ""

    @classmethod
    def of(cls, title: str, series: dict[str, list[float]], now: float, unit: str = "") -> "Chart":
        """One bar per hour per series (side by side); ``series`` names each list of hourly values."""
        chart = cls(title)
        peak = max((value for values in series.values() for value in values), default=0.0) or 1.0
        slot = CHART_W / HOURS
        width = (slot - 2) / max(1, len(series))
        for position, (css, values) in enumerate(series.items()):
            for hour, value in enumerate(values):
                height = (CHART_H - 20) * value / peak
                start = time.strftime("%H:00", time.gmtime(_first_hour(now) + hour * 3600))
                chart.bars.append(Bar(x=hour * slot + position * width, y=CHART_H - height, width=width,
                                      height=height, title=f"{start} UTC: {value:g}{unit} {css}", css=css))
        chart.peak = f"{peak:g}{unit}"
        return chart


@dataclass(frozen=True)
class Figures:
    latency_p50: float | None
    latency_p95: float | None
    success_rate: float | None
    duplicate_rate: float | None
    open_exceptions: int
    oldest_exception_s: float | None
    median_exception_s: float | None
    time_to_resolve_s: float | None
    sla_breaches: int
    entitlement_breaches: int
    journey_breaches: int
    invoices: int
    messages: int
    """How many of the ledger's latest messages the figures and charts are over (at most :data:`SCANNED`)."""
    since: float | None
    """When the oldest of them arrived: the figures cover no more than the time since."""


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _first_hour(now: float) -> int:
    """The start of the oldest of the :data:`HOURS` UTC hours shown, the current one the last."""
    return hour_of(now) - (HOURS - 1) * 3600


def _hour(ts: float, now: float) -> int | None:
    """Which of the :data:`HOURS` slots ``ts`` falls in (0 the oldest), None outside them."""
    slot = (hour_of(ts) - _first_hour(now)) // 3600
    return slot if 0 <= slot < HOURS else None


def figures(runtime: "Runtime", now: float) -> tuple[Figures, list[Chart]]:
    store = runtime.store
    erp = {name for name, bound in runtime.connectors.items() if str(bound.connector.kind) == "erp"}
    outcomes = store.outcomes(limit=SCANNED)
    # Meant for the ERP first: only such an entry of an earlier release has its trail read.
    invoices = [o for o in outcomes if erp & {token.split("|")[0] for token in [*o.pending, *o.parts]}
                and _about_invoice(store, o)]
    latencies = [(o.received_at, o.updated_at - o.received_at) for o in invoices
                 if o.outcome == "delivered" and erp & set(o.targets)]
    sla = runtime.settings.kpis
    late = sum(1 for _, latency in latencies if latency > sla.invoice_posted_within_s) + sum(
        1 for o in invoices if o.outcome != "delivered" and now - o.received_at > sla.invoice_posted_within_s)
    runs = store.journeys(limit=SCANNED)
    entitling = entitlement_steps(runtime.plugins.journeys)
    by_hour = store.concluded_by_hour(_first_hour(now))
    run = latest_finished(store)
    read = sum(run.counts.values()) if run else 0
    items = Queue(runtime).items()
    ages = [now - item.since for item in items]
    resolved = [t.resolved_at - t.opened_at for t in store.triages()
                if t.state == "resolved" and t.resolved_at is not None and t.opened_at is not None]
    shown = Figures(
        latency_p50=_percentile([latency for _, latency in latencies], 0.5),
        latency_p95=_percentile([latency for _, latency in latencies], 0.95),
        success_rate=(sum(n for (_, outcome), n in by_hour.items() if outcome in ("delivered", "noop"))
                      / sum(by_hour.values()) if by_hour else None),
        duplicate_rate=(run.findings.get("duplicate", 0) / read) if run and read else None,
        open_exceptions=len(items), oldest_exception_s=max(ages, default=None),
        median_exception_s=statistics.median(ages) if ages else None,
        time_to_resolve_s=statistics.median(resolved) if resolved else None,
        sla_breaches=late, entitlement_breaches=_entitlements_late(store, runs, entitling,
                                                                   sla.payment_entitled_within_s, now),
        journey_breaches=sum(1 for run in runs if run.sla_breached),
        invoices=len(invoices), messages=len(outcomes),
        since=min((o.received_at for o in outcomes), default=None))
    return shown, _charts(by_hour, latencies, now)


def _about_invoice(store: Store, outcome: OutcomeRecord) -> bool:
    """Whether ``outcome``'s message is about an invoice, as its entry says (no read); an entry of
    before the upgrade is judged by its audit trail (one read each, until newer entries push them
    out of the latest :data:`SCANNED`)."""
    return any(subject.startswith("invoice/") for subject in subjects_of(store, outcome))


def _entitlements_late(store: Store, runs: list[JourneyRecord], entitling: dict[str, frozenset[str]],
                       within_s: float, now: float) -> int:
    """How many of ``runs`` a payment started whose entitlement step (``entitling``: each journey's,
    as it declares them) finished more than ``within_s`` after the run started, or has not finished
    that long after (a cancelled run counts no more)."""
    late = 0
    for run in runs:
        step = next((step for name, step in run.steps.items() if name in entitling.get(run.name, ())), None)
        if step is None or run.trigger is None or run.state == "cancelled":
            continue
        done_at = step.finished_at if step.status == "done" else None
        if (done_at if done_at is not None else now) - run.started_at <= within_s:
            continue
        event = store.get_event(run.trigger)  # read only for a late one: few
        late += event is not None and event.type.startswith("payment.")
    return late


def _charts(concluded: dict[tuple[int, LedgerState], int], latencies: list[tuple[float, float]],
            now: float) -> list[Chart]:
    delivered, failed = [0.0] * HOURS, [0.0] * HOURS
    for (start, outcome), count in concluded.items():
        hour = _hour(start, now)
        if hour is not None and outcome in ("delivered", "dead_letter"):
            (delivered if outcome == "delivered" else failed)[hour] += count
    by_hour: list[list[float]] = [[] for _ in range(HOURS)]
    for received_at, latency in latencies:
        hour = _hour(received_at, now)
        if hour is not None:
            by_hour[hour].append(latency)
    p95 = [_percentile(values, 0.95) or 0.0 for values in by_hour]
    return [Chart.of("Messages per hour: delivered and dead-lettered", {"delivered": delivered, "failed": failed},
                     now),
            Chart.of("Invoice-to-ERP latency per hour (p95, seconds)", {"latency": [round(v, 1) for v in p95]},
                     now, " s")]


class KpiPages:
    def __init__(self, runtime: "Runtime", access: Access) -> None:
        self.runtime = runtime
        self.access = access

    async def show(self, request: Request, session: Session) -> Response:
        shown, charts = await run_in_threadpool(figures, self.runtime, time.time())
        return page(request, "kpis.html", session, figures=shown, charts=charts, sla=self.runtime.settings.kpis,
                    width=CHART_W, height=CHART_H, scanned=SCANNED)

    def routes(self) -> list[Route]:
        return [Route("/kpis", self.access.viewing(self.show), methods=["GET"])]
