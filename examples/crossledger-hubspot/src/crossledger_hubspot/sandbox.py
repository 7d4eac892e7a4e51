"""A local emulator of HubSpot's CRM v3 companies API and its webhooks, faithful on the wire.

- **Auth**: ``Authorization: Bearer <private app token>``; anything else is a 401.
- **Records**: ``{"id", "properties", "createdAt", "updatedAt", "archived"}``; ids are numeric
  strings, every property value a string, times ISO 8601 UTC. A read returns HubSpot's default
  company properties plus those named in ``properties=a,b``; unknown or read-only properties in a
  write are refused the way HubSpot refuses them.
- **Writes**: ``POST /crm/v3/objects/companies`` (201), ``PATCH .../{id}`` (200),
  ``DELETE .../{id}`` (204, archives), and ``POST .../batch/upsert`` keyed by a unique-value
  property (``idProperty``; ``crossledger_id`` is defined as one), answering each result with
  ``"new"``. A unique value held by another company is a 409 ``CONFLICT``.
- **Reads**: ``GET .../{id}`` (by ``hs_object_id``, or any unique property with ``idProperty``;
  ``archived=true`` reads archived companies), and ``GET /crm/v3/objects/companies`` paged with
  ``limit`` (at most 100) and the opaque cursor ``after`` from ``paging.next.after``.
- **Errors**: ``{"status": "error", "message", "correlationId", "category"}``; a 429 is
  ``errorType: RATE_LIMIT`` with the ``X-HubSpot-RateLimit-*`` headers and no Retry-After.
- **Webhooks**: once :meth:`HubSpotSandbox.subscribe` gave a target URL, every write POSTs a JSON
  array of events (``company.creation``, one ``company.propertyChange`` per changed property,
  ``company.deletion``) signed with the app's client secret (``X-HubSpot-Signature-v3``), retried
  until the receiver answers 2xx.

A new portal holds HubSpot's sample company (:data:`SAMPLE_COMPANY`), as a real new portal does;
the webhook samples of this package's tests are about it. The sandbox serves ``/_sandbox/state``
and ``/_sandbox/faults`` like every crossledger sandbox.
"""

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from crossledger.plugins.emulator import Faults, WebhookSender, build_app
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from crossledger_hubspot.signature import signature_headers

Record = dict[str, Any]
PREFIX = "/crm/v3/objects/companies"
DEFAULT_PROPERTIES = ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name")
READ_ONLY = frozenset({"createdate", "hs_lastmodifieddate", "hs_object_id"})
WRITABLE = frozenset({"name", "domain", "website", "phone", "address", "address2", "city", "state", "zip",
                      "country", "industry", "description", "crossledger_id"})
UNIQUE = frozenset({"hs_object_id", "crossledger_id"})
MAX_LIMIT = 100
RATE_WINDOW_MAX = 100
SAMPLE_COMPANY = {"hs_object_id": "10444744759", "name": "HubSpot", "domain": "hubspot.com",
                  "phone": "+1 888-482-7768", "address": "2 Canal Park", "city": "Cambridge", "state": "MA",
                  "zip": "02141", "country": "United States"}


class HubSpotError(Exception):
    """A refusal, rendered in HubSpot's error shape."""

    def __init__(self, status: int, category: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.category, self.message = status, category, message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response:
        body = {"status": "error", "message": self.message, "correlationId": str(uuid.uuid4()),
                **({"category": self.category} if self.category else {}), **self.extra}
        return JSONResponse(body, self.status, headers=self.headers)


def fault_response(status: int, retry_after: int | None) -> Response:
    """Injected faults as HubSpot answers them. A 429 says which limit was hit; the rolling window
    the ``X-HubSpot-RateLimit-*`` headers describe is ``retry_after`` seconds in this sandbox."""
    if status == 429:
        headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": str((retry_after or 10) * 1000),
                   "X-HubSpot-RateLimit-Max": str(RATE_WINDOW_MAX), "X-HubSpot-RateLimit-Remaining": "0"}
        return HubSpotError(429, "", "You have reached your ten_secondly_rolling limit.", headers,
                            errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING").response()
    if status == 503:
        return HubSpotError(503, "SERVICE_UNAVAILABLE", "Service unavailable (injected by the sandbox)").response()
    return HubSpotError(status, "INTERNAL_ERROR", "internal error (injected by the sandbox)").response()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{position}\n".encode()).decode()


def _position(after: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(after.encode()).decode())
    except ValueError:
        raise HubSpotError(400, "VALIDATION_ERROR", f"Invalid after cursor: {after}") from None


def _invalid_properties(errors: list[Record]) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(errors)}")


