"""A local emulator of a Salesforce org: its REST API, its OAuth endpoint and its outbound messages.

What a client meets in a real org, and so meets here:

- **OAuth 2.0 client credentials** at ``POST /services/oauth2/token`` (form-encoded, the connected
  app's key and secret as HTTP Basic or in the form). Errors are OAuth's ``{"error",
  "error_description"}`` with 400. Tokens look like Salesforce session ids (``00D...!AQ...``) and
  last until :meth:`SalesforceSandbox.expire_sessions` (or ``POST /_sandbox/sessions/expire``);
  then the API answers ``401 INVALID_SESSION_ID``.
- **REST** under ``/services/data/vNN.0``: ``sobjects/{Type}`` (POST create: ``201 {"id",
  "success", "errors"}``), ``sobjects/{Type}/{Id}`` (GET, ``?fields=``; PATCH and DELETE: 204),
  ``sobjects/{Type}/{ExtIdField}/{value}`` (GET; DELETE; PATCH upsert: 201 ``created: true``, 200
  ``created: false`` from v46.0 and 204 before, 300 with the matching records' URLs when the
  value is not unique, 404 with ``?updateOnly=true`` and no match), ``query?q=SOQL``
  (:mod:`.soql`; ``{"totalSize", "done", "records", "nextRecordsUrl"}``, batches sized by the
  ``Sforce-Query-Options: batchSize=N`` header, followed at ``query/{locator}-{offset}``),
  ``limits``, and the describe calls ``sobjects``, ``sobjects/{Type}`` and
  ``sobjects/{Type}/describe`` (:mod:`.describe`). Ids are 18 characters with the objects' key
  prefixes (``001`` Account, ``003`` Contact, ``a0B`` Invoice__c, ``a0C`` Payment__c); either id
  form is accepted. Records carry
  ``attributes`` and every field of their object (:mod:`.schema`: Salesforce's standard fields as
  its describe gives them, then the org's custom ones), datetimes as
  ``2024-01-31T17:32:28.000+0000``; currency fields are JSON numbers with their exact digits.
- **Errors** are a JSON array, ``[{"message", "errorCode", "fields"}]``, checked as the API
  checks them (:mod:`.schema`).
- **Limits**: every API request counts against a daily allocation (``daily_limit``) and every
  answer says so in ``Sforce-Limit-Info: api-usage=used/limit``. Past the limit, requests fail with
  ``403 REQUEST_LIMIT_EXCEEDED``, and so does the ``http_429`` fault: Salesforce has no 429 and no
  Retry-After on its REST API. Faults hit the REST API, not the token endpoint (a test injecting a
  fault means the call it makes next, not the token fetch before it).
- **Outbound messages** for Account and Contact changes, to the URL given to :meth:`subscribe`
  (:mod:`.outbound_messages`), with control routes ``POST /_sandbox/outbound`` (``{"hold": true|false}``)
  and ``POST /_sandbox/outbound/resend``.

Query batch sizes: real Salesforce treats ``batchSize`` as a hint between 200 and 2,000 (and may
return fewer for wide records); the sandbox honours any size from 1, so paging is testable with a
handful of records.

Not emulated: Change Data Capture streaming (it reaches the hub through a relay, see :mod:`..relay`),
composite and collection resources, layouts and other describe sub-resources, bulk APIs, other
objects, sharing and permissions, triggers and validation rules beyond field types, the recycle bin
and ``queryAll``.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from crossledger.plugins.emulator import Faults, build_app
from crossledger.plugins.salesforce import ids
from crossledger.plugins.salesforce.client import LIMIT_HEADER, TOKEN_PATH
from crossledger.plugins.salesforce.sandbox import describe, soql
from crossledger.plugins.salesforce.sandbox.outbound_messages import OutboundMessaging
from crossledger.plugins.salesforce.sandbox.schema import (
    OBJECTS,
    Field,
    SalesforceError,
    SObjectType,
    not_found,
    sobject_type,
)
from crossledger.plugins.salesforce.settings import API_VERSION
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

ORGANIZATION_ID = "00D5g000004SbXA" + ids.checksum("00D5g000004SbXA")
"""Every sandbox org has this id, so fixtures and kits can name it (outbound messages carry it)."""
INTEGRATION_USER_ID = "0055g00000IntUs" + ids.checksum("0055g00000IntUs")
"""The run-as user of the connected app's client credentials flow."""
DATA_ROOT = "/services/data"
MAX_BATCH = 2000
OPEN_CURSORS = 50
"""Query locators kept; older ones answer INVALID_QUERY_LOCATOR, as expired cursors do."""
NOTIFYING = ("Account", "Contact")
RUN_AS_FIELDS = frozenset({"OwnerId", "CreatedById", "LastModifiedById"})
"""Who a record made through the API belongs to, and was made and changed by, unless it says."""

