"""A local emulator of the parts of Zuora's v1 API the hub uses, faithful on the wire.

What a client sees is what it would see from ``rest.zuora.com`` (Zuora's description of its v1
API, 2023-12-15, is what the tests hold it to):

- **Auth**: ``POST /oauth/token`` with form-encoded ``client_id``, ``client_secret`` and
  ``grant_type=client_credentials`` answers ``{access_token, token_type: "bearer", expires_in,
  scope, jti}``; tokens expire after ``expires_in`` seconds (``/_sandbox/tokens`` shortens that, or
  revokes every token). Any other call needs ``Authorization: Bearer <token>``, else 401 with
  reason code 90000011.
- **Answers** are JSON in Zuora's shapes (:mod:`.tenant`), with ``success``. Refusals have Zuora's
  error shape and are mostly **HTTP 200 with** ``"success": false`` (:mod:`.wire`). A
  ``Zuora-Track-Id`` is echoed back; every answer has ``Zuora-Request-Id`` and the ``RateLimit-*``
  headers, and past the limit a 429 with ``Retry-After``; so is a request past the tenant's 200
  requests in flight at once (``Retry-After: 120``, Zuora's concurrent-request policy).
- **Idempotency**: ``Idempotency-Key`` on a POST or PATCH is honoured for 24 hours (the sandbox's
  clock: ``/_sandbox/clock`` moves it): the first answer is replayed, success or failure alike (a
  ``"success": false``, or an injected 500: it fails as the request runs), the key with another
  request is a 422, and while the first request runs a 409 (``/_sandbox/slow-writes`` makes writes
  take long enough to show it). An injected 429 or 503 comes before: never stored. On GET, PUT and
  DELETE the header is ignored, as Zuora ignores it.
- **Callouts**: ``POST /notifications/notification-definitions`` subscribes a URL to an event type
  (``AccountCreated``, ``AccountUpdated``, ``InvoicePosted``, ``PaymentProcessed``,
  ``CreditMemoPosted``, ``RefundProcessed``, and the order actions ``CreateSubscription``,
  ``ChangePlan``, ``RenewSubscription``, ``CancelSubscription``, ``Suspend``, ``Resume``). Each event is
  POSTed there as the JSON body of crossledger's callout template, with ``Zuora-Request-Id`` (new
  at every attempt) and ``X-Amzn-Trace-Id``, authenticated with HTTP Basic when the definition says
  ``requiredAuth``, and signed (HMAC-SHA256 of the body, hex, in ``Callout-Signature``) with the
  tenant's callout template key. A failed callout is retried three times when the definition says
  ``calloutRetry`` (the default). ``/_sandbox/callouts`` holds callouts back and releases them in
  order, reversed or shuffled, and sends every callout made so far once more (Zuora may deliver one
  twice).

Emulated: OAuth tokens, accounts (create, read, update; Object Query with ``filter[]``,
``pageSize`` and ``cursor``), standalone invoices with items and tax, payments applied to invoices,
credit memos from invoices, refunds of payments and credit memos, subscriptions through orders
(create, change plan, renew, cancel, suspend, resume: :mod:`.orders`) of the product catalog's
rate plans (:mod:`.catalog`, read only), notification definitions and their callouts. Not emulated
(see docs/connectors/zuora.md): products and rate plans made through the API, bill runs, OAuth
providers for callouts, and the multi-entity header.
"""

