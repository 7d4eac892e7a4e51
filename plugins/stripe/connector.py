"""The Stripe connector: Stripe's webhooks in, customers out, and Stripe's records read on demand.

Stripe pushes an ``event`` object to the hub for every change (see :mod:`.signature` for how the
delivery is signed). The connector verifies it, unwraps it, and maps the events the hub cares
about onto the canonical model (:mod:`.mapping` has the table). An event that failed on bad data
can be replayed after the fix in Stripe: :meth:`~StripeConnector.refetch` reads its object again.

As a delivery target Stripe takes customers: the profile of a customer the CRM (or the ERP) owns,
the ids the other systems have for it, and whether the hub left it inactive (:mod:`.outbound`). Writes use Stripe's own
``Idempotency-Key``, and a write that timed out is probed before it is sent again.

The calls themselves, their settings and the classification of their failures are in :mod:`.client`.
"""

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import msgspec
from crossledger.canonical.bounds import OutOfRange, from_epoch
from crossledger.canonical.events import Envelope
from crossledger.plugins.connector import BaseConnector, all_records, json_body
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, SchemaError, SignatureError
from crossledger.plugins.stripe import mapping, outbound, signature
from crossledger.plugins.stripe.client import (
    API_VERSION,
    SYSTEM,
    StripeApi,
    StripeSettings,
    classify,
    search_literal,
)
from crossledger.plugins.stripe.mapping import HUB_ID
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
from pydantic import BaseModel

__all__ = ["API_VERSION", "StripeConnector", "StripeSettings"]

LISTS = {
    "customer": ("customers", {}),
    "invoice": ("invoices", {}),
    "subscription": ("subscriptions", {"status": "all"}),
    "payment": ("invoice_payments", {}),
    "creditmemo": ("credit_notes", {}),
    "refund": ("refunds", {}),
}
"""What :meth:`StripeConnector.records` lists: canonical entity type -> Stripe collection and the
filters that make it complete (canceled subscriptions are left out of Stripe's list by default)."""

CHANGED = {"customer": ("customer.*", "customer"), "invoice": ("invoice.*", "invoice"),
           "payment": ("invoice_payment.*", "invoice_payment"), "creditmemo": ("credit_note.*", "credit_note"),
           "refund": ("refund.*", "refund")}
"""What changed of a canonical entity type since a moment: the events of its Stripe object
(``type`` with Stripe's ``*`` wildcard), and the object they carry."""
EVENT_PREFIX = "evt_"
"""How an event id starts: a listing cursor that is one is a page of events (:meth:`StripeConnector._changed`)."""
EVENT_RETENTION_S = 29 * 86_400
"""How far back Stripe lists events (30 days), less a day's margin."""

SETTLED_INVOICES = {"open": "open", "uncollectible": "open", "paid": "settled", "void": "settled"}
"""A finalized invoice's ``status`` as the ledger reads it (:class:`~crossledger.plugins.types.Projection`):
what is still owed is open; paid, or void (which the ERP books as a credit memo), is settled."""

RECOVERED_EVENTS = {"customer": ("customer", "customer.updated"), "invoice": ("invoice", "invoice.finalized"),
                    "payment": ("invoice_payment", "invoice_payment.paid"),
                    "creditmemo": ("credit_note", "credit_note.created"), "refund": ("refund", "refund.created")}
"""What :meth:`StripeConnector.recover` reads, by canonical entity type: the Stripe object, and the
event type it is admitted as (a void invoice: ``invoice.voided``)."""

DOCUMENTS = {"payment": ("amount_paid", "paid", ("paid",)), "creditmemo": ("total", "created", ("issued",)),
             "refund": ("amount", "created", ("succeeded", "pending"))}
"""The money documents reconciled beside invoices, by canonical entity type: where the amount is, the
time it counts from (``status_transitions.paid_at`` for a payment, else ``created``), and the
statuses that put it in the books (an open payment, a void credit note, a failed refund are not)."""


class _EventData(msgspec.Struct, frozen=True):
    object: dict[str, Any]


class _Envelope(msgspec.Struct, frozen=True):
    """A Stripe ``event``: only the fields every event must have are checked here."""

    id: str
    object: Literal["event"]
    type: str
    created: int
    data: _EventData


