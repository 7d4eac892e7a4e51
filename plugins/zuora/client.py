"""Zuora's v1 REST API as the connector calls it: settings, OAuth tokens, requests, failures classified.

**Auth.** Zuora issues bearer tokens for OAuth 2.0 client credentials at ``POST /oauth/token``
(form-encoded ``client_id``, ``client_secret``, ``grant_type=client_credentials``; no auth header),
answering ``{access_token, token_type, expires_in, scope, jti}``. Tokens are shared per tenant and
client (:class:`~crossledger.plugins.tokens.TokenCache`), fetched by one thread at a time, and
replaced ``refresh_margin_s`` before they expire, so no request leaves with a token about to lapse.
A 401 on an API call (a token the tenant revoked early) drops the token and the call is made once more with a fresh one.

**Headers.** Every call carries ``Zuora-Version`` (the minor API version the mapping is written
against, :data:`API_VERSION`) and ``Zuora-Track-Id`` (the hub's id of the work, echoed back by Zuora,
so support can find a call). Writes by ``POST`` or ``PATCH`` carry ``Idempotency-Key``: Zuora keeps
the first answer for 24 hours and replays it; it refuses the key with 409 while the first request
is still running and with 422 when the key comes back with another request. ``PUT`` takes no key
(Zuora ignores it there), so updates are made idempotent by what they write, not by the key.

**Errors.** Zuora's v1 API answers many failures with **HTTP 200 and** ``"success": false``, the
reasons in the body: ``{"success": false, "processId": "...", "reasons": [{"code": 53100320,
"message": "..."}]}``. Every answer is therefore read before it counts as a success. The 8-digit
code is a 6-digit resource code and a 2-digit category (:data:`CATEGORIES`), which decides the
taxonomy; the message is never kept (it quotes the values refused). Rate limits answer 429 with
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` and ``Retry-After``.
"""

import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.http import classify_http, retry_after_seconds, status_category, status_line
from crossledger.plugins.tokens import Token, TokenCache
from pydantic import BaseModel, ConfigDict, Field, SecretStr

SYSTEM = "zuora"

API_VERSION = "2023-12-15"
"""The minor API version the mapping is written against (that of the published description the
sandbox is checked with), sent as ``Zuora-Version`` so a tenant upgrade cannot change the shapes."""

TOKEN_PATH = "/oauth/token"

IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
"""The methods Zuora takes ``Idempotency-Key`` on; it must not be sent on GET, PUT or DELETE."""

CATEGORIES: dict[str, Category] = {
    "10": Category.AUTH,         # permission or access denied
    "11": Category.AUTH,         # authentication failed
    "20": Category.DATA,         # invalid format or value
    "21": Category.DATA,         # unknown field in request
    "22": Category.DATA,         # missing required field
    "30": Category.DATA,         # rule restriction
    "40": Category.DATA,         # not found
    "45": Category.DATA,         # unsupported request
    "50": Category.TRANSIENT,    # locking contention: the same call succeeds once the lock is free
    "60": Category.TRANSIENT,    # internal error
    "70": Category.RATE_LIMITED, # request exceeded limit
    "90": Category.DATA,         # malformed request
}
"""The last two digits of a Zuora error code (its category, developer.zuora.com "Error codes") ->
the taxonomy. Codes of 9 leading digits' family ``9000xxxx`` are auth and platform errors, read the
same way (``90000011``: invalid credentials, category 11)."""


