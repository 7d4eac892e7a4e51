"""A local emulator of Dynamics 365 Business Central's standard API v2.0 and its Entra ID token
endpoint, for one tenant, one environment and one company.

What a client meets in the real service, and so meets here:

- **Entra ID client credentials**: ``POST /{tenant}/oauth2/v2.0/token`` (form-encoded
  ``grant_type=client_credentials``, ``client_id``, ``client_secret``,
  ``scope=https://api.businesscentral.dynamics.com/.default``) answers ``{"token_type": "Bearer",
  "expires_in", "ext_expires_in", "access_token"}``; wrong credentials answer 401 ``invalid_client``
  with an ``AADSTS`` description. Tokens expire after ``token_lifetime_s``; an expired or unknown one
  answers 401 ``Authentication_InvalidCredentials`` with ``WWW-Authenticate: Bearer``.
- **The API** under ``/v2.0/{tenant}/{environment}/api/v2.0``: ``companies``, and per company
  ``customers``, ``salesInvoices`` (+ ``salesInvoiceLines``, ``Microsoft.NAV.post`` and
  ``Microsoft.NAV.cancel``), ``salesCreditMemos`` (+ lines, ``Microsoft.NAV.post``),
  ``customerPaymentJournals({id})/customerPayments``, ``items``, ``taxAreas``, ``paymentTerms``,
  ``currencies`` (the rules are in :mod:`.books`). Answers carry ``@odata.context``, each entity its
  ``@odata.etag`` (also the ``ETag`` header of a single entity); collections are ``{"value": [...]}``.
- **OData queries**: ``$filter`` (see :mod:`.odata`), ``$orderby``, ``$top``, ``$skip``, ``$expand``
  of a document's lines, and server-driven paging: with ``Prefer: odata.maxpagesize=N`` (at most
  :data:`MAX_PAGE_SIZE`, the default) a page ends with ``@odata.nextLink``.
- **``$batch``** (``POST .../api/v2.0/$batch``, the JSON batch format): at most 100 requests, each
  ``{"id", "method", "url", "headers", "body"}``, answered ``{"responses": [{"id", "status",
  "headers", "body"}]}``; with ``Isolation: snapshot`` all of them take effect or none does.
- **Errors**: ``{"error": {"code", "message"}}``, the message ending in a ``CorrelationId``.
- **Webhook subscriptions** (``/api/v2.0/subscriptions``): see :mod:`.webhooks`.
- **Throttling**: a user makes at most 6,000 API requests in any five minutes (:class:`RequestWindow`,
  Business Central's operational limit); one more is a 429 ``Application_TooManyRequests`` with
  ``Retry-After`` (the seconds until the oldest request leaves the window).
  ``/_sandbox/business_central/limits`` lowers the limit; the shared fault injection (``http_429``)
  answers the same 429 at will.

Not emulated: the limit of 5 requests at once with 95 queued (the sandbox answers one request at a
time), ``$select``, ``$count``, lambda and function filters, tax calculation (tax is an item
line, as the connector writes it), posting dates and periods, dimensions, attachments and PDFs, the
common endpoint without a tenant, and the on-premises Basic auth.
"""

import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import msgspec
from crossledger.plugins.business_central.sandbox.books import LINES, BCError, Books, invalid, not_found
from crossledger.plugins.business_central.sandbox.odata import ODataError, Record, parse_filter, segments
from crossledger.plugins.business_central.sandbox.webhooks import Subscriptions
from crossledger.plugins.emulator import Faults, build_app
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

SCOPE = "https://api.businesscentral.dynamics.com/.default"
ENVIRONMENT = "production"
MAX_PAGE_SIZE = 20000
MAX_BATCH = 100
MAX_REQUESTS_KEPT = 10_000
ENTITY_SETS = frozenset({"customers", "salesInvoices", "salesCreditMemos", "customerPaymentJournals", "items",
                         "taxAreas", "paymentTerms", "currencies", "customerPayments"})
