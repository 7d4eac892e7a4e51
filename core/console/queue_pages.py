"""The exceptions queue's pages: the list with its filters and bulk retry, one item with its
actions, and the audit log of everything people did (see :mod:`.queue` for what the actions do)."""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from crossledger.core.console.access import Access, Form, refused
from crossledger.core.console.queue import ACTIVE, LISTED, STATES, Item, Queue, filters_from
from crossledger.core.console.render import masked, page
from crossledger.core.console.sessions import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

Action = Callable[[Request, Session, Form], Awaitable[Response]]


class QueuePages:
    def __init__(self, runtime: "Runtime", access: Access) -> None:
        self.runtime = runtime
        self.access = access
        self.queue = Queue(runtime)

    async def listing(self, request: Request, session: Session) -> Response:
        query = dict(request.query_params)
        try:
            filters = filters_from(query)
        except ValueError as wrong:
            return refused(request, session, str(wrong), 400)
        items = await run_in_threadpool(self.queue.items, filters)
        classes = sorted({item.cls for item in await run_in_threadpool(self.queue.items)})
        open_letters = await run_in_threadpool(self.queue.open_letters)
        return page(request, "exceptions.html", session, items=items, query=query, states=STATES, active=ACTIVE,
                    systems=sorted(self.runtime.connectors), classes=classes, open_letters=open_letters,
                    listed=LISTED)

    async def detail(self, request: Request, session: Session) -> Response:
        item = await run_in_threadpool(self.queue.item, request.path_params["item_id"])
        if item is None:
            return refused(request, session, "No such exception in the queue.", 404)
        history = await run_in_threadpool(lambda: self.runtime.store.actions(item=item.id))
        users = [user.name for user in await run_in_threadpool(self.runtime.store.users)]
        return page(request, "exception.html", session, item=item, records=masked(item.records, session),
                    history=history, states=STATES, users=users)

    def acting(self, act: Callable[[Request, Session, Form, Item], Awaitable[Response | None]]) -> Action:
        """An action on one item: 404 when it is gone, 409 with the reason when it cannot be done;
        back to the item when done (unless the action answers a page of its own)."""
        async def acted(request: Request, session: Session, form: Form) -> Response:
            item = await run_in_threadpool(self.queue.item, request.path_params["item_id"])
            if item is None:
                return refused(request, session, "No such exception in the queue.", 404)
            try:
                answered = await act(request, session, form, item)
            except (ValueError, KeyError, LookupError) as cannot:
                return refused(request, session, str(cannot.args[0] if cannot.args else cannot), 409)
            return answered or RedirectResponse(f"/exceptions/{item.id}", status_code=303)

        return acted

    async def set_state(self, request: Request, session: Session, form: Form, item: Item) -> None:
        await run_in_threadpool(self.queue.set_state, session.user, item, form.one("state"))  # type: ignore[arg-type]

    async def assign(self, request: Request, session: Session, form: Form, item: Item) -> None:
        await run_in_threadpool(self.queue.assign, session.user, item, form.one("assignee"))

    async def note(self, request: Request, session: Session, form: Form, item: Item) -> None:
        await run_in_threadpool(self.queue.note, session.user, item, form.one("text"))

    async def retry(self, request: Request, session: Session, form: Form, item: Item) -> None:
        await run_in_threadpool(self.queue.retry, session.user, item)

    async def discard(self, request: Request, session: Session, form: Form, item: Item) -> None:
        await run_in_threadpool(self.queue.discard, session.user, item, form.one("reason"))

    async def repair(self, request: Request, session: Session, form: Form, item: Item) -> Response | None:
        apply = form.one("apply") == "1"
        summary = await run_in_threadpool(lambda: self.queue.repair(session.user, item, apply=apply))
        if apply:
            return None
        return page(request, "repair_preview.html", session, summary=summary, action=f"/exceptions/{item.id}/repair",
                    fields={})

    async def bulk_retry(self, request: Request, session: Session, form: Form) -> Response:
        values = {name: form.one(name) for name in ("system", "class", "age", "state")}
        try:
            filters = filters_from(values)
        except ValueError as wrong:
            return refused(request, session, str(wrong), 400)
        apply = form.one("apply") == "1"
        items = await run_in_threadpool(self.queue.items, filters)
        try:
            chosen = await run_in_threadpool(lambda: self.queue.bulk_retry(session.user, items, apply=apply))
        except (ValueError, KeyError) as cannot:
            return refused(request, session, str(cannot.args[0]), 409)
        return page(request, "bulk_retry.html", session, chosen=chosen, applied=apply, values=values)

    async def audit(self, request: Request, session: Session) -> Response:
        actions = await run_in_threadpool(lambda: self.runtime.store.actions(limit=500))
        return page(request, "audit.html", session, actions=actions)

    def routes(self) -> list[Route]:
        view, act = self.access.viewing, self.access.acting
        item_actions = {"state": self.set_state, "assign": self.assign, "note": self.note, "retry": self.retry,
                        "discard": self.discard, "repair": self.repair}
        return [
            Route("/exceptions", view(self.listing), methods=["GET"]),
            Route("/exceptions/bulk-retry", act(self.bulk_retry), methods=["POST"]),
            Route("/exceptions/{item_id}", view(self.detail), methods=["GET"]),
            *[Route(f"/exceptions/{{item_id}}/{name}", act(self.acting(handler)), methods=["POST"])
              for name, handler in item_actions.items()],
            Route("/audit", view(self.audit), methods=["GET"]),
        ]
