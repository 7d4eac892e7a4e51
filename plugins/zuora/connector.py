"""The Zuora connector: Zuora's callouts in, customers out, Zuora's records read on demand.

**Inbound.** Zuora pushes a *callout* for each event of a notification definition the tenant set
up (see docs/connectors/zuora.md for the definitions and the callout template). The connector
verifies it (:mod:`.callout`: HTTP Basic, or the HMAC of the body; refused with 401 otherwise),
parses its thin JSON body, and maps it from the object it names, read from Zuora *now*
(:mod:`.mapping`). Zuora retries a failed callout and may deliver one twice or out of order, and a
retry carries a new ``Zuora-Request-Id``; the event id is therefore built from what the callout
says, ``{eventType}:{objectId}:{updatedDate}``, the same on every retry and new with every change
of the object, so the hub drops repeats and reading the current object settles any order.

**Outbound.** Customers (:mod:`.outbound`): accounts created with ``Idempotency-Key``, found by the
hub-id custom field before a create is planned, updated with ``PUT``. After an ambiguous failure
:meth:`~ZuoraConnector.probe` looks the write up. Calls, tokens and the reading of Zuora's
``success: false`` answers are in :mod:`.client`.
"""

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec
from crossledger.canonical.events import Envelope
from crossledger.plugins.connector import BaseConnector, all_records, json_body
from crossledger.plugins.errors import (
    Category,
    ConnectorError,
    SchemaError,
    SignatureError,
    exception_reason,
)
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
from crossledger.plugins.zuora import callout, mapping, outbound
from crossledger.plugins.zuora.client import (
    QUERY_PAGE_SIZE,
    SYSTEM,
    ZuoraApi,
    ZuoraFailure,
    ZuoraSettings,
    classify,
)
from pydantic import BaseModel

QUERIED: dict[str, str] = {"customer": "accounts", "invoice": "invoices"}
"""What :meth:`ZuoraConnector.records` reads through Object Query (``/object-query/{collection}``,
``cursor``): Zuora's v1 API has no list of accounts or invoices."""
LISTED: dict[str, str] = {"payment": "payments", "creditmemo": "creditmemos", "refund": "refunds"}
"""What :meth:`ZuoraConnector.records` reads from the v1 list endpoints (``GET /v1/{collection}``,
``page`` and ``pageSize``, ``nextPage``)."""
BOOKED: dict[str, tuple[str, str]] = {"payment": ("Processed", "effectiveDate"),
                                      "creditmemo": ("Posted", "creditMemoDate"), "refund": ("Processed", "refundDate")}
"""A listed document in the books: the status it has then, and the date it counts on."""

FETCHED: dict[str, str] = {"customer": "Account", "invoice": "Invoice", "payment": "Payment",
                           "creditmemo": "CreditMemo", "refund": "Refund", "subscription": "Subscription"}
"""What :meth:`ZuoraConnector.fetch` reads: canonical entity type -> Zuora object (mapping.PATHS)."""

OBJECT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
"""What a callout may name: an id (32 hex characters) or a number (``A-S00000001``), nothing that
could change the path it is read from."""

DEFAULT_CURRENCY = "USD"
"""The currency of an account made for a customer whose currency nobody has fixed yet."""


class _Callout(msgspec.Struct, frozen=True):
    """The body crossledger's callout template sends (merge fields filled in by Zuora)."""

    eventType: str
    objectType: str
    objectId: str
    updatedDate: str


