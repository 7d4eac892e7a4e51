"""The shared token cache against a real, slow token endpoint on loopback (Entra ID's shape, fetched
with the Business Central connector's :func:`fetch_token`): one tenant's slow or failing endpoint
holds up only the threads that need that tenant's token, and the threads waiting for one key share
one fetch, its token or its error."""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest
from crossledger.plugins.business_central.auth import fetch_token, token_key
from crossledger.plugins.business_central.settings import BusinessCentralSettings
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.tokens import TokenCache
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

WAIT_S = 5.0
"""How long a test waits for what should happen at once (a bound, never slept)."""


@dataclass
class TokenEndpoint:
    """Entra ID's token endpoint per tenant; a tenant in ``held`` answers once ``release`` is set,
    with 503 when it is in ``down``. ``requests`` counts the requests per tenant."""

    held: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    requests: dict[str, int] = field(default_factory=dict)

    def token(self, request: Request) -> JSONResponse:
        """A sync endpoint: Starlette runs it in its thread pool, so one held request blocks no other."""
        tenant = request.path_params["tenant"]
        self.requests[tenant] = self.requests.get(tenant, 0) + 1
        if tenant in self.held:
            self.arrived.set()
            self.release.wait(WAIT_S)
        if tenant in self.down:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
        return JSONResponse({"token_type": "Bearer", "access_token": f"token-{tenant}-{self.requests[tenant]}",
                             "expires_in": 3600})


@pytest.fixture
def endpoint() -> Iterator[tuple[TokenEndpoint, str]]:
    token_endpoint = TokenEndpoint()
    server = ServerThread(Starlette(routes=[Route("/{tenant}/oauth2/v2.0/token", token_endpoint.token,
                                                  methods=["POST"])])).start()
    try:
        yield token_endpoint, server.url
    finally:
        token_endpoint.release.set()
        server.stop()


def _settings(login_url: str, tenant: str) -> BusinessCentralSettings:
    return BusinessCentralSettings(login_url=login_url, tenant=tenant, environment="production",
                                   company_id="00000000-0000-0000-0000-000000000001", client_id="app",
                                   client_secret="secret")  # type: ignore[arg-type]  # pydantic coerces


HTTP = httpx.Client(timeout=WAIT_S * 2)
"""One client for every thread (httpx's client is thread-safe), made once: a thread's way to the cache is short."""


def _get(tokens: TokenCache, settings: BusinessCentralSettings) -> str:
    return tokens.get(token_key(settings), lambda: fetch_token(settings, HTTP, 0.0), 0.0)


def test_a_slow_token_endpoint_holds_up_only_its_own_key(endpoint: tuple[TokenEndpoint, str]) -> None:
    server, url = endpoint
    server.held.add("slow")
    tokens = TokenCache()
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_get, tokens, _settings(url, "slow"))
        assert server.arrived.wait(WAIT_S)  # the slow tenant's fetch is under way
        fast = pool.submit(_get, tokens, _settings(url, "fast"))
        assert fast.result(timeout=WAIT_S) == "token-fast-1"
        assert not slow.done()  # the fast tenant's token came while the slow one's fetch still waits
        server.release.set()
        assert slow.result(timeout=WAIT_S) == "token-slow-1"


def _waiters(tokens: TokenCache, settings: BusinessCentralSettings, server: TokenEndpoint,
             n: int) -> list[str | ConnectorError]:
    """``n`` threads getting one key's token while its first fetch is held; what each got."""
    def one() -> str | ConnectorError:
        try:
            return _get(tokens, settings)
        except ConnectorError as error:
            return error

    with ThreadPoolExecutor(n) as pool:
        first = pool.submit(one)
        assert server.arrived.wait(WAIT_S)
        others = [pool.submit(one) for _ in range(n - 1)]
        time.sleep(0.5)  # the others reach the cache and wait (the fetch is held, so none can finish)
        server.release.set()
        return [first.result(timeout=WAIT_S)] + [other.result(timeout=WAIT_S) for other in others]


def test_threads_waiting_for_one_key_share_one_fetch(endpoint: tuple[TokenEndpoint, str]) -> None:
    server, url = endpoint
    server.held.add("tenant")
    tokens = TokenCache()
    assert _waiters(tokens, _settings(url, "tenant"), server, 8) == ["token-tenant-1"] * 8
    assert server.requests == {"tenant": 1} and tokens.fetched == 1


def test_a_failed_fetch_is_raised_to_its_waiters_without_a_fetch_each(endpoint: tuple[TokenEndpoint, str]) -> None:
    server, url = endpoint
    server.held.add("tenant")
    server.down.add("tenant")
    tokens = TokenCache()
    got = _waiters(tokens, _settings(url, "tenant"), server, 8)
    assert all(isinstance(each, ConnectorError) and each.category is Category.TARGET_DOWN for each in got), got
    assert server.requests == {"tenant": 1} and tokens.fetched == 0
    server.down.clear()  # the endpoint is back: the next caller fetches afresh
    assert _get(tokens, _settings(url, "tenant")) == "token-tenant-2"
