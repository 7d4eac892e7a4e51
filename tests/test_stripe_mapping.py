"""The Stripe connector's billing mappings: subscriptions, renewals, credit notes and refunds.

Each mapping runs on Stripe's own fixture objects, with the records they name made in the sandbox
(a fixture's invoice or charge id is swapped for one the sandbox holds, since ids cannot be chosen),
and on the events the sandbox emits while a subscription lives, renews and fails, and while money
is credited and refunded. Amounts must come through exact in cents, yen and fils.
"""

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from crossledger.canonical.entities import CreditMemo, Customer, Invoice, Refund, Subscription, SubscriptionItem
from crossledger.canonical.invariants import violations
from crossledger.canonical.money import money
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings
from crossledger.plugins.types import Change, Context, InboundEvent
from crossledger.testing.refs import MemoryRefs

from tests.kits.stripe import RunningStripe, as_event, fixture

connector = StripeConnector()
JAN_1 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
FEB_1 = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
MAR_1 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
DAY = 86_400


@pytest.fixture(scope="module")
def api() -> Iterator[RunningStripe]:
    running = RunningStripe()
    # The product Stripe's fixture prices belong to, so mapping them can read its tier.
    running.client.v1.products.create({"id": "prod_QXg1hqf4jFNsqG", "name": "T-shirt", "metadata": {"tier": "pro"}})
    yield running
    running.close()


@pytest.fixture(scope="module")
def ctx(api: RunningStripe) -> Context:
    return api.context()


@pytest.fixture
def refs() -> MemoryRefs:
    return MemoryRefs()


def delivered(event_type: str, obj: dict[str, Any]) -> InboundEvent:
    """``obj`` as parse_webhook makes it from a Stripe delivery of ``event_type`` (parsing reads
    neither the settings nor the network)."""
    offline = Context(settings=StripeSettings(api_key="sk_test_x", webhook_secret="whsec_x"), http=httpx.Client(),
                      clock=time.time)
    return connector.parse_webhook(offline, {}, as_event(event_type, obj, f"evt_{event_type}"))[0]


def mapped(ctx: Context, refs: MemoryRefs, event: InboundEvent) -> list[Change]:
    """``to_canonical``, with every entity checked against the hub's invariants."""
    changes = connector.to_canonical(ctx, event, refs)
    for change in changes:
        assert violations(change.entity) == [], change
    return changes


def only(changes: list[Change]) -> Change:
    assert len(changes) == 1, changes
    return changes[0]


def with_price(subscription: dict[str, Any], **price: Any) -> dict[str, Any]:
    """The subscription fixture with its one item's price changed."""
    changed = copy.deepcopy(subscription)
    changed["items"]["data"][0]["price"].update(price)
    return changed


# -- subscriptions: Stripe's fixture ----------------------------------------------------------------------


def test_subscription_fixture_maps_to_a_subscription(ctx: Context, refs: MemoryRefs) -> None:
    change = only(mapped(ctx, refs, delivered("customer.subscription.created", fixture("subscription"))))
    assert change.type == "subscription.created"
    assert change.entity == Subscription(
        id="subscription/stripe/sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
        customer_id="customer/stripe/cus_QXg1o8vcGmoR32",
        currency="USD",
        items=[SubscriptionItem(plan="price_1PgafmB7WZ01zgkW6dKueIc5", product="prod_QXg1hqf4jFNsqG", quantity=1,
                                unit_amount=money(2000, "USD"), interval="month", interval_count=1)],
        status="active",
        plan_tier="pro",  # the product's metadata, read from Stripe: the price says nothing
        current_period_start=datetime.fromtimestamp(1896570518, UTC),  # the item's period (API 2025-03-31+)
        current_period_end=datetime.fromtimestamp(976287773, UTC),
        cancel_at_period_end=True,
        canceled_at=datetime.fromtimestamp(1234567890, UTC),
    )


@pytest.mark.parametrize(("event_type", "change_type"), [("customer.subscription.updated", "subscription.amended"),
                                                         ("customer.subscription.deleted", "subscription.cancelled")])
def test_subscription_updates_and_deletions(ctx: Context, refs: MemoryRefs, event_type: str,
                                            change_type: str) -> None:
    status = "past_due" if event_type.endswith("updated") else "canceled"
    change = only(mapped(ctx, refs, delivered(event_type, {**fixture("subscription"), "status": status})))
    assert change.type == change_type
    assert isinstance(change.entity, Subscription) and change.entity.status == status


