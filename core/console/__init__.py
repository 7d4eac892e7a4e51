"""The operator console: the hub's pages for the people who run it, served at ``/`` by the same
Starlette app as ``/v1`` (``crossledger serve`` and ``crossledger run``).

Server-rendered HTML (Jinja2 templates in ``templates/``, one stylesheet in ``static/``), no
script needed. This package owns:

- :mod:`.users`: console users in the hub's store, passwords hashed with scrypt (``crossledger user add``);
- :mod:`.sessions`: the signed session cookie, its CSRF token, and the epoch that revokes it;
- :mod:`.access`: sign-in and sign-out, and the guards (viewers look, operators act, every POST
  carries the CSRF token);
- :mod:`.render`: the templates and the filters that show money, times and (masked, for viewers)
  personal data as people read them;
- the pages, one module per group: :mod:`.transactions` (search, the order-to-cash chains of
  :mod:`.chain` built from the record rows of :mod:`.records`, timeline), :mod:`.queue`
  and :mod:`.queue_pages` (the exceptions queue, its actions and the audit log),
  :mod:`.reconciliation` (the latest run, its findings and balances; run and repair), :mod:`.flows`
  (each system's traffic and health, the system-of-record rules, the routes) and :mod:`.kpis` (the
  seeds' figures with charts over time).

Scripts keep using ``/v1`` with the bearer token; nothing here changes it.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from crossledger.core.console.access import Access
from crossledger.core.console.flows import FlowPages
from crossledger.core.console.kpis import KpiPages
from crossledger.core.console.queue_pages import QueuePages
from crossledger.core.console.reconciliation import ReconciliationPages
from crossledger.core.console.transactions import TransactionPages
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

HOME = "/flows"


def routes(runtime: "Runtime") -> list[BaseRoute]:
    """The console's routes, for :func:`crossledger.core.ingress.app.create_app`."""
    access = Access(runtime.store, runtime.settings.hub.body_timeout_s)

    async def home(request: Request) -> Response:
        return RedirectResponse(HOME, status_code=303)

    return [
        Route("/", home, methods=["GET"]),
        *access.routes(),
        *TransactionPages(runtime, access).routes(),
        *QueuePages(runtime, access).routes(),
        *ReconciliationPages(runtime, access).routes(),
        *FlowPages(runtime, access).routes(),
        *KpiPages(runtime, access).routes(),
        Mount("/console/static", app=StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
