"""Outbound: the writes that bring Stripe in line with a canonical customer event.

==========================  =========================================================================
canonical event             Stripe write
==========================  =========================================================================
``customer.upserted``       ``POST /v1/customers/{id}`` (name, email, phone, address, the other systems'
                            ids in metadata) when the Stripe id is known (to the hub, or to Stripe's
                            search by ``crossledger_id``); else ``POST /v1/customers``
                            with the same fields and ``metadata[crossledger_id]`` = the canonical id
``customer.linked``         ``POST /v1/customers/{id}`` with only ``metadata[salesforce_id]``,
                            ``metadata[netsuite_id]`` or ``metadata[business_central_id]``,
                            ``metadata[zendesk_id]`` (those the hub knows)
``customer.deactivated``    ``POST /v1/customers/{id}`` with ``metadata[crossledger_status]=inactive``;
                            nothing when Stripe has no such customer
``customer.reinstated``     ``POST /v1/customers/{id}`` with ``metadata[crossledger_status]=`` (empty:
                            Stripe deletes the key)
==========================  =========================================================================

``customer.suspended`` plans nothing: a suspension starts in Stripe, the billing system, so it is not
the hub's to write back. A Stripe customer has no active flag, so the hub marks one it leaves
inactive (a journey undoing the step that made it) in its metadata, where Stripe's dashboard and
search show it, and reinstating removes the mark.

Fields the event leaves unset (None) are left out of the write, never cleared: the hub resets the
fields Stripe owns before planning, and "unset" must not erase them. Metadata keys are merged by
Stripe, so writing one id never removes another.

**Idempotency.** Every write carries the hub's key as Stripe's ``Idempotency-Key``: Stripe answers
a repeat with the first answer (for 24 hours at least), so a create sent twice makes one customer.
After a timeout the connector *probes*: a create is looked for by its ``crossledger_id`` with
Stripe's search (``metadata['crossledger_id']:'...'``), an update by reading the customer back
and comparing. Stripe's search lags writes by up to a minute, so a probe can miss a customer that
was made; the resend that follows then carries the same key and gets the first answer back, so
even then no second customer is made.

The hub's key is per *event*, though: when a create landed but its answer was lost, so the hub
never stored the Stripe id, the next event about that customer (another upsert, a
``customer.linked`` waiting on it, a replay) would plan a create again under another key, and make
a second customer. So when the hub knows no Stripe id for a customer, ``plan`` first searches for
one carrying its ``crossledger_id`` the same way, and plans the update of the customer it finds
(``created`` false) instead of a create. Only an event within the search's lag of that lost create
can still make a duplicate.
"""

from collections.abc import Callable
from typing import Any

from crossledger.canonical.entities import Customer
from crossledger.canonical.events import Envelope
from crossledger.plugins.errors import MissingDependency
from crossledger.plugins.limits import Limits, check_lengths
from crossledger.plugins.stripe.client import SYSTEM
from crossledger.plugins.stripe.mapping import HUB_ID
from crossledger.plugins.types import Operation, Refs

LINKED_SYSTEMS = ("salesforce", "netsuite", "business_central", "zendesk")
"""The other systems whose ids for a customer Stripe keeps in its metadata, as ``<system>_id``."""
METADATA_VALUE = 500
"""The most characters a metadata value takes."""

TEXT_LIMITS: Limits = {
    "name": 256, "email": 512, "phone": 20,
    **{f"address[{name}]": 5000 for name in ("line1", "line2", "city", "state", "postal_code", "country")},
    **{f"metadata[{key}]": METADATA_VALUE for key in (HUB_ID, *(f"{system}_id" for system in LINKED_SYSTEMS))},
}
"""What Stripe's API takes in the customer fields the hub writes (``maxLength`` in Stripe's OpenAPI
description; metadata values per its metadata documentation)."""

CREATE = "customer.create"
UPDATE = "customer.update"
LINK = "customer.link"
DEACTIVATE = "customer.deactivate"
REINSTATE = "customer.reinstate"

STATUS = "crossledger_status"
"""The metadata key marking a customer the hub left inactive (``inactive``); absent when active."""

MadeFor = Callable[[str], str | None]
"""The Stripe id of the customer carrying a canonical id as its ``crossledger_id``, found in Stripe."""


