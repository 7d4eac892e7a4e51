"""Bearer tokens from an OAuth 2.0 client-credentials endpoint: fetched once, shared by threads.

A connector keeps one :class:`TokenCache` for its process. :meth:`TokenCache.get` hands out the
token held for a key (one app: its token URL, tenant, client id) until the token's ``refresh_at``,
a while before it expires, so no request leaves with a token about to lapse; then the first thread
that needs one fetches the next while the others needing the same key wait for that one fetch and
share its result, its token or its error (token endpoints rate-limit, and a stampede of fetches, or
of retries after a failed one, would be refused). The fetch runs outside the cache's lock, so a slow
or unreachable token endpoint for one key holds up only the threads that need that key's token.
:meth:`TokenCache.discard` forgets a token the API refused with 401 (revoked early), unless another
thread has already replaced it.
"""

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float
    """When to fetch the next one: before this token expires."""


class TokenCache:
    """Tokens per key, one fetch at a time per key; thread-safe. ``fetched`` counts the fetches that succeeded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        """Guards the two dicts only; never held while a token is fetched."""
        self._tokens: dict[Hashable, Token] = {}
        self._fetching: dict[Hashable, Future[Token]] = {}
        """The fetch under way per key, which the threads that need that key's token wait for."""
        self.fetched = 0

    def get(self, key: Hashable, fetch: Callable[[], Token], now: float) -> str:
        """The token for ``key``, fetched with ``fetch`` when there is none or it is due for refresh.

        When another thread is already fetching it, this one waits for that fetch: its token, or the
        error it raised, raised here too (the caller's retry policy decides when to try again).
        """
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and now < token.refresh_at:
                return token.value
            pending = self._fetching.get(key)
            mine = pending is None
            if pending is None:
                pending = self._fetching[key] = Future()
        if not mine:
            return pending.result().value
        try:
            token = fetch()
        except BaseException as error:
            with self._lock:
                del self._fetching[key]
            pending.set_exception(error)
            raise
        with self._lock:
            self._tokens[key] = token
            self.fetched += 1
            del self._fetching[key]
        pending.set_result(token)
        return token.value

    def discard(self, key: Hashable, value: str) -> None:
        """Forget ``value`` after a 401, unless another thread already replaced it."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]
