"""An embedded hub for tests: the whole hub in the test's process, with nothing to install.

:func:`start_hub` runs :class:`~crossledger.core.processes.embedded.EmbeddedHub` (the HTTP app on a loopback
thread, Dramatiq worker threads beside it) on the ``memory`` broker (Dramatiq's StubBroker) and a
SQLite store in a directory of the test's, with retry delays short enough for tests
(:data:`FAST_RETRIES`). :class:`StubHub` adds what tests keep needing: posting a webhook, and
waiting for the hub to settle.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from crossledger.core.hub.runtime import Runtime
from crossledger.core.processes.embedded import EmbeddedHub, wait_until
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.store.base import Store

FAST_RETRIES: dict[str, Any] = {"min_backoff_ms": 50, "max_backoff_ms": 400, "circuit_cooldown_s": 0.5,
                                "max_retries": 4}
"""Hub settings that keep retries, backoff and circuit probes within a test's patience."""


@dataclass
class StubHub:
    """A running embedded hub; :meth:`stop` when done (the ``stub_hub`` fixture does)."""

    hub: EmbeddedHub

    @property
    def url(self) -> str:
        return self.hub.url

    @property
    def runtime(self) -> Runtime:
        return self.hub.runtime

    @property
    def store(self) -> Store:
        return self.hub.runtime.store

    def webhook(self, connector: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """POST ``body`` to ``/webhooks/<connector>``, as the system would."""
        return httpx.post(f"{self.url}/webhooks/{connector}", content=body, headers=dict(headers), timeout=10)

    def idle(self) -> bool:
        """No message waiting, delayed or in progress."""
        return self.hub.idle()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
        """Poll ``condition`` until it holds or ``timeout`` passes; whether it held."""
        return wait_until(condition, timeout, interval)

    def settle(self, condition: Callable[[], bool] = lambda: True, timeout: float = 30.0) -> None:
        """Wait until the hub is idle and ``condition`` holds; fail the test if that takes too long."""
        settled = self.wait_until(lambda: self.idle() and condition(), timeout)
        if not settled:
            raise AssertionError(f"the hub did not settle within {timeout} s (idle: {self.idle()}, open dead "
                                 f"letters: {self.store.dlq_count('open')})")

    def stop(self) -> None:
        self.hub.stop()


class HubFactory(Protocol):
    """The ``stub_hub`` fixture: start a hub with these connectors (their ``[connectors.*]`` settings)."""

    def __call__(self, connectors: dict[str, dict[str, Any]], *, routes: dict[str, list[str]] | None = None,
                 port: int = 0, threads: int = 4, **hub_options: Any) -> StubHub: ...


def start_hub(store_dir: Path, connectors: dict[str, dict[str, Any]], *,
              routes: dict[str, list[str]] | None = None, port: int = 0, threads: int = 4,
              **hub_options: Any) -> StubHub:
    """Start an embedded hub with its SQLite store in ``store_dir``.

    ``connectors`` are the ``[connectors.<name>]`` sections (e.g. ``running_sandbox.settings()``),
    ``routes`` the ``[routes]`` table, ``hub_options`` any ``[hub]`` setting over :data:`FAST_RETRIES`
    (``broker`` stays ``memory`` unless given). ``port`` 0 picks a free one; pass a port chosen
    earlier when a sandbox must know the hub's webhook URL before it starts.
    """
    options = {"broker": "memory", "store": f"sqlite:///{store_dir / 'hub.db'}", **FAST_RETRIES, **hub_options}
    settings = Settings(hub=HubSettings(**options), connectors=connectors, routes=routes or {})
    return StubHub(EmbeddedHub(settings, port=port, threads=threads).start())