def plan(event: Envelope, refs: Refs, made_for: MadeFor) -> list[Operation]:
    """The writes for ``event``; ``[]`` for the events Stripe does not take. ``made_for`` finds a
    customer the hub made but never learned the id of (see the module doc)."""
    match event.type, event.data:
        case "customer.upserted", Customer() as customer:
            return [_upsert(customer, refs, made_for)]
        case "customer.linked", Customer() as customer:
            return _link(customer, refs, made_for)
        case "customer.deactivated", Customer() as customer:
            return _mark(DEACTIVATE, customer, refs, made_for)
        case "customer.reinstated", Customer() as customer:
            return _mark(REINSTATE, customer, refs, made_for)
    return []


def _stripe_id(canonical_id: str, refs: Refs, made_for: MadeFor) -> str | None:
    """The customer's Stripe id: the one the hub stored, else one Stripe holds for it."""
    return refs.external_id(canonical_id, SYSTEM) or made_for(canonical_id)


def _upsert(customer: Customer, refs: Refs, made_for: MadeFor) -> Operation:
    stripe_id = _stripe_id(customer.id, refs, made_for)
    form = {**_profile(customer), **_linked_ids(customer.id, refs)}
    check_lengths(SYSTEM, f"customer {customer.id}", {**form, f"metadata[{HUB_ID}]": customer.id}, TEXT_LIMITS)
    if stripe_id is None:
        return _operation(CREATE, customer.id, "/v1/customers", {**form, f"metadata[{HUB_ID}]": customer.id})
    return _operation(UPDATE, customer.id, _customer_path(stripe_id), form)


def _link(customer: Customer, refs: Refs, made_for: MadeFor) -> list[Operation]:
    """Only the cross-references. With none to write there is nothing to do, not even a customer to
    create first; with some, the customer must be in Stripe (or be delivered there first)."""
    form = _linked_ids(customer.id, refs)
    if not form:
        return []
    stripe_id = _stripe_id(customer.id, refs, made_for)
    if stripe_id is None:
        raise MissingDependency("customer", customer.id)
    return [_operation(LINK, customer.id, _customer_path(stripe_id), form)]


def _mark(name: str, customer: Customer, refs: Refs, made_for: MadeFor) -> list[Operation]:
    """Set (deactivate) or clear (reinstate, an empty value deleting the key) the status mark. A
    customer that never reached Stripe has nothing to deactivate; one to reinstate must be there."""
    stripe_id = _stripe_id(customer.id, refs, made_for)
    if stripe_id is None:
        if name == DEACTIVATE:
            return []
        raise MissingDependency("customer", customer.id)
    form = {f"metadata[{STATUS}]": "inactive" if name == DEACTIVATE else ""}
    return [_operation(name, customer.id, _customer_path(stripe_id), form)]


def _customer_path(stripe_id: str) -> str:
    """Where a Stripe customer is updated: ``/v1/customers/{id}``."""
    return f"/v1/customers/{stripe_id}"


def _profile(customer: Customer) -> dict[str, str]:
    """The customer's profile as Stripe form fields; unset fields are left out."""
    address = customer.address
    fields = {
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        **({f"address[{name}]": getattr(address, name)
            for name in ("line1", "line2", "city", "state", "postal_code", "country")} if address else {}),
    }
    return {name: value for name, value in fields.items() if value is not None}


def _linked_ids(canonical_id: str, refs: Refs) -> dict[str, str]:
    known = {system: refs.external_id(canonical_id, system) for system in LINKED_SYSTEMS}
    return {f"metadata[{system}_id]": value for system, value in known.items() if value is not None}


def _operation(name: str, canonical_id: str, path: str, form: dict[str, str]) -> Operation:
    return Operation(name=name, entity_type="customer", canonical_id=canonical_id,
                     payload={"method": "POST", "path": path, "body": form})


def reflects(record: dict[str, Any], form: dict[str, str]) -> bool:
    """Whether a Stripe object already holds every field of a form (``address[city]`` is
    ``record["address"]["city"]``): how a probe tells an update that landed from one that did not.
    An empty value unsets: Stripe clears the field (null) or deletes the metadata key (absent)."""
    def value(name: str) -> Any:
        head, _, rest = name.partition("[")
        found = record.get(head)
        if not rest:
            return found
        return found.get(rest.removesuffix("]")) if isinstance(found, dict) else None

    return all(value(name) == (wanted or None) for name, wanted in form.items())
