"""Shared parts of every connector's sandbox: fault injection, control routes, webhook sending.

A sandbox is a Starlette app that emulates one system's API. :func:`build_app` adds to its routes:

- ``GET /_sandbox/state``: the emulator's records by type, in the system's own JSON form;
- ``POST /_sandbox/faults`` with ``{"mode", "count", "after", "retry_after", "latency_ms"}`` and
  ``DELETE /_sandbox/faults``: inject failures into every other route.

Fault modes: ``down`` (503), ``http_500``, ``http_429`` (with Retry-After), ``latency`` (sleep,
then answer) and ``timeout_after_commit`` (do the work, then hold the answer for ``latency_ms``
so the client times out not knowing the write landed). A sandbox built with ``answers_server_errors``
answers an injected ``http_500`` to a keyed write (``POST`` or ``PATCH`` with ``Idempotency-Key``)
itself, where its vendor runs the request (:func:`claim_server_error`): under its idempotency layer,
which stores that answer under the key and replays it, as Stripe stores a 500 once execution started
and Zuora stores every answer. A 429 or ``down`` (503) comes before execution: never stored.
``count`` limits how many requests are hit;
without it the fault lasts until cleared. ``after`` lets that many requests through first: a system
that goes down in the middle of a long read. Error bodies and headers come from the sandbox's own
``fault_response(status, retry_after)``, so they have the system's shape: NetSuite and Zendesk send
Retry-After with a 429, Stripe does not (clients must back off on their own).
"""

import asyncio
import json
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

FAULT_MODES = ("down", "http_500", "http_429", "latency", "timeout_after_commit")
RELEASE_ORDERS = ("in_order", "reverse", "shuffle")
FaultResponse = Callable[[int, int | None], Response]


@dataclass
class Fault:
    mode: str
    remaining: int | None
    retry_after: int
    latency_ms: int
    passes: int = 0


