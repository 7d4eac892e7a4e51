"""Polling NetSuite: SuiteQL finds what changed, the record service says what it is, and the cursor
neither repeats nor misses a change. Each test has its own account, served on loopback, whose clock
the test moves, so "the same second" and "a second later" are exact; the account routes invoices
for approval, so a NetSuite user posts them."""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import msgspec
import pytest
from crossledger.canonical.entities import Customer, Entity, Invoice, InvoiceLine, Payment, PaymentApplication
from crossledger.canonical.events import new_envelope
from crossledger.canonical.money import Money, money
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.netsuite.connector import NetSuiteConnector, NetSuiteSettings
from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox
from crossledger.plugins.netsuite.sandbox.user import NetSuiteUser
from crossledger.plugins.types import Change, Context, InboundEvent
from crossledger.testing.refs import MemoryRefs

NETSUITE = NetSuiteConnector()
ISSUED = datetime(2024, 3, 1, tzinfo=UTC)
MAX_POLLS = 20


class Clock:
    """Time that moves only when the test says so (started at the real time: TBA checks it)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


@dataclass
class Account:
    """One NetSuite account, the hub's view of it, and one of its users."""

    clock: Clock
    ctx: Context
    refs: MemoryRefs
    user: NetSuiteUser

    def deliver(self, event_type: str, entity: Entity) -> str:
        """Plan and execute as the hub does, remembering the cross-reference; the NetSuite id."""
        event = new_envelope(type=event_type, source="stripe", source_event_id=uuid.uuid4().hex, data=entity,
                             occurred_at=ISSUED)
        outcome = None
        for op in NETSUITE.plan(self.ctx, event, self.refs):
            outcome = NETSUITE.execute(self.ctx, op, "key")
            self.refs.put(op.canonical_id, op.entity_type, "netsuite", outcome.external_id)
        assert outcome is not None
        return outcome.external_id

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str]:
        """Poll until NetSuite has no more: every event, and the cursor to go on from."""
        events: list[InboundEvent] = []
        for _ in range(MAX_POLLS):
            result = NETSUITE.poll(self.ctx, cursor)
            events += result.events
            assert result.cursor is not None
            cursor = result.cursor
            if not result.has_more:
                return events, cursor
        raise AssertionError(f"still more to read after {MAX_POLLS} polls: the cursor does not advance")

    def today(self) -> datetime:
        """Midnight (UTC) of the account's day: a transaction's date when nobody gives one."""
        return datetime.fromtimestamp(self.clock(), UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def changes(self, event: InboundEvent, refs: MemoryRefs | None = None) -> list[Change]:
        return NETSUITE.to_canonical(self.ctx, event, refs or self.refs)


@pytest.fixture
def account() -> Iterator[Account]:
    clock = Clock()
    sandbox = NetSuiteSandbox(clock=clock, approval_routing=True)
    server = ServerThread(sandbox.app).start()
    settings = NetSuiteSettings(**sandbox.connector_settings(server.url), poll_settle_s=0, poll_page_size=3)
    with httpx.Client() as http, NetSuiteUser(settings) as user:
        yield Account(clock, Context(settings=settings, http=http, clock=clock), MemoryRefs(), user)
    server.stop()


ACME = Customer(id="customer/stripe/cus_acme", name="Acme", currency="USD")


def bill(number: str, cents: int) -> Invoice:
    return Invoice(id=f"invoice/stripe/in_{number}", customer_id=ACME.id, number=number, currency="USD",
                   lines=[InvoiceLine(description="Pro plan", amount=money(cents, "USD"))], tax=money(0, "USD"),
                   discount=money(0, "USD"), total=money(cents, "USD"), status="issued", issued_at=ISSUED)


def of_type(events: list[InboundEvent], event_type: str) -> list[InboundEvent]:
    return [event for event in events if event.type == event_type]


def test_an_invoice_posted_in_netsuite_is_announced_once(account: Account) -> None:
    account.deliver("customer.upserted", ACME)
    invoice = bill("INV-1", 10500)
    invoice_id = account.deliver("invoice.issued", invoice)
    account.clock.tick()
    pending, cursor = account.poll(None)

    account.user.approve_invoice(invoice_id)
    account.clock.tick()
    posted, cursor = account.poll(cursor)
    account.clock.tick()
    quiet, cursor = account.poll(cursor)
    account.deliver("invoice.issued", invoice)  # a replay rewrites the posted invoice
    account.clock.tick()
    rewritten, _ = account.poll(cursor)

    assert of_type(pending, "invoice.posted") == []  # pending approval: not posted yet
    [event] = of_type(posted, "invoice.posted")
    assert (event.type, event.source_event_id) == ("invoice.posted", f"invoice.posted:{invoice_id}")
    [change] = account.changes(event, MemoryRefs())  # the hub's own invoice, known by its external id
    assert (change.type, change.groups) == ("invoice.posted", ("posting",))
    assert isinstance(change.entity, Invoice)
    assert (change.entity.id, change.entity.posting_status, change.entity.total) == (
        invoice.id, "posted", money(10500, "USD"))
    assert quiet == []
    assert [e.source_event_id for e in of_type(rewritten, "invoice.posted")] == [event.source_event_id]  # deduped


def balances(account: Account, events: list[InboundEvent]) -> list[Money | None]:
    """The open balances the ``customer.balance_moved`` events announce, in order."""
    found = []
    for event in of_type(events, "customer.balance_moved"):
        [change] = account.changes(event)
        assert (change.type, change.groups) == ("customer.upserted", ("financial",))
        assert isinstance(change.entity, Customer) and change.entity.id == ACME.id
        found.append(change.entity.open_balance)
    return found


def test_the_customers_balance_follows_the_transactions_that_move_it(account: Account) -> None:
    """Posting, payments (the hub's too), credits and refunds move the balance without touching the
    customer record: each poll announces the balance of every customer they moved, once."""
    customer_id = account.deliver("customer.upserted", ACME)
    invoice = bill("INV-5", 10000)
    invoice_id = account.deliver("invoice.issued", invoice)
    account.clock.tick()
    _, cursor = account.poll(None)

    account.user.approve_invoice(invoice_id)
    account.deliver("payment.settled", Payment(
        id="payment/stripe/inpay_5", customer_id=ACME.id, amount=money(2500, "USD"),
        applications=[PaymentApplication(invoice_id=invoice.id, amount=money(2500, "USD"))]))
    account.clock.tick()
    posted_and_paid, cursor = account.poll(cursor)
    account.user.enter_payment(customer_id, Decimal("30.00"), {invoice_id: Decimal("30.00")})
    account.clock.tick()
    entered, cursor = account.poll(cursor)
    account.clock.tick()
    quiet, _ = account.poll(cursor)

    assert balances(account, posted_and_paid) == [money(7500, "USD")]  # once for both transactions
    assert balances(account, entered) == [money(4500, "USD")]
    assert quiet == []


def test_changes_sharing_a_second_are_each_read_once_across_pages(account: Account) -> None:
    customer_id = account.deliver("customer.upserted", ACME)
    account.clock.tick()
    _, cursor = account.poll(None)
    entered = [account.user.enter_payment(customer_id, Decimal(n)) for n in range(1, 8)]  # all in one second

    unsettled = NETSUITE.poll(account.ctx, cursor)  # that second is not over yet
    account.clock.tick()
    first = NETSUITE.poll(account.ctx, cursor)  # 3 of the 7
    late = [account.user.enter_payment(customer_id, Decimal(n)) for n in (8, 9)]  # the next second
    account.clock.tick()
    rest, _ = account.poll(first.cursor)

    assert (unsettled.events, unsettled.has_more, unsettled.cursor) == ([], False, cursor)
    assert (len(of_type(first.events, "customerpayment.entered")), first.has_more) == (3, True)
    events = of_type(first.events + rest, "customerpayment.entered")
    ids = [event.payload["record"]["id"] for event in events]
    assert ids == entered + late  # each once, in order
    assert len({event.source_event_id for event in events}) == 9


def test_a_payment_entered_in_netsuite_settles_the_hubs_invoice(account: Account) -> None:
    customer_id = account.deliver("customer.upserted", ACME)
    invoice = bill("INV-2", 10000)
    invoice_id = account.deliver("invoice.issued", invoice)
    account.user.approve_invoice(invoice_id)
    payment_id = account.user.enter_payment(customer_id, Decimal("60.00"), {invoice_id: Decimal("40.25")})
    account.clock.tick()

    events, _ = account.poll(None)

    [event] = of_type(events, "customerpayment.entered")
    stored = msgspec.json.decode(msgspec.json.encode(event), type=InboundEvent)  # as the hub's inbox keeps it
    [change] = account.changes(stored)
    assert change == Change(type="payment.settled", entity=Payment(
        id=f"payment/netsuite/{payment_id}", customer_id=ACME.id, amount=money(6000, "USD"),
        received_at=account.today(),
        applications=[PaymentApplication(invoice_id=invoice.id, amount=money(4025, "USD"))]))


def test_a_payment_the_hub_wrote_is_not_news(account: Account) -> None:
    account.deliver("customer.upserted", ACME)
    invoice = bill("INV-3", 5000)
    account.user.approve_invoice(account.deliver("invoice.issued", invoice))
    account.deliver("payment.settled", Payment(
        id="payment/stripe/inpay_3", customer_id=ACME.id, amount=money(5000, "USD"),
        applications=[PaymentApplication(invoice_id=invoice.id, amount=money(5000, "USD"))]))
    account.clock.tick()

    events, _ = account.poll(None)

    assert "customerpayment.entered" not in [event.type for event in events]  # its balance is news, though
    assert balances(account, events) == [money(0, "USD")]


def test_a_terms_change_is_a_financial_change_of_the_customer(account: Account) -> None:
    customer_id = account.deliver("customer.upserted", ACME)
    account.user.approve_invoice(account.deliver("invoice.issued", bill("INV-4", 12345)))
    account.user.enter_payment(customer_id, Decimal("23.45"))
    account.clock.tick()
    _, cursor = account.poll(None)

    account.user.set_terms(customer_id, "2")
    account.clock.tick()
    events, _ = account.poll(cursor)

    [event] = events
    [change] = account.changes(event, MemoryRefs())  # recognised by its external id alone
    assert (change.type, change.groups) == ("customer.upserted", ("financial",))
    assert isinstance(change.entity, Customer)
    assert (change.entity.id, change.entity.dimensions, change.entity.open_balance) == (
        ACME.id, {"terms": "2", "subsidiary": "1"}, money(10000, "USD"))
    account.user.set_terms(customer_id, "3")
    assert NETSUITE.refetch(account.ctx, event).payload["record"]["terms"]["id"] == "3"


def test_a_damaged_cursor_is_a_data_error(account: Account) -> None:
    with pytest.raises(ConnectorError, match="cursor") as error:
        NETSUITE.poll(account.ctx, '{"customer": {"modified": "yesterday", "id": 1}, "transaction": null}')

    assert error.value.category is Category.DATA
