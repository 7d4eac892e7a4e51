"""A local emulator of the parts of Stripe's API the hub uses, faithful on the wire.

What a client sees is what it would see from ``api.stripe.com``:

- **Requests** are ``application/x-www-form-urlencoded`` (query string for GET and DELETE) in
  Stripe's bracket notation: ``metadata[plan]=pro``, ``items[0][price]=price_...``,
  ``enabled_events[]=*``, ``expand[]=customer``. Unknown parameters are refused, as Stripe refuses
  them, so a client cannot rely on something Stripe would reject.
- **Auth** is ``Authorization: Bearer sk_test_...`` (HTTP Basic with the key as user name works
  too); anything else is a 401.
- **Responses** are JSON with status 200 (Stripe never answers 201), and every one carries a
  ``Request-Id: req_...`` header. Ids have Stripe's prefixes, times are epoch seconds, currencies
  lower case, amounts integer minor units. Errors have Stripe's shape,
  ``{"error": {"type", "message"}}`` with ``code`` and ``doc_url``, ``param`` and
  ``decline_code`` when they apply (left out, not null, when they do not).
- **Idempotency**: the first response to a POST with an ``Idempotency-Key`` (errors included) is
  stored and replayed, with ``Idempotent-Replayed: true``, for the same key and parameters; the
  same key with other parameters is an ``idempotency_error``. An injected 500 is such an error: it
  happens once the request runs, so it is stored under the key like any other answer, as Stripe
  stores a 500 once execution started (an injected 429 or 503 comes before: never stored).
- **Lists** are ``{"object": "list", "url", "has_more", "data"}``, newest first, paged with
  ``limit``, ``starting_after`` and ``ending_before``. **Search** (customers, invoices,
  subscriptions) answers ``{"object": "search_result", "data", "has_more", "next_page", "url"}``
  for the part of Stripe's query language people use (:mod:`.search`).
- **Events**: every change records an ``event`` and POSTs it, signed with ``Stripe-Signature``,
  to each webhook endpoint that listens for its type (or ``*``). Deliveries run in the background
  and retry any non-2xx answer (:class:`~crossledger.plugins.emulator.WebhookSender`).

The records follow the current API version's field sets (those of the fixtures in
``tests/fixtures/payloads/stripe``), with amounts kept consistent: an invoice's lines are its
invoice items and subscription items, its totals add up, paying moves ``amount_remaining`` to
``amount_paid``, refunds never exceed their charge, credit notes never exceed their invoice.

Emulated (each module says how): customers and exclusive tax rates (:mod:`.customers`), invoice
items, invoices and their payments (:mod:`.invoices`), invoice previews (:mod:`.previews`),
payment intents and charges (read only: invoices make them), refunds and credit notes
(:mod:`.credits`), products, prices, subscriptions with prorations (:mod:`.subscriptions`) and
test clocks that renew them (:mod:`.clocks`), search (:mod:`.search`), webhook endpoints and
events (:mod:`.webhooks`).
Not emulated: payment methods (test tokens such as ``pm_card_visa`` stand for attached ones),
discounts, inclusive or automatic tax, customer balances applied to invoices, subscription
schedules, pauses and interval changes, search on other resources (charges, payment intents,
prices, products), and the search index's delay (Stripe's search lags writes by up to a minute;
the sandbox's does not).

Besides Stripe's API, the sandbox serves the control routes of every crossledger sandbox
(``/_sandbox/state``, ``/_sandbox/faults``), ``POST /_sandbox/events/{id}/resend`` (delivers an
event again, the way Stripe sometimes delivers one twice) and ``POST /_sandbox/webhooks`` (holds
deliveries back and releases them in order, reversed or shuffled).

Here the account's areas are built and wired together (:mod:`.account` explains the parts), their
endpoints assembled into one route table, and every request authenticated, decoded, run once per
idempotency key and rendered.
"""

import base64
import binascii
import copy
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import parse_qsl

