"""``Retry-After`` as the connectors read it (:func:`retry_after_seconds`): seconds or an HTTP date,
capped at :data:`MAX_RETRY_AFTER_S`, and nothing at all when it is not a finite number, so a server
asking for ``inf`` or a day parks no message for as long (and no backoff overflows on it)."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from crossledger.plugins.http import MAX_RETRY_AFTER_S, retry_after_seconds


def _after(value: str) -> float | None:
    return retry_after_seconds(httpx.Response(429, headers={"Retry-After": value}))


@pytest.mark.parametrize(("value", "seconds"), [
    ("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("86400", MAX_RETRY_AFTER_S), ("1e308", MAX_RETRY_AFTER_S),
    ("inf", None), ("Infinity", None), ("-inf", None), ("nan", None), ("soon", None),
])
def test_a_number_of_seconds_is_capped_and_a_non_finite_one_ignored(value: str, seconds: float | None) -> None:
    assert _after(value) == seconds


def test_an_http_date_is_the_wait_until_it_capped() -> None:
    soon = _after(format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True))
    assert soon is not None and 25 <= soon <= 30
    assert _after(format_datetime(datetime.now(UTC) + timedelta(days=365), usegmt=True)) == MAX_RETRY_AFTER_S
    assert _after("Fri, 31 Dec 9999 23:59:59 GMT") == MAX_RETRY_AFTER_S
    assert _after(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)) == 0.0


def test_no_header_is_no_wait() -> None:
    assert retry_after_seconds(httpx.Response(429)) is None
