"""Alerting through Sentry, when ``[hub] sentry_dsn`` is set.

What pages an operator is what needs one: each dead letter (category, target and reason as tags),
each journey that is compensated, parked, or held because a system is down, and the critical log
written when a message could be neither retried nor dead-lettered. Dramatiq's per-attempt logs
are left out (a retried transient failure is not news).

Customer and billing data stay in the hub: events carry ids, types and reasons, never message
bodies. That holds by construction, on every SDK version the hub allows (2.x and 3.x differ in
what they collect unasked: 3.x attaches stack traces with local variables to every message and
turned the logging integration's ``level`` into a log stream with breadcrumbs on by default):

- :func:`scrubbed` (``before_send``) rebuilds each event from an allowlist of fields: message,
  tags, fingerprint, level, release and such; exceptions keep their types and frames without
  local variables, and their text only by the rule of
  :func:`crossledger.core.telemetry.safelog.exception_reason`.
  Breadcrumbs, threads, extra, request and user data never leave;
- breadcrumbs and Sentry logs are dropped where they are made (``before_breadcrumb``,
  ``before_send_log``), and the logging integration turns every channel but CRITICAL events off;
- log records are already safe when the integration sees them (:mod:`crossledger.core.telemetry.safelog`).
"""

import inspect
import logging
from typing import Any, Final, cast

import sentry_sdk
from crossledger.core.telemetry.safelog import exception_chain, exception_reason, safe_arg
from crossledger.plugins.errors import WITHHELD
from sentry_sdk.integrations.logging import LoggingIntegration

# What an event may carry out of the hub; anything else an SDK adds is dropped.
EVENT_FIELDS: Final = frozenset({
    "event_id", "timestamp", "level", "logger", "platform", "sdk", "release", "environment", "dist", "server_name",
    "message", "logentry", "tags", "fingerprint", "exception", "contexts",
})
CONTEXTS: Final = frozenset({"trace", "runtime", "os"})
FRAME_FIELDS: Final = frozenset({
    "filename", "abs_path", "module", "function", "lineno", "colno", "in_app", "platform",
    "pre_context", "context_line", "post_context",  # lines of the hub's code, not data
})


def init_sentry(dsn: str, environment: str | None = None) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        default_integrations=False,
        attach_stacktrace=False,
        integrations=[critical_logs_only()],
        # The SDK types events as TypedDicts that differ between versions; these take plain dicts.
        before_send=cast(Any, scrubbed),
        before_breadcrumb=dropped,
        before_send_log=dropped,
    )


def critical_logs_only() -> LoggingIntegration:
    """The logging integration with CRITICAL records as events and every other channel off.

    The channels' names differ by SDK version (2.x: ``level`` for breadcrumbs and
    ``sentry_logs_level``; 3.x: ``level`` for Sentry logs and ``breadcrumb_level``): each parameter
    but ``event_level`` is one, so all are set to None.
    """
    channels = [name for name in inspect.signature(LoggingIntegration).parameters if name != "event_level"]
    return LoggingIntegration(**dict.fromkeys(channels), event_level=logging.CRITICAL)


def scrubbed(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """``before_send``: the event rebuilt from the fields that carry ids, types and reasons."""
    kept = {field: value for field, value in event.items() if field in EVENT_FIELDS}
    if isinstance(kept.get("contexts"), dict):
        kept["contexts"] = {name: value for name, value in kept["contexts"].items() if name in CONTEXTS}
    if isinstance(kept.get("logentry"), dict):
        entry = kept["logentry"]
        kept["logentry"] = {"message": entry.get("message"), "params": _params(entry.get("params") or [])}
        kept.pop("message", None)  # the logging integration's formatted copy of the same line
    if isinstance(kept.get("exception"), dict):
        error = (hint.get("exc_info") or (None, None, None))[1]
        kept["exception"] = {"values": [_exception(value, error) for value in kept["exception"].get("values", [])]}
    return kept


def dropped(item: Any, hint: Any) -> None:
    """``before_breadcrumb`` and ``before_send_log``: breadcrumbs and logs never leave."""
    return None


def _params(params: dict[str, Any] | list[Any]) -> dict[str, Any] | list[Any]:
    """A log line's arguments (a list, or a dict for ``%(name)s``), each as a log may write it."""
    if isinstance(params, dict):
        return {key: safe_arg(value) for key, value in params.items()}
    return [safe_arg(value) for value in params]


def _exception(value: dict[str, Any], error: BaseException | None) -> dict[str, Any]:
    """One exception of an event: type, module, mechanism and frames; its text by the reason rule."""
    frames = (value.get("stacktrace") or {}).get("frames") or []
    kept: dict[str, Any] = {field: value[field] for field in ("type", "module", "mechanism") if field in value}
    kept["stacktrace"] = {"frames": [{k: v for k, v in frame.items() if k in FRAME_FIELDS} for frame in frames]}
    same = [cause for cause in exception_chain(error) if type(cause).__name__ == value.get("type")] if error else []
    if same:
        kept["value"] = exception_reason(same[0])
    elif value.get("value"):
        kept["value"] = WITHHELD
    return kept


def dead_lettered(letter_id: str, category: str, target: str | None, reason: str) -> None:
    """One Sentry event per dead letter, grouped by category and target."""
    if sentry_sdk.get_client().is_active():
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("category", category)
            scope.set_tag("target", target or "-")
            scope.set_tag("dead_letter", letter_id)
            scope.fingerprint = ["dead-letter", category, target or "-"]
            sentry_sdk.capture_message(f"dead letter ({category}): {reason}", level="error")


def journey(name: str, run_id: str, what: str, reason: str) -> None:
    """One Sentry event per journey run compensated, parked or queued, grouped by journey and outcome."""
    if sentry_sdk.get_client().is_active():
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("journey", name)
            scope.set_tag("journey_run", run_id)
            scope.fingerprint = ["journey", name, what]
            sentry_sdk.capture_message(f"journey {name} {what}: {reason}", level="warning")
