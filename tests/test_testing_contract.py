"""The contract suite itself: a correct connector passes it, and each classic defect fails it.

"Ledger" is a tiny accounts system made up for this module: a sandbox built with the shared
``build_app`` (idempotency keys, cursor pages, HMAC-signed webhooks with a timestamp) and a
connector that does everything right. :class:`TestLedgerContract` runs the whole suite on it.
Then each broken variant (one defect each) runs the whole suite in a nested pytest session, which
must fail exactly the contract tests about that defect, with a message that names it.
"""

import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest
from crossledger.canonical import Customer, external_key, from_external_key
from crossledger.canonical.events import Envelope
from crossledger.plugins import (
    BaseConnector,
    Capability,
    Category,
    Change,
    ConnectorError,
    Context,
    InboundEvent,
    MissingDependency,
    Operation,
    Outcome,
    PayloadError,
    PollResult,
    Refs,
    SignatureError,
    SystemKind,
)
from crossledger.plugins.emulator import Faults, build_app
from crossledger.plugins.http import classify_http
from crossledger.plugins.types import Headers, Page, Projection
from crossledger.testing import ConnectorContract, ContractKit, RunningSandbox, SignatureVector, serve_sandbox
from crossledger.testing.delivery import Delivery
from pydantic import BaseModel, ConfigDict, SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

pytest_plugins = ["pytester"]

Write = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
"""A sandbox write: the request's fields -> (status, the record or error body)."""

SIGNATURE_HEADER = "Ledger-Signature"
DOCUMENTED_MAC = "0d866cdc498eaf9a9d6e846dd666643e8c697732dd298b08d6916f450d1965be"
MAX_PAGE = 100
POLL_PAGE = 2

# -- the Ledger system: its sandbox ----------------------------------------------------------------


def ledger_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``, as Ledger signs its webhooks."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def page_of(items: list[dict[str, Any]], request: Request) -> JSONResponse:
    """One page of ``items``: ``limit`` of them after the one whose id is ``starting_after``."""
    limit = min(int(request.query_params.get("limit", MAX_PAGE)), MAX_PAGE)
    after = request.query_params.get("starting_after")
    start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0) if after else 0
    return JSONResponse({"data": items[start:start + limit], "has_more": start + limit < len(items)})


