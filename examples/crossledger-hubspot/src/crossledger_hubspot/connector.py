"""The HubSpot connector: HubSpot CRM companies <-> canonical customers.

HubSpot is a CRM the hub both listens to and writes to, through the CRM v3 objects API
(``https://api.hubapi.com/crm/v3/objects/companies``) with a private app's access token::

    HubSpot webhook (subscriptionType)          canonical change
    company.creation, company.propertyChange -> customer.upserted   (the company read back by id)
    company.deletion                         -> customer.deleted    (read back with archived=true)

    canonical event                             HubSpot write
    customer.upserted                        -> POST companies/batch/upsert, idProperty=crossledger_id

**Webhooks carry ids, not records.** A HubSpot event names the company (``objectId``) and at
most one changed property, so :meth:`~HubSpotConnector.to_canonical` reads the company to get
the rest. That also makes every replay read the company as it is now.

**Idempotency.** HubSpot takes no idempotency key. It has unique-value properties: the hub keeps
``external_key(canonical id)`` in the company property ``crossledger_id`` (created once in the
portal with "unique values" on) and upserts by it, so a repeat, a retry after a timeout or a
replay updates the same company instead of creating a second one. The same property lets an echo
of the hub's own write be recognised before the hub has stored the cross-reference.

**Mapping.** Company ``name``, ``domain`` (canonical ``website``, reduced to its host name),
``phone`` and the address properties ``address``, ``address2``, ``city``, ``state``, ``zip``,
``country``. Every HubSpot property value is a string; unset canonical fields are left out of a
write rather than cleared.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import httpx
import msgspec
from crossledger.canonical import Address, Customer, Envelope, external_key, from_external_key
from crossledger.plugins import (
    BaseConnector,
    Capability,
    Category,
    Change,
    ConnectorError,
    Context,
    InboundEvent,
    Operation,
    Outcome,
    PayloadError,
    Refs,
    Sandbox,
    SignatureError,
    SystemKind,
    exception_reason,
)
from crossledger.plugins.http import classify_http, error_code, status_line
from crossledger.plugins.types import Headers
from pydantic import BaseModel, ConfigDict, SecretStr

from crossledger_hubspot import __version__, signature

SYSTEM = "hubspot"
COMPANIES = "/crm/v3/objects/companies"
MAX_PAGE = 100
"""HubSpot's largest ``limit`` for a list of objects."""

ADDRESS_PROPERTIES = {"line1": "address", "line2": "address2", "city": "city", "state": "state",
                      "postal_code": "zip", "country": "country"}
"""Canonical Address field -> HubSpot company property."""

UPSERT_EVENTS = ("company.creation", "company.propertyChange", "company.restore")


class HubSpotSettings(BaseModel):
    """``[connectors.hubspot]``.

    ``access_token`` is the private app's token (``pat-...``), sent as a Bearer token.
    ``client_secret`` is the app's client secret, which signs webhooks; ``previous_client_secret``
    keeps the old one valid while a rotation rolls out. ``webhook_url`` is the hub's public URL as
    entered in the app's webhook settings (``https://hub.example.com/webhooks/hubspot``): HubSpot
    signs that URL, which the hub cannot see behind a proxy. ``id_property`` is the unique company
    property that holds the hub's key.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.hubapi.com"
    access_token: SecretStr
    client_secret: SecretStr
    previous_client_secret: SecretStr | None = None
    webhook_url: str | None = None
    id_property: str = "crossledger_id"
    timeout_s: float = 10.0


class _Event(msgspec.Struct, frozen=True, rename="camel"):
    """One entry of a webhook body (HubSpot sends a JSON array of them, up to 100 a request)."""

    event_id: int
    subscription_type: str
    object_id: int
    occurred_at: int  # Unix milliseconds


class _Company(msgspec.Struct, frozen=True):
    id: str
    properties: dict[str, str | None] = {}


def company_properties(customer: Customer, id_property: str) -> dict[str, str]:
    """The company properties a canonical customer sets; unset fields are left out."""
    address = customer.address or Address()
    values = {
        "name": customer.name,
        "domain": _domain(customer.website),
        "phone": customer.phone,
        **{prop: getattr(address, field) for field, prop in ADDRESS_PROPERTIES.items()},
        id_property: external_key(customer.id),
    }
    return {prop: value for prop, value in values.items() if value}


def customer_from(company: _Company, refs: Refs, id_property: str,
                  status: Literal["active", "deleted"] = "active") -> Customer:
    """A company as a canonical customer; one the hub created is recognised by its key."""
    props = {name: value for name, value in company.properties.items() if value}
    key = props.get(id_property)
    address = Address(**{field: props.get(prop) for field, prop in ADDRESS_PROPERTIES.items()})
    return Customer(
        id=(from_external_key(key) if key else None) or refs.canonical_id("customer", SYSTEM, company.id),
        name=props.get("name") or props.get("domain") or f"HubSpot company {company.id}",
        phone=props.get("phone"),
        website=props.get("domain"),
        address=None if address == Address() else address,
        status=status,
    )


def _domain(website: str | None) -> str | None:
    """``https://www.acme.com/about`` -> ``www.acme.com``: HubSpot's ``domain`` is a host name."""
    if not website:
        return None
    return urlsplit(website if "//" in website else f"//{website}").hostname or None


