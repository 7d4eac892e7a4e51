"""Subscription change and renewal: a billing subscription event, enriched from the CRM, booked in
the ERP, and the support entitlement refreshed. The systems are roles; the table names the
reference pair (an ERP that keeps no subscriptions, Business Central, plans nothing for them).

=============  ===========================================================================  =========
step           what it does                                                                 if it fails
=============  ===========================================================================  =========
account        the subscription's customer must be one the hub knows, with a billing id     park
enrich         read the account's contract from Salesforce (term in months, owner, legal    park
               entity) onto the subscription
erp            the subscription, priced, into NetSuite (after account and enrich)           park
entitlement    the new tier and status to Zendesk (after account only: support does not     park
               wait for the ERP, unless ``after.entitlement = ["erp"]`` says so); nothing
               for a subscription not being paid for, whose standing in support is the
               suspension journey's to write
=============  ===========================================================================  =========

While NetSuite is down its write waits among the parked deliveries (the run is *waiting*; an alert
is raised once), Zendesk shows the new tier at once, and the run completes when NetSuite is back.
"""

from collections.abc import Sequence

import msgspec
from crossledger.canonical.entities import Customer, Subscription
from crossledger.canonical.events import Envelope
from crossledger.plugins.journey_definition import (
    BILLING,
    CRM,
    ERP,
    NOT_PAYING,
    SUPPORT,
    Journey,
    JourneyRun,
    OnFailure,
    Step,
    StepFailed,
    StepFunction,
    Trigger,
    Write,
    golden_as,
)

NAME = "subscription-change"
EVENTS = ("subscription.created", "subscription.amended", "subscription.renewed", "subscription.cancelled")


def _event_id(event: Envelope) -> str:
    return event.id


def _inputs(event: Envelope) -> dict[str, str]:
    return {"event_type": event.type}


def _subscription(run: JourneyRun) -> Subscription:
    return golden_as(run, Subscription, run.subject)


def account(run: JourneyRun) -> list[Write]:
    """The customer behind the subscription must be mapped: known to the hub and to billing."""
    subscription = _subscription(run)
    customer = run.golden(subscription.customer_id)
    if not isinstance(customer, Customer):
        raise StepFailed(f"the subscription's customer {subscription.customer_id} is not known to the hub")
    if run.configured(BILLING) and run.external_id(customer.id, BILLING) is None:
        raise StepFailed(f"the customer {customer.id} has no billing account the hub knows of")
    run.data["customer"] = customer.id
    return []


def enrich(run: JourneyRun) -> list[Write]:
    """The contract behind the subscription, as the CRM account has it."""
    account_id = run.external_id(run.data["customer"], CRM)
    if account_id is None or not run.configured(CRM):
        return []
    contract = run.contract_terms(CRM, account_id)
    run.data["contract"] = contract
    subscription = _subscription(run)
    enriched = msgspec.structs.replace(subscription, **contract)
    if enriched != subscription:
        run.save(enriched, groups=("contract",))
    return []


def _to(system: str) -> StepFunction:
    def write(run: JourneyRun) -> list[Write]:
        if not run.configured(system):
            return []
        return [Write(system, run.data["event_type"], _subscription(run))]

    write.__doc__ = f"The subscription event to {system}."
    return write


def entitlement(run: JourneyRun) -> Sequence[Write] | None:
    """The subscription event to support, unless the subscription is not being paid for: the same
    event starts a suspension, which shows the customer suspended there (two writes of one field
    from one event would leave whichever landed last)."""
    if _subscription(run).status in NOT_PAYING:
        return []
    return _to(SUPPORT)(run)


SUBSCRIPTION_CHANGE = Journey(
    name=NAME,
    version=1,
    description="A subscription created, changed or renewed in billing reaches the ERP and support.",
    steps=(
        Step("account", account, on_failure=OnFailure.PARK),
        Step("enrich", enrich, on_failure=OnFailure.PARK),
        Step("erp", _to(ERP), on_failure=OnFailure.PARK, after=("account", "enrich")),
        Step("entitlement", entitlement, on_failure=OnFailure.PARK, after=("account",), entitles=True),
    ),
    triggers=tuple(Trigger(event, source=BILLING, key=_event_id, inputs=_inputs) for event in EVENTS),
    covers=(ERP, SUPPORT),
    sla_s=300.0,
)
