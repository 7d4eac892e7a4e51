"""The NetSuite connector: canonical customers, invoices, payments and credits into the ERP.

NetSuite is a delivery target. Every canonical event becomes at most a few writes to SuiteTalk
REST's record service, ``{base_url}/services/rest/record/v1``:

======================  ==========================================================================
canonical event         NetSuite write
======================  ==========================================================================
``customer.upserted``   ``PUT customer/eid:{eid}``
``customer.deleted``    ``PATCH customer/{id}`` with ``isInactive: true`` (nothing if never sent)
``invoice.issued``      ``PUT invoice/eid:{eid}``: one line per canonical line, then tax, discount
``invoice.voided``      ``PUT creditmemo/eid:{invoice eid}.void`` crediting the whole invoice
``payment.settled``     ``PUT customerpayment/eid:{eid}`` applied to the paid invoices
``credit_memo.issued``  ``PUT creditmemo/eid:{eid}`` applied to the credited invoice
======================  ==========================================================================

**Idempotency.** NetSuite's synchronous API has no idempotency key (``X-NetSuite-Idempotency-Key``
only works for asynchronous requests). What it has is the *external id*: ``PUT
/{type}/eid:{externalId}`` creates the record the first time and updates that same record ever
after. The external id is derived from the canonical id (:func:`external_id_for`), so sending an
operation twice, or after a timeout, can never create a second record.

**Money.** NetSuite amounts are decimal JSON numbers in the document's currency. They are
converted from canonical minor units by :func:`~crossledger.canonical.money.to_decimal` only,
kept as :class:`~decimal.Decimal` in the planned body and written with their exact digits
(``1.234`` KWD, ``1500`` JPY), never through a float.

**Reading back.** Writes answer ``204 No Content``; the new record's id is only in the
``Location`` header, sent when the write created the record. An update answers without it, so
the connector reads the record to learn its id.
"""

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import msgspec
from crossledger.canonical.entities import CreditMemo, Customer, Invoice, Payment
from crossledger.canonical.events import Envelope
from crossledger.canonical.money import Money, to_decimal
from crossledger.plugins.connector import BaseConnector
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.http import classify_http, retry_after_seconds, status_category
from crossledger.plugins.netsuite.auth import NetSuiteAuth
from crossledger.plugins.netsuite.sandbox import NetSuiteSandbox
from crossledger.plugins.types import Capability, Context, Operation, Outcome, Refs, SystemKind
from pydantic import BaseModel, ConfigDict, SecretStr

SYSTEM = "netsuite"
API_PREFIX = "/services/rest"

RECORD_TYPES = {"customer": "customer", "invoice": "invoice", "payment": "customerpayment",
                "creditmemo": "creditmemo"}
"""Canonical entity type -> NetSuite record type, for :meth:`NetSuiteConnector.fetch`."""

CUSTOMER_REFERENCE_DIMENSIONS = ("subsidiary", "terms")
"""Canonical customer dimensions written as NetSuite references (``{"terms": {"id": "2"}}``);
a dimension the ERP does not know under that name is left out."""

RATE_LIMIT_CODES = frozenset({"CONCURRENCY_LIMIT_EXCEEDED", "SSS_REQUEST_LIMIT_EXCEEDED"})
"""Error codes that mean "too many requests" whatever the status (RESTlets answer 400)."""

_JSON = msgspec.json.Encoder(decimal_format="number")


class NetSuiteSettings(BaseModel):
    """``[connectors.netsuite]``: the account, its TBA credentials and the records to book against.

    ``base_url`` is the account's REST domain, e.g. ``https://1234567.suitetalk.api.netsuite.com``
    (account id lower-cased, ``_`` as ``-``). The ``*_id`` settings are internal ids of records
    set up once in the account: the service item invoice lines are booked to, the items for tax
    and discounts, the account payments are posted to, the default subsidiary. ``currencies``
    maps ISO codes to the account's currency records.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    account_id: str
    consumer_key: str
    consumer_secret: SecretStr
    token_id: str
    token_secret: SecretStr
    timeout_s: float = 10
    subsidiary_id: str = "1"
    item_id: str = "1"
    tax_item_id: str = "2"
    discount_item_id: str = "3"
    ar_account_id: str = "1"
    currencies: dict[str, str] = {"USD": "1", "GBP": "2", "CAD": "3", "EUR": "4", "JPY": "5", "KWD": "6"}

    def auth(self) -> NetSuiteAuth:
        """The request signer for this account's TBA credentials."""
        return NetSuiteAuth(self.account_id, self.consumer_key, self.consumer_secret.get_secret_value(),
                            self.token_id, self.token_secret.get_secret_value())

    def currency(self, code: str) -> dict[str, str]:
        """The reference to the currency record for ISO ``code``; a data error if unmapped."""
        if code not in self.currencies:
            raise ConnectorError(Category.DATA, f"currency {code} has no NetSuite currency id; add it to "
                                                f"[connectors.netsuite] currencies (known: {sorted(self.currencies)})")
        return {"id": self.currencies[code]}