DEFAULT_PAYMENT_JOURNAL = "CASHRCPT"
"""Where ``POST companies({id})/customerPayments`` (outside a journal) puts the line."""
_JSON = msgspec.json.Encoder(decimal_format="number")
_MAX_PAGE = re.compile(r"odata\.maxpagesize=(\d+)")

Answer = tuple[int, dict[str, str], Any]
"""An answer before it is an HTTP response: status, headers, JSON body (None for no content)."""


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{message}  CorrelationId:  {uuid.uuid4()}."}}


def _response(answer: Answer) -> Response:
    status, headers, body = answer
    if body is None:
        return Response(status_code=status, headers=headers)
    return Response(_JSON.encode(body), status_code=status, headers=headers,
                    media_type="application/json; odata.metadata=minimal; odata.streaming=true")


def fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault as Business Central answers it: 429 and 503 carry Retry-After."""
    code, message = {
        429: ("Application_TooManyRequests", "The request was throttled: too many requests for this user."),
        500: ("Internal_ServerError", "An unexpected error occurred."),
        503: ("Internal_ServiceUnavailable", "The service is temporarily unavailable."),
    }[status]
    headers = {"Retry-After": str(retry_after if retry_after is not None else 5)} if status in (429, 503) else {}
    return _response((status, headers, error_body(status, code, message)))


@dataclass
class RequestWindow:
    """A user's API requests in a sliding window: at most ``limit`` in any ``window_s`` seconds."""

    clock: Callable[[], float]
    limit: int = 6000
    window_s: float = 300.0
    _times: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> int | None:
        """Count one request; None when it is let in, else the seconds to wait (Retry-After)."""
        now = self.clock()
        with self._lock:
            while self._times and self._times[0] <= now - self.window_s:
                self._times.popleft()
            if len(self._times) >= self.limit:
                return max(1, math.ceil(self._times[0] + self.window_s - now))
            self._times.append(now)
            return None


