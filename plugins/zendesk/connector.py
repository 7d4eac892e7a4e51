"""The Zendesk connector: organizations, end users and tickets in and out of the support desk.

**Inbound.** Zendesk signs every webhook (see :mod:`.signature`). Two kinds reach the hub:

- *event-subscribed* webhooks for organizations and users, ``{"type": "zen:event-type:...", "id",
  "time", "detail": {...}, "event": {...}}``, whose ``detail`` has the resource's fields with ids as
  strings (``"0"`` for none);
- *trigger* webhooks for tickets: their body is the template the trigger was given (see
  :data:`TRIGGER_TEMPLATE`), and Zendesk fills in its placeholders as strings (``""`` for none).
  Event-subscribed ticket events (``zen:event-type:ticket.*``) are read as well.

======================================  ===================  =============================================
Zendesk event                           canonical change     entity
======================================  ===================  =============================================
``organization.*``                      customer.upserted    Customer (speaks for the ``profile`` only)
``organization.deleted``                customer.deleted     Customer (status deleted; ``status`` only)
``user.*`` (end users)                  contact.upserted     Contact, its customer from ``organization_id``
``user.deleted``, deactivated           contact.deleted      Contact (status deleted; ``status`` only)
``ticket.created``                      case.opened          SupportCase
any other ticket event                  case.updated         SupportCase
======================================  ===================  =============================================

Agents and admins are people of the company running Zendesk, not contacts of a customer: their
events are acknowledged and ignored. A record the hub created carries ``external_id`` =
:func:`~crossledger.canonical.entities.external_key` of its canonical id, and is recognised by it
even before the hub stored the cross-reference.

**Outbound.**

===============================================  ==========================================================
canonical event                                  Zendesk write
===============================================  ==========================================================
``customer.upserted``                            ``POST /organizations/create_or_update`` by external id
``customer.deleted``                             ``PUT /organizations/{id}``: ``account_status`` deleted
``customer.linked``                              ``PUT /organizations/{id}``: the other systems' ids
``subscription.*``, ``entitlement.changed``      ``PUT /organizations/{id}``: plan tier, SLA, status
``contact.upserted``                             ``POST /users/create_or_update`` by external id
``case.opened``, ``case.updated`` (new ticket)   ``POST /tickets`` with ``Idempotency-Key``
``case.updated`` (known ticket)                  ``PUT /tickets/{id}``: subject, status, priority
===============================================  ==========================================================

**Idempotency.** Organizations and users are written with ``create_or_update``, matched on the
Zendesk id when the hub knows it and otherwise on the external id, which Zendesk keeps unique: a
repeat updates the same record. Ticket creation carries the hub's idempotency key in
``Idempotency-Key``, Zendesk's own mechanism (the same key and body return the original ticket for
about two hours); tickets also carry the case's external key, so :meth:`ZendeskConnector.probe`
finds a ticket whose creation timed out without creating anything.

Entitlement data lives in *organization fields* (custom fields the Zendesk admin creates, keyed
``plan_tier``, ``sla``, ``subscription_status`` and those of :data:`XREF_FIELDS`); Zendesk's SLA
policies key off them.
"""

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

import httpx
import msgspec
from crossledger.canonical.entities import (
    Contact,
    Customer,
    Entitlement,
    Subscription,
    SupportCase,
    external_key,
    from_external_key,
)
from crossledger.canonical.events import Envelope
from crossledger.plugins.connector import BaseConnector, all_records, json_body
from crossledger.plugins.errors import (
    Category,
    ConnectorError,
    MissingDependency,
    SchemaError,
    exception_reason,
)
from crossledger.plugins.http import classify_http, error_code, retry_after_seconds, status_category, status_line
from crossledger.plugins.limits import Limits, check_lengths
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
    InboundEvent,
    Operation,
    Outcome,
    Page,
    Projection,
    Refs,
    Sandbox,
    SystemKind,
)
from crossledger.plugins.zendesk import signature
from pydantic import BaseModel, ConfigDict, SecretStr

SYSTEM = "zendesk"
API_ROOT = "/api/v2"
EVENT_TYPE_PREFIX = "zen:event-type:"
MAX_PAGE_SIZE = 100
EXPORT_PAGE_SIZE = 1000
"""The most records a page of an incremental export holds (``per_page``)."""
EXPORT_LAG_S = 60
"""How far back an incremental export must start: Zendesk provides nothing of the latest minute."""

COLLECTIONS = {"customer": "organizations", "contact": "users", "supportcase": "tickets"}
"""Canonical entity type -> Zendesk collection, for :meth:`ZendeskConnector.records` and ``fetch``."""

ROOTS = {"organizations": "organization", "users": "user", "tickets": "ticket"}
"""Collection -> the root key that wraps one of its resources (``{"ticket": {...}}``)."""

