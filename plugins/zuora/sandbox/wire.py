"""How the Zuora sandbox speaks: errors, ids, amounts, idempotency keys and rate limits.

- **Errors** have Zuora's v1 shape, ``{"success": false, "processId": "...", "reasons": [{"code":
  53100320, "message": "..."}]}`` (:class:`ZuoraError`). The 8-digit code is a 6-digit resource code
  and a 2-digit category (20 invalid value, 22 missing field, 40 not found, 11 authentication, 70
  limit exceeded...). Many are answered with **HTTP 200**, as Zuora does: a client that trusts the
  status alone takes a refusal for a success.
- **Ids** are 32 hexadecimal characters (``8a8082c4...``); numbers have prefixes (``A00000001``,
  ``INV00000001``, ``P-00000001``).
- **Amounts** are decimals in major units, rounded to the currency's places.
- **Idempotency** (:class:`IdempotencyKeys`): the first answer to a POST or PATCH with an
  ``Idempotency-Key`` is kept 24 hours and replayed; the key reused with another request is a 422,
  and while the first request is still running a 409.
- **Rate limits** (:class:`RateLimiter`): every answer carries ``RateLimit-Limit``,
  ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds); past the limit the answer is 429 with
  ``Retry-After``.
- **Concurrent requests** (:class:`ConcurrencyLimiter`): a tenant has at most 200 uncompleted API
  requests at once (Zuora's default "total request" limit); one more is a 429 with the retry
  after Zuora's policy gives, 120 seconds.

The resource codes the sandbox puts in its errors are its own (Zuora documents the categories,
not every resource's code); the categories are Zuora's.
"""

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crossledger.canonical.money import exponent
from starlette.responses import Response

ACCOUNTS, INVOICES, PAYMENTS, CREDIT_MEMOS, REFUNDS = "500000", "590000", "700000", "610000", "620000"
ORDERS, SUBSCRIPTIONS = "520000", "530000"
AUTH = PLATFORM = "900000"
"""Resource codes of the sandbox's errors (the 6 leading digits)."""

INVALID_VALUE, UNKNOWN_FIELD, MISSING_FIELD, RULE, NOT_FOUND, LOCKED, LIMIT, AUTHENTICATION = (
    "20", "21", "22", "30", "40", "50", "70", "11")
"""Zuora's error categories (the 2 trailing digits)."""

KEPT_S = 24 * 3600
"""How long Zuora keeps an idempotency key's answer."""


class ZuoraError(Exception):
    """A refusal in Zuora's shape; ``status`` is often 200 (see the module doc)."""

    def __init__(self, resource: str, category: str, message: str, *, status: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = int(resource + category)
        self.message = message
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"success": False, "processId": process_id(), "reasons": [{"code": self.code, "message": self.message}]}


def new_id() -> str:
    """A Zuora object id: 32 hexadecimal characters."""
    return "8a8082c4" + secrets.token_hex(12)


def process_id() -> str:
    """The id Zuora gives each call (16 upper-case hexadecimal characters)."""
    return secrets.token_hex(8).upper()


def decimal(value: object, field_name: str, resource: str) -> Decimal:
    """A request's amount as a Decimal; anything else is Zuora's "invalid value" (HTTP 200)."""
    try:
        found = Decimal(str(value))
    except ArithmeticError as error:
        raise ZuoraError(resource, INVALID_VALUE, f"'{field_name}' must be a number") from error
    if not found.is_finite() or isinstance(value, bool):
        raise ZuoraError(resource, INVALID_VALUE, f"'{field_name}' must be a number")
    return found


def rounded(value: Decimal, currency: str) -> Decimal:
    """``value`` rounded to the currency's places (JPY 0, USD 2, KWD 3)."""
    return value.quantize(Decimal(1).scaleb(-exponent(currency)))


def render(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body).encode(), status, headers=headers, media_type="application/json")


@dataclass
class _Stored:
    fingerprint: tuple[Any, ...]
    at: float
    answer: tuple[int, dict[str, Any]] | None = None  # None while the first request is still running


@dataclass
class IdempotencyKeys:
    """Zuora's idempotency keys: the first answer to a key, kept :data:`KEPT_S` seconds; thread-safe."""

    clock: Callable[[], float]
    _stored: dict[str, _Stored] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, key: str, fingerprint: tuple[Any, ...]) -> tuple[int, dict[str, Any]] | None:
        """The stored answer to replay; None when this request is the key's first (now running).
        Raises a 409 while the key's first request runs, a 422 when it was another request."""
        if len(key) >= 255:
            raise ZuoraError(PLATFORM, INVALID_VALUE, "Idempotency-Key must be shorter than 255 characters.",
                             status=400)
        now = self.clock()
        with self._lock:
            stored = self._stored.get(key)
            if stored is not None and now - stored.at >= KEPT_S:
                stored = None  # removed 24 hours after it was set
            if stored is None:
                self._stored[key] = _Stored(fingerprint, now)
                return None
            if stored.fingerprint != fingerprint:
                raise ZuoraError(PLATFORM, INVALID_VALUE, "The Idempotency-Key was used with a different request.",
                                 status=422)
            if stored.answer is None:
                raise ZuoraError(PLATFORM, LOCKED, "A request with the same Idempotency-Key is in progress.",
                                 status=409)
            return stored.answer

    def finish(self, key: str, answer: tuple[int, dict[str, Any]]) -> None:
        """Keep the first answer, success or failure alike."""
        with self._lock:
            self._stored[key].answer = answer


@dataclass
class RateLimiter:
    """A fixed one-minute window of ``per_minute`` API calls (Zuora's tenant quota by default)."""

    clock: Callable[[], float]
    per_minute: int = 50_000
    _window: float = 0.0
    _used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> dict[str, str]:
        """Count one call: its ``RateLimit-*`` headers, or a 429 when the window is spent."""
        now = self.clock()
        with self._lock:
            if now - self._window >= 60:
                self._window, self._used = now - now % 60, 0
            reset = max(1, int(self._window + 60 - now))
            if self._used >= self.per_minute:
                headers = {"RateLimit-Limit": str(self.per_minute), "RateLimit-Remaining": "0",
                           "RateLimit-Reset": str(reset), "Retry-After": str(reset)}
                raise ZuoraError(PLATFORM, LIMIT, "You have exceeded the limit of API requests.", status=429,
                                 headers=headers)
            self._used += 1
            return {"RateLimit-Limit": str(self.per_minute), "RateLimit-Remaining": str(self.per_minute - self._used),
                    "RateLimit-Reset": str(reset)}


@dataclass
class ConcurrencyLimiter:
    """At most ``limit`` API requests of the tenant in flight at once; past it a 429 (category 70)
    with ``Retry-After``. Zuora counts uncompleted requests, so a request holds its place until it
    is answered (:meth:`hold`)."""

    limit: int = 200
    retry_after_s: int = 120
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A place for one request while it runs, or the 429 when every place is taken."""
        with self._lock:
            if self._in_flight >= self.limit:
                raise ZuoraError(PLATFORM, LIMIT, "You have exceeded the limit of concurrent API requests.",
                                 status=429, headers={"Retry-After": str(self.retry_after_s)})
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
