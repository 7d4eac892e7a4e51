"""Typed records exchanged between the runtime and connectors."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import httpx
import msgspec
from crossledger.canonical import Entity
from pydantic import BaseModel


class SystemKind(StrEnum):
    CRM = "crm"
    BILLING = "billing"
    ERP = "erp"
    SUPPORT = "support"


class Capability(StrEnum):
    WEBHOOKS = "webhooks"
    DELIVER = "deliver"
    PROBE = "probe"
    POLL = "poll"
    FETCH = "fetch"
    SANDBOX = "sandbox"
    #: ``records`` lists the entity types in ``lists``, and ``project`` reads them for reconciliation.
    LIST = "list"
    #: ``recover`` turns a record into the inbound event the hub should have received for it.
    RECOVER = "recover"


SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(frozen=True)
class Context:
    """What a connector gets from the hub to do its work: it never reaches into the runtime."""

    settings: BaseModel
    http: httpx.Client
    clock: Callable[[], float]

    def settings_as(self, model: type[SettingsT]) -> SettingsT:
        """The settings as the model the connector declared; anything else is a wiring mistake."""
        if not isinstance(self.settings, model):
            raise TypeError(f"this connector needs {model.__name__}, got {type(self.settings).__name__}")
        return self.settings


class InboundEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event as the source system sent it, after signature check and parsing."""

    source_event_id: str
    type: str
    occurred_at: datetime
    payload: dict[str, Any]


class Projection(msgspec.Struct, frozen=True, kw_only=True):
    """One listed record as reconciliation compares it: the few values that matter, named as the
    canonical model names them, so records of two systems compare value for value.

    ``values`` use canonical field names: ``total`` and ``amount_remaining`` in integer minor units
    beside ``currency`` (ISO 4217, upper case), ``status`` in the ledger's words (``open``,
    ``settled``: a void that the ERP books as a credit memo is settled there too), and any profile
    field (``name``, ``email``) as the system holds it. A value the system does not know is left out.
    """

    #: The record's id in its system.
    id: str
    #: The canonical id the record carries, when the hub made it (NetSuite ``externalId``, Stripe
    #: ``metadata[crossledger_id]``); None for a record the system made, matched by the hub's refs.
    mark: str | None = None
    #: The business key people type again when they copy a record by hand (an invoice's number, a
    #: customer's email): a record with no mark and no cross-reference is matched by it.
    key: str | None = None
    values: dict[str, str | int | None] = {}
    #: When the system last changed the record (Unix seconds), if it says.
    changed_at: float | None = None
    #: The period (``YYYY-MM``) a document counts in, for balances; None for a non-document.
    period: str | None = None


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a listing (:class:`~crossledger.plugins.connector.ListsPages`): its records in
    the system's own JSON form, and where the next page starts.

    ``next`` is the connector's own cursor, opaque to the hub, which keeps it with a reconciliation
    run between pages so an interrupted run resumes at the page after the last one it finished: it
    must still name that place later (a Stripe object id, a NetSuite row id, a Zendesk cursor), in
    plain text. None on the last page."""

    records: list[dict[str, Any]]
    next: str | None = None


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """A canonical fact produced by ``to_canonical``; the hub wraps it in an Envelope.

    ``groups`` makes it a *partial* change: the source speaks only for those field groups (NetSuite
    saying an invoice is posted does not restate the invoice's lines). The hub takes every other
    field from its golden record; with no golden record yet, ``entity`` is taken whole.
    """

    type: str
    entity: Entity
    groups: tuple[str, ...] | None = None


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One write a connector will make in its system, planned from a canonical event.

    ``name`` (``customer.upsert``, ``invoice.create``...) is part of the idempotency key, so it must
    be stable for the same effect. ``payload`` is the connector's own; the hub never reads it.
    ``withheld`` says what of the event the write deliberately leaves out, and why (a figure the
    target could only show in the wrong currency): the hub records it with the delivery's outcome.
    """

    name: str
    entity_type: str
    canonical_id: str
    payload: dict[str, Any]
    withheld: str | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What an executed (or probed) operation produced in the target."""

    external_id: str
    created: bool = False
    record: dict[str, Any] | None = None


class PollResult(msgspec.Struct, frozen=True, kw_only=True):
    events: list[InboundEvent]
    cursor: str | None
    has_more: bool = False


class Refs(Protocol):
    """Cross-references, answered by the hub's store."""

    def external_id(self, canonical_id: str, system: str) -> str | None:
        """The id ``system`` uses for the canonical record, if it has one."""

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        """The canonical id of ``system``'s record (a known cross-reference, or a new id)."""

    def prefetch(self, lookups: Sequence[tuple[str, str, str]]) -> None:
        """Say which ``canonical_id`` lookups (entity type, system, external id) are coming, so the
        hub reads them in one round trip instead of one each. A hint: the answers are the same."""


class Sandbox(Protocol):
    """A connector's local emulator of its system's API."""

    @property
    def app(self) -> Any:
        """The ASGI application serving the system's API, ``/_sandbox/state`` and ``/_sandbox/faults``."""

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """The ``[connectors.<name>]`` settings that point the hub at this sandbox at ``base_url``."""

    def subscribe(self, hub_webhook_url: str) -> None:
        """Register the hub's webhook URL, the way an operator would in the real system."""


@dataclass(frozen=True)
class OwnershipRule:
    """Which system kind(s) own a field group of an entity, in order of precedence.

    The first kind in ``owners`` that has a configured connector is the system of record.
    ``on_violation`` says what happens to a change from a non-owner: ``strip`` the fields (and
    audit it) or ``reject`` the event as a policy error.
    """

    entity: str
    field_group: str
    owners: tuple[str, ...]
    on_violation: str = "strip"


@dataclass(frozen=True)
class Route:
    """Canonical events of ``event_type`` from ``source`` (``*`` for any) go to ``targets``."""

    event_type: str
    targets: tuple[str, ...]
    source: str = "*"


Headers = Mapping[str, str]