TEXT_LIMITS: Limits = {"name": 255, "external_id": 255, "email": 254, "subject": 255, "comment": 65_536}
"""What Zendesk takes in the text fields the hub writes: names, external ids and subjects are
255-character strings, an e-mail address 254 (RFC 5321), a comment's body 64 KB."""

ACCOUNT_STATUS_FIELD = "account_status"
XREF_FIELDS = {"salesforce": "salesforce_id", "stripe": "stripe_customer_id", "zuora": "zuora_account_id",
               "netsuite": "netsuite_id", "business_central": "business_central_id"}
"""Organization field keys the hub writes: the customer's status, its support entitlement, and the
ids the other systems have for it (``customer.linked``)."""

ORGANIZATION_NAME_LIMIT = 255
"""The most characters Zendesk takes in an organization's name."""

DEFAULT_SLA_BY_TIER = {"enterprise": "1h", "pro": "4h", "basic": "24h", "starter": "24h"}

TRIGGER_TEMPLATE = {
    "ticket": {
        "id": "{{ticket.id}}",
        "external_id": "{{ticket.external_id}}",
        "subject": "{{ticket.title}}",
        "description": "{{ticket.description}}",
        "status": "{{ticket.status}}",
        "priority": "{{ticket.priority}}",
        "organization_id": "{{ticket.organization.id}}",
        "requester_id": "{{ticket.requester.id}}",
        "created_at": "{{ticket.created_at_with_timestamp}}",
        "updated_at": "{{ticket.updated_at_with_timestamp}}",
    },
    "event": "ticket.created",
}
"""The JSON body to give the triggers that notify the hub's ticket webhook: one trigger on "Ticket
is Created" with this body, one on "Ticket is Updated" with ``"event": "ticket.updated"``. Without
``event`` a ticket whose ``created_at`` equals its ``updated_at`` counts as created."""

CASE_STATUSES: dict[str, Literal["new", "open", "pending", "hold", "solved", "closed"]] = {
    "new": "new", "open": "open", "pending": "pending", "hold": "hold", "on-hold": "hold", "solved": "solved",
    "closed": "closed",
}
"""Zendesk's status as the API (``hold``) or a placeholder (``On-hold``, lower-cased) writes it."""

PRIORITIES: dict[str, Literal["low", "normal", "high", "urgent"] | None] = {
    "low": "low", "normal": "normal", "high": "high", "urgent": "urgent", "-": None, "": None,
}

WRITE_ONLY = frozenset({"comment"})
"""Body fields a record never shows back as they were sent (a ticket's comment joins its audit)."""

TICKET_CREATE = "ticket.create"
"""The operation that opens a ticket: its probe needs only the ticket's external key (see ``probe``)."""


class ZendeskSettings(BaseModel):
    """``[connectors.zendesk]``: the account, an API token, and the webhooks' signing secrets.

    ``base_url`` is the account's host, ``https://{subdomain}.zendesk.com`` (the API is under
    ``/api/v2``). Requests authenticate as ``{email}/token`` with ``api_token``.

    Zendesk gives every webhook its own signing secret, and a webhook subscribed to organization
    and user events cannot also be connected to triggers, so the hub usually has two webhooks:
    ``webhook_secret`` is the event webhook's secret and ``ticket_webhook_secret`` the trigger
    webhook's. ``previous_webhook_secret`` is accepted too while a secret is being reset. A
    delivery signed more than ``tolerance_s`` seconds ago is refused. With no secret at all every
    webhook is refused.

    ``sla_by_tier`` maps a plan tier onto the SLA written next to it; a tier it does not name
    gets no SLA.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    email: str
    api_token: SecretStr
    webhook_secret: SecretStr | None = None
    previous_webhook_secret: SecretStr | None = None
    ticket_webhook_secret: SecretStr | None = None
    tolerance_s: float = 300.0
    sla_by_tier: dict[str, str] = DEFAULT_SLA_BY_TIER
    timeout_s: float = 10.0

    def secrets(self) -> list[str]:
        """Every secret a delivery may be signed with."""
        given = (self.webhook_secret, self.previous_webhook_secret, self.ticket_webhook_secret)
        return [secret.get_secret_value() for secret in given if secret is not None]

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}{API_ROOT}{path}"


# -- The parts of Zendesk's payloads the mapping reads ---------------------------------------------------


class _Wire(msgspec.Struct, frozen=True):
    """Base of the decoded shapes: immutable, and blind to the fields the mapping ignores."""


Id = int | str
"""Ids are integers in REST resources, strings in event details and trigger placeholders."""


class _EventWebhook(_Wire, frozen=True):
    type: str
    id: str
    time: datetime
    detail: dict[str, Any]
    event: dict[str, Any] = {}


class _TriggerTicket(_Wire, frozen=True):
    id: Id
    updated_at: datetime
    created_at: datetime | None = None


class _TriggerWebhook(_Wire, frozen=True):
    ticket: _TriggerTicket
    event: Literal["ticket.created", "ticket.updated"] | None = None


class _Organization(_Wire, frozen=True):
    id: Id
    name: str
    external_id: str | None = None


class _User(_Wire, frozen=True):
    id: Id
    email: str | None = None
    external_id: str | None = None
    organization_id: Id | None = None
    role: str = "end-user"
    name: str | None = None  # not in event details (Zendesk leaves it out); present in REST users
    phone: str | None = None


class _Ticket(_Wire, frozen=True):
    id: Id
    external_id: str | None = None
    subject: str | None = None
    description: str | None = None
    status: str | None = None
    priority: str | None = None
    organization_id: Id | None = None
    requester_id: Id | None = None
    created_at: datetime | None = None


_Shape = TypeVar("_Shape", bound=msgspec.Struct)


def _filled(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without blank values: a placeholder with nothing to show renders as ``""``."""
    return {name: value for name, value in obj.items() if value != ""}