def _with_account_currency(api: ZuoraApi, refunds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``refunds`` with their accounts' currencies, read for this page's accounts only: Object Query
    ``filter[]=id.IN:[...]``, one request per :data:`QUERY_PAGE_SIZE` accounts (one for a page of
    refunds), where listing every account would cost a tenant's whole account list per page."""
    # Only ids go into the filter: a value that is none (a comma, a bracket) would change the query.
    wanted = sorted({str(refund["accountId"]) for refund in refunds
                     if OBJECT_KEY.fullmatch(str(refund.get("accountId")))})
    currencies: dict[str, Any] = {}
    for start in range(0, len(wanted), QUERY_PAGE_SIZE):
        chunk = wanted[start:start + QUERY_PAGE_SIZE]
        for account in api.query("accounts", filters=[f"id.IN:[{','.join(chunk)}]"]):
            currencies[str(account["id"])] = account.get("currency")
    return [{**refund, "currency": currencies.get(str(refund.get("accountId")))} for refund in refunds]


class ZuoraConnector(BaseConnector):
    """Zuora as a billing system: callouts in, customers out, records fetched on demand, and a sandbox."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.BILLING
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX,
         Capability.LIST}
    )
    lists: ClassVar[frozenset[str]] = frozenset({*QUERIED, *LISTED})
    lists_since: ClassVar[frozenset[str]] = frozenset(QUERIED)
    settings_model: ClassVar[type[BaseModel]] = ZuoraSettings
    webhook_media_types: ClassVar[frozenset[str]] = frozenset({"application/json"})

    # -- inbound ------------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Every configured scheme must pass: the HMAC of the body, and HTTP Basic (see :mod:`.callout`)."""
        settings = _settings(ctx)
        keys = [key.get_secret_value() for key in (settings.hmac_key, settings.previous_hmac_key) if key]
        basic = settings.callout_username is not None and settings.callout_password is not None
        if not keys and not basic:
            raise SignatureError("no callout authentication configured (hmac_key or callout_username/password)")
        if keys:
            callout.verify_hmac(headers, body, settings.hmac_header, keys)
        if basic and settings.callout_username is not None and settings.callout_password is not None:
            callout.verify_basic(headers, settings.callout_username, settings.callout_password.get_secret_value())

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """One callout is one event, keyed ``{eventType}:{objectId}:{updatedDate}`` (see the module doc)."""
        return self.parse_webhook_json(ctx, headers, json_body(body))

    def parse_webhook_json(self, ctx: Context, headers: Headers, document: Any) -> list[InboundEvent]:
        """:meth:`parse_webhook` of a body the hub decoded already (no second decode)."""
        try:
            found = msgspec.convert(document, _Callout)
        except msgspec.ValidationError as error:
            raise SchemaError(f"body is not a crossledger callout: {exception_reason(error)}") from error
        try:
            occurred = mapping.when(found.updatedDate)
        except ConnectorError as error:
            raise SchemaError("updatedDate is not a date-time") from error
        if occurred is None:
            raise SchemaError("updatedDate is empty")
        return [InboundEvent(source_event_id=f"{found.eventType}:{found.objectId}:{found.updatedDate}",
                             type=found.eventType, occurred_at=occurred, payload=document)]

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """The changes a callout means, from its object as Zuora has it now (read unless ``refetch``
        already put it in the payload)."""
        if event.type not in mapping.EVENTS:
            return []
        record = event.payload.get("object")
        if not isinstance(record, dict):
            record = self._current(ctx, event)
        return mapping.changes(event.type, record, refs, _settings(ctx).hub_id_field)

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event carrying its object as Zuora has it now (a replay after a fix at the source)."""
        if event.type not in mapping.EVENTS:
            return event
        return msgspec.structs.replace(event, payload={**event.payload, "object": self._current(ctx, event)})

    def _current(self, ctx: Context, event: InboundEvent) -> dict[str, Any]:
        object_type, object_id = event.payload.get("objectType"), event.payload.get("objectId")
        expected = mapping.EVENTS[event.type][0]
        if object_type != expected or not isinstance(object_id, str) or not OBJECT_KEY.fullmatch(object_id):
            raise ConnectorError(Category.DATA, f"zuora callout {event.source_event_id} names no {expected} to read")
        return mapping.read(_api(ctx), expected, object_id, _settings(ctx).tier_field)

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """``GET /v1/accounts/{id}`` for ``customer`` (also ``Account``), and likewise invoices, payments,
        credit memos and refunds."""
        object_type = FETCHED.get(entity_type, entity_type)
        if object_type not in mapping.PATHS:
            raise ConnectorError(Category.DATA, f"zuora cannot fetch {entity_type!r}")
        record = _api(ctx).get(f"{mapping.PATHS[object_type]}/{external_id}")
        if object_type == "Account":  # the same id whether read here or listed by records()
            record["id"] = record.get("basicInfo", {}).get("id", external_id)
        return record

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a canonical type, page after page (:meth:`records_page`)."""
        return all_records(self, ctx, entity_type, page_size=page_size)

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """One page: accounts and invoices through Object Query (:data:`QUERIED`; its cursor), changed
        since ``since`` by ``filter[]=updatedDate.GT:`` a second before it (Object Query has ``GT``
        and no ``GE``); payments, credit memos and refunds from the v1 lists (:data:`LISTED`; the page
        number), which filter by nothing, so they are listed in full. A refund comes with its
        account's currency, which Zuora's refund does not restate (:func:`_with_account_currency`)."""
        api = _api(ctx)
        if entity_type in QUERIED:
            filters = None if since is None else [
                f"updatedDate.GT:{(since.astimezone(UTC) - timedelta(seconds=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}"]
            data, following = api.query_page(QUERIED[entity_type], filters=filters, page_size=page_size,
                                             cursor=cursor)
            return Page(records=data, next=following)
        if entity_type not in LISTED:
            raise ConnectorError(Category.DATA,
                                 f"zuora cannot list {entity_type!r}; it lists {', '.join(sorted(self.lists))}")
        if cursor is not None and not cursor.isdigit():
            raise ConnectorError(Category.DATA, f"a zuora list cursor is a page number, not {cursor!r}")
        number = int(cursor or 1)
        listed, more = api.list_page(LISTED[entity_type], number, page_size=page_size)
        if entity_type == "refund" and listed:
            listed = _with_account_currency(api, listed)
        return Page(records=listed, next=str(number + 1) if more else None)

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """Accounts (name, currency; marked with the hub's id when the hub made them), posted invoices
        (total, balance, open while a balance remains, the month of their invoice date), and processed
        payments and refunds and posted credit memos (total, currency, month); drafts, cancelled and
        failed documents are outside the books."""
        changed = mapping.when(record.get("updatedDate"))
        changed_at = changed.timestamp() if changed else None
        if entity_type == "customer":
            currency = record.get("currency")
            return Projection(id=str(record["id"]), mark=_hub_mark(record), changed_at=changed_at, values={
                "name": record.get("name"), **({"currency": str(currency).upper()} if currency else {})})
        currency = str(record.get("currency") or "").upper()
        if entity_type == "invoice":
            if record.get("status") != "Posted":
                return None
            total = mapping.amount(record["amount"], currency, "amount").amount
            remaining = mapping.amount(record.get("balance") or 0, currency, "balance").amount
            return Projection(id=str(record["id"]), key=record.get("invoiceNumber"), changed_at=changed_at, values={
                "currency": currency, "total": total, "amount_remaining": remaining,
                "status": "open" if remaining > 0 else "settled"}, period=str(record.get("invoiceDate"))[:7])
        if entity_type in BOOKED:
            status, dated = BOOKED[entity_type]
            if record.get("status") != status:
                return None
            return Projection(id=str(record["id"]), changed_at=changed_at, values={
                "currency": currency, "total": mapping.amount(record["amount"], currency, "amount").amount},
                period=str(record.get(dated) or "")[:7] or None)
        raise ConnectorError(Category.DATA, f"zuora reconciles {', '.join(sorted(self.lists))}, not {entity_type!r}")

    # -- outbound -----------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        """Customers and their CRM id (:mod:`.outbound`); ``[]`` for other events."""
        settings = _settings(ctx)
        api = _api(ctx)

        def made_for(canonical_id: str) -> str | None:
            found = _made_for(api, settings, canonical_id)
            return None if found is None else str(found["id"])

        return outbound.plan(event, refs, made_for, settings.hub_id_field, DEFAULT_CURRENCY)

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """The write, with ``idempotency_key`` as Zuora's ``Idempotency-Key`` on a POST."""
        payload = op.payload
        api = _api(ctx, track_id=_track_id(idempotency_key))
        answer = api.call(payload["method"], payload["path"], body=payload["body"], idempotency_key=idempotency_key)
        if op.name == outbound.CREATE:
            return Outcome(external_id=str(answer["accountId"]), created=True, record=answer)
        return Outcome(external_id=payload["path"].rsplit("/", 1)[-1], record=answer)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """Whether a write landed: a create is looked for by its hub-id custom field; an update is read
        back and must hold what it wrote."""
        settings, api = _settings(ctx), _api(ctx)
        if op.name == outbound.CREATE:
            made = _made_for(api, settings, op.canonical_id)
            return None if made is None else Outcome(external_id=str(made["id"]), created=True, record=made)
        try:
            account = api.get(op.payload["path"])
        except ZuoraFailure as failure:
            if failure.not_found:
                return None
            raise
        if not outbound.reflects(account, op.payload["body"]):
            return None
        return Outcome(external_id=op.payload["path"].rsplit("/", 1)[-1], record=account)

    def classify(self, error: Exception) -> ConnectorError:
        """:func:`.client.classify`: the HTTP taxonomy, refined by Zuora's reason codes."""
        return classify(error)

    def sandbox(self) -> Sandbox:
        """A fresh Zuora emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.zuora.sandbox.app import ZuoraSandbox

        return ZuoraSandbox()


def _settings(ctx: Context) -> ZuoraSettings:
    return ctx.settings_as(ZuoraSettings)


def _api(ctx: Context, *, track_id: str | None = None) -> ZuoraApi:
    return ZuoraApi(_settings(ctx), ctx.http, clock=ctx.clock, track_id=track_id or f"crossledger-{uuid.uuid4().hex}")


def _hub_mark(account: dict[str, Any]) -> str | None:
    """The canonical id the hub gave an account it made: in its hub-id custom field, whatever the
    tenant named it (``project`` has no settings), told apart by being a customer's canonical id."""
    return next((value for name, value in account.items()
                 if name.endswith("__c") and isinstance(value, str) and value.startswith("customer/")), None)


def _track_id(idempotency_key: str) -> str:
    """A ``Zuora-Track-Id`` for a write (at most 64 US-ASCII characters, no ``:;"'``): the same for
    every call under one idempotency key, so Zuora's support can find them all."""
    return "crossledger-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def _made_for(api: ZuoraApi, settings: ZuoraSettings, canonical_id: str) -> dict[str, Any] | None:
    """The account the hub made for ``canonical_id`` (its hub-id custom field), if Zuora has one."""
    # Object Query's filter is ``field.OPERATOR:value``; the value runs to the end, colons and all.
    return next(iter(api.query("accounts", filters=[f"{settings.hub_id_field}.EQ:{canonical_id}"], page_size=1)),
                None)