def ledger_error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class LedgerSandbox:
    """Ledger's accounts API in memory: ``POST``/``PATCH`` honour ``Idempotency-Key`` (the same key with
    another request is a 422); ``GET /v1/accounts`` and the change log ``GET /v1/events`` page with
    ``limit`` and ``starting_after``; accounts carry ``created`` and ``updated`` (Unix seconds), and
    their list keeps those ``created_since`` or ``updated_since`` (at or after) when asked."""

    def __init__(self) -> None:
        self.api_key = f"lk_{secrets.token_hex(8)}"
        self.faults = Faults()
        self._lock = threading.Lock()
        self._accounts: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._replies: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        routes = [
            Route("/v1/accounts", self._list, methods=["GET"]),
            Route("/v1/accounts", self._create, methods=["POST"]),
            Route("/v1/accounts/{id}", self._read, methods=["GET"]),
            Route("/v1/accounts/{id}", self._update, methods=["PATCH"]),
            Route("/v1/events", self._list_events, methods=["GET"]),
        ]
        self.app = build_app(routes, faults=self.faults, state=self.state,
                             fault_response=lambda status, retry_after: ledger_error(status, "fault", retry_after))

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "api_key": self.api_key, "webhook_secret": "whsec_unset"}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Nothing to do: this sandbox sends no webhooks (the contract signs its own samples)."""

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"accounts": [dict(account) for account in self._accounts.values()]}

    async def _list(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        wanted = request.query_params.get("external_key")
        since = {field: int(request.query_params[f"{field}_since"])
                 for field in ("created", "updated") if f"{field}_since" in request.query_params}
        with self._lock:
            accounts = [a for a in self._accounts.values() if wanted in (None, a["external_key"])
                        and all(a[field] >= moment for field, moment in since.items())]
        return page_of(accounts, request)

    async def _list_events(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        with self._lock:
            return page_of(list(self._events), request)

    async def _read(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        with self._lock:
            account = self._accounts.get(request.path_params["id"])
        return ledger_error(404, "no such account") if account is None else JSONResponse(account)

    async def _create(self, request: Request) -> Response:
        def create(fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            account_id = f"acc_{next(self._ids)}"
            account = {"id": account_id, "name": fields.get("name"), "email": fields.get("email"),
                       "external_key": fields.get("external_key"), "created": int(time.time()),
                       "updated": int(time.time())}
            self._accounts[account_id] = account
            return 201, self._changed("account.created", account)

        return await self._write(request, create)

    async def _update(self, request: Request) -> Response:
        def update(fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            account = self._accounts.get(request.path_params["id"])
            if account is None:
                return 404, {"error": "no such account"}
            account.update({k: v for k, v in fields.items() if k in ("name", "email")}, updated=int(time.time()))
            return 200, self._changed("account.updated", account)

        return await self._write(request, update)

    async def _write(self, request: Request, write: Write) -> Response:
        """Run ``write`` once per idempotency key; replay its answer for the same request."""
        if (denied := self._denied(request)) is not None:
            return denied
        raw = await request.body()
        try:
            fields = json.loads(raw)
        except ValueError:
            return ledger_error(400, "body is not JSON")
        key = request.headers.get("idempotency-key")
        fingerprint = f"{request.method} {request.url.path} {raw.decode()}"
        with self._lock:
            if key is not None and key in self._replies:
                seen, status, body = self._replies[key]
                if seen != fingerprint:
                    return ledger_error(422, "idempotency key reused with another request")
                return JSONResponse(body, status_code=status)
            status, body = write(fields)
            if key is not None:
                self._replies[key] = (fingerprint, status, dict(body))
        return JSONResponse(body, status_code=status)

    def _changed(self, kind: str, account: dict[str, Any]) -> dict[str, Any]:
        """Log the change (called with the lock held); the account."""
        self._events.append({"id": f"evt_{len(self._events) + 1:06d}", "type": kind, "created": int(time.time()),
                             "data": dict(account)})
        return account

    def _denied(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return ledger_error(401, "bad api key")
        return None


# -- the Ledger connector, done right --------------------------------------------------------------


class LedgerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key: SecretStr
    webhook_secret: SecretStr
    previous_webhook_secret: SecretStr | None = None
    timeout_s: float = 10.0
    tolerance_s: int = 300


def settings_of(ctx: Context) -> LedgerSettings:
    assert isinstance(ctx.settings, LedgerSettings)
    return ctx.settings


class LedgerConnector(BaseConnector):
    name: ClassVar[str] = "ledger"
    kind: ClassVar[SystemKind] = SystemKind.CRM
    version: ClassVar[str] = "1.0.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.POLL, Capability.FETCH,
         Capability.SANDBOX, Capability.LIST})
    settings_model: ClassVar[type[BaseModel]] = LedgerSettings
    lists: ClassVar[frozenset[str]] = frozenset({"customer"})
    lists_since: ClassVar[frozenset[str]] = frozenset({"customer"})
    #: The account field Ledger filters by for "changed since" (``updated_since``).
    changed_field: ClassVar[str] = "updated"

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        settings = settings_of(ctx)
        timestamp, given = self._signature(headers)
        secrets_ = [s.get_secret_value() for s in (settings.webhook_secret, settings.previous_webhook_secret) if s]
        if not any(hmac.compare_digest(ledger_signature(secret, timestamp, body), f"t={timestamp},v1={given}")
                   for secret in secrets_):
            raise SignatureError("no signature matches")
        if timestamp < ctx.clock() - settings.tolerance_s:
            raise SignatureError("signature is stale")

    @staticmethod
    def _signature(headers: Headers) -> tuple[int, str]:
        header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        if not parts.get("t", "").isdigit() or "v1" not in parts:
            raise SignatureError(f"missing or malformed {SIGNATURE_HEADER}")
        return int(parts["t"]), parts["v1"]

    def parse_webhook(self, ctx: Context, headers: Headers, body: bytes) -> list[InboundEvent]:
        try:
            return [inbound(json.loads(body))]
        except (ValueError, KeyError, TypeError) as error:
            raise PayloadError(f"not a Ledger event: {error!r}") from error

    def poll(self, ctx: Context, cursor: str | None) -> PollResult:
        """The change log after ``cursor`` (the last event id read), a few events at a time."""
        page = self._page(ctx, "/v1/events", POLL_PAGE, cursor)
        events = [inbound(event) for event in page["data"]]
        return PollResult(events=events, cursor=events[-1].source_event_id if events else cursor,
                          has_more=page["has_more"])

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        account = event.payload["data"]
        key = account.get("external_key")
        cid = (from_external_key(key) if key else None) or refs.canonical_id("customer", self.name, account["id"])
        return [Change(type="customer.upserted",
                       entity=Customer(id=cid, name=account["name"], email=account.get("email")))]

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        if event.type != "customer.upserted" or not isinstance(event.data, Customer):
            return []
        customer, known = event.data, refs.external_id(event.subject, self.name)
        body = {"name": customer.name, "email": customer.email}
        if known is None:
            body["external_key"] = external_key(customer.id)
            payload = {"method": "POST", "path": "/v1/accounts", "body": body}
        else:
            payload = {"method": "PATCH", "path": f"/v1/accounts/{known}", "body": body}
        return [Operation(name="customer.upsert", entity_type="customer", canonical_id=customer.id, payload=payload)]

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        return self._write(ctx, op, {"Idempotency-Key": idempotency_key})

    def _write(self, ctx: Context, op: Operation, headers: dict[str, str]) -> Outcome:
        response = self._request(ctx, op.payload["method"], op.payload["path"], json=op.payload["body"],
                                 headers=headers)
        return Outcome(external_id=response.json()["id"], created=response.status_code == 201)

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        found = self._request(ctx, "GET", "/v1/accounts", params={"external_key": external_key(op.canonical_id)})
        wanted = {k: v for k, v in op.payload["body"].items() if k != "external_key"}
        for account in found.json()["data"]:
            if all(account.get(k) == v for k, v in wanted.items()):
                return Outcome(external_id=account["id"], record=account)
        return None

    def fetch(self, ctx: Context, entity_type: str, external_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self._request(ctx, "GET", f"/v1/accounts/{external_id}").json()
        return record

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            page = self._page(ctx, "/v1/accounts", page_size, after)
            yield from page["data"]
            if not page["has_more"]:
                return
            after = page["data"][-1]["id"]

    def records_page(self, ctx: Context, entity_type: str, *, cursor: str | None = None,
                     since: datetime | None = None, page_size: int | None = None) -> Page:
        params = {"limit": str(page_size or MAX_PAGE), **({"starting_after": cursor} if cursor else {})}
        if since is not None:
            params[f"{self.changed_field}_since"] = str(int(since.timestamp()))
        page = self._request(ctx, "GET", "/v1/accounts", params=params).json()
        return Page(records=page["data"], next=page["data"][-1]["id"] if page["has_more"] else None)

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        return Projection(id=record["id"], mark=from_external_key(record.get("external_key") or ""),
                          key=record.get("email"), values={"name": record.get("name"), "email": record.get("email")})

    def _page(self, ctx: Context, path: str, page_size: int | None, after: str | None) -> dict[str, Any]:
        params = {"limit": str(page_size or MAX_PAGE), **({"starting_after": after} if after else {})}
        page: dict[str, Any] = self._request(ctx, "GET", path, params=params).json()
        return page

    def classify(self, error: Exception) -> ConnectorError:
        return classify_http(error, self.name)

    def sandbox(self) -> LedgerSandbox:
        return LedgerSandbox()

    def _request(self, ctx: Context, method: str, path: str, **options: Any) -> httpx.Response:
        settings = settings_of(ctx)
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}", **options.pop("headers", {})}
        try:
            response: httpx.Response = ctx.http.request(method, settings.base_url + path, headers=headers,
                                                        timeout=settings.timeout_s, **options)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise self.classify(error) from error
        return response


def inbound(event: dict[str, Any]) -> InboundEvent:
    """A Ledger event (webhook body or change-log entry) as the hub's InboundEvent."""
    return InboundEvent(source_event_id=event["id"], type=event["type"],
                        occurred_at=datetime.fromtimestamp(event["created"], UTC), payload=event)