from crossledger.plugins.emulator import Faults, WebhookSender, build_app, claim_server_error
from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.clocks import Clocks
from crossledger.plugins.stripe.sandbox.credits import Credits
from crossledger.plugins.stripe.sandbox.customers import Customers
from crossledger.plugins.stripe.sandbox.invoices import Invoicing
from crossledger.plugins.stripe.sandbox.previews import Previews
from crossledger.plugins.stripe.sandbox.search import Search
from crossledger.plugins.stripe.sandbox.subscriptions import Subscriptions
from crossledger.plugins.stripe.sandbox.webhooks import Webhooks
from crossledger.plugins.stripe.sandbox.wire import (
    Call,
    Endpoint,
    Handler,
    Params,
    StripeError,
    decode_params,
    encode,
    invalid,
    new_id,
    token,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

_FAULTS = {
    500: StripeError(
        500,
        "api_error",
        "An unknown error occurred on Stripe's end (injected by the sandbox).",
        headers={"Stripe-Should-Retry": "true"},
    ),
    503: StripeError(503, "api_error", "Stripe is temporarily unavailable (injected by the sandbox)."),
    429: invalid(
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        code="rate_limit",
        status=429,
    ),
}


def _render(status: int, content: bytes, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        content, status, headers={"Request-Id": request_id, **(headers or {})}, media_type="application/json"
    )


def _fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault in Stripe's error shape. A 429 has no Retry-After: Stripe promises none."""
    error = _FAULTS[status]
    return _render(error.status, error.body(), new_id("req"), error.headers)


class _Area(Protocol):
    """One area of the API (:mod:`.account`): it declares the endpoints it answers."""

    def endpoints(self) -> list[Endpoint]: ...


def _literal_first(endpoint: Endpoint) -> list[bool]:
    """Sort key putting, segment by segment, a literal before a path parameter, so that
    ``/v1/invoices/search`` is matched before ``/v1/invoices/{id}`` whichever area declares it."""
    return [segment.startswith("{") for segment in endpoint.path.split("/")]


@dataclass(frozen=True)
class _Reply:
    """An API answer; stored for an idempotency key with the ``fingerprint`` of what was asked."""

    status: int
    content: bytes
    request_id: str
    fingerprint: tuple[Any, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: StripeError, request_id: str) -> "_Reply":
        return cls(error.status, error.body(), request_id, headers=error.headers)


class StripeSandbox:
    """The Stripe emulator as the hub uses it: an ASGI app plus the :class:`~crossledger.plugins.types.Sandbox`
    protocol (settings for the connector, and registering the hub's webhook URL).

    Serve :attr:`app` at the root or under a prefix (``Mount("/stripe", app=sandbox.app)``): routes
    are relative and list ``url`` fields are API paths (``/v1/customers``), which is what Stripe's
    clients append to their base URL.
    """

    def __init__(self) -> None:
        self.api_key = f"sk_test_{token(24)}"
        self.faults = Faults()
        self._lock = threading.Lock()
        self._sender = WebhookSender()
        self._account = Account(self._sender)
        self._webhooks = Webhooks(self._account)
        self._replies: dict[str, _Reply] = {}
        self._hub_secret = ""
        self._app: Starlette = build_app(
            self._routes(self._areas()), faults=self.faults, state=self.state, fault_response=_fault_response,
            answers_server_errors=True,
        )

    @property
    def app(self) -> Starlette:
        return self._app

    @property
    def account(self) -> Account:
        """The emulated account's records, for a developer tool that seeds many at once (the
        reconciliation bench) rather than through the API. No connector reaches it."""
        return self._account

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "api_key": self.api_key, "webhook_secret": self._hub_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Register the hub for every event, as ``POST /v1/webhook_endpoints`` with ``enabled_events[]=*``."""
        params = Params(decode_params([("url", hub_webhook_url), ("enabled_events[]", "*")]))
        with self._lock:
            self._hub_secret = self._webhooks.create_webhook_endpoint(Call(params, {}))["secret"]

    def wait_for_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until every webhook sent so far was delivered or abandoned; False on timeout."""
        return self._sender.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        """Every record by type, in Stripe's JSON form (webhook secrets are never shown)."""
        with self._lock:
            return {**copy.deepcopy(self._account.records()), "webhooks": self._sender.stats()}

    def _areas(self) -> list[_Area]:
        """Every area of the API, each given the account and the other areas it uses."""
        account = self._account
        customers = Customers(account)
        invoicing = Invoicing(account, customers)
        subscriptions = Subscriptions(account, customers, invoicing)
        return [customers, self._webhooks, invoicing, Credits(account, invoicing), subscriptions,
                Clocks(account, subscriptions), Previews(account, invoicing, subscriptions), Search(account)]

    def _routes(self, areas: list[_Area]) -> list[BaseRoute]:
        """The route table: every area's endpoints, then the sandbox's own routes, then the 404 of any other path."""
        endpoints = sorted((endpoint for area in areas for endpoint in area.endpoints()), key=_literal_first)
        return [
            *(self._api_route(*endpoint) for endpoint in endpoints),
            Route("/_sandbox/events/{id}/resend", self._resend, methods=["POST"]),
            Route("/_sandbox/webhooks", self._webhook_control, methods=["POST"]),
            Route("/{path:path}", _unrecognized, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
        ]

    def _api_route(self, method: str, path: str, handler: Handler) -> Route:
        operation = f"{method} {path}"

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            return self._handle(operation, request, body, handler)

        return Route(path, endpoint, methods=[method])

    def _handle(self, operation: str, request: Request, body: bytes, handler: Handler) -> Response:
        """Authenticate, decode, run the handler once per idempotency key, and render the answer."""
        request_id = new_id("req")
        replayed = False
        try:
            self._authenticate(request.headers.get("authorization"))
            if request.method == "POST":
                pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                key = request.headers.get("idempotency-key")
            else:
                pairs, key = request.query_params.multi_items(), None
            params = Params(decode_params(pairs))
            call = Call(params, dict(request.path_params), {"id": request_id, "idempotency_key": key})
            fingerprint = (operation, tuple(sorted(call.path.items())), tuple(sorted(pairs)))
            with self._lock:
                reply, replayed = self._once(key, fingerprint, lambda: self._execute(handler, call, request))
        except StripeError as error:
            reply = _Reply.failed(error, request_id)
        replay = {"Idempotent-Replayed": "true", "Original-Request": reply.request_id} if replayed else {}
        return _render(reply.status, reply.content, request_id, {**reply.headers, **replay})

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization:
            raise invalid(
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                status=401,
            )
        key = _presented_key(authorization)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise invalid(f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}", status=401)

    def _once(self, key: str | None, fingerprint: tuple[Any, ...], run: Callable[[], _Reply]) -> tuple[_Reply, bool]:
        """Run the request, or replay the stored answer to its idempotency key; whether it was replayed."""
        if key is None:
            return run(), False
        if len(key) > 255:
            raise invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key")
        stored = self._replies.get(key)
        if stored is None:
            stored = self._replies[key] = replace(run(), fingerprint=fingerprint)
            return stored, False
        if stored.fingerprint != fingerprint:
            raise StripeError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
        return stored, True

    def _execute(self, handler: Handler, call: Call, request: Request) -> _Reply:
        """The handler's answer, serialized now (while the lock still guards the records it returns);
        or the server error injected into the request (:func:`claim_server_error`): it fails as it runs."""
        if (status := claim_server_error(request)) is not None:
            return _Reply.failed(_FAULTS[status], call.request["id"])
        try:
            paths = call.params.strings("expand")
            self._account.check_expand(paths)
            payload = self._account.expand(handler(call), paths)
        except StripeError as error:
            return _Reply.failed(error, call.request["id"])
        return _Reply(200, encode(payload), call.request["id"])

    async def _webhook_control(self, request: Request) -> Response:
        """``{"hold": true}`` keeps deliveries back; ``{"release": "in_order" | "reverse" | "shuffle"}``
        lets them go (Stripe does not guarantee the order of events)."""
        try:
            command = json.loads(await request.body() or b"{}")
            if command.get("hold"):
                self._sender.hold()
                return JSONResponse({"held": True})
            return JSONResponse({"released": self._sender.release(command.get("release", "in_order"))})
        except (ValueError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    async def _resend(self, request: Request) -> Response:
        try:
            with self._lock:
                deliveries = self._account.resend(request.path_params["id"])
        except StripeError as error:
            return _render(error.status, error.body(), new_id("req"))
        return _render(200, encode({"id": request.path_params["id"], "deliveries": deliveries}), new_id("req"))


def _presented_key(authorization: str) -> str:
    """The API key in an Authorization header: ``Bearer <key>``, or Basic auth with the key as user name."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def _unrecognized(request: Request) -> Response:
    """Stripe answers an unknown path, or a known path with the wrong method, with a 404 like this."""
    path = "/" + request.path_params["path"]
    error = invalid(f"Unrecognized request URL ({request.method}: {path}).", status=404)
    return _render(error.status, error.body(), new_id("req"))