import asyncio
import copy
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from crossledger.plugins.emulator import Faults, WebhookSender, build_app, claim_server_error
from crossledger.plugins.zuora import callout
from crossledger.plugins.zuora.sandbox import catalog, orders
from crossledger.plugins.zuora.sandbox.tenant import Notification, Record, Tenant
from crossledger.plugins.zuora.sandbox.wire import (
    AUTH,
    AUTHENTICATION,
    INVALID_VALUE,
    MISSING_FIELD,
    NOT_FOUND,
    PLATFORM,
    ConcurrencyLimiter,
    IdempotencyKeys,
    RateLimiter,
    ZuoraError,
    render,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

EVENT_OBJECTS = {"AccountCreated": "Account", "AccountUpdated": "Account", "InvoicePosted": "Invoice",
                 "PaymentProcessed": "Payment", "CreditMemoPosted": "CreditMemo", "RefundProcessed": "Refund",
                 **dict.fromkeys(("CreateSubscription", "ChangePlan", "RenewSubscription", "CancelSubscription",
                                  "Suspend", "Resume"),
                                 "Subscription")}
"""The event types the sandbox raises, and the object each names."""

HMAC_HEADER = "Callout-Signature"
"""The header crossledger's callout template puts the HMAC in."""

CALLOUT_ATTEMPTS = {True: 4, False: 1}
"""Attempts of a callout with and without ``calloutRetry`` (the first, then Zuora's three retries)."""

Handler = Callable[[Record, dict[str, str], Request], Record]


def _fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault in Zuora's shape; a 429 carries ``Retry-After`` and the ``RateLimit-*`` headers."""
    if status == 429:
        wait = str(retry_after or 1)
        headers = {"Retry-After": wait, "RateLimit-Limit": "50000", "RateLimit-Remaining": "0", "RateLimit-Reset": wait}
        error = ZuoraError(PLATFORM, "70", "You have exceeded the limit of API requests.", status=429, headers=headers)
    else:
        error = _server_error(status)
    return render(error.status, error.body(), {"Zuora-Request-Id": str(uuid.uuid4()), **error.headers})


def _server_error(status: int) -> ZuoraError:
    """An injected server error (a 500, or a 503 while ``down``) in Zuora's shape."""
    return ZuoraError(PLATFORM, "60", "Zuora is unavailable (injected by the sandbox).", status=status)


@dataclass
class _Definition:
    record: Record
    url: str
    event_type: str
    basic: tuple[str, str] | None
    retry: bool


class ZuoraSandbox:
    """The Zuora emulator as the hub uses it: an ASGI app plus the
    :class:`~crossledger.plugins.types.Sandbox` protocol."""

    def __init__(self, *, token_ttl_s: int = 3600) -> None:
        self.client_id = str(uuid.uuid4())  # Zuora's client ids are UUIDs (36 characters)
        self.client_secret = secrets.token_urlsafe(24)
        self.hmac_key = secrets.token_urlsafe(24)
        self.callout_username = "zuora-callouts"
        self.callout_password = secrets.token_urlsafe(18)
        self.token_ttl_s = token_ttl_s
        self.tokens_issued = 0
        self.faults = Faults()
        self._offset = 0.0
        self._slow_writes_s = 0.0
        self._lock = threading.RLock()  # definitions are made by API calls (already holding it) and by subscribe()
        self._tokens: dict[str, float] = {}
        self._tenant = Tenant(self.clock)
        self._keys = IdempotencyKeys(self.clock)
        self._limits = RateLimiter(self.clock)
        self._concurrency = ConcurrencyLimiter()
        self._definitions: list[_Definition] = []
        self._senders = {retry: WebhookSender(max_attempts=attempts, max_delay=2.0)
                         for retry, attempts in CALLOUT_ATTEMPTS.items()}
        self._sent: list[tuple[_Definition, bytes]] = []
        self._raised_bodies: list[bytes] = []
        self._app = build_app(self._routes(), faults=self.faults, state=self.state, fault_response=_fault_response,
                              answers_server_errors=True)

    @property
    def app(self) -> Starlette:
        return self._app

    def clock(self) -> float:
        """The tenant's time: the wall clock, moved on by ``/_sandbox/clock``."""
        return time.time() + self._offset

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "client_id": self.client_id, "client_secret": self.client_secret,
                "hmac_key": self.hmac_key, "callout_username": self.callout_username,
                "callout_password": self.callout_password}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Set up a notification definition with a callout to the hub for every event type the sandbox
        raises, with HTTP Basic (``requiredAuth``) and retries, as an operator would."""
        for event_type in EVENT_OBJECTS:
            self.define({"name": f"crossledger {event_type}", "eventTypeName": event_type, "calloutActive": True,
                         "callout": {"name": f"crossledger {event_type}", "calloutBaseurl": hub_webhook_url,
                                     "httpMethod": "POST", "requiredAuth": True, "calloutRetry": True,
                                     "calloutAuth": {"username": self.callout_username,
                                                     "password": self.callout_password, "preemptive": True}}})

    def define(self, body: Record) -> Record:
        """``POST /notifications/notification-definitions``: a definition with a callout."""
        event_type, call = body.get("eventTypeName"), body.get("callout")
        if event_type not in EVENT_OBJECTS:
            raise ZuoraError(PLATFORM, INVALID_VALUE, f"Unknown event type: '{event_type}'.", status=400)
        if not isinstance(call, dict) or not call.get("calloutBaseurl") or call.get("httpMethod") != "POST":
            raise ZuoraError(PLATFORM, MISSING_FIELD, "A callout with calloutBaseurl and httpMethod POST is required.",
                             status=400)
        auth = call.get("calloutAuth") or {}
        basic = (str(auth.get("username")), str(auth.get("password"))) if call.get("requiredAuth") else None
        now = self._tenant._now()
        shown_callout = {k: v for k, v in call.items() if k != "calloutAuth"}
        record = {"id": str(uuid.uuid4()), "name": str(body.get("name") or event_type), "eventTypeName": event_type,
                  "active": bool(body.get("active", True)), "calloutActive": bool(body.get("calloutActive", True)),
                  "emailActive": False, "callout": {"id": str(uuid.uuid4()), "active": True, **shown_callout},
                  "createdOn": now, "updatedOn": now}
        with self._lock:
            self._definitions.append(_Definition(record, str(call["calloutBaseurl"]), event_type, basic,
                                                 bool(call.get("calloutRetry", True))))
        return record

    def wait_for_callouts(self, timeout: float = 30.0) -> bool:
        """Block until every callout sent so far was delivered or abandoned; False on timeout."""
        return all(sender.wait_idle(timeout) for sender in self._senders.values())

    def state(self) -> dict[str, Any]:
        """Every record by type, as Object Query answers them, and the callouts' counts."""
        with self._lock:
            callouts = {"sent": len(self._sent), **{f"retrying_{k}": v for k, v in self._senders[True].stats().items()}}
            return {**copy.deepcopy(self._tenant.state()), "callouts": callouts,
                    "definitions": [d.record for d in self._definitions], "tokens_issued": self.tokens_issued}

    # -- routes ------------------------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        tenant = self._tenant
        api: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/accounts", lambda body, path, request: tenant.create_account(body)),
            ("GET", "/v1/accounts/{key}", lambda body, path, request: tenant.account_view(path["key"])),
            ("PUT", "/v1/accounts/{key}", lambda body, path, request: tenant.update_account(path["key"], body)),
            ("GET", "/object-query/accounts", self._query("accounts")),
            ("GET", "/object-query/invoices", self._query("invoices")),
            ("GET", "/v1/payments", self._v1_list("payments", tenant.payments, tenant.payment_view)),
            ("GET", "/v1/creditmemos", self._v1_list("creditmemos", tenant.credit_memos, tenant.credit_memo_view)),
            ("GET", "/v1/refunds", self._v1_list("refunds", tenant.refunds, tenant.refund_view)),
            ("POST", "/v1/invoices", lambda body, path, request: tenant.create_invoice(body)),
            ("GET", "/v1/invoices/{key}", lambda body, path, request: tenant.invoice_view(path["key"])),
            ("GET", "/v1/invoices/{key}/items", lambda body, path, request: tenant.invoice_items_view(path["key"])),
            ("POST", "/v1/payments", lambda body, path, request: tenant.create_payment(body)),
            ("GET", "/v1/payments/{key}", lambda body, path, request: tenant.payment_view(path["key"])),
            ("GET", "/v1/payments/{key}/parts", lambda body, path, request: tenant.payment_parts_view(path["key"])),
            # The 2023 reference's paths and the ones Zuora's later reference and zuora-sdk 3.21 use.
            *((method, path, handler) for method, paths, handler in (
                ("POST", ("/v1/invoices/{key}/creditmemos", "/v1/credit-memos/invoice/{key}"),
                 lambda body, path, request: tenant.credit_invoice(path["key"], body)),
                ("GET", ("/v1/creditmemos/{key}", "/v1/credit-memos/{key}"),
                 lambda body, path, request: tenant.credit_memo_view(path["key"])),
                ("POST", ("/v1/creditmemos/{key}/refunds", "/v1/credit-memos/{key}/refunds"),
                 lambda body, path, request: tenant.refund_credit_memo(path["key"], body)),
            ) for path in paths),
            ("POST", "/v1/payments/{key}/refunds",
             lambda body, path, request: tenant.refund_payment(path["key"], body)),
            ("GET", "/v1/refunds/{key}", lambda body, path, request: tenant.refund_view(path["key"])),
            ("POST", "/v1/orders", lambda body, path, request: orders.place_order(tenant, body)),
            ("GET", "/v1/subscriptions/{key}",
             lambda body, path, request: orders.subscription_view(tenant, path["key"])),
            ("GET", "/v1/products/{key}/product-rate-plans", self._rate_plans),
            ("GET", "/v1/object/product-rate-plan/{key}",
             lambda body, path, request: catalog.rate_plan_object(path["key"])),
            ("POST", "/notifications/notification-definitions", lambda body, path, request: self.define(body)),
            ("GET", "/notifications/notification-definitions", self._list_definitions),
        ]
        return [
            Route("/oauth/token", self._token, methods=["POST"]),
            *(self._api_route(method, path, handler) for method, path, handler in api),
            Route("/_sandbox/clock", self._move_clock, methods=["POST"]),
            Route("/_sandbox/tokens", self._token_control, methods=["POST"]),
            Route("/_sandbox/limits", self._limit_control, methods=["POST"]),
            Route("/_sandbox/slow-writes", self._slow_control, methods=["POST"]),
            Route("/_sandbox/callouts", self._callout_control, methods=["POST"]),
            Route("/{path:path}", _unrecognized, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    def _api_route(self, method: str, path: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._handle(request, handler)

        return Route(path, endpoint, methods=[method])

    async def _handle(self, request: Request, handler: Handler) -> Response:
        """Count against the rate limit, authenticate, honour the idempotency key, run, and answer."""
        headers = {"Zuora-Request-Id": str(uuid.uuid4())}
        track = request.headers.get("zuora-track-id")
        if track:
            headers["Zuora-Track-Id"] = track
        key = request.headers.get("idempotency-key") if request.method in ("POST", "PATCH") else None
        try:
            headers.update(self._limits.take())
            with self._concurrency.hold():
                self._authenticate(request.headers.get("authorization"))
                raw = await request.body()
                body = _json_body(raw) if request.method in ("POST", "PUT", "PATCH") else {}
                if key is not None:
                    fingerprint = (request.method, request.url.path, json.dumps(body, sort_keys=True))
                    replayed = self._keys.begin(key, fingerprint)
                    if replayed is not None:
                        return render(replayed[0], replayed[1], headers)
                if key is not None or request.method != "GET":
                    await asyncio.sleep(self._slow_writes_s)
                status, answer = self._run(handler, body, request)
                if key is not None:
                    self._keys.finish(key, (status, answer))
        except ZuoraError as error:
            status, answer = error.status, error.body()
            headers.update(error.headers)
        return render(status, answer, headers)

    def _run(self, handler: Handler, body: Record, request: Request) -> tuple[int, Record]:
        """The handler's answer; or the server error injected into the request, as it fails running
        (:func:`~crossledger.plugins.emulator.claim_server_error`), kept under its key like any answer."""
        if (status := claim_server_error(request)) is not None:
            return status, _server_error(status).body()
        try:
            return 200, self.apply(lambda tenant: handler(body, dict(request.path_params), request))
        except ZuoraError as error:
            return error.status, error.body()

    def apply(self, change: Callable[[Tenant], Record]) -> Record:
        """Change the tenant (as an API call, or a user in Zuora's UI would) and send the callouts the
        change raises; the answer, a copy."""
        with self._lock:
            answer = copy.deepcopy(change(self._tenant))
            raised, self._tenant.raised = self._tenant.raised, []
        for notification in raised:
            self._callout(notification)
        return answer

    def callout_bodies(self) -> list[bytes]:
        """The body of every callout the tenant's changes raised so far, in order, whether or not a
        notification definition sent it anywhere."""
        with self._lock:
            return list(self._raised_bodies)

    def _authenticate(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        expires = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None or expires <= self.clock():
            raise ZuoraError(AUTH, AUTHENTICATION, "Authentication error", status=401)

    async def _token(self, request: Request) -> Response:
        """``POST /oauth/token`` (form-encoded; no auth header)."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        valid = (form.get("grant_type") == "client_credentials" and form.get("client_id") == self.client_id
                 and hmac.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode()))
        if not valid:
            error = ZuoraError(AUTH, AUTHENTICATION, "Invalid client credentials", status=401)
            return render(error.status, error.body(), {"Zuora-Request-Id": str(uuid.uuid4())})
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = self.clock() + self.token_ttl_s
            self.tokens_issued += 1
        return render(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl_s,
                            "scope": "user.0 entity.0 platform.write service.usage.read tenant.0",
                            "jti": uuid.uuid4().hex}, {"Zuora-Request-Id": str(uuid.uuid4())})

    def _query(self, collection: str) -> Handler:
        """``GET /object-query/{collection}``: ``filter[]`` (:func:`_kept`), ``pageSize`` (1-50),
        ``cursor``; the answer's ``nextPage`` is the next cursor."""

        def query(body: Record, path: dict[str, str], request: Request) -> Record:
            found = self._tenant.state()[collection]
            for condition in request.query_params.getlist("filter[]"):
                found = [record for record in found if _kept(condition, record)]
            size = _whole(request, "pageSize", 10, 50)
            start = _whole(request, "cursor", 0, len(found))
            more = start + size < len(found)
            return {"data": found[start:start + size], **({"nextPage": str(start + size)} if more else {})}

        return query

    def _v1_list(self, collection: str, records: dict[str, Record], view: Callable[[str], Record]) -> Handler:
        """``GET /v1/{collection}``: 1-based ``page`` of ``pageSize`` (1-40, 20 by default) records, oldest
        first, each as ``GET /v1/{collection}/{id}`` shows it; ``nextPage`` is the full URL of the next page."""

        def listed(body: Record, path: dict[str, str], request: Request) -> Record:
            size = _whole(request, "pageSize", V1_PAGE_SIZE, V1_MAX_PAGE_SIZE)
            page = _whole(request, "page", 1, None)
            keys = list(records)  # handlers run under the sandbox's lock (apply)
            start = (page - 1) * size
            shown = [{k: v for k, v in view(key).items() if k != "success"} for key in keys[start:start + size]]
            following = str(request.url.include_query_params(page=page + 1, pageSize=size))
            return {"success": True, collection: shown,
                    **({"nextPage": following} if start + size < len(keys) else {})}

        return listed

    def _rate_plans(self, body: Record, path: dict[str, str], request: Request) -> Record:
        """``GET /v1/products/{key}/product-rate-plans``: the product's rate plans, a v1 list."""
        catalog.product(path["key"])
        return self._v1_list("productRatePlans", catalog.RATE_PLANS, catalog.rate_plan_view)(body, path, request)

    def _list_definitions(self, body: Record, path: dict[str, str], request: Request) -> Record:
        return {"data": [d.record for d in self._definitions]}

    # -- callouts ----------------------------------------------------------------------------------

    def _callout(self, notification: Notification) -> None:
        body = json.dumps({"eventType": notification.event_type, "objectType": notification.object_type,
                           "objectId": notification.object_id, "updatedDate": notification.updated}).encode()
        with self._lock:
            self._raised_bodies.append(body)
        for definition in self._definitions:
            if definition.event_type == notification.event_type and definition.record["calloutActive"]:
                with self._lock:
                    self._sent.append((definition, body))
                self._send(definition, body)

    def _send(self, definition: _Definition, body: bytes) -> None:
        def headers(sent: bytes) -> dict[str, str]:
            found = {"Content-Type": "application/json", "Zuora-Request-Id": uuid.uuid4().hex,
                     "X-Amzn-Trace-Id": f"Root=1-{int(self.clock()):08x}-{secrets.token_hex(12)}",
                     HMAC_HEADER: callout.sign(self.hmac_key, sent)}
            if definition.basic is not None:
                found["Authorization"] = callout.basic_header(*definition.basic)
            return found

        self._senders[definition.retry].send(definition.url, body, headers)

    # -- control -----------------------------------------------------------------------------------

    async def _move_clock(self, request: Request) -> Response:
        """``{"advance_s": n}``: the tenant's time moves on (tokens and idempotency keys expire)."""
        command = await _command(request)
        self._offset += float(command.get("advance_s", 0))
        return JSONResponse({"now": self.clock()})

    async def _token_control(self, request: Request) -> Response:
        """``{"ttl_s": n}`` for tokens issued from now on; ``{"revoke": true}`` ends every token now."""
        command = await _command(request)
        with self._lock:
            if "ttl_s" in command:
                self.token_ttl_s = int(command["ttl_s"])
            if command.get("revoke"):
                self._tokens.clear()
        return JSONResponse({"ttl_s": self.token_ttl_s, "issued": self.tokens_issued})

    async def _limit_control(self, request: Request) -> Response:
        """``{"per_minute": n}``: the tenant's API calls a minute (a new window starts now);
        ``{"concurrent": n, "retry_after_s": s}``: its requests in flight at once, and the retry a
        429 past them asks for."""
        command = await _command(request)
        if "per_minute" in command:
            self._limits = RateLimiter(self.clock, per_minute=int(command["per_minute"]))
        if "concurrent" in command:
            self._concurrency = ConcurrencyLimiter(int(command["concurrent"]),
                                                   int(command.get("retry_after_s", 120)))
        return JSONResponse({"per_minute": self._limits.per_minute, "concurrent": self._concurrency.limit})

    async def _slow_control(self, request: Request) -> Response:
        """``{"seconds": s}``: every write takes ``s`` seconds (to show a concurrent key's 409)."""
        self._slow_writes_s = float((await _command(request)).get("seconds", 0))
        return JSONResponse({"seconds": self._slow_writes_s})

    async def _callout_control(self, request: Request) -> Response:
        """``{"hold": true}`` keeps callouts back; ``{"release": "in_order" | "reverse" | "shuffle"}``
        lets them go; ``{"resend": "all"}`` sends every callout made so far again."""
        command = await _command(request)
        try:
            if command.get("hold"):
                for sender in self._senders.values():
                    sender.hold()
                return JSONResponse({"held": True})
            if command.get("resend") == "all":
                with self._lock:
                    sent = list(self._sent)
                for definition, body in sent:
                    self._send(definition, body)
                return JSONResponse({"resent": len(sent)})
            order = command.get("release", "in_order")
            return JSONResponse({"released": sum(sender.release(order) for sender in self._senders.values())})
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)


def _json_body(raw: bytes) -> Record:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ZuoraError(PLATFORM, "90", "The request body is not valid JSON.", status=400) from error
    if not isinstance(body, dict):
        raise ZuoraError(PLATFORM, "90", "The request body must be a JSON object.", status=400)
    return body


async def _command(request: Request) -> Record:
    try:
        command = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return command if isinstance(command, dict) else {}


V1_PAGE_SIZE, V1_MAX_PAGE_SIZE = 20, 40
"""Zuora's v1 list endpoints: 20 records a page unless ``pageSize`` (at most 40) says otherwise."""


FILTERS: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda value, wanted: value == wanted, "NE": lambda value, wanted: value != wanted,
    "LT": lambda value, wanted: value is not None and value < wanted,
    "GT": lambda value, wanted: value is not None and value > wanted,
    "SW": lambda value, wanted: isinstance(value, str) and value.startswith(wanted),
    "IN": lambda value, wanted: value in wanted,
}
"""Object Query's ``filter[]`` operators (developer.zuora.com, "Expand, filter, fields, and sort"):
there is no ``GE`` or ``LE``."""


def _kept(condition: str, record: Record) -> bool:
    """Whether ``record`` passes one ``filter[]`` clause, ``{field}.{operator}:{value}``: ``EQ``,
    ``NE`` and ``IN`` (``name.IN:[Amy,Bella]``) exact; ``LT``, ``GT`` compare datetimes as instants
    (``updatedDate.GT:2020-03-10T07:12:12-07:00``) and numbers as numbers. The field is matched
    without regard to case, as Zuora matches it; an unknown operator is a 400."""
    name, _, rest = condition.partition(".")
    operator, _, text = rest.partition(":")
    if operator not in FILTERS or not name:
        raise ZuoraError(PLATFORM, INVALID_VALUE, f"Unsupported filter: '{condition}'.", status=400)
    field = next((key for key in record if key.lower() == name.lower()), name)
    value = record.get(field)
    if operator == "IN":
        return str(value) in {part.strip() for part in text.strip("[]").split(",")}
    if operator in ("EQ", "NE", "SW"):
        return FILTERS[operator](None if value is None else str(value), text)
    return FILTERS[operator](*_comparable(value, text, condition))


def _comparable(value: Any, text: str, condition: str) -> tuple[Any, Any]:
    """A record's value and a clause's, as two instants or two numbers."""
    try:
        wanted = datetime.fromisoformat(text)
        return (None if value is None else datetime.fromisoformat(str(value)), wanted)
    except ValueError:
        pass
    try:
        return (None if value is None else Decimal(str(value)), Decimal(text))
    except ArithmeticError as error:
        raise ZuoraError(PLATFORM, INVALID_VALUE, f"Unsupported filter: '{condition}'.", status=400) from error


def _whole(request: Request, name: str, default: int, most: int | None) -> int:
    """A whole-number query parameter, from 1 (``cursor`` from 0) up to ``most``; Zuora's 400 otherwise."""
    least = 0 if name == "cursor" else 1
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        raise ZuoraError(PLATFORM, INVALID_VALUE, f"{name} must be a whole number.", status=400) from None
    if value < least or (most is not None and value > max(most, least)):
        bounds = f"between {least} and {most}" if most is not None else f"at least {least}"
        raise ZuoraError(PLATFORM, INVALID_VALUE, f"{name} must be {bounds}.", status=400)
    return value


async def _unrecognized(request: Request) -> Response:
    """An unknown path: 404 in Zuora's error shape."""
    error = ZuoraError(PLATFORM, NOT_FOUND, f"No route for {request.method} {request.url.path}.", status=404)
    return render(error.status, error.body(), {"Zuora-Request-Id": str(uuid.uuid4())})

