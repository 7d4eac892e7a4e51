"""The order-to-cash chain: customer → subscription → invoice → payment → ERP posting → entitlement,
as one row per customer or per invoice, with each step's records, each system's state of them, and
the first step that is stuck.

Derived from the store alone, at the time the page is read:

- the records: the customer's golden record and those that name it (:meth:`Store.golden_for_customer`:
  its subscriptions, invoices, payments, :data:`PAGE_SIZE` of each kind a page, the page linking to
  the next when there are more); an invoice's chain keeps its own subscription and the payments
  applied to it;
- each record's state in each system: :class:`.records.Rows` (the identity map, the outcome
  ledger, the open dead letters), and its latest journey run (parked for a person, or under way).
  A page's records are read together: a few round trips for the page, not a few per record;
- which systems a record should be in: the system it came from and the targets the router sends its
  events to; a record missing from one of those (no id there, no delivery under way, dead-lettered
  or done with nothing to keep) is *absent downstream*: a dead letter discarded, say.

Each step looks at the systems that are its business: the ERP posting is the invoices' state in the
systems of kind ``erp``, the entitlement the subscriptions' state in those of kind ``support`` (a
journey writes it onto the support desk's organization, so its entitlement step, done, stopped or
under way, says more than an id could; a customer's suspension or reinstatement stopped at its
support step counts too); the invoice and subscription steps look at the other systems. Which of a
journey's steps write an entitlement, the journey declares (``Step(..., entitles=True)``, see
:mod:`crossledger.plugins.journey_definition`): a third party's journey takes part as the built-in ones do.
A step's state is its worst record's (of the records on the page), in the order of
:data:`SEVERITY`; the chain is stuck at the first step in a state of :data:`STUCK`. A step with
nothing to show is ``none`` (no subscription: a one-off invoice) or ``awaiting`` (an invoice not yet
paid: the customer's move, not a fault).
"""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crossledger.core.console.records import Row, Rows, SystemState
from crossledger.core.console.render import masked, masked_in
from crossledger.core.console.sessions import Session
from crossledger.core.store.base import DeadLetter, Golden, JourneyRecord, Store
from crossledger.plugins.journey_definition import Journey

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

STEPS = ("customer", "subscription", "invoice", "payment", "erp posting", "entitlement")
SEVERITY = ("dead letter", "parked", "pending", "absent", "awaiting", "in step", "none")
"""A step's possible states, the worst first."""
STUCK = frozenset({"dead letter", "parked", "pending", "absent"})
PAGE_SIZE = 50
"""How many records of each kind a customer's chain shows on one page (by canonical id); the page
links to the next when there are more."""
PAYMENTS_READ = 200
"""How many of the customer's payments an invoice's chain looks through for those applied to it."""
UNDER_WAY = frozenset({"running", "waiting", "compensating"})


@dataclass
class Record:
    """One record at one step: its row, its state over the step's systems, and why."""

    row: Row
    state: str
    detail: str = ""
    systems: list[SystemState] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The record's id in the system it came from (``in_123``)."""
        return self.row.subject.split("/", 2)[-1]


@dataclass
class Link:
    step: str
    records: list[Record]
    state: str
    detail: str = ""


@dataclass
class Chain:
    anchor: str
    """The canonical id of the customer or invoice the row is about."""
    data: dict[str, Any]
    links: list[Link]
    stuck: str
    page: int = 1
    """Which :data:`PAGE_SIZE` records of each kind the chain shows."""
    more: bool = False
    """Whether a kind has more records than this page shows (on the next page)."""

    @property
    def entity(self) -> str:
        return self.anchor.split("/", 1)[0]

    def masked(self, session: Session) -> "Chain":
        """The chain, or for a viewer a copy with personal data masked (see :func:`.render.masked`):
        in the records, and where a reason quotes it (a target's refusal that names the customer).
        A copy: the chains of a page share their records' rows, each masked from the values as read."""
        if session.operator:
            return self
        chain = copy.deepcopy(self)
        records = [record for link in chain.links for record in link.records]
        personal = [chain.data, *(record.row.data for record in records)]
        chain.stuck = masked_in(chain.stuck, personal)
        for link in chain.links:
            link.detail = masked_in(link.detail, personal)
        for record in records:
            record.detail = masked_in(record.detail, personal)
            for state in record.systems:
                state.detail = masked_in(state.detail, personal)
        chain.data = masked(chain.data, session)
        for record in records:
            record.row.data = masked(record.row.data, session)
        return chain


def _worst(states: list[str], default: str) -> str:
    return min(states, key=SEVERITY.index) if states else default


@dataclass
class Plan:
    """What one chain shows, before its records are read: the canonical ids of its customer and of
    its records of each kind on its page."""

    anchor: str
    customer_id: str
    invoices: list[str]
    subscriptions: list[str]
    payments: list[str]
    more: bool

    def subjects(self) -> list[str]:
        customer = [self.customer_id] if self.customer_id else []
        return [self.anchor, *customer, *self.invoices, *self.subscriptions, *self.payments]