class HubSpotConnector(BaseConnector):
    """HubSpot as a CRM: company webhooks in, company upserts out, and a local sandbox."""

    name: ClassVar[str] = SYSTEM
    kind: ClassVar[SystemKind] = SystemKind.CRM
    version: ClassVar[str] = __version__
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH, Capability.SANDBOX}
    )
    settings_model: ClassVar[type[BaseModel]] = HubSpotSettings

    # -- inbound -------------------------------------------------------------------------------------

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        """Check ``X-HubSpot-Signature-v3`` against the configured ``webhook_url`` and client secret(s)."""
        settings = _settings(ctx)
        if not settings.webhook_url:
            raise SignatureError("[connectors.hubspot] webhook_url is not set: it must be the target URL "
                                 "configured in the HubSpot app, which HubSpot signs")
        secrets = [s.get_secret_value() for s in (settings.client_secret, settings.previous_client_secret) if s]
        signature.verify(headers, settings.webhook_url, body, secrets, now=ctx.clock())

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        """One request carries a batch of events; each becomes an :class:`InboundEvent`."""
        try:
            raw = msgspec.json.decode(body)
            events = msgspec.convert(raw, list[_Event])
        except ValueError as error:  # msgspec's DecodeError and ValidationError, and bytes that are not UTF-8
            raise PayloadError(f"body is not a HubSpot webhook batch: {error}") from error
        return [
            InboundEvent(source_event_id=str(event.event_id), type=event.subscription_type,
                         occurred_at=datetime.fromtimestamp(event.occurred_at / 1000, UTC), payload=payload)
            for event, payload in zip(events, raw, strict=True)
        ]

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        """Company events become customer changes, with the company read back from HubSpot."""
        object_id = str(event.payload["objectId"])
        settings = _settings(ctx)
        if event.type in UPSERT_EVENTS:
            company = self._company(ctx, object_id)
            return [Change(type="customer.upserted", entity=customer_from(company, refs, settings.id_property))]
        if event.type == "company.deletion":
            company = self._company(ctx, object_id, archived=True)
            customer = customer_from(company, refs, settings.id_property, "deleted")
            return [Change(type="customer.deleted", entity=customer)]
        return []

    def refetch(self, ctx: Context, event: InboundEvent) -> InboundEvent:
        """The event as it is: it holds only ids, and :meth:`to_canonical` always reads the company."""
        return event

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        """``GET /crm/v3/objects/companies/{id}`` with the properties the mapping reads."""
        _check_type(entity_type)
        return self._get(ctx, f"{COMPANIES}/{quote(external_id, safe='')}", self._read_params(ctx))

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every company, page by page, following ``paging.next.after``."""
        _check_type(entity_type)
        params = {**self._read_params(ctx), "limit": str(min(page_size or MAX_PAGE, MAX_PAGE))}
        while True:
            page = self._get(ctx, COMPANIES, params)
            yield from page.get("results", [])
            after = (page.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return
            params["after"] = after

    # -- outbound ------------------------------------------------------------------------------------

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        """A ``customer.upserted`` becomes one batch upsert keyed by ``crossledger_id``."""
        if event.type != "customer.upserted" or not isinstance(event.data, Customer):
            return []
        customer = event.data
        id_property = _settings(ctx).id_property
        upsert = {"id": external_key(customer.id), "idProperty": id_property,
                  "properties": company_properties(customer, id_property)}
        return [Operation(name="customer.upsert", entity_type="customer", canonical_id=customer.id,
                          payload={"method": "POST", "path": f"{COMPANIES}/batch/upsert",
                                   "body": {"inputs": [upsert]}})]

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        """Send the upsert. The unique ``crossledger_id`` makes a repeat harmless, so the hub's
        idempotency key is not needed on the wire (HubSpot has no header for one)."""
        answer = _json(self._request(ctx, op.payload["method"], op.payload["path"], body=op.payload["body"]))
        results = answer.get("results") or []
        if not results:
            raise ConnectorError(Category.DATA, f"hubspot upsert answered without a result: {answer}")
        company = results[0]
        return Outcome(external_id=str(company["id"]), created=bool(company.get("new")), record=company)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        """After a timeout: does a company with this key exist *and* hold what the upsert wrote?
        Otherwise an update lost in the timeout would pass for done."""
        [upsert] = op.payload["body"]["inputs"]
        written: dict[str, str] = upsert["properties"]
        params = {"idProperty": upsert["idProperty"], "properties": ",".join(written)}
        response = self._request(ctx, "GET", f"{COMPANIES}/{quote(upsert['id'], safe='')}", params=params,
                                 missing_ok=True)
        if response.status_code == 404:
            return None
        company = _json(response)
        properties = company.get("properties") or {}
        if any(properties.get(name) != value for name, value in written.items()):
            return None
        return Outcome(external_id=str(company["id"]), record=company)

    # -- errors and plumbing -------------------------------------------------------------------------

    def classify(self, error: Exception) -> ConnectorError:
        """The shared HTTP taxonomy, with HubSpot's error category and correlation id in the message.

        HubSpot's 429 carries no Retry-After; when ``X-HubSpot-RateLimit-Remaining`` is 0, waiting
        one ``X-HubSpot-RateLimit-Interval-Milliseconds`` window is enough for the limit to roll.
        """
        classified = classify_http(error, SYSTEM)
        if not isinstance(error, httpx.HTTPStatusError):
            return classified
        response = error.response
        return ConnectorError(classified.category, _describe(response),
                              retry_after=classified.retry_after or _rate_window_s(response),
                              status=response.status_code)

    def sandbox(self) -> Sandbox:
        """A fresh HubSpot emulator. Imported here so workers never load Starlette."""
        from crossledger_hubspot.sandbox import HubSpotSandbox

        return HubSpotSandbox()

    def _company(self, ctx: Context, object_id: str, *, archived: bool = False) -> _Company:
        params = {**self._read_params(ctx), "archived": "true"} if archived else self._read_params(ctx)
        record = self._get(ctx, f"{COMPANIES}/{quote(object_id, safe='')}", params)
        try:
            return msgspec.convert(record, _Company)
        except msgspec.ValidationError as error:
            raise ConnectorError(Category.DATA,
                                 f"hubspot company {object_id} is malformed: {exception_reason(error)}") from error

    @staticmethod
    def _read_params(ctx: Context) -> dict[str, str]:
        """Ask for every property the mapping reads (HubSpot returns only a few by default)."""
        wanted = ["name", "domain", "phone", *ADDRESS_PROPERTIES.values(), _settings(ctx).id_property]
        return {"properties": ",".join(wanted)}

    def _get(self, ctx: Context, path: str, params: dict[str, str]) -> dict[str, Any]:
        return _json(self._request(ctx, "GET", path, params=params))

    def _request(self, ctx: Context, method: str, path: str, *, params: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None, missing_ok: bool = False) -> httpx.Response:
        """One authenticated call; any failure leaves classified as a :class:`ConnectorError`."""
        settings = _settings(ctx)
        headers = {"Authorization": f"Bearer {settings.access_token.get_secret_value()}"}
        try:
            response = ctx.http.request(method, settings.base_url.rstrip("/") + path, params=params, json=body,
                                        headers=headers, timeout=settings.timeout_s)
            if not (missing_ok and response.status_code == 404):
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise self.classify(error) from error
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        decoded = response.json()
    except ValueError as error:
        raise ConnectorError(Category.DATA, f"hubspot answered {response.request.url.path} with non-JSON") from error
    if not isinstance(decoded, dict):
        raise ConnectorError(Category.DATA, f"hubspot answered {response.request.url.path} with a non-object")
    return decoded


def _describe(response: httpx.Response) -> str:
    """``hubspot: HTTP 400 Bad Request: VALIDATION_ERROR (correlationId ...)``: HubSpot's error
    category and correlation id, not its message (it quotes the values refused)."""
    try:
        error = response.json()
        kind = error_code(error.get("category") or error.get("errorType") or "error")
        where = f" (correlationId {error['correlationId']})" if error.get("correlationId") else ""
    except (ValueError, TypeError, AttributeError):
        return f"{SYSTEM}: {status_line(response)}"
    return f"{SYSTEM}: {status_line(response)}: {kind}{where}"


def _rate_window_s(response: httpx.Response) -> float | None:
    if response.status_code != 429 or response.headers.get("x-hubspot-ratelimit-remaining") != "0":
        return None
    try:
        return int(response.headers["x-hubspot-ratelimit-interval-milliseconds"]) / 1000
    except (KeyError, ValueError):
        return None


def _check_type(entity_type: str) -> None:
    if entity_type not in ("customer", "company"):
        raise ConnectorError(Category.DATA, f"hubspot keeps customers as companies; it has no {entity_type!r}")


def _settings(ctx: Context) -> HubSpotSettings:
    return ctx.settings_as(HubSpotSettings)
