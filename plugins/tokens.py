"""Bearer tokens from an OAuth 2.0 client-credentials endpoint: fetched once, shared by threads.

A connector keeps one :class:`TokenCache` for its process. :meth:`TokenCache.get` hands out the
token held for a key (one app: its token URL, tenant, client id) until the token's ``refresh_at``,
a while before it expires, so no request leaves with a token about to lapse; then the first thread
that needs one fetches the next while the others wait for it (token endpoints rate-limit, and a
stampede of fetches would be refused). :meth:`TokenCache.discard` forgets a token the API refused
with 401 (revoked early), unless another thread has already replaced it.
"""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float
    """When to fetch the next one: before this token expires."""


class TokenCache:
    """Tokens per key, fetched by one thread at a time; thread-safe. ``fetched`` counts the fetches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[Hashable, Token] = {}
        self.fetched = 0

    def get(self, key: Hashable, fetch: Callable[[], Token], now: float) -> str:
        """The token for ``key``, fetched with ``fetch`` when there is none or it is due for refresh."""
        with self._lock:
            token = self._tokens.get(key)
            if token is None or now >= token.refresh_at:
                token = self._tokens[key] = fetch()
                self.fetched += 1
            return token.value

    def discard(self, key: Hashable, value: str) -> None:
        """Forget ``value`` after a 401, unless another thread already replaced it."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]