def _decode(obj: dict[str, Any], shape: type[_Shape], kind: str) -> _Shape:
    """``obj`` as ``shape``, blanks read as absent; a mismatch is the sender's fault, a ``data`` error."""
    try:
        return msgspec.convert(_filled(obj), shape)
    except msgspec.ValidationError as error:
        raise ConnectorError(Category.DATA,
                             f"zendesk {kind} {obj.get('id')!r} is malformed: {exception_reason(error)}") from error


def _reference(value: Id | None) -> str | None:
    """An id that points at another record; Zendesk writes "none" as ``"0"`` in event details."""
    return None if value in (None, "", "0", 0) else str(value)


# -- Inbound mapping ---------------------------------------------------------------------------------------


def _own_or_known(refs: Refs, entity_type: str, external_id: str | None, zendesk_id: Id) -> str:
    """The canonical id of a Zendesk record: the one its external key names if the hub created it,
    else the known (or a new) cross-reference."""
    named = from_external_key(external_id) if external_id else None
    if named is not None and named.startswith(f"{entity_type}/"):
        return named
    return refs.canonical_id(entity_type, SYSTEM, str(zendesk_id))


def _linked(refs: Refs, entity_type: str, zendesk_id: Id | None) -> str | None:
    reference = _reference(zendesk_id)
    return None if reference is None else refs.canonical_id(entity_type, SYSTEM, reference)


def _written_by_hub(external_id: str | None) -> bool:
    """A record the hub made from another system's: support owns none of its fields, and its event
    details hold too little to restate them, so its changes are the echo of the hub's own writes."""
    return bool(external_id) and from_external_key(external_id or "") is not None


def _organization_changes(action: str, detail: dict[str, Any], refs: Refs) -> list[Change]:
    organization = _decode(detail, _Organization, "organization")
    customer_id = _own_or_known(refs, "customer", organization.external_id, organization.id)
    # An organization event says nothing of e-mail, phone, address or status: it speaks for the
    # profile (the name) only, and the hub keeps the rest of its golden record.
    if action == "deleted":
        customer = Customer(id=customer_id, name=organization.name, status="deleted")
        return [Change(type="customer.deleted", entity=customer, groups=("status",))]
    if _written_by_hub(organization.external_id):
        return []
    return [Change(type="customer.upserted", entity=Customer(id=customer_id, name=organization.name),
                   groups=("profile",))]


def _user_changes(action: str, detail: dict[str, Any], event: dict[str, Any], refs: Refs) -> list[Change]:
    user = _decode(detail, _User, "user")
    if user.role != "end-user":
        return []
    contact_id = _own_or_known(refs, "contact", user.external_id, user.id)
    if action == "deleted" or (action == "active_changed" and event.get("current") is False):
        contact = Contact(id=contact_id, last_name=user.name or user.email or contact_id, status="deleted")
        return [Change(type="contact.deleted", entity=contact, groups=("status",))]
    if _written_by_hub(user.external_id):
        return []
    # Event details carry no name; a name change carries the new one in the event.
    name = event.get("current") if action == "name_changed" else user.name
    first, last = _split_name(name if isinstance(name, str) and name.strip() else user.email or f"User {user.id}")
    contact = Contact(id=contact_id, customer_id=_linked(refs, "customer", user.organization_id), first_name=first,
                      last_name=last, email=user.email, phone=user.phone)
    return [Change(type="contact.upserted", entity=contact)]


