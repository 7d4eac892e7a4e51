"""A local emulator of the parts of Stripe's API the hub uses, faithful on the wire.

What a client sees is what it would see from ``api.stripe.com``:

- **Requests** are ``application/x-www-form-urlencoded`` (query string for GET and DELETE) in
  Stripe's bracket notation: ``metadata[plan]=pro``, ``items[0][price]=price_...``,
  ``enabled_events[]=*``, ``expand[]=customer``. Unknown parameters are refused, as Stripe refuses
  them, so a client cannot rely on something Stripe would reject.
- **Auth** is ``Authorization: Bearer sk_test_...`` (HTTP Basic with the key as user name works
  too); anything else is a 401.
- **Responses** are JSON with status 200 (Stripe never answers 201), and every one carries a
  ``Request-Id: req_...`` header. Ids have Stripe's prefixes, times are epoch seconds, currencies
  lower case, amounts integer minor units. Errors have Stripe's shape,
  ``{"error": {"type", "message"}}`` with ``code`` and ``doc_url``, ``param`` and
  ``decline_code`` when they apply (left out, not null, when they do not).
- **Idempotency**: the first response to a POST with an ``Idempotency-Key`` (errors included) is
  stored and replayed, with ``Idempotent-Replayed: true``, for the same key and parameters; the
  same key with other parameters is an ``idempotency_error``.
- **Lists** are ``{"object": "list", "url", "has_more", "data"}``, newest first, paged with
  ``limit``, ``starting_after`` and ``ending_before``. **Search** (customers, invoices,
  subscriptions) answers ``{"object": "search_result", "data", "has_more", "next_page", "url"}``
  for the part of Stripe's query language people use (:mod:`.sandbox_search`).
- **Events**: every change records an ``event`` and POSTs it, signed with ``Stripe-Signature``,
  to each webhook endpoint that listens for its type (or ``*``). Deliveries run in the background
  and retry any non-2xx answer (:class:`~crossledger.plugins.sandbox.WebhookSender`).

The records follow the current API version's field sets (those of the fixtures in
``tests/fixtures/payloads/stripe``), with amounts kept consistent: an invoice's lines are its
invoice items and subscription items, its totals add up, paying moves ``amount_remaining`` to
``amount_paid``, refunds never exceed their charge, credit notes never exceed their invoice.

Emulated (each module says how): customers, tax rates (exclusive), invoice items, invoices and
their payments, invoice previews (:mod:`.sandbox_previews`), payment intents and charges (read
only: invoices make them), refunds, credit notes (:mod:`.sandbox_credits`), products, prices,
subscriptions with prorations (:mod:`.sandbox_subscriptions`) and test clocks that renew them
(:mod:`.sandbox_clocks`), search (:mod:`.sandbox_search`), webhook endpoints and events.
Not emulated: payment methods (test tokens such as ``pm_card_visa`` stand for attached ones),
discounts, inclusive or automatic tax, customer balances applied to invoices, subscription
schedules, pauses and interval changes, search on other resources (charges, payment intents,
prices, products), and the search index's delay (Stripe's search lags writes by up to a minute;
the sandbox's does not).

Besides Stripe's API, the sandbox serves the control routes of every crossledger sandbox
(``/_sandbox/state``, ``/_sandbox/faults``), ``POST /_sandbox/events/{id}/resend`` (delivers an
event again, the way Stripe sometimes delivers one twice) and ``POST /_sandbox/webhooks`` (holds
deliveries back and releases them in order, reversed or shuffled).
"""

