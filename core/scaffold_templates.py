"""The files ``crossledger new-connector NAME`` writes, as :class:`string.Template` sources.

Placeholders: ``${name}`` (the connector name, ``acme_crm``), ``${Class}`` (``AcmeCrm``),
``${Header}`` (``Acme-Crm``, for HTTP header names), ``${kind}`` / ``${KIND}`` (``crm`` / ``CRM``),
``${package}`` (``crossledger_acme_crm``), ``${dist}`` (``crossledger-acme-crm``) and
``${requirement}`` (the crossledger it was made with). Kept as Python strings rather than data files,
so they install with the ``crossledger.core`` package and need no package-data.

The generated connector speaks to a made-up but typical REST system (described in its docstring),
and its sandbox emulates that system: the package passes the contract suite as generated, and each
part the author must change for their real system carries a TODO.
"""

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "${dist}"
dynamic = ["version"]
description = "${Class} as a crossledger connector."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["${requirement}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# crossledger finds the plugin through this entry-point group.
[project.entry-points.crossledger]
${name} = "${package}.plugin"

[tool.setuptools.dynamic]
version = { attr = "${package}.__version__" }

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 120
target-version = "py311"
src = ["src"]

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]
'''

README = '''\
# ${dist}

A crossledger connector for ${Class} (a ${kind} system), made by `crossledger new-connector ${name}`.

As generated it talks to a typical REST system that its own sandbox emulates, and it passes
crossledger's connector contract suite. Make it talk to ${Class}, in this order:

1. `src/${package}/connector.py`: the settings (`${Class}Settings`), the API paths, the mapping
   between ${Class}'s customer and the canonical `Customer` (`customer_body`, `customer_from`),
   the webhook signature scheme (`sign`, `verify_webhook`), the event types `to_canonical`
   understands, and the error shape `classify` reads. Every place that assumes the made-up system
   says `TODO`.
2. `src/${package}/sandbox.py`: make the emulator answer exactly as ${Class} does, from its API
   documentation: paths, status codes, error bodies, id formats, pagination, idempotency,
   rate-limit signals and webhook signing. Tests and demos run against it, so it must be faithful.
3. `tests/fixtures/`: replace the webhook sample with ${Class}'s documented example payloads, and
   add its documented signature test vectors to the kit in `tests/test_contract.py`.
4. `src/${package}/plugin.py`: the routes (which canonical events reach ${name}, from where).

Work on it installed in the environment that has crossledger:

    pip install -e .
    python -m pytest tests          # the contract suite, against the sandbox
    crossledger plugins             # lists ${name} with its version and capabilities

Then configure it in the hub under `[connectors.${name}]` (the keys of `${Class}Settings`) and
register `https://<hub>/webhooks/${name}` as the webhook URL in ${Class}.
'''

INIT = '''\
"""${dist}: ${Class} as a crossledger connector.

- :mod:`.plugin`: the hooks crossledger finds through the ``crossledger`` entry point.
- :mod:`.connector`: :class:`~.connector.${Class}Connector` and its settings.
- :mod:`.sandbox`: :class:`~.sandbox.${Class}Sandbox`, a local emulator of the system's API.
"""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""The crossledger hooks of this plugin, found through the entry point
``[project.entry-points.crossledger] ${name} = "${package}.plugin"``."""

from collections.abc import Iterable

from crossledger.plugins import Connector, Route, hookimpl

from ${package}.connector import SYSTEM, ${Class}Connector


@hookimpl
def crossledger_connectors() -> Iterable[Connector]:
    return [${Class}Connector()]


@hookimpl
def crossledger_routes() -> Iterable[Route]:
    """Default routes; the hub's ``[routes]`` configuration replaces them per event type.

    TODO: which canonical events should reach ${name}, and from which systems.
    """
    return [Route("customer.upserted", (SYSTEM,))]
'''

CONNECTOR = '''\
"""The ${Class} connector: ${Class}'s customers <-> canonical customers.

TODO: this speaks to a typical REST system, which ``sandbox.py`` emulates. Change what differs in
${Class}'s API (see README.md). The system as written here:

- Auth: ``Authorization: Bearer <api_key>``.
- ``PUT /v1/customers/external/{external_id}`` creates (201) or updates (200) the customer the hub
  keys by ``external_key(canonical id)``. An ``Idempotency-Key`` makes a repeat replay the first
  answer; the same key with another body is a 422.
- ``GET /v1/customers/external/{external_id}`` reads it back (the probe after a timeout);
  ``GET /v1/customers/{id}`` reads by the system's own id.