def _split_name(name: str) -> tuple[str | None, str]:
    """``"Ada King Lovelace"`` -> (``"Ada King"``, ``"Lovelace"``); one word is a last name."""
    first, _, last = name.strip().rpartition(" ")
    return (first or None), last


def _ticket_changes(action: str, obj: dict[str, Any], refs: Refs) -> list[Change]:
    ticket = _decode(obj, _Ticket, "ticket")
    status = CASE_STATUSES.get((ticket.status or "new").lower())
    priority_text = (ticket.priority or "").lower()
    if status is None or priority_text not in PRIORITIES:
        raise ConnectorError(Category.DATA, f"zendesk ticket {ticket.id}: unknown status {ticket.status!r} "
                                            f"or priority {ticket.priority!r}")
    case = SupportCase(
        id=_own_or_known(refs, "supportcase", ticket.external_id, ticket.id),
        customer_id=_linked(refs, "customer", ticket.organization_id),
        contact_id=_linked(refs, "contact", ticket.requester_id),
        subject=ticket.subject or f"Zendesk ticket {ticket.id}",
        description=ticket.description,
        status=status,
        priority=PRIORITIES[priority_text],
        opened_at=ticket.created_at,
    )
    # A ticket event whose detail has no subject (Zendesk's slimmer ticket events) speaks for the
    # status only, so it cannot blank the case's subject and description in the golden record.
    groups = None if ticket.subject else ("status",)
    return [Change(type="case.opened" if action == "created" else "case.updated", entity=case, groups=groups)]


def _parse(payload: dict[str, Any]) -> InboundEvent:
    """One webhook body as an event: an event-subscribed webhook, or a ticket trigger's body."""
    if isinstance(payload.get("type"), str) and payload["type"].startswith(EVENT_TYPE_PREFIX):
        try:
            webhook = msgspec.convert(payload, _EventWebhook)
        except msgspec.ValidationError as error:
            raise SchemaError(f"body is not a Zendesk event: {error}") from error
        return InboundEvent(source_event_id=webhook.id, type=webhook.type.removeprefix(EVENT_TYPE_PREFIX),
                            occurred_at=webhook.time, payload=payload)
    if isinstance(payload.get("ticket"), dict):
        try:
            trigger = msgspec.convert({**payload, "ticket": _filled(payload["ticket"])}, _TriggerWebhook)
        except msgspec.ValidationError as error:
            raise SchemaError(f"body is not a ticket trigger webhook (see TRIGGER_TEMPLATE): {error}") from error
        ticket = trigger.ticket
        created = trigger.event == "ticket.created" or (trigger.event is None
                                                        and ticket.created_at == ticket.updated_at)
        # A trigger webhook has no event id: the ticket's id and update time name this version of it.
        return InboundEvent(source_event_id=f"ticket:{ticket.id}:{ticket.updated_at.isoformat()}",
                            type="ticket.created" if created else "ticket.updated",
                            occurred_at=ticket.updated_at, payload=payload)
    raise SchemaError("body is neither a Zendesk event (zen:event-type:...) nor a ticket trigger body")