class BusinessCentralSandbox:
    """An in-memory Business Central tenant; thread-safe.

    Serve :attr:`app`, point the connector at it with :meth:`connector_settings`, read what was
    written with :meth:`state`. ``clock`` drives timestamps, token and subscription expiry (a test
    can move it on); ``notification_delay_s`` is how long changes gather before a notification is
    sent (Business Central waits about 30 s).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, token_lifetime_s: int = 3599,
                 notification_delay_s: float = 0.2) -> None:
        self.tenant = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = secrets.token_urlsafe(30)
        self.faults = Faults()
        self.clock = clock
        self.token_lifetime_s = token_lifetime_s
        self.books = Books(clock)
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.requests: list[tuple[str, str]] = []
        self.window = RequestWindow(clock)
        """``(method, path under the API root)`` of the recent API requests, for tests to read."""
        self._lock = threading.RLock()
        self.root = f"/v2.0/{self.tenant}/{ENVIRONMENT}/api/v2.0"
        self.subscriptions = Subscriptions(self, notification_delay_s)
        self.hub_webhook_url: str | None = None
        self.client_state = secrets.token_urlsafe(24)
        self._app = build_app(self._routes(), faults=self.faults, state=self.state, fault_response=fault_response)

    @property
    def app(self) -> Any:
        return self._app

    @property
    def company_id(self) -> str:
        return self.books.company_id

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The connector's settings; with the hub's webhook URL known (:meth:`subscribe`), also the
        ``notification_url`` and ``client_state`` it subscribes with."""
        settings = {"base_url": base_url, "login_url": base_url, "tenant": self.tenant, "environment": ENVIRONMENT,
                    "company_id": self.company_id, "client_id": self.client_id, "client_secret": self.client_secret}
        if self.hub_webhook_url is not None:
            settings |= {"notification_url": self.hub_webhook_url, "client_state": self.client_state}
        return settings

    def subscribe(self, hub_webhook_url: str) -> None:
        """Remember where the hub takes webhooks: the connector creates (and renews) its own webhook
        subscriptions there, as a Business Central integration does, once its settings name it."""
        self.hub_webhook_url = hub_webhook_url

    def state(self) -> dict[str, Any]:
        """Every entity set's records as the API shows them, and the webhook subscriptions."""
        with self._lock:
            tables = {name: [self._shown(name, record) for record in records.values()]
                      for name, records in self.books.tables.items()}
            tables["subscriptions"] = self.subscriptions.listed()
        decoded: dict[str, Any] = msgspec.json.decode(_JSON.encode(tables))
        return decoded

    # -- what a user does in the Business Central client ----------------------------------------------

    def edit(self, entity_set: str, record_id: str, changes: Record) -> None:
        """A user changes a record (its ETag changes, so a client's copy goes stale)."""
        with self._lock:
            self.books.edit(entity_set, record_id, changes)
        self.subscriptions.wake()

    def post_payment_journal(self, code: str = "CASHRCPT") -> int:
        """A user posts the payment journal ``code``: its lines settle their invoices."""
        with self._lock:
            journal = next(j for j in self.books.tables["customerPaymentJournals"].values() if j["code"] == code)
            posted = self.books.post_payment_journal(journal["id"])
        self.subscriptions.wake()
        return posted

    # -- routing -------------------------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        return [
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/v2.0/{tenant}/{environment}/api/v2.0/{path:path}", self._api,
                  methods=["GET", "POST", "PATCH", "DELETE"]),
            Route("/_sandbox/business_central/notify", self._notify_now, methods=["POST"]),
            Route("/_sandbox/business_central/limits", self._limits, methods=["POST"]),
        ]

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if request.path_params["tenant"] != self.tenant:
            return _aad_error(400, "invalid_request", "AADSTS90002: Tenant not found.")
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type",
                              "AADSTS70003: The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
                form.get("client_secret", "").encode(), self.client_secret.encode()):
            return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != SCOPE:
            return _aad_error(400, "invalid_scope", "AADSTS70011: The provided value for the input parameter "
                                                    "'scope' is not valid.")
        token = secrets.token_urlsafe(48)
        with self._lock:
            self.tokens[token] = self.clock() + self.token_lifetime_s
            self.tokens_issued += 1
        return Response(json.dumps({"token_type": "Bearer", "expires_in": self.token_lifetime_s,
                                    "ext_expires_in": self.token_lifetime_s, "access_token": token}),
                        media_type="application/json")

    def _authenticated(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            expiry = self.tokens.get(token)
        return scheme.lower() == "bearer" and expiry is not None and self.clock() < expiry

    async def _api(self, request: Request) -> Response:
        if request.path_params["tenant"] != self.tenant or request.path_params["environment"] != ENVIRONMENT:
            return _response((404, {}, error_body(404, "BadRequest_NotFound", "The environment was not found.")))
        if not self._authenticated(request):
            return _response((401, {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
                              error_body(401, "Authentication_InvalidCredentials",
                                         "The server has rejected the client credentials.")))
        wait = self.window.take()
        if wait is not None:
            return fault_response(429, wait)
        path = request.path_params["path"]
        raw = await request.body()
        headers = {key.lower(): value for key, value in request.headers.items()}
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        mount = request.scope.get("root_path", "")  # served under /business_central by crossledger sandbox
        base = f"{request.url.scheme}://{request.url.netloc}{mount}{self.root}"
        self.requests.append((request.method, path))
        if len(self.requests) > MAX_REQUESTS_KEPT:  # a long-running sandbox keeps only the recent ones
            del self.requests[:MAX_REQUESTS_KEPT // 2]
        if path.startswith("subscriptions"):
            answer = await self.subscriptions.handle(request.method, path, headers, raw)
        elif path == "$batch" and request.method == "POST":
            answer = self._batch(base, headers, raw)
        else:
            answer = self.dispatch(request.method, path, query, headers, raw, base)
        self.subscriptions.wake()
        return _response(answer)

    def dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes,
                 base: str) -> Answer:
        """One request against the company's books, under the sandbox's lock."""
        try:
            body = _body(raw) if method in ("POST", "PATCH") else {}
            with self._lock:
                return self._handle(method, segments(path), query, headers, body, base)
        except BCError as error:
            return error.status, {}, error_body(error.status, error.code, error.message)
        except ODataError as error:
            return 400, {}, error_body(400, "BadRequest", str(error))

    def _handle(self, method: str, parts: list[tuple[str, str | None]], query: dict[str, str],
                headers: dict[str, str], body: Record, base: str) -> Answer:
        if not parts or parts[0][0] != "companies":
            raise BCError(404, "BadRequest_NotFound", "No HTTP resource was found that matches the request URI.")
        if parts[0][1] is None:
            if method != "GET" or len(parts) > 1:
                raise _not_allowed(method)
            return self._collection(base, "companies", [self._company()], query, headers)
        if parts[0][1] != self.books.company_id:
            raise not_found("companies", parts[0][1])
        prefix = f"companies({self.books.company_id})"
        if len(parts) == 1:
            return 200, {}, {"@odata.context": f"{base}/$metadata#companies/$entity", **self._company()}
        entity_set, key = parts[1]
        if entity_set not in ENTITY_SETS:
            raise BCError(404, "BadRequest_NotFound", f"Resource not found for the segment '{entity_set}'.")
        if key is None:
            if len(parts) > 2:
                raise BCError(404, "BadRequest_NotFound", "No HTTP resource was found that matches the request URI.")
            if method == "GET":
                return self._collection(base, f"{prefix}/{entity_set}", list(self.books.tables[entity_set].values()),
                                        query, headers, entity_set)
            if method == "POST":
                journal = self._default_journal() if entity_set == "customerPayments" else None
                record = self.books.create(entity_set, body, journal)
                return self._entity(201, base, f"{prefix}/{entity_set}", entity_set, record, query)
            raise _not_allowed(method)
        record = self.books.get(entity_set, key)
        context = f"{prefix}/{entity_set}"
        if len(parts) == 2:
            if method == "GET":
                return self._entity(200, base, context, entity_set, record, query)
            if method == "PATCH":
                self.books.update(entity_set, record, body, headers.get("if-match"))
                return self._entity(200, base, context, entity_set, record, query)
            if method == "DELETE":
                self.books.delete(entity_set, record, headers.get("if-match"))
                return 204, {}, None
            raise _not_allowed(method)
        return self._navigate(method, parts[2:], query, headers, body, base, entity_set, record,
                              f"{context}({record['id']})")

    def _navigate(self, method: str, parts: list[tuple[str, str | None]], query: dict[str, str],
                  headers: dict[str, str], body: Record, base: str, entity_set: str, header: Record,
                  context: str) -> Answer:
        name, key = parts[0]
        if name.startswith("Microsoft.NAV."):
            if method != "POST" or len(parts) > 1:
                raise _not_allowed(method)
            action = name.removeprefix("Microsoft.NAV.")
            if action == "post" and entity_set in ("salesInvoices", "salesCreditMemos"):
                self.books.post(entity_set, header)
            elif action == "cancel" and entity_set == "salesInvoices":
                self.books.cancel(header)
            else:
                raise BCError(404, "BadRequest_MethodNotFound", f"The action '{name}' is not bound to {entity_set}.")
            return 204, {}, None
        line_set = LINES.get(entity_set)
        if name != line_set or len(parts) > 1:
            raise BCError(404, "BadRequest_NotFound", f"Resource not found for the segment '{name}'.")
        if key is None:
            if method == "GET":
                return self._collection(base, f"{context}/{name}", self.books.lines_of(entity_set, header["id"]),
                                        query, headers, name)
            if method == "POST":
                return self._entity(201, base, f"{context}/{name}", name, self.books.create(name, body, header), query)
            raise _not_allowed(method)
        line = self.books.get(name, key)
        if line.get("documentId", line.get("journalId")) != header["id"]:
            raise not_found(name, key)
        if method == "GET":
            return self._entity(200, base, f"{context}/{name}", name, line, query)
        if method == "PATCH":
            self.books.update(name, line, body, headers.get("if-match"))
            return self._entity(200, base, f"{context}/{name}", name, line, query)
        if method == "DELETE":
            self.books.delete(name, line, headers.get("if-match"))
            return 204, {}, None
        raise _not_allowed(method)

    def _default_journal(self) -> Record | None:
        return next((journal for journal in self.books.tables["customerPaymentJournals"].values()
                     if journal["code"] == DEFAULT_PAYMENT_JOURNAL), None)

    # -- answers -------------------------------------------------------------------------------------

    def _company(self) -> Record:
        return {"id": self.books.company_id, "systemVersion": "24.0.16410.18056", "name": "CRONUS USA, Inc.",
                "displayName": "CRONUS USA, Inc.", "businessProfileId": ""}

    def _shown(self, entity_set: str, record: Record, expand: frozenset[str] = frozenset()) -> Record:
        shown = {"@odata.etag": self.books.etag_of(record), **record}
        line_set = LINES.get(entity_set)
        if line_set is not None and line_set in expand:
            shown[line_set] = [self._shown(line_set, line) for line in self.books.lines_of(entity_set, record["id"])]
        return shown

    def _entity(self, status: int, base: str, context: str, entity_set: str, record: Record,
                query: dict[str, str]) -> Answer:
        shown = self._shown(entity_set, record, _expanded(entity_set, query))
        return (status, {"ETag": shown["@odata.etag"]},
                {"@odata.context": f"{base}/$metadata#{context}/$entity", **shown})

    def _collection(self, base: str, context: str, records: list[Record], query: dict[str, str],
                    headers: dict[str, str], entity_set: str = "companies") -> Answer:
        if "$filter" in query:
            keep = parse_filter(query["$filter"])
            records = [record for record in records if keep(record)]
        for name, descending in reversed(_order(query.get("$orderby"))):
            records = sorted(records, key=lambda r: (r.get(name) is None, r.get(name)), reverse=descending)
        skip, top = _count(query, "$skip") or 0, _count(query, "$top")
        page_size = _page_size(headers.get("prefer", ""))
        window = records[skip:] if top is None else records[skip:skip + top]
        body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#{context}"}
        if len(window) > page_size:
            window = window[:page_size]
            following = {**query, "$skip": str(skip + page_size)}
            if top is not None:
                following["$top"] = str(top - page_size)
            link = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in following.items())
            body["@odata.nextLink"] = f"{base}/{context}?{link}"
        expand = _expanded(entity_set, query)
        body["value"] = [self._shown(entity_set, record, expand) if entity_set != "companies" else record
                         for record in window]
        return 200, {}, body

    # -- $batch --------------------------------------------------------------------------------------

    def _batch(self, base: str, headers: dict[str, str], raw: bytes) -> Answer:
        try:
            requests = _body(raw).get("requests")
            if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
                raise invalid("The batch request must have a 'requests' array.")
            if len(requests) > MAX_BATCH:
                raise invalid(f"The batch request contains {len(requests)} operations; at most {MAX_BATCH} are "
                              "allowed.")
        except BCError as error:
            return error.status, {}, error_body(error.status, error.code, error.message)
        atomic = headers.get("isolation", "").lower() == "snapshot"
        with self._lock:
            if not atomic:
                return 200, {}, {"responses": [self._batched(base, request) for request in requests]}
            answers: list[dict[str, Any]] = []
            try:
                with self.books.transaction():
                    for request in requests:
                        answers.append(self._batched(base, request))
                        if answers[-1]["status"] >= 400:
                            raise _RolledBack
            except _RolledBack:
                failed = answers[-1]
                return 200, {}, {"responses": [
                    *({"id": a["id"], "status": 424, "headers": {}, "body": error_body(
                        424, "BadRequest", "The operation was rolled back: another in the batch failed.")}
                      for a in answers[:-1]),
                    failed,
                    *({"id": r.get("id"), "status": 424, "headers": {}, "body": error_body(
                        424, "BadRequest", "The operation was not run: another in the batch failed.")}
                      for r in requests[len(answers):])]}
            return 200, {}, {"responses": answers}

    def _batched(self, base: str, request: Record) -> dict[str, Any]:
        method = str(request.get("method", "GET")).upper()
        url = urlsplit(str(request.get("url", "")))
        path = url.path
        if path.startswith(base) or path.startswith(self.root):
            path = path.split(self.root, 1)[1]
        headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
        body = request.get("body")
        raw = b"" if body is None else _JSON.encode(body)
        answer_headers: dict[str, str] = {}
        if path.lstrip("/").startswith(("subscriptions", "$batch")):
            status, answer = 400, error_body(400, "BadRequest", "This request cannot be part of a batch.")
        else:
            status, answer_headers, answer = self.dispatch(method, path.lstrip("/"), dict(parse_qsl(url.query)),
                                                           headers, raw, base)
        decoded = None if answer is None else msgspec.json.decode(_JSON.encode(answer))
        return {"id": request.get("id"), "status": status, "headers": answer_headers, "body": decoded}

    async def _notify_now(self, request: Request) -> Response:
        """Control: send what changed now, not after the delay; ``{"collection": true}`` makes every
        subscription with changes get one ``collection`` notification instead (as when over 1,000
        changes gathered)."""
        spec = json.loads(await request.body() or b"{}")
        sent = self.subscriptions.flush(collection=bool(spec.get("collection")))
        return Response(json.dumps({"notifications": sent}), media_type="application/json")


    async def _limits(self, request: Request) -> Response:
        """Control: ``{"per_window": n, "window_s": s}``, the user's requests in a sliding window
        (a new, empty window)."""
        spec = json.loads(await request.body() or b"{}")
        self.window = RequestWindow(self.clock, int(spec.get("per_window", 6000)), float(spec.get("window_s", 300)))
        return Response(json.dumps({"per_window": self.window.limit, "window_s": self.window.window_s}),
                        media_type="application/json")


class _RolledBack(Exception):
    """A request of an atomic batch failed: undo the others."""


def _aad_error(status: int, error: str, description: str) -> Response:
    return Response(json.dumps({"error": error, "error_description": description, "error_codes": [
        int(description[6:description.index(":")])], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}),
                    status_code=status, media_type="application/json")


def _not_allowed(method: str) -> BCError:
    return BCError(405, "BadRequest_MethodNotAllowed", f"'{method}' requests for this resource are not supported.")


def _body(raw: bytes) -> Record:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _expanded(entity_set: str, query: dict[str, str]) -> frozenset[str]:
    wanted = frozenset(filter(None, (part.strip() for part in query.get("$expand", "").split(","))))
    allowed = {LINES[entity_set]} if entity_set in LINES else set()
    unknown = wanted - allowed
    if unknown:
        raise ODataError(f"Could not find a property named '{sorted(unknown)[0]}' on type "
                         f"'Microsoft.NAV.{entity_set}'.")
    return wanted


def _order(text: str | None) -> list[tuple[str, bool]]:
    order = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        field, _, direction = part.partition(" ")
        if direction.strip() not in ("", "asc", "desc"):
            raise ODataError(f"Invalid $orderby '{text}'")
        order.append((field, direction.strip() == "desc"))
    return order


def _count(query: dict[str, str], name: str) -> int | None:
    if name not in query:
        return None
    value = query[name]
    if not value.isdigit():
        raise ODataError(f"Invalid value '{value}' for {name}: a non-negative integer is expected.")
    return int(value)


def _page_size(prefer: str) -> int:
    match = _MAX_PAGE.search(prefer)
    return min(int(match[1]), MAX_PAGE_SIZE) if match and int(match[1]) > 0 else MAX_PAGE_SIZE