@dataclass
class _Company:
    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str
    archived_at: str | None = None

    def render(self, wanted: tuple[str, ...]) -> Record:
        record: Record = {"id": self.id, "properties": {name: self.properties.get(name) for name in wanted},
                          "createdAt": self.created_at, "updatedAt": self.updated_at,
                          "archived": self.archived_at is not None}
        if self.archived_at:
            record["archivedAt"] = self.archived_at
        return record


class _Portal:
    """One HubSpot account's companies. Not thread-safe: the sandbox calls it under its lock."""

    def __init__(self, emit: Callable[[list[Record]], None]) -> None:
        now = _now_iso()
        sample = _Company(SAMPLE_COMPANY["hs_object_id"], {**SAMPLE_COMPANY, "createdate": now,
                                                           "hs_lastmodifieddate": now}, now, now)
        self.companies: dict[str, _Company] = {sample.id: sample}  # insertion order is creation order
        self._next_id = 18_000_000_000 + secrets.randbelow(10**9)
        self._emit = emit

    def find(self, key: str, id_property: str, *, archived: bool = False) -> _Company | None:
        if id_property not in UNIQUE:
            raise HubSpotError(400, "VALIDATION_ERROR", f"{id_property} is not a unique value property")
        found = (c for c in self.companies.values() if c.properties.get(id_property) == key)
        return next((c for c in found if (c.archived_at is not None) == archived), None)

    def get(self, key: str, id_property: str, *, archived: bool = False) -> _Company:
        company = self.find(key, id_property, archived=archived)
        if company is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
        return company

    def create(self, properties: dict[str, str]) -> _Company:
        self._check_unique(properties, None)
        self._next_id += 1
        now = _now_iso()
        company = _Company(str(self._next_id), {}, now, now)
        company.properties = {**properties, "hs_object_id": company.id, "createdate": now, "hs_lastmodifieddate": now}
        self.companies[company.id] = company
        self._emit([self._event(company, "company.creation", changeFlag="CREATED")])
        return company

    def update(self, company: _Company, properties: dict[str, str]) -> _Company:
        self._check_unique(properties, company)
        changed = {name: value for name, value in properties.items() if company.properties.get(name) != value}
        if changed:
            company.updated_at = company.properties["hs_lastmodifieddate"] = _now_iso()
            company.properties.update(changed)
            self._emit([self._event(company, "company.propertyChange", propertyName=name, propertyValue=value)
                        for name, value in changed.items()])
        return company

    def archive(self, company: _Company) -> None:
        company.archived_at = _now_iso()
        self._emit([self._event(company, "company.deletion", changeFlag="DELETED")])

    def _check_unique(self, properties: dict[str, str], company: _Company | None) -> None:
        for name in UNIQUE & properties.keys():
            holder = self.find(properties[name], name)
            if holder is not None and holder is not company:
                raise HubSpotError(409, "CONFLICT", f"A company with {name}={properties[name]} already exists. "
                                                    f"Existing ID: {holder.id}")

    @staticmethod
    def _event(company: _Company, subscription_type: str, **fields: Any) -> Record:
        return {"objectId": int(company.id), "subscriptionType": subscription_type, "changeSource": "INTEGRATION",
                "occurredAt": int(time.time() * 1000), **fields}


