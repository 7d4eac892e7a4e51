"""Business transactions: the order-to-cash chains (:mod:`.chain`, one row per customer or invoice
with each system's state and where it is stuck), the search that finds them, and one transaction's
timeline with the rows of its records (:mod:`.records`).

The search takes any system's id (a Stripe ``in_...``, a
NetSuite internal id, an event id), a canonical id, or (for operators: a viewer sees no personal
data, so cannot search by it either) a name or email: the records each word of the query starts a
word of the name or email of (``acme``, ``ann@acme``, ``acme.example``), from the index the store
keeps as it writes golden records (:meth:`~crossledger.core.store.base.Store.golden_named`).
The timeline is :func:`crossledger.core.views.timeline.timeline`, as ``crossledger trace`` shows it.
A page's chains and rows are read together (:class:`.chain.Chains`, :class:`.records.Rows`); a
customer's chain shows :data:`.chain.PAGE_SIZE` records of each kind, ``?page=`` the next ones.
"""

import copy
import re
from typing import TYPE_CHECKING

from crossledger.core.console.access import Access
from crossledger.core.console.chain import STEPS, Chain, Chains
from crossledger.core.console.records import Row
from crossledger.core.console.render import masked, page
from crossledger.core.console.sessions import Session
from crossledger.core.hub.ledger import subjects_of
from crossledger.core.store.base import AuditRecord, Store
from crossledger.core.views.timeline import system_id, timeline
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

SHOWN_ENTITIES = ("customer", "invoice", "payment", "subscription", "credit_note", "refund")
SHOWN_ROWS = 100
MAX_PAGE = 10_000
"""The last page of a customer's chain one may ask for (``?page=``)."""
OPEN_LETTERS = 1000
"""How many open dead letters a page reads to tell where its rows are stuck (newest first)."""


def search(store: Store, query: str, systems: list[str], *, by_name: bool = True) -> list[str]:
    """The canonical ids ``query`` names: itself, a system's id for a record or an event, or (failing
    those, and with ``by_name``) the records whose names or emails it starts the words of."""
    if store.golden_get(query) is not None:
        return [query]
    correlations, subjects = system_id(store, query, systems)
    found = dict.fromkeys(sorted(subjects))
    for correlation in sorted(correlations):
        found.update(dict.fromkeys(r.subject for r in store.audit_trail(correlation) if r.subject))
    if found or not by_name:
        return list(found)
    return store.golden_named(query, limit=SHOWN_ROWS)


def recent(store: Store, limit: int = 50) -> list[str]:
    """The canonical ids of the records the latest inbound messages were about, newest first (as
    their outcome entries say: no read each, but for an entry of an earlier release)."""
    subjects: dict[str, None] = {}
    for outcome in store.outcomes(limit=limit):
        subjects.update(dict.fromkeys(subject for subject in subjects_of(store, outcome)
                                      if subject.startswith(SHOWN_ENTITIES)))
    return list(subjects)


class TransactionPages:
    def __init__(self, runtime: "Runtime", access: Access) -> None:
        self.runtime = runtime
        self.access = access
        self.systems = sorted(runtime.connectors)

    def _chains(self, subjects: list[str], session: Session, page: int = 1) -> tuple[Chains, list[Chain]]:
        """The order-to-cash chains ``subjects`` belong to, one per customer or invoice, masked for a
        viewer, and the :class:`Chains` that read them (whose rows the page may show too)."""
        chains = Chains(self.runtime, self.runtime.store.dlq_list(state="open", limit=OPEN_LETTERS), page)
        anchors = chains.anchors(subjects)[:SHOWN_ROWS]
        return chains, [chain.masked(session) for chain in chains.chains(anchors)]

    def _listing(self, query: str, session: Session) -> list[Chain]:
        store = self.runtime.store
        subjects = search(store, query, self.systems, by_name=session.operator) if query else recent(store)
        return self._chains(subjects, session)[1]

    def _detail(self, key: str, session: Session, page: int) -> tuple[list[AuditRecord], list[Row], list[Chain]]:
        """The timeline of ``key``, the rows of the records it names and of their chains' records
        (the ``page`` of them), and those chains."""
        store = self.runtime.store
        subjects = search(store, key, self.systems, by_name=False)[:5]
        chains, shown = self._chains(subjects, session, page)
        on_page = [record.row.subject for chain in shown for link in chain.links for record in link.records]
        rows = [copy.copy(chains.rows.row(subject)) for subject in dict.fromkeys([*subjects, *on_page])]
        for row in rows:
            row.data = masked(row.data, session)
        return timeline(store, key, systems=self.systems), rows, shown

    async def listing(self, request: Request, session: Session) -> Response:
        query = request.query_params.get("q", "").strip()[:200]
        chains = await run_in_threadpool(self._listing, query, session)
        return page(request, "transactions.html", session, chains=chains, query=query, steps=STEPS)

    async def detail(self, request: Request, session: Session) -> Response:
        key = request.path_params["key"]
        number = request.query_params.get("page", "1")
        if not re.fullmatch(r"[0-9]{1,6}", number) or not 1 <= int(number) <= MAX_PAGE:
            return page(request, "timeline.html", session, status=400, key=key, records=[], rows=[], chains=[],
                        steps=STEPS, refused=f"page must be a whole number from 1 to {MAX_PAGE}, not {number[:20]!r}")
        records, rows, chains = await run_in_threadpool(self._detail, key, session, int(number))
        return page(request, "timeline.html", session, status=200 if records or rows else 404, key=key,
                    records=records, rows=rows, chains=chains, steps=STEPS, page_number=int(number))

    def routes(self) -> list[Route]:
        view = self.access.viewing
        return [Route("/transactions", view(self.listing), methods=["GET"]),
                Route("/transactions/{key:path}", view(self.detail), methods=["GET"])]