_JSON = msgspec.json.Encoder(decimal_format="number")
Values = dict[str, Any]


def rest_datetime(value: datetime) -> str:
    """Salesforce REST's datetime form: ``2024-01-31T17:32:28.000+0000``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return rest_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _soap_text(value: Any) -> str:
    """A field as an outbound message writes it: datetimes as ``2024-01-31T17:32:28.000Z``,
    booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_JSON.encode(payload), status_code=status, media_type="application/json;charset=UTF-8")


def _refusal(error: SalesforceError) -> Response:
    return _json(error.body(), error.status)


_FAULTS = {
    429: SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    500: SalesforceError(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you "
                                                   "contact support: 1984720617-52097 (-1157893458)"),
    503: SalesforceError(503, "SERVER_UNAVAILABLE", "Salesforce is down for maintenance. Try again later."),
}


def fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault as Salesforce shows it; Salesforce never sends Retry-After, so neither does this."""
    return _refusal(_FAULTS[status])


# --- the org's data ---------------------------------------------------------------------------


class Org:
    """The records of one org, by object in creation order, with the API's write rules.

    Not thread-safe: :class:`SalesforceSandbox` calls it under its lock.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.ids = ids.IdFactory()
        self._clock = clock
        self._records: dict[str, dict[str, Values]] = {name: {} for name in OBJECTS}

    def now(self) -> datetime:
        moment = datetime.fromtimestamp(self._clock(), UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def all(self, sobject: SObjectType) -> list[Values]:
        return list(self._records[sobject.name].values())

    def get(self, sobject: SObjectType, raw_id: str) -> Values:
        record_id = ids.normalize(raw_id)
        record = self._records[sobject.name].get(record_id) if record_id else None
        if record is None:
            if record_id is None:
                raise SalesforceError(404, "NOT_FOUND", "Provided external ID field does not exist or is not "
                                                        f"accessible: {raw_id}")
            raise not_found()
        return record

    def find(self, sobject: SObjectType, id_: str) -> Values | None:
        return self._records[sobject.name].get(id_)

    def matching(self, sobject: SObjectType, field: Field, value: str) -> list[Values]:
        """Records whose External ID ``field`` equals ``value``, ignoring case (the default for External IDs)."""
        wanted = value.casefold()
        return [record for record in self._records[sobject.name].values()
                if isinstance(record.get(field.name), str) and record[field.name].casefold() == wanted]

    def create(self, sobject: SObjectType, body: Values) -> Values:
        """A new record: every field of the object, the ones the body does not give at their
        defaults; made, owned and last modified by the API's run-as user unless an owner is given."""
        values = self._accept(sobject, body, creating=True)
        missing = [field.name for field in sobject.fields if field.required and values.get(field.name) is None]
        if missing:
            raise SalesforceError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                                  missing)
        now = self.now()
        record: Values = {field.name: INTEGRATION_USER_ID if field.name in RUN_AS_FIELDS else field.default
                          for field in sobject.fields}
        record.update(values, Id=self.ids.new(sobject.key_prefix), CreatedDate=now, LastModifiedDate=now,
                      SystemModstamp=now)
        sobject.derive(record)
        self._records[sobject.name][record["Id"]] = record
        return record

    def update(self, sobject: SObjectType, record: Values, body: Values) -> None:
        values = self._accept(sobject, body, creating=False)
        now = self.now()
        record.update(values, LastModifiedDate=now, LastModifiedById=INTEGRATION_USER_ID, SystemModstamp=now)
        sobject.derive(record)

    def delete(self, sobject: SObjectType, record: Values) -> None:
        """Delete ``record``, and the records that cannot live without it (an account's contacts);
        other lookups to it are cleared."""
        del self._records[sobject.name][record["Id"]]
        for other_type in OBJECTS.values():
            for field in other_type.fields:
                dependents = [other for other in self.all(other_type)
                              if field.references == sobject.name and other.get(field.name) == record["Id"]]
                for other in dependents:
                    if field.cascade_delete:
                        self.delete(other_type, other)
                    else:
                        other[field.name] = None

    def render(self, sobject: SObjectType, record: Values, version: str,
               fields: tuple[Field, ...] | None = None) -> Values:
        """The record as the REST API returns it: ``attributes``, then the fields asked for (all by default)."""
        url = f"{DATA_ROOT}/{version}/sobjects/{sobject.name}/{record['Id']}"
        rendered: Values = {"attributes": {"type": sobject.name, "url": url}}
        for field in fields or sobject.fields:
            rendered[field.name] = _json_value(record.get(field.name))
        return rendered

    def soap_fields(self, sobject_name: str, record_id: str) -> dict[str, str | None] | None:
        """The record's set fields as an outbound message carries them (compound fields have no
        place in one: their components are there); None once it is deleted."""
        record = self._records[sobject_name].get(record_id)
        if record is None:
            return None
        return {name: _soap_text(value) for name, value in record.items() if value is not None
                and not isinstance(value, dict)}

    def _accept(self, sobject: SObjectType, body: Values, *, creating: bool) -> Values:
        values: Values = {}
        for name, value in body.items():
            if name == "attributes":
                continue
            field = sobject.require(name)
            if not (field.createable if creating else field.updateable):
                raise SalesforceError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: "
                                      f"{field.name}. Please check the security settings of this field and verify "
                                      "that it is read/write for your profile or permission set.", [field.name])
            stored = field.accept(value)
            if field.references in OBJECTS and stored is not None and \
                    self.find(OBJECTS[field.references], stored) is None:
                raise SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field.name])
            values[field.name] = stored
        return values


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One authenticated REST request, parsed."""

    request: Request
    version: str
    segments: list[str]
    raw_body: bytes

    @property
    def version_number(self) -> int:
        return int(self.version[1:].split(".")[0])

    @property
    def instance_url(self) -> str:
        """The org's URL as the client addressed it, mount prefix included."""
        scope = self.request.scope
        return f"{scope['scheme']}://{self.request.headers.get('host', '')}{scope.get('root_path', '')}"

    def body(self) -> Values:
        if not self.raw_body.strip():
            return {}
        try:
            body = json.loads(self.raw_body, parse_float=Decimal)
        except ValueError as error:
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character in the request body: {error}"
                                  ) from error
        if not isinstance(body, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of sObject from "
                                                            f"{type(body).__name__} value")
        return body

    def batch_size(self, default: int) -> int:
        """``Sforce-Query-Options: batchSize=N``; the default when absent or not a number."""
        for option in self.request.headers.get("sforce-query-options", "").split(","):
            name, _, value = option.strip().partition("=")
            if name == "batchSize" and value.isascii() and value.isdigit() and int(value) > 0:
                return min(int(value), MAX_BATCH)
        return default