class ZuoraSettings(BaseModel):
    """``[connectors.zuora]``: the tenant's API, the OAuth client, and how callouts prove they are Zuora's.

    A callout is accepted when it passes every scheme configured here: the HMAC signature of its
    body with ``hmac_key`` (or, during a key roll, ``previous_hmac_key``) in ``hmac_header``, and
    HTTP Basic with ``callout_username`` and ``callout_password``. At least one must be set.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://rest.zuora.com"
    client_id: str
    client_secret: SecretStr
    hmac_key: SecretStr | None = None
    previous_hmac_key: SecretStr | None = None
    hmac_header: str = "Callout-Signature"
    callout_username: str | None = None
    callout_password: SecretStr | None = None
    hub_id_field: str = Field(default="CrossledgerId__c", pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")
    """The Account custom field holding the hub's canonical id (created in Zuora by the operator)."""
    tier_field: str | None = Field(default="Tier__c", pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")
    """The ProductRatePlan custom field saying which support tier a rate plan buys (a subscription's
    ``plan_tier``, which support's entitlements key on); ``None`` when the catalog has none."""
    timeout_s: float = 10.0
    refresh_margin_s: float = 60.0


def _token_key(settings: ZuoraSettings) -> tuple[str, str]:
    """Tokens are shared per tenant and client."""
    return settings.base_url, settings.client_id


def _fetch_token(settings: ZuoraSettings, http: httpx.Client, now: float) -> Token:
    url = settings.base_url.rstrip("/") + TOKEN_PATH
    form = {"client_id": settings.client_id, "client_secret": settings.client_secret.get_secret_value(),
            "grant_type": "client_credentials"}
    try:
        response = http.post(url, data=form, timeout=settings.timeout_s)
    except httpx.HTTPError as error:
        raise classify_http(error, f"{SYSTEM} token") from error
    if response.status_code in (400, 401):  # the client id or secret is wrong: no retry fixes that
        raise ConnectorError(Category.AUTH, f"{SYSTEM} token: {describe(response)}", status=response.status_code)
    try:
        response.raise_for_status()
        body = response.json()
        return Token(str(body["access_token"]), now + float(body["expires_in"]) - settings.refresh_margin_s)
    except httpx.HTTPStatusError as error:
        raise classify(error) from error
    except (ValueError, KeyError, TypeError) as error:
        raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} token: {status_line(response)} without a token"
                             ) from error


def reason_codes(body: object) -> list[str]:
    """The error codes of a Zuora error body (``reasons[].code``), as strings; none when it has none."""
    reasons = body.get("reasons") if isinstance(body, dict) else None
    if not isinstance(reasons, list):
        return []
    return [str(reason["code"]) for reason in reasons
            if isinstance(reason, dict) and isinstance(reason.get("code"), int | str) and str(reason["code"]).isdigit()]


def code_category(codes: list[str]) -> Category | None:
    """The taxonomy of a failure with these codes: the first code whose category is known decides."""
    return next((CATEGORIES[code[-2:]] for code in codes if code[-2:] in CATEGORIES), None)


def response_codes(response: httpx.Response) -> list[str]:
    """The reason codes of an answer's body; none when the body is not JSON (a proxy's error page)."""
    try:
        return reason_codes(response.json())
    except ValueError:
        return []


def describe(response: httpx.Response) -> str:
    """``HTTP 200 OK: 50000040`` (the status and the codes of the reasons, never their messages)."""
    codes = response_codes(response)
    return f"{status_line(response)}: {', '.join(codes)}" if codes else status_line(response)


def classify(error: Exception) -> ConnectorError:
    """The HTTP taxonomy (:func:`~crossledger.plugins.http.classify_http`), refined by Zuora's codes:
    a 4xx whose code says locking contention is transient, one that says a limit was hit is
    rate-limited. Retry-After is kept from the answer."""
    if isinstance(error, ZuoraFailure):
        return error.classified
    classified = classify_http(error, SYSTEM)
    if not isinstance(error, httpx.HTTPStatusError):
        return classified
    response = error.response
    category = classified.category
    by_code = code_category(response_codes(response))
    if by_code is not None and not category.retryable and response.status_code not in (401, 403):
        category = by_code
    return ConnectorError(category, f"{SYSTEM} {error.request.method} {error.request.url.path}: "
                          f"{describe(response)}", retry_after=retry_after_seconds(response),
                          status=response.status_code)


class ZuoraFailure(ConnectorError):
    """A call Zuora answered ``"success": false`` (with HTTP 200 or an error status), classified."""

    def __init__(self, method: str, path: str, response: httpx.Response, codes: list[str]) -> None:
        status = response.status_code
        # A 429 or a 5xx says how to retry (wait, or park behind the circuit) better than its code;
        # below that, and on HTTP 200, the code's category is all there is.
        by_status = status == 429 or status >= 500
        category = status_category(status) if by_status else code_category(codes) or status_category(max(status, 400))
        super().__init__(category, f"{SYSTEM} {method} {path}: {status_line(response)} success=false: "
                         f"{', '.join(codes) or 'no reason code'}",
                         retry_after=retry_after_seconds(response), status=response.status_code)
        self.codes = codes

    @property
    def classified(self) -> ConnectorError:
        return ConnectorError(self.category, self.message, retry_after=self.retry_after, status=self.status)

    @property
    def not_found(self) -> bool:
        """Whether Zuora said the object does not exist (category 40)."""
        return any(code.endswith("40") for code in self.codes)