def ledger_event(n: int, kind: str = "account.created", key: str | None = None) -> bytes:
    account = {"id": f"acc_{900 + n}", "name": f"Webhook Account {n}", "email": f"w{n}@example.com",
               "external_key": key}
    return json.dumps({"id": f"evt_{n}", "type": kind, "created": 1767225600 + n, "data": account}).encode()


class LedgerKit(ContractKit):
    connector = LedgerConnector()
    record_state_key = "accounts"
    signature_vectors: ClassVar[list[SignatureVector]] = [
        SignatureVector(secret="whsec_doc", headers={SIGNATURE_HEADER: f"t=1767225600,v1={DOCUMENTED_MAC}"},
                        body=b'{"id":"evt_doc"}', now=1767225610, valid=True, source="Ledger's docs"),
        SignatureVector(secret="whsec_doc", headers={SIGNATURE_HEADER: f"t=1767225600,v1={DOCUMENTED_MAC[::-1]}"},
                        body=b'{"id":"evt_doc"}', now=1767225610, valid=False, source="a forged v1"),
    ]

    def sign(self, body: bytes, secret: str, timestamp: float) -> dict[str, str]:
        return {SIGNATURE_HEADER: ledger_signature(secret, int(timestamp), body)}

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        return {**settings, "webhook_secret": current, "previous_webhook_secret": previous}

    def webhook_samples(self) -> list[bytes]:
        return [ledger_event(1), ledger_event(2, "account.updated", key="customer.origin.x-2")]


