"""The reconciliation report: the latest run by class and system, each finding (drilling down to
its item in the exceptions queue, where one is repaired), the balance per currency and period, and,
for operators, a button to run one and to repair the run's findings (a dry run with its count and
preview first, then apply). Runs and repairs are :class:`~crossledger.core.reconcile.Reconciler`
and :class:`~crossledger.core.reconcile.Repairs`, as ``crossledger reconcile`` and
``/v1/reconciliations`` use them; each is recorded in the console's audit log.
"""

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crossledger.canonical.money import format_money, money
from crossledger.core.console.access import Access, Form, refused
from crossledger.core.console.render import page
from crossledger.core.console.sessions import Session
from crossledger.core.reconcile import FINDING_CLASSES, Reconciler, Repairs
from crossledger.core.reconcile.engine import ReconciliationBusy, default_since, latest_finished
from crossledger.core.store.base import ActionRecord, FindingRecord
from crossledger.plugins.errors import ConnectorError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime


@dataclass(frozen=True)
class Balance:
    """One balance finding as a row: an entity's totals in one currency and period on both sides."""

    entity: str
    currency: str
    period: str
    source: str
    billed: str
    target: str
    booked: str
    difference: str


def balance(finding: FindingRecord) -> Balance:
    (source, billed), (target, booked) = ((system, record["values"]["total"])
                                          for system, record in finding.records.items())
    currency, period = finding.subject.split("/")[2:4]
    return Balance(finding.entity, currency, period, source, format_money(money(billed, currency)), target,
                   format_money(money(booked, currency)), format_money(money(booked - billed, currency)))


class ReconciliationPages:
    def __init__(self, runtime: "Runtime", access: Access) -> None:
        self.runtime = runtime
        self.access = access
        self.repairs = Repairs(runtime)

    async def report(self, request: Request, session: Session) -> Response:
        store = self.runtime.store
        runs = await run_in_threadpool(lambda: store.reconciliations(limit=10))
        run = await run_in_threadpool(latest_finished, store)
        findings = await run_in_threadpool(store.reconciliation_findings, run.id) if run else []
        systems = sorted({finding.system for finding in findings})
        by = Counter((finding.cls, finding.system) for finding in findings)
        shown = [f for f in findings if request.query_params.get("class") in (None, "", f.cls)
                 and request.query_params.get("system") in (None, "", f.system)]
        return page(request, "reconciliation.html", session, runs=runs, run=run, findings=shown, by=by,
                    classes=FINDING_CLASSES, systems=systems, total=len(findings),
                    balances=[balance(f) for f in findings if f.cls == "balance"], query=request.query_params)

    async def start(self, request: Request, session: Session, form: Form) -> Response:
        store = self.runtime.store
        since = None if form.one("full") == "1" else await run_in_threadpool(default_since, store)
        try:
            report = await run_in_threadpool(lambda: Reconciler(self.runtime).run(since=since))
        except (ConnectorError, ReconciliationBusy) as failed:
            return refused(request, session, f"The reconciliation did not finish: {failed}", 502)
        await run_in_threadpool(store.action_add, ActionRecord(
            at=time.time(), user=session.user, action="reconcile", item=f"reconciliation:{report.run.id}",
            detail=f"{'full' if since is None else 'incremental'}: {len(report.findings)} finding(s)"))
        return RedirectResponse("/reconciliation", status_code=303)

    async def repair(self, request: Request, session: Session, form: Form) -> Response:
        cls, system = form.one("class") or None, form.one("system") or None
        if cls is not None and cls not in FINDING_CLASSES:
            return refused(request, session, f"class must be one of {', '.join(FINDING_CLASSES)}", 400)
        try:
            run, findings = await run_in_threadpool(
                lambda: self.repairs.select(None, cls=cls, system=system))
        except (KeyError, ValueError) as wrong:
            return refused(request, session, str(wrong.args[0]), 409)
        apply = form.one("apply") == "1"
        summary = await run_in_threadpool(lambda: self.repairs.run(run, findings, apply=apply))
        if not apply:
            return page(request, "repair_preview.html", session, summary=summary, action="/reconciliation/repair",
                        fields={"class": cls or "", "system": system or ""})
        await run_in_threadpool(self.runtime.store.action_add, ActionRecord(
            at=time.time(), user=session.user, action="repair", item=f"reconciliation:{run.id}",
            detail=f"{summary.enqueued} repair(s) enqueued, {len(summary.failed)} failed"))
        return RedirectResponse("/reconciliation", status_code=303)

    def routes(self) -> list[Route]:
        return [Route("/reconciliation", self.access.viewing(self.report), methods=["GET"]),
                Route("/reconciliation/run", self.access.acting(self.start), methods=["POST"]),
                Route("/reconciliation/repair", self.access.acting(self.repair), methods=["POST"])]