class Faults:
    """The fault currently injected into one sandbox; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self.hits = 0

    def set(self, spec: dict[str, Any]) -> Fault:
        mode = spec.get("mode")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        after = spec.get("after", 0)
        if not isinstance(after, int) or after < 0:
            raise ValueError("after must be a whole number of requests")
        fault = Fault(
            mode=mode,
            remaining=count,
            retry_after=int(spec.get("retry_after", 1)),
            latency_ms=int(spec.get("latency_ms", 15000 if mode == "timeout_after_commit" else 500)),
            passes=after,
        )
        with self._lock:
            self._fault = fault
        return fault

    def clear(self) -> None:
        with self._lock:
            self._fault = None

    def take(self) -> Fault | None:
        """The fault to apply to this request, counting it down."""
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if fault.passes:
                fault.passes -= 1
                return None
            self.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def describe(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self._fault is None else dict(self._fault.__dict__)


SERVER_ERROR = "crossledger.sandbox.server_error"
"""The ASGI scope key of a server error injected into a request for the sandbox to answer itself."""

KEYED_METHODS = frozenset({"POST", "PATCH"})


@dataclass
class ServerError:
    """A server error the sandbox is asked to answer where its vendor runs the request; ``claimed``
    once it did (:func:`claim_server_error`)."""

    status: int
    claimed: bool = False


def claim_server_error(request: Request) -> int | None:
    """The status of a server error injected into ``request`` for the sandbox to answer as the
    outcome of running it (so its idempotency layer stores it under the request's key), claimed by
    asking; None without one. A request whose sandbox never claims it gets the fault as before."""
    injected = request.scope.get(SERVER_ERROR)
    if not isinstance(injected, ServerError):
        return None
    injected.claimed = True
    return injected.status


def _keyed_write(scope: Scope) -> bool:
    """Whether a request is a write under an idempotency key (``POST`` or ``PATCH``)."""
    return scope["method"] in KEYED_METHODS and any(name.lower() == b"idempotency-key"
                                                     for name, _ in scope["headers"])


class FaultMiddleware:
    """Applies the current fault to every request outside ``/_sandbox/``; with
    ``answers_server_errors``, lets the sandbox answer an ``http_500`` to a keyed write itself."""

    def __init__(self, app: ASGIApp, faults: Faults, fault_response: FaultResponse,
                 answers_server_errors: bool = False) -> None:
        self.app = app
        self.faults = faults
        self.fault_response = fault_response
        self.answers_server_errors = answers_server_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/_sandbox/" in scope["path"]:
            await self.app(scope, receive, send)
            return
        fault = self.faults.take()
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.mode == "http_500" and self.answers_server_errors and _keyed_write(scope):
            await self._answered_by_sandbox(scope, receive, send)
        elif fault.mode in ("down", "http_500", "http_429"):
            status = {"down": 503, "http_500": 500, "http_429": 429}[fault.mode]
            retry_after = fault.retry_after if fault.mode == "http_429" else None
            await self.fault_response(status, retry_after)(scope, receive, send)
        elif fault.mode == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            await self.app(scope, receive, send)
        else:  # timeout_after_commit: run the handler, then hold the answer back
            held: list[Any] = []

            async def hold(message: Any) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            await asyncio.sleep(fault.latency_ms / 1000)
            for message in held:
                await send(message)

    async def _answered_by_sandbox(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An injected 500 the sandbox answers where it runs the request; a request it never ran
        (refused first: a 401, an unknown path) gets the fault as the middleware answers it."""
        injected = ServerError(500)
        held: list[Any] = []

        async def hold(message: Any) -> None:
            held.append(message)

        await self.app({**scope, SERVER_ERROR: injected}, receive, hold)
        if not injected.claimed:
            await self.fault_response(injected.status, None)(scope, receive, send)
            return
        for message in held:
            await send(message)


def build_app(
    routes: list[BaseRoute],
    *,
    faults: Faults,
    state: Callable[[], dict[str, Any]],
    fault_response: FaultResponse,
    answers_server_errors: bool = False,
) -> Starlette:
    """A sandbox app: the system's ``routes`` plus the ``/_sandbox`` control routes, behind faults
    (an injected 500 to a keyed write answered by the routes themselves with ``answers_server_errors``:
    :func:`claim_server_error`)."""

    async def get_state(request: Request) -> Response:
        return JSONResponse(state())

    async def set_faults(request: Request) -> Response:
        try:
            spec = json.loads(await request.body() or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            fault = faults.set(spec)
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"fault": fault.__dict__})

    async def clear_faults(request: Request) -> Response:
        faults.clear()
        return JSONResponse({"fault": None})

    async def show_faults(request: Request) -> Response:
        return JSONResponse({"fault": faults.describe(), "hits": faults.hits})

    control = [
        Route("/_sandbox/state", get_state, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/_sandbox/faults", show_faults, methods=["GET"]),
    ]
    app = Starlette(routes=control + routes)
    app.add_middleware(FaultMiddleware, faults=faults, fault_response=fault_response,
                       answers_server_errors=answers_server_errors)
    return app


@dataclass
class _Delivery:
    url: str
    body: bytes
    headers: Callable[[bytes], dict[str, str]]
    attempt: int = 0
    due: float = 0.0


def _succeeded(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


class WebhookSender:
    """Delivers webhooks from a sandbox the way SaaS systems do: in the background, retrying any
    non-2xx answer or connection failure with growing delays, up to ``max_attempts``.

    ``headers`` is called at every attempt, so signatures carry the time of that attempt.
    ``accepted`` decides whether an answer counts as delivered (default: any 2xx); Salesforce's
    outbound messages, for one, are only delivered once the answer is the SOAP ``Ack``.

    Real systems do not promise order (Stripe says so). :meth:`hold` keeps deliveries back and
    :meth:`release` lets them go in order, reversed or shuffled, so tests can show what a receiver
    does with events that arrive out of order.
    """

    def __init__(self, *, max_attempts: int = 12, first_delay: float = 0.25, max_delay: float = 8.0,
                 timeout: float = 10.0, accepted: Callable[[httpx.Response], bool] | None = None) -> None:
        self.max_attempts = max_attempts
        self.accepted = accepted or _succeeded
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._waiting: list[_Delivery] = []
        self._client = httpx.Client(timeout=timeout)
        self._pending = 0
        self._idle = threading.Condition()
        self.sent = 0
        self.failed_attempts = 0
        self.abandoned = 0
        self._held: list[_Delivery] | None = None
        threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True).start()

    def send(self, url: str, body: bytes, headers: Callable[[bytes], dict[str, str]]) -> None:
        with self._idle:
            self._pending += 1
            if self._held is not None:
                self._held.append(_Delivery(url, body, headers))
                return
        self._queue.put(_Delivery(url, body, headers))

    def hold(self) -> None:
        """Keep new deliveries back until :meth:`release`."""
        with self._idle:
            if self._held is None:
                self._held = []

    def release(self, order: str = "in_order") -> int:
        """Send what was held: ``in_order``, ``reverse`` or ``shuffle``; how many."""
        if order not in RELEASE_ORDERS:
            raise ValueError(f"order must be one of {', '.join(RELEASE_ORDERS)}")
        with self._idle:
            held, self._held = self._held or [], None
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            random.shuffle(held)
        for delivery in held:
            self._queue.put(delivery)
        return len(held)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every accepted webhook was delivered or abandoned."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed_attempts": self.failed_attempts, "abandoned": self.abandoned,
                "pending": self._pending}

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = [d for d in self._waiting if d.due <= now]
            self._waiting = [d for d in self._waiting if d.due > now]
            for delivery in due:
                self._attempt(delivery)
            timeout = min((d.due for d in self._waiting), default=now + 0.2) - time.monotonic()
            try:
                delivery = self._queue.get(timeout=max(0.0, min(timeout, 0.2)))
            except queue.Empty:
                continue
            self._attempt(delivery)

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        try:
            response = self._client.post(delivery.url, content=delivery.body, headers=delivery.headers(delivery.body))
            ok = self.accepted(response)
        except httpx.HTTPError:
            ok = False
        if ok:
            self.sent += 1
        elif delivery.attempt < self.max_attempts:
            self.failed_attempts += 1
            delay = min(self.max_delay, self.first_delay * 2 ** (delivery.attempt - 1))
            delivery.due = time.monotonic() + delay
            self._waiting.append(delivery)
            return
        else:
            self.abandoned += 1
            log.warning("sandbox gave up on webhook to %s after %d attempts", delivery.url, delivery.attempt)
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()


class ServerThread:
    """Serve an ASGI app with uvicorn in a daemon thread, on loopback; port 0 picks a free port."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        # IPPROTO_TCP explicitly: only then does asyncio set TCP_NODELAY, and without it every answer
        # after the first on a connection waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"asgi-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
