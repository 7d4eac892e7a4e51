"""A journey run as an operator sees it, the same for ``crossledger journeys`` and ``/v1/journeys``.

The stored record (:class:`~crossledger.core.store.base.JourneyRecord`) is the engine's working
state. An operator asks other questions of it: what the steps are, in the order the journey
declares them; how long the run has taken so far; whether it is late against its SLA; and what it
recorded, without the engine's private marks (data keys starting with ``_``). This module answers
them once, so the command line and the HTTP API can never disagree.

SLA status of a run with a deadline (``sla_s``): *overdue* while it is unfinished and past it,
*breached* when it ended past it (or the engine counted a breach), *ok* otherwise; ``None`` when the
run has no deadline.
"""

from typing import Any, Literal, get_args

import msgspec
from crossledger.core.store.base import FINISHED, AuditRecord, JourneyRecord, JourneyState, StepRecord
from crossledger.plugins.journey_definition import Journey

SlaStatus = Literal["ok", "breached", "overdue"]
JOURNEY_STATES: tuple[str, ...] = get_args(JourneyState)
"""Every state a run can be in, for validating a filter."""


def elapsed(record: JourneyRecord, now: float) -> float:
    """Seconds from start to finish, or to ``now`` for a run that has not finished."""
    end = record.finished_at if record.finished_at is not None else now
    return end - record.started_at


def sla_status(record: JourneyRecord, now: float) -> SlaStatus | None:
    if record.sla_s is None:
        return None
    late = elapsed(record, now) > record.sla_s
    if record.state not in FINISHED:
        return "overdue" if late else "ok"
    return "breached" if late or record.sla_breached else "ok"


def ordered_steps(record: JourneyRecord, journey: Journey | None) -> list[tuple[str, StepRecord]]:
    """The run's steps in the order its journey declares them; steps the installed definition does
    not name (a run started under another version) follow in the record's order."""
    declared = [step.name for step in journey.steps] if journey is not None else []
    names = [name for name in declared if name in record.steps]
    names += [name for name in record.steps if name not in declared]
    return [(name, record.steps[name]) for name in names]


def public_data(data: dict[str, Any]) -> dict[str, Any]:
    """A run's data without the engine's private marks."""
    return {key: value for key, value in data.items() if not key.startswith("_")}


def document(record: JourneyRecord, journey: Journey | None, now: float,
             trail: list[AuditRecord] | None = None) -> dict[str, Any]:
    """The run as JSON builtins: the record's fields, ``steps`` as a list in definition order (each
    with its ``name``), ``data`` without private marks, ``duration_s``, ``sla`` (``seconds`` and
    ``status``) and, when given, the audit ``trail`` of its correlation id."""
    shown: dict[str, Any] = msgspec.to_builtins(record)
    shown["steps"] = [{"name": name, **msgspec.to_builtins(step)} for name, step in ordered_steps(record, journey)]
    shown["data"] = public_data(record.data)
    shown["duration_s"] = round(elapsed(record, now), 3)
    shown["sla"] = {"seconds": record.sla_s, "status": sla_status(record, now)}
    if trail is not None:
        shown["trail"] = msgspec.to_builtins(trail)
    return shown


def duration_text(seconds: float) -> str:
    """A duration for a table: ``0.4 s``, ``42 s``, ``3 min 05 s``, ``2 h 07 min``, ``3 d 04 h``."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f} s"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86_400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if whole >= size:
            return f"{whole // size} {unit} {whole % size // smaller_size:02d} {smaller}"
    return f"{whole} s"