TOKENS = TokenCache()
"""The process's tokens: one per tenant and client, shared by every connector call."""


class ZuoraApi:
    """Authenticated calls to one Zuora tenant, each answer read for ``success``."""

    def __init__(self, settings: ZuoraSettings, http: httpx.Client, *, clock: Any = time.time,
                 tokens: TokenCache = TOKENS, track_id: str | None = None) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._tokens = tokens
        self._track_id = track_id

    def get(self, path: str, params: Mapping[str, str | int | list[str]] | None = None) -> dict[str, Any]:
        return self.call("GET", path, params=params)

    def call(self, method: str, path: str, *, params: Mapping[str, str | int | list[str]] | None = None,
             body: Mapping[str, Any] | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """One call; a failure (an error status, or ``success: false``) raises a classified error."""
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key and method in IDEMPOTENT_METHODS else {}
        now = self._clock()
        for attempt in (1, 2):
            token = self._tokens.get(_token_key(self._settings),
                                     lambda: _fetch_token(self._settings, self._http, now), now)
            try:
                response = self._http.request(
                    method, self._settings.base_url.rstrip("/") + path, params=params, json=body,
                    timeout=self._settings.timeout_s,
                    headers={"Authorization": f"Bearer {token}", "Zuora-Version": API_VERSION,
                             **({"Zuora-Track-Id": self._track_id} if self._track_id else {}), **extra},
                )
            except httpx.HTTPError as error:
                raise classify(error) from error
            if response.status_code == 401 and attempt == 1:
                self._tokens.discard(_token_key(self._settings), token)  # revoked or expired early: once more, fresh
                continue
            return self._read(method, path, response)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _read(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            record = response.json()
        except ValueError as error:
            if response.is_success:
                raise ConnectorError(Category.TRANSIENT, f"{SYSTEM} {method} {path}: {status_line(response)} "
                                     "with a body that is not JSON") from error
            record = None
        if isinstance(record, dict) and record.get("success") is False:
            raise ZuoraFailure(method, path, response, reason_codes(record))
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as error:
            raise classify(error) from error
        if not isinstance(record, dict):
            raise ConnectorError(Category.DATA, f"{SYSTEM} answered {method} {path} with a non-object")
        return record

    def query(self, collection: str, *, filters: list[str] | None = None,
              page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of an Object Query collection (``/object-query/accounts``), page after page."""
        cursor: str | None = None
        while True:
            data, cursor = self.query_page(collection, filters=filters, page_size=page_size, cursor=cursor)
            yield from data
            if cursor is None:
                return

    def query_page(self, collection: str, *, filters: list[str] | None = None, page_size: int | None = None,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of an Object Query collection from ``cursor`` (Zuora's opaque one), and the
        ``nextPage`` cursor (None on the last page)."""
        params: dict[str, str | int | list[str]] = {"pageSize": min(page_size or QUERY_PAGE_SIZE, QUERY_PAGE_SIZE)}
        if filters:
            params["filter[]"] = filters
        if cursor is not None:
            params["cursor"] = cursor
        page = self.get(f"/object-query/{collection}", params)
        data = _records(page, "data", f"/object-query/{collection}")
        following = page.get("nextPage")
        return data, (str(following) if following and data else None)

    def list_page(self, collection: str, page: int, *,
                  page_size: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Page ``page`` (1-based) of a v1 list endpoint (``GET /v1/payments``: the records under
        ``collection``), ``pageSize`` at a time, and whether Zuora says a next page follows
        (``nextPage``). The page number is the cursor: it names the page however long a run waits,
        where ``nextPage`` is a URL the bearer token would follow."""
        size = min(page_size or V1_PAGE_SIZE, V1_PAGE_SIZE)
        path = f"/v1/{collection}"
        answered = self.get(path, {"page": page, "pageSize": size})
        records = _records(answered, collection, path)
        return records, bool(answered.get("nextPage")) and bool(records)


def _records(page: dict[str, Any], key: str, path: str) -> list[Any]:
    """The records a list answer holds under ``key``; a DATA error when it holds none."""
    records = page.get(key)
    if not isinstance(records, list):
        raise ConnectorError(Category.DATA, f"{SYSTEM} answered {path} with no {key}")
    return records


V1_PAGE_SIZE = 40
"""The largest page of a v1 list endpoint (``pageSize`` at most 40)."""
QUERY_PAGE_SIZE = 50
"""The largest Object Query page (``pageSize`` 1-50): the fewest round trips when reading everything."""