@dataclass
class _Cursor:
    rows: list[Values]
    batch_size: int


Handler = Callable[[], Response]


def _allowed(call: Call, handlers: dict[str, Handler]) -> Response:
    method = call.request.method
    if method not in handlers:
        raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are "
                                                         f"{','.join(sorted(handlers))}")
    return handlers[method]()


class SalesforceSandbox:
    """An in-memory Salesforce org; thread-safe. Serve :attr:`app`, point the connector at it with
    :meth:`connector_settings`, register the hub with :meth:`subscribe`."""

    def __init__(self, *, daily_limit: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.organization_id = ORGANIZATION_ID
        self.client_id = "3MVG9" + secrets.token_urlsafe(60)[:80]
        self.client_secret = secrets.token_hex(32).upper()
        self.relay_secret = secrets.token_urlsafe(32)
        self.daily_limit = daily_limit
        self.api_used = 0
        self.tokens_issued = 0
        self.faults = Faults()
        self._lock = threading.RLock()
        self._sessions: set[str] = set()
        self._org = Org(clock)
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._instance_url = ""
        self._outbound = OutboundMessaging(self.organization_id, self._org.ids, NOTIFYING)
        api = build_app(self._routes(), faults=self.faults, state=self.state, fault_response=fault_response)
        self._app = Starlette(routes=[Route(TOKEN_PATH, self._token, methods=["POST"]), Mount("", app=api)])

    @property
    def app(self) -> Starlette:
        return self._app

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "client_id": self.client_id, "client_secret": self.client_secret,
                "organization_id": self.organization_id, "cdc_secret": self.relay_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Point the Account and Contact outbound messages at the hub."""
        with self._lock:
            self._outbound.subscribe(hub_webhook_url)

    def unsubscribe(self) -> None:
        """Deactivate the outbound messages (changes are no longer sent anywhere)."""
        with self._lock:
            self._outbound.subscribe(None)

    def wait_for_outbound(self, timeout: float = 30.0) -> bool:
        """Block until every outbound message sent so far was acknowledged or abandoned."""
        return self._outbound.wait(timeout)

    def expire_sessions(self) -> None:
        """End every session, as a timeout or a revocation does; clients must log in again."""
        with self._lock:
            self._sessions.clear()

    def state(self) -> dict[str, Any]:
        """Records by object (``accounts``, ``contacts``, ``invoices``, ``payments``) in REST form, the
        outbound message queue and the API usage; JSON builtins."""
        with self._lock:
            state: dict[str, Any] = {
                sobject.state_key: [self._org.render(sobject, record, API_VERSION) for record in self._org.all(sobject)]
                for sobject in OBJECTS.values()
            }
            state["outbound"] = self._outbound.stats()
            state["api"] = {"used": self.api_used, "daily_limit": self.daily_limit,
                            "tokens_issued": self.tokens_issued}
        decoded: dict[str, Any] = msgspec.json.decode(_JSON.encode(state))
        return decoded

    # routing

    def _routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox/outbound", self._outbound_control, methods=["POST"]),
            Route("/_sandbox/outbound/resend", self._resend, methods=["POST"]),
            Route("/_sandbox/sessions/expire", self._expire, methods=["POST"]),
            Route("/_sandbox/limits", self._limits_control, methods=["POST"]),
            Route(DATA_ROOT + "/{version}/{rest:path}", self._rest, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
            Route("/{path:path}", _unknown, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        ]

    async def _rest(self, request: Request) -> Response:
        raw = await request.body()
        version = request.path_params["version"]
        segments = [part for part in request.path_params.get("rest", "").split("/") if part]
        with self._lock:
            try:
                if not (version.startswith("v") and version[1:].replace(".", "", 1).isdigit()):
                    raise not_found()
                self._authenticate(request.headers.get("authorization", ""))
            except SalesforceError as error:
                return _refusal(error)
            call = Call(request, version, segments, raw)
            self._instance_url = call.instance_url
            try:
                if self.api_used >= self.daily_limit:
                    raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                self.api_used += 1
                response = self._dispatch(call)
            except SalesforceError as error:
                response = _refusal(error)
            self._outbound.flush(self._org.soap_fields, self._instance_url)
            response.headers[LIMIT_HEADER] = f"api-usage={self.api_used}/{self.daily_limit}"
            return response

    def _authenticate(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or token.strip() not in self._sessions:
            raise SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _dispatch(self, call: Call) -> Response:
        match call.segments:
            case ["limits"]:
                limits = {"DailyApiRequests": {"Max": self.daily_limit, "Remaining": self.daily_limit - self.api_used}}
                return _allowed(call, {"GET": lambda: _json(limits)})
            case ["query"]:
                return _allowed(call, {"GET": lambda: self._query(call)})
            case ["query", locator]:
                return _allowed(call, {"GET": lambda: self._query_more(call, locator)})
            case ["sobjects"]:
                return _allowed(call, {"GET": lambda: _json(describe.global_describe(call.version, call.instance_url))})
            case ["sobjects", name]:
                sobject = sobject_type(name)
                return _allowed(call, {"GET": lambda: _json({"objectDescribe": describe.basic(
                                           sobject, call.version, call.instance_url), "recentItems": []}),
                                       "POST": lambda: self._create(call, sobject)})
            case ["sobjects", name, "describe"]:
                sobject = sobject_type(name)
                return _allowed(call, {"GET": lambda: _json(describe.describe(sobject, call.version,
                                                                              call.instance_url))})
            case ["sobjects", name, record_id]:
                sobject = sobject_type(name)
                return _allowed(call, {"GET": lambda: self._read(call, sobject, self._org.get(sobject, record_id)),
                                       "PATCH": lambda: self._update(call, sobject, record_id),
                                       "DELETE": lambda: self._delete(sobject, self._org.get(sobject, record_id))})
            case ["sobjects", name, field_name, value]:
                sobject = sobject_type(name)
                field = _external_id_field(sobject, field_name)
                return _allowed(call, {"GET": lambda: self._read(call, sobject, self._one(call, sobject, field, value)),
                                       "PATCH": lambda: self._upsert(call, sobject, field, value),
                                       "DELETE": lambda: self._delete(sobject, self._one(call, sobject, field, value))})
        raise not_found()

    # sObject handlers: called with the lock held

    def _create(self, call: Call, sobject: SObjectType) -> Response:
        record = self._org.create(sobject, call.body())
        self._changed(sobject, record)
        return _json({"id": record["Id"], "success": True, "errors": []}, 201)

    def _read(self, call: Call, sobject: SObjectType, record: Values) -> Response:
        names = [name.strip() for name in call.request.query_params.get("fields", "").split(",") if name.strip()]
        fields = tuple(sobject.require(name) for name in names) or None
        return _json(self._org.render(sobject, record, call.version, fields))

    def _update(self, call: Call, sobject: SObjectType, record_id: str) -> Response:
        record = self._org.get(sobject, record_id)
        self._org.update(sobject, record, call.body())
        self._changed(sobject, record)
        return Response(status_code=204)

    def _delete(self, sobject: SObjectType, record: Values) -> Response:
        self._org.delete(sobject, record)
        return Response(status_code=204)

    def _one(self, call: Call, sobject: SObjectType, field: Field, value: str) -> Values:
        """The one record whose External ID is ``value``: 404 for none; 300 (raised) for several."""
        matches = self._org.matching(sobject, field, value)
        if len(matches) > 1:
            raise _MultipleChoices(self._urls(call, sobject, matches))
        if not matches:
            raise not_found()
        return matches[0]

    def _upsert(self, call: Call, sobject: SObjectType, field: Field, value: str) -> Response:
        body = call.body()
        for name in body:
            if name.lower() in (field.name.lower(), "id"):
                raise SalesforceError(400, "INVALID_FIELD", f"The {name} field should not be specified in the "
                                                            "sobject data.", [name])
        matches = self._org.matching(sobject, field, value)
        if len(matches) > 1:
            raise _MultipleChoices(self._urls(call, sobject, matches))
        if matches:
            record, created = matches[0], False
            self._org.update(sobject, record, body)
        elif call.request.query_params.get("updateOnly", "").lower() == "true":
            raise not_found()
        else:
            record, created = self._org.create(sobject, {**body, field.name: value}), True
        self._changed(sobject, record)
        if not created and call.version_number < 46:
            return Response(status_code=204)
        result: Values = {"id": record["Id"], "success": True, "errors": []}
        if call.version_number >= 46:
            result["created"] = created
        return _json(result, 201 if created else 200)

    def _changed(self, sobject: SObjectType, record: Values) -> None:
        self._outbound.queue(sobject.name, record["Id"])

    @staticmethod
    def _urls(call: Call, sobject: SObjectType, records: list[Values]) -> list[str]:
        return [f"{DATA_ROOT}/{call.version}/sobjects/{sobject.name}/{record['Id']}" for record in records]

    # queries

    def _query(self, call: Call) -> Response:
        text = call.request.query_params.get("q")
        if not text:
            raise soql.malformed("the q parameter is required")
        query = soql.parse(text)
        rows = [self._org.render(query.sobject, record, call.version, query.fields)
                for record in query.run(self._org.all(query.sobject))]
        locator = self._org.ids.new("01g")
        cursor = _Cursor(rows, call.batch_size(MAX_BATCH))
        self._cursors[locator] = cursor
        while len(self._cursors) > OPEN_CURSORS:
            self._cursors.popitem(last=False)
        return _json(self._page(call, locator, cursor, 0))

    def _query_more(self, call: Call, locator_and_offset: str) -> Response:
        locator, _, offset = locator_and_offset.rpartition("-")
        cursor = self._cursors.get(locator)
        if cursor is None or not (offset.isascii() and offset.isdigit()):
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return _json(self._page(call, locator, cursor, int(offset)))

    @staticmethod
    def _page(call: Call, locator: str, cursor: _Cursor, offset: int) -> Values:
        size = call.batch_size(cursor.batch_size)
        end = offset + size
        page: Values = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows),
                        "records": cursor.rows[offset:end]}
        if not page["done"]:
            page["nextRecordsUrl"] = f"{DATA_ROOT}/{call.version}/query/{locator}-{end}"
        return page

    # OAuth

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        client_id, client_secret = _basic(request.headers.get("authorization", ""))
        client_id = form.get("client_id", client_id)
        client_secret = form.get("client_secret", client_secret)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                                status_code=400)
        if not (hmac.compare_digest(client_id.encode(), self.client_id.encode())
                and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())):
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"},
                                status_code=400)
        token = f"{self.organization_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        issued_at = str(int(time.time() * 1000))
        instance = f"{request.url.scheme}://{request.headers.get('host', '')}{request.scope.get('root_path', '')}"
        signed = hmac.new(self.client_secret.encode(), f"{instance}{issued_at}".encode(), hashlib.sha256).digest()
        with self._lock:
            self._sessions.add(token)
            self.tokens_issued += 1
        return JSONResponse({
            "access_token": token,
            "signature": base64.b64encode(signed).decode(),
            "scope": "api",
            "instance_url": instance,
            "id": f"https://login.salesforce.com/id/{self.organization_id}/{INTEGRATION_USER_ID}",
            "token_type": "Bearer",
            "issued_at": issued_at,
        })

    # control routes

    async def _outbound_control(self, request: Request) -> Response:
        """``{"hold": true}`` keeps notifications queued; ``{"hold": false}`` sends them, 100 a message."""
        try:
            hold = json.loads(await request.body() or b"{}").get("hold")
        except (ValueError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        with self._lock:
            if hold:
                self._outbound.hold()
                return JSONResponse({"held": True})
            return JSONResponse({"messages": self._outbound.release(self._org.soap_fields, self._instance_url)})

    async def _resend(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse({"resent": self._outbound.resend()})

    async def _expire(self, request: Request) -> Response:
        self.expire_sessions()
        return JSONResponse({"expired": True})

    async def _limits_control(self, request: Request) -> Response:
        """``{"daily_limit": n, "used": m}``: set the allocation and how much of it is spent."""
        try:
            spec = json.loads(await request.body() or b"{}")
            with self._lock:
                self.daily_limit = int(spec.get("daily_limit", self.daily_limit))
                self.api_used = int(spec.get("used", self.api_used))
        except (ValueError, TypeError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"used": self.api_used, "daily_limit": self.daily_limit})


class _MultipleChoices(SalesforceError):
    """Several records share an External ID value: 300 with their URLs, not an error array."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(300, "MULTIPLE_CHOICES", "several records match")
        self.urls = urls

    def body(self) -> list[Any]:
        return list(self.urls)


def _external_id_field(sobject: SObjectType, name: str) -> Field:
    field = sobject.find(name)
    if field is None or not field.external_id:
        raise SalesforceError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                                                f"{name}")
    return field


def _basic(authorization: str) -> tuple[str, str]:
    """``(client id, secret)`` from an HTTP Basic header; empty strings when there is none."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


async def _unknown(request: Request) -> Response:
    return _refusal(not_found())