# -- Outbound planning -------------------------------------------------------------------------------------


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields with a value: what the hub does not know is left out, never cleared."""
    return {name: value for name, value in fields.items() if value is not None}


def _operation(name: str, entity_type: str, canonical_id: str, method: str, path: str, body: dict[str, Any],
               read: tuple[str, dict[str, str]], *, idempotent: bool = False) -> Operation:
    """A write, with where to read its record back (``read``: a path and query) for ``probe``."""
    payload: dict[str, Any] = {"method": method, "path": path, "body": body,
                               "read": {"path": read[0], "params": read[1]}}
    if idempotent:
        payload["idempotent"] = True
    return Operation(name=name, entity_type=entity_type, canonical_id=canonical_id, payload=payload)


class _Planner:
    """Maps canonical entities onto Zendesk requests, with one account's settings and the hub's refs."""

    def __init__(self, settings: ZendeskSettings, refs: Refs) -> None:
        self.settings = settings
        self.refs = refs

    def known(self, canonical_id: str) -> int | None:
        """Zendesk's id for a canonical record the hub has written or seen there."""
        found = self.refs.external_id(canonical_id, SYSTEM)
        if found is None:
            return None
        if not (found.isascii() and found.isdigit()):
            raise ConnectorError(Category.DATA, f"zendesk ids are integers; {canonical_id} maps to {found!r}")
        return int(found)

    def require(self, entity_type: str, canonical_id: str) -> int:
        found = self.known(canonical_id)
        if found is None:
            raise MissingDependency(entity_type, canonical_id)
        return found

    def _upsert(self, name: str, entity_type: str, canonical_id: str, fields: dict[str, Any]) -> Operation:
        """``create_or_update`` keyed by the external key, and by Zendesk's id once the hub knows it
        (a record first seen in Zendesk has no external key of ours: matching on it alone would
        make a second record)."""
        collection = COLLECTIONS[entity_type]
        key = external_key(canonical_id)
        check_lengths(SYSTEM, f"{entity_type} {canonical_id}", {**fields, "external_id": key}, TEXT_LIMITS)
        zendesk_id = self.known(canonical_id)
        record = _present({"id": zendesk_id, "external_id": key, **fields})
        read = (f"/{collection}/{zendesk_id}.json", {}) if zendesk_id else \
            (f"/{collection}/search.json", {"external_id": key})
        return _operation(name, entity_type, canonical_id, "POST", f"/{collection}/create_or_update.json",
                          {ROOTS[collection]: record}, read)

    def _update_organization(self, name: str, customer_id: str, fields: dict[str, Any]) -> Operation:
        path = f"/organizations/{self.require('customer', customer_id)}.json"
        return _operation(name, "customer", customer_id, "PUT", path,
                          {"organization": {"organization_fields": fields}}, (path, {}))

    def customer(self, customer: Customer) -> Operation:
        return self._upsert("organization.upsert", "customer", customer.id, {
            "name": organization_name(customer),
            "details": _address_text(customer),
            "organization_fields": {ACCOUNT_STATUS_FIELD: customer.status},
        })

    def deleted(self, customer: Customer) -> list[Operation]:
        """The organization stays (its tickets need it); it is marked deleted. Nothing if never sent."""
        if self.known(customer.id) is None:
            return []
        return [self._update_organization("organization.mark_deleted", customer.id,
                                          {ACCOUNT_STATUS_FIELD: "deleted"})]

    def linked(self, customer: Customer) -> list[Operation]:
        """Only the ids the other systems have for this customer; nothing when none is known."""
        ids = {field: self.refs.external_id(customer.id, system) for system, field in XREF_FIELDS.items()}
        fields = _present(ids)
        if not fields:
            return []
        return [self._update_organization("organization.link", customer.id, fields)]

    def entitlement(self, customer_id: str, tier: str | None, sla: str | None, status: str) -> Operation:
        """The organization's entitlement fields. Without a tier (the hub does not know it) tier and SLA
        are left as they are; a tier ``sla_by_tier`` does not name, or an ended entitlement
        (``canceled``), has no SLA: the field is cleared with an explicit null, so Zendesk's SLA
        policies stop applying."""
        fields: dict[str, Any] = {"subscription_status": status}
        if tier is not None:
            fields |= {"plan_tier": tier, "sla": sla or self.settings.sla_by_tier.get(tier)}
        if status == "canceled":
            fields["sla"] = None
        return self._update_organization("organization.entitlement", customer_id, fields)

    def contact(self, contact: Contact) -> Operation:
        # No role: a new user is an end user by default, and create_or_update matches on e-mail,
        # so sending "end-user" would demote an agent who happens to share the address.
        organization = self.require("customer", contact.customer_id) if contact.customer_id else None
        name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
        return self._upsert("user.upsert", "contact", contact.id, {
            "name": name, "email": contact.email, "phone": contact.phone, "organization_id": organization,
        })

    def case(self, case: SupportCase) -> Operation:
        ticket_id = self.known(case.id)
        # "new" is Zendesk's to give (a ticket leaves it when first worked on, and never returns to it).
        fields = {"subject": case.subject, "status": None if case.status == "new" else case.status,
                  "priority": case.priority}
        body = case.description or case.subject
        check_lengths(SYSTEM, f"supportcase {case.id}", {**fields, "comment": body}, TEXT_LIMITS)
        if ticket_id is not None:
            path = f"/tickets/{ticket_id}.json"
            return _operation("ticket.update", "supportcase", case.id, "PUT", path, {"ticket": _present(fields)},
                              (path, {}))
        key = external_key(case.id)
        ticket = _present({
            **fields,
            "comment": {"body": body, "public": False},
            "external_id": key,
            "organization_id": self.require("customer", case.customer_id) if case.customer_id else None,
            "requester_id": self.require("contact", case.contact_id) if case.contact_id else None,
        })
        return _operation(TICKET_CREATE, "supportcase", case.id, "POST", "/tickets.json", {"ticket": ticket},
                          ("/tickets.json", {"external_id": key}), idempotent=True)


