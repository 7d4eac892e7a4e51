"""One company's API as the connector calls it: tokens, OData answers, ``$batch``, errors.

**Errors** are OData's ``{"error": {"code", "message"}}``. :func:`classify` reads the code as well
as the status: ``Request_EntityChanged`` is a concurrency conflict whether it comes as 409 or 412
(the connector re-reads and re-applies; one left over is transient), 429 is rate limiting and 502,
503 and 504 mean the service is down, each honouring ``Retry-After``. The message is left out of
the reason: Business Central's quote the values refused.
"""

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

import httpx
import msgspec
from crossledger.plugins.business_central.auth import SYSTEM, fetch_token, token_key
from crossledger.plugins.business_central.settings import BusinessCentralSettings
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.http import classify_http, error_code, retry_after_seconds, status_category, status_line
from crossledger.plugins.tokens import TokenCache

MAX_BATCH: Final = 100
"""Business Central runs at most 100 requests in one ``$batch``."""
CONFLICT_CODES: Final = frozenset({"Request_EntityChanged"})
"""Codes that mean the record changed since it was read (HTTP 409 or 412)."""

_JSON = msgspec.json.Encoder(decimal_format="number")
Record = dict[str, Any]


def error_of(response: httpx.Response) -> str:
    """The OData error code of an answer (``BadRequest_NotFound``), or ``?``."""
    try:
        body = json.loads(response.content)
        return error_code(body["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


def describe(response: httpx.Response) -> str:
    return f"{status_line(response)}: {error_of(response)}"


def answered(error: ConnectorError, code: str) -> bool:
    """Whether a failure is an answer with the OData error ``code``."""
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and error_of(cause.response) == code


def is_conflict(error: ConnectorError) -> bool:
    """Whether a failure is Business Central's "another user has already changed the record"."""
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and (
        cause.response.status_code == 412 or error_of(cause.response) in CONFLICT_CODES)


def classify(error: Exception) -> ConnectorError:
    """The shared HTTP taxonomy, with the OData error code in the reason (see the module doc)."""
    if not isinstance(error, httpx.HTTPStatusError):
        return classify_http(error, SYSTEM)
    response, request = error.response, error.request
    code = error_of(response)
    category = Category.TRANSIENT if code in CONFLICT_CODES or response.status_code == 412 \
        else status_category(response.status_code)
    return ConnectorError(category, f"{SYSTEM} {request.method} {request.url.path}: {describe(response)}",
                          retry_after=retry_after_seconds(response), status=response.status_code)


def decode(response: httpx.Response) -> Any:
    """A JSON answer with fractional numbers as exact Decimals (amounts)."""
    return json.loads(response.content, parse_float=Decimal)


class BatchError(ConnectorError):
    """A request inside a ``$batch`` failed; ``status`` and the reason are that request's."""


class ApiClient:
    """Requests to one company for one call of the connector; holds no state of its own."""

    def __init__(self, settings: BusinessCentralSettings, http: httpx.Client, tokens: TokenCache, now: float) -> None:
        self.settings = settings
        self._http = http
        self._tokens = tokens
        self._now = now

    def company(self, path: str) -> str:
        """A path under the company: ``/customers`` -> ``/companies({id})/customers``."""
        return self.settings.company_path + path

    def request(self, method: str, path: str, *, body: Record | None = None, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, missing_ok: bool = False) -> httpx.Response:
        """One call to ``path`` under the API root (or an absolute URL, an ``@odata.nextLink``); any
        failure leaves classified as a :class:`ConnectorError`."""
        url = path if path.startswith("http") else self.settings.api_root + path
        sent = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        content = None if body is None else _JSON.encode(body)
        try:
            for attempt in (1, 2):
                token = self._tokens.get(token_key(self.settings),
                                         lambda: fetch_token(self.settings, self._http, self._now), self._now)
                response: httpx.Response = self._http.request(
                    method, url, params=params, content=content, timeout=self.settings.timeout_s,
                    headers={**sent, "Authorization": f"Bearer {token}"})
                if response.status_code == 401 and attempt == 1:
                    self._tokens.discard(token_key(self.settings), token)  # revoked or expired early: fetch a new one
                    continue
                if not (missing_ok and response.status_code == 404):
                    response.raise_for_status()
                return response
        except httpx.HTTPError as error:
            raise classify(error) from error
        raise AssertionError("unreachable")

    def get(self, path: str, params: dict[str, str] | None = None) -> Record:
        found: Record = decode(self.request("GET", path, params=params))
        return found

    def get_if_any(self, path: str, params: dict[str, str] | None = None) -> Record | None:
        response = self.request("GET", path, params=params, missing_ok=True)
        return None if response.status_code == 404 else dict(decode(response))

    def pages(self, path: str, params: dict[str, str], page_size: int | None = None) -> Iterator[list[Record]]:
        """Every page of a collection, following ``@odata.nextLink`` (``Prefer: odata.maxpagesize``
        asks for ``page_size`` records a page)."""
        url: str | None = path
        query: dict[str, str] | None = params
        while url is not None:
            records, url = self.page(url, query, page_size)
            yield records
            query = None

    def page(self, url: str, params: dict[str, str] | None, page_size: int | None) -> tuple[list[Record], str | None]:
        """One page of a collection (``url`` a path with ``params``, or a ``@odata.nextLink``), and the
        ``@odata.nextLink`` of the page after it (None on the last). A link elsewhere than the
        configured API is refused: the bearer token goes only there."""
        if url.startswith("http") and not url.startswith(self.settings.api_root.rstrip("/") + "/"):
            raise ConnectorError(Category.DATA, f"{SYSTEM} named a next page off its API")
        headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else None
        page = decode(self.request("GET", url, params=params, headers=headers))
        following = page.get("@odata.nextLink")
        return list(page.get("value", [])), (str(following) if following else None)

    def find(self, path: str, filter_: str, expand: str | None = None) -> Record | None:
        """The first record of a collection matching ``$filter``, or None."""
        params = {"$filter": filter_, "$top": "1"}
        if expand:
            params["$expand"] = expand
        found = self.get(path, params).get("value", [])
        return dict(found[0]) if found else None

    def batch(self, requests: list[Record], *, atomic: bool) -> list[Record]:
        """Run ``requests`` (``{"method", "url", "body"?, "headers"?}``, urls relative to the API root)
        in one ``$batch``, in order; with ``atomic`` all of them take effect or none does
        (``Isolation: snapshot``). The answers' bodies, in order; a failed request raises
        :class:`BatchError` with its status."""
        if len(requests) > MAX_BATCH:
            raise ConnectorError(Category.DATA, f"{SYSTEM} $batch of {len(requests)} requests: at most {MAX_BATCH}")
        numbered = [{"id": str(index), **request, "url": request["url"].lstrip("/"),
                     "headers": {"Content-Type": "application/json", **request.get("headers", {})}}
                    for index, request in enumerate(requests, 1)]
        headers = {"Isolation": "snapshot"} if atomic else None
        answers = {str(answer.get("id")): answer for answer in
                   decode(self.request("POST", "/$batch", body={"requests": numbered}, headers=headers))["responses"]}
        results = []
        for request in numbered:
            answer = answers.get(request["id"], {})
            status = int(answer.get("status", 0))
            if not 200 <= status < 300:
                body = answer.get("body") if isinstance(answer.get("body"), dict) else {}
                code = error_code((body or {}).get("error", {}).get("code"))
                category = Category.TRANSIENT if code in CONFLICT_CODES or status == 412 else status_category(status)
                raise BatchError(category, f"{SYSTEM} $batch {request['method']} {request['url'].split('?')[0]}: "
                                           f"HTTP {status}: {code}", status=status)
            results.append(answer.get("body") or {})
        return results
