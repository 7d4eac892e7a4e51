"""The canonical model: money, invariants, envelopes and upcasting."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from crossledger.canonical import (
    CreditMemo,
    Customer,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    Payment,
    PaymentApplication,
    Refund,
    Subscription,
    SubscriptionItem,
    decode_envelope,
    encode_envelope,
    new_envelope,
    versions,
    violations,
)
from crossledger.canonical.bounds import EARLIEST, MAX_TEXT, OutOfRange, from_epoch
from crossledger.canonical.money import CurrencyError, Money, exponent, from_decimal, money, to_decimal


@pytest.mark.parametrize(("currency", "places"), [("JPY", 0), ("usd", 2), ("KWD", 3), ("EUR", 2), ("bhd", 3)])
def test_exponents(currency: str, places: int) -> None:
    assert exponent(currency) == places


@pytest.mark.parametrize(
    ("minor", "currency", "decimal"),
    [(1234, "JPY", "1234"), (1234, "USD", "12.34"), (1234, "KWD", "1.234"), (5, "EUR", "0.05"), (-250, "USD", "-2.50")],
)
def test_round_trip_between_minor_units_and_decimals(minor: int, currency: str, decimal: str) -> None:
    value = money(minor, currency)
    assert str(to_decimal(value)) == decimal
    assert from_decimal(Decimal(decimal), currency) == value


def test_floats_convert_through_their_text_and_round_half_even() -> None:
    assert from_decimal(0.1, "USD").amount == 10
    assert from_decimal("0.125", "USD").amount == 12
    assert from_decimal("0.135", "USD").amount == 14


def test_bad_currency_codes_are_refused() -> None:
    with pytest.raises(CurrencyError):
        money(1, "dollars")
    with pytest.raises(CurrencyError):
        money(1, "US")


def test_money_refuses_to_mix_currencies() -> None:
    with pytest.raises(CurrencyError):
        money(1, "USD") + money(1, "EUR")
    assert money(150, "usd") - money(50, "USD") == money(100, "USD")


def invoice(total: int, *, tax: int = 0, discount: int = 0, currency: str = "USD") -> Invoice:
    return Invoice(
        id="invoice/stripe/in_1", customer_id="customer/stripe/cus_1", currency=currency,
        lines=[InvoiceLine(description="a", amount=money(1000, currency)),
               InvoiceLine(description="b", quantity=2, amount=money(500, currency))],
        tax=money(tax, currency), discount=money(discount, currency), total=money(total, currency), status="issued",
    )


def test_invoice_total_must_equal_lines_plus_tax_minus_discounts() -> None:
    assert violations(invoice(1650, tax=300, discount=150)) == []
    [problem] = violations(invoice(1700, tax=300, discount=150))
    assert "total 17.00 USD != lines 15.00 USD + tax 3.00 USD - discounts 1.50 USD = 16.50 USD" in problem


def test_one_currency_per_document() -> None:
    mixed = Invoice(
        id="invoice/x/1", customer_id="c", currency="USD",
        lines=[InvoiceLine(description="a", amount=money(100, "EUR"))],
        tax=money(0, "USD"), discount=money(0, "USD"), total=money(100, "USD"), status="issued",
    )
    assert violations(mixed) == [
        "invoice invoice/x/1 lines[0].amount is in EUR but the document is in USD; one currency per document"]


def test_payment_cannot_apply_more_than_received() -> None:
    payment = Payment(id="p", customer_id="c", amount=money(100, "JPY"),
                      applications=[PaymentApplication(invoice_id="i", amount=money(101, "JPY"))])
    assert "apply 101 JPY but only 100 JPY" in violations(payment)[0]


def test_credit_memo_never_exceeds_what_it_credits() -> None:
    memo = CreditMemo(id="m", customer_id="c", invoice_id="i", amount=money(1001, "KWD"),
                      credited_total=money(1000, "KWD"))
    assert "1.001 KWD is more than the 1.000 KWD" in violations(memo)[0]
    fine = CreditMemo(id="m", customer_id="c", invoice_id="i", amount=money(1000, "KWD"),
                      credited_total=money(1000, "KWD"))
    assert violations(fine) == []


def test_every_document_names_the_amount_in_another_currency() -> None:
    usd, eur = money(100, "USD"), money(100, "EUR")
    payment = Payment(id="p", customer_id="c", amount=usd,
                      applications=[PaymentApplication(invoice_id="i", amount=eur)])
    memo = CreditMemo(id="m", customer_id="c", invoice_id="i", amount=usd, credited_total=eur)
    refund = Refund(id="r", customer_id="c", amount=usd, paid_total=eur)
    entry = JournalEntry(id="j", currency="USD", lines=[JournalLine(account="ar", debit=usd),
                                                         JournalLine(account="sales", credit=eur)])
    plan = Subscription(id="s", customer_id="c", currency="USD", status="active",
                        items=[SubscriptionItem(plan="pro", unit_amount=eur)])

    assert violations(payment) == [
        "payment p applications[0].amount is in EUR but the document is in USD; one currency per document"]
    assert violations(memo) == ["credit memo m amount is in USD but credits a EUR document (credited_total)"]
    assert violations(refund) == ["refund r amount is in USD but refunds a EUR payment (paid_total)"]
    assert violations(entry) == [
        "journal entry j lines[1].credit is in EUR but the document is in USD; one currency per document"]
    assert violations(plan) == [
        "subscription s items[0].unit_amount is in EUR but the document is in USD; one currency per document"]


def test_amounts_that_do_not_add_up_name_their_field() -> None:
    usd = money(100, "USD")
    unbalanced = JournalEntry(id="j", currency="USD", lines=[JournalLine(account="ar", debit=usd),
                                                              JournalLine(account="sales", credit=money(90, "USD"))])
    negative = Invoice(id="i", customer_id="c", currency="USD", lines=[InvoiceLine(description="a", amount=usd)],
                       tax=money(-5, "USD"), discount=money(0, "USD"), total=money(95, "USD"), status="issued")
    refund = Refund(id="r", customer_id="c", amount=money(101, "USD"), paid_total=usd)

    assert violations(unbalanced) == ["journal entry j lines do not balance: debits 1.00 USD != credits 0.90 USD"]
    assert violations(negative) == ["invoice i tax is negative (-0.05 USD)"]
    assert violations(refund) == ["refund r amount 1.01 USD is more than the 1.00 USD paid (paid_total)"]
    large = Invoice(id="l", customer_id="c", currency="JPY", lines=[InvoiceLine(description="a",
                                                                                amount=money(280_700, "JPY"))],
                    tax=money(0, "JPY"), discount=money(0, "JPY"), total=money(280_000, "JPY"), status="issued")
    assert violations(large) == ["invoice l total 280,000 JPY != lines 280,700 JPY + tax 0 JPY - discounts 0 JPY "
                                 "= 280,700 JPY"]  # money as people read it, in the currency's own digits


@pytest.mark.parametrize("seconds", [10**18, -(10**15), 2**63, float("nan"), float("inf"), True, "1700000000"])
def test_epoch_seconds_no_target_can_hold_are_refused_naming_the_field(seconds: object) -> None:
    with pytest.raises(OutOfRange) as refused:
        from_epoch(seconds, "due_date")  # type: ignore[arg-type]
    assert refused.value.field == "due_date" and str(refused.value).startswith("due_date: ")


def test_epoch_seconds_within_range_are_times() -> None:
    assert from_epoch(0, "created") == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_epoch(1_700_000_000, "created") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert from_epoch(EARLIEST.timestamp(), "created") == EARLIEST


def test_values_no_target_can_hold_are_violations_naming_the_field_and_not_the_text() -> None:
    huge = money(2**63, "USD")
    bill = Invoice(id="i", customer_id="c", currency="USD", lines=[InvoiceLine(description="a", amount=huge)],
                   tax=money(0, "USD"), discount=money(0, "USD"), total=huge, status="issued",
                   due_at=datetime(4500, 1, 1, tzinfo=UTC))
    secret = "Secretive Ltd " * 10_000
    customer = Customer(id="customer/x/1", name=secret, dimensions={"terms": "x" * (MAX_TEXT + 1)})

    assert violations(bill) == [
        "invoice i lines[0].amount 9223372036854775808 is outside signed 64-bit minor units",
        "invoice i total 9223372036854775808 is outside signed 64-bit minor units",
        "invoice i due_at 4500-01-01T00:00:00+00:00 is outside 1700-01-01..4000-12-31",
    ]
    problems = violations(customer)
    assert problems == [f"customer customer/x/1 name is {len(secret)} characters long; no target takes more "
                        f"than {MAX_TEXT}",
                        f"customer customer/x/1 dimensions['terms'] is {MAX_TEXT + 1} characters long; no target "
                        f"takes more than {MAX_TEXT}"]
    assert "Secretive" not in "".join(problems)
    assert violations(Customer(id="customer/x/2", name="a" * MAX_TEXT)) == []


@pytest.mark.parametrize(("applied", "sound"), [
    (money(0, "KWD"), True), (money(400, "KWD"), True), (money(401, "KWD"), False), (money(-1, "KWD"), False),
    (money(400, "USD"), False),
])
def test_a_credit_memo_applies_no_more_than_itself_to_its_invoice(applied: Money, sound: bool) -> None:
    memo = CreditMemo(id="m", customer_id="c", invoice_id="i", amount=money(400, "KWD"),
                      credited_total=money(1000, "KWD"), applied=applied)
    assert (violations(memo) == []) is sound


def test_envelope_round_trips_through_builtins() -> None:
    envelope = new_envelope(type="customer.upserted", source="stripe", source_event_id="evt_1",
                            data=Customer(id="customer/stripe/cus_1", name="Acme"),
                            occurred_at=datetime(2026, 1, 2, tzinfo=UTC))
    raw = encode_envelope(envelope)
    assert raw["data"]["entity"] == "customer"
    assert raw["correlation_id"] == envelope.id
    assert decode_envelope(raw) == envelope


def test_old_versions_are_upcast_when_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    envelope = new_envelope(type="customer.upserted", source="stripe", source_event_id="evt_1",
                            data=Customer(id="customer/stripe/cus_1", name="Acme Ltd"),
                            occurred_at=datetime(2026, 1, 2, tzinfo=UTC))
    old = encode_envelope(envelope)
    old["data"]["full_name"] = old["data"].pop("name")  # what version 1 looked like in this story

    monkeypatch.setitem(versions.CURRENT_VERSIONS, "customer.upserted", 2)
    monkeypatch.setattr(versions, "_UPCASTERS", {})

    @versions.register_upcaster("customer.upserted", 1)
    def rename(raw: dict) -> dict:  # type: ignore[type-arg]
        raw["data"]["name"] = raw["data"].pop("full_name")
        return raw

    decoded = decode_envelope(old)
    assert decoded.version == 2
    assert decoded.data.name == "Acme Ltd"  # type: ignore[union-attr]


def test_unknown_or_future_versions_are_refused() -> None:
    with pytest.raises(versions.VersionError, match="unknown event type"):
        versions.upcast({"type": "thing.happened", "version": 1})
    with pytest.raises(versions.VersionError, match="newer than this hub"):
        versions.upcast({"type": "invoice.issued", "version": 99})