class StripeConnector(BaseConnector):
    """Stripe as a billing system: webhooks in, customers out, records fetched on demand, and a sandbox."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.BILLING
    version: ClassVar[str] = "0.2.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX,
         Capability.LIST, Capability.RECOVER}
    )
    settings_model: ClassVar[type[BaseModel]] = StripeSettings
    lists: ClassVar[frozenset[str]] = frozenset({"customer", "invoice", "payment", "creditmemo", "refund"})
    #: Every type, through the account's events (:meth:`records_page`).
    lists_since: ClassVar[frozenset[str]] = frozenset({"customer", "invoice", "payment", "creditmemo", "refund"})
    webhook_media_types: ClassVar[frozenset[str]] = frozenset({"application/json"})

    # -- inbound ------------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Check ``Stripe-Signature`` against the current (or, during a roll, the previous) secret."""
        settings = _settings(ctx)
        header = next((value for name, value in headers.items() if name.lower() == "stripe-signature"), None)
        if not header:
            raise SignatureError("missing Stripe-Signature header")
        secrets = [settings.webhook_secret, settings.previous_webhook_secret]
        signature.verify(
            header,
            body,
            [secret.get_secret_value() for secret in secrets if secret is not None],
            now=ctx.clock(),
            tolerance=settings.tolerance_s,
        )

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """One Stripe delivery is one event; ``payload`` keeps the whole event for ``to_canonical``."""
        return self.parse_webhook_json(ctx, headers, json_body(body))

    def parse_webhook_json(self, ctx: Context, headers: Headers, document: Any) -> list[InboundEvent]:
        """:meth:`parse_webhook` of a body the hub decoded already."""
        try:
            envelope = msgspec.convert(document, _Envelope)
        except msgspec.ValidationError as error:
            raise SchemaError(f"body is not a Stripe event: {error}") from error
        return [
            InboundEvent(
                source_event_id=envelope.id,
                type=envelope.type,
                occurred_at=_created(envelope.created),
                payload=document,
            )
        ]

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """The canonical changes an event means (:func:`.mapping.changes`); ``[]`` for the rest."""
        return mapping.changes(event.type, event.payload["data"]["object"], refs, _api(ctx))

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event carrying its object as Stripe has it now, for a replay after a fix at the source
        or to settle two versions stamped in the same second.

        The id, type and time stay: it is still the same event, only with fresher data.
        """
        obj = event.payload["data"]["object"]
        kind, object_id = obj.get("object"), obj.get("id")
        if not isinstance(kind, str) or not isinstance(object_id, str):
            raise ConnectorError(Category.DATA, f"stripe event {event.source_event_id} names no object to refetch")
        data = {**event.payload["data"], "object": self.fetch(ctx, kind, object_id)}
        return msgspec.structs.replace(event, payload={**event.payload, "data": data})

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """``GET /v1/<collection>/{id}`` for a Stripe object name (``customer``, ``invoice``, ``refund``...)."""
        return _api(ctx).fetch(entity_type, external_id)

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every Stripe object behind a canonical entity type (:data:`LISTS`), newest first, page
        after page (:meth:`records_page`)."""
        return all_records(self, ctx, entity_type, page_size=page_size)

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """One page of a :data:`LISTS` collection, paged with Stripe's ``limit`` and
        ``starting_after`` (the cursor: the last object id read). Stripe's lists filter by ``created``
        only, and an invoice paid, voided or edited keeps its creation time; so with ``since`` the
        page is one of the account's events instead (:meth:`_changed`)."""
        if entity_type not in LISTS:
            raise ConnectorError(Category.DATA, f"stripe cannot list {entity_type!r}; it lists {', '.join(LISTS)}")
        if (cursor is not None and cursor.startswith(EVENT_PREFIX)) or (cursor is None and since is not None and (
                since.timestamp() > ctx.clock() - EVENT_RETENTION_S)):
            return self._changed(ctx, entity_type, cursor, since, page_size)
        collection, filters = LISTS[entity_type]
        data, after = _api(ctx).list_page(collection, filters, page_size, cursor)
        return Page(records=data, next=after)

    def _changed(self, ctx: Context, entity_type: str, cursor: str | None, since: datetime | None,
                 page_size: int | None) -> Page:
        """What changed since ``since``: a page of ``GET /v1/events`` of the entity's object
        (``type=invoice.*``, ``created[gte]``; the cursor, the last event id read), each object it
        names read as it is now (an event carries the object as it was then); one gone (a deleted
        draft) as ``deleted``, so reconciliation forgets it. Stripe keeps events 30 days: a ``since``
        older than that lists the collection in full."""
        pattern, kind = CHANGED[entity_type]
        api = _api(ctx)
        query: dict[str, str] = {"type": pattern}
        if since is not None:
            query["created[gte]"] = str(int(since.timestamp()))
        events, after = api.list_page("events", query, page_size, cursor)
        objects = (event["data"]["object"] for event in events)
        named = dict.fromkeys(str(obj["id"]) for obj in objects if obj.get("object") == kind)
        records = []
        for object_id in named:
            try:
                records.append(api.fetch(kind, object_id))
            except ConnectorError as error:
                if error.status != 404:
                    raise
                records.append({"id": object_id, "object": kind, "deleted": True})
        return Page(records=records, next=after)

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """Customers (name, email, currency once Stripe fixed it), finalized invoices (total, amount
        remaining, currency, open or settled, the month they were finalized in), and the payments,
        credit notes and refunds in the books (:data:`DOCUMENTS`); a deleted customer, a draft
        invoice, an open payment are outside them."""
        if entity_type == "customer":
            if record.get("deleted"):
                return None
            currency = record.get("currency")
            mark = (record.get("metadata") or {}).get(HUB_ID)
            email = record.get("email")
            return Projection(id=str(record["id"]), mark=mark if isinstance(mark, str) and mark else None,
                              key=str(email).lower() if email else None,
                              values={"name": record.get("name"), "email": record.get("email"),
                                      **({"currency": str(currency).upper()} if currency else {})},
                              changed_at=None)  # Stripe keeps no time of a customer's last change
        if entity_type == "invoice":
            status = SETTLED_INVOICES.get(str(record.get("status")))
            if status is None:
                return None
            transitions = record.get("status_transitions") or {}
            finalized = transitions.get("finalized_at") or record["created"]
            changed = max([finalized, *(t for t in transitions.values() if isinstance(t, int))])
            return Projection(id=str(record["id"]), key=record.get("number"), values={
                "currency": str(record["currency"]).upper(), "total": int(record["total"]),
                "amount_remaining": 0 if status == "settled" else int(record["amount_remaining"]), "status": status,
            }, changed_at=float(changed), period=datetime.fromtimestamp(finalized, UTC).strftime("%Y-%m"))
        if entity_type in DOCUMENTS:
            amount, moment, booked = DOCUMENTS[entity_type]
            if record.get("status") not in booked:
                return None
            at = (record.get("status_transitions") or {}).get("paid_at") if moment == "paid" else record["created"]
            at = at or record["created"]
            return Projection(id=str(record["id"]), values={
                "currency": str(record["currency"]).upper(), "total": int(record[amount])},
                changed_at=float(at), period=datetime.fromtimestamp(at, UTC).strftime("%Y-%m"))
        raise ConnectorError(Category.DATA, f"stripe reconciles {', '.join(sorted(self.lists))}, not {entity_type!r}")

    def recover(self, ctx: Context, entity_type: str, external_id: str) -> InboundEvent:
        """The object as Stripe has it now, wrapped as the event Stripe would have sent for it
        (:data:`RECOVERED_EVENTS`). Its id hashes the object, so the same state is admitted once."""
        if entity_type not in RECOVERED_EVENTS:
            raise ConnectorError(Category.DATA, f"stripe recovers {', '.join(RECOVERED_EVENTS)}, not {entity_type!r}")
        object_name, event_type = RECOVERED_EVENTS[entity_type]
        obj = self.fetch(ctx, object_name, external_id)
        if entity_type == "invoice" and obj.get("status") == "void":
            event_type = "invoice.voided"
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]
        event_id, created = f"evt_recovered_{digest}", int(time.time())
        payload = {"id": event_id, "object": "event", "type": event_type, "created": created,
                   "data": {"object": obj}}
        return InboundEvent(source_event_id=event_id, type=event_type, occurred_at=_created(created), payload=payload)

    # -- outbound -----------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        """Customers, their cross-references and status (:mod:`.outbound`); ``[]`` for other events. A
        customer the hub knows no Stripe id for is first looked for by its ``crossledger_id``."""
        api = _api(ctx)

        def made_for(canonical_id: str) -> str | None:
            found = _made_for(api, canonical_id)
            return None if found is None else str(found["id"])

        return outbound.plan(event, refs, made_for)

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """POST the form with ``idempotency_key`` as Stripe's ``Idempotency-Key``."""
        record = _api(ctx).post(op.payload["path"], op.payload["body"], idempotency_key)
        return Outcome(external_id=str(record["id"]), created=op.name == outbound.CREATE, record=record)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """After an ambiguous failure, whether the write landed: a created customer is searched for by
        its ``crossledger_id``; an updated one is read back and must hold what the write set."""
        api = _api(ctx)
        if op.name == outbound.CREATE:
            made = _made_for(api, op.canonical_id)
            return Outcome(external_id=str(made["id"]), created=True, record=made) if made else None
        record = api.get(op.payload["path"])
        if record.get("deleted") or not outbound.reflects(record, op.payload["body"]):
            return None
        return Outcome(external_id=str(record["id"]), record=record)

    def classify(self, error: Exception) -> ConnectorError:
        """:func:`.client.classify`: the HTTP taxonomy, refined by Stripe's ``Stripe-Should-Retry``."""
        return classify(error)

    def sandbox(self) -> Sandbox:
        """A fresh Stripe emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.stripe.sandbox.app import StripeSandbox

        return StripeSandbox()


def _created(epoch: int) -> datetime:
    """When the event happened; a time no system can hold is a malformed body, refused naming the field."""
    try:
        return from_epoch(epoch, "created")
    except OutOfRange as error:
        raise PayloadError(f"body is not a Stripe event: {error}") from error


def _settings(ctx: Context) -> StripeSettings:
    return ctx.settings_as(StripeSettings)


def _api(ctx: Context) -> StripeApi:
    return StripeApi(_settings(ctx), ctx.http)


def _made_for(api: StripeApi, canonical_id: str) -> dict[str, Any] | None:
    """The Stripe customer the hub made for ``canonical_id`` (its ``metadata[crossledger_id]``), if
    Stripe's search already shows it (the search lags writes by up to a minute)."""
    found = api.search("customers", f"metadata['{HUB_ID}']:{search_literal(canonical_id)}")
    return found[0] if found else None
