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

from enum import StrEnum


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
