"""The error taxonomy every connector classifies its failures into.

The runtime decides what to do from the category alone:

================  =====================================================================
transient         retry with exponential backoff and jitter
rate_limited      retry after the target's Retry-After (or backoff); never dead-letters early
target_down       open the target's circuit: park the work, spend no retries, drain later
ambiguous         the request may have landed (timeout after send): probe, then retry
data              dead-letter at once: the payload is wrong and retrying cannot fix it
policy            dead-letter at once: ownership rules forbid the change
auth              dead-letter at once: credentials are wrong; replay after fixing them
================  =====================================================================

A :class:`ConnectorError`'s message is a reason, kept whole in logs, dead letters and Sentry: ids
and what went wrong, never field values. When it wraps another exception, the wrapped text goes
through :func:`exception_reason`, the one rule for what of an exception's text may be written.
"""

import errno
import json
import re
import traceback
from enum import StrEnum
from typing import Final

import httpx
import msgspec
import pydantic
from crossledger.canonical.bounds import OutOfRange


class Category(StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    TARGET_DOWN = "target_down"
    AMBIGUOUS = "ambiguous"
    DATA = "data"
    POLICY = "policy"
    AUTH = "auth"

    @property
    def retryable(self) -> bool:
        return self in (Category.TRANSIENT, Category.RATE_LIMITED, Category.AMBIGUOUS, Category.TARGET_DOWN)


class ConnectorError(Exception):
    """A classified failure talking to (or about) an external system."""

    def __init__(
        self,
        category: Category,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.retry_after = retry_after
        self.status = status

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"


UNREADABLE = json.JSONDecodeError | UnicodeError
"""Failures of reading a system's *response* (garbled in transit): not the data's fault, so they are
classified like any failure of the call."""

VALUE_ERRNOS = frozenset({errno.EOVERFLOW, errno.ERANGE})
"""``OSError`` numbers that say a value does not fit (``datetime.fromtimestamp(10**18)``), never an outage."""


def translation_error(error: Exception, what: str) -> ConnectorError | None:
    """A failure of translation code (a connector's ``to_canonical`` or ``plan``) on input it did not
    expect, as a ``data`` error: retrying cannot change the input. None when ``error`` is not such a
    failure (a call to the system failed, or the response was garbled), for the connector to classify.

    The reason names ``what`` was translated and the failure. A value out of range names its field;
    otherwise the exception's message is left out (it may quote the input, which may be personal
    data) for where it was raised, and the key a ``KeyError`` missed or the path msgspec reports.
    """
    if isinstance(error, ConnectorError | UNREADABLE):
        return None
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        return None
    if isinstance(error, OSError) and error.errno not in VALUE_ERRNOS:
        return None
    if not isinstance(error, ValueError | ArithmeticError | LookupError | TypeError | OSError):
        return None
    if isinstance(error, OutOfRange):
        return ConnectorError(Category.DATA, f"{what}: {error}")
    detail = described(error) if isinstance(error, msgspec.ValidationError | KeyError) else type(error).__name__
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {frames[-1].name} ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return ConnectorError(Category.DATA, f"{what}: {detail}{where}, on a value it cannot translate")


#: Exceptions whose text is a reason, not an echo of input: the classified errors (their messages
#: name ids and what went wrong), and errors whose text describes code or a connection, not data.
REASON_TYPES: Final[tuple[type[BaseException], ...]] = (
    ConnectorError, AttributeError, NameError, ImportError, NotImplementedError, RecursionError, TimeoutError,
    ConnectionError, httpx.TimeoutException, httpx.NetworkError,
)
WITHHELD: Final = "[text withheld: it may echo input]"
_QUOTED: Final = re.compile(r"'[^']*'")


def exception_reason(error: BaseException, reason_types: tuple[type[BaseException], ...] = REASON_TYPES) -> str:
    """What of an exception's text may be written, specific but without the values it may echo:

    - all of it when its type carries reasons (``reason_types``);
    - a pydantic validation error: each problem's location and message (``customer.email: value
      is not a valid email address``), without the input;
    - a msgspec error: its message and path with the quoted values blanked
      (``Invalid enum value '…' - at `$.status```);
    - an HTTP status error: the method, the URL's path and the status (no query string, no body);
    - a ``KeyError`` naming a key spelt like a field name (``'warehouse'``); a key that is not one
      (an e-mail, a name) may be a value looked up, and is withheld;
    - :data:`WITHHELD` for anything else that has a text.
    """
    text = _text(error)
    if not text or isinstance(error, reason_types):
        return text
    if isinstance(error, pydantic.ValidationError):
        problems = error.errors(include_input=False, include_url=False)
        return "; ".join(f"{'.'.join(map(str, problem['loc'])) or '$'}: {problem['msg']}" for problem in problems)
    if isinstance(error, msgspec.MsgspecError):  # "Invalid enum value 'x' - at `$.status`": paths in backticks
        return _QUOTED.sub("'…'", text)
    if isinstance(error, httpx.HTTPStatusError):
        request, response = error.request, error.response
        return f"{request.method} {request.url.path}: HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if isinstance(error, KeyError) and len(error.args) == 1 and _field_name(error.args[0]):
        return text
    return WITHHELD


def described(error: BaseException, reason_types: tuple[type[BaseException], ...] = REASON_TYPES) -> str:
    """An exception as a reason names it: its type, then :func:`exception_reason`
    (``KeyError: 'warehouse'``, ``ValueError: [text withheld: it may echo input]``)."""
    reason = exception_reason(error, reason_types)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


def _field_name(key: object) -> bool:
    return isinstance(key, str) and key.isascii() and key.isidentifier()


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return "<str() failed>"


class SignatureError(Exception):
    """A webhook whose signature is missing, wrong or stale (the hub answers 401)."""


class PayloadError(Exception):
    """A webhook body that is not what the system sends (the hub answers 400)."""


class SchemaError(PayloadError):
    """A well-formed webhook body (valid JSON or XML) that is not one of the system's events (422)."""


class MissingDependency(Exception):
    """``plan`` needs a record the target does not have yet (a customer before its invoice).

    The runtime delivers the dependency from its golden record first, then plans again.
    """

    def __init__(self, entity_type: str, canonical_id: str) -> None:
        super().__init__(f"{entity_type} {canonical_id} must exist in the target first")
        self.entity_type = entity_type
        self.canonical_id = canonical_id


class PluginError(Exception):
    """A plugin that cannot be loaded or breaks the plugin contract."""
