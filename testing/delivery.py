"""Outbound delivery through the hub's own pipeline, for the contract suite and connector tests.

:class:`Delivery` binds the connector under test into a real
:class:`~crossledger.core.hub.pipeline.Pipeline` over an in-memory SQLite store, so what the suite
checks is what the hub does, not a copy of it:

- :meth:`Delivery.deliver` is ``Pipeline.deliver``: ``plan``; on
  :class:`~crossledger.plugins.errors.MissingDependency` the dependency delivered first from its
  golden record (which the kit's ``dependency()`` supplies, in place of the hub's sources); every
  operation executed once in effect with the hub's idempotency key; the cross-reference stored.
- :meth:`Delivery.plan` runs the same pipeline up to the event's own plan: its dependencies are
  delivered, and the operations it would execute are handed back unexecuted, so a test can
  execute them one at a time, under faults.
- :meth:`Delivery.execute`, :meth:`failure` and :meth:`probe` make one call to the connector, as
  a retry or a probe after a lost answer would, with the key :meth:`Delivery.key` gives.
- :meth:`Delivery.failing` is ``Pipeline.deliver`` with a fault set off just before its first
  ``execute``: the failure is put on record as the hub puts it, so the next :meth:`deliver` is the
  hub's retry (under a new key after an answer that the call failed, which a system such as Stripe
  or Zuora stores under the key it came for).

The pipeline sees the connector through :class:`_Checked`, which holds it to the contract at the
boundary (a list of operations from ``plan``, an ``Outcome`` with an id from ``execute``, a
``ConnectorError`` from ``classify``). Every way a connector can break this flow ends in an
:class:`AssertionError` that says what it did.
"""

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, cast

import msgspec
from crossledger.canonical import Envelope, encode_envelope
from crossledger.core.hub.pipeline import Bound, Pipeline, idempotency_key
from crossledger.core.hub.policy import OwnershipPolicy
from crossledger.core.hub.refs import StoreRefs
from crossledger.core.hub.router import Router
from crossledger.core.store import Golden, Store, open_store
from crossledger.plugins import hookimpl
from crossledger.plugins.connector import Connector
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.types import Context, Operation, Outcome, Refs
from crossledger.testing.kit import ContractKit

LEASE_TTL_S = 30.0
"""How long the pipeline's per-record lease lasts: one delivery of the suite fits in it many times."""

KIT_VERSION = 0
"""The version of the golden records the kit supplies: older than any event, so none is stale."""


class _Breach(ConnectorError):
    """The connector broke the contract at the pipeline's boundary; raised through the pipeline as a
    ``data`` failure (nothing retries it), and turned into an AssertionError by :class:`Delivery`."""

    def __init__(self, message: str) -> None:
        super().__init__(Category.DATA, message)


class _Planned(ConnectorError):
    """The event :meth:`Delivery.plan` asked for is planned: stop the pipeline before it executes."""

    def __init__(self, operations: list[Operation]) -> None:
        super().__init__(Category.DATA, "planned; the contract suite executes the operations itself")
        self.operations = operations


