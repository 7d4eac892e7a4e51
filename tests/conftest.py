"""Fixtures shared by the whole suite. Each area's own fixtures live in its test module."""

import redis
import pytest

REDIS_URL = "redis://127.0.0.1:6379"


def redis_url(db: int) -> str:
    """A Redis URL on its own db number, flushed; skips the test when no Redis answers."""
    client = redis.Redis.from_url(f"{REDIS_URL}/{db}")
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client.flushdb()
    client.close()
    return f"{REDIS_URL}/{db}"