class Chains:
    """Builds a page's chains over ``runtime``'s store; ``letters`` are the open dead letters, read
    once a page; ``page`` is which :data:`PAGE_SIZE` records of each kind a customer's chain shows."""

    def __init__(self, runtime: "Runtime", letters: list[DeadLetter], page: int = 1) -> None:
        self.store: Store = runtime.store
        self.systems = sorted(runtime.connectors)
        kinds = {name: str(bound.connector.kind) for name, bound in runtime.connectors.items()}
        self.erp = {name for name, kind in kinds.items() if kind == "erp"}
        self.support = {name for name, kind in kinds.items() if kind == "support"}
        self.router = runtime.router
        self.entitling = entitlement_steps(runtime.plugins.journeys)
        self.page = max(1, page)
        self.rows = Rows(self.store, self.systems, letters)
        """Each record's row, read once a page (a record is in several chains)."""

    # -- which chains a record belongs to ------------------------------------------------------------
    def anchors(self, subjects: list[str]) -> list[str]:
        """The customers and invoices whose chains show ``subjects``: an invoice or customer itself; a
        payment's invoices; anything else's invoice, else its customer."""
        self.rows.read(subject for subject in subjects if not subject.startswith(("customer/", "invoice/")))
        return list(dict.fromkeys(anchor for subject in subjects for anchor in self._anchors(subject)))

    def _anchors(self, subject: str) -> list[str]:
        entity = subject.split("/", 1)[0]
        if entity in ("customer", "invoice"):
            return [subject]
        golden = self.rows.record(subject).golden
        data = golden.data if golden else {}
        invoices = [str(a["invoice_id"]) for a in data.get("applications") or [] if a.get("invoice_id")]
        invoices += [str(data["invoice_id"])] if data.get("invoice_id") else []
        if invoices:
            return list(dict.fromkeys(invoices))
        return [str(data["customer_id"])] if data.get("customer_id") else []

    # -- the chains -----------------------------------------------------------------------------------
    def chains(self, anchors: list[str]) -> list[Chain]:
        """The chains of ``anchors``: their records listed (a query per kind and customer; an
        invoice's read first, for its customer and subscription), then read together
        (:class:`.records.Rows`), then each chain built from what was read."""
        self.rows.read(anchor for anchor in anchors if anchor.startswith("invoice/"))
        plans = [self._plan(anchor) for anchor in anchors]
        self.rows.read(subject for plan in plans for subject in plan.subjects())
        return [self._chain(plan) for plan in plans]

    def _plan(self, anchor: str) -> Plan:
        offset = (self.page - 1) * PAGE_SIZE
        if not anchor.startswith("invoice/"):
            kinds = [[g.canonical_id for g in self._of(anchor, entity, PAGE_SIZE + 1, offset)]
                     for entity in ("subscription", "invoice", "payment")]
            more = any(len(found) > PAGE_SIZE for found in kinds)
            subscriptions, invoices, payments = (found[:PAGE_SIZE] for found in kinds)
            return Plan(anchor, anchor, invoices, subscriptions, payments, more)
        golden = self.rows.record(anchor).golden
        customer_id = str(golden.data.get("customer_id") or "") if golden else ""
        subscription_id = golden.data.get("subscription_id") if golden else None
        applied = [payment.canonical_id for payment in self._of(customer_id, "payment", PAYMENTS_READ)
                   if anchor in _applied_to(payment)]
        return Plan(anchor, customer_id, [anchor] if golden else [], [str(subscription_id)] if subscription_id else [],
                    applied[offset:offset + PAGE_SIZE], len(applied) > offset + PAGE_SIZE)

    def _chain(self, plan: Plan) -> Chain:
        anchor, customer_id = plan.anchor, plan.customer_id
        golden = self.rows.record(anchor).golden
        invoices = [found for subject in plan.invoices if (found := self.rows.record(subject).golden)]
        subscriptions = [subject for subject in plan.subscriptions if self.rows.record(subject).golden]
        customer = self._record(customer_id, set(self.systems)) if customer_id else None
        if customer is not None and not customer.row.data and customer.state not in STUCK:
            customer = None  # named, yet neither known to the hub nor on its way: absent
        if anchor.startswith("invoice/") and golden is None:
            invoice_records = [self._record(anchor, set(self.systems) - self.erp)]
        else:
            invoice_records = [self._record(g.canonical_id, set(self.systems) - self.erp) for g in invoices]
        subscription_records = [self._record(subject, set(self.systems) - self.support) for subject in subscriptions]
        posted = [self._record(record.row.subject, self.erp) for record in invoice_records
                  if record.row.data and self.erp]
        entitled = [self._record(subject, self.support, entitlement=True) for subject in subscriptions]
        held = self._journey(customer_id, entitlement=True) if customer_id else None
        if held is not None:  # a suspension or reinstatement of the customer stopped at its support step
            entitled.append(Record(self.rows.row(customer_id), *held))
        unpaid = [g.canonical_id.split("/", 2)[-1] for g in invoices if g.data.get("status") == "issued"]
        links = [
            self._link("customer", [customer] if customer else [], "absent", "no customer the hub knows"),
            self._link("subscription", subscription_records, "none", "no subscription"),
            self._link("invoice", invoice_records, "none", "no invoice"),
            _awaiting(self._link("payment", [self._record(subject, set(self.systems)) for subject in plan.payments],
                                 "none", "no payment"), unpaid),
            self._link("erp posting", posted, "none", "no ERP configured" if not self.erp else "no invoice to post"),
            self._link("entitlement", entitled, "none", "no subscription to entitle"),
        ]
        stuck = next((f"{link.step}: {link.detail}" for link in links if link.state in STUCK), "")
        return Chain(anchor=anchor, data=golden.data if golden else {}, links=links, stuck=stuck,
                     page=self.page, more=plan.more)

    def _of(self, customer_id: str, entity: str, limit: int, offset: int = 0) -> list[Golden]:
        return self.store.golden_for_customer(customer_id, entity_type=entity, limit=limit,
                                              offset=offset) if customer_id else []

    def _link(self, step: str, records: list[Record], default: str, why: str) -> Link:
        state = _worst([record.state for record in records], default)
        worst = next((record for record in records if record.state == state), None)
        detail = f"{worst.label} {worst.detail}".strip() if worst is not None and worst.detail else (
            "" if records else why)
        return Link(step, records, state, detail)

    def _record(self, subject: str, systems: set[str], *, entitlement: bool = False) -> Record:
        """``subject`` at a step that looks at ``systems``; with ``entitlement``, the step that writes
        support entitlements (a journey stopped there counts here, and nowhere else)."""
        row = self.rows.row(subject)
        shown = [state for state in row.systems if state.system in systems]
        expected = self._expected(subject)
        journey = self._journey(subject, entitlement)
        for wanted in ("dead letter", "pending"):
            found = next((s for s in shown if s.state == wanted), None)
            if found is not None and (wanted == "dead letter" or journey is None):
                return Record(row, wanted, f"{found.system}: {found.state} ({found.detail})", shown)
        if journey is not None:
            return Record(row, *journey, shown)
        if row.outcome == "conflict":
            return Record(row, "parked", "held for a person (a conflict)", shown)
        missing = next((s for s in shown if s.state == "absent" and s.system in expected), None)
        if missing is not None:
            return Record(row, "absent", f"not in {missing.system}", shown)
        return Record(row, "in step", "", shown)

    def _journey(self, subject: str, entitlement: bool) -> tuple[str, str] | None:
        """What ``subject``'s latest journey run says of it at this step (:func:`_journey_state`)."""
        run = self.rows.row(subject).journey
        return _journey_state(run, entitlement, self.entitling.get(run.name, frozenset())) if run else None

    def _expected(self, subject: str) -> set[str]:
        """The systems ``subject``'s events are routed to (from the system it came from)."""
        entity, _, rest = subject.partition("/")
        source = rest.split("/", 1)[0]
        return {target for event_type in self.router.table() if event_type.startswith(f"{entity}.")
                for target in self.router.targets(event_type, source)}


