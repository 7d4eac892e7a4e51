"""Outbound: the writes that bring Zuora in line with a canonical customer event.

==========================  =========================================================================
canonical event             Zuora write
==========================  =========================================================================
``customer.upserted``       ``PUT /v1/accounts/{id}`` (name, bill-to contact, ``crmId``, the hub-id
                            custom field) when the account is known (to the hub, or to Zuora by its
                            hub-id custom field); else ``POST /v1/accounts`` with the same fields,
                            the account's currency, and ``Idempotency-Key``
``customer.linked``         ``PUT /v1/accounts/{id}`` with ``crmId`` (the CRM's id), when the hub
                            knows one
==========================  =========================================================================

As with Stripe, billing takes the customers the CRM (or the ERP) owns; Zuora's own documents
(subscriptions, invoices, payments, credits, refunds) flow out of Zuora, never into it.

**Upsert.** The hub's key is per event, so a create that landed but whose answer was lost would be
planned again under another key by the next event about that customer. So when the hub knows no
Zuora id, ``plan`` first looks the account up by the custom field holding the canonical id
(``/object-query/accounts?filter[]=CrossledgerId__c.EQ:<id>``) and updates what it finds. A create
carries the hub's key as ``Idempotency-Key``: Zuora replays its first answer for 24 hours, so a
create sent twice makes one account (the hub sends a new key only after Zuora answered that the
create failed, an answer Zuora would replay too). Updates are ``PUT``, which Zuora takes no key on, and are
idempotent by what they write.

**Currency** is the account's, fixed at creation (Zuora cannot change it later): the customer's,
else ``default_currency``. A bill-to contact is required: its names come from the customer's name
(Zuora requires a last name).
"""

from collections.abc import Callable
from typing import Any

from crossledger.canonical.entities import Customer
from crossledger.canonical.events import Envelope
from crossledger.plugins.errors import MissingDependency
from crossledger.plugins.types import Operation, Refs
from crossledger.plugins.zuora.client import SYSTEM

CREATE = "customer.create"
UPDATE = "customer.update"
LINK = "customer.link"

CRM = "salesforce"
"""The CRM whose account id Zuora keeps as ``crmId``."""

MadeFor = Callable[[str], str | None]
"""The Zuora id of the account carrying a canonical id in its hub-id custom field, found in Zuora."""


def plan(event: Envelope, refs: Refs, made_for: MadeFor, hub_id_field: str, default_currency: str
         ) -> list[Operation]:
    """The writes for ``event``; ``[]`` for the events Zuora does not take."""
    match event.type, event.data:
        case "customer.upserted", Customer() as customer:
            zuora_id = refs.external_id(customer.id, SYSTEM) or made_for(customer.id)
            fields = {**_profile(customer), **_crm_id(customer.id, refs), hub_id_field: customer.id}
            if zuora_id is None:
                body = {**fields, "currency": customer.currency or default_currency, "autoPay": False,
                        "billCycleDay": 1}
                return [_operation(CREATE, customer.id, "POST", "/v1/accounts", body)]
            return [_operation(UPDATE, customer.id, "PUT", account_path(zuora_id), fields)]
        case "customer.linked", Customer() as customer:
            crm = _crm_id(customer.id, refs)
            if not crm:
                return []
            zuora_id = refs.external_id(customer.id, SYSTEM) or made_for(customer.id)
            if zuora_id is None:
                raise MissingDependency("customer", customer.id)
            return [_operation(LINK, customer.id, "PUT", account_path(zuora_id), crm)]
    return []


def account_path(zuora_id: str) -> str:
    return f"/v1/accounts/{zuora_id}"


def _profile(customer: Customer) -> dict[str, Any]:
    """The name and the bill-to contact (Zuora requires first and last name on it)."""
    first, _, last = customer.name.strip().partition(" ")
    address = customer.address
    contact = {
        "firstName": first or customer.name, "lastName": last or first or customer.name,
        "workEmail": customer.email, "workPhone": customer.phone,
        **({"address1": address.line1, "address2": address.line2, "city": address.city, "state": address.state,
            "zipCode": address.postal_code, "country": address.country} if address else {}),
    }
    return {"name": customer.name, "billToContact": {k: v for k, v in contact.items() if v is not None}}


def _crm_id(canonical_id: str, refs: Refs) -> dict[str, str]:
    crm_id = refs.external_id(canonical_id, CRM)
    return {"crmId": crm_id} if crm_id else {}


def _operation(name: str, canonical_id: str, method: str, path: str, body: dict[str, Any]) -> Operation:
    return Operation(name=name, entity_type="customer", canonical_id=canonical_id,
                     payload={"method": method, "path": path, "body": body})


def reflects(account: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether an account (``GET /v1/accounts/{id}``) already holds everything an update wrote (its
    name, ``crmId`` and custom fields in ``basicInfo``, its bill-to contact's fields): how a probe
    tells an update that landed from one that did not. A change of email or address alone is one."""
    basic, contact = account.get("basicInfo") or {}, account.get("billToContact") or {}
    wanted_contact = body.get("billToContact") or {}
    return all(basic.get(field) == value for field, value in body.items() if field != "billToContact") \
        and all(contact.get(field) == value for field, value in wanted_contact.items())