def test_the_tier_is_the_prices_then_the_products_then_the_lookup_key(api: RunningStripe, ctx: Context,
                                                                      refs: MemoryRefs) -> None:
    def tier(obj: dict[str, Any]) -> str | None:
        entity = only(mapped(ctx, refs, delivered("customer.subscription.updated", obj))).entity
        assert isinstance(entity, Subscription)
        return entity.plan_tier

    subscription = fixture("subscription")
    # A price's own tier wins, and its product is not even read (this one is in no sandbox).
    assert tier(with_price(subscription, metadata={"tier": "enterprise"}, product="prod_unknown")) == "enterprise"
    assert tier(with_price(subscription, lookup_key="pro_monthly")) == "pro"
    plain = api.client.v1.products.create({"name": "Plain"}).id
    assert tier(with_price(subscription, lookup_key="pro_monthly", product=plain)) == "pro_monthly"
    assert tier(with_price(subscription, product=plain)) is None
    expanded = {"id": "prod_x", "object": "product", "metadata": {"tier": "gold"}}
    assert tier(with_price(subscription, product=expanded)) == "gold"
    item = only(mapped(ctx, refs, delivered("customer.subscription.updated",
                                            with_price(subscription, lookup_key="pro_monthly")))).entity
    assert isinstance(item, Subscription) and item.items[0].plan == "pro_monthly"


def test_malformed_subscriptions_are_data_errors(ctx: Context, refs: MemoryRefs) -> None:
    for obj, where in [({**fixture("subscription"), "status": "asleep"}, r"\$.status"),
                       (with_price(fixture("subscription"), recurring=None), r"\$.items.data\[0\].price.recurring"),
                       (with_price(fixture("subscription"), unit_amount=None, metadata={"tier": "x"}),
                        "no whole unit amount")]:
        with pytest.raises(ConnectorError, match=where) as caught:
            connector.to_canonical(ctx, delivered("customer.subscription.created", obj), refs)
        assert caught.value.category is Category.DATA


# -- subscriptions: the sandbox's own events -----------------------------------------------------------------


