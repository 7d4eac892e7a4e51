"""The Business Central connector: the hub's documents into the ERP, and the ERP's own changes back.

Business Central is reached over its standard API v2.0,
``{base_url}/v2.0/{tenant}/{environment}/api/v2.0/companies({id})/...``, with Entra ID access
tokens (:mod:`.auth`). Outbound (:mod:`.outbound`):

==========================  ==========================================================================
canonical event             Business Central write
==========================  ==========================================================================
``customer.upserted``       ``customers``: found by ``number`` (the hub's key), else created; updated
                            with ``If-Match`` (412: read again, apply again)
``customer.deleted``        ``blocked: All`` (the record stays, with its history)
``customer.deactivated``    the same
``customer.suspended``      ``blocked: Invoice`` (no new invoices)
``customer.reinstated``     ``blocked: " "``
``invoice.issued``          ``salesInvoices`` with ``salesInvoiceLines`` (found by
                            ``externalDocumentNumber``), then ``Microsoft.NAV.post``
``invoice.voided``          ``Microsoft.NAV.cancel`` (the corrective credit memo)
``credit_memo.issued``      ``salesCreditMemos`` with lines, for its invoice, then ``Microsoft.NAV.post``
``payment.settled``         ``customerPaymentJournals({id})/customerPayments``, one line per invoice
                            applied to, in one atomic ``$batch``
==========================  ==========================================================================

Refunds, journal entries and subscriptions are not written: the standard API has no customer
refunds, journal lines would need the company's chart of accounts mapped, and there is no place
for a subscription without an extension.

Inbound (:mod:`.inbound`): webhook notifications, verified by their ``clientState``, and polling
with a ``lastModifiedDateTime`` cursor as the fallback; each poll also keeps the webhook
subscriptions alive (created when missing, renewed before their three days are up), since a poll
is what the hub's scheduler runs for a pull system.
"""

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from crossledger.canonical.entities import CreditMemo, Customer, Invoice, Payment
from crossledger.canonical.events import Envelope
from crossledger.canonical.money import from_decimal
from crossledger.plugins.business_central import inbound
from crossledger.plugins.business_central.auth import SYSTEM
from crossledger.plugins.business_central.client import ApiClient, classify
from crossledger.plugins.business_central.inbound import Poller, Translator
from crossledger.plugins.business_central.outbound import BLOCKED, ENTITY_SETS, Planner, Setup, Writer
from crossledger.plugins.business_central.settings import MAX_PAGE_SIZE, BusinessCentralSettings
from crossledger.plugins.connector import BaseConnector, all_records
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.tokens import TokenCache
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
    InboundEvent,
    Operation,
    Outcome,
    Page,
    PollResult,
    Projection,
    Refs,
    Sandbox,
    SystemKind,
)
from pydantic import BaseModel

OUTSIDE_THE_BOOKS = frozenset({"Draft", "Corrective"})
"""Document statuses reconciliation leaves out: not posted yet, or the memo that books a cancellation."""
TOKENS = TokenCache()
"""The process's access tokens, shared by every call (see :mod:`.auth`)."""


def _settings(ctx: Context) -> BusinessCentralSettings:
    return ctx.settings_as(BusinessCentralSettings)


def _api(ctx: Context) -> ApiClient:
    return ApiClient(_settings(ctx), ctx.http, TOKENS, ctx.clock())


