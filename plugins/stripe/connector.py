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

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal

import msgspec
from crossledger.canonical.bounds import OutOfRange, from_epoch
from crossledger.canonical.events import Envelope
from crossledger.plugins.connector import BaseConnector
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
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX}
    )
    settings_model: ClassVar[type[BaseModel]] = StripeSettings
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
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise PayloadError(f"body is not JSON: {error}") from error
        try:
            envelope = msgspec.convert(payload, _Envelope)
        except msgspec.ValidationError as error:
            raise SchemaError(f"body is not a Stripe event: {error}") from error
        return [
            InboundEvent(
                source_event_id=envelope.id,
                type=envelope.type,
                occurred_at=_created(envelope.created),
                payload=payload,
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
        """Every Stripe object behind a canonical entity type (:data:`LISTS`), newest first, paged with
        Stripe's ``limit`` and ``starting_after`` cursor."""
        if entity_type not in LISTS:
            raise ConnectorError(Category.DATA, f"stripe cannot list {entity_type!r}; it lists {', '.join(LISTS)}")
        collection, filters = LISTS[entity_type]
        return _api(ctx).list_all(collection, filters, page_size)

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
        from crossledger.plugins.stripe.sandbox import StripeSandbox

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
