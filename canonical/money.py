"""Money: integer minor units plus an ISO 4217 currency code.

This is the only module that converts between minor units and decimals. Connectors whose systems
speak decimals (NetSuite, Salesforce, Zuora) call :func:`to_decimal` and :func:`from_decimal`;
nobody multiplies by 100 anywhere else, because 100 is wrong for JPY (exponent 0) and KWD (3).
"""

from decimal import ROUND_HALF_EVEN, Decimal

import msgspec

# ISO 4217 minor-unit exponents that differ from the default of 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
         "XOF", "XPF"],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}
DEFAULT_EXPONENT = 2


class CurrencyError(ValueError):
    """A currency code that is not three ASCII letters."""


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO code, or raise :class:`CurrencyError`."""
    upper = code.strip().upper()
    if len(upper) != 3 or not upper.isascii() or not upper.isalpha():
        raise CurrencyError(f"not an ISO 4217 currency code: {code!r}")
    return upper


def exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(normalize_currency(currency), DEFAULT_EXPONENT)


class Money(msgspec.Struct, frozen=True, kw_only=True):
    """An exact amount: ``amount`` in the currency's minor unit, ``currency`` upper-case ISO 4217."""

    amount: int
    currency: str

    def __add__(self, other: "Money") -> "Money":
        _same_currency(self, other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: "Money") -> "Money":
        _same_currency(self, other)
        return Money(amount=self.amount - other.amount, currency=self.currency)


def _same_currency(a: Money, b: Money) -> None:
    if a.currency != b.currency:
        raise CurrencyError(f"cannot combine {a.currency} with {b.currency}")


def money(amount: int, currency: str) -> Money:
    """Build a Money from minor units, normalizing the currency code (Stripe sends lower case)."""
    return Money(amount=amount, currency=normalize_currency(currency))


def zero(currency: str) -> Money:
    return money(0, currency)


def to_decimal(value: Money) -> Decimal:
    """Minor units to a Decimal in major units with exactly the currency's exponent."""
    places = exponent(value.currency)
    return Decimal(value.amount).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def format_money(value: Money) -> str:
    """Money as people read it: ``2,807.00 USD``, ``1,200 JPY``, ``-3.500 KWD``."""
    return f"{to_decimal(value):,} {value.currency}"


def from_decimal(value: Decimal | str | int | float, currency: str) -> Money:
    """A decimal amount in major units to Money. Floats go through ``str`` so 0.1 stays 0.1.

    Sub-minor digits are rounded half-to-even (banker's rounding), the usual rule in accounting.
    """
    decimal = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    places = exponent(currency)
    minor = decimal.scaleb(places).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return money(int(minor), currency)
