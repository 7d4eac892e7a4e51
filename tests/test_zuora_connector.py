"""The Zuora connector over real HTTP on loopback against the Zuora sandbox: OAuth tokens fetched
once, refreshed before they expire and replaced when revoked; ``success: false`` on HTTP 200 and
429 with Retry-After classified; callouts authenticated (401 through the hub when they are not),
mapped from the objects they name as Zuora has them now, whatever their order or repeats; accounts
upserted by the hub-id custom field; and a callout travelling through a hub to NetSuite."""

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from crossledger.canonical.entities import CreditMemo, Customer, Invoice, Payment, Refund, Subscription
from crossledger.canonical.events import new_envelope
from crossledger.canonical.money import Money
from crossledger.plugins.errors import Category, ConnectorError, SignatureError
from crossledger.plugins.types import Context, Operation
from crossledger.plugins.zuora import callout
from crossledger.plugins.zuora.client import ZuoraApi
from crossledger.plugins.zuora.connector import ZuoraConnector
from crossledger.plugins.zuora.outbound import CREATE, UPDATE
from crossledger.plugins.zuora.sandbox.app import HMAC_HEADER, ZuoraSandbox
from crossledger.plugins.zuora.sandbox.catalog import catalog_id
from crossledger.plugins.zuora.sandbox.orders import place_order
from crossledger.testing.hub import HubFactory
from crossledger.testing.refs import MemoryRefs
from crossledger.testing.sandboxes import RunningSandbox, SandboxFactory

from tests.kits.zuora import SUSPEND, UPGRADE_AND_RENEWAL, fixture, order, seed

CONNECTOR = ZuoraConnector()


