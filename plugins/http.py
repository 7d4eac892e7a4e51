"""HTTP failure classification shared by connectors that speak HTTP through httpx.

Connectors call :func:`classify_http` from their ``classify`` and add what is special about their
system (Salesforce's 403 REQUEST_LIMIT_EXCEEDED, for instance) before falling back to it.

What a vendor's error body adds to a reason is its error codes and the fields they name, never its
messages: those quote the values refused ("Invalid email address: ...", "Name: Acme has already
been taken"), and a reason reaches logs, dead letters and Sentry. A body without codes adds
nothing; :func:`status_line` says what the status says, :func:`error_code` checks a code is one.
"""

import re
from email.utils import parsedate_to_datetime
from math import isfinite
from time import time
from typing import Final

import httpx
from crossledger.plugins.errors import Category, ConnectorError, described, exception_reason

_CODE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


MAX_RETRY_AFTER_S: Final = 300.0
"""The longest wait a Retry-After header can ask for: the hub's default longest backoff
(``[hub] max_backoff_ms``, 300 s). A longer one (``Retry-After: 86400``, an HTTP date next year)
would park the message for as long; the backoff then retries it again at most this far apart."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header as seconds (it may be a number or an HTTP date), at most
    :data:`MAX_RETRY_AFTER_S`; None when absent or not a finite number (``inf``, ``nan``): the
    backoff decides then."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if isfinite(seconds) else None


def status_line(response: httpx.Response) -> str:
    """``HTTP 422 Unprocessable Entity``: what a response says without its body."""
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def error_code(value: object) -> str:
    """A vendor's error code as its error body gives it (``REQUIRED_FIELD_MISSING``, ``RecordInvalid``,
    ``card_declined``); ``?`` when that slot holds anything else, such as a sentence that may quote
    a value."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "?"


def status_category(status: int) -> Category:
    if status == 429:
        return Category.RATE_LIMITED
    if status in (502, 503, 504):
        return Category.TARGET_DOWN
    if status >= 500 or status in (408, 409):
        return Category.TRANSIENT
    if status in (401, 403):
        return Category.AUTH
    return Category.DATA


def classify_http(error: Exception, describe: str = "") -> ConnectorError:
    """Map an httpx exception (or an error already classified) onto the taxonomy.

    A timeout after the request was written is *ambiguous*: the target may have committed. A
    failure to connect means the target is down. The message names the request and the status,
    never the URL's query or the body (both may hold customer data): connectors that read their
    vendor's error codes from the body add them in their own ``classify``.
    """
    if isinstance(error, ConnectorError):
        return error
    prefix = f"{describe}: " if describe else ""
    if isinstance(error, httpx.HTTPStatusError):
        response = error.response
        return ConnectorError(
            status_category(response.status_code),
            f"{prefix}{exception_reason(error)}",
            retry_after=retry_after_seconds(response),
            status=response.status_code,
        )
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ConnectorError(Category.TARGET_DOWN, f"{prefix}cannot connect: {described(error)}")
    if isinstance(error, httpx.TimeoutException | httpx.RemoteProtocolError | httpx.ReadError):
        return ConnectorError(Category.AMBIGUOUS, f"{prefix}no answer after sending: {described(error)}")
    if isinstance(error, httpx.TransportError):
        return ConnectorError(Category.TARGET_DOWN, f"{prefix}transport failure: {described(error)}")
    return ConnectorError(Category.TRANSIENT, f"{prefix}{described(error)}")