def test_a_subscriptions_life_in_canonical_events(api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    v1 = api.client.v1
    basic = api.price("Basic", 1500, "jpy", lookup_key="basic_jpy", metadata={"tier": "basic"})
    premium = api.price("Premium", 4800, "jpy", lookup_key="premium_jpy", metadata={"tier": "premium"})
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": basic.id, "quantity": 3}]})
    canonical_id = f"subscription/stripe/{subscription.id}"

    [created] = api.events("customer.subscription.created", subscription.id)
    started = only(mapped(ctx, refs, created)).entity
    assert isinstance(started, Subscription)
    assert (started.id, started.status, started.plan_tier) == (canonical_id, "active", "basic")
    assert started.items == [SubscriptionItem(plan="basic_jpy", product=basic.product, quantity=3,
                                              unit_amount=money(1500, "JPY"), interval="month")]
    assert started.recurring_total() == money(4500, "JPY")
    assert (started.current_period_start, started.current_period_end) == (
        datetime.fromtimestamp(JAN_1, UTC), datetime.fromtimestamp(FEB_1, UTC))

    api.advance(customer, JAN_1 + 10 * DAY)  # 21 of January's 31 days are left
    v1.subscriptions.update(subscription.id, {"items": [{"id": subscription["items"].data[0].id,
                                                         "price": premium.id}]})
    [upgraded] = api.events("customer.subscription.updated", subscription.id)
    amended = only(mapped(ctx, refs, upgraded))
    assert amended.type == "subscription.amended"
    assert isinstance(amended.entity, Subscription) and amended.entity.plan_tier == "premium"
    assert amended.entity.items[0].unit_amount == money(4800, "JPY")

    api.advance(customer, FEB_1 + DAY)
    renewal = v1.subscriptions.retrieve(subscription.id).latest_invoice
    [finalized] = api.events("invoice.finalized", renewal)
    issued, renewed = mapped(ctx, refs, finalized)
    assert (issued.type, renewed.type) == ("invoice.issued", "subscription.renewed")
    assert isinstance(issued.entity, Invoice) and issued.entity.subscription_id == canonical_id
    # 3 × 4800 for February, and January's prorations: -4500 and +14400 times 21/31, rounded to the yen.
    assert issued.entity.total == money(14400 - 3048 + 9755, "JPY")
    assert isinstance(renewed.entity, Subscription) and renewed.entity.id == canonical_id
    assert renewed.entity.current_period_end == datetime.fromtimestamp(MAR_1, UTC)

    v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"}})
    api.advance(customer, MAR_1 + DAY)
    *_, overdue = api.events("customer.subscription.updated", subscription.id)
    assert only(mapped(ctx, refs, overdue)).entity.status == "past_due"  # type: ignore[union-attr]
    v1.subscriptions.cancel(subscription.id)
    [ended] = api.events("customer.subscription.deleted", subscription.id)
    cancelled = only(mapped(ctx, refs, ended))
    assert (cancelled.type, cancelled.entity.status) == ("subscription.cancelled", "canceled")  # type: ignore[union-attr]
    fresh = connector.refetch(ctx, created)
    assert only(mapped(ctx, refs, fresh)).entity.status == "canceled"  # type: ignore[union-attr]


def test_invoices_that_open_or_change_a_subscription_are_no_renewal(api: RunningStripe, ctx: Context,
                                                                    refs: MemoryRefs) -> None:
    price = api.price("Monthly", 1000)
    customer = api.clocked_customer(JAN_1)
    subscription = api.client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    [finalized] = api.events("invoice.finalized", subscription.latest_invoice)
    assert [change.type for change in mapped(ctx, refs, finalized)] == ["invoice.issued"]


# -- credit notes and refunds ------------------------------------------------------------------------------


def test_credit_note_fixture_maps_to_a_credit_memo(api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    invoice, _ = api.paid_by_card(2000)
    # The fixture's pre- and post-payment amounts are placeholders that do not add up to its total:
    # left out, as API versions before them send it, its type (pre_payment) says all of it applies.
    amounts = ("pre_payment_amount", "post_payment_amount")
    note = {**{key: value for key, value in fixture("credit_note").items() if key not in amounts},
            "invoice": invoice.id, "customer": invoice.customer}
    change = only(mapped(ctx, refs, delivered("credit_note.created", note)))
    assert change.type == "credit_memo.issued"
    assert change.entity == CreditMemo(
        id="creditmemo/stripe/cn_1Pgc75B7WZ01zgkWJMPt5riP", customer_id=f"customer/stripe/{invoice.customer}",
        invoice_id=f"invoice/stripe/{invoice.id}", amount=money(1690, "USD"), credited_total=money(2000, "USD"),
        applied=money(1690, "USD"),
        reason=None, issued_at=datetime.fromtimestamp(1234567890, UTC))


def test_refund_fixture_maps_to_a_refund_of_the_invoice_payment(api: RunningStripe, ctx: Context,
                                                                refs: MemoryRefs) -> None:
    invoice, charge = api.paid_by_card(2500)
    [paid] = api.events("invoice_payment.paid", api.client.v1.invoice_payments.list({"invoice": invoice.id}).data[0].id)
    payment = only(mapped(ctx, refs, paid)).entity
    refund = only(mapped(ctx, refs, delivered("refund.created", {**fixture("refund"), "charge": charge.id})))
    assert refund.type == "refund.issued"
    assert refund.entity == Refund(
        id="refund/stripe/re_1Pgc72B7WZ01zgkWqPvrRrPE", customer_id=f"customer/stripe/{invoice.customer}",
        amount=money(100, "USD"), paid_total=money(2500, "USD"), payment_id=payment.id,
        invoice_id=f"invoice/stripe/{invoice.id}", credit_memo_id=None, reason=None, status="succeeded",
        issued_at=datetime.fromtimestamp(1234567890, UTC))


@pytest.mark.parametrize(("currency", "paid", "credited", "refunded"),
                         [("usd", 12_345, 2_345, 1_345), ("jpy", 98_765, 8_765, 765), ("kwd", 12_340, 2_340, 1_230)])
def test_credit_notes_and_their_refunds_keep_exact_amounts(api: RunningStripe, ctx: Context, refs: MemoryRefs,
                                                            currency: str, paid: int, credited: int,
                                                            refunded: int) -> None:
    v1 = api.client.v1
    invoice, charge = api.paid_by_card(paid, currency)
    note = v1.credit_notes.create({"invoice": invoice.id, "amount": credited, "refund_amount": refunded,
                                   "credit_amount": credited - refunded, "reason": "product_unsatisfactory"})
    [created] = api.events("credit_note.created", note.id)
    memo = only(mapped(ctx, refs, created)).entity
    code = currency.upper()
    assert isinstance(memo, CreditMemo)
    assert (memo.amount, memo.credited_total, memo.reason) == (money(credited, code), money(paid, code),
                                                               "product_unsatisfactory")
    assert memo.applied == money(0, code)  # credited after the invoice was paid: none of it settles the invoice
    [refund_created] = api.events("refund.created", note.refunds[0].refund)
    refund = only(mapped(ctx, refs, refund_created)).entity
    assert isinstance(refund, Refund)
    assert (refund.amount, refund.paid_total, refund.credit_memo_id, refund.invoice_id) == (
        money(refunded, code), money(paid, code), memo.id, memo.invoice_id)
    direct = v1.refunds.create({"charge": charge.id, "amount": 5})
    [direct_created] = api.events("refund.created", direct.id)
    plain = only(mapped(ctx, refs, direct_created)).entity
    assert isinstance(plain, Refund)
    assert (plain.amount, plain.credit_memo_id, plain.payment_id) == (money(5, code), None, refund.payment_id)


def test_a_credit_note_is_applied_to_its_invoice_for_what_lowered_the_amount_due(
        api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    """Stripe's ``pre_payment_amount``: a note issued while the invoice is open lowers what it asks
    for, and is applied to it; once the invoice is paid, a note is credited to the customer instead
    (``post_payment_amount``), and none of it is applied to the invoice."""
    v1 = api.client.v1
    customer = v1.customers.create({"name": "Twice credited"})
    v1.invoice_items.create({"customer": customer.id, "amount": 5_000, "currency": "jpy"})
    invoice = v1.invoices.finalize_invoice(v1.invoices.create({"customer": customer.id}).id)
    before = v1.credit_notes.create({"invoice": invoice.id, "amount": 1_234})
    assert v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"}).amount_paid == 3_766
    after = v1.credit_notes.create({"invoice": invoice.id, "amount": 1_000, "credit_amount": 1_000})

    memos = [only(mapped(ctx, refs, event)).entity for note in (before, after)
             for event in api.events("credit_note.created", note.id)]

    assert [(memo.amount, memo.applied) for memo in memos if isinstance(memo, CreditMemo)] == [
        (money(1_234, "JPY"), money(1_234, "JPY")), (money(1_000, "JPY"), money(0, "JPY"))]


def test_each_refund_is_one_refund_issued(api: RunningStripe, ctx: Context, refs: MemoryRefs) -> None:
    _, charge = api.paid_by_card(900)
    api.client.v1.refunds.create({"charge": charge.id, "amount": 400})
    [restated] = api.events("charge.refunded", charge.id)
    assert mapped(ctx, refs, restated) == []  # refund.created carries it, once per refund


def test_a_refund_is_issued_again_when_its_status_changes(api: RunningStripe, ctx: Context,
                                                          refs: MemoryRefs) -> None:
    """A refund created pending is reported again by ``refund.updated`` when it succeeds or fails:
    the same refund (the ERP books only the succeeded one). An update of a refund that succeeded at
    once is the very record ``refund.created`` gave, which the hub does not route twice."""
    _, charge = api.paid_by_card(1200)
    obj = {**fixture("refund"), "charge": charge.id}

    def issued(event_type: str, status: str) -> Refund:
        change = only(mapped(ctx, refs, delivered(event_type, {**obj, "status": status})))
        assert change.type == "refund.issued" and isinstance(change.entity, Refund)
        return change.entity

    pending = issued("refund.created", "pending")
    succeeded, failed = issued("refund.updated", "succeeded"), issued("refund.updated", "failed")
    assert (pending.status, succeeded.status, failed.status) == ("pending", "succeeded", "failed")
    assert pending.id == succeeded.id == failed.id == "refund/stripe/re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert issued("refund.created", "succeeded") == succeeded


def test_a_refund_of_a_charge_stripe_does_not_have_is_a_data_error(ctx: Context, refs: MemoryRefs) -> None:
    with pytest.raises(ConnectorError) as caught:
        connector.to_canonical(ctx, delivered("refund.created", fixture("refund")), refs)
    assert (caught.value.category, caught.value.status) == (Category.DATA, 404)
    with pytest.raises(ConnectorError, match="names no charge"):
        connector.to_canonical(ctx, delivered("refund.created", {**fixture("refund"), "charge": None}), refs)


# -- customers, listing ---------------------------------------------------------------------------------------


def test_a_deleted_customer_as_stripe_answers_it(ctx: Context, refs: MemoryRefs) -> None:
    change = only(mapped(ctx, refs, delivered("customer.deleted", fixture("deleted_customer"))))
    assert change.type == "customer.deleted"
    assert change.entity == Customer(id="customer/stripe/cus_QXg1o8vcGmoR32", name="cus_QXg1o8vcGmoR32",
                                     status="deleted")


def test_the_hubs_own_id_is_honoured_only_when_it_is_a_customer_id(ctx: Context, refs: MemoryRefs) -> None:
    def identity(value: str) -> str:
        obj = {**fixture("customer"), "metadata": {"crossledger_id": value}}
        return only(mapped(ctx, refs, delivered("customer.updated", obj))).entity.id

    assert identity("customer/salesforce/001A") == "customer/salesforce/001A"
    assert identity("typed by hand") == "customer/stripe/cus_QXg1o8vcGmoR32"


def test_records_lists_every_subscription_and_refuses_unknown_types(api: RunningStripe, ctx: Context) -> None:
    price = api.price("Listed", 700)
    customer = api.client.v1.customers.create({"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    made = [api.client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]}).id
            for _ in range(3)]
    api.client.v1.subscriptions.cancel(made[0])
    listed = [record["id"] for record in connector.records(ctx, "subscription", page_size=2)]
    assert set(made) <= set(listed) and len(listed) == len(set(listed))
    with pytest.raises(ConnectorError, match="cannot list 'journalentry'") as caught:
        list(connector.records(ctx, "journalentry"))
    assert caught.value.category is Category.DATA


def test_a_page_larger_than_stripes_largest_asks_for_the_largest(api: RunningStripe, ctx: Context) -> None:
    """Stripe's ``limit`` is 1 to 100 (more is a 400, which would be classified as bad data): a larger
    page size, of a listing or of the events a listing since a moment reads, asks for 100."""
    made = api.client.v1.customers.create({"name": "Listed in a large page"}).id
    listed = connector.records_page(ctx, "customer", page_size=500)
    changed = connector.records_page(ctx, "customer", since=datetime.now(UTC) - timedelta(minutes=5), page_size=500)
    assert made in {r["id"] for r in listed.records} and made in {r["id"] for r in changed.records}


def test_a_page_since_a_moment_is_read_from_the_events_each_object_as_it_is_now(
    api: RunningStripe, ctx: Context
) -> None:
    """Stripe's lists filter by ``created`` only, so ``since`` reads ``GET /v1/events?type=customer.*
    &created[gte]=``: each customer an event names, read as it is now (renamed since it was made),
    one deleted as Stripe answers for it, which ``project`` leaves out; one untouched since is not
    listed. The cursor is the last event id; a ``since`` beyond Stripe's 30 days of events lists
    the collection in full."""
    old = api.client.v1.customers.create({"name": "Before"}).id
    time.sleep(1.1)  # Stripe stamps whole seconds
    since = datetime.now(UTC)
    made = api.client.v1.customers.create({"name": "Made"}).id
    api.client.v1.customers.update(made, {"name": "Made, renamed"})
    gone = api.client.v1.customers.create({"name": "Gone"}).id
    api.client.v1.customers.delete(gone)

    first = connector.records_page(ctx, "customer", since=since, page_size=2)  # gone's two events
    second = connector.records_page(ctx, "customer", since=since, page_size=2, cursor=first.next)

    assert [(r["id"], r.get("deleted")) for r in first.records] == [(gone, True)]
    assert connector.project("customer", first.records[0]) is None
    assert first.next is not None and first.next.startswith("evt_")
    assert [(r["id"], r["name"]) for r in second.records] == [(made, "Made, renamed")] and second.next is None
    long_ago = connector.records_page(ctx, "customer", since=datetime(2000, 1, 1, tzinfo=UTC), page_size=100)
    assert old in {r["id"] for r in long_ago.records}  # the collection, newest first
    assert long_ago.next is None or not long_ago.next.startswith("evt_")