class _Checked:
    """The connector under test as the pipeline sees it: the same connector, held to the contract
    where the pipeline relies on it, with the kit standing in for the hub's golden records."""

    def __init__(self, kit: ContractKit, store: Store, refs: Refs) -> None:
        self.connector = kit.connector
        self.kit = kit
        self.store = store
        self.refs = refs
        self.step = "nothing yet"
        """The connector call under way, or the last one: what a failure is reported against."""
        self.capture: str | None = None
        """The id of the event whose plan :meth:`Delivery.plan` wants back instead of executed."""
        self.before_execute: Callable[[], None] | None = None
        """Set off (once) just before the next ``execute``: a fault :meth:`Delivery.failing` injects."""

    def __getattr__(self, name: str) -> Any:  # name, kind, capabilities, to_canonical, ...
        return getattr(self.connector, name)

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        self.step = f"plan({_describe(event)})"
        try:
            operations = self.connector.plan(ctx, event, refs)
        except MissingDependency as missing:
            self._provide(missing)
            raise
        if not isinstance(operations, list) or not all(isinstance(op, Operation) for op in operations):
            raise _Breach(f"{self.step} returned {operations!r}: it must return a list of "
                          "crossledger.plugins.Operation")
        if event.id == self.capture:
            raise _Planned(operations)
        return operations

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        self.step = f"execute({op.name} {op.canonical_id})"
        inject, self.before_execute = self.before_execute, None
        if inject is not None:
            inject()
        return self._outcome(self.connector.execute(ctx, op, idempotency_key))

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        self.step = f"probe({op.name})"
        outcome = self.connector.probe(ctx, op, idempotency_key)
        return None if outcome is None else self._outcome(outcome)

    def classify(self, error: Exception) -> ConnectorError:
        classified = self.connector.classify(error)
        if not isinstance(classified, ConnectorError):
            return _Breach(f"classify({error!r}) returned {classified!r}: it must return a ConnectorError")
        return classified

    def _outcome(self, outcome: object) -> Outcome:
        if not isinstance(outcome, Outcome) or not isinstance(outcome.external_id, str) or not outcome.external_id:
            raise _Breach(f"{self.step} returned {outcome!r}: it must return an Outcome whose external_id is "
                          "the system's id of the record written (a non-empty string)")
        return outcome

    def _provide(self, missing: MissingDependency) -> None:
        """Give the pipeline the golden record of what ``plan`` says is missing, from the kit."""
        cid = missing.canonical_id
        if self.refs.external_id(cid, self.connector.name) is not None:
            raise _Breach(
                f"{self.step} raises MissingDependency({missing.entity_type!r}, {cid!r}) although it was "
                f"delivered: plan must find it with refs.external_id({cid!r}, {self.connector.name!r}), which "
                "holds the external_id the delivery's Outcome returned")
        if self.store.golden_get(cid) is not None:
            return
        entity = self.kit.dependency(missing.entity_type, cid)
        if entity is None:
            raise _Breach(f"{self.step} needs {missing.entity_type} {cid} first, and the kit has no record for it: "
                          "override ContractKit.dependency() to return the golden record the hub would deliver")
        self.store.golden_put(Golden(canonical_id=cid, entity_type=entity.kind(), version=KIT_VERSION,
                                     data=msgspec.to_builtins(entity)))


