"""Customer onboarding: from a closed-won CRM account (or ``POST /v1/journeys/onboarding``) to a
customer in every system, once. The systems are roles (billing: Stripe or Zuora; the ERP: NetSuite
or Business Central; whichever the configuration has play them); the table names the reference pair.

=============  ===========================================================================  =========
step           what it does                                                                 if it fails
=============  ===========================================================================  =========
identify       validate the identity; find the same company already known (tax id,          park
               domain, e-mail: :mod:`.identity`); else record it, with the financial
               dimensions the ERP needs (subsidiary, terms by legal entity or country)
billing        create the billing customer in Stripe                                        compensate
erp            create the customer master in NetSuite (subsidiary, terms, currency, tax     compensate
               registration)
support        create the Zendesk organization                                              compensate
link           write the Stripe and NetSuite ids back to the Salesforce account, and tell   park
               each system the others' ids
=============  ===========================================================================  =========

Compensation leaves what was made inactive, never deleted: a NetSuite refusal leaves the Stripe
customer marked inactive (``customer.deactivated``), with the refusal as the run's reason.

A second CRM account of a company the hub already knows (the same tax id, say) is not onboarded
again: the run records it as a duplicate, creates nothing, and writes the existing customer's ids
onto the new account.

Configuration (``[journeys.onboarding]``)::

    require_address = true                            # refuse an identity without a billing address
    subsidiaries = { "Acme GmbH" = "2", DE = "2" }    # legal entity or country -> NetSuite subsidiary
    terms = "2"                                       # NetSuite terms id for new customers
"""

import hashlib
from typing import Any

import msgspec
from crossledger.canonical.entities import Address, Customer
from crossledger.canonical.events import Envelope
from crossledger.plugins.journey_definition import (
    BILLING,
    CRM,
    ERP,
    SUPPORT,
    HubView,
    Journey,
    JourneyInputError,
    JourneyRun,
    OnFailure,
    Start,
    Step,
    StepFailed,
    StepFunction,
    Trigger,
    Write,
    golden_as,
)
from crossledger.plugins.journeys import identity

NAME = "onboarding"


class OnboardingRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/journeys/onboarding``."""

    name: str
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    tax_id: str | None = None
    legal_entity: str | None = None
    currency: str | None = None
    address: Address | None = None
    salesforce_id: str | None = None
    """The CRM account to write the ids back to; without one, the account is created."""


def start(body: dict[str, Any]) -> Start:
    try:
        request = msgspec.convert(body, OnboardingRequest)
    except msgspec.ValidationError as error:
        raise JourneyInputError(f"invalid onboarding request: {error}") from None
    customer = _customer("customer/crossledger/new", request)
    keys = identity.keys(customer)
    if not keys:
        raise JourneyInputError("an onboarding request needs a tax id, a website or an e-mail address")
    key = "|".join(f"{name}={value}" for name, value in keys[:1])
    subject = f"customer/crossledger/{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return Start(subject=subject, key=f"api:{key}", data={"request": msgspec.to_builtins(request)})


def _customer(canonical_id: str, request: OnboardingRequest) -> Customer:
    return Customer(id=canonical_id, name=request.name, email=request.email, phone=request.phone,
                    website=request.website, tax_id=request.tax_id, legal_entity=request.legal_entity,
                    currency=request.currency.lower() if request.currency else None, address=request.address,
                    lifecycle="customer")


def closed_won(event: Envelope, hub: HubView) -> bool:
    return isinstance(event.data, Customer) and event.data.lifecycle == "customer"


def identify(run: JourneyRun) -> list[Write]:
    """Validate, then find the company or record it."""
    customer = _requested(run)
    settings = run.settings()
    found = identity.problems(customer, require_address=bool(settings.get("require_address", False)))
    if found:
        raise StepFailed("the identity cannot be onboarded: " + "; ".join(found))
    for key, value in identity.keys(customer):
        holder = run.remember(run.subject, "customer", key, value)
        if holder == run.subject:
            continue
        known = run.golden(holder)
        if _other_legal_entity(customer, known):
            continue  # one domain, two tax ids: sister companies, each a customer of its own
        run.data.update(customer=holder, duplicate_of=holder, matched_on=key)
        if key == "tax-id" and isinstance(known, Customer) and not identity.same_name(known.name, customer.name):
            run.data["note"] = f"same tax id as {known.name!r}, under the name {customer.name!r}"
        return []
    run.save(_with_dimensions(customer, settings), groups=None if "request" in run.data else ("financial",))
    run.data["customer"] = run.subject
    return []


def _other_legal_entity(customer: Customer, known: object) -> bool:
    """Whether both have tax ids, and they differ."""
    return isinstance(known, Customer) and bool(customer.tax_id and known.tax_id) and \
        identity.normalized_tax_id(customer.tax_id or "") != identity.normalized_tax_id(known.tax_id or "")


def _requested(run: JourneyRun) -> Customer:
    """The customer to onboard: from the request, or the CRM's record of the account."""
    request = run.data.get("request")
    if request is not None:
        asked = msgspec.convert(request, OnboardingRequest)
        if asked.salesforce_id:
            run.link(run.subject, "customer", CRM, asked.salesforce_id)
        return _customer(run.subject, asked)
    return golden_as(run, Customer, run.subject)