- ``GET /v1/customers?limit=N&cursor=C`` answers ``{"data": [...], "next_cursor": "..." | null}``.
- Webhooks POST ``{"id", "type", "created", "data": <customer>}`` with ``X-${Header}-Timestamp``
  (Unix seconds) and ``X-${Header}-Signature``, the hex HMAC-SHA256 of ``"{timestamp}." + body``
  keyed with the webhook secret.
- Errors are ``{"error": {"code", "message"}}``; a 429 says ``Retry-After``.
"""

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import msgspec
from crossledger.canonical import Address, Customer, Envelope, external_key, from_external_key
from crossledger.plugins import (
    BaseConnector,
    Capability,
    Category,
    Change,
    ConnectorError,
    Context,
    InboundEvent,
    Operation,
    Outcome,
    PayloadError,
    Refs,
    Sandbox,
    SignatureError,
    SystemKind,
    exception_reason,
)
from crossledger.plugins.http import classify_http, error_code, status_line
from crossledger.plugins.types import Headers
from pydantic import BaseModel, ConfigDict, SecretStr

from ${package} import __version__

SYSTEM = "${name}"
CUSTOMERS = "/v1/customers"
SIGNATURE_HEADER = "X-${Header}-Signature"
TIMESTAMP_HEADER = "X-${Header}-Timestamp"
MAX_PAGE = 100


class ${Class}Settings(BaseModel):
    """``[connectors.${name}]``. ``previous_webhook_secret`` keeps the old secret valid while a new
    one rolls out. TODO: ${Class}'s own credentials and options."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key: SecretStr
    webhook_secret: SecretStr
    previous_webhook_secret: SecretStr | None = None
    tolerance_s: int = 300
    timeout_s: float = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The webhook signature of ``body`` sent at ``timestamp``. TODO: ${Class}'s scheme."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers a webhook delivery carries (the sandbox sends them, the tests forge them)."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


class _Customer(msgspec.Struct, frozen=True):
    """The fields of ${Class}'s customer the mapping reads."""

    id: str
    name: str
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    address: Address | None = None  # TODO: the system's address shape, if not the canonical one


class _Event(msgspec.Struct, frozen=True):
    id: str
    type: str
    created: int
    data: dict[str, Any]


def customer_body(customer: Customer) -> dict[str, Any]:
    """The request body for a canonical customer; unset fields are left out, never cleared."""
    body = {"name": customer.name, "email": customer.email, "phone": customer.phone, "website": customer.website,
            "address": msgspec.to_builtins(customer.address) if customer.address else None}
    return {field: value for field, value in body.items() if value is not None}


def customer_from(customer: _Customer, refs: Refs) -> Customer:
    """A customer as a canonical Customer; one the hub created is recognised by its external id."""
    known = from_external_key(customer.external_id) if customer.external_id else None
    return Customer(id=known or refs.canonical_id("customer", SYSTEM, customer.id), name=customer.name,
                    email=customer.email, phone=customer.phone, website=customer.website, address=customer.address)