def external_id_for(canonical_id: str) -> str:
    """The NetSuite external id of a canonical record: ``invoice/stripe/in_123`` ->
    ``invoice.stripe.in_123``. Deterministic, so every retry upserts the same record."""
    return canonical_id.replace("/", ".")


def record_path(record_type: str, key: str) -> str:
    """``/record/v1/{type}/{key}``, the key (an internal id or ``eid:...``) percent-encoded."""
    return f"/record/v1/{record_type}/{quote(key, safe=':')}"


def eid_path(record_type: str, canonical_id: str) -> str:
    """Where the upsert of a canonical record goes: ``/record/v1/{type}/eid:{external id}``."""
    return record_path(record_type, f"eid:{external_id_for(canonical_id)}")


def _ref(internal_id: str) -> dict[str, str]:
    return {"id": internal_id}


def _date(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _present(body: dict[str, Any]) -> dict[str, Any]:
    """The body without unset fields: an upsert leaves what it does not mention untouched."""
    return {name: value for name, value in body.items() if value is not None}


def _require(refs: Refs, entity_type: str, canonical_id: str) -> str:
    """The NetSuite id of a record the write depends on, or :class:`MissingDependency`."""
    internal_id: str | None = refs.external_id(canonical_id, SYSTEM)
    if internal_id is None:
        raise MissingDependency(entity_type, canonical_id)
    return internal_id


def _operation(name: str, entity_type: str, canonical_id: str, method: str, path: str,
               body: dict[str, Any], params: dict[str, str] | None = None) -> Operation:
    payload: dict[str, Any] = {"method": method, "path": path, "body": body}
    if params:
        payload["params"] = params
    return Operation(name=name, entity_type=entity_type, canonical_id=canonical_id, payload=payload)


def _upsert(name: str, entity_type: str, canonical_id: str, record_type: str, body: dict[str, Any]) -> Operation:
    """A ``PUT .../eid:{eid}`` of ``body``, keyed by the canonical id."""
    body = {"externalId": external_id_for(canonical_id), **_present(body)}
    # An update merges sublists unless told to replace them (lines would pile up on every repeat):
    # the hub always sends whole documents, so every sublist it sends replaces the one there.
    sublists = sorted(name for name, value in body.items() if isinstance(value, dict) and "items" in value)
    params = {"replace": ",".join(sublists)} if sublists else None
    return _operation(name, entity_type, canonical_id, "PUT", eid_path(record_type, canonical_id), body, params)


class _Planner:
    """Maps canonical entities onto NetSuite request bodies for one account's settings."""

    def __init__(self, settings: NetSuiteSettings, refs: Refs) -> None:
        self.settings = settings
        self.refs = refs

    def customer(self, customer: Customer) -> Operation:
        dimensions = {name: _ref(customer.dimensions[name])
                      for name in CUSTOMER_REFERENCE_DIMENSIONS if name in customer.dimensions}
        # NetSuite needs a subsidiary to create a customer; afterwards the ERP owns it, so an update
        # from another system must not reset it to the default.
        creating = self.refs.external_id(customer.id, SYSTEM) is None
        body = {
            "companyName": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "subsidiary": _ref(self.settings.subsidiary_id) if creating else None,
            "currency": self.settings.currency(customer.currency) if customer.currency else None,
            "addressBook": self._address_book(customer),
            **dimensions,
        }
        return _upsert("customer.upsert", "customer", customer.id, "customer", body)

    @staticmethod
    def _address_book(customer: Customer) -> dict[str, Any] | None:
        address = customer.address
        if address is None:
            return None
        fields = {"addr1": address.line1, "addr2": address.line2, "city": address.city, "state": address.state,
                  "zip": address.postal_code, "country": address.country}
        line = {"defaultBilling": True, "defaultShipping": True, "addressBookAddress": _present(fields)}
        return {"items": [line]}

    def deactivate(self, customer: Customer) -> list[Operation]:
        internal_id: str | None = self.refs.external_id(customer.id, SYSTEM)
        if internal_id is None:
            return []  # never reached NetSuite: nothing to deactivate
        path = record_path("customer", internal_id)
        return [_operation("customer.deactivate", "customer", customer.id, "PATCH", path, {"isInactive": True})]

    def invoice(self, invoice: Invoice) -> Operation:
        lines = [self._line(self.settings.item_id, line.amount, line.description, line.quantity)
                 for line in invoice.lines]
        if invoice.tax.amount > 0:
            lines.append(self._line(self.settings.tax_item_id, invoice.tax, "Tax"))
        if invoice.discount.amount > 0:
            lines.append(self._line(self.settings.discount_item_id, invoice.discount, "Discount", sign=-1))
        body = {
            "entity": _ref(_require(self.refs, "customer", invoice.customer_id)),
            "tranId": invoice.number,
            "tranDate": _date(invoice.issued_at),
            "dueDate": _date(invoice.due_at),
            "currency": self.settings.currency(invoice.currency),
            "item": {"items": lines},
        }
        return _upsert("invoice.upsert", "invoice", invoice.id, "invoice", body)

    @staticmethod
    def _line(item_id: str, amount: Money, description: str, quantity: int = 1, sign: int = 1) -> dict[str, Any]:
        return {"item": _ref(item_id), "description": description, "quantity": quantity,
                "amount": sign * to_decimal(amount)}

    def void(self, invoice: Invoice) -> Operation:
        """A credit memo for the whole invoice, applied to it: NetSuite's way to cancel a
        receivable while keeping the audit trail. Keyed ``{invoice}.void``, so it is made once."""
        invoice_id = _require(self.refs, "invoice", invoice.id)
        return self._credit("invoice.void", f"{invoice.id}.void", invoice.customer_id, invoice_id, invoice.total,
                            f"Void of invoice {invoice.number or invoice.id}", None)

    def credit_memo(self, memo: CreditMemo) -> Operation:
        invoice_id = _require(self.refs, "invoice", memo.invoice_id)
        return self._credit("credit_memo.upsert", memo.id, memo.customer_id, invoice_id, memo.amount,
                            memo.reason or "Credit", memo.issued_at)

    def _credit(self, name: str, canonical_id: str, customer_id: str, invoice_id: str, amount: Money,
                memo: str, issued_at: datetime | None) -> Operation:
        body = {
            "entity": _ref(_require(self.refs, "customer", customer_id)),
            "tranDate": _date(issued_at),
            "currency": self.settings.currency(amount.currency),
            "memo": memo,
            "item": {"items": [self._line(self.settings.item_id, amount, memo)]},
            "apply": _apply([(invoice_id, amount)]),
        }
        return _upsert(name, "creditmemo", canonical_id, "creditmemo", body)

    def payment(self, payment: Payment) -> Operation:
        applied = [(_require(self.refs, "invoice", application.invoice_id), application.amount)
                   for application in payment.applications]
        body = {
            "customer": _ref(_require(self.refs, "customer", payment.customer_id)),
            "currency": self.settings.currency(payment.amount.currency),
            "account": _ref(self.settings.ar_account_id),
            "payment": to_decimal(payment.amount),
            "tranDate": _date(payment.received_at),
            "apply": _apply(applied),
        }
        return _upsert("payment.upsert", "payment", payment.id, "customerpayment", body)


def _apply(documents: list[tuple[str, Money]]) -> dict[str, Any]:
    """The ``apply`` sublist settling each (invoice id, amount); NetSuite refuses zero amounts."""
    return {"items": [{"doc": _ref(doc), "apply": True, "amount": to_decimal(amount)}
                      for doc, amount in documents if amount.amount > 0]}


def _reflects(record: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether ``record`` already holds the body's fields (sublists, which NetSuite only shows
    as links, are not compared). References compare by id, amounts as decimals."""
    def same(wanted: Any, actual: Any) -> bool:
        if isinstance(wanted, dict):
            return isinstance(actual, dict) and str(actual.get("id")) == str(wanted.get("id"))
        if isinstance(wanted, Decimal):
            return isinstance(actual, int | Decimal) and Decimal(actual) == wanted
        return bool(wanted == actual)

    return all(same(value, record.get(name)) for name, value in body.items()
               if not (isinstance(value, dict) and "items" in value))


def _error_details(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        details = json.loads(response.content).get("o:errorDetails", [])
    except (ValueError, AttributeError):
        return []
    return [detail for detail in details if isinstance(detail, dict)]


def _describe(detail: dict[str, Any]) -> str:
    """``INVALID_CONTENT at item.items[0].item: Error while accessing resource: ...``"""
    where = f" at {detail['o:errorPath']}" if detail.get("o:errorPath") else ""
    return f"{detail.get('o:errorCode')}{where}: {detail.get('detail')}"


def _settings(ctx: Context) -> NetSuiteSettings:
    if not isinstance(ctx.settings, NetSuiteSettings):
        raise TypeError(f"the netsuite connector needs NetSuiteSettings, got {type(ctx.settings).__name__}")
    return ctx.settings


# The ignore is for `mypy plugins/netsuite`, which cannot resolve crossledger through the editable
# install's import hook; type-checked in the installed layout (as CI does) it is unused.
class NetSuiteConnector(BaseConnector):  # type: ignore[misc, unused-ignore]
    """Delivers canonical events to NetSuite over SuiteTalk REST with token-based auth."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.ERP
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX}
    )
    settings_model: ClassVar[type[BaseModel]] = NetSuiteSettings

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        planner = _Planner(_settings(ctx), refs)
        match event.type, event.data:
            case "customer.upserted", Customer() as customer:
                return [planner.customer(customer)]
            case "customer.deleted", Customer() as customer:
                return planner.deactivate(customer)
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
        """Send the write. The external id in its path makes a repeat harmless, so the
        idempotency key is not needed on the wire."""
        payload = op.payload
        response = self._request(ctx, payload["method"], payload["path"], body=payload["body"],
                                 params=payload.get("params"))
        location = response.headers.get("location")
        if location:
            return Outcome(external_id=location.rstrip("/").rsplit("/", 1)[-1], created=True)
        return Outcome(external_id=str(self._read(ctx, payload["path"])["id"]))

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """After an ambiguous failure: did the write land? The record must exist *and* hold what
        the write set, otherwise an update lost in a timeout would pass for done."""
        response = self._request(ctx, "GET", op.payload["path"], missing_ok=True)
        if response.status_code == 404:
            return None
        record = _decode(response)
        if not _reflects(record, op.payload["body"]):
            return None
        return Outcome(external_id=str(record["id"]), record=record)

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """A record with its sublists, by canonical entity type (or NetSuite record type) and id."""
        path = record_path(RECORD_TYPES.get(entity_type, entity_type), external_id)
        return self._read(ctx, path, expand=True)

    def classify(self, error: Exception) -> ConnectorError:
        """The shared HTTP taxonomy, with NetSuite's own error codes in the message, and its
        concurrency-limit codes read as rate limiting whatever the status."""
        if not isinstance(error, httpx.HTTPStatusError):
            return classify_http(error, SYSTEM)
        response = error.response
        details = _error_details(response)
        codes = {detail.get("o:errorCode") for detail in details}
        request = error.request
        return ConnectorError(
            Category.RATE_LIMITED if codes & RATE_LIMIT_CODES else status_category(response.status_code),
            f"{SYSTEM} {request.method} {request.url.path}: HTTP {response.status_code} "
            f"{'; '.join(map(_describe, details)) or response.text[:500]}",
            retry_after=retry_after_seconds(response),
            status=response.status_code,
        )

    def sandbox(self) -> NetSuiteSandbox:
        return NetSuiteSandbox()

    def _read(self, ctx: Context, path: str, *, expand: bool = False) -> dict[str, Any]:
        params = {"expandSubResources": "true"} if expand else None
        return _decode(self._request(ctx, "GET", path, params=params))

    def _request(self, ctx: Context, method: str, path: str, *, body: dict[str, Any] | None = None,
                 params: dict[str, str] | None = None, missing_ok: bool = False) -> httpx.Response:
        """One signed call; any failure leaves classified as a :class:`ConnectorError`."""
        settings = _settings(ctx)
        headers = {"Accept": "application/json", "X-NetSuite-PropertyNameValidation": "error"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response: httpx.Response = ctx.http.request(
                method, settings.base_url.rstrip("/") + API_PREFIX + path, params=params, headers=headers,
                content=None if body is None else _JSON.encode(body), auth=settings.auth(),
                timeout=settings.timeout_s,
            )
            if not (missing_ok and response.status_code == 404):
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise self.classify(error) from error
        return response


def _decode(response: httpx.Response) -> dict[str, Any]:
    """A record body, amounts as exact Decimals."""
    record: dict[str, Any] = json.loads(response.content, parse_float=Decimal)
    return record