class TestLedgerContract(ConnectorContract):
    kit = LedgerKit()


# -- the same connector, each with one classic defect -------------------------------------------


class TamperBlindLedger(LedgerConnector):
    """Checks that a signature header is there and fresh, but never compares it."""

    def verify_webhook(self, ctx: Context, headers: Headers, body: bytes) -> None:
        timestamp, _ = self._signature(headers)
        if timestamp < ctx.clock() - settings_of(ctx).tolerance_s:
            raise SignatureError("signature is stale")


class DuplicatingLedger(LedgerConnector):
    """Creates without the idempotency key: every repeat is a new account."""

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome:
        return self._write(ctx, op, {})


class ImpatientLedger(LedgerConnector):
    """Calls a 429 an ordinary transient failure, so the hub ignores Retry-After and spends retries."""

    def classify(self, error: Exception) -> ConnectorError:
        classified = super().classify(error)
        if classified.category is Category.RATE_LIMITED:
            return ConnectorError(Category.TRANSIENT, classified.message, status=classified.status)
        return classified


class ForgetfulLedger(LedgerConnector):
    """Always says a write did not land: after a timeout the hub would send it again."""

    def probe(self, ctx: Context, op: Operation, idempotency_key: str) -> Outcome | None:
        return None


class FirstPageLedger(LedgerConnector):
    """Reads one page and stops."""

    def records(self, ctx: Context, entity_type: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        yield from self._page(ctx, "/v1/accounts", page_size, None)["data"]


class MisprojectedLedger(LedgerConnector):
    """Projects each record under its name instead of its id: reconciliation would match nothing."""

    def project(self, entity_type: str, record: dict[str, Any]) -> Projection | None:
        return Projection(id=record["name"], values={"name": record["name"]})


class CreatedSinceLedger(LedgerConnector):
    """Asks for the accounts *made* since: an edit moves no creation time, so it is never seen."""

    changed_field: ClassVar[str] = "created"


class SinceBlindLedger(LedgerConnector):
    """Claims Ledger filters by "changed since" but never sends it: every run reads everything."""

    changed_field: ClassVar[str] = "ignored"


class StuckLedger(LedgerConnector):
    """Forgets the cursor: polls the first page of the change log again and again."""

    def poll(self, ctx: Context, cursor: str | None) -> PollResult:
        return super().poll(ctx, None)


BROKEN = {
    TamperBlindLedger: ["test_webhook_tampering_is_refused", "test_webhook_previous_secret_works_during_a_roll",
                        "test_webhook_documented_vectors"],
    DuplicatingLedger: ["test_delivering_twice_with_one_key_makes_one_record",
                        "test_reused_key_with_another_payload_never_duplicates"],
    ImpatientLedger: ["test_rate_limit_is_classified_with_retry_after"],
    ForgetfulLedger: ["test_timeout_after_commit_is_ambiguous_and_probe_finds_the_write"],
    FirstPageLedger: ["test_records_pages_through_everything"],
    StuckLedger: ["test_poll_follows_its_cursor_to_the_end"],
    MisprojectedLedger: ["test_listed_records_project_for_reconciliation"],
    CreatedSinceLedger: ["test_records_page_since_lists_what_changed"],
    SinceBlindLedger: ["test_records_page_since_lists_what_changed"],
}

EXPLAINED = {
    TamperBlindLedger: ["verify_webhook accepted a body signed with another secret"],
    DuplicatingLedger: ["made another record", "an idempotency key reused with another payload wrote"],
    ImpatientLedger: ["a 429 was classified transient"],
    ForgetfulLedger: ["probe(customer.upsert) said the write did not land"],
    FirstPageLedger: ["yielded 2 of the"],
    StuckLedger: ["said has_more but returned the cursor 'evt_000002'"],
    MisprojectedLedger: ["it must return a Projection with the record's own id"],
    CreatedSinceLedger: ["updated after that moment: reconciliation would never see the change"],
    SinceBlindLedger: ["untouched for 2 s before that moment"],
}
"""What the failures must say, for each broken connector."""

SUITE_FOR = """
from crossledger.testing import ConnectorContract
from test_testing_contract import LedgerKit, {connector}


class BrokenKit(LedgerKit):
    connector = {connector}()


class TestBrokenContract(ConnectorContract):
    kit = BrokenKit()
"""


@pytest.mark.parametrize("broken", list(BROKEN), ids=lambda cls: cls.__name__)
def test_the_suite_fails_exactly_the_defect(pytester: pytest.Pytester, broken: type[LedgerConnector]) -> None:
    pytester.makepyfile(**{f"test_{broken.__name__.lower()}": SUITE_FOR.format(connector=broken.__name__)})
    passed, skipped, failed = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:logging").listoutcomes()

    failed_tests = sorted(report.nodeid.split("::")[-1] for report in failed)
    assert failed_tests == sorted(BROKEN[broken])
    assert not skipped and passed
    messages = "\n".join(report.longreprtext for report in failed)
    assert [text for text in EXPLAINED[broken] if text not in messages] == []


def test_a_connector_without_capabilities_skips_with_reasons(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bare="""
from crossledger.plugins import BaseConnector, SystemKind
from crossledger.testing import ConnectorContract, ContractKit
from pydantic import BaseModel


class Settings(BaseModel):
    url: str = "http://x"


class Bare(BaseConnector):
    name = "bare"
    kind = SystemKind.SUPPORT
    settings_model = Settings


class BareKit(ContractKit):
    connector = Bare()


class TestBareContract(ConnectorContract):
    kit = BareKit()
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:logging", "-rs")

    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] == 4
    result.stdout.fnmatch_lines(["*bare does not declare Capability.SANDBOX*"])


def test_failures_of_the_kit_itself_are_explained(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_silent_kit="""
from crossledger.testing import ConnectorContract
from test_testing_contract import LedgerKit


class SilentKit(LedgerKit):
    record_state_key = "nowhere"

    def webhook_samples(self):
        return []


class TestSilentContract(ConnectorContract):
    kit = SilentKit()
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:logging",
                                          "-k", "samples or twice or signed_correctly")

    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*webhook_samples() is empty*", "*made no new record*record_state_key*"])


# -- delivery through the hub's pipeline: dependencies, and connectors that break the flow ------------

PARENT = "customer/origin/parent"
"""The record every account of :class:`ParentedLedger` needs written first."""


class ParentedLedger(LedgerConnector):
    """Writes an account only once its parent account exists in Ledger (as an invoice needs its customer)."""

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        if event.subject != PARENT and refs.external_id(PARENT, self.name) is None:
            raise MissingDependency("customer", PARENT)
        return super().plan(ctx, event, refs)


class StubbornLedger(ParentedLedger):
    """Never sees its parent, however often it is delivered."""

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> list[Operation]:
        if event.subject != PARENT:
            raise MissingDependency("customer", PARENT)
        return super().plan(ctx, event, refs)


class RamblingLedger(LedgerConnector):
    """Plans a dict of operations."""

    def plan(self, ctx: Context, event: Envelope, refs: Refs) -> Any:
        return {"customer.upsert": super().plan(ctx, event, refs)}


class SilentLedger(LedgerConnector):
    """Writes, and answers nothing."""

    def execute(self, ctx: Context, op: Operation, idempotency_key: str) -> Any:
        super().execute(ctx, op, idempotency_key)
        return None


class OrphanKit(LedgerKit):
    """Knows no record the samples depend on."""

    def dependency(self, entity_type: str, canonical_id: str) -> None:
        return None


@pytest.fixture(scope="module")
def ledger() -> Iterator[RunningSandbox]:
    running = serve_sandbox(LedgerSandbox())
    yield running
    running.stop()


@pytest.fixture
def deliveries(ledger: RunningSandbox) -> Iterator[Callable[[ContractKit], Delivery]]:
    """Deliveries of a kit's connector into the Ledger sandbox, each with a pipeline of its own."""
    with httpx.Client(timeout=5) as http, contextlib.ExitStack() as opened:
        ctx = Context(settings=LedgerSettings.model_validate(ledger.settings()), http=http, clock=time.time)
        yield lambda kit: opened.enter_context(Delivery(kit, ctx))


def kit_of(connector: LedgerConnector, kit: type[LedgerKit] = LedgerKit) -> LedgerKit:
    return type(f"{type(connector).__name__}Kit", (kit,), {"connector": connector})()


def accounts(ledger: RunningSandbox) -> list[str]:
    return sorted(account["name"] for account in ledger.state()["accounts"])


def test_a_dependency_is_delivered_first_once_from_the_kits_record(
        ledger: RunningSandbox, deliveries: Callable[[ContractKit], Delivery]) -> None:
    kit = kit_of(ParentedLedger())
    delivery, before = deliveries(kit), accounts(ledger)

    [op] = delivery.plan(kit.sample_event(101))
    assert accounts(ledger) == sorted([*before, "Customer parent"])  # the parent written, the sample not yet
    assert op.canonical_id == kit.sample_event(101).subject
    [outcome] = delivery.deliver(kit.sample_event(101))
    delivery.deliver(kit.sample_event(102))

    assert accounts(ledger) == sorted([*before, "Customer parent", "Contract Customer 101", "Contract Customer 102"])
    assert delivery.refs.external_id(kit.sample_event(101).subject, "ledger") == outcome.external_id
    assert delivery.store.delivery_get(delivery.key(kit.sample_event(101), op)) is not None  # the hub's own key


@pytest.mark.parametrize(("connector", "kit", "explained"), [
    (StubbornLedger(), LedgerKit, "raises MissingDependency('customer', 'customer/origin/parent') although it was "
                                  "delivered: plan must find it with refs.external_id"),
    (ParentedLedger(), OrphanKit, "needs customer customer/origin/parent first, and the kit has no record for it: "
                                  "override ContractKit.dependency()"),
    (RamblingLedger(), LedgerKit, "returned {'customer.upsert': [Operation("),
    (SilentLedger(), LedgerKit, "execute(customer.upsert customer/origin/contract-103) returned None: it must "
                                "return an Outcome"),
], ids=["stubborn", "orphan", "rambling", "silent"])
def test_a_connector_that_breaks_the_delivery_flow_is_told_how(
        deliveries: Callable[[ContractKit], Delivery], connector: LedgerConnector, kit: type[LedgerKit],
        explained: str) -> None:
    delivery = deliveries(kit_of(connector, kit))

    with pytest.raises(AssertionError) as failed:
        delivery.deliver(delivery.kit.sample_event(103))

    assert explained in str(failed.value)
