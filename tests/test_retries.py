"""The retry policy on its own: Retry-After honoured, budget-free categories, the retry budget and
the age limit (the middleware around it is exercised by test_messages_in_flight.py and
test_recovery.py)."""

import time

import pytest
from crossledger.core.messaging.retries import RetryPolicy
from crossledger.plugins.errors import Category, ConnectorError

POLICY = RetryPolicy(max_retries=3, min_backoff_ms=100, max_backoff_ms=10_000, max_age_s=60)


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_a_retry_after_is_honoured_over_the_backoff() -> None:
    delay = POLICY.delay_ms({"attempts": 1}, _now_ms(), ConnectorError(Category.RATE_LIMITED, "429", retry_after=7))
    assert delay is not None and 7000 <= delay <= 7250


def test_the_backoff_grows_with_the_attempts_and_stops_at_its_ceiling() -> None:
    error = ConnectorError(Category.TRANSIENT, "502")
    first = POLICY.delay_ms({"attempts": 1}, _now_ms(), error)
    fourth = POLICY.delay_ms({"attempts": 4, "retries": 2}, _now_ms(), error)
    assert first is not None and 50 <= first <= 100
    assert fourth is not None and 400 <= fourth <= 800
    assert 5000 <= POLICY.backoff_ms(40, None) <= 10_000


@pytest.mark.parametrize("category", [Category.RATE_LIMITED, Category.TARGET_DOWN])
def test_not_now_spends_no_retry_budget(category: Category) -> None:
    assert POLICY.delay_ms({"attempts": 9, "retries": 3}, _now_ms(), ConnectorError(category, "later")) is not None


def test_out_of_retries_out_of_age_or_not_retryable_is_given_up() -> None:
    transient = ConnectorError(Category.TRANSIENT, "502")
    assert POLICY.delay_ms({"attempts": 4, "retries": 3}, _now_ms(), transient) is None
    assert POLICY.delay_ms({"attempts": 1}, _now_ms() - 61_000, ConnectorError(Category.RATE_LIMITED, "429")) is None
    assert POLICY.delay_ms({"attempts": 1}, _now_ms(), ConnectorError(Category.DATA, "bad total")) is None