def organization_name(customer: Customer) -> str:
    """The organization's name: the customer's, followed by the id its source system gives it
    (``Acme Ltd (cus_NffrFeUfNV2Hib)``).

    Zendesk keeps organization names unique, while two customers may well share a name; the
    external id is what identifies the organization, and the suffix keeps distinct customers distinct
    and the name the same through every update. A customer that came from Zendesk keeps the name it
    has there (Zendesk made it unique already, and the hub must not rename an agent's organization)."""
    system, _, source_id = customer.id.partition("/")[2].partition("/")
    if system == SYSTEM:
        return customer.name
    suffix = f" ({source_id or customer.id})"
    room = ORGANIZATION_NAME_LIMIT - len(suffix)
    # A name that leaves no room for the suffix is cut short (the suffix is what keeps it unique).
    name = customer.name if len(customer.name) <= room else customer.name[: room - 1].rstrip() + "…"
    return name + suffix


def _customer_name(name: object, canonical_id: str | None) -> dict[str, str | int | None]:
    """The customer's name in an organization's, as a projection's values: without the source id
    :func:`organization_name` added; none when the name was cut short (it cannot be compared)."""
    if not isinstance(name, str) or name.endswith("…)") or "…" in name:
        return {}
    system, _, source_id = (canonical_id or "").partition("/")[2].partition("/")
    suffix = f" ({source_id})"
    return {"name": name[: -len(suffix)] if system != SYSTEM and source_id and name.endswith(suffix) else name}


def _address_text(customer: Customer) -> str | None:
    """The address as the organization's free-text ``details`` (Zendesk has no address fields)."""
    address = customer.address
    if address is None:
        return None
    parts = (address.line1, address.line2, address.city, address.state, address.postal_code, address.country)
    return ", ".join(part for part in parts if part) or None


def _subscription_status(event_type: str, subscription: Subscription) -> str:
    return "canceled" if event_type == "subscription.cancelled" else subscription.status


ENTITLEMENT_STATUSES = {"active": "active", "suspended": "suspended", "cancelled": "canceled"}
"""Canonical entitlement status -> ``subscription_status``, in Zendesk's (and Stripe's) spelling."""


