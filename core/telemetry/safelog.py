"""Logging that carries ids, types and reasons, never customer data: safe by construction.

A message's arguments hold whole webhook payloads (names, e-mails, addresses), and several
libraries log them unasked: Dramatiq writes every failed message as ``actor(args...)`` with a
traceback, exceptions such as ``msgspec.ValidationError`` or ``KeyError`` echo the value that broke
them, and httpx and uvicorn write full URLs with their query strings. Rather than hoping each call
site is careful, :func:`install` replaces the process's log record factory, so every record is made
safe when it is created, before any handler (stderr, a file, pytest's capture, Sentry) sees it:

- a Dramatiq message becomes its id and actor: ``3f9c... (deliver)``;
- an exception argument keeps its text only if its type carries reasons by contract
  (:data:`REASON_TYPES`: the connectors' classified errors, which name ids and what went wrong);
  pydantic's and msgspec's validation errors keep where and what, without the values they quote,
  by the rule of :func:`crossledger.plugins.errors.exception_reason`, which connectors use too;
  any other shows its type alone;
- a traceback keeps its frames (files, lines, code) and each exception's type, with the same
  rule for the text; locals are never rendered;
- an URL loses its query string; any other object becomes ``<TypeName>``.

It also leaves out Dramatiq's INFO line for an exception an actor declares it throws ("Failed to
process message ... with expected exception ConnectorError."): the runtime writes what it does with
that failure, a retry or a dead letter, as one line of its own.

Strings and numbers pass as they are: the hub's own log calls give ids, names of systems and counts.
"""

import logging
import traceback
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Final

import dramatiq
import httpx
import redis.exceptions
from crossledger.plugins import errors
from dramatiq.broker import MessageProxy
from dramatiq.errors import DramatiqError

#: :data:`crossledger.plugins.errors.REASON_TYPES`, and the errors of the broker and the store
#: (their texts describe a connection, not data).
REASON_TYPES: Final[tuple[type[BaseException], ...]] = (
    *errors.REASON_TYPES, DramatiqError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)
_CAUSED: Final = "The above exception was the direct cause of the following exception:"
_DURING: Final = "During handling of the above exception, another exception occurred:"
_SCALARS: Final = (str, int, float, bool, Enum, type(None))
# Dramatiq's worker threads log through this logger; its line for an exception an actor ``throws``:
_DRAMATIQ_WORKER: Final = "dramatiq.worker.WorkerThread"
_EXPECTED_FAILURE: Final = "Failed to process message %s with expected exception %s."
# What uvicorn's access log passes: client address, method, path with query, HTTP version, status.
_ACCESS_LOG: Final = "uvicorn.access"
_ACCESS_PATH: Final = 2


def message_ref(message: dramatiq.Message[Any] | MessageProxy) -> str:
    """How a message appears in a log: its id and its actor, never its arguments."""
    return f"{message.message_id} ({message.actor_name})"


def exception_reason(error: BaseException) -> str:
    """What of an exception's text may be written: :func:`crossledger.plugins.errors.exception_reason`
    with the broker's and the store's errors among those that carry reasons."""
    return errors.exception_reason(error, REASON_TYPES)


def exception_text(error: BaseException) -> str:
    """An exception given as a log argument: its text when its type carries reasons, else its
    type and what :func:`exception_reason` keeps of its text."""
    reason = exception_reason(error)
    if isinstance(error, REASON_TYPES):
        return reason
    return f"{qualified_name(type(error))}: {reason}" if reason else qualified_name(type(error))


def format_exception(error: BaseException) -> str:
    """A traceback as ``traceback.format_exception`` writes it (causes and contexts first, frames
    without locals), each exception's text by the rule of :func:`exception_reason`."""
    parts: list[str] = []
    for index, cause in enumerate(exception_chain(error)):
        if index:
            parts.append(f"\n{_CAUSED if cause.__cause__ is not None else _DURING}\n\n")
        if cause.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_list(traceback.extract_tb(cause.__traceback__)))
        reason = exception_reason(cause)
        parts.append(f"{qualified_name(type(cause))}{': ' if reason else ''}{reason}\n")
    return "".join(parts).rstrip("\n")


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions that led to it, oldest first (as a traceback prints them)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain[::-1]


def qualified_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def safe_arg(value: object) -> object:
    """One log argument as it may be written: see the module's rules."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dramatiq.Message | MessageProxy):
        return message_ref(value)
    if isinstance(value, BaseException):
        return exception_text(value)
    if isinstance(value, httpx.URL):
        return str(value.copy_with(query=None))
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(item, _SCALARS) for item in value):
        return value  # e.g. a list of message ids or queue names
    return f"<{type(value).__name__}>"


def install() -> None:
    """Make every log record this process creates safe (idempotent; keeps any earlier factory)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "crossledger_safe", False):
        return
    factory = _safe_factory(current)
    factory.crossledger_safe = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    logging.getLogger(_DRAMATIQ_WORKER).addFilter(without_expected_failures)


def without_expected_failures(record: logging.LogRecord) -> bool:
    """A logging filter: False for Dramatiq's line about a failure the actor declared it throws.
    The runtime's own line says what happens next (``retrying message ...``, ``dead-lettered
    message ...``); Dramatiq's would only say the same attempt failed, a second time."""
    return record.msg != _EXPECTED_FAILURE


def log_to_stderr() -> None:
    """The hub's processes log like Dramatiq's workers: one line a record on stderr, INFO and up,
    made safe by :func:`install`. httpx's one INFO line per request is left out."""
    install()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [PID %(process)d] [%(threadName)s] "
                        "[%(name)s] [%(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _safe_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def safe_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if not isinstance(record.msg, str):
            record.msg = str(safe_arg(record.msg))
        if isinstance(record.args, Mapping):  # ``log.info("%(id)s", values)``, or one dict written whole
            named = isinstance(record.msg, str) and "%(" in record.msg
            record.args = ({key: safe_arg(value) for key, value in record.args.items()} if named
                           else (safe_arg(record.args),))
        elif record.args:
            record.args = tuple(_without_query(record.name, index, safe_arg(value))
                                for index, value in enumerate(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters write exc_text when it is set instead of formatting exc_info themselves.
            record.exc_text = format_exception(record.exc_info[1])
        return record

    return safe_record


def _without_query(logger: str, index: int, value: object) -> object:
    if logger == _ACCESS_LOG and index == _ACCESS_PATH and isinstance(value, str):
        return value.split("?", 1)[0]
    return value