class ${Class}Connector(BaseConnector):
    """${Class} as a ${kind} system: webhooks in, customer upserts out, and a local sandbox."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.${KIND}
    version: ClassVar[str] = __version__
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX}
    )
    settings_model: ClassVar[type[BaseModel]] = ${Class}Settings

    # -- inbound -------------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Check the signature with the current (or, during a roll, the previous) secret, then the age."""
        settings = _settings(ctx)
        given, stamp = _header(headers, SIGNATURE_HEADER), _header(headers, TIMESTAMP_HEADER)
        if not (stamp.isascii() and stamp.isdigit()):  # isdigit alone passes "²", which int() refuses
            raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds: {stamp!r}")
        secrets = [s.get_secret_value() for s in (settings.webhook_secret, settings.previous_webhook_secret) if s]
        if not any(hmac.compare_digest(sign(secret, int(stamp), body).encode(), given.encode("utf-8", "replace"))
                   for secret in secrets):
            raise SignatureError("no signature matches")
        if int(stamp) < ctx.clock() - settings.tolerance_s:
            raise SignatureError(f"signed {ctx.clock() - int(stamp):.0f}s ago, more than {settings.tolerance_s}s")

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """One delivery is one event. TODO: some systems batch several events in one delivery."""
        try:
            event = msgspec.json.decode(body, type=_Event)
        except ValueError as error:  # not JSON, not UTF-8, or not an event
            raise PayloadError(f"body is not a ${Class} event: {error}") from error
        occurred_at = datetime.fromtimestamp(event.created, UTC)
        return [InboundEvent(source_event_id=event.id, type=event.type, occurred_at=occurred_at,
                             payload=msgspec.to_builtins(event))]

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """TODO: every event type of ${Class} the hub should hear about."""
        if event.type in ("customer.created", "customer.updated"):
            try:
                customer = msgspec.convert(event.payload["data"], _Customer)
            except msgspec.ValidationError as error:
                raise ConnectorError(Category.DATA,
                                     f"${name} customer is malformed: {exception_reason(error)}") from error
            return [Change(type="customer.upserted", entity=customer_from(customer, refs))]
        return []

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        _check_type(entity_type)
        return _json(self._request(ctx, "GET", f"{CUSTOMERS}/{quote(external_id, safe='')}"))

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every customer, following ``next_cursor``."""
        _check_type(entity_type)
        params = {"limit": str(min(page_size or MAX_PAGE, MAX_PAGE))}
        while True:
            page = _json(self._request(ctx, "GET", CUSTOMERS, params=params))
            yield from page["data"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # -- outbound ------------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        """TODO: every canonical event ${name} should receive (see plugin.py for the routes)."""
        if event.type != "customer.upserted" or not isinstance(event.data, Customer):
            return []
        path = f"{CUSTOMERS}/external/{quote(external_key(event.data.id), safe='')}"
        return [Operation(name="customer.upsert", entity_type="customer", canonical_id=event.data.id,
                          payload={"method": "PUT", "path": path, "body": customer_body(event.data)})]

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        response = self._request(ctx, op.payload["method"], op.payload["path"], body=op.payload["body"],
                                 headers={"Idempotency-Key": idempotency_key})
        record = _json(response)
        return Outcome(external_id=str(record["id"]), created=response.status_code == 201, record=record)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """After a timeout: the record exists *and* holds what the write sent, or the write is lost."""
        response = self._request(ctx, "GET", op.payload["path"], missing_ok=True)
        if response.status_code == 404:
            return None
        record = _json(response)
        if any(record.get(field) != value for field, value in op.payload["body"].items()):
            return None
        return Outcome(external_id=str(record["id"]), record=record)

    # -- errors and plumbing -------------------------------------------------------------------------

    def classify(self, error: Exception) -> ConnectorError:
        """The shared HTTP taxonomy, with the system's own error code (not its message: an error
        message may quote the values refused, and a reason reaches logs, dead letters and Sentry).
        TODO: ${Class}'s error shape, and any status it uses in its own way."""
        classified = classify_http(error, SYSTEM)
        if not isinstance(error, httpx.HTTPStatusError):
            return classified
        response = error.response
        try:
            message = f"{SYSTEM}: {status_line(response)}: {error_code(response.json()['error']['code'])}"
        except (ValueError, KeyError, TypeError):
            message = f"{SYSTEM}: {status_line(response)}"
        return ConnectorError(classified.category, message, retry_after=classified.retry_after,
                              status=response.status_code)

    def sandbox(self) -> Sandbox:
        """A fresh emulator. Imported here so workers never load Starlette."""
        from ${package}.sandbox import ${Class}Sandbox

        return ${Class}Sandbox()

    def _request(self, ctx: Context, method: str, path: str, *, params: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 missing_ok: bool = False) -> httpx.Response:
        """One authenticated call; any failure leaves classified as a :class:`ConnectorError`."""
        settings = _settings(ctx)
        auth = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        try:
            response = ctx.http.request(method, settings.base_url.rstrip("/") + path, params=params, json=body,
                                        headers={**auth, **(headers or {})}, timeout=settings.timeout_s)
            if not (missing_ok and response.status_code == 404):
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise self.classify(error) from error
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        decoded = response.json()
    except ValueError as error:
        raise ConnectorError(Category.DATA, f"${name} answered {response.request.url.path} with non-JSON") from error
    if not isinstance(decoded, dict):
        raise ConnectorError(Category.DATA, f"${name} answered {response.request.url.path} with a non-object")
    return decoded


def _header(headers: Headers, name: str) -> str:
    value = next((value for key, value in headers.items() if key.lower() == name.lower()), None)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def _check_type(entity_type: str) -> None:
    if entity_type != "customer":
        raise ConnectorError(Category.DATA, f"${name} lists customers only, not {entity_type!r}")


def _settings(ctx: Context) -> ${Class}Settings:
    return ctx.settings_as(${Class}Settings)
'''

SANDBOX = '''\
"""A local emulator of ${Class}'s API and webhooks: tests and demos run against it, no credentials.

TODO: make it answer exactly as ${Class} does (paths, status codes, error bodies, id formats,
pagination, idempotency, rate-limit signals, webhook signing), from its API documentation. As
generated it emulates the system described in ``connector.py``. Besides the API it serves
``/_sandbox/state`` and ``/_sandbox/faults`` (:func:`crossledger.plugins.sandbox.build_app`).
"""

