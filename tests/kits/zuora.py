"""The Zuora connector's contract kit: how crossledger's callout template signs a callout (HMAC of
the body; no time is signed), callouts about records Zuora really holds, and where the accounts the
sample events make show in the sandbox (``state["accounts"]``, flat as Object Query answers).

A Zuora callout only names an object, which the connector then reads from Zuora, so a sample
callout is only meaningful about a record the tenant holds. :class:`SeededZuora` is the connector
with one difference: the sandbox it starts already holds the documentation's example account, a
posted invoice with tax and a payment applied to it, and the samples are the callouts those made.
Also :class:`RunningZuora`, a sandbox on loopback with contexts for the connector, and
:class:`CalloutReceiver`, a loopback endpoint for the sandbox's callouts.
"""

import json
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import httpx
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.tokens import TokenCache
from crossledger.plugins.types import Context, Sandbox
from crossledger.plugins.zuora import callout
from crossledger.plugins.zuora.client import ZuoraSettings
from crossledger.plugins.zuora.connector import ZuoraConnector
from crossledger.plugins.zuora.sandbox.app import HMAC_HEADER, ZuoraSandbox
from crossledger.plugins.zuora.sandbox.catalog import catalog_id
from crossledger.plugins.zuora.sandbox.tenant import Tenant
from crossledger.testing.kit import ContractKit, Headers
from crossledger.testing.specs import zuora as zuora_spec
from crossledger.testing.specs.answers import Recorder
from crossledger.testing.specs.swagger import SwaggerSpec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIXTURES = Path(__file__).parent.parent / "fixtures" / "payloads" / "zuora"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


def seed(sandbox: ZuoraSandbox) -> dict[str, str]:
    """The documentation's example account, a posted invoice of 100.00 + 8.25 tax, a payment of it, a
    credit memo of 20.00 against it after it was paid (so none of it applied), and the memo's refund;
    their ids."""
    account = sandbox.apply(lambda tenant: tenant.create_account(fixture("create_account_request")))
    account_id = account["accountId"]

    def invoice(tenant: Tenant) -> dict[str, Any]:
        return tenant.create_invoice({"accountId": account_id, "invoiceDate": "2026-01-05", "dueDate": "2026-02-04",
                                      "status": "Posted", "invoiceItems": [
                                          {"amount": 100, "chargeName": "Pro plan", "serviceStartDate": "2026-01-05",
                                           "taxItems": [{"taxAmount": 8.25, "name": "CA sales tax"}]}]})

    invoice_id = sandbox.apply(invoice)["id"]
    payment = sandbox.apply(lambda tenant: tenant.create_payment(
        {"accountId": account_id, "amount": 108.25, "currency": "USD", "type": "External",
         "effectiveDate": "2026-01-06", "invoices": [{"invoiceId": invoice_id, "amount": 108.25}]}))
    memo = sandbox.apply(lambda tenant: tenant.credit_invoice(invoice_id, {
        "autoPost": True, "autoApplyToInvoiceUponPosting": True, "reasonCode": "Service issue",
        "items": [{"invoiceItemId": tenant.invoice_items[invoice_id][0]["id"], "amount": 20, "skuName": "SKU-1"}]}))
    refund = sandbox.apply(lambda tenant: tenant.refund_credit_memo(memo["id"], {
        "totalAmount": 20, "type": "External", "methodType": "Check", "refundDate": "2026-01-08"}))
    return {"account": account_id, "invoice": invoice_id, "payment": payment["id"], "memo": memo["id"],
            "refund": refund["id"]}


class SeededZuora(ZuoraConnector):
    """The Zuora connector, whose sandbox starts with the records the sample callouts name."""

    started: ClassVar[list[ZuoraSandbox]] = []

    def sandbox(self) -> Sandbox:
        sandbox = ZuoraSandbox()
        seed(sandbox)
        self.started.append(sandbox)
        return sandbox


class ZuoraKit(ContractKit):
    connector = SeededZuora()
    record_state_key = "accounts"
    max_signature_age_s = None  # the template signs the body only (see plugins/zuora/callout.py)

    def sign(self, body: bytes, secret: str, timestamp: float) -> Headers:
        return {HMAC_HEADER: callout.sign(secret, body), "Content-Type": "application/json"}

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        """HMAC only: the suite's signature checks are about the body's signature, not Basic auth."""
        return {**settings, "hmac_key": current, "previous_hmac_key": previous, "callout_username": None,
                "callout_password": None}

    def webhook_samples(self) -> list[bytes]:
        """The callouts the seeded records raised: account created, invoice posted, payment processed,
        credit memo posted, refund processed."""
        return SeededZuora.started[-1].callout_bodies()

    def shows(self, record: dict[str, Any], name: str) -> bool:
        return record.get("name") == name