def _with_dimensions(customer: Customer, settings: Any) -> Customer:
    """The ERP's dimensions for a new customer, as the policy decides them: subsidiary by legal
    entity (else country), terms. Not the CRM's copy: terms a rep typed into Salesforce are text,
    where the ERP keeps a reference, and the ERP owns them from then on."""
    subsidiaries = settings.get("subsidiaries", {})
    country = customer.address.country if customer.address else None
    subsidiary = subsidiaries.get(customer.legal_entity or "") or subsidiaries.get(country or "")
    dimensions = {}
    if subsidiary:
        dimensions["subsidiary"] = str(subsidiary)
    if settings.get("terms"):
        dimensions["terms"] = str(settings["terms"])
    return msgspec.structs.replace(customer, dimensions=dimensions)


def _onboarded(run: JourneyRun) -> Customer | None:
    """The customer this run creates, or None when it creates nothing (a duplicate)."""
    if run.data.get("duplicate_of"):
        return None
    customer = run.golden(run.data["customer"])
    return customer if isinstance(customer, Customer) else None


def _create_in(system: str) -> StepFunction:
    def create(run: JourneyRun) -> list[Write]:
        customer = _onboarded(run)
        if customer is None or not run.configured(system):
            return []
        return [Write(system, "customer.upserted", customer, decides=system == ERP)]

    create.__doc__ = f"Create the customer in {system}."
    return create


def _deactivate_in(system: str) -> StepFunction:
    def deactivate(run: JourneyRun) -> list[Write]:
        customer = _onboarded(run)
        if customer is None or run.external_id(customer.id, system) is None:
            return []
        return [Write(system, "customer.deactivated", customer)]

    deactivate.__doc__ = f"Leave the customer made in {system} inactive."
    return deactivate


def link(run: JourneyRun) -> list[Write]:
    """The ids back to the CRM account; each system told the others' ids."""
    customer = golden_as(run, Customer, run.data["customer"])
    ids = {system: found for system in (BILLING, ERP, SUPPORT)
           if (found := run.external_id(customer.id, system)) is not None}
    writes = []
    if run.configured(CRM):
        if run.data.get("duplicate_of"):
            account = run.golden(run.subject)
            if isinstance(account, Customer):
                writes.append(Write(CRM, "customer.linked", account, links=ids))
        elif run.external_id(customer.id, CRM) is None:
            writes.append(Write(CRM, "customer.upserted", customer))  # an account for a customer from the API
        else:
            writes.append(Write(CRM, "customer.linked", customer))
    if not run.data.get("duplicate_of"):
        writes += [Write(system, "customer.linked", customer) for system in ids if run.configured(system)]
    return writes


ONBOARDING = Journey(
    name=NAME,
    version=1,
    description="A closed-won account becomes a customer in billing, the ERP and support, once.",
    steps=(
        Step("identify", identify, on_failure=OnFailure.PARK),
        Step("billing", _create_in(BILLING), compensate=_deactivate_in(BILLING)),
        Step("erp", _create_in(ERP), compensate=_deactivate_in(ERP)),
        Step("support", _create_in(SUPPORT)),
        Step("link", link, on_failure=OnFailure.PARK),
    ),
    triggers=(Trigger("customer.upserted", source=CRM, starts=closed_won),),
    covers=(BILLING, ERP, SUPPORT),
    sla_s=60.0,
    start=start,
)
