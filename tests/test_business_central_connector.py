"""The Business Central connector against its sandbox over real HTTP on loopback: one test per
documented behaviour (tokens, ETag conflicts re-applied, $batch, posting, payments, throttling, the
webhook handshake, notifications and collections, subscription renewal, polling as the fallback)."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from crossledger.canonical import Customer, Envelope, new_envelope
from crossledger.canonical.entities import Entity, Invoice, InvoiceLine, Payment, PaymentApplication
from crossledger.canonical.money import money
from crossledger.plugins.business_central.client import ApiClient
from crossledger.plugins.business_central.connector import TOKENS, BusinessCentralConnector
from crossledger.plugins.business_central.inbound import STREAMS, carrying
from crossledger.plugins.business_central.outbound import Setup, Writer, customer_number
from crossledger.plugins.business_central.sandbox.app import BusinessCentralSandbox
from crossledger.plugins.business_central.sandbox.books import demo_id
from crossledger.plugins.business_central.sandbox.webhooks import LIFETIME_S
from crossledger.plugins.business_central.settings import BusinessCentralSettings
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError, SignatureError
from crossledger.plugins.tokens import TokenCache
from crossledger.plugins.types import Context, InboundEvent, Outcome, PollResult
from crossledger.testing.hub import HubFactory
from crossledger.testing.redis_server import free_port
from crossledger.testing.refs import MemoryRefs
from crossledger.testing.sandboxes import RunningSandbox, SandboxFactory
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.kits.business_central import Clock, documented_notification

CONNECTOR = BusinessCentralConnector()
AT = datetime(2026, 3, 2, tzinfo=UTC)
CLIENT_STATE = "hub-client-state-0123456789"


@dataclass
class Company:
    """A sandbox company and the connector bound to it, with the hub's cross-references."""

    sandbox: BusinessCentralSandbox
    running: RunningSandbox
    ctx: Context
    clock: Clock
    refs: MemoryRefs = field(default_factory=MemoryRefs)

    def deliver(self, event: Envelope) -> list[Outcome]:
        outcomes = []
        for op in CONNECTOR.plan(self.ctx, event, self.refs):
            outcome = CONNECTOR.execute(self.ctx, op, f"key-{op.name}")
            self.refs.put(op.canonical_id, op.entity_type, "business_central", outcome.external_id)
            outcomes.append(outcome)
        return outcomes

    def api(self) -> ApiClient:
        return ApiClient(self.ctx.settings_as(BusinessCentralSettings), self.ctx.http, TOKENS, self.clock())

    def table(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.running.state()[name]
        return found

    def with_settings(self, **changes: Any) -> Context:
        settings = BusinessCentralSettings.model_validate({**dict(self.ctx.settings_as(BusinessCentralSettings)),
                                                           **changes})
        return Context(settings=settings, http=self.ctx.http, clock=self.clock)


@pytest.fixture
def company(sandbox_server: SandboxFactory) -> Iterator[Company]:
    clock = Clock()
    sandbox = BusinessCentralSandbox(clock=clock, token_lifetime_s=600, notification_delay_s=0.1)
    running = sandbox_server(sandbox)
    settings = BusinessCentralSettings.model_validate({**running.settings(), "poll_settle_s": 0})
    with httpx.Client(timeout=10) as http:
        yield Company(sandbox, running, Context(settings=settings, http=http, clock=clock), clock)


def _event(event_type: str, data: Entity, n: int = 1) -> Envelope:
    return new_envelope(type=event_type, source="stripe", source_event_id=f"evt-{event_type}-{n}", data=data,
                        occurred_at=AT)


def _poll(company: Company, cursor: str | None = None) -> PollResult:
    """A poll once what was just written is older than the poll's horizon (a moment later)."""
    company.clock.offset += 1
    return CONNECTOR.poll(company.ctx, cursor)


def _customer(company: Company, n: int = 1, **fields: Any) -> Customer:
    customer = Customer(id=f"customer/stripe/cus_{n}", name=f"Customer {n}", email=f"c{n}@example.com",
                        currency="USD", **fields)
    company.deliver(_event("customer.upserted", customer, n))
    return customer


def _invoice(customer: Customer, n: int = 1, cents: int = 2000) -> Invoice:
    return Invoice(id=f"invoice/stripe/in_{n}", customer_id=customer.id, currency="USD",
                   lines=[InvoiceLine(description="Pro plan", quantity=2, amount=money(cents, "USD"))],
                   tax=money(150, "USD"), discount=money(100, "USD"), total=money(cents + 50, "USD"),
                   status="issued", issued_at=AT)


# -- auth -----------------------------------------------------------------------------------------


def test_token_is_cached_and_refreshed_before_it_expires(company: Company) -> None:
    tokens = TokenCache()
    settings = company.ctx.settings_as(BusinessCentralSettings)
    api = ApiClient(settings, company.ctx.http, tokens, company.clock())
    api.get("/companies")
    api.get("/companies")
    assert (tokens.fetched, company.sandbox.tokens_issued) == (1, 1)
    company.clock.offset = 600 - 50  # inside the last tenth of the token's life: replaced before it lapses
    ApiClient(settings, company.ctx.http, tokens, company.clock()).get("/companies")
    assert (tokens.fetched, company.sandbox.tokens_issued) == (2, 2)


def test_a_revoked_token_is_replaced_once(company: Company) -> None:
    tokens = TokenCache()
    api = ApiClient(company.ctx.settings_as(BusinessCentralSettings), company.ctx.http, tokens, company.clock())
    api.get("/companies")
    company.sandbox.tokens.clear()  # revoked in Entra ID
    assert api.get("/companies")["value"] and tokens.fetched == 2


def test_wrong_client_secret_is_an_auth_error(company: Company) -> None:
    ctx = company.with_settings(client_secret="wrong", client_id="another-app")
    with pytest.raises(ConnectorError) as refused:
        CONNECTOR.fetch(ctx, "customer", "00000000-0000-0000-0000-000000000000")
    assert refused.value.category is Category.AUTH


# -- customers and concurrency --------------------------------------------------------------------


def test_customer_made_once_under_its_number_and_updated_after(company: Company) -> None:
    customer = _customer(company)
    again = company.deliver(_event("customer.upserted", Customer(id=customer.id, name="Renamed", currency="USD"), 2))
    mine = [c for c in company.table("customers") if c["number"] == customer_number(customer.id)]
    assert len(mine) == 1 and mine[0]["displayName"] == "Renamed" and not again[0].created


def test_a_customer_born_in_business_central_is_updated_there_not_made_again(company: Company) -> None:
    """Adatum came from Business Central (number 10000); billing's copy of it, upserted back, changes
    that customer, and so does its suspension: no second customer under the hub's number."""
    adatum = demo_id("customers", "10000")
    canonical = f"customer/business_central/{adatum}"
    company.refs.put(canonical, "customer", "business_central", adatum)
    [outcome] = company.deliver(_event("customer.upserted", Customer(id=canonical, name="Adatum Corp",
                                                                     currency="USD")))
    company.deliver(_event("customer.suspended", Customer(id=canonical, name="Adatum Corp", currency="USD")))
    named = [c for c in company.table("customers") if c["displayName"].startswith("Adatum")]
    assert [(c["id"], c["number"], c["displayName"], c["blocked"]) for c in named] \
        == [(adatum, "10000", "Adatum Corp", "Invoice")]
    assert outcome.external_id == adatum and not outcome.created


def test_stale_etag_412_reads_again_and_reapplies_keeping_the_users_change(company: Company) -> None:
    customer = _customer(company)
    bc_id = company.refs.external_id(customer.id, "business_central")
    assert bc_id is not None
    api = company.api()
    stale = api.get(api.company(f"/customers({bc_id})"))
    net30 = next(t["id"] for t in company.table("paymentTerms") if t["code"] == "NET30")
    company.sandbox.edit("customers", bc_id, {"paymentTermsId": net30})  # a user, between our read and write
    before = len(company.sandbox.requests)
    Writer(api, Setup(api)).patch("customers", stale, {"displayName": "From billing"})
    [record] = [c for c in company.table("customers") if c["id"] == bc_id]
    assert record["displayName"] == "From billing" and record["paymentTermsId"] == net30
    assert [m for m, _ in company.sandbox.requests[before:]] == ["PATCH", "GET", "PATCH"]


def test_a_conflict_that_persists_is_transient(company: Company) -> None:
    customer = _customer(company)
    bc_id = company.refs.external_id(customer.id, "business_central")
    api = ApiClient(company.with_settings(max_conflict_retries=1).settings_as(BusinessCentralSettings),
                    company.ctx.http, TOKENS, company.clock())
    stale = api.get(api.company(f"/customers({bc_id})"))
    company.sandbox.edit("customers", str(bc_id), {"email": "user@example.com"})
    with pytest.raises(ConnectorError) as conflict:
        Writer(api, Setup(api)).patch("customers", stale, {"displayName": "Again"})
    assert conflict.value.category is Category.TRANSIENT and conflict.value.status == 412


def test_customer_dimensions_resolved_through_one_batch_of_lookups(company: Company) -> None:
    before = len(company.sandbox.requests)
    _customer(company, dimensions={"terms": "NET15", "tax_area": "STANDARD"})
    [record] = [c for c in company.table("customers") if c["displayName"] == "Customer 1"]
    codes = {t["id"]: t["code"] for t in company.table("paymentTerms") + company.table("taxAreas")}
    assert (codes[record["paymentTermsId"]], codes[record["taxAreaId"]]) == ("NET15", "STANDARD")
    assert ("POST", "$batch") in company.sandbox.requests[before:]
    with pytest.raises(ConnectorError) as unknown:
        _customer(company, 2, dimensions={"terms": "NET99"})
    assert unknown.value.category is Category.DATA


def test_suspension_blocks_invoicing(company: Company) -> None:
    customer = _customer(company)
    company.deliver(_event("customer.suspended", customer))
    assert [c["blocked"] for c in company.table("customers") if c["displayName"] == "Customer 1"] == ["Invoice"]


# -- documents, $batch, payments ------------------------------------------------------------------


def test_invoice_created_with_lines_and_posted_once(company: Company) -> None:
    customer = _customer(company)
    invoice = _invoice(customer)
    [first] = company.deliver(_event("invoice.issued", invoice))
    [second] = company.deliver(_event("invoice.issued", invoice, 2))
    [record] = company.table("salesInvoices")
    assert first.created and not second.created and first.external_id == second.external_id == record["id"]
    assert record["status"] == "Open" and record["totalAmountIncludingTax"] == 20.5
    lines = [line["lineObjectNumber"] for line in company.table("salesInvoiceLines")]
    assert lines == ["SERVICES", "TAX", "DISCOUNT"]


def test_a_draft_left_behind_has_its_lines_replaced_in_one_atomic_batch_then_posted(company: Company) -> None:
    customer = _customer(company)
    invoice = _invoice(customer)
    [op] = CONNECTOR.plan(company.ctx, _event("invoice.issued", invoice), company.refs)
    api = company.api()  # an earlier attempt made the draft, with a wrong line, and failed before posting
    api.request("POST", api.company("/salesInvoices"), body={
        **op.payload["header"], "salesInvoiceLines": [{"lineObjectNumber": "SERVICES", "unitPrice": 999}]})
    before = len(company.sandbox.requests)
    CONNECTOR.execute(company.ctx, op, "key")
    [record] = company.table("salesInvoices")
    assert record["status"] == "Open" and record["totalAmountIncludingTax"] == 20.5
    assert len(company.table("salesInvoiceLines")) == 3
    assert company.sandbox.requests[before:].count(("POST", "$batch")) == 2  # the setup, then the lines


def test_payment_applied_in_one_batch_and_paid_when_the_journal_is_posted(company: Company) -> None:
    customer = _customer(company)
    first, second = _invoice(customer, 1), _invoice(customer, 2, cents=1000)
    company.deliver(_event("invoice.issued", first))
    company.deliver(_event("invoice.issued", second, 2))
    payment = Payment(id="payment/stripe/py_1", customer_id=customer.id, amount=money(3100, "USD"), received_at=AT,
                      applications=[PaymentApplication(invoice_id=first.id, amount=money(2050, "USD")),
                                    PaymentApplication(invoice_id=second.id, amount=money(1050, "USD"))])
    company.deliver(_event("payment.settled", payment))
    company.deliver(_event("payment.settled", payment, 2))  # a repeat finds its lines
    lines = company.table("customerPayments")
    assert sorted(line["amount"] for line in lines) == [10.5, 20.5] and len(lines) == 2
    assert company.sandbox.post_payment_journal() == 2
    assert {i["status"] for i in company.table("salesInvoices")} == {"Paid"}


def test_a_document_in_a_currency_or_item_the_company_lacks_is_a_data_error(company: Company) -> None:
    customer = _customer(company)
    for settings, invoice in ((company.ctx, msgspec.structs.replace(
            _invoice(customer), currency="CHF", lines=[InvoiceLine(description="x", amount=money(100, "CHF"))],
            tax=money(0, "CHF"), discount=money(0, "CHF"), total=money(100, "CHF"))),
                              (company.with_settings(item_number="NOSUCHITEM"), _invoice(customer))):
        [op] = CONNECTOR.plan(settings, _event("invoice.issued", invoice), company.refs)
        with pytest.raises(ConnectorError) as refused:
            CONNECTOR.execute(settings, op, "key")
        assert refused.value.category is Category.DATA
    assert company.table("salesInvoices") == []


def test_a_payment_read_back_by_id(company: Company) -> None:
    customer = _customer(company)
    invoice = _invoice(customer)
    company.deliver(_event("invoice.issued", invoice))
    payment = Payment(id="payment/stripe/py_1", customer_id=customer.id, amount=money(2050, "USD"),
                      applications=[PaymentApplication(invoice_id=invoice.id, amount=money(2050, "USD"))])
    [made] = company.deliver(_event("payment.settled", payment))
    assert CONNECTOR.fetch(company.ctx, "payment", made.external_id)["amount"] == 20.5


def test_void_cancels_the_posted_invoice(company: Company) -> None:
    customer = _customer(company)
    invoice = _invoice(customer)
    company.deliver(_event("invoice.issued", invoice))
    company.deliver(_event("invoice.voided", invoice))
    company.deliver(_event("invoice.voided", invoice, 2))
    assert [i["status"] for i in company.table("salesInvoices")] == ["Canceled"]
    assert [m["status"] for m in company.table("salesCreditMemos")] == ["Corrective"]


def test_throttling_is_rate_limited_with_retry_after(company: Company) -> None:
    company.api().get("/companies")  # a token first: Entra ID is not what throttles
    company.running.fault(mode="http_429", retry_after=7, count=1)
    with pytest.raises(ConnectorError) as throttled:
        company.deliver(_event("customer.upserted", Customer(id="customer/stripe/cus_9", name="N", currency="USD")))
    assert throttled.value.category is Category.RATE_LIMITED and throttled.value.retry_after == 7


# -- inbound --------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """The hub's webhook endpoint as far as Business Central sees it, made of the connector's public
    methods only: the handshake, verification, parsing."""

    ctx: Context
    events: list[InboundEvent] = field(default_factory=list)

    async def receive(self, request: Request) -> Response:
        headers = {key.lower(): value for key, value in request.headers.items()}
        body = await request.body()
        answer = CONNECTOR.webhook_handshake(dict(request.query_params), headers, body)
        if answer is not None:
            return Response(answer[2], status_code=answer[0], media_type=answer[1])
        CONNECTOR.verify_webhook(self.ctx, headers, body)
        self.events += CONNECTOR.parse_webhook(self.ctx, headers, body)
        return Response(status_code=202)

    def wait(self, predicate: Any, timeout: float = 10) -> list[InboundEvent]:
        deadline = time.monotonic() + timeout
        while not predicate(self.events) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events


@pytest.fixture
def subscribed(company: Company) -> Iterator[tuple[Company, Endpoint]]:
    """The company with the connector's subscriptions made by a poll, notifying a local endpoint."""
    endpoint = Endpoint(company.ctx)
    server = ServerThread(Starlette(routes=[Route("/webhooks/business_central", endpoint.receive,
                                                  methods=["POST"])])).start()
    company.ctx = endpoint.ctx = company.with_settings(notification_url=f"{server.url}/webhooks/business_central",
                                                       client_state=CLIENT_STATE)
    CONNECTOR.poll(company.ctx, None)
    yield company, endpoint
    server.stop()


def test_handshake_answers_the_validation_token() -> None:
    assert CONNECTOR.webhook_handshake({"validationToken": "abc"}, {}, b"") == (200, "text/plain", b"abc")
    assert CONNECTOR.webhook_handshake({}, {}, b'{"value": []}') is None


def test_poll_subscribes_through_the_handshake_and_notifications_become_changes(
        subscribed: tuple[Company, Endpoint]) -> None:
    company, endpoint = subscribed
    subscriptions = company.table("subscriptions")
    assert sorted(s["resource"].rsplit("/", 1)[1] for s in subscriptions) == sorted(
        company.ctx.settings_as(BusinessCentralSettings).subscribe_to)
    assert company.sandbox.subscriptions.handshakes == len(subscriptions)
    customer = _customer(company)
    bc_id = company.refs.external_id(customer.id, "business_central")
    net30 = next(t["id"] for t in company.table("paymentTerms") if t["code"] == "NET30")
    company.sandbox.edit("customers", str(bc_id), {"paymentTermsId": net30})  # the ERP's own change
    events = endpoint.wait(lambda found: any(e.type == "customers.updated" for e in found))
    [updated] = [e for e in events if e.type == "customers.updated"][-1:]
    [change] = CONNECTOR.to_canonical(company.ctx, updated, company.refs)
    assert change.entity.id == customer.id and change.groups == ("financial",)
    assert isinstance(change.entity, Customer) and change.entity.dimensions["terms"] == "NET30"
    polled = _poll(company).events
    assert updated.source_event_id in {e.source_event_id for e in polled}  # the inbox drops the second


def test_notifications_without_the_client_state_are_refused(company: Company) -> None:
    documented = json.dumps(documented_notification()).encode()  # clientState "someClientState"
    with pytest.raises(SignatureError):
        CONNECTOR.verify_webhook(company.with_settings(client_state=CLIENT_STATE), {}, documented)
    with pytest.raises(SignatureError):  # nothing configured: nothing can be verified
        CONNECTOR.verify_webhook(company.ctx, {}, documented)
    CONNECTOR.verify_webhook(company.with_settings(client_state="x", previous_client_state="someClientState"), {},
                             documented)


def test_collection_notification_lists_every_change_since_its_window(subscribed: tuple[Company, Endpoint]) -> None:
    company, endpoint = subscribed
    company.sandbox.subscriptions.delay_s = 60  # gather until flushed
    made = [_customer(company, n) for n in (1, 2, 3)]
    company.sandbox.subscriptions.flush(collection=True)
    events = endpoint.wait(lambda found: any(e.type == "customers.collection" for e in found))
    [collection] = [e for e in events if e.type == "customers.collection"]
    changes = CONNECTOR.to_canonical(company.ctx, collection, company.refs)
    assert {c.entity.id for c in changes} == {customer.id for customer in made}


def test_poll_renews_a_subscription_before_it_expires_with_if_match(subscribed: tuple[Company, Endpoint]) -> None:
    company, _ = subscribed
    before = {s["subscriptionId"]: s["expirationDateTime"] for s in company.table("subscriptions")}
    company.clock.offset = LIFETIME_S - 3600  # within renew_before_s (a day) of expiry
    CONNECTOR.poll(company.ctx, None)
    after = {s["subscriptionId"]: s["expirationDateTime"] for s in company.table("subscriptions")}
    assert after.keys() == before.keys() and all(after[k] > before[k] for k in before)
    patched = [path for method, path in company.sandbox.requests if method == "PATCH"]
    assert len(patched) == len(before) and all(path.startswith("subscriptions(") for path in patched)  # If-Match:
    # the sandbox refuses a PATCH without it
    company.clock.offset = LIFETIME_S + 3600  # renewed: still there after the first three days
    assert {s["subscriptionId"] for s in company.table("subscriptions")} == before.keys()


def test_the_hubs_own_write_read_back_before_it_is_recorded_is_transient(company: Company) -> None:
    """An invoice and a customer the hub made, read back (a notification, a poll) before the hub
    recorded their ids, are not new records born in Business Central: transient, then the hub's."""
    customer = _customer(company)
    invoice = _invoice(customer)
    [booked] = [CONNECTOR.execute(company.ctx, op, f"key-{op.name}")
                for op in CONNECTOR.plan(company.ctx, _event("invoice.issued", invoice), company.refs)]
    record = carrying("salesInvoices", CONNECTOR.fetch(company.ctx, "invoice", booked.external_id))
    unrecorded = MemoryRefs()
    unrecorded.put(customer.id, "customer", "business_central", str(company.refs.external_id(customer.id,
                                                                                            "business_central")))
    with pytest.raises(ConnectorError) as early:
        CONNECTOR.to_canonical(company.ctx, record, unrecorded)
    assert early.value.category is Category.TRANSIENT
    made = carrying("customers", CONNECTOR.fetch(company.ctx, "customer", str(
        company.refs.external_id(customer.id, "business_central"))))
    with pytest.raises(ConnectorError):
        CONNECTOR.to_canonical(company.ctx, made, MemoryRefs())
    company.refs.put(invoice.id, "invoice", "business_central", booked.external_id)  # the delivery's commit
    [posted] = CONNECTOR.to_canonical(company.ctx, record, company.refs)
    assert posted.type == "invoice.posted" and posted.entity.id == invoice.id


def test_polling_catches_what_no_notification_told(company: Company) -> None:
    customer = _customer(company)
    invoice = _invoice(customer)
    company.deliver(_event("invoice.issued", invoice))
    first = _poll(company)
    posted = [e for e in first.events if e.type == "salesInvoices.changed"]
    [change] = CONNECTOR.to_canonical(company.ctx, posted[0], company.refs)
    assert change.type == "invoice.posted" and change.groups == ("posting",) and change.entity.id == invoice.id
    assert _poll(company, first.cursor).events == []
    company.sandbox.edit("customers", str(company.refs.external_id(customer.id, "business_central")),
                         {"email": "changed@example.com"})
    assert [e.type for e in _poll(company, first.cursor).events] == ["customers.changed"]


def test_polling_pages_through_records_modified_together_by_their_bare_guids(company: Company) -> None:
    """Records modified in the same millisecond are told apart by ``id gt <guid>``, unquoted: the
    sandbox, like Business Central, refuses a GUID compared with a string."""
    company.ctx = company.with_settings(poll_page_size=2)
    first = _poll(company)
    ids = [str(e.payload["record"]["id"]) for e in first.events]
    cursor = first.cursor
    while True:
        page = _poll(company, cursor)
        ids += [str(e.payload["record"]["id"]) for e in page.events]
        cursor = page.cursor
        if not page.has_more:
            break
    every = [record["id"] for name in STREAMS if name != "customerPayments" for record in company.table(name)]
    assert sorted(ids) == sorted(every) and len(set(ids)) == len(ids)


def test_a_cursor_from_before_bare_guids_still_reads_and_a_forged_one_is_refused(company: Company) -> None:
    customer = _customer(company)
    old = json.dumps({"customers": {"modified": "2000-01-01T00:00:00.000Z", "id": ""}})
    polled = _poll(company, old).events
    assert company.refs.external_id(customer.id, "business_central") in [e.payload["record"]["id"] for e in polled]
    forged = json.dumps({"customers": {"modified": "2000-01-01T00:00:00.000Z", "id": "x' or id ne 'y"}})
    with pytest.raises(ConnectorError) as refused:
        _poll(company, forged)
    assert refused.value.category is Category.DATA


def test_payment_entered_in_business_central_is_a_settled_payment(company: Company) -> None:
    customer = _customer(company)
    invoice = _invoice(customer)
    company.deliver(_event("invoice.issued", invoice))
    journal = next(j["id"] for j in company.table("customerPaymentJournals"))
    api = company.api()
    api.request("POST", api.company(f"/customerPaymentJournals({journal})/customerPayments"), body={
        "customerId": company.refs.external_id(customer.id, "business_central"), "amount": 20.5,
        "appliesToInvoiceId": company.refs.external_id(invoice.id, "business_central"), "documentNumber": "RCPT-1"})
    polled = [e for e in _poll(company).events if e.type == "customerPayments.changed"]
    [change] = CONNECTOR.to_canonical(company.ctx, polled[0], company.refs)
    assert change.type == "payment.settled" and isinstance(change.entity, Payment)
    assert change.entity.amount == money(2050, "USD")
    assert [a.invoice_id for a in change.entity.applications] == [invoice.id]


def test_a_notification_about_another_company_is_acknowledged_and_dropped(sandbox_server: SandboxFactory,
                                                                        stub_hub: HubFactory) -> None:
    """Authentic (our client state) but not ours: the batch is answered 200, so Business Central
    neither retries it nor deletes the subscription, and only our company's notification is an event."""
    sandbox = BusinessCentralSandbox()
    running = sandbox_server(sandbox)
    hub = stub_hub({"business_central": {**running.settings(), "client_state": CLIENT_STATE}})
    demo = demo_id("customers", "10000")
    ours, theirs = (dict(documented_notification()["value"][1], clientState=CLIENT_STATE,
                         resource=f"api/v2.0/companies({company})/customers({demo})")
                    for company in (sandbox.company_id.upper(), "11111111-2222-3333-4444-555555555555"))
    theirs["lastModifiedDateTime"] = "2026-03-02T10:00:00.000Z"  # another change, another event id
    body = json.dumps({"value": [theirs, ours]}).encode()
    answer = hub.webhook("business_central", body, {"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    ctx = hub.runtime.connectors["business_central"].ctx
    [event] = CONNECTOR.parse_webhook(ctx, {}, body)
    assert event.payload["notification"]["resource"] == ours["resource"]
    alone = json.dumps({"value": [theirs]}).encode()
    assert hub.webhook("business_central", alone, {"content-type": "application/json"}).status_code == 200
    assert CONNECTOR.parse_webhook(ctx, {}, alone) == []


def test_the_hub_admits_a_notification_and_refuses_a_forged_one(sandbox_server: SandboxFactory,
                                                                stub_hub: HubFactory) -> None:
    sandbox = BusinessCentralSandbox()
    running = sandbox_server(sandbox)
    hub = stub_hub({"business_central": {**running.settings(), "client_state": CLIENT_STATE}})
    notification = documented_notification()["value"][1]
    demo = demo_id("customers", "10000")
    notification.update(clientState=CLIENT_STATE,
                        resource=f"api/v2.0/companies({sandbox.company_id})/customers({demo})")
    body = json.dumps({"value": [notification]}).encode()
    answer = hub.webhook("business_central", body, {"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    [event] = CONNECTOR.parse_webhook(hub.runtime.connectors["business_central"].ctx, {}, body)
    assert hub.store.inbox_get("business_central", event.source_event_id) is not None
    hub.settle(lambda: hub.store.xref_find("customer", "business_central", demo) is not None)
    forged = hub.webhook("business_central", body.replace(CLIENT_STATE.encode(), b"guessed"),
                         {"content-type": "application/json"})
    assert forged.status_code == 401


def test_the_hub_books_a_stripe_customer_and_invoice_into_business_central(stub_hub: HubFactory) -> None:
    from crossledger.devtools.sandboxes import SandboxSet
    from crossledger.plugins import load_plugins

    sandboxes = SandboxSet(load_plugins().connectors, ["stripe", "business_central"])
    server = ServerThread(sandboxes.app).start()
    try:
        port = free_port()
        sandboxes.subscribe(f"http://127.0.0.1:{port}")  # before config: Stripe's signing secret comes with it
        connectors = sandboxes.config(server.url)
        hub = stub_hub(connectors, port=port, poll_interval_s=0.3)
        stripe = httpx.Client(base_url=connectors["stripe"]["base_url"], auth=(connectors["stripe"]["api_key"], ""))
        customer = stripe.post("/v1/customers", data={"name": "Acme Ltd", "email": "acme@example.com"}).json()
        stripe.post("/v1/invoiceitems", data={"customer": customer["id"], "amount": 1500, "currency": "usd",
                                              "description": "Pro plan"})
        invoice = stripe.post("/v1/invoices", data={"customer": customer["id"], "collection_method": "send_invoice",
                                                    "days_until_due": 30}).json()
        stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        erp = sandboxes.sandboxes["business_central"]
        hub.settle(lambda: any(i["status"] == "Open" for i in erp.state()["salesInvoices"]))
        [booked] = erp.state()["salesInvoices"]
        assert booked["totalAmountIncludingTax"] == 15 and booked["customerName"] == "Acme Ltd"
        assert hub.store.dlq_count("open") == 0
        # The poll subscribed the hub through its webhook endpoint: Business Central's validation
        # handshake was answered by the hub itself.
        hub.settle(lambda: bool(erp.state()["subscriptions"]))
        assert {s["notificationUrl"] for s in erp.state()["subscriptions"]} == {
            f"http://127.0.0.1:{port}/webhooks/business_central"}
    finally:
        server.stop()


# -- reconciliation -------------------------------------------------------------------------------


def test_records_project_posted_documents_and_leave_a_voids_corrective_memo_out(company: Company) -> None:
    customer = _customer(company)
    kept, voided = _invoice(customer, 1), _invoice(customer, 2, cents=900)
    for invoice in (kept, voided):
        company.deliver(_event("invoice.issued", invoice))
    company.deliver(_event("invoice.voided", voided))
    paid = Payment(id="payment/stripe/py_1", customer_id=customer.id, amount=money(2_050, "USD"), received_at=AT,
                   applications=[PaymentApplication(invoice_id=kept.id, amount=money(2_050, "USD"))])
    company.deliver(_event("payment.settled", paid))

    def projected(entity_type: str) -> dict[str, Any]:
        return {record["id"]: CONNECTOR.project(entity_type, record)
                for record in CONNECTOR.records(company.ctx, entity_type, page_size=1)}

    invoices = projected("invoice")
    ours = {company.refs.external_id(invoice.id, "business_central"): invoice for invoice in (kept, voided)}
    # The payment is a journal line until finance posts it: neither remaining amount nor status is read.
    assert {ours[record_id].id: p.values for record_id, p in invoices.items() if record_id in ours} == {
        kept.id: {"currency": "USD", "total": 2_050}, voided.id: {"currency": "USD", "total": 950}}
    assert list(projected("creditmemo").values()) == [None]  # the void's corrective memo: not a credit note
    [mine] = [p for p in projected("customer").values() if p is not None and p.values["name"] == "Customer 1"]
    assert mine.values == {"name": "Customer 1", "email": "c1@example.com", "currency": "USD"} and mine.mark is None
    assert "payment" not in CONNECTOR.lists  # a journal line until posted, then gone from the API


def test_a_page_lists_what_changed_since_by_last_modified_date_time_and_follows_its_next_link(
    company: Company
) -> None:
    """``since`` is ``$filter=lastModifiedDateTime ge ...``: a customer made or edited at or after it
    is listed, one untouched since is not; a page's cursor is its ``@odata.nextLink``, which
    carries the filter on to the page after it."""
    old = [_customer(company, n) for n in range(1, 4)]
    company.clock.offset += 5
    since = datetime.fromtimestamp(company.clock(), UTC)
    company.clock.offset += 1
    made = _customer(company, 7)
    company.deliver(_event("customer.upserted", msgspec.structs.replace(old[0], name="Renamed"), 9))

    def names(records: list[dict[str, Any]]) -> set[str]:
        return {record["displayName"] for record in records}

    first = CONNECTOR.records_page(company.ctx, "customer", since=since, page_size=1)
    second = CONNECTOR.records_page(company.ctx, "customer", since=since, page_size=1, cursor=first.next)
    assert names(CONNECTOR.records_page(company.ctx, "customer", since=since).records) == {"Renamed", made.name}
    assert names(first.records) | names(second.records) == {"Renamed", made.name} and second.next is None
    assert {"Renamed", "Customer 2", "Customer 3", made.name} <= names(
        list(CONNECTOR.records(company.ctx, "customer", page_size=2)))