def _reflects(record: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``record`` holds what a write sent (nested objects compared field by field)."""
    for name, value in wanted.items():
        if name in WRITE_ONLY:
            continue
        actual = record.get(name)
        if isinstance(value, dict):
            if not (isinstance(actual, dict) and _reflects(actual, value)):
                return False
        elif actual != value:
            return False
    return True


def _describe(response: httpx.Response) -> str:
    """``HTTP 422 Unprocessable Entity: RecordInvalid (name: DuplicateValue)``: Zendesk's error and
    each field's error code, not the descriptions (``Name: Acme has already been taken``)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return status_line(response)
    error = body.get("error")
    if isinstance(error, dict):  # some endpoints nest it: {"error": {"title", "message"}}
        error = error.get("title")
    details = body.get("details")
    if not isinstance(details, dict):
        details = {}
    problems = [f"{field}: {error_code(problem.get('error'))}" for field, listed in details.items()
                if isinstance(listed, list) for problem in listed if isinstance(problem, dict)]
    text = f"{status_line(response)}: {error_code(error)}"
    return f"{text} ({'; '.join(problems)})" if problems else text



def _settings(ctx: Context) -> ZendeskSettings:
    return ctx.settings_as(ZendeskSettings)


def _one(body: Any, collection: str) -> dict[str, Any] | None:
    """The record in a show (``{"organization": {...}}``) or list/search answer (the first one)."""
    if not isinstance(body, dict):
        return None
    single = body.get(ROOTS[collection])
    if isinstance(single, dict):
        return single
    listed = body.get(collection)
    return listed[0] if isinstance(listed, list) and listed and isinstance(listed[0], dict) else None


def _json(response: httpx.Response) -> Any:
    """A success's JSON body. A garbled one is worth another try: every write here is idempotent."""
    try:
        return json.loads(response.content)
    except ValueError as error:
        raise ConnectorError(Category.TRANSIENT, f"zendesk answered {response.request.url.path} with "
                                                 f"HTTP {response.status_code} and no JSON") from error


def _collection(path: str) -> str:
    """``/organizations/create_or_update.json`` -> ``organizations``."""
    return path.strip("/").split("/", 1)[0].removesuffix(".json")


class ZendeskConnector(BaseConnector):
    """Zendesk Support: signed webhooks in; organizations, users, entitlements and tickets out."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.SUPPORT
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX,
         Capability.LIST}
    )
    settings_model: ClassVar[type[BaseModel]] = ZendeskSettings
    lists: ClassVar[frozenset[str]] = frozenset({"customer"})
    #: Organizations and users have Zendesk's time-based incremental export (:meth:`records_page`).
    lists_since: ClassVar[frozenset[str]] = frozenset({"customer", "contact"})
    webhook_media_types: ClassVar[frozenset[str]] = frozenset({"application/json"})

    # -- inbound ---------------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Check ``X-Zendesk-Webhook-Signature`` against every configured signing secret."""
        settings = _settings(ctx)
        signature.verify(headers, body, settings.secrets(), now=ctx.clock(), tolerance=settings.tolerance_s)

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """One delivery is one event; ``payload`` keeps the whole body for ``to_canonical``."""
        return self.parse_webhook_json(ctx, headers, json_body(body))

    def parse_webhook_json(self, ctx: Context, headers: Headers, document: Any) -> list[InboundEvent]:
        """:meth:`parse_webhook` of a body the hub decoded already (it is not decoded twice)."""
        if not isinstance(document, dict):
            raise SchemaError("body is not a JSON object")
        return [_parse(document)]

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """The canonical change an event means, per the table in the module doc; ``[]`` for the rest."""
        kind, _, action = event.type.partition(".")
        payload = event.payload
        match kind:
            case "organization":
                return _organization_changes(action, payload["detail"], refs)
            case "user":
                return _user_changes(action, payload["detail"], payload.get("event") or {}, refs)
            case "ticket":
                return _ticket_changes(action, payload["detail"] if "detail" in payload else payload["ticket"],
                                       refs)
        return []

    # -- outbound --------------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        planner = _Planner(_settings(ctx), refs)
        match event.type, event.data:
            case "customer.upserted", Customer() as customer:
                return [planner.customer(customer)]
            case "customer.deleted", Customer() as customer:
                return planner.deleted(customer)
            case "customer.linked", Customer() as customer:
                return planner.linked(customer)
            case ("subscription.created" | "subscription.amended" | "subscription.renewed"
                  | "subscription.cancelled"), Subscription() as subscription:
                return [planner.entitlement(subscription.customer_id, subscription.plan_tier, None,
                                            _subscription_status(event.type, subscription))]
            case "entitlement.changed", Entitlement() as entitlement:
                return [planner.entitlement(entitlement.customer_id, entitlement.plan_tier, entitlement.sla,
                                            ENTITLEMENT_STATUSES[entitlement.status])]
            case "contact.upserted", Contact() as contact:
                return [planner.contact(contact)]
            case ("case.opened" | "case.updated"), SupportCase() as case:
                return [planner.case(case)]
        return []

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """Send the write; ticket creation carries ``idempotency_key`` as Zendesk's ``Idempotency-Key``."""
        payload = op.payload
        headers = {"Idempotency-Key": idempotency_key} if payload.get("idempotent") else {}
        response = self._request(ctx, payload["method"], payload["path"], body=payload["body"], headers=headers)
        record = _one(_json(response), _collection(payload["path"]))
        if record is None or "id" not in record:
            raise ConnectorError(Category.DATA, f"zendesk answered {payload['method']} {payload['path']} "
                                                f"without the record: {response.text[:300]}")
        return Outcome(external_id=str(record["id"]), created=response.status_code == 201, record=record)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """After an ambiguous failure: is the record there *and* does it hold what the write sent?
        (An update lost in a timeout must not pass for done.) Reads only: a ticket is looked up by
        its external key, not created by re-sending. A ticket with that key is the create landing,
        whatever it holds now: triggers and agents change a new ticket at once, and posting it again
        once the Idempotency-Key expired would open a duplicate."""
        read = op.payload["read"]
        response = self._request(ctx, "GET", read["path"], params=read["params"], missing_ok=True)
        if response.status_code == 404:
            return None
        collection = _collection(op.payload["path"])
        record = _one(_json(response), collection)
        if record is None:
            return None
        if op.name == TICKET_CREATE:
            return Outcome(external_id=str(record["id"]), created=True, record=record)
        if not _reflects(record, op.payload["body"][ROOTS[collection]]):
            return None
        return Outcome(external_id=str(record["id"]), record=record)

    # -- reading ---------------------------------------------------------------------------------------

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """``GET /{organizations|users|tickets}/{id}``: the record in Zendesk's JSON form."""
        collection = self._collection_of(entity_type)
        record = _one(_json(self._request(ctx, "GET", f"/{collection}/{external_id}.json")), collection)
        if record is None:
            raise ConnectorError(Category.DATA, f"zendesk answered GET {collection}/{external_id} without it")
        return record

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every organization (``customer``), user (``contact``) or ticket (``supportcase``), page
        after page (:meth:`records_page`)."""
        return all_records(self, ctx, entity_type, page_size=page_size)

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """One page. Without ``since``, cursor pagination: ``page[size]`` (at most 100), then
        ``page[after]`` = ``meta.after_cursor`` (the cursor) while ``meta.has_more``; the cursor is sent
        to ``base_url`` rather than following ``links.next``, whose absolute URL names the host Zendesk
        thinks it is (wrong behind a proxy). With ``since`` (organizations and users), Zendesk's
        time-based incremental export (:meth:`_exported`)."""
        collection = self._collection_of(entity_type)
        if since is not None and entity_type in self.lists_since:
            return self._exported(ctx, collection, cursor, since, page_size)
        size = str(min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE))
        params = {"page[size]": size, **({"page[after]": cursor} if cursor else {})}
        page = _json(self._request(ctx, "GET", f"/{collection}.json", params=params))
        items = page.get(collection) if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise ConnectorError(Category.DATA, f"zendesk answered GET {collection} without a list")
        meta = page.get("meta") or {}
        more = meta.get("has_more") and meta.get("after_cursor")
        return Page(records=items, next=str(meta["after_cursor"]) if more else None)

    def _exported(self, ctx: Context, collection: str, cursor: str | None, since: datetime,
                  page_size: int | None) -> Page:
        """A page of ``GET /incremental/{collection}?start_time=``: what changed at or after
        ``start_time`` (the cursor: Unix seconds), up to ``page_size`` (1,000) records and the rest of
        the last one's second. Zendesk provides nothing of the last minute, so a ``since`` within it
        starts a minute back (a few records read again, none missed). The next page starts at
        ``end_time``, which repeats that second's records (reconciliation keeps the last copy), or
        a second later when a page did not move past its start (every record of that second was on
        it)."""
        if cursor is not None and not cursor.isdigit():
            raise ConnectorError(Category.DATA, f"a zendesk export cursor is a start_time, not {cursor!r}")
        start = int(cursor) if cursor else min(int(since.timestamp()), int(ctx.clock()) - EXPORT_LAG_S)
        params = {"start_time": str(start), "per_page": str(min(page_size or EXPORT_PAGE_SIZE, EXPORT_PAGE_SIZE))}
        page = _json(self._request(ctx, "GET", f"/incremental/{collection}.json", params=params))
        items = page.get(collection) if isinstance(page, dict) else None
        if not isinstance(items, list) or not isinstance(page.get("end_time"), int):
            raise ConnectorError(Category.DATA, f"zendesk answered the {collection} export without a list")
        if page.get("end_of_stream", True):
            return Page(records=items)
        end = int(page["end_time"])
        return Page(records=items, next=str(end if end > start else start + 1))

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """An organization (``customer``) by its customer's name (:func:`organization_name` read
        backwards); its mark is the ``external_id`` the hub gave it."""
        if entity_type not in self.lists:
            raise ConnectorError(Category.DATA, f"zendesk reconciles customers, not {entity_type!r}")
        updated, mark = record.get("updated_at"), from_external_key(str(record.get("external_id") or ""))
        return Projection(id=str(record["id"]), mark=mark, values=_customer_name(record.get("name"), mark),
                          changed_at=datetime.fromisoformat(updated).timestamp() if isinstance(updated, str) else None)

    # -- failures --------------------------------------------------------------------------------------

    def classify(self, error: Exception) -> ConnectorError:
        """The shared HTTP taxonomy (429 with ``Retry-After``; 401/403 auth; 404/422 data; 409, a
        concurrent request with the same idempotency key, transient), with Zendesk's own error in
        the message."""
        if not isinstance(error, httpx.HTTPStatusError):
            return classify_http(error, SYSTEM)
        response, request = error.response, error.request
        return ConnectorError(
            status_category(response.status_code),
            f"{SYSTEM} {request.method} {request.url.path}: {_describe(response)}",
            retry_after=retry_after_seconds(response),
            status=response.status_code,
        )

    def sandbox(self) -> Sandbox:
        """A fresh Zendesk emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.zendesk.sandbox.app import ZendeskSandbox

        return ZendeskSandbox()

    # -- HTTP ------------------------------------------------------------------------------------------

    @staticmethod
    def _collection_of(entity_type: str) -> str:
        if entity_type not in COLLECTIONS:
            raise ConnectorError(Category.DATA, f"zendesk has no {entity_type!r} records; it has "
                                                f"{', '.join(COLLECTIONS)}")
        return COLLECTIONS[entity_type]

    def _request(self, ctx: Context, method: str, path: str, *, body: dict[str, Any] | None = None,
                 params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                 missing_ok: bool = False) -> httpx.Response:
        """One authenticated call; any failure leaves classified as a :class:`ConnectorError`."""
        settings = _settings(ctx)
        try:
            response: httpx.Response = ctx.http.request(
                method, settings.url(path), params=params, json=body, headers={"Accept": "application/json",
                                                                                **(headers or {})},
                auth=(f"{settings.email}/token", settings.api_token.get_secret_value()), timeout=settings.timeout_s,
            )
            if not (missing_ok and response.status_code == 404):
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise self.classify(error) from error
        return response
