"""The Flows page: each connected system's traffic and health, and the rules the hub syncs by.

Per system, over the last :data:`WINDOW_S` of the outcome ledger (at most :data:`SCANNED` entries):
messages in (inbound messages it sent the hub) and out (messages delivered to it), the error rate
(of what was meant for it, the share that ended as a dead letter or conflict), the backlog (deliveries
parked on its open circuit, and those still pending), its circuit, its last success and its last
failure with the reason. Below: the system-of-record rules (:meth:`OwnershipPolicy.effective`) and
the routes to the configured systems, as tables a person can read.
"""

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crossledger.core.console.access import Access
from crossledger.core.console.render import page
from crossledger.core.console.sessions import Session
from crossledger.core.store.base import Circuit, DeadLetter, OutcomeRecord
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

WINDOW_S = 3600.0
SCANNED = 2000


@dataclass(frozen=True)
class Flow:
    system: str
    kind: str
    received: int
    delivered: int
    failed: int
    backlog: int
    circuit: Circuit
    last_success: float | None
    last_failure: DeadLetter | None

    @property
    def error_rate(self) -> float | None:
        meant = self.delivered + self.failed
        return self.failed / meant if meant else None


def _meant_for(outcome: OutcomeRecord, system: str) -> bool:
    return any(token.startswith(f"{system}|") for token in [*outcome.pending, *outcome.parts])


def flows(runtime: "Runtime", now: float) -> list[Flow]:
    store = runtime.store
    recent = [o for o in store.outcomes(limit=SCANNED) if o.received_at >= now - WINDOW_S]
    pending = store.outcomes(outcome="pending", limit=SCANNED)
    delivered_last = store.outcomes(outcome="delivered", limit=SCANNED)
    found = []
    for system, bound in sorted(runtime.connectors.items()):
        mine = [o for o in recent if _meant_for(o, system)]
        delivered = [o for o in mine if o.outcome == "delivered" and system in o.targets]
        failed = [o for o in mine if o.outcome in ("dead_letter", "conflict")]
        waiting = sum(1 for o in pending if _meant_for(o, system))
        last_failure = next(iter(store.dlq_list(state=None, target=system, limit=1)), None)
        successes = [o.updated_at for o in delivered_last if system in o.targets]
        found.append(Flow(system=system, kind=str(bound.connector.kind),
                          received=sum(1 for o in recent if o.source == system), delivered=len(delivered),
                          failed=len(failed), backlog=store.parked_count(system) + waiting,
                          circuit=store.circuit_get(system), last_success=max(successes, default=None),
                          last_failure=last_failure))
    return found


class FlowPages:
    def __init__(self, runtime: "Runtime", access: Access) -> None:
        self.runtime = runtime
        self.access = access

    async def show(self, request: Request, session: Session) -> Response:
        shown = await run_in_threadpool(flows, self.runtime, time.time())
        configured = self.runtime.connectors
        routes = {event: [target for target in targets if target in configured]
                  for event, targets in self.runtime.router.table().items()}
        return page(request, "flows.html", session, flows=shown, window_h=WINDOW_S / 3600,
                    rules=self.runtime.policy.effective(), routes={e: t for e, t in routes.items() if t})

    def routes(self) -> list[Route]:
        return [Route("/flows", self.access.viewing(self.show), methods=["GET"])]
