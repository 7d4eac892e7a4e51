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
"""

import errno
import json
import traceback
from enum import StrEnum

import msgspec
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
    if isinstance(error, msgspec.ValidationError | KeyError):
        detail = f"{type(error).__name__} {error}"
    else:
        detail = type(error).__name__
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {frames[-1].name} ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return ConnectorError(Category.DATA, f"{what}: {detail}{where}, on a value it cannot translate")


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
