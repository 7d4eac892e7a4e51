"""What a canonical value may hold: the ranges every target system can take.

A value outside them is the source's mistake (a ``due_date`` of ``10**18``, an amount of ``2**63``),
never an outage, so it is refused where it enters the hub, naming the field and what is wrong with
it, and never repeated back (a value may be personal data):

- **Money**: signed 64-bit minor units. Stripe's integers are 64-bit, and NetSuite's and
  Salesforce's decimals (18 significant digits) hold every such amount in any currency's exponent.
- **Instants**: from 1700-01-01 to 4000-12-31 UTC, Salesforce's documented date range and the
  narrowest of the targets' (all within Python's ``datetime``). Epoch seconds outside it are no time
  any target can store: :func:`from_epoch` refuses them instead of letting ``datetime`` raise
  ``OSError`` or ``OverflowError``, which look like outages.
- **Counts** (quantities, terms): signed 64-bit integers.
- **Text**: at most :data:`MAX_TEXT` characters in any field. Each target's own, narrower field
  limits (a NetSuite company name, a Salesforce account name) are checked by its connector when it
  plans a write, since another target may take the same value.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from crossledger.canonical.money import Money

MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
EARLIEST = datetime(1700, 1, 1, tzinfo=UTC)
LATEST = datetime(4000, 12, 31, 23, 59, 59, tzinfo=UTC)
MAX_TEXT = 131_072
"""Salesforce's long text area, the longest text field any target has: longer text fits nowhere."""


class OutOfRange(ValueError):
    """A value no target can hold; ``field`` names where it was, the message what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def from_epoch(seconds: int | float, field: str) -> datetime:
    """Epoch seconds as a UTC datetime, or :class:`OutOfRange` naming ``field`` when they are
    outside :data:`EARLIEST`..:data:`LATEST` (or not a number at all)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds != seconds:
        raise OutOfRange(field, f"epoch seconds must be a number, not {type(seconds).__name__}")
    if not EARLIEST.timestamp() <= seconds <= LATEST.timestamp():
        raise OutOfRange(field, f"{seconds} epoch seconds is outside {EARLIEST.date()}..{LATEST.date()}")
    return datetime.fromtimestamp(seconds, UTC)


def out_of_range(entity: msgspec.Struct) -> list[str]:
    """Every field of ``entity`` (nested documents and lines included) outside the bounds above,
    one sentence each naming the field's path (``lines[2].amount``)."""
    return [f"{path} {problem}" for path, problem in _walk(entity, "")]


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Money):
        if not MIN_INT64 <= value.amount <= MAX_INT64:
            yield path, f"{value.amount} is outside signed 64-bit minor units"
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(key, f"{path} key")
            yield from _walk(item, f"{path}[{key!r}]" if len(str(key)) <= 64 else f"{path}[...]")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            yield path, f"is {len(value)} characters long; no target takes more than {MAX_TEXT}"
    elif isinstance(value, datetime):
        if not EARLIEST <= _utc(value) <= LATEST:
            yield path, f"{value.isoformat()} is outside {EARLIEST.date()}..{LATEST.date()}"
    elif isinstance(value, int) and not isinstance(value, bool) and not MIN_INT64 <= value <= MAX_INT64:
        yield path, f"{value} is outside signed 64-bit integers"


def _utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC (the canonical model's times all are)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
