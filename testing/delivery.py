"""Outbound delivery the way the hub's pipeline does it, without a hub.

:class:`Delivery` mirrors ``crossledger.core.pipeline`` ``Pipeline._apply`` and ``_perform``:

- ``plan``; on :class:`~crossledger.plugins.errors.MissingDependency` the dependency is delivered
  first (its golden record comes from the kit's ``dependency()``), then the event is planned again;
- every operation is executed with the pipeline's own deterministic idempotency key
  (``crossledger.core.pipeline.idempotency_key``), so a repeat uses the key the hub would use;
- after every write the cross-reference is stored (``refs.put``, the store's ``xref_put``), so the
  next ``plan`` sees the id the write returned;
- failures are classified as the pipeline classifies them: a :class:`ConnectorError` stands as it
  is, anything else goes through ``connector.classify``.

Every way a connector can break this flow ends in an :class:`AssertionError` that says what it did.
"""

import uuid
from dataclasses import dataclass

from crossledger.canonical import Envelope, new_envelope
from crossledger.core.pipeline import DEPENDENCY_EVENTS, MAX_DEPENDENCY_DEPTH, idempotency_key
from crossledger.plugins.connector import Connector
from crossledger.plugins.errors import ConnectorError, MissingDependency
from crossledger.plugins.types import Context, Operation, Outcome
from crossledger.testing.kit import ContractKit
from crossledger.testing.refs import MemoryRefs


@dataclass
class Delivery:
    """One connector bound to its context and cross-references, driven like the pipeline drives it."""

    kit: ContractKit
    ctx: Context
    refs: MemoryRefs

    @property
    def connector(self) -> Connector:
        return self.kit.connector

    def key(self, event: Envelope, op: Operation) -> str:
        """The idempotency key the hub uses for ``op`` of ``event`` in this connector."""
        return idempotency_key(self.connector.name, event, op)

    def plan(self, event: Envelope, depth: int = 0) -> list[Operation]:
        """The connector's plan for ``event``, with missing dependencies delivered first."""
        delivered: set[str] = set()
        while True:
            try:
                operations = self.connector.plan(self.ctx, event, self.refs)
            except MissingDependency as missing:
                self._deliver_dependency(event, missing, delivered, depth)
                continue
            except Exception as error:
                raise AssertionError(f"plan({_describe(event)}) failed: {self.classify(error)}") from error
            if not isinstance(operations, list) or not all(isinstance(op, Operation) for op in operations):
                raise AssertionError(f"plan({_describe(event)}) returned {operations!r}: it must return a list "
                                     "of crossledger.plugins.Operation")
            return operations

    def deliver(self, event: Envelope, depth: int = 0) -> list[Outcome]:
        """Plan ``event`` and execute every operation once, with the hub's keys."""
        return [self.execute(op, self.key(event, op)) for op in self.plan(event, depth)]

    def execute(self, op: Operation, key: str) -> Outcome:
        """Execute ``op`` with ``key``, which must succeed; store the cross-reference."""
        try:
            outcome = self.connector.execute(self.ctx, op, key)
        except Exception as error:
            raise AssertionError(f"execute({op.name} {op.canonical_id}) failed with no fault injected: "
                                 f"{self.classify(error)}") from error
        return self.acknowledge("execute", op, outcome)

    def failure(self, op: Operation, key: str, because: str) -> ConnectorError:
        """Execute ``op``, which must fail ``because`` of an injected fault; the classified error."""
        try:
            outcome = self.connector.execute(self.ctx, op, key)
        except Exception as error:
            return self.classify(error)
        raise AssertionError(
            f"execute({op.name}) returned {outcome!r} although {because}. A connector makes one attempt and "
            "raises: the hub classifies the failure and schedules the retry (retrying inside execute hides "
            "rate limits and outages from it)")

    def probe(self, op: Operation, key: str) -> Outcome | None:
        """Probe ``op`` as the pipeline does after an ambiguous attempt; store what it finds."""
        try:
            outcome = self.connector.probe(self.ctx, op, key)
        except Exception as error:
            raise AssertionError(f"probe({op.name}) failed: {self.classify(error)}") from error
        return None if outcome is None else self.acknowledge("probe", op, outcome)

    def acknowledge(self, step: str, op: Operation, outcome: object) -> Outcome:
        """Check what ``step`` returned and record the cross-reference, as the pipeline does."""
        if not isinstance(outcome, Outcome) or not isinstance(outcome.external_id, str) or not outcome.external_id:
            raise AssertionError(f"{step}({op.name}) returned {outcome!r}: it must return an Outcome whose "
                                 "external_id is the system's id of the record written (a non-empty string)")
        self.refs.put(op.canonical_id, op.entity_type, self.connector.name, outcome.external_id)
        return outcome

    def classify(self, error: Exception) -> ConnectorError:
        """The pipeline's view of a failure: a ConnectorError as raised, anything else classified."""
        if isinstance(error, ConnectorError):
            return error
        classified = self.connector.classify(error)
        if not isinstance(classified, ConnectorError):
            raise AssertionError(f"classify({error!r}) returned {classified!r}: it must return a ConnectorError")
        return classified

    def _deliver_dependency(self, event: Envelope, missing: MissingDependency, delivered: set[str],
                            depth: int) -> None:
        """Deliver what ``plan`` said is missing, as ``Pipeline._deliver_dependency`` does."""
        cid = missing.canonical_id
        if cid in delivered:
            raise AssertionError(
                f"plan({_describe(event)}) still raises MissingDependency({missing.entity_type!r}, {cid!r}) after "
                f"it was delivered: plan must find it with refs.external_id({cid!r}, {self.connector.name!r}), "
                "which holds the external_id the delivery's Outcome returned")
        if depth >= MAX_DEPENDENCY_DEPTH:
            raise AssertionError(f"dependencies of {_describe(event)} nest deeper than {MAX_DEPENDENCY_DEPTH}")
        entity = self.kit.dependency(missing.entity_type, cid)
        if entity is None:
            raise AssertionError(
                f"plan({_describe(event)}) needs {missing.entity_type} {cid} first, and the kit has no record for "
                "it: override ContractKit.dependency() to return the golden record the hub would deliver")
        dependency = new_envelope(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"golden/{cid}").hex,
            type=DEPENDENCY_EVENTS.get(missing.entity_type, f"{missing.entity_type}.upserted"),
            source="hub",
            source_event_id=f"golden:{cid}",
            data=entity,
            occurred_at=event.occurred_at,
            causation_id=event.id,
        )
        self.deliver(dependency, depth + 1)
        delivered.add(cid)


def _describe(event: Envelope) -> str:
    return f"{event.type} {event.subject}"
