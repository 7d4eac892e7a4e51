"""One org's REST API as the connector calls it: session tokens, limit tracking, errors.

**Sessions.** The hub authenticates with the OAuth 2.0 client credentials flow: ``POST
{base_url}/services/oauth2/token`` (form-encoded ``grant_type=client_credentials``, the connected
app's key and secret as HTTP Basic). The access token is cached per ``(base_url, client_id)`` and
shared by every worker thread; Salesforce sessions expire on inactivity or when revoked, which the
API answers with ``401 INVALID_SESSION_ID``. Then the token is fetched again and the request sent
once more; a second 401 means the credentials themselves are wrong (``auth``).

**Limits.** Salesforce meters API calls per org over a rolling 24 hours and reports the count on
every response as ``Sforce-Limit-Info: api-usage=18/5000``. :class:`UsageMonitor` keeps the last
value per org and warns past 90 %, well before calls start failing with ``403
REQUEST_LIMIT_EXCEEDED`` (Salesforce's rate-limit signal: it never answers 429 and sends no
Retry-After, so the hub backs off on its own schedule).

**Errors** are a JSON array, ``[{"message", "errorCode", "fields"}]``; :func:`classify` reads the
codes, because the status alone misleads: ``REQUEST_LIMIT_EXCEEDED`` is a 403 but means "later",
and ``UNABLE_TO_LOCK_ROW`` is a 400 but only means another transaction held the record.
"""

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import msgspec
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.http import classify_http, error_code, retry_after_seconds, status_category, status_line
from crossledger.plugins.salesforce.settings import SalesforceSettings
from crossledger.plugins.tokens import Token, TokenCache

log = logging.getLogger(__name__)

SYSTEM = "salesforce"
TOKEN_PATH = "/services/oauth2/token"
LIMIT_HEADER = "Sforce-Limit-Info"
USAGE_WARNING = 0.9
"""Past this share of the daily allocation, every new whole percent is logged as a warning."""

RATE_LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED"})
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})

_JSON = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True)
class ApiUsage:
    """The org's API calls in the last 24 hours, and its allocation."""

    used: int
    limit: int

    @property
    def fraction(self) -> float:
        return self.used / self.limit if self.limit else 1.0

    @classmethod
    def parse(cls, header: str) -> "ApiUsage | None":
        """``api-usage=18/5000`` (maybe followed by ``;per-app-api-usage=...``); None if absent."""
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            used, _, limit = value.partition("/")
            if name == "api-usage" and used.isascii() and used.isdigit() and limit.isascii() and limit.isdigit():
                return cls(int(used), int(limit))
        return None


class UsageMonitor:
    """The last ``Sforce-Limit-Info`` seen for each org (by base URL); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, ApiUsage] = {}

    def record(self, base_url: str, response: httpx.Response) -> None:
        usage = ApiUsage.parse(response.headers.get(LIMIT_HEADER, ""))
        if usage is None:
            return
        with self._lock:
            previous = self._last.get(base_url)
            self._last[base_url] = usage
        percent = int(usage.fraction * 100)
        if usage.fraction > USAGE_WARNING and (previous is None or int(previous.fraction * 100) < percent):
            log.warning("salesforce org at %s has used %d of its %d daily API calls (%d%%): calls fail with "
                        "REQUEST_LIMIT_EXCEEDED at 100%%", base_url, usage.used, usage.limit, percent)

    def last(self) -> dict[str, ApiUsage]:
        with self._lock:
            return dict(self._last)


def _session_key(settings: SalesforceSettings) -> tuple[str, str]:
    """One org's connected app: its sessions are shared by every thread of the process."""
    return settings.base_url, settings.client_id


def _fetch_session(settings: SalesforceSettings, http: httpx.Client) -> Token:
    """A session token; Salesforce says nothing of when it lapses, so it is kept until a 401."""
    return Token(_fetch_token(settings, http), refresh_at=math.inf)