class Clock:
    """A clock the test moves, for the connector and the sandbox alike."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def context(running: RunningSandbox, clock: Any = time.time, **overrides: Any) -> Context:
    settings = CONNECTOR.settings_model.model_validate({**running.settings(), "timeout_s": 5.0, **overrides})
    return Context(settings=settings, http=httpx.Client(timeout=10), clock=clock)


def served(sandbox_server: SandboxFactory) -> tuple[RunningSandbox, ZuoraSandbox]:
    sandbox = ZuoraSandbox()
    return sandbox_server(sandbox), sandbox


def control(running: RunningSandbox, path: str, **command: Any) -> None:
    running.control.post(f"{running.url}/_sandbox/{path}", json=command).raise_for_status()


def signed(sandbox: ZuoraSandbox, body: bytes) -> dict[str, str]:
    """The headers the sandbox's callouts carry: the body's HMAC and HTTP Basic."""
    return {HMAC_HEADER: callout.sign(sandbox.hmac_key, body), "Content-Type": "application/json",
            "Authorization": callout.basic_header(sandbox.callout_username, sandbox.callout_password)}


def test_a_token_is_fetched_once_and_refreshed_before_it_expires(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    account = seed(sandbox)["account"]
    clock = Clock()
    ctx = context(running, clock)
    CONNECTOR.fetch(ctx, "customer", account)
    CONNECTOR.fetch(ctx, "customer", account)
    assert sandbox.tokens_issued == 1
    # 30 s before the token expires (inside the 60 s refresh margin) the connector takes a new one,
    # although the sandbox would still take the old one.
    clock.offset += 3600 - 30
    control(running, "clock", advance_s=3600 - 30)
    CONNECTOR.fetch(ctx, "customer", account)
    assert sandbox.tokens_issued == 2
    clock.offset += 3600
    control(running, "clock", advance_s=3600)
    assert CONNECTOR.fetch(ctx, "customer", account)["basicInfo"]["id"] == account
    assert sandbox.tokens_issued == 3


def test_a_revoked_token_is_replaced_once(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    account = seed(sandbox)["account"]
    ctx = context(running)
    CONNECTOR.fetch(ctx, "customer", account)
    control(running, "tokens", revoke=True)
    assert CONNECTOR.fetch(ctx, "customer", account)["basicInfo"]["id"] == account
    assert sandbox.tokens_issued == 2


def test_a_wrong_client_secret_is_an_auth_error(sandbox_server: SandboxFactory) -> None:
    running = sandbox_server("zuora")
    with pytest.raises(ConnectorError) as raised:
        CONNECTOR.fetch(context(running, client_secret="not-the-secret"), "customer", "A00000001")
    assert raised.value.category is Category.AUTH and raised.value.status == 401


def test_success_false_on_http_200_is_read_and_classified_by_its_code(sandbox_server: SandboxFactory) -> None:
    running, _ = served(sandbox_server)
    ctx = context(running)
    api = ZuoraApi(ctx.settings, ctx.http)  # type: ignore[arg-type]
    with pytest.raises(ConnectorError) as raised:
        api.call("POST", "/v1/accounts", body={"name": "No currency", "billToContact": {"lastName": "X"}})
    failure = CONNECTOR.classify(raised.value)
    assert (failure.category, failure.status) == (Category.DATA, 200)
    assert "50000022" in failure.message and "may not be null" not in failure.message  # codes, never messages
    with pytest.raises(ConnectorError) as missing:
        CONNECTOR.fetch(ctx, "customer", "A99999999")
    assert missing.value.category is Category.DATA and "50000040" in missing.value.message


def test_the_rate_limit_is_rate_limited_with_retry_after(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    account = seed(sandbox)["account"]
    ctx = context(running)
    control(running, "limits", per_minute=1)
    CONNECTOR.fetch(ctx, "customer", account)
    with pytest.raises(ConnectorError) as raised:
        CONNECTOR.fetch(ctx, "customer", account)
    failure = CONNECTOR.classify(raised.value)
    assert failure.category is Category.RATE_LIMITED and failure.status == 429
    assert failure.retry_after is not None and 1 <= failure.retry_after <= 60


def test_the_concurrent_request_limit_is_rate_limited_with_zuoras_retry_after(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    account = seed(sandbox)["account"]
    ctx = context(running)
    CONNECTOR.fetch(ctx, "customer", account)  # a token first: the limit counts API requests only
    control(running, "limits", concurrent=0)
    with pytest.raises(ConnectorError) as raised:
        CONNECTOR.fetch(ctx, "customer", account)
    failure = CONNECTOR.classify(raised.value)
    assert (failure.category, failure.status, failure.retry_after) == (Category.RATE_LIMITED, 429, 120)


def test_callouts_pass_with_basic_auth_and_the_hmac_and_fail_without_either(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    seed(sandbox)
    body = sandbox.callout_bodies()[0]
    ctx = context(running)
    CONNECTOR.verify_webhook(ctx, signed(sandbox, body), body)
    without_basic = {k: v for k, v in signed(sandbox, body).items() if k != "Authorization"}
    wrong_password = {**signed(sandbox, body), "Authorization": callout.basic_header(sandbox.callout_username, "x")}
    for headers in (without_basic, wrong_password, {"Authorization": signed(sandbox, body)["Authorization"]}):
        with pytest.raises(SignatureError):
            CONNECTOR.verify_webhook(ctx, headers, body)
    basic_only = context(running, hmac_key=None)
    CONNECTOR.verify_webhook(basic_only, {"Authorization": signed(sandbox, body)["Authorization"]}, body)
    with pytest.raises(SignatureError, match="no callout authentication"):
        CONNECTOR.verify_webhook(context(running, hmac_key=None, callout_username=None), {}, body)


def test_callouts_map_from_the_objects_as_zuora_has_them_now(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    ids = seed(sandbox)
    ctx, refs = context(running), MemoryRefs()
    changes = [change for body in sandbox.callout_bodies()
               for event in CONNECTOR.parse_webhook(ctx, {}, body)
               for change in CONNECTOR.to_canonical(ctx, event, refs)]
    assert [change.type for change in changes] == ["customer.upserted", "invoice.issued", "payment.settled",
                                                   "credit_memo.issued", "refund.issued"]
    customer, invoice, payment, memo, refund = (change.entity for change in changes)
    assert isinstance(customer, Customer) and (customer.name, customer.currency) == ("Amy Lawrence account", "USD")
    assert isinstance(invoice, Invoice)
    assert [(line.description, line.amount.amount) for line in invoice.lines] == [("Pro plan", 10000)]
    assert (invoice.tax.amount, invoice.total.amount, invoice.currency) == (825, 10825, "USD")
    assert invoice.status == "paid"  # read after the payment that settled it, not as the callout found it
    assert invoice.customer_id == customer.id == refs.canonical_id("customer", "zuora", ids["account"])
    assert isinstance(payment, Payment) and payment.amount.amount == 10825
    assert [(a.invoice_id, a.amount.amount) for a in payment.applications] == [(invoice.id, 10825)]
    assert isinstance(memo, CreditMemo) and memo.invoice_id == invoice.id
    assert (memo.amount.amount, memo.credited_total.amount, memo.applied, memo.reason) == (
        2000, 10825, Money(amount=0, currency="USD"), "Service issue")  # the invoice was paid: nothing applied
    assert isinstance(refund, Refund) and (refund.amount.amount, refund.paid_total.amount, refund.status) == (
        2000, 2000, "succeeded")
    assert (refund.credit_memo_id, refund.invoice_id, refund.payment_id) == (memo.id, invoice.id, None)
    assert refund.id == refs.canonical_id("refund", "zuora", ids["refund"])


def test_repeated_and_out_of_order_callouts_keep_their_ids_and_map_to_the_current_account(
        sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    created = sandbox.apply(lambda tenant: tenant.create_account(
        {"name": "First", "currency": "JPY", "billToContact": {"firstName": "A", "lastName": "B"}}))
    sandbox.apply(lambda tenant: tenant.update_account(created["accountId"], {"name": "Second"}))
    ctx, refs = context(running), MemoryRefs()
    first, second = (CONNECTOR.parse_webhook(ctx, {}, body)[0] for body in sandbox.callout_bodies())
    assert first.source_event_id != second.source_event_id  # two versions of the account, two events
    [again] = CONNECTOR.parse_webhook(ctx, {}, sandbox.callout_bodies()[0])
    assert again.source_event_id == first.source_event_id  # a repeat is the same event: the hub drops it
    for event in (second, first):  # late first: it still says what Zuora holds now
        [change] = CONNECTOR.to_canonical(ctx, event, refs)
        assert isinstance(change.entity, Customer) and change.entity.name == "Second"
        assert change.entity.currency == "JPY"
    refetched = CONNECTOR.refetch(ctx, first)
    assert refetched.source_event_id == first.source_event_id
    assert refetched.payload["object"]["basicInfo"]["name"] == "Second"


def test_yen_amounts_are_whole_minor_units(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    account = sandbox.apply(lambda tenant: tenant.create_account(
        {"name": "Tokyo", "currency": "JPY", "billToContact": {"firstName": "A", "lastName": "B"}}))["accountId"]
    sandbox.apply(lambda tenant: tenant.create_invoice({
        "accountId": account, "invoiceDate": "2026-01-05", "status": "Posted",
        "invoiceItems": [{"amount": 1500, "serviceStartDate": "2026-01-05"}]}))
    ctx = context(running)
    event = CONNECTOR.parse_webhook(ctx, {}, sandbox.callout_bodies()[-1])[0]
    [change] = CONNECTOR.to_canonical(ctx, event, MemoryRefs())
    assert isinstance(change.entity, Invoice) and (change.entity.total.amount, change.entity.currency) == (1500, "JPY")


def test_an_account_the_hub_made_is_found_by_its_custom_field_and_updated(sandbox_server: SandboxFactory) -> None:
    running = sandbox_server("zuora")
    ctx = context(running)
    customer = Customer(id="customer/salesforce/001A", name="Acme Ltd", email="ap@acme.test", currency="EUR")
    event = new_envelope(type="customer.upserted", source="salesforce", source_event_id="e1", data=customer,
                         occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    [create] = CONNECTOR.plan(ctx, event, MemoryRefs())
    assert create.name == CREATE
    made = CONNECTOR.execute(ctx, create, "key-1")
    # The answer was lost: the hub never stored the Zuora id, and plans again with no cross-reference.
    [update] = CONNECTOR.plan(ctx, event, MemoryRefs())
    assert (update.name, update.payload["method"]) == (UPDATE, "PUT")
    assert CONNECTOR.execute(ctx, update, "key-2").external_id == made.external_id
    [account] = running.state()["accounts"]
    assert (account["CrossledgerId__c"], account["currency"], account["name"]) == (customer.id, "EUR", "Acme Ltd")


def test_a_probe_finds_an_update_landed_only_when_it_holds_every_field_it_wrote(
        sandbox_server: SandboxFactory) -> None:
    """An update that timed out is sent again unless the account holds all it wrote: a changed email
    alone (the name as it was) is not there yet."""
    running = sandbox_server("zuora")
    ctx = context(running)
    customer = Customer(id="customer/salesforce/001P", name="Probe Ltd", email="ap@probe.test", currency="USD")

    def planned(email: str) -> Operation:
        event = new_envelope(type="customer.upserted", source="salesforce", source_event_id=email,
                             data=msgspec.structs.replace(customer, email=email),
                             occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
        [op] = CONNECTOR.plan(ctx, event, MemoryRefs())
        return op

    CONNECTOR.execute(ctx, planned("ap@probe.test"), "key-made")
    update = planned("billing@probe.test")
    assert update.name == UPDATE
    assert CONNECTOR.probe(ctx, update, "key-update") is None
    CONNECTOR.execute(ctx, update, "key-update")
    landed = CONNECTOR.probe(ctx, update, "key-update")
    assert landed is not None and landed.external_id == update.payload["path"].rsplit("/", 1)[-1]


def test_a_callout_reaches_netsuite_through_the_hub(sandbox_server: SandboxFactory, stub_hub: HubFactory) -> None:
    zuora, sandbox = served(sandbox_server)
    netsuite = sandbox_server("netsuite")
    hub = stub_hub({"zuora": zuora.settings(), "netsuite": {**netsuite.settings(), "timeout_s": 2.0}},
                   routes={"customer.linked": []})
    sandbox.subscribe(f"{hub.url}/webhooks/zuora")
    sandbox.apply(lambda tenant: tenant.create_account(
        {"name": "Callout Co", "currency": "USD", "billToContact": {"firstName": "C", "lastName": "Co"}}))
    hub.settle(lambda: len(netsuite.state()["customer"]) == 1, timeout=20)
    [account] = zuora.state()["accounts"]
    canonical = hub.store.xref_find("customer", "zuora", account["id"])
    assert canonical is not None and hub.store.xref_get(canonical, "netsuite") == netsuite.state()["customer"][0]["id"]


def test_a_callout_without_valid_auth_is_refused_401_by_the_hub(sandbox_server: SandboxFactory,
                                                                stub_hub: HubFactory) -> None:
    zuora, sandbox = served(sandbox_server)
    seed(sandbox)
    hub = stub_hub({"zuora": zuora.settings()})
    body = sandbox.callout_bodies()[0]
    assert hub.webhook("zuora", body, {"Content-Type": "application/json"}).status_code == 401
    forged = {**signed(sandbox, body), HMAC_HEADER: callout.sign("not-the-key", body)}
    assert hub.webhook("zuora", body, forged).status_code == 401
    assert hub.webhook("zuora", body, signed(sandbox, body)).status_code == 200
    assert json.loads(body)["eventType"] == "AccountCreated"


@pytest.mark.parametrize(("mode", "category"), [("down", Category.TARGET_DOWN), ("http_500", Category.TRANSIENT)])
def test_server_errors_keep_the_category_their_status_gives(sandbox_server: SandboxFactory, mode: str,
                                                           category: Category) -> None:
    """Zuora's 5xx bodies carry a code too (category 60): the status still decides, so a 503 parks the
    work behind the circuit instead of spending retries."""
    running = sandbox_server("zuora")
    ctx = context(running)
    with pytest.raises(ConnectorError, match="50000040"):  # a token first, so the fault hits the API call
        CONNECTOR.fetch(ctx, "customer", "A00000001")
    running.fault(mode=mode, count=1)
    with pytest.raises(ConnectorError) as raised:
        CONNECTOR.fetch(ctx, "customer", "A00000001")
    assert CONNECTOR.classify(raised.value).category is category


def test_the_upgrade_and_renewal_story_maps_to_one_subscription_in_four_events(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    number = sandbox.apply(lambda tenant: tenant.create_account(fixture("create_account_request")))["accountNumber"]
    subscription: str | None = None
    for action in UPGRADE_AND_RENEWAL:
        body = order(number, action, subscription)
        subscription = sandbox.apply(lambda tenant, body=body: place_order(tenant, body))["subscriptionNumbers"][0]
    ctx, refs = context(running), MemoryRefs()
    events = [CONNECTOR.parse_webhook(ctx, {}, body)[0] for body in sandbox.callout_bodies()[1:]]
    assert len({event.source_event_id for event in events}) == 4
    assert CONNECTOR.refetch(ctx, events[0]).payload["object"]["status"] == "Cancelled"
    changes = [CONNECTOR.to_canonical(ctx, event, refs)[0] for event in events]
    assert [change.type for change in changes] == ["subscription.created", "subscription.amended",
                                                   "subscription.renewed", "subscription.cancelled"]
    entity = changes[0].entity
    assert all(change.entity == entity for change in changes)  # read now: the story is over
    assert isinstance(entity, Subscription)
    assert entity.id == refs.canonical_id("subscription", "zuora", str(subscription))
    assert [(item.plan, item.unit_amount.amount, item.interval) for item in entity.items] == [
        (catalog_id("enterprise"), 25000, "month")]
    assert entity.plan_tier == "enterprise"  # the catalog's Tier__c of the rate plan
    assert (entity.status, entity.contract_term_months) == ("canceled", 12)
    assert (entity.current_period_start, entity.canceled_at) == (datetime(2027, 1, 5, tzinfo=UTC),
                                                                 datetime(2028, 1, 5, tzinfo=UTC))


def test_a_suspended_subscription_is_paused_and_a_resumed_one_active_again(sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    number = sandbox.apply(lambda tenant: tenant.create_account(fixture("create_account_request")))["accountNumber"]
    create = order(number, UPGRADE_AND_RENEWAL[0])
    subscription = sandbox.apply(lambda tenant: place_order(tenant, create))["subscriptionNumbers"][0]
    ctx, refs = context(running), MemoryRefs()

    def after(action: dict[str, object]) -> tuple[str, str]:
        body = order(number, action, subscription)
        sandbox.apply(lambda tenant: place_order(tenant, body))
        [event] = CONNECTOR.parse_webhook(ctx, {}, sandbox.callout_bodies()[-1])
        [change] = CONNECTOR.to_canonical(ctx, event, refs)
        assert isinstance(change.entity, Subscription)
        return change.type, change.entity.status

    assert after(SUSPEND) == ("subscription.amended", "paused")
    assert after({"type": "Resume", "resume": {"resumePolicy": "Today"}}) == ("subscription.amended", "active")


def test_a_page_of_refunds_reads_only_its_own_accounts_in_one_query(sandbox_server: SandboxFactory) -> None:
    """Refunds do not restate their currency: each page reads its refunds' accounts with one Object
    Query request (``id.IN``), however many accounts the tenant has (here 120 besides, three pages'
    worth of Object Query, which listing every account read for each page of refunds)."""
    running, sandbox = served(sandbox_server)
    made = [seed(sandbox) for _ in range(3)]
    for n in range(120):
        sandbox.apply(lambda tenant, n=n: tenant.create_account({**fixture("create_account_request"),
                                                                 "name": f"Without refunds {n}"}))
    sent: list[str] = []
    ctx = context(running)
    ctx.http.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    cursor, listed = None, []
    while True:
        before = len(sent)
        page = CONNECTOR.records_page(ctx, "refund", cursor=cursor, page_size=2)
        queried = [path for path in sent[before:] if path.startswith("/object-query/")]
        assert queried == ["/object-query/accounts"], queried
        listed += page.records
        if page.next is None:
            break
        cursor = page.next
    assert sorted(r["id"] for r in listed) == sorted(ids["refund"] for ids in made)
    assert {r["currency"] for r in listed} == {"USD"}


def test_records_list_every_type_page_by_page_and_project_what_is_in_the_books(
        sandbox_server: SandboxFactory) -> None:
    running, sandbox = served(sandbox_server)
    made = [seed(sandbox) for _ in range(3)]
    connector, ctx = CONNECTOR, context(running)
    kinds = {"customer": "account", "invoice": "invoice", "payment": "payment", "creditmemo": "memo",
             "refund": "refund"}
    for entity_type, seeded in kinds.items():
        listed = list(connector.records(ctx, entity_type, page_size=2))
        assert sorted(record["id"] for record in listed) == sorted(ids[seeded] for ids in made), entity_type
        projected = [connector.project(entity_type, record) for record in listed]
        assert all(projection is not None for projection in projected), entity_type
    invoice = connector.project("invoice", next(iter(connector.records(ctx, "invoice"))))
    assert invoice is not None and invoice.values == {"currency": "USD", "total": 10_825, "amount_remaining": 0,
                                                      "status": "settled"}
    refund = connector.project("refund", next(iter(connector.records(ctx, "refund"))))
    assert refund is not None and refund.values == {"currency": "USD", "total": 2_000}  # the account's currency


def test_a_page_since_a_moment_filters_object_query_by_updated_date_and_lists_v1_documents_in_full(
        sandbox_server: SandboxFactory) -> None:
    """Accounts and invoices changed at or after ``since`` come from Object Query's
    ``filter[]=updatedDate.GT:`` a second before it; one untouched since does not. The v1 lists
    filter by nothing: a payment is listed whatever ``since`` says, page by page (the cursor is the
    page number)."""
    running, sandbox = served(sandbox_server)
    old, other = seed(sandbox), seed(sandbox)
    time.sleep(1.1)  # Zuora stamps whole seconds
    since = datetime.now(UTC)
    new = seed(sandbox)
    ctx = context(running)

    def ids(entity_type: str, **page: Any) -> list[str]:
        return [record["id"] for record in CONNECTOR.records_page(ctx, entity_type, since=since, **page).records]

    assert ids("customer") == [new["account"]] and ids("invoice") == [new["invoice"]]
    first = CONNECTOR.records_page(ctx, "payment", since=since, page_size=2)
    second = CONNECTOR.records_page(ctx, "payment", since=since, page_size=2, cursor=first.next)
    assert (first.next, second.next) == ("2", None)
    assert {r["id"] for r in first.records + second.records} == {old["payment"], other["payment"], new["payment"]}
    assert "payment" not in CONNECTOR.lists_since and "invoice" in CONNECTOR.lists_since
