"""``/v1/reconciliations``: run a reconciliation, read runs and findings, repair.

==========================================  ===================================================================
``POST /v1/reconciliations``                run one now (body ``{"since": <Unix s>}`` or ``{"full": true}``;
                                            empty: since the last finished run); 201 with ``{"run", "findings"}``,
                                            502 when a system could not be read (the run is kept, failed)
``GET  /v1/reconciliations``                the latest runs, newest first (``?limit=``)
``GET  /v1/reconciliations/{id}``           one run (``latest`` for the newest finished) and its findings;
                                            ``?class=`` and ``?system=`` filter
``POST /v1/reconciliations/{id}/repair``    the dry run of the run's repairs (count and preview), or with
                                            ``{"apply": true}`` the repairs enqueued; ``class``, ``system`` and
                                            ``ids`` filter
==========================================  ===================================================================

The routes sit behind the same bearer token as every ``/v1`` route (``protected`` is the app's
guard) and do their work in the thread pool: a run reads every listed record of every system.
"""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from crossledger.core.ingress.refusals import Refused
from crossledger.core.reconcile import FINDING_CLASSES, Reconciler, Repairs, RunReport, report_json
from crossledger.core.reconcile.engine import ReconciliationBusy, default_since
from crossledger.core.store.base import FindingClass
from crossledger.plugins.errors import ConnectorError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

Handler = Callable[[Request], Awaitable[Response]]


class RunRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/reconciliations``: ``since`` (Unix seconds) or ``full``; neither: since the last run."""

    since: float | None = None
    full: bool = False


class RepairRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/reconciliations/{id}/repair``: a dry run unless ``apply``; the filters all apply."""

    apply: bool = False
    cls: FindingClass | None = msgspec.field(default=None, name="class")
    system: str | None = None
    ids: list[str] | None = None


def routes(runtime: "Runtime", protected: Callable[[Handler], Handler]) -> list[Route]:
    """The routes, each wrapped by ``protected`` (the app's bearer-token guard)."""
    # The app imports this module: read these once both exist.
    from crossledger.core.ingress.app import query_limit, read_json

    repairs = Repairs(runtime)
    body_timeout_s = runtime.settings.hub.body_timeout_s

    async def start(request: Request) -> Response:
        wanted = await read_json(request, body_timeout_s, RunRequest)
        since = None if wanted.full else wanted.since if wanted.since is not None else default_since(runtime.store)
        try:
            report = await run_in_threadpool(lambda: Reconciler(runtime).run(since=since))
        except ConnectorError as unread:  # a system's outage or refusal, not the hub's bug: not a 500
            raise Refused(502, f"the reconciliation failed: a system could not be read ({unread})") from None
        except ReconciliationBusy as busy:
            raise Refused(409, str(busy)) from None
        return JSONResponse(report_json(report), status_code=201)

    async def listed(request: Request) -> Response:
        limit = query_limit(request.query_params.get("limit"), default=20)
        runs = await run_in_threadpool(runtime.store.reconciliations, limit=limit)
        return JSONResponse({"reconciliations": msgspec.to_builtins(runs)})

    async def one(request: Request) -> Response:
        cls = _finding_class(request.query_params.get("class"))
        run_id = request.path_params["run_id"]
        try:
            run, findings = await run_in_threadpool(
                repairs.select, None if run_id == "latest" else run_id, cls=cls,
                system=request.query_params.get("system"))
        except KeyError as missing:
            raise Refused(404, str(missing.args[0])) from None
        except ValueError as wrong:
            raise Refused(400, str(wrong)) from None
        return JSONResponse(report_json(RunReport(run, findings)))

    async def repair(request: Request) -> Response:
        wanted = await read_json(request, body_timeout_s, RepairRequest)
        run_id = request.path_params["run_id"]
        try:
            run, findings = await run_in_threadpool(
                repairs.select, None if run_id == "latest" else run_id, cls=wanted.cls, system=wanted.system,
                ids=wanted.ids)
        except KeyError as missing:
            raise Refused(404, str(missing.args[0])) from None
        except ValueError as wrong:
            raise Refused(400, str(wrong)) from None
        summary = await run_in_threadpool(repairs.run, run, findings, apply=wanted.apply)
        return JSONResponse(summary.as_json(), status_code=202 if wanted.apply else 200)

    return [
        Route("/v1/reconciliations", protected(start), methods=["POST"]),
        Route("/v1/reconciliations", protected(listed), methods=["GET"]),
        Route("/v1/reconciliations/{run_id}", protected(one), methods=["GET"]),
        Route("/v1/reconciliations/{run_id}/repair", protected(repair), methods=["POST"]),
    ]


def _finding_class(raw: str | None) -> FindingClass | None:
    if raw is None:
        return None
    for cls in FINDING_CLASSES:
        if cls == raw:
            return cls
    raise Refused(400, f"class must be one of {', '.join(FINDING_CLASSES)}, not {raw[:40]!r}")