import copy
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from crossledger.plugins.sandbox import Faults, WebhookSender, build_app
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ${package}.connector import CUSTOMERS, signature_headers

Record = dict[str, Any]
Handler = Callable[[Request, bytes], tuple[int, Record]]
FIELDS = ("name", "email", "phone", "website", "address")
MAX_LIMIT = 100


class ApiError(Exception):
    """A refusal in the system's error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def response(self) -> Response:
        return JSONResponse({"error": {"code": self.code, "message": self.message}}, self.status, headers=self.headers)


def fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault as the system would answer it (a 429 with Retry-After)."""
    headers = {"Retry-After": str(retry_after)} if status == 429 and retry_after is not None else None
    code = {429: "rate_limited", 503: "unavailable"}.get(status, "internal_error")
    return ApiError(status, code, f"HTTP {status} injected by the sandbox", headers).response()


class ${Class}Sandbox:
    """The emulator as the hub uses it: an ASGI app plus the Sandbox protocol; thread-safe."""

    def __init__(self) -> None:
        self.api_key = f"key_{secrets.token_hex(16)}"
        self.webhook_secret = f"whsec_{secrets.token_hex(16)}"
        self.faults = Faults()
        self._lock = threading.Lock()
        self._customers: dict[str, Record] = {}  # by id, in creation order
        self._replies: dict[str, tuple[str, int, Record]] = {}  # idempotency key -> (request, status, body)
        self._sender = WebhookSender()
        self._target: str | None = None
        self._app = build_app(self._routes(), faults=self.faults, state=self.state, fault_response=fault_response)

    @property
    def app(self) -> Any:
        return self._app

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "api_key": self.api_key, "webhook_secret": self.webhook_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Register the hub's webhook URL, as an operator would in the system's settings."""
        self._target = hub_webhook_url

    def wait_for_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until every webhook sent so far was delivered or abandoned; False on timeout."""
        return self._sender.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"customers": copy.deepcopy(list(self._customers.values())), "webhooks": self._sender.stats()}

    # -- HTTP ----------------------------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        return [
            self._route(CUSTOMERS, "GET", self._list),
            self._route(CUSTOMERS + "/{id}", "GET", self._read),
            self._route(CUSTOMERS + "/external/{external_id}", "GET", self._read_external),
            self._route(CUSTOMERS + "/external/{external_id}", "PUT", self._upsert),
        ]

    def _route(self, path: str, method: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                self._authenticate(request)
                with self._lock:
                    return self._once(request, body, handler)
            except ApiError as error:
                return error.response()

        return Route(path, endpoint, methods=[method])

    def _authenticate(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip(), self.api_key):
            raise ApiError(401, "unauthorized", "missing or invalid API key")

    def _once(self, request: Request, body: bytes, handler: Handler) -> Response:
        """Run the handler, or replay the first answer given to the request's Idempotency-Key."""
        key = request.headers.get("idempotency-key")
        if key is None or request.method == "GET":
            status, payload = handler(request, body)
            return JSONResponse(payload, status)
        fingerprint = f"{request.method} {request.url.path} {hashlib.sha256(body).hexdigest()}"
        if key in self._replies:
            first, status, payload = self._replies[key]
            if first != fingerprint:
                raise ApiError(422, "idempotency_key_reused", f"Idempotency-Key {key} was used with another request")
            return JSONResponse(payload, status, headers={"Idempotent-Replayed": "true"})
        status, payload = handler(request, body)
        self._replies[key] = (fingerprint, status, payload)
        return JSONResponse(payload, status)

    # handlers: called with the lock held; they answer (status, body)

    def _list(self, request: Request, body: bytes) -> tuple[int, Record]:
        try:
            limit = int(request.query_params.get("limit", "10"))
        except ValueError:
            raise ApiError(400, "invalid_request", "limit must be an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, "invalid_request", f"limit must be between 1 and {MAX_LIMIT}")
        ids = list(self._customers)
        cursor = request.query_params.get("cursor")
        if cursor is not None and cursor not in self._customers:
            raise ApiError(400, "invalid_request", f"unknown cursor {cursor}")
        start = 0 if cursor is None else ids.index(cursor) + 1
        page = ids[start:start + limit]
        next_cursor = page[-1] if start + limit < len(ids) else None
        return 200, {"data": [copy.deepcopy(self._customers[i]) for i in page], "next_cursor": next_cursor}

    def _read(self, request: Request, body: bytes) -> tuple[int, Record]:
        found = self._customers.get(request.path_params["id"])
        if found is None:
            raise ApiError(404, "not_found", f"no customer {request.path_params['id']}")
        return 200, copy.deepcopy(found)

    def _read_external(self, request: Request, body: bytes) -> tuple[int, Record]:
        found = self._by_external_id(request.path_params["external_id"])
        if found is None:
            raise ApiError(404, "not_found", f"no customer with external id {request.path_params['external_id']}")
        return 200, copy.deepcopy(found)

    def _upsert(self, request: Request, body: bytes) -> tuple[int, Record]:
        fields = _fields(body)
        external_id = request.path_params["external_id"]
        found, now = self._by_external_id(external_id), int(time.time())
        if found is None:
            if not fields.get("name"):
                raise ApiError(400, "invalid_request", "name is required to create a customer")
            found = {"id": f"cus_{secrets.token_hex(8)}", "external_id": external_id, **dict.fromkeys(FIELDS),
                     **fields, "created": now, "updated": now}
            self._customers[found["id"]] = found
            self._emit("customer.created", found)
            return 201, copy.deepcopy(found)
        changed = {field: value for field, value in fields.items() if found[field] != value}
        if changed:
            found.update(changed, updated=now)
            self._emit("customer.updated", found)
        return 200, copy.deepcopy(found)

    def _by_external_id(self, external_id: str) -> Record | None:
        return next((c for c in self._customers.values() if c["external_id"] == external_id), None)

    # -- webhooks ------------------------------------------------------------------------------------

    def _emit(self, event_type: str, customer: Record) -> None:
        """POST the event to the registered URL, signed anew at every attempt, retried until 2xx."""
        if self._target is None:
            return
        event = {"id": f"evt_{secrets.token_hex(8)}", "type": event_type, "created": int(time.time()),
                 "data": copy.deepcopy(customer)}
        self._sender.send(self._target, json.dumps(event).encode(), self._signed)

    def _signed(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", **signature_headers(self.webhook_secret, int(time.time()), body)}


def _fields(body: bytes) -> Record:
    """The customer fields of a write; anything else is refused, as real APIs refuse it."""
    try:
        fields = json.loads(body)
    except ValueError:
        raise ApiError(400, "invalid_request", "the body must be JSON") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown fields: {', '.join(unknown)}")
    return fields
'''

TEST_CONTRACT = '''\
"""The crossledger connector contract, run against the ${Class} connector and its own sandbox.

Run with ``python -m pytest tests`` once the package is installed next to crossledger.
"""

from pathlib import Path
from typing import Any

from crossledger.testing import ConnectorContract, ContractKit

from ${package}.connector import ${Class}Connector, signature_headers

FIXTURES = Path(__file__).parent / "fixtures"


class ${Class}Kit(ContractKit):
    """What the suite cannot know about ${Class}. TODO: add ${Class}'s documented signature test
    vectors as ``signature_vectors`` (crossledger.testing.SignatureVector)."""

    connector = ${Class}Connector()
    record_state_key = "customers"

    def sign(self, body: bytes, secret: str, timestamp: float) -> dict[str, str]:
        return signature_headers(secret, int(timestamp), body)

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        return {**settings, "webhook_secret": current, "previous_webhook_secret": previous}

    def webhook_samples(self) -> list[bytes]:
        return [path.read_bytes() for path in sorted(FIXTURES.glob("webhook_*.json"))]


class Test${Class}Contract(ConnectorContract):
    kit = ${Class}Kit()
'''

WEBHOOK_SAMPLE = '''\
{
  "id": "evt_5f1c2a9b0d3e4f67",
  "type": "customer.created",
  "created": 1767225600,
  "data": {
    "id": "cus_8c4b1e2f9a7d3c65",
    "external_id": null,
    "name": "Sample Customer Ltd",
    "email": "billing@sample.example",
    "phone": "+44 20 7946 0000",
    "website": "https://sample.example",
    "address": {"line1": "1 Sample Street", "line2": null, "city": "London", "state": null,
                "postal_code": "EC1A 1AA", "country": "GB"},
    "created": 1767225600,
    "updated": 1767225600
  }
}
'''

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "src/${package}/__init__.py": INIT,
    "src/${package}/plugin.py": PLUGIN,
    "src/${package}/connector.py": CONNECTOR,
    "src/${package}/sandbox.py": SANDBOX,
    "tests/test_contract.py": TEST_CONTRACT,
    "tests/fixtures/webhook_customer_created.json": WEBHOOK_SAMPLE,
}
"""Path in the new package -> content; both are templates."""
