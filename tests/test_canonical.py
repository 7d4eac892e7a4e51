"""The canonical model: money, invariants, envelopes and upcasting."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from crossledger.canonical import (
    CreditMemo,
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
    decode_envelope,
    encode_envelope,
    new_envelope,
    versions,
    violations,
)
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
    assert "total 1700 != lines 1500 + tax 300 - discounts 150 = 1650" in problem


def test_one_currency_per_document() -> None:
    mixed = Invoice(
        id="invoice/x/1", customer_id="c", currency="USD",
        lines=[InvoiceLine(description="a", amount=money(100, "EUR"))],
        tax=money(0, "USD"), discount=money(0, "USD"), total=money(100, "USD"), status="issued",
    )
    assert "mixes currencies" in violations(mixed)[0]


def test_payment_cannot_apply_more_than_received() -> None:
    payment = Payment(id="p", customer_id="c", amount=money(100, "JPY"),
                      applications=[PaymentApplication(invoice_id="i", amount=money(101, "JPY"))])
    assert "applies 101 but only 100" in violations(payment)[0]


def test_credit_memo_never_exceeds_what_it_credits() -> None:
    memo = CreditMemo(id="m", customer_id="c", invoice_id="i", amount=money(1001, "KWD"),
                      credited_total=money(1000, "KWD"))
    assert "more than the 1000" in violations(memo)[0]
    fine = CreditMemo(id="m", customer_id="c", invoice_id="i", amount=money(1000, "KWD"),
                      credited_total=money(1000, "KWD"))
    assert violations(fine) == []


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