class BusinessCentralConnector(BaseConnector):
    """Delivers canonical events to Business Central and takes its changes back, by webhook and poll."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.ERP
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.POLL, Capability.FETCH,
         Capability.SANDBOX, Capability.LIST})
    takes: ClassVar[frozenset[str]] = frozenset({"customer.upserted", *BLOCKED, "invoice.issued", "invoice.voided",
                                                 "payment.settled", "credit_memo.issued"})
    """What it writes (``TakesSomeEvents``): no refunds, journal entries or subscriptions (see the module doc)."""
    lists: ClassVar[frozenset[str]] = frozenset({"customer", "invoice", "creditmemo"})
    lists_since: ClassVar[frozenset[str]] = frozenset({"customer", "invoice", "creditmemo"})
    """Payments are not listed: a customer payment is a journal line until a user posts the journal,
    and then it is gone from the standard API (posted, it is a ledger entry the API v2.0 does not
    show); for the same reason an invoice's remaining amount and status are not compared."""
    settings_model: ClassVar[type[BaseModel]] = BusinessCentralSettings
    webhook_media_types: ClassVar[frozenset[str]] = frozenset({"application/json"})

    # -- outbound ------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        planner = Planner(_settings(ctx), refs)
        match event.type, event.data:
            case "customer.upserted", Customer() as customer:
                return [planner.customer(customer)]
            case event_type, Customer() as customer if event_type in BLOCKED:
                return planner.block(event_type, customer)
            case "invoice.issued", Invoice() as invoice:
                return [planner.invoice(invoice)]
            case "invoice.voided", Invoice() as invoice:
                return [planner.void(invoice)]
            case "payment.settled", Payment() as payment:
                return [planner.payment(payment)]
            case "credit_memo.issued", CreditMemo() as memo:
                return [planner.credit_memo(memo)]
        return []

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """Make the write; its natural key, not ``idempotency_key``, makes a repeat find the first."""
        api = _api(ctx)
        return Writer(api, Setup(api)).execute(op)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        api = _api(ctx)
        return Writer(api, Setup(api)).probe(op)

    # -- inbound -------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        inbound.verify(_settings(ctx), body)

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        return inbound.parse(body, _settings(ctx).company_id)

    def webhook_handshake(self, query: Mapping[str, str], headers: Headers,
                          body: bytes) -> tuple[int, str, bytes] | None:
        """Business Central's check of a new or renewed subscription: the ``validationToken`` back,
        as plain text with 200. Only the token's echo is given away, so no secret is needed."""
        token = query.get("validationToken")
        if token is None:
            return None
        return 200, "text/plain", token.encode()

    def poll(self, ctx: Context, cursor: str | None) -> PollResult:
        """Keep the webhook subscriptions alive, then read what changed since ``cursor``."""
        api = _api(ctx)
        inbound.maintain(api, ctx.clock())
        return Poller(api, Setup(api), ctx.clock()).poll(cursor)

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        api = _api(ctx)
        setup = Setup(api)
        return Translator(api, setup, refs, lambda: Poller(api, setup, ctx.clock())).changes(event)

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event carrying its record as Business Central has it now."""
        entity_set = event.type.split(".", 1)[0]
        record = event.payload.get("record") or {}
        if "id" not in record:
            return event  # a notification: its record is read when it is translated anyway
        return inbound.carrying(entity_set, self.fetch(ctx, entity_set, str(record["id"])))

    # -- reading -------------------------------------------------------------------------------

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """A record by canonical entity type (or entity set) and id, a document with its lines."""
        entity_set = ENTITY_SETS.get(entity_type, entity_type)
        api = _api(ctx)
        params = {"$expand": inbound.EXPANDS[entity_set]} if entity_set in inbound.EXPANDS else None
        record = api.get_if_any(api.company(f"/{entity_set}({external_id})"), params)
        if record is None:
            raise ConnectorError(Category.DATA, f"{SYSTEM} has no {entity_set} {external_id}", status=404)
        return record

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every record of the type, page after page (:meth:`records_page`)."""
        return all_records(self, ctx, entity_type, page_size=page_size)

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        """One page, paged by the server (``Prefer: odata.maxpagesize``; the cursor is the
        ``@odata.nextLink`` it answered, which carries the query on), changed since ``since`` by
        ``$filter=lastModifiedDateTime ge ...`` (the vendor's incremental sync), a blank
        ``currencyCode`` (the company's local currency) named as :attr:`local_currency` says."""
        entity_set = ENTITY_SETS.get(entity_type, entity_type)
        api = _api(ctx)
        local = _settings(ctx).local_currency
        params = {"$expand": inbound.EXPANDS[entity_set]} if entity_set in inbound.EXPANDS else {}
        if since is not None:
            moment = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            params["$filter"] = f"lastModifiedDateTime ge {moment}"
        records, following = api.page(cursor or api.company(f"/{entity_set}"), None if cursor else params,
                                      min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE))
        return Page(records=[{**record, "currencyCode": record.get("currencyCode") or local}
                             if "currencyCode" in record else record for record in records], next=following)

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        """Customers (name, email, currency), and posted invoices and credit memos (total with tax,
        currency, the month of their posting date; not an invoice's remaining amount or status, which
        wait for finance to post the payment journal the hub's payments are lines of); drafts, and the
        corrective memo that books a cancelled invoice, are outside the books. Nothing is marked: the
        hub's keys (``number``, ``externalDocumentNumber``) are digests, so records are matched by the
        hub's cross-references."""
        modified = record.get("lastModifiedDateTime")
        changed_at = inbound.moment(modified).timestamp() if isinstance(modified, str) else None
        currency = str(record.get("currencyCode") or "")
        if entity_type == "customer":
            email = record.get("email") or None
            return Projection(id=str(record["id"]), key=str(email).lower() if email else None, changed_at=changed_at,
                              values={"name": record.get("displayName"), **({"email": email} if email else {}),
                                      **({"currency": currency} if currency else {})})
        if entity_type not in self.lists:
            raise ConnectorError(Category.DATA, f"{SYSTEM} reconciles {', '.join(sorted(self.lists))}, "
                                 f"not {entity_type!r}")
        if record.get("status") in OUTSIDE_THE_BOOKS:
            return None
        total = from_decimal(Decimal(str(record["totalAmountIncludingTax"])), currency).amount
        dated = str(record.get("postingDate") or record.get("invoiceDate") or record.get("creditMemoDate") or "")
        # An invoice's remainingAmount lags what the hub booked: a payment is a journal line until
        # finance posts the journal. So no status or remaining amount is compared, only the document.
        return Projection(id=str(record["id"]), changed_at=changed_at, period=dated[:7] or None,
                          values={"currency": currency, "total": total})

    def classify(self, error: Exception) -> ConnectorError:
        return classify(error)

    def sandbox(self) -> Sandbox:
        """A fresh emulator. Imported here so workers never load Starlette and uvicorn."""
        from crossledger.plugins.business_central.sandbox.app import BusinessCentralSandbox

        return BusinessCentralSandbox()
