"""Suspension for non-payment, and reinstatement when paid.

Suspension starts when billing marks an invoice uncollectible, or a subscription turns
``past_due``, ``unpaid`` or ``paused`` (Stripe pauses one whose trial ended without a way to pay;
Zuora's collections suspend one), for a customer not already suspended. Its three steps are independent
of one another:

=============  ================================================================================
support        the Zendesk entitlement suspended
crm            the Salesforce account flagged (``Account_Status__c``)
erp            the NetSuite customer put on credit hold
=============  ================================================================================

Reinstatement starts when a suspended customer pays the invoice it was suspended for (any
payment, when a subscription falling behind was the cause) or its subscription is active again,
and reverses each step: the entitlement active, the flag cleared, the credit hold back to
automatic. A failed step parks the run for an operator: half a suspension is undone by finishing
it or by reinstating, not by guessing.

Whether a customer is suspended is what its latest suspension and reinstatement runs say: billing's
own customer record does not know. The systems are roles; the table names the reference pair
(Business Central's credit hold is ``blocked: Invoice``).
"""

from collections.abc import Callable

from crossledger.canonical.entities import Customer, Entitlement, Invoice, Payment, Subscription
from crossledger.canonical.events import Envelope
from crossledger.plugins.journey_definition import (
    BILLING,
    CRM,
    ERP,
    NOT_PAYING,
    SUPPORT,
    HubView,
    Journey,
    JourneyRun,
    OnFailure,
    Step,
    StepFunction,
    Trigger,
    Write,
    golden_as,
)

SUSPENSION, REINSTATEMENT = "suspension", "reinstatement"


def customer_of(event: Envelope) -> str:
    data = event.data
    assert isinstance(data, Invoice | Payment | Subscription), f"{event.type} names no customer"
    return data.customer_id


def _per_event(event: Envelope) -> str:
    """One run per triggering event: a customer may be suspended and reinstated many times."""
    return f"{customer_of(event)}@{event.id}"


def suspended(hub: HubView, customer_id: str) -> bool:
    """Whether the customer's latest suspension stands (not reinstated since, nor undone)."""
    suspension = hub.latest(SUSPENSION, customer_id)
    if suspension is None or suspension.state in ("compensated", "cancelled"):
        return False
    reinstatement = hub.latest(REINSTATEMENT, customer_id)
    return reinstatement is None or reinstatement.started_at < suspension.started_at


def _uncollectible(event: Envelope, hub: HubView) -> bool:
    return isinstance(event.data, Invoice) and event.data.status == "uncollectible" and \
        not suspended(hub, event.data.customer_id)


def _not_paying(event: Envelope, hub: HubView) -> bool:
    return isinstance(event.data, Subscription) and event.data.status in NOT_PAYING and \
        not suspended(hub, event.data.customer_id)


def _paid(event: Envelope, hub: HubView) -> bool:
    """A payment of the invoice the customer was suspended for (any payment, when a subscription
    falling behind was the cause)."""
    if not isinstance(event.data, Payment) or not suspended(hub, event.data.customer_id):
        return False
    suspension = hub.latest(SUSPENSION, event.data.customer_id)
    invoice = suspension.data.get("invoice") if suspension else None
    return invoice is None or invoice in {application.invoice_id for application in event.data.applications}


def _active_again(event: Envelope, hub: HubView) -> bool:
    return isinstance(event.data, Subscription) and event.data.status == "active" and \
        suspended(hub, event.data.customer_id)


def _inputs(event: Envelope) -> dict[str, str]:
    cause = {"because": f"{event.type} {event.subject}"}
    return cause | {"invoice": event.subject} if isinstance(event.data, Invoice) else cause


def _trigger(event_type: str, starts: Callable[[Envelope, HubView], bool]) -> Trigger:
    return Trigger(event_type, source=BILLING, starts=starts, subject=customer_of, key=_per_event, inputs=_inputs)


def _entitlement(status: str) -> StepFunction:
    def write(run: JourneyRun) -> list[Write]:
        if not run.configured(SUPPORT):
            return []
        entitlement = Entitlement(id=f"entitlement/hub/{run.subject}", customer_id=run.subject,
                                  status="suspended" if status == "suspended" else "active")
        return [Write(SUPPORT, "entitlement.changed", entitlement)]

    write.__doc__ = f"The support entitlement {status}."
    return write


def _customer_event(system: str, event_type: str) -> StepFunction:
    def write(run: JourneyRun) -> list[Write]:
        if not run.configured(system) or run.external_id(run.subject, system) is None:
            return []  # the customer is not in that system: nothing to flag
        return [Write(system, event_type, golden_as(run, Customer, run.subject))]

    write.__doc__ = f"{event_type} to {system}."
    return write


def _steps(entitlement: str, event_type: str) -> tuple[Step, ...]:
    return (
        Step("support", _entitlement(entitlement), on_failure=OnFailure.PARK, after=(), entitles=True),
        Step("crm", _customer_event(CRM, event_type), on_failure=OnFailure.PARK, after=()),
        Step("erp", _customer_event(ERP, event_type), on_failure=OnFailure.PARK, after=()),
    )


SUSPENSION_JOURNEY = Journey(
    name=SUSPENSION,
    version=1,
    description="A customer who does not pay is suspended in support, flagged in the CRM, held in the ERP.",
    steps=_steps("suspended", "customer.suspended"),
    triggers=(_trigger("invoice.issued", _uncollectible), _trigger("subscription.amended", _not_paying)),
    sla_s=60.0,
)

REINSTATEMENT_JOURNEY = Journey(
    name=REINSTATEMENT,
    version=1,
    description="A suspended customer who pays is reinstated everywhere the suspension reached.",
    steps=_steps("active", "customer.reinstated"),
    triggers=(_trigger("payment.settled", _paid), _trigger("subscription.amended", _active_again)),
    sla_s=60.0,
)
