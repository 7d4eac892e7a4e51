"""Journeys: named, versioned sequences of steps that span systems, declared as data plus small functions.

A single event becomes one delivery per routed system. A *journey* is what the business runs across
systems: onboarding a customer (Stripe, then NetSuite, then Zendesk, then the ids back to
Salesforce), a subscription change, a suspension. Its steps must happen in order, one step needs
what another looked up, and a failure halfway must leave every system in a state an operator
understands. The hub's journey engine (:mod:`crossledger.core.journeys.engine`) runs them: the state of
every run is kept in the store and advanced by actors, so a crash resumes it where it stopped.

A plugin contributes journeys through the ``crossledger_journeys`` hook::

    from crossledger.canonical.entities import Customer
    from crossledger.plugins.journey_definition import Journey, Step, Trigger, Write, golden_as

    def create_billing_customer(run):
        return [Write("stripe", "customer.upserted", golden_as(run, Customer, run.subject))]

    def deactivate_billing_customer(run):
        return [Write("stripe", "customer.deactivated", golden_as(run, Customer, run.subject))]

    ONBOARDING = Journey(
        name="onboarding", version=1,
        steps=(Step("billing", create_billing_customer, compensate=deactivate_billing_customer),),
        triggers=(Trigger("customer.upserted", source="salesforce"),),
        covers=("stripe",),
    )

**Systems by role.** Wherever a journey names a system (a trigger's ``source``, ``covers``, a
:class:`Write`'s target and links, ``configured``, ``external_id``, ``fetch``, ``contract_terms``,
``link``) it may name a role, a system kind (``crm``, ``billing``, ``erp``, ``support``), for
whichever connector the configuration has play it (``[topology]``, see
:mod:`crossledger.core.hub.roles`). The built-in journeys name roles only, so they run on any
billing and ERP pair.

**Steps.** A step's ``run`` does its lookups inline (reads from the store or from a system) and
returns the :class:`Write` records it wants made. The engine delivers each through the hub's
delivery path, with an idempotency key of the run, step and phase, so every write is made
once in effect however often the step runs; the step is done when every write is acknowledged. A
step that returns nothing is done at once. ``run`` may record what later steps need in
``run.data`` (JSON values): the engine persists it with the step.

**Failure.** A write the target refuses for good, or a ``run`` that raises
:class:`StepFailed` (or any error but a transient one: a defect is not retried), fails the
step. ``on_failure`` decides: ``compensate`` runs the ``compensate`` function of every step
already done, last first, and ends the journey *compensated*; ``park`` stops the journey for
an operator (``crossledger journeys resume``).
Transient failures (a timeout, a rate limit) are retried with the hub's backoff; a target whose
circuit is open holds the step *queued* without spending retries, and it goes on when the target
is back.

**Entitlements.** A step that writes the subject's support entitlement says so
(``Step(..., entitles=True)``): the operator console shows a run stopped there at the order-to-cash
chain's entitlement step, and nowhere else.

**Order.** A step waits for the steps named in ``after``; by default, for every step before it. A
step that does not depend on a slow one (refreshing a support entitlement while the ERP is down)
names only what it needs, and goes ahead.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from crossledger.canonical import ContractTerms, Entity, Envelope
from crossledger.plugins.types import SystemKind

CRM, BILLING, ERP, SUPPORT = (SystemKind.CRM.value, SystemKind.BILLING.value, SystemKind.ERP.value,
                              SystemKind.SUPPORT.value)
"""The roles a journey names its systems by (see *Systems by role*)."""

NOT_PAYING = ("past_due", "unpaid", "paused")
"""The canonical subscription statuses of a customer not paying for it (Stripe pauses a subscription
whose trial ended without a way to pay; Zuora's collections suspend one): such a subscription starts
the suspension journey, and the subscription journey leaves the customer's standing in support to it."""


class OnFailure(StrEnum):
    COMPENSATE = "compensate"
    PARK = "park"


@dataclass(frozen=True)
class Write:
    """One canonical event for one system, delivered by the engine with the hub's guarantees.

    ``links`` are other systems' ids the target is to record for the entity where the hub's own
    cross-references do not hold them (a second CRM account of a company the hub already knows is
    told the ids of that company's billing and ERP records).

    ``decides`` sends the fields the target owns as the entity has them: the journey decided them
    (a new customer's subsidiary and terms in the ERP). Otherwise, as for any delivery, they are
    left out, so that no copy overwrites the system of record.
    """

    target: str
    event_type: str
    entity: Entity
    links: Mapping[str, str] = field(default_factory=dict)
    decides: bool = False


class StepFailed(Exception):
    """Raised by a step's ``run`` for a failure no retry can fix (invalid input, a missing
    mapping); the message is the reason an operator reads."""


class JourneyInputError(ValueError):
    """The input of a journey started by hand (``POST /v1/journeys/<name>``) is not acceptable."""


@dataclass(frozen=True)
class PastRun:
    """An earlier run of a journey, as a trigger or a step may need to know it."""

    state: str
    started_at: float
    data: Mapping[str, Any]


class HubView(Protocol):
    """What a trigger may read of the hub to decide whether a journey starts."""

    def golden(self, canonical_id: str) -> Entity | None:
        """The hub's current record of a canonical entity."""

    def external_id(self, canonical_id: str, system: str) -> str | None:
        """The id ``system`` has for the canonical record, if the hub knows it."""

    def latest(self, journey: str, subject: str) -> PastRun | None:
        """The most recently started run of ``journey`` about ``subject``, whatever its state."""


class JourneyRun(HubView, Protocol):
    """What a step function sees of its journey and of the hub."""

    @property
    def id(self) -> str: ...

    @property
    def subject(self) -> str:
        """The canonical id the journey is about (a customer, a subscription, a refund...)."""

    @property
    def data(self) -> dict[str, Any]:
        """The journey's inputs and what its steps recorded; a step may add JSON values to it."""

    def configured(self, system: str) -> bool:
        """Whether a connector of that name is configured (a step for a missing system is skipped)."""

    def save(self, entity: Entity, groups: tuple[str, ...] | None = None) -> None:
        """Write the hub's record of an entity: with ``groups``, only those field groups, laid over
        the record as it is at that moment (a source's change made meanwhile is kept). The record
        keeps its version: the hub's decision is not a newer version of what a source said."""

    def link(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        """Record that ``system`` knows the canonical record as ``external_id``."""

    def fetch(self, system: str, entity_type: str, external_id: str) -> dict[str, Any]:
        """Read one record from a system as it has it now (a lookup); classified errors on failure."""

    def contract_terms(self, system: str, customer_id: str) -> ContractTerms:
        """The contract terms ``system`` holds on its customer ``customer_id`` now (the connector's
        ``contract_terms``); classified errors on failure."""

    def settings(self) -> Mapping[str, Any]:
        """This journey's ``[journeys.<name>]`` configuration table (empty when there is none)."""

    def remember(self, canonical_id: str, entity_type: str, key: str, value: str) -> str:
        """Record ``canonical_id`` under an identity key (``tax-id``, ``domain``...) unless another
        record already holds it; returns the holder (``canonical_id`` when it was free). Atomic
        across workers, so two runs for the same company find each other."""


StepFunction = Callable[[JourneyRun], Sequence[Write] | None]
EntityT = TypeVar("EntityT", bound=Entity)


def golden_as(hub: HubView, kind: type[EntityT], canonical_id: str) -> EntityT:
    """The hub's record of ``canonical_id``, which a step cannot go on without: :class:`StepFailed`
    when the hub has no such ``kind``."""
    found = hub.golden(canonical_id)
    if not isinstance(found, kind):
        raise StepFailed(f"the hub has no {kind.kind()} {canonical_id}")
    return found


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFunction
    compensate: StepFunction | None = None
    on_failure: OnFailure = OnFailure.COMPENSATE
    after: tuple[str, ...] | None = None
    """Steps that must be done before this one; ``None``: every step declared before it."""
    entitles: bool = False
    """Whether this step writes the subject's support entitlement (provisions, suspends or
    reinstates it): the operator console's order-to-cash chain and its payment-to-entitlement SLA
    read a run stopped at, or done with, such a step as the entitlement's state."""


def _always(event: Envelope, hub: HubView) -> bool:
    return True


def _subject(event: Envelope) -> str:
    return event.subject


@dataclass(frozen=True)
class Trigger:
    """Canonical events that start the journey.

    ``source`` is a connector name, a role (``billing``: whichever connector plays it) or ``*``.
    ``starts(event, hub)`` decides, reading what it needs of the hub (the event is already in the
    hub's records). ``subject`` is what the run is about (the event's subject, or say the customer
    of an invoice). ``key`` names the run: one run per
    key, so the same trigger delivered twice starts one journey. ``inputs`` is the run's initial
    ``data``.
    """

    event_type: str
    source: str = "*"
    starts: Callable[[Envelope, HubView], bool] = _always
    subject: Callable[[Envelope], str] = _subject
    key: Callable[[Envelope], str] = _subject
    inputs: Callable[[Envelope], dict[str, Any]] | None = None

    def matches(self, event: Envelope, playing: str | None = None) -> bool:
        """Whether the event starts this trigger; ``playing``: the role (kind) its source plays."""
        return event.type == self.event_type and self.source in ("*", event.source, playing)


@dataclass(frozen=True)
class Journey:
    """A named, versioned sequence of steps.

    ``covers`` names the systems whose routes for the trigger events the journey takes over: while a
    run for the subject is under way, and to a system that does not have the subject, those
    deliveries are its steps' to make, not the routes' (after onboarding, or for a customer born in
    billing that no run ever makes, profile changes flow by the routes).
    ``sla_s``: the business deadline from start to completion; breaches are counted and shown.
    ``start`` turns the body of ``POST /v1/journeys/<name>`` into the run's subject, key and data,
    raising :class:`JourneyInputError`; a journey without it cannot be started by hand.
    """

    name: str
    version: int
    steps: tuple[Step, ...]
    triggers: tuple[Trigger, ...] = ()
    covers: tuple[str, ...] = ()
    sla_s: float | None = None
    description: str = ""
    start: Callable[[dict[str, Any]], "Start"] | None = None

    @property
    def entitlement_steps(self) -> frozenset[str]:
        """The names of the steps that write the subject's support entitlement (:attr:`Step.entitles`)."""
        return frozenset(step.name for step in self.steps if step.entitles)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"journey {self.name} has no step {name!r}")

    def needs(self, name: str) -> tuple[str, ...]:
        """The steps ``name`` waits for."""
        names = [step.name for step in self.steps]
        declared = self.step(name).after
        return tuple(names[:names.index(name)]) if declared is None else declared


@dataclass(frozen=True)
class Start:
    """A run asked for by hand: what it is about, its key (one run per key) and its data."""

    subject: str
    key: str
    data: dict[str, Any]