def _properties(raw: Any) -> dict[str, str]:
    """A write's ``properties`` as HubSpot stores them: strings, every name known and writable."""
    if not isinstance(raw, dict):
        raise HubSpotError(400, "VALIDATION_ERROR", "Invalid input JSON: properties must be an object")
    errors = []
    for name in raw:
        if name in READ_ONLY:
            errors.append({"isValid": False, "message": f'Property "{name}" is read-only', "error": "READ_ONLY_VALUE",
                           "name": name})
        elif name not in WRITABLE:
            errors.append({"isValid": False, "message": f'Property "{name}" does not exist',
                           "error": "PROPERTY_DOESNT_EXIST", "name": name})
    if errors:
        raise _invalid_properties(errors)
    return {name: "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in raw.items()}


class HubSpotSandbox:
    """The HubSpot emulator as the hub uses it: an ASGI app plus the Sandbox protocol."""

    def __init__(self) -> None:
        self.access_token = f"pat-na1-{uuid.uuid4()}"
        self.client_secret = str(uuid.uuid4())
        self.portal_id = 40_000_000 + secrets.randbelow(10**6)
        self.app_id = 3_000_000 + secrets.randbelow(10**6)
        self.faults = Faults()
        self._lock = threading.Lock()
        self._sender = WebhookSender()
        self._target: str | None = None
        self._event_ids = iter(range(secrets.randbelow(10**9), 10**12))
        self._portal = _Portal(self._deliver)
        self._app = build_app(self._routes(), faults=self.faults, state=self.state, fault_response=fault_response)

    @property
    def app(self) -> Any:
        return self._app

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        settings = {"base_url": base_url, "access_token": self.access_token, "client_secret": self.client_secret}
        return {**settings, "webhook_url": self._target} if self._target else settings

    def subscribe(self, hub_webhook_url: str) -> None:
        """Set the app's webhook target URL, as an operator does in the app's settings."""
        self._target = hub_webhook_url

    def wait_for_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until every webhook sent so far was delivered or abandoned; False on timeout."""
        return self._sender.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        """Companies (live and archived, all properties) and webhook delivery counts."""
        with self._lock:
            companies = [c.render(tuple(sorted(c.properties))) for c in self._portal.companies.values()]
        return {"companies": companies, "webhooks": self._sender.stats()}

    # -- webhooks ------------------------------------------------------------------------------------

    def _deliver(self, events: list[Record]) -> None:
        """Send one batch of events to the target, if one is set, signed at each attempt."""
        if self._target is None:
            return
        batch = [{"eventId": next(self._event_ids), "subscriptionId": 1, "portalId": self.portal_id,
                  "appId": self.app_id, "attemptNumber": 0, **event} for event in events]
        body = json.dumps(batch).encode()
        self._sender.send(self._target, body, partial(self._sign, self._target))

    def _sign(self, target: str, body: bytes) -> dict[str, str]:
        legacy = hashlib.sha256(self.client_secret.encode() + body).hexdigest()  # v1, still sent by HubSpot
        return {"Content-Type": "application/json", "X-HubSpot-Signature": legacy, "X-HubSpot-Signature-Version": "v1",
                **signature_headers(self.client_secret, target, body, int(time.time() * 1000))}

    # -- HTTP ----------------------------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        return [
            self._route(f"{PREFIX}/batch/upsert", "POST", self._batch_upsert),
            self._route(PREFIX, "POST", self._create),
            self._route(PREFIX, "GET", self._list),
            self._route(PREFIX + "/{id}", "GET", self._read),
            self._route(PREFIX + "/{id}", "PATCH", self._update),
            self._route(PREFIX + "/{id}", "DELETE", self._archive),
        ]

    def _route(self, path: str, method: str, handler: Callable[["_Call"], Response]) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                self._authenticate(request)
                call = _Call(request, await request.body())
                with self._lock:
                    return handler(call)
            except HubSpotError as error:
                return error.response()

        return Route(path, endpoint, methods=[method])

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.access_token):
            raise HubSpotError(401, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API "
                               "supports OAuth 2.0 authentication and you can find more details at "
                               "https://developers.hubspot.com/docs/methods/auth/oauth-overview")

    # handlers: called with the lock held

    def _create(self, call: "_Call") -> Response:
        company = self._portal.create(_properties(call.json().get("properties", {})))
        return JSONResponse(company.render(call.wanted()), 201)

    def _read(self, call: "_Call") -> Response:
        company = self._portal.get(call.path_id, call.id_property, archived=call.archived)
        return JSONResponse(company.render(call.wanted()))

    def _update(self, call: "_Call") -> Response:
        company = self._portal.get(call.path_id, call.id_property)
        return JSONResponse(self._portal.update(company, _properties(call.json().get("properties"))).render(
            call.wanted()))

    def _archive(self, call: "_Call") -> Response:
        company = self._portal.find(call.path_id, "hs_object_id")
        if company is not None:  # archiving what is gone is still a 204
            self._portal.archive(company)
        return Response(status_code=204)

    def _list(self, call: "_Call") -> Response:
        limit = min(call.int_param("limit", 10), MAX_LIMIT)
        start = _position(call.params["after"]) if "after" in call.params else 0
        matching = [c for c in self._portal.companies.values() if (c.archived_at is not None) == call.archived]
        page: Record = {"results": [c.render(call.wanted()) for c in matching[start:start + limit]]}
        if start + limit < len(matching):
            after = _cursor(start + limit)
            page["paging"] = {"next": {"after": after, "link": f"{call.url}?after={after}"}}
        return JSONResponse(page)

    def _batch_upsert(self, call: "_Call") -> Response:
        inputs = call.json().get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_LIMIT:
            raise HubSpotError(400, "VALIDATION_ERROR", f"inputs must hold 1 to {MAX_LIMIT} objects")
        started, results = _now_iso(), []
        for item in inputs:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item.get("idProperty"):
                raise HubSpotError(400, "VALIDATION_ERROR", "each input needs an id and an idProperty")
            key, id_property = item["id"], item["idProperty"]
            properties = _properties(item.get("properties", {}))
            found = self._portal.find(key, id_property)
            company = (self._portal.create({**properties, id_property: key}) if found is None
                       else self._portal.update(found, properties))
            results.append({**company.render(tuple(sorted(company.properties))), "new": found is None})
        return JSONResponse({"status": "COMPLETE", "results": results, "startedAt": started,
                             "completedAt": _now_iso()})


class _Call:
    """One API request, decoded."""

    def __init__(self, request: Request, body: bytes) -> None:
        self.params = request.query_params
        self.path_id = request.path_params.get("id", "")
        self.url = str(request.url.replace(query=""))
        self._body = body

    @property
    def id_property(self) -> str:
        return self.params.get("idProperty", "hs_object_id")

    @property
    def archived(self) -> bool:
        return self.params.get("archived", "false").lower() == "true"

    def wanted(self) -> tuple[str, ...]:
        asked = [name for value in self.params.getlist("properties") for name in value.split(",") if name]
        return tuple(dict.fromkeys([*DEFAULT_PROPERTIES, *asked]))

    def int_param(self, name: str, default: int) -> int:
        try:
            return int(self.params.get(name, default))
        except ValueError:
            raise HubSpotError(400, "VALIDATION_ERROR", f"{name} must be an integer") from None

    def json(self) -> Record:
        try:
            decoded = json.loads(self._body or b"{}")
        except ValueError:
            raise HubSpotError(400, "VALIDATION_ERROR", "Invalid input JSON on line 1") from None
        if not isinstance(decoded, dict):
            raise HubSpotError(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object")
        return decoded