def _fetch_token(settings: SalesforceSettings, http: httpx.Client) -> str:
    url = settings.base_url.rstrip("/") + TOKEN_PATH
    try:
        response = http.post(url, data={"grant_type": "client_credentials"},
                             auth=(settings.client_id, settings.client_secret.get_secret_value()),
                             headers={"Accept": "application/json"}, timeout=settings.timeout_s)
    except httpx.HTTPError as error:
        raise classify_http(error, f"{SYSTEM} token") from error
    if response.status_code in (400, 401):  # invalid_client, invalid_grant: the credentials are wrong
        raise ConnectorError(Category.AUTH, f"{SYSTEM} token: {describe(response)}", status=response.status_code)
    try:
        response.raise_for_status()
        token = response.json()["access_token"]
    except httpx.HTTPStatusError as error:
        raise classify(error) from error
    except (ValueError, KeyError, TypeError) as error:
        raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} token: {status_line(response)} without an access_token"
                             ) from error
    if not isinstance(token, str):
        raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} token: access_token is not a string")
    return token


def error_items(response: httpx.Response) -> list[dict[str, Any]]:
    """The entries of Salesforce's error array (an OAuth error object counts as one entry)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return []
    if isinstance(body, dict) and "error" in body:
        return [{"errorCode": body["error"], "message": body.get("error_description", "")}]
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def describe(response: httpx.Response) -> str:
    """``HTTP 400 Bad Request: REQUIRED_FIELD_MISSING [Name]; ...``: each error's code and fields,
    not its message (Salesforce's quote the values refused: ``invalid email address: ...``)."""
    details = "; ".join(f"{error_code(item.get('errorCode'))}{' ' + str(item['fields']) if item.get('fields') else ''}"
                        for item in error_items(response))
    return f"{status_line(response)}: {details}" if details else status_line(response)


def classify(error: Exception) -> ConnectorError:
    """The shared HTTP taxonomy, refined by Salesforce's error codes (see the module doc)."""
    if not isinstance(error, httpx.HTTPStatusError):
        return classify_http(error, SYSTEM)
    response, request = error.response, error.request
    codes = {item.get("errorCode") for item in error_items(response)}
    if codes & RATE_LIMIT_CODES:
        category = Category.RATE_LIMITED
    elif codes & TRANSIENT_CODES and response.status_code < 500:
        category = Category.TRANSIENT
    else:
        category = status_category(response.status_code)
    return ConnectorError(category, f"{SYSTEM} {request.method} {request.url.path}: {describe(response)}",
                          retry_after=retry_after_seconds(response), status=response.status_code)


def _session_expired(response: httpx.Response) -> bool:
    return response.status_code == 401 and any(item.get("errorCode") == "INVALID_SESSION_ID"
                                               for item in error_items(response))


def decode(response: httpx.Response) -> Any:
    """A JSON answer with numbers that have a fraction as exact Decimals (currency fields)."""
    return json.loads(response.content, parse_float=Decimal)


class RestClient:
    """Requests to one org for one call of the connector; cheap to make, holds no state of its own."""

    def __init__(self, settings: SalesforceSettings, http: httpx.Client, sessions: TokenCache,
                 usage: UsageMonitor) -> None:
        self.settings = settings
        self._http = http
        self._sessions = sessions
        self._usage = usage

    def data_path(self, path: str) -> str:
        """``/services/data/v62.0`` + ``path``: where the REST resources of the API version are."""
        return f"/services/data/{self.settings.api_version}{path}"

    def request(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                allow: frozenset[int] = frozenset()) -> httpx.Response:
        """``method`` on ``path`` (instance-relative, ``/services/...``), with a fresh session on a 401.

        Any failure leaves as a classified :class:`ConnectorError`, except statuses in ``allow``,
        which the caller reads itself (404 for a probe, 300 for an ambiguous upsert).
        """
        url = self.settings.base_url.rstrip("/") + path
        content = None if body is None else _JSON.encode(body)
        sent = {"Accept": "application/json", **({"Content-Type": "application/json"} if body is not None else {}),
                **(headers or {})}
        try:
            key = _session_key(self.settings)
            fetch = partial(_fetch_session, self.settings, self._http)
            token = self._sessions.get(key, fetch, time.time())
            response = self._send(method, url, content, params, sent, token)
            if _session_expired(response):
                self._sessions.discard(key, token)
                token = self._sessions.get(key, fetch, time.time())
                response = self._send(method, url, content, params, sent, token)
            if response.status_code not in allow:
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise classify(error) from error
        return response

    def _send(self, method: str, url: str, content: bytes | None, params: dict[str, str] | None,
              headers: dict[str, str], token: str) -> httpx.Response:
        response = self._http.request(method, url, content=content, params=params,
                                      headers={**headers, "Authorization": f"Bearer {token}"},
                                      timeout=self.settings.timeout_s)
        self._usage.record(self.settings.base_url, response)
        return response