def entitlement_steps(journeys: Mapping[str, Journey]) -> dict[str, frozenset[str]]:
    """Each journey's steps that write a support entitlement, as it declares them
    (:attr:`~crossledger.plugins.journey_definition.Step.entitles`), by journey name."""
    return {name: journey.entitlement_steps for name, journey in journeys.items()}


def _awaiting(link: Link, unpaid: list[str]) -> Link:
    """The payment step, ``awaiting`` while invoices are unpaid, unless its payments are in a worse state."""
    if unpaid and SEVERITY.index("awaiting") < SEVERITY.index(link.state):
        link.state, link.detail = "awaiting", f"awaiting payment of {', '.join(unpaid)}"
    return link


def _applied_to(payment: Golden) -> set[str]:
    return {str(application.get("invoice_id")) for application in payment.data.get("applications") or []}


def _journey_state(run: JourneyRecord, entitlement: bool, entitling: frozenset[str]) -> tuple[str, str] | None:
    """What ``run`` says of its subject at this step: parked for a person, or still under way, when
    the step it is stopped at is this step's business (one of ``entitling``, its journey's steps that
    write an entitlement, or, elsewhere, any other); at the entitlement step, done when the run's
    entitlement step is (a journey writes the entitlement onto the support desk's organization: the
    record itself has no id there)."""
    written = [step for name, step in run.steps.items() if name in entitling]
    if entitlement and written and written[0].status == "done":
        return "in step", ""
    if run.state != "parked" and run.state not in UNDER_WAY:
        return None
    stopped = [name for name, step in run.steps.items() if step.status == "failed"] or [
        name for name, step in run.steps.items() if step.status not in ("done", "compensated")]
    if not stopped or (stopped[0] in entitling) != entitlement:
        return None
    if run.state == "parked":
        return "parked", f"journey {run.name} parked at {stopped[0]}" + (f": {run.reason}" if run.reason else "")
    return "pending", f"journey {run.name} {run.state} at {stopped[0]}"
