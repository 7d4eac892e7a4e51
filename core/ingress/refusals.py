"""What the hub refuses at its edge, and how a refusal is told apart from an outage.

Senders act on the status: Zendesk retries only 409, 429, 503 and timeouts; Stripe (three days) and
Salesforce (a day) retry any failure, and show its status and message in their delivery logs. So
every refusal of the input itself is a specific 4xx naming what is wrong (:class:`Refused`), and 503
is kept for the one case a retry can cure: the broker or the store cannot be reached
(:data:`UNREACHABLE`), never an input the hub will refuse every time.

==========  ================  ==================================================================
status      reason (metric)   means for the sender
==========  ================  ==================================================================
400         malformed         the body cannot be read (not JSON or XML, nested too deep, an
                              integer past 64 bits, a lone surrogate, not UTF-8): do not retry
401         signature         the signature or bearer token is missing, wrong or stale
404         unknown           no such route or connector
408         body_timeout      the body did not arrive within ``[hub] body_timeout_s``
413         too_large         the body is above the size limit
415         content_type      the body is not of a media type this endpoint reads
422         schema            well-formed, but not what the endpoint expects
503         unavailable       the hub cannot reach its broker or store: retry later
==========  ================  ==================================================================
"""

import sqlite3
from typing import Any

import dramatiq.errors
import redis.exceptions

REASONS = {400: "malformed", 401: "signature", 403: "forbidden", 404: "unknown", 408: "body_timeout",
           413: "too_large", 415: "content_type", 422: "schema", 503: "unavailable"}

#: The failures that mean "the broker or the store cannot be reached now": only these answer 503.
UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, dramatiq.errors.BrokerConnectionError,
    sqlite3.OperationalError,  # locked beyond the busy timeout, unreadable file, disk I/O error
)

#: How deep an inbound document may nest; vendors' events are a dozen levels at most.
MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class Refused(Exception):
    """An input the hub refuses: the HTTP ``status`` and a sentence for the sender; ``logged``, what
    the log may say of it when the sentence could echo the input (a parser's words quote the body,
    which the sender may read back but the log must not keep)."""

    def __init__(self, status: int, message: str, *, logged: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.logged = message if logged is None else logged

    @property
    def reason(self) -> str:
        """A short, bounded label for metrics (see the table above)."""
        return REASONS.get(self.status, str(self.status))


def check_portable(value: Any) -> None:
    """Raise :class:`ValueError` unless a decoded JSON document can travel through the hub unchanged:
    nested at most :data:`MAX_DEPTH` deep, integers within 64 bits (what SQLite, Redis scores and the
    vendors' own APIs hold). Iterative, so a deep document cannot exhaust the stack. (The decoder
    itself refuses lone surrogates such as ``\\ud800``, which no UTF-8 store can hold.)"""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"the body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT_MIN <= item <= _INT_MAX:
            raise ValueError("the body holds an integer outside 64 bits")


def describe(error: BaseException) -> str:
    """One line naming an outage, without a traceback: ``ConnectionError: Error 111 ...``."""
    return f"{type(error).__name__}: {error}".splitlines()[0]
