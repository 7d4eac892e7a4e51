"""The Dramatiq actors. Thin on purpose: each one calls into the runtime.

=============  ==================================================================================
ingest         an inbound event -> canonical events -> one ``deliver`` message per routed target
deliver        one canonical event into one target system
probe_target   half-open circuit: try one parked delivery; on success close and drain
drain_target   re-enqueue what is parked for a target
replay         deliver logged canonical events again (by source, type, time; effects made are skipped)
poll           ask a pull system (NetSuite) for its changes since the last cursor; admit them
journey        advance one journey run: apply a step's report, start the steps that can go
=============  ==================================================================================

Retries and dead letters are not the actors' business: failures leave as classified errors and the
Governance middleware applies the policy (the actors declare those errors as ``throws``: expected,
so Dramatiq does not log each one as an ERROR with a traceback). Actors are declared per broker by
:func:`declare`, so tests and the embedded mode can build several runtimes in one process.
"""

from collections.abc import Callable
from typing import Any

import dramatiq
from crossledger.core.journeys import Report
from crossledger.core.pipeline import JourneyReply
from crossledger.core.runtime import DELIVER, DRAIN, INGEST, JOURNEY, POLL, PROBE, QUEUES, REPLAY, Runtime
from crossledger.plugins.errors import ConnectorError


def declare(runtime: Runtime) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare the hub's actors on ``runtime.broker`` and return them by name."""

    def ingest(source: str, event: dict[str, Any], correlation_id: str, received_at: float) -> None:
        runtime.ingested(source, event, correlation_id, received_at)

    def deliver(target: str, envelope: dict[str, Any], reply: JourneyReply | None = None) -> None:
        runtime.deliver(target, envelope, reply)

    def journey(run_id: str, report: Report | None = None) -> None:
        runtime.journeys.advance(run_id, report)

    def poll(source: str) -> None:
        runtime.poll(source)

    def replay(selection: dict[str, Any]) -> None:
        runtime.replay_events(**selection)

    functions: dict[str, Callable[..., None]] = {
        INGEST: ingest,
        DELIVER: deliver,
        PROBE: runtime.probe_target,
        DRAIN: runtime.drain_target,
        REPLAY: replay,
        POLL: poll,
        JOURNEY: journey,
    }
    return {
        name: dramatiq.Actor(fn, broker=runtime.broker, actor_name=name, queue_name=QUEUES[name], priority=0,
                             options={"throws": (ConnectorError,)})
        for name, fn in functions.items()
    }