class RunningZuora:
    """A Zuora sandbox on loopback, with a client for what the connector hides and contexts for it."""

    def __init__(self, sandbox: ZuoraSandbox | None = None) -> None:
        self.sandbox = sandbox or ZuoraSandbox()
        self.server = ServerThread(self.sandbox.app).start()
        self.url = self.server.url
        self.http = httpx.Client(timeout=10)
        self.tokens = TokenCache()

    def context(self, *, clock: Any = time.time, **overrides: Any) -> Context:
        settings = ZuoraSettings(**{**self.sandbox.connector_settings(self.url), "timeout_s": 5.0, **overrides})
        return Context(settings=settings, http=self.http, clock=clock)

    def token(self) -> str:
        answer = self.http.post(f"{self.url}/oauth/token", data={
            "client_id": self.sandbox.client_id, "client_secret": self.sandbox.client_secret,
            "grant_type": "client_credentials"})
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def control(self, path: str, **command: Any) -> dict[str, Any]:
        answer = self.http.post(f"{self.url}/_sandbox/{path}", json=command)
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def close(self) -> None:
        self.http.close()
        self.server.stop()


class CalloutReceiver:
    """A loopback endpoint for callouts: the first ``failures`` attempts get a 500, the rest a 200;
    every attempt's headers and body are recorded."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server = ServerThread(Starlette(routes=[Route("/callouts", self._receive, methods=["POST"])])).start()

    @property
    def url(self) -> str:
        return f"{self._server.url}/callouts"

    def stop(self) -> None:
        self._server.stop()

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.attempts.append((dict(request.headers), body))
            failing = len(self.attempts) <= self.failures
        return Response(b"", status_code=500 if failing else 200)


SPECS = Path(__file__).parent.parent / "fixtures" / "specs" / "zuora"


@cache
def published() -> list[SwaggerSpec]:
    return zuora_spec.load(SPECS)


class Checked:
    """A sandbox on loopback behind a :class:`Recorder` holding every answer to Zuora's description,
    with a raw client (bearer token already fetched) for what an SDK hides."""

    def __init__(self) -> None:
        self.sandbox = ZuoraSandbox()
        self.recorder = Recorder(self.sandbox.app, zuora_spec.checker(published()))
        self.server = ServerThread(self.recorder).start()
        self.url = self.server.url
        token = httpx.post(f"{self.url}/oauth/token", data={
            "client_id": self.sandbox.client_id, "client_secret": self.sandbox.client_secret,
            "grant_type": "client_credentials"}).json()["access_token"]
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def account(self, **fields: Any) -> str:
        body = {**fixture("create_account_request"), **fields}
        answer = self.http.post("/v1/accounts", json=body).json()
        assert answer["success"] is True, answer
        return str(answer["accountId"])

    def control(self, path: str, **command: Any) -> None:
        self.http.post(f"/_sandbox/{path}", json=command).raise_for_status()

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def served_and_checked() -> Iterator[Checked]:
    """A :class:`Checked` sandbox for one test (a fixture's body): at the end, any answer that departed
    from Zuora's description fails the test."""
    running = Checked()
    yield running
    departures = running.recorder.take_departures()
    running.close()
    assert not departures, "the sandbox departed from Zuora's description:\n" + "\n".join(departures)


def order(account_number: str, action: dict[str, Any], subscription: str | None = None) -> dict[str, Any]:
    """The body of ``POST /v1/orders`` with one order action (on ``subscription`` when it changes one)."""
    entry = {"orderActions": [action], **({"subscriptionNumber": subscription} if subscription else {})}
    return {"orderDate": "2026-01-05", "existingAccountNumber": account_number, "subscriptions": [entry]}


def plan(name: str, price: float) -> dict[str, Any]:
    """The catalog's rate plan ``name`` to subscribe to, its flat monthly fee overridden to ``price``."""
    return {"productRatePlanId": catalog_id(name), "chargeOverrides": [
        {"pricing": {"recurringFlatFee": {"listPrice": price}}, "billing": {"billingPeriod": "Month"}}]}


UPGRADE_AND_RENEWAL = [
    {"type": "CreateSubscription", "createSubscription": {
        "subscribeToRatePlans": [plan("pro", 100)],
        "terms": {"initialTerm": {"period": 12, "periodType": "Month", "termType": "TERMED"}}}},
    {"type": "ChangePlan", "changePlan": {"productRatePlanId": catalog_id("pro"),
                                          "newProductRatePlan": plan("enterprise", 250)}},
    {"type": "RenewSubscription", "renewSubscription": {}},
    {"type": "CancelSubscription", "cancelSubscription": {"cancellationPolicy": "EndOfCurrentTerm"}},
]
"""The seed's subscription story as order actions: subscribe to Pro, upgrade to Enterprise, renew,
cancel at the end of the term."""

SUSPEND = {"type": "Suspend", "suspend": {"suspendPolicy": "Today"}}
"""What a tenant's collections do to the subscription of a customer who stopped paying."""