class _Delivered:
    """The pipeline's ``crossledger_event_delivered`` hook: the outcomes of each delivery."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, Outcome]] = []

    @hookimpl
    def crossledger_event_delivered(self, event: Envelope, target: str, outcome: Outcome) -> None:
        self.outcomes.append((event.id, outcome))


class Delivery:
    """The connector under test bound to ``ctx`` in a pipeline of its own; :meth:`close` when done
    (or use it as a context manager). Over ``store`` when given (which it then leaves open), so
    several deliveries share one hub's cross-references; a new one over its own store knows none."""

    def __init__(self, kit: ContractKit, ctx: Context, store: Store | None = None) -> None:
        self.kit = kit
        self.ctx = ctx
        self._owns_store = store is None
        self.store = open_store("sqlite:///:memory:") if store is None else store
        self.refs = StoreRefs(self.store)
        """The hub's cross-references over this delivery's store, as ``plan`` and ``to_canonical`` get them."""
        self._checked = _Checked(kit, self.store, self.refs)
        self._delivered = _Delivered()
        plugins = CrossledgerPluginManager()
        plugins.register(self._delivered, name="contract-outcomes")
        name = kit.connector.name
        self._bound = Bound(cast(Connector, self._checked), ctx)
        self._pipeline = Pipeline(
            store=self.store, plugins=plugins, connectors={name: self._bound},
            policy=OwnershipPolicy([], {name: kit.connector.kind}),  # no owner's fields held back
            router=Router([], {}, {name}),  # no other system to tell of new ids
            lease_ttl_s=LEASE_TTL_S,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    @property
    def connector(self) -> Connector:
        return self.kit.connector

    def key(self, event: Envelope, op: Operation) -> str:
        """The idempotency key the hub uses for ``op`` of ``event`` in this connector."""
        return idempotency_key(self.connector.name, event, op)

    def plan(self, event: Envelope) -> list[Operation]:
        """The operations the pipeline would execute for ``event``, its dependencies delivered first."""
        self._checked.capture = event.id
        try:
            self._run(event)
        except _Planned as planned:
            return planned.operations
        finally:
            self._checked.capture = None
        raise AssertionError(f"the hub did not plan {_describe(event)}: a newer version of {event.subject} was "
                             "delivered here already, and it drops an older one as stale")

    def deliver(self, event: Envelope) -> list[Outcome]:
        """Deliver ``event`` as the hub does; the outcomes of its own operations (none when the hub
        drops it as stale, or ``plan`` has nothing to do)."""
        self._delivered.outcomes.clear()
        self._run(event)
        return [outcome for delivered, outcome in self._delivered.outcomes if delivered == event.id]

    def execute(self, op: Operation, key: str) -> Outcome:
        """Execute ``op`` with ``key``, which must succeed; store the cross-reference."""
        try:
            outcome = self._checked.execute(self.ctx, op, key)
        except Exception as error:
            raise AssertionError(f"{self._checked.step} failed with no fault injected: "
                                 f"{self.classify(error)}") from error
        return self._acknowledged(op, outcome)

    def failure(self, op: Operation, key: str, because: str) -> ConnectorError:
        """Execute ``op``, which must fail ``because`` of an injected fault; the classified error."""
        try:
            outcome = self._checked.execute(self.ctx, op, key)
        except Exception as error:
            return self.classify(error)
        raise AssertionError(
            f"execute({op.name}) returned {outcome!r} although {because}. A connector makes one attempt and "
            "raises: the hub classifies the failure and schedules the retry (retrying inside execute hides "
            "rate limits and outages from it)")

    def failing(self, event: Envelope, inject: Callable[[], None], because: str) -> ConnectorError:
        """Deliver ``event`` as the hub does, with ``inject`` (a fault in the sandbox) set off just
        before its first ``execute``, which must then fail ``because`` of it; the failure as the
        pipeline raises it, on record as the hub keeps it, so :meth:`deliver` is the hub's retry."""
        self._checked.before_execute = inject
        try:
            self._pipeline.deliver(self.connector.name, encode_envelope(event))
        except _Breach as error:
            raise AssertionError(error.message) from error
        except ConnectorError as error:
            if self._checked.before_execute is not None:
                raise AssertionError(f"delivering {_describe(event)} failed at {self._checked.step}, before any "
                                     f"write: {error}") from error
            return error
        finally:
            self._checked.before_execute = None
        raise AssertionError(
            f"delivering {_describe(event)} succeeded although {because}. A connector makes one attempt and "
            "raises: the hub classifies the failure and schedules the retry (retrying inside execute hides "
            "rate limits and outages from it)")

    def probe(self, op: Operation, key: str) -> Outcome | None:
        """Probe ``op`` as the pipeline does after an ambiguous attempt; store what it finds."""
        try:
            outcome = self._checked.probe(self.ctx, op, key)
        except Exception as error:
            raise AssertionError(f"probe({op.name}) failed: {self.classify(error)}") from error
        return None if outcome is None else self._acknowledged(op, outcome)

    def classify(self, error: Exception) -> ConnectorError:
        """What the hub makes of a failure: a ConnectorError as raised, anything else as the connector
        classifies it."""
        classified = Pipeline.classified(self._bound, error)
        if isinstance(classified, _Breach):
            raise AssertionError(classified.message) from error
        return classified

    def _acknowledged(self, op: Operation, outcome: Outcome) -> Outcome:
        """The cross-reference of a write, stored as the pipeline stores it, so the next plan sees it."""
        self.store.xref_put(op.canonical_id, op.entity_type, self.connector.name, outcome.external_id)
        return outcome

    def _run(self, event: Envelope) -> None:
        """``Pipeline.deliver`` of ``event``; its failure as an AssertionError naming the connector's step."""
        try:
            self._pipeline.deliver(self.connector.name, encode_envelope(event))
        except _Planned:
            raise
        except ConnectorError as error:
            if isinstance(error, _Breach):
                raise AssertionError(error.message) from error
            raise AssertionError(f"delivering {_describe(event)} failed at {self._checked.step}: {error}") from error


def _describe(event: Envelope) -> str:
    return f"{event.type} {event.subject}"
