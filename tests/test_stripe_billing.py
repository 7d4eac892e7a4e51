"""The Stripe sandbox's billing: products and prices, subscriptions on test clocks, refunds, credit
notes, invoice previews, and search, driven over real HTTP by Stripe's official Python SDK (raw HTTP where
the SDK hides what is checked)."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from crossledger.plugins.stripe.sandbox.subscriptions import add_interval

from tests.kits.stripe import RunningStripe

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "stripe"
DAY = 86_400
JAN_1 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
FEB_1 = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
MAR_1 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
APR_1 = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())


@pytest.fixture
def api() -> Iterator[RunningStripe]:
    running = RunningStripe()
    yield running
    running.close()


@pytest.fixture
def v1(api: RunningStripe) -> Any:
    return api.client.v1


def event_types(api: RunningStripe, about: str) -> list[str]:
    """The types of the events about one object, oldest first."""
    events = api.http.get("/v1/events", params={"limit": 100}).json()["data"]
    return [event["type"] for event in events[::-1] if event["data"]["object"].get("id") == about]


def fields(name: str) -> set[str]:
    return set(json.loads((FIXTURES / f"{name}.json").read_text()))


# -- periods -------------------------------------------------------------------------------------------


def test_monthly_periods_keep_the_anchor_day_and_clamp_short_months() -> None:
    jan_31 = int(datetime(2026, 1, 31, 9, 30, tzinfo=UTC).timestamp())
    ends = [datetime.fromtimestamp(add_interval(jan_31, "month", n), UTC) for n in (1, 2, 3)]
    assert [(end.month, end.day, end.hour) for end in ends] == [(2, 28, 9), (3, 31, 9), (4, 30, 9)]
    assert add_interval(jan_31, "year", 1) == int(datetime(2027, 1, 31, 9, 30, tzinfo=UTC).timestamp())
    assert add_interval(JAN_1, "week", 2) == JAN_1 + 14 * DAY


# -- products and prices -----------------------------------------------------------------------------------


def test_products_and_prices(api: RunningStripe, v1: Any) -> None:
    product = v1.products.create({"id": "prod_pro", "name": "Pro", "metadata": {"tier": "pro"}})
    assert (product.id, product.metadata.to_dict()) == ("prod_pro", {"tier": "pro"})
    with pytest.raises(stripe.InvalidRequestError) as taken:
        v1.products.create({"id": "prod_pro", "name": "Again"})
    assert taken.value.code == "resource_already_exists"
    monthly = v1.prices.create({"product": product.id, "currency": "USD", "unit_amount": 2000,
                                "recurring": {"interval": "month"}, "lookup_key": "pro", "nickname": "Pro monthly"})
    assert (monthly.currency, monthly.type, monthly.recurring.interval, monthly.recurring.interval_count) == (
        "usd", "recurring", "month", 1)
    with pytest.raises(stripe.InvalidRequestError, match="already uses the lookup key"):
        v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 2200,
                          "recurring": {"interval": "month"}, "lookup_key": "pro"})
    newer = v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 2200, "lookup_key": "pro",
                              "recurring": {"interval": "month"}, "transfer_lookup_key": True})
    assert (newer.lookup_key, v1.prices.retrieve(monthly.id).lookup_key) == ("pro", None)
    made = v1.prices.create({"product_data": {"name": "Add-on"}, "currency": "usd", "unit_amount": 500})
    assert made.type == "one_time" and v1.products.retrieve(made.product).name == "Add-on"
    assert {p.id for p in v1.prices.list({"product": product.id}).data} == {monthly.id, newer.id}
    assert v1.prices.update(monthly.id, {"metadata": {"tier": "legacy"}, "active": False}).active is False
    assert [p.id for p in v1.prices.list({"product": product.id, "active": True}).data] == [newer.id]
    too_long = api.http.post("/v1/prices", data={"product": product.id, "currency": "usd", "unit_amount": "1",
                                                 "recurring[interval]": "month", "recurring[interval_count]": "13"})
    assert (too_long.status_code, too_long.json()["error"]["param"]) == (400, "recurring[interval_count]")
    unknown = api.http.post("/v1/prices", data={"product": product.id, "currency": "usd", "unit_amount": "1",
                                                "recurring[every]": "month"})
    assert unknown.json()["error"] | {"message": ""} == {
        "type": "invalid_request_error", "code": "parameter_unknown", "param": "recurring[every]", "message": "",
        "doc_url": "https://stripe.com/docs/error-codes/parameter-unknown"}


# -- subscriptions ---------------------------------------------------------------------------------------


def test_subscription_is_billed_upgraded_with_prorations_renewed_and_ends(api: RunningStripe, v1: Any) -> None:
    pro, enterprise = api.price("Pro", 2000), api.price("Enterprise", 5000)
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id, "quantity": 2}],
                                            "metadata": {"deal": "42"}})
    [item] = subscription["items"].data
    assert (subscription.status, subscription.currency, subscription.start_date) == ("active", "usd", JAN_1)
    assert (item.quantity, item.current_period_start, item.current_period_end) == (2, JAN_1, FEB_1)
    first = v1.invoices.retrieve(subscription.latest_invoice)
    assert (first.billing_reason, first.status, first.total, first.parent.subscription_details.subscription) == (
        "subscription_create", "paid", 4000, subscription.id)
    assert [line.description for line in first.lines.data] == ["2 × Pro (at $20.00 / month)"]

    api.advance(customer, JAN_1 + 15 * DAY)  # halfway through January's 31 days: 16 days are left
    upgraded = v1.subscriptions.update(subscription.id, {"items": [{"id": item.id, "price": enterprise.id}],
                                                         "proration_behavior": "always_invoice"})
    update = v1.invoices.retrieve(upgraded.latest_invoice)
    assert update.billing_reason == "subscription_update" and update.status == "paid"
    assert [(line.amount, line.parent.invoice_item_details.proration) for line in update.lines.data] == [
        (-2065, True), (5161, True)]  # -4000 and 10000 times 16/31, rounded to the cent
    assert update.total == 3096
    [changed] = [e for e in api.http.get("/v1/events", params={"type": "customer.subscription.updated"}).json()["data"]]
    assert changed["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"] == pro.id

    api.advance(customer, FEB_1 + DAY)
    renewed = v1.subscriptions.retrieve(subscription.id)
    cycle = v1.invoices.retrieve(renewed.latest_invoice)
    assert (cycle.billing_reason, cycle.status, cycle.total) == ("subscription_cycle", "paid", 10000)
    assert (renewed["items"].data[0].current_period_start, renewed["items"].data[0].current_period_end) == (
        FEB_1, MAR_1)
    assert cycle.status_transitions.finalized_at == FEB_1  # stamped with the clock's time

    ending = v1.subscriptions.update(subscription.id, {"cancel_at_period_end": True})
    assert (ending.status, ending.cancel_at, ending.canceled_at) == ("active", MAR_1, FEB_1 + DAY)
    api.advance(customer, MAR_1 + DAY)
    ended = v1.subscriptions.retrieve(subscription.id)
    assert (ended.status, ended.ended_at) == ("canceled", MAR_1)
    assert len(v1.invoices.list({"subscription": subscription.id}).data) == 3  # no invoice for March
    assert event_types(api, subscription.id) == ["customer.subscription.created", "customer.subscription.updated",
                                                 "customer.subscription.updated", "customer.subscription.updated",
                                                 "customer.subscription.deleted"]


def test_prorations_wait_for_the_next_invoice_by_default(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 3000)
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}]})
    api.advance(customer, JAN_1 + 21 * DAY)  # 10 of 31 days left
    item = subscription["items"].data[0]
    v1.subscriptions.update(subscription.id, {"items": [{"id": item.id, "quantity": 3}]})
    pending = v1.invoice_items.list({"customer": customer.id}).data
    assert sorted((i.amount, i.proration, i.invoice) for i in pending) == [(-968, True, None), (2903, True, None)]
    api.advance(customer, FEB_1 + 1)
    renewal = v1.invoices.retrieve(v1.subscriptions.retrieve(subscription.id).latest_invoice)
    assert sorted(line.amount for line in renewal.lines.data) == [-968, 2903, 9000]
    assert renewal.total == 10935
    none = v1.subscriptions.update(subscription.id, {"items": [{"id": item.id, "quantity": 1}],
                                                     "proration_behavior": "none"})
    assert none["items"].data[0].quantity == 1
    assert all(i.invoice for i in v1.invoice_items.list({"customer": customer.id}).data)


def test_failed_renewals_make_it_past_due_then_unpaid_and_payment_restores_it(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}]})
    v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"}})
    api.advance(customer, FEB_1 + DAY)
    overdue = v1.subscriptions.retrieve(subscription.id)
    renewal = v1.invoices.retrieve(overdue.latest_invoice)
    assert (overdue.status, renewal.status, renewal.attempt_count, renewal.next_payment_attempt) == (
        "past_due", "open", 1, FEB_1 + 3 * DAY)
    assert event_types(api, renewal.id)[-2:] == ["invoice.finalized", "invoice.payment_failed"]
    [failed] = v1.charges.list({"customer": customer.id, "limit": 1}).data
    assert (failed.status, failed.failure_code, failed.outcome.type) == ("failed", "card_declined", "issuer_declined")
    api.advance(customer, FEB_1 + 9 * DAY)  # the retries of Feb 4 and Feb 9 fail too
    retried = v1.invoices.retrieve(renewal.id)
    assert (retried.attempt_count, retried.next_payment_attempt) == (3, FEB_1 + 15 * DAY)
    api.advance(customer, FEB_1 + 20 * DAY)  # the last retry fails: the subscription is unpaid
    assert v1.subscriptions.retrieve(subscription.id).status == "unpaid"
    assert v1.invoices.retrieve(renewal.id).next_payment_attempt is None
    api.advance(customer, MAR_1 + DAY)  # an unpaid subscription still renews, without charging
    march = v1.invoices.retrieve(v1.subscriptions.retrieve(subscription.id).latest_invoice)
    assert (march.status, march.attempt_count) == ("open", 0)
    v1.invoices.pay(march.id, {"payment_method": "pm_card_visa"})
    restored = v1.subscriptions.retrieve(subscription.id)
    assert restored.status == "active"


def test_send_invoice_subscriptions_go_past_due_when_unpaid(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    customer = api.clocked_customer(JAN_1, payment_method=None)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}],
                                            "collection_method": "send_invoice", "days_until_due": 7})
    invoice = v1.invoices.retrieve(subscription.latest_invoice)
    assert (subscription.status, invoice.status, invoice.due_date) == ("active", "open", JAN_1 + 7 * DAY)
    api.advance(customer, JAN_1 + 8 * DAY)
    assert v1.subscriptions.retrieve(subscription.id).status == "past_due"
    v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
    assert v1.subscriptions.retrieve(subscription.id).status == "active"
    with pytest.raises(stripe.InvalidRequestError, match="days_until_due is required"):
        v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}],
                                 "collection_method": "send_invoice"})


def test_incomplete_first_payment_and_trials(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    nobody_pays = api.clocked_customer(JAN_1, payment_method=None)
    incomplete = v1.subscriptions.create({"customer": nobody_pays.id, "items": [{"price": pro.id}]})
    first = v1.invoices.retrieve(incomplete.latest_invoice)
    assert (incomplete.status, first.status) == ("incomplete", "open")
    v1.invoices.pay(first.id, {"payment_method": "pm_card_visa"})
    assert v1.subscriptions.retrieve(incomplete.id).status == "active"

    customer = api.clocked_customer(JAN_1)
    trial = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}], "trial_period_days": 14})
    zero = v1.invoices.retrieve(trial.latest_invoice)
    assert (trial.status, trial.trial_end, zero.total, zero.status) == ("trialing", JAN_1 + 14 * DAY, 0, "paid")
    assert zero.lines.data[0].description == "Trial period for Pro"
    api.advance(customer, JAN_1 + 15 * DAY)
    converted = v1.subscriptions.retrieve(trial.id)
    cycle = v1.invoices.retrieve(converted.latest_invoice)
    assert (converted.status, cycle.billing_reason, cycle.total) == ("active", "subscription_cycle", 2000)
    assert converted["items"].data[0].current_period_end == int(
        datetime(2026, 2, 15, tzinfo=UTC).timestamp())


def test_cancel_now_lists_and_customer_deletion(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    customer = v1.customers.create({"name": "Initech", "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    kept, cancelled = (v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}]})
                       for _ in range(2))
    gone = v1.subscriptions.cancel(cancelled.id, {"cancellation_details": {"comment": "too pricey"}})
    assert (gone.status, gone.cancellation_details.reason, gone.cancellation_details.comment) == (
        "canceled", "cancellation_requested", "too pricey")
    with pytest.raises(stripe.InvalidRequestError, match="already ended"):
        v1.subscriptions.cancel(cancelled.id)
    with pytest.raises(stripe.InvalidRequestError, match="cannot be updated"):
        v1.subscriptions.update(cancelled.id, {"metadata": {"x": "y"}})
    assert [s.id for s in v1.subscriptions.list({"customer": customer.id}).data] == [kept.id]
    assert [s.id for s in v1.subscriptions.list({"customer": customer.id, "status": "all"}).data] == [
        cancelled.id, kept.id]
    assert [s.id for s in v1.subscriptions.list({"price": pro.id, "status": "canceled"}).data] == [cancelled.id]
    v1.customers.delete(customer.id)
    assert v1.subscriptions.retrieve(kept.id).status == "canceled"


def test_subscriptions_refuse_what_stripe_refuses(api: RunningStripe, v1: Any) -> None:
    monthly, euro = api.price("Pro", 2000), api.price("Pro EU", 1800, currency="eur")
    yearly = v1.prices.create({"product": monthly.product, "currency": "usd", "unit_amount": 20000,
                               "recurring": {"interval": "year"}})
    customer = api.clocked_customer(JAN_1)
    with pytest.raises(stripe.InvalidRequestError, match="same currency and recurring interval"):
        v1.subscriptions.create({"customer": customer.id, "items": [{"price": monthly.id}, {"price": yearly.id}]})
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": monthly.id}]})
    with pytest.raises(stripe.InvalidRequestError, match="cannot combine currencies"):
        v1.subscriptions.create({"customer": customer.id, "items": [{"price": euro.id}]})
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        v1.subscriptions.update(subscription.id, {"items": [{"id": "si_nope", "price": monthly.id}]})
    assert (unknown.value.code, unknown.value.param) == ("resource_missing", "items[0][id]")
    one_time = v1.prices.create({"product": monthly.product, "currency": "usd", "unit_amount": 100})
    missing = api.http.post("/v1/subscriptions", data={"customer": customer.id, "items[0][price]": one_time.id})
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "items[0][price]")
    with pytest.raises(stripe.InvalidRequestError, match="after the test clock's current frozen_time"):
        v1.test_helpers.test_clocks.advance(customer.test_clock, {"frozen_time": JAN_1})


# -- refunds --------------------------------------------------------------------------------------------------


def test_refunds_return_part_or_all_of_a_charge_and_never_more(api: RunningStripe, v1: Any) -> None:
    _, charge = api.paid_by_card(5000)
    assert (charge.status, charge.paid, charge.amount, charge.payment_method) == ("succeeded", True, 5000,
                                                                                  "pm_card_visa")
    partial = v1.refunds.create({"charge": charge.id, "amount": 1500, "reason": "requested_by_customer"})
    assert (partial.amount, partial.status, partial.payment_intent) == (1500, "succeeded", charge.payment_intent)
    with pytest.raises(stripe.InvalidRequestError) as over:
        v1.refunds.create({"payment_intent": charge.payment_intent, "amount": 3501})
    assert over.value.code == "amount_too_large"
    assert str(over.value.user_message) == "Refund amount ($35.01) is greater than unrefunded amount on charge ($35.00)"
    rest = v1.refunds.create({"payment_intent": charge.payment_intent})
    assert rest.amount == 3500
    refunded = v1.charges.retrieve(charge.id)
    assert (refunded.amount_refunded, refunded.refunded) == (5000, True)
    assert [r.id for r in refunded.refunds.data] == [rest.id, partial.id]
    with pytest.raises(stripe.InvalidRequestError) as again:
        v1.refunds.create({"charge": charge.id})
    assert again.value.code == "charge_already_refunded"
    assert [r.id for r in v1.refunds.list({"charge": charge.id}).data] == [rest.id, partial.id]
    assert event_types(api, partial.id) == ["refund.created"]
    assert event_types(api, charge.id) == ["charge.succeeded", "charge.refunded", "charge.refunded"]


def test_an_invoice_paid_out_of_band_has_no_charge_to_refund(v1: Any) -> None:
    customer = v1.customers.create({"name": "Cash Ltd"})
    v1.invoice_items.create({"customer": customer.id, "amount": 900, "currency": "usd"})
    invoice = v1.invoices.create({"customer": customer.id})
    v1.invoices.finalize_invoice(invoice.id)
    v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
    [payment] = v1.invoice_payments.list({"invoice": invoice.id}).data
    with pytest.raises(stripe.InvalidRequestError, match="does not have a successful charge to refund"):
        v1.refunds.create({"payment_intent": payment.payment.payment_intent})
    with pytest.raises(stripe.InvalidRequestError, match="not paid by a charge"):
        v1.credit_notes.create({"invoice": invoice.id, "amount": 100, "refund_amount": 100})


# -- credit notes -------------------------------------------------------------------------------------------


def test_credit_notes_on_an_open_invoice_lower_what_is_due(api: RunningStripe, v1: Any) -> None:
    customer = v1.customers.create({"name": "Globex"})
    v1.invoice_items.create({"customer": customer.id, "amount": 3000, "currency": "usd", "description": "Seats"})
    v1.invoice_items.create({"customer": customer.id, "unit_amount": 500, "quantity": 4, "currency": "usd"})
    invoice = v1.invoices.finalize_invoice(v1.invoices.create({"customer": customer.id}).id)
    seats, units = invoice.lines.data
    note = v1.credit_notes.create({"invoice": invoice.id, "reason": "order_change", "lines": [
        {"type": "invoice_line_item", "invoice_line_item": units.id, "quantity": 1},
        {"type": "custom_line_item", "unit_amount": 250, "quantity": 2, "description": "Goodwill"}]})
    assert (note.total, note.type, note.pre_payment_amount, note.number) == (1000, "pre_payment", 1000,
                                                                             f"{invoice.number}-CN-01")
    assert note.pdf.startswith("https://pay.stripe.com/credit_notes/") and note.pdf.endswith("/pdf?s=ap")
    assert [(line.type, line.amount) for line in note.lines.data] == [("invoice_line_item", 500),
                                                                      ("custom_line_item", 500)]
    lowered = v1.invoices.retrieve(invoice.id)
    assert (lowered.amount_due, lowered.amount_remaining, lowered.pre_payment_credit_notes_amount) == (4000, 4000,
                                                                                                       1000)
    with pytest.raises(stripe.InvalidRequestError, match=r"greater than the line"):
        v1.credit_notes.create({"invoice": invoice.id, "lines": [
            {"type": "invoice_line_item", "invoice_line_item": seats.id, "amount": 3001}]})
    with pytest.raises(stripe.InvalidRequestError, match=r"\(\$40.01\) is greater than what can still be credited"):
        v1.credit_notes.create({"invoice": invoice.id, "amount": 4001})
    voided = v1.credit_notes.void_credit_note(note.id)
    assert (voided.status, v1.invoices.retrieve(invoice.id).amount_due) == ("void", 5000)
    rest = v1.credit_notes.create({"invoice": invoice.id, "amount": 5000})
    assert (rest.number, v1.invoices.retrieve(invoice.id).status) == (f"{invoice.number}-CN-02", "paid")
    assert event_types(api, rest.id) == ["credit_note.created"]
    with pytest.raises(stripe.InvalidRequestError, match="paid invoice"):
        v1.credit_notes.void_credit_note(rest.id)
    draft = v1.invoices.create({"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError, match="is draft"):
        v1.credit_notes.create({"invoice": draft.id, "amount": 1})


def test_credit_notes_on_a_paid_invoice_refund_or_credit_the_customer(api: RunningStripe, v1: Any) -> None:
    invoice, charge = api.paid_by_card(10_000)
    with pytest.raises(stripe.InvalidRequestError, match="must equal the part of the credit note"):
        v1.credit_notes.create({"invoice": invoice.id, "amount": 3000, "refund_amount": 2000})
    refunding = v1.credit_notes.create({"invoice": invoice.id, "amount": 3000, "refund_amount": 2000,
                                        "out_of_band_amount": 1000, "memo": "Late delivery"})
    [entry] = refunding.refunds
    refund = v1.refunds.retrieve(entry.refund)
    assert (refunding.type, refunding.post_payment_amount, entry.amount_refunded) == ("post_payment", 3000, 2000)
    assert (refund.charge, refund.amount, v1.charges.retrieve(charge.id).amount_refunded) == (charge.id, 2000, 2000)
    with pytest.raises(stripe.InvalidRequestError, match="refunded money"):
        v1.credit_notes.void_credit_note(refunding.id)
    crediting = v1.credit_notes.create({"invoice": invoice.id, "amount": 1200})
    assert crediting.customer_balance_transaction.startswith("cbtxn_")
    assert v1.customers.retrieve(invoice.customer).balance == -1200
    v1.credit_notes.void_credit_note(crediting.id)
    assert v1.customers.retrieve(invoice.customer).balance == 0
    assert v1.invoices.retrieve(invoice.id).post_payment_credit_notes_amount == 3000
    assert [n.id for n in v1.credit_notes.list({"invoice": invoice.id}).data] == [crediting.id, refunding.id]


# -- search and shapes -----------------------------------------------------------------------------------------


def test_customer_search(api: RunningStripe, v1: Any) -> None:
    made = [v1.customers.create({"name": f"Search {n}", "email": f"s{n}@search.test",
                                 "metadata": {"crossledger_id": f"customer/salesforce/00{n}", "tier": "gold"}})
            for n in range(5)]
    search = v1.customers.search
    assert [c.id for c in search({"query": "metadata['crossledger_id']:'customer/salesforce/003'"}).data] == [
        made[3].id]
    assert [c.id for c in search({"query": 'email:"s1@search.test" OR name:"Search 2"'}).data] == [
        made[2].id, made[1].id]
    assert [c.id for c in search({"query": "name~'earch' -email:'s0@search.test' metadata['tier']:'gold'"}).data] == [
        c.id for c in made[:0:-1]]
    first = search({"query": "metadata['tier']:'gold'", "limit": 2})
    assert (first.object, first.has_more, first.url, len(first.data)) == ("search_result", True,
                                                                          "/v1/customers/search", 2)
    paged = search({"query": "metadata['tier']:'gold'", "limit": 2}).auto_paging_iter()
    assert [c.id for c in paged] == [c.id for c in made[::-1]]
    assert search({"query": "metadata['crossledger_id']:'it\\'s not there'"}).data == []
    for query, message in [("shoe_size:'9'", "unsupported search field"), ("name~'ab'", "at least 3 characters"),
                           ("name:'a' AND email:'b' OR phone:'c'", "cannot be combined"),
                           ("name:", "could not be parsed"), ("email>100", "does not support")]:
        answer = api.http.get("/v1/customers/search", params={"query": query})
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, "query"), query
        assert message in answer.json()["error"]["message"], query


def test_invoice_and_subscription_search(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}],
                                            "metadata": {"deal": "d-7"}})
    other = v1.customers.create({"name": "Other"})
    v1.invoice_items.create({"customer": other.id, "amount": 50_000, "currency": "usd"})
    big = v1.invoices.create({"customer": other.id, "metadata": {"po": "PO-9"}})
    v1.invoices.finalize_invoice(big.id)
    first = subscription.latest_invoice
    invoices = v1.invoices.search
    assert [i.id for i in invoices({"query": f'subscription:"{subscription.id}" AND status:"paid"'}).data] == [first]
    assert [i.id for i in invoices({"query": "total>10000"}).data] == [big.id]
    assert [i.id for i in invoices({"query": "total<=2000 OR metadata['po']:'PO-9'"}).data] == [big.id, first]
    assert [i.id for i in invoices({"query": f'-customer:"{customer.id}" currency:"usd"'}).data] == [big.id]
    assert [i.id for i in invoices({"query": f"created={JAN_1}"}).data] == [first]
    page = invoices({"query": "currency:'usd'", "limit": 1})
    assert (page.object, page.url, page.has_more, len(page.data)) == ("search_result", "/v1/invoices/search", True, 1)
    assert [i.id for i in invoices({"query": "currency:'usd'", "limit": 1}).auto_paging_iter()] == [big.id, first]

    found = v1.subscriptions.search({"query": 'status:"active" AND metadata["deal"]:"d-7"'})
    assert ([s.id for s in found.data], found.url) == ([subscription.id], "/v1/subscriptions/search")
    assert v1.subscriptions.search({"query": "status:'canceled'"}).data == []
    for path, query, message in [("invoices", "email:'x'", "unsupported search field"),
                                 ("invoices", "status~'pai'", "does not support the `~` operator"),
                                 ("invoices", "total>lots", "not a whole number"),
                                 ("subscriptions", "customer:'cus_1'", "unsupported search field"),
                                 ("subscriptions", "status:", "could not be parsed")]:
        answer = api.http.get(f"/v1/{path}/search", params={"query": query})
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, "query"), query
        assert message in answer.json()["error"]["message"], query


def test_invoice_previews_show_the_next_invoice_and_change_nothing(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id, "quantity": 3}]})
    v1.invoice_items.create({"customer": customer.id, "amount": 700, "currency": "usd", "description": "setup"})
    state = api.sandbox.state()

    renewal = v1.invoices.create_preview({"customer": customer.id, "subscription": subscription.id})
    assert renewal.id.startswith("upcoming_in_") and renewal.object == "invoice"
    assert (renewal.billing_reason, renewal.status, renewal.created, renewal.total) == (
        "upcoming", "draft", FEB_1, 6700)
    periods = [(line.period.start, line.period.end) for line in renewal.lines.data]
    assert periods == [(FEB_1, MAR_1), (JAN_1, JAN_1)]  # the next period, then the pending item
    assert renewal.parent.subscription_details.subscription == subscription.id
    extra = v1.invoices.create_preview({"customer": customer.id, "invoice_items": [
        {"unit_amount": 250, "quantity": 2, "description": "extra seats"}, {"amount": 100, "currency": "usd"}]})
    assert ([line.amount for line in extra.lines.data], extra.total) == ([700, 500, 100], 1300)
    assert api.sandbox.state() == state  # nothing stored, no event
    with pytest.raises(stripe.InvalidRequestError) as not_found:
        v1.invoices.retrieve(renewal.id)
    assert not_found.value.http_status == 404

    refusals = [({"customer": customer.id}, "parameter_missing"),
                ({"subscription": "sub_nope"}, "resource_missing"),
                ({"customer": customer.id, "invoice_items[0][amount]": "5", "invoice_items[0][currency]": "eur"}, None),
                ({"customer": customer.id, "subscription_details[items][0][price]": pro.id}, "parameter_unknown")]
    for params, code in refusals:
        answer = api.http.post("/v1/invoices/create_preview", data=params)
        assert (answer.status_code, answer.json()["error"].get("code")) == (400, code), params
    v1.subscriptions.update(subscription.id, {"cancel_at_period_end": True})
    with pytest.raises(stripe.InvalidRequestError) as none:
        v1.invoices.create_preview({"customer": customer.id, "subscription": subscription.id})
    assert none.value.code == "invoice_upcoming_none"


def test_new_objects_have_the_field_sets_of_stripes_fixtures(api: RunningStripe, v1: Any) -> None:
    pro = api.price("Pro", 2000)
    customer = api.clocked_customer(JAN_1)
    subscription = v1.subscriptions.create({"customer": customer.id, "items": [{"price": pro.id}]})
    invoice, charge = api.paid_by_card(700)
    note = v1.credit_notes.create({"invoice": invoice.id, "refund_amount": 300, "lines": [
        {"type": "invoice_line_item", "invoice_line_item": invoice.lines.data[0].id, "amount": 300}]})
    objects = {
        "subscription": f"/v1/subscriptions/{subscription.id}",
        "price": f"/v1/prices/{pro.id}",
        "product": f"/v1/products/{pro.product}",
        "credit_note": f"/v1/credit_notes/{note.id}",
        "refund": f"/v1/refunds/{note.refunds[0].refund}",
        "charge": f"/v1/charges/{charge.id}",
        "payment_intent": f"/v1/payment_intents/{charge.payment_intent}",
    }
    for name, path in objects.items():
        assert set(api.http.get(path).json()) == fields(name), name
    record = api.http.get(objects["subscription"]).json()
    assert set(record["items"]["data"][0]) == fields("subscription_item")
    assert set(api.http.get(objects["credit_note"]).json()["lines"]["data"][0]) == fields("credit_note_line_item")
    line = api.http.get(f"/v1/invoices/{subscription.latest_invoice}").json()["lines"]["data"][0]
    assert set(line) == fields("line_item")
    state = api.http.get("/_sandbox/state").json()
    assert {len(state[kind]) for kind in ("subscriptions", "credit_notes", "refunds", "test_clocks")} == {1}
