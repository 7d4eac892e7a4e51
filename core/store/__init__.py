"""Durable state of the hub: the :class:`Store` protocol, its two backends, and :func:`open_store`."""

import re
from urllib.parse import parse_qs, urlsplit

from crossledger.core.store.base import (
    AuditRecord,
    Circuit,
    DeadLetter,
    Delivery,
    Golden,
    InboxEntry,
    LoggedEvent,
    Store,
)
from crossledger.core.store.redis import DEFAULT_NAMESPACE, RedisStore
from crossledger.core.store.sqlite import SQLiteStore

__all__ = [
    "AuditRecord",
    "Circuit",
    "DeadLetter",
    "Delivery",
    "Golden",
    "InboxEntry",
    "LoggedEvent",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "open_store",
]


def open_store(url: str) -> Store:
    """The store a URL names. As in SQLAlchemy, ``sqlite:///`` is followed by the path, so an
    absolute path gives four slashes. A Redis URL may name the key namespace (see :class:`RedisStore`)."""
    if url.startswith("sqlite:///") and url != "sqlite:///":
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith("redis://"):
        return _open_redis(url)
    raise _unsupported(url)


def _open_redis(url: str) -> RedisStore:
    parts = urlsplit(url)
    options = parse_qs(parts.query, keep_blank_values=True)
    try:
        _ = parts.port  # raises ValueError unless the port is a number from 0 to 65535
    except ValueError:
        raise _unsupported(url) from None
    if not parts.hostname or not re.fullmatch(r"/?\d*", parts.path) or set(options) - {"namespace"}:
        raise _unsupported(url)
    namespace = options.get("namespace", [DEFAULT_NAMESPACE])[-1]
    return RedisStore(parts._replace(query="").geturl(), namespace)


def _unsupported(url: str) -> ValueError:
    return ValueError(f"unsupported store URL {url!r}: use sqlite:///relative/path.db, "
                      "sqlite:////absolute/path.db, sqlite:///:memory: or redis://host:port/db[?namespace=name]")
