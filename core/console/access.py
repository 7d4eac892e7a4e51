"""Who is asking, and may they: sign-in, sign-out, and the guards every console route sits behind.

``viewing`` lets any signed-in user look (others are sent to the login page); ``acting`` also
requires the operator role and, for a POST, the session's CSRF token in the form (403 with a page
that says why, otherwise). Forms are read as ``application/x-www-form-urlencoded`` bodies, with the
hub's size limit and read timeout. Sign-in failures are logged with the name's length only: a
name someone typed may be a password.
"""

import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from urllib.parse import parse_qs, quote

from crossledger.core.console.render import page
from crossledger.core.console.sessions import (
    COOKIE,
    MAX_AGE_S,
    Session,
    Signer,
    csrf_matches,
    new_epoch,
    new_session,
)
from crossledger.core.console.users import authenticate
from crossledger.core.store.base import Store
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

Page = Callable[[Request, Session], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]
FORM_LIMIT = 64 * 1024


class Form(dict[str, list[str]]):
    """A posted form: every value of each field."""

    def one(self, name: str, default: str = "") -> str:
        return self.get(name, [default])[0].strip()


async def read_form(request: Request, timeout_s: float) -> Form:
    from crossledger.core.ingress.app import read_body  # the app imports the console: read it once both exist

    raw = await read_body(request, timeout_s, FORM_LIMIT)
    return Form(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))


class Access:
    """The console's sessions over ``store``: the guards, and the login and logout routes."""

    def __init__(self, store: Store, body_timeout_s: float) -> None:
        self.store = store
        self.body_timeout_s = body_timeout_s
        self._signer: Signer | None = None

    @property
    def signer(self) -> Signer:
        """Made on first use, not with the app: a store that is down when the app is built must not
        stop ``/webhooks`` and ``/v1`` from starting (two first uses at once agree: the secret is kept
        atomically)."""
        if self._signer is None:
            self._signer = Signer.of(self.store)
        return self._signer

    def session(self, request: Request) -> Session | None:
        """The session the request's cookie holds, as signed (for a page that only shows it)."""
        return self.signer.load(request.cookies.get(COOKIE))

    async def current(self, request: Request) -> Session | None:
        """The request's session with its user's role as the store has it now: a user demoted since
        signing in acts as a viewer at once; one whose record is gone, or whose session epoch moved
        on (they signed out, or were added again), is signed out."""
        session = await run_in_threadpool(self.session, request)
        if session is None:
            return None
        user = await run_in_threadpool(self.store.user_get, session.user)
        if user is None or not hmac.compare_digest(user.session_epoch.encode(), session.epoch.encode()):
            return None
        return replace(session, role=user.role)

    def viewing(self, handler: Page) -> Handler:
        async def guarded(request: Request) -> Response:
            session = await self.current(request)
            if session is None:
                return RedirectResponse(f"/login?next={quote(request.url.path, safe='/:')}", status_code=303)
            return await handler(request, session)

        return answered(guarded, self)

    def acting(self, handler: Callable[[Request, Session, Form], Awaitable[Response]]) -> Handler:
        """An operator's action, posted with the session's CSRF token (field ``csrf``)."""
        async def guarded(request: Request) -> Response:
            session = await self.current(request)
            if session is None:
                return refused(request, None, "You are not signed in. Sign in, then try again.", 403)
            form = await read_form(request, self.body_timeout_s)
            if not csrf_matches(session, form.one("csrf") or None):
                log.warning("console: %s %s refused: missing or wrong CSRF token", request.method, request.url.path)
                return refused(request, session, "This form's security token is missing or out of date "
                                                 "(CSRF). Reload the page and submit it again.", 403)
            if not session.operator:
                log.warning("console: %s %s refused: a viewer may not act", request.method, request.url.path)
                return refused(request, session, "Your role is viewer: you may look, not act. Ask an operator.",
                               403)
            return await handler(request, session, form)

        return answered(guarded, self)

    async def login_page(self, request: Request) -> Response:
        return page(request, "login.html", None, next=_local(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await read_form(request, self.body_timeout_s)
        name, password = form.one("name"), form.get("password", [""])[0]
        user = await run_in_threadpool(authenticate, self.store, name, password)
        target = _local(form.one("next"))
        if user is None:
            log.info("console: sign-in refused (a name of %d characters)", len(name))
            return page(request, "login.html", None, status=401, next=target,
                        error="That name and password do not match a user.")
        log.info("console: a user signed in (%s)", user.role)  # the name is a person's: the audit log has it
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, self.signer.dump(new_session(user)), max_age=int(MAX_AGE_S),
                            httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        """Sign out: the user's session epoch moves on, so this cookie, and every copy of it, is
        refused from now on (so are the user's other sessions: one sign-out ends them all)."""
        form = await read_form(request, self.body_timeout_s)
        session = await self.current(request)
        if session is not None:
            if not csrf_matches(session, form.one("csrf") or None):
                return refused(request, session, "This form's security token is missing or out of date (CSRF).",
                               403)
            await run_in_threadpool(self.store.user_new_epoch, session.user, new_epoch())
            log.info("console: a user signed out; their sessions are revoked")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def routes(self) -> list[Route]:
        return [Route("/login", answered(self.login_page, self), methods=["GET"]),
                Route("/login", answered(self.login, self), methods=["POST"]),
                Route("/logout", answered(self.logout, self), methods=["POST"])]


def answered(handler: Handler, access: Access) -> Handler:
    """A console route's outer layer, as :func:`crossledger.core.ingress.app.edge` is for ``/v1``, in
    HTML: a refused body its status, an unreachable store a 503, anything else a 500 logged once
    with the request's id; no traceback reaches the page."""
    from crossledger.core.ingress.refusals import UNREACHABLE, Refused, describe

    async def page_or_error(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as wrong:
            return refused(request, access.session(request), wrong.message, wrong.status)
        except UNREACHABLE as down:
            log.warning("console: %s %s: the store cannot be reached: %s", request.method, request.url.path,
                        describe(down))
            return refused(request, None, "The hub cannot reach its store just now; try again shortly.", 503)
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("console: %s %s failed unexpectedly (request %s)", request.method, request.url.path,
                          request_id)
            return refused(request, None, f"Something went wrong (request {request_id}; the hub's log has the "
                                          "details).", 500)

    return page_or_error


def refused(request: Request, session: Session | None, why: str, status: int) -> Response:
    return page(request, "refused.html", session, status=status, why=why)


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//elsewhere`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
