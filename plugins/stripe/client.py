"""Stripe's REST API as the connector calls it: settings, authenticated requests, failures classified.

Every request carries the secret key as a Bearer token and pins :data:`API_VERSION` with the
``Stripe-Version`` header; writes are form-encoded (Stripe's v1 API takes no JSON) and carry an
``Idempotency-Key``. Any failure leaves as a classified
:class:`~crossledger.plugins.errors.ConnectorError` (:func:`classify`).
"""

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.http import classify_http, error_code, status_line
from pydantic import BaseModel, ConfigDict, SecretStr

SYSTEM = "stripe"

API_VERSION = "2026-10-28.endive"
"""The Stripe API version the mapping is written against (``total_taxes``, ``invoice_payment``,
subscription periods on the items...). Pinned on every request, so an account upgrade in the
Stripe dashboard cannot change the shapes the connector reads."""

OBJECT_PATHS = {
    "charge": "charges",
    "credit_note": "credit_notes",
    "customer": "customers",
    "invoice": "invoices",
    "invoice_payment": "invoice_payments",
    "payment_intent": "payment_intents",
    "price": "prices",
    "product": "products",
    "refund": "refunds",
    "subscription": "subscriptions",
}
"""What :meth:`StripeApi.fetch` can read: a Stripe object name -> ``/v1/<collection>/{id}``."""

MAX_PAGE_SIZE = 100
"""Stripe's largest list page (``limit`` is 1 to 100; more is a 400)."""
PAGE_SIZE = MAX_PAGE_SIZE
"""The page asked for when none is given: the largest, the fewest round trips when reading everything."""


class StripeSettings(BaseModel):
    """``[connectors.stripe]``: where the API is, and the secrets that prove both directions.

    ``previous_webhook_secret`` is for a secret roll: Stripe signs with both the old and the new
    secret for a while, and the hub accepts either until the operator removes the old one.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.stripe.com"
    api_key: SecretStr
    webhook_secret: SecretStr
    previous_webhook_secret: SecretStr | None = None
    timeout_s: float = 10.0
    tolerance_s: int = 300


def _describe(response: httpx.Response) -> str:
    """``stripe: HTTP 400 Bad Request: invalid_request_error/email_invalid (email)`` from Stripe's
    error body: its type, code and parameter, not its message (``Invalid email address: ...``)."""
    try:
        error = response.json()["error"]
        kind = "/".join(error_code(part) for part in (error.get("type"), error.get("code")) if part)
        param = f" ({error['param']})" if error.get("param") else ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"stripe: {status_line(response)}"
    return f"stripe: {status_line(response)}: {kind}{param}" if kind or param else f"stripe: {status_line(response)}"


def _classify_response(classified: ConnectorError, response: httpx.Response) -> ConnectorError:
    """Refine the generic HTTP classification with what Stripe says about its own failure.

    ``Stripe-Should-Retry`` is Stripe telling its clients whether the same request can succeed
    later; it overrides the status code. ``false`` makes any failure final (``data``). ``true``
    makes a failure retryable: a status that is not retryable becomes ``transient``, while a
    status with a more specific retryable category (429 ``rate_limited``, 503 ``target_down``)
    keeps it, because that category also tells the runtime *how* to retry. Without the header the
    status decides: an ``idempotency_error`` (a key re-used with other parameters) is a 400, so
    ``data``: the same request can never succeed.
    """
    should_retry = response.headers.get("stripe-should-retry")
    if should_retry == "false":
        category = Category.DATA
    elif should_retry == "true" and not classified.category.retryable:
        category = Category.TRANSIENT
    else:
        category = classified.category
    return ConnectorError(
        category, _describe(response), retry_after=classified.retry_after, status=response.status_code
    )


def classify(error: Exception) -> ConnectorError:
    """:func:`~crossledger.plugins.http.classify_http`, refined by Stripe's own retry advice."""
    classified = classify_http(error, SYSTEM)
    if isinstance(error, httpx.HTTPStatusError):
        return _classify_response(classified, error.response)
    return classified


class StripeApi:
    """The calls the connector makes, for one account's settings over one HTTP client."""

    def __init__(self, settings: StripeSettings, http: httpx.Client) -> None:
        self._settings = settings
        self._http = http

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        return self._send("GET", path, params=params)

    def post(self, path: str, form: Mapping[str, str], idempotency_key: str) -> dict[str, Any]:
        """A write, made once per ``idempotency_key`` whatever the number of attempts."""
        return self._send("POST", path, form=form, headers={"Idempotency-Key": idempotency_key})

    def fetch(self, object_name: str, object_id: str) -> dict[str, Any]:
        """``GET /v1/<collection>/{id}`` for a Stripe object name (:data:`OBJECT_PATHS`)."""
        collection = OBJECT_PATHS.get(object_name)
        if collection is None:
            raise ConnectorError(
                Category.DATA, f"stripe cannot fetch {object_name!r}; it fetches {', '.join(OBJECT_PATHS)}"
            )
        return self.get(f"/v1/{collection}/{quote(object_id, safe='')}")

    def list_page(self, collection: str, params: Mapping[str, str] | None = None, page_size: int | None = None,
                  starting_after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``/v1/<collection>`` matching ``params``, newest first, after the object
        ``starting_after`` (Stripe's cursor pagination), and the id the next page starts after (None
        when ``has_more`` is false). A ``page_size`` above :data:`MAX_PAGE_SIZE` asks for the most
        Stripe gives (a larger ``limit`` is a 400)."""
        query: dict[str, str | int] = {**(params or {}), "limit": min(page_size or PAGE_SIZE, MAX_PAGE_SIZE)}
        if starting_after is not None:
            query["starting_after"] = starting_after
        page = self.get(f"/v1/{collection}", query)
        data = page.get("data")
        if not isinstance(data, list):
            raise ConnectorError(Category.DATA, f"stripe answered GET /v1/{collection} with no list")
        return data, (str(data[-1]["id"]) if page.get("has_more") and data else None)

    def list_all(self, collection: str, params: Mapping[str, str] | None = None,
                 page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every object of ``/v1/<collection>`` matching ``params``, newest first, page after page
        (:meth:`list_page`) until ``has_more`` is false."""
        after: str | None = None
        while True:
            data, after = self.list_page(collection, params, page_size, after)
            yield from data
            if after is None:
                return

    def search(self, collection: str, query: str) -> list[dict[str, Any]]:
        """The first page of ``GET /v1/<collection>/search?query=...`` (Stripe's search language)."""
        found = self.get(f"/v1/{collection}/search", {"query": query}).get("data")
        if not isinstance(found, list):
            raise ConnectorError(Category.DATA, f"stripe answered GET /v1/{collection}/search with no list")
        return found

    def _send(self, method: str, path: str, *, params: Mapping[str, str | int] | None = None,
              form: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        settings = self._settings
        url = f"{settings.base_url.rstrip('/')}{path}"
        try:
            response = self._http.request(
                method, url, params=params, data=form, timeout=settings.timeout_s,
                headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}",
                         "Stripe-Version": API_VERSION, **(headers or {})},
            )
            response.raise_for_status()
            record = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise classify(error) from error
        if not isinstance(record, dict):
            raise ConnectorError(Category.DATA, f"stripe answered {method} {path} with a non-object")
        return record


def search_literal(value: str) -> str:
    """``value`` as a quoted literal of Stripe's search language (quotes and backslashes escaped)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