import base64
import binascii
import copy
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from crossledger.plugins.sandbox import Faults, WebhookSender, build_app
from crossledger.plugins.stripe.sandbox_previews import Previews
from crossledger.plugins.stripe.sandbox_wire import (
    Call,
    Collection,
    Handler,
    Params,
    Record,
    StripeError,
    decode_params,
    deleted,
    encode,
    invalid,
    new_id,
    token,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

_FAULTS = {
    500: StripeError(
        500,
        "api_error",
        "An unknown error occurred on Stripe's end (injected by the sandbox).",
        headers={"Stripe-Should-Retry": "true"},
    ),
    503: StripeError(503, "api_error", "Stripe is temporarily unavailable (injected by the sandbox)."),
    429: invalid(
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        code="rate_limit",
        status=429,
    ),
}


def _render(status: int, content: bytes, request_id: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        content, status, headers={"Request-Id": request_id, **(headers or {})}, media_type="application/json"
    )


def _fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault in Stripe's error shape. A 429 has no Retry-After: Stripe promises none."""
    error = _FAULTS[status]
    return _render(error.status, error.body(), new_id("req"), error.headers)


class _Account(Previews):
    """The whole emulated account: every layer of :mod:`.sandbox_core`, and its records by type."""

    def state(self) -> Record:
        return {
            "customers": [*self.customers.records.values(), *map(deleted, self.deleted_customers.values())],
            **{name: list(collection.records.values()) for name, collection in self._listed().items()},
            "events": len(self.events.records),
        }

    def _listed(self) -> dict[str, Collection]:
        return {
            "invoices": self.invoices, "invoiceitems": self.invoiceitems, "invoice_payments": self.invoice_payments,
            "payment_intents": self.payment_intents, "charges": self.charges, "refunds": self.refunds,
            "credit_notes": self.credit_notes, "products": self.products, "prices": self.prices,
            "subscriptions": self.subscriptions, "test_clocks": self.test_clocks, "tax_rates": self.tax_rates,
            "webhook_endpoints": self.webhook_endpoints,
        }


@dataclass(frozen=True)
class _Reply:
    """An API answer; stored for an idempotency key with the ``fingerprint`` of what was asked."""

    status: int
    content: bytes
    request_id: str
    fingerprint: tuple[Any, ...] = ()


class StripeSandbox:
    """The Stripe emulator as the hub uses it: an ASGI app plus the :class:`~crossledger.plugins.types.Sandbox`
    protocol (settings for the connector, and registering the hub's webhook URL).

    Serve :attr:`app` at the root or under a prefix (``Mount("/stripe", app=sandbox.app)``): routes
    are relative and list ``url`` fields are API paths (``/v1/customers``), which is what Stripe's
    clients append to their base URL.
    """

    def __init__(self) -> None:
        self.api_key = f"sk_test_{token(24)}"
        self.faults = Faults()
        self._lock = threading.Lock()
        self._sender = WebhookSender()
        self._account = _Account(self._sender)
        self._replies: dict[str, _Reply] = {}
        self._hub_secret = ""
        self._app: Starlette = build_app(
            self._routes(), faults=self.faults, state=self.state, fault_response=_fault_response
        )

    @property
    def app(self) -> Starlette:
        return self._app

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "api_key": self.api_key, "webhook_secret": self._hub_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Register the hub for every event, as ``POST /v1/webhook_endpoints`` with ``enabled_events[]=*``."""
        params = Params(decode_params([("url", hub_webhook_url), ("enabled_events[]", "*")]))
        with self._lock:
            self._hub_secret = self._account.create_webhook_endpoint(Call(params, {}))["secret"]

    def wait_for_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until every webhook sent so far was delivered or abandoned; False on timeout."""
        return self._sender.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        """Every record by type, in Stripe's JSON form (webhook secrets are never shown)."""
        with self._lock:
            return {**copy.deepcopy(self._account.state()), "webhooks": self._sender.stats()}

    def _routes(self) -> list[BaseRoute]:
        account = self._account
        api: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/customers", account.create_customer),
            ("GET", "/v1/customers", partial(account.page, account.customers)),
            ("GET", "/v1/customers/search", account.search_customers),
            ("GET", "/v1/customers/{id}", account.retrieve_customer),
            ("POST", "/v1/customers/{id}", account.update_customer),
            ("DELETE", "/v1/customers/{id}", account.delete_customer),
            ("POST", "/v1/invoiceitems", account.create_invoiceitem),
            *self._reads("/v1/invoiceitems", account.invoiceitems),
            ("POST", "/v1/tax_rates", account.create_tax_rate),
            *self._reads("/v1/tax_rates", account.tax_rates),
            ("POST", "/v1/invoices", account.create_invoice),
            ("GET", "/v1/invoices/search", account.search_invoices),
            ("POST", "/v1/invoices/create_preview", account.create_preview),
            *self._reads("/v1/invoices", account.invoices),
            ("POST", "/v1/invoices/{id}", account.update_invoice),
            ("POST", "/v1/invoices/{id}/finalize", account.finalize_invoice),
            ("POST", "/v1/invoices/{id}/pay", account.pay_invoice),
            ("POST", "/v1/invoices/{id}/void", account.void_invoice),
            ("POST", "/v1/invoices/{id}/mark_uncollectible", account.mark_uncollectible),
            *self._reads("/v1/invoice_payments", account.invoice_payments),
            *self._reads("/v1/payment_intents", account.payment_intents),
            *self._reads("/v1/charges", account.charges),
            ("POST", "/v1/refunds", account.create_refund),
            *self._reads("/v1/refunds", account.refunds),
            ("POST", "/v1/credit_notes", account.create_credit_note),
            *self._reads("/v1/credit_notes", account.credit_notes),
            ("POST", "/v1/credit_notes/{id}/void", account.void_credit_note),
            ("POST", "/v1/products", account.create_product),
            *self._reads("/v1/products", account.products),
            ("POST", "/v1/products/{id}", account.update_product),
            ("POST", "/v1/prices", account.create_price),
            *self._reads("/v1/prices", account.prices),
            ("POST", "/v1/prices/{id}", account.update_price),
            ("POST", "/v1/subscriptions", account.create_subscription),
            ("GET", "/v1/subscriptions", account.list_subscriptions),
            ("GET", "/v1/subscriptions/search", account.search_subscriptions),
            ("GET", "/v1/subscriptions/{id}", partial(account.retrieve, account.subscriptions)),
            ("POST", "/v1/subscriptions/{id}", account.update_subscription),
            ("DELETE", "/v1/subscriptions/{id}", account.cancel_subscription),
            ("POST", "/v1/test_helpers/test_clocks", account.create_test_clock),
            *self._reads("/v1/test_helpers/test_clocks", account.test_clocks),
            ("POST", "/v1/test_helpers/test_clocks/{id}/advance", account.advance_test_clock),
            ("POST", "/v1/webhook_endpoints", account.create_webhook_endpoint),
            *self._reads("/v1/webhook_endpoints", account.webhook_endpoints),
            ("DELETE", "/v1/webhook_endpoints/{id}", account.delete_webhook_endpoint),
            *self._reads("/v1/events", account.events),
        ]
        return [
            *(self._api_route(method, path, handler) for method, path, handler in api),
            Route("/_sandbox/events/{id}/resend", self._resend, methods=["POST"]),
            Route("/_sandbox/webhooks", self._webhook_control, methods=["POST"]),
            Route("/{path:path}", _unrecognized, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
        ]

    def _reads(self, path: str, collection: Collection) -> list[tuple[str, str, Handler]]:
        """``GET path`` (the list) and ``GET path/{id}`` (one record) of a collection."""
        return [("GET", path, partial(self._account.page, collection)),
                ("GET", f"{path}/{{id}}", partial(self._account.retrieve, collection))]

    def _api_route(self, method: str, path: str, handler: Handler) -> Route:
        operation = f"{method} {path}"

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            return self._handle(operation, request, body, handler)

        return Route(path, endpoint, methods=[method])

    def _handle(self, operation: str, request: Request, body: bytes, handler: Handler) -> Response:
        """Authenticate, decode, run the handler once per idempotency key, and render the answer."""
        request_id = new_id("req")
        replayed = False
        try:
            self._authenticate(request.headers.get("authorization"))
            if request.method == "POST":
                pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                key = request.headers.get("idempotency-key")
            else:
                pairs, key = request.query_params.multi_items(), None
            params = Params(decode_params(pairs))
            call = Call(params, dict(request.path_params), {"id": request_id, "idempotency_key": key})
            fingerprint = (operation, tuple(sorted(call.path.items())), tuple(sorted(pairs)))
            with self._lock:
                reply, replayed = self._once(key, fingerprint, lambda: self._execute(handler, call))
        except StripeError as error:
            reply = _Reply(error.status, error.body(), request_id)
        replay = {"Idempotent-Replayed": "true", "Original-Request": reply.request_id} if replayed else None
        return _render(reply.status, reply.content, request_id, replay)

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization:
            raise invalid(
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                status=401,
            )
        key = _presented_key(authorization)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise invalid(f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}", status=401)

    def _once(self, key: str | None, fingerprint: tuple[Any, ...], run: Callable[[], _Reply]) -> tuple[_Reply, bool]:
        """Run the request, or replay the stored answer to its idempotency key; whether it was replayed."""
        if key is None:
            return run(), False
        if len(key) > 255:
            raise invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key")
        stored = self._replies.get(key)
        if stored is None:
            stored = self._replies[key] = replace(run(), fingerprint=fingerprint)
            return stored, False
        if stored.fingerprint != fingerprint:
            raise StripeError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
        return stored, True

    def _execute(self, handler: Handler, call: Call) -> _Reply:
        """The handler's answer, serialized now (while the lock still guards the records it returns)."""
        try:
            paths = call.params.strings("expand")
            self._account.check_expand(paths)
            payload = self._account.expand(handler(call), paths)
        except StripeError as error:
            return _Reply(error.status, error.body(), call.request["id"])
        return _Reply(200, encode(payload), call.request["id"])

    async def _webhook_control(self, request: Request) -> Response:
        """``{"hold": true}`` keeps deliveries back; ``{"release": "in_order" | "reverse" | "shuffle"}``
        lets them go (Stripe does not guarantee the order of events)."""
        try:
            command = json.loads(await request.body() or b"{}")
            if command.get("hold"):
                self._sender.hold()
                return JSONResponse({"held": True})
            return JSONResponse({"released": self._sender.release(command.get("release", "in_order"))})
        except (ValueError, AttributeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    async def _resend(self, request: Request) -> Response:
        try:
            with self._lock:
                deliveries = self._account.resend(request.path_params["id"])
        except StripeError as error:
            return _render(error.status, error.body(), new_id("req"))
        return _render(200, encode({"id": request.path_params["id"], "deliveries": deliveries}), new_id("req"))


def _presented_key(authorization: str) -> str:
    """The API key in an Authorization header: ``Bearer <key>``, or Basic auth with the key as user name."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def _unrecognized(request: Request) -> Response:
    """Stripe answers an unknown path, or a known path with the wrong method, with a 404 like this."""
    path = "/" + request.path_params["path"]
    error = invalid(f"Unrecognized request URL ({request.method}: {path}).", status=404)
    return _render(error.status, error.body(), new_id("req"))
