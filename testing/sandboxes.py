"""A connector's sandbox served over real HTTP on loopback, with its control routes at hand.

Every sandbox (``plugins/sandbox.py`` ``build_app``) serves ``GET /_sandbox/state`` and
``POST``/``DELETE /_sandbox/faults``; :class:`RunningSandbox` speaks to them over HTTP, as a test
or an operator would, so it works for any connector's sandbox, built-in or third-party.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.types import Sandbox

CONTROL_TIMEOUT_S = 10.0


@dataclass
class RunningSandbox:
    """A sandbox and the loopback server serving it; :meth:`stop` when done."""

    sandbox: Sandbox
    server: ServerThread
    control: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=CONTROL_TIMEOUT_S))

    @property
    def url(self) -> str:
        """The base URL the sandbox's API is served at."""
        return self.server.url

    def settings(self) -> dict[str, Any]:
        """The ``[connectors.<name>]`` settings that point a connector at this sandbox."""
        return dict(self.sandbox.connector_settings(self.url))

    def state(self) -> dict[str, Any]:
        """``GET /_sandbox/state``: the sandbox's records by type."""
        response = self.control.get(f"{self.url}/_sandbox/state")
        if response.status_code != 200:
            raise AssertionError(f"GET /_sandbox/state answered {response.status_code}: {response.text[:300]}")
        state = response.json()
        if not isinstance(state, dict):
            raise AssertionError(f"GET /_sandbox/state must answer a JSON object of records by type, not {state!r}")
        return state

    def fault(self, **spec: Any) -> None:
        """``POST /_sandbox/faults``: ``mode`` (down, http_500, http_429, latency, timeout_after_commit)
        with optional ``count``, ``retry_after`` and ``latency_ms``."""
        response = self.control.post(f"{self.url}/_sandbox/faults", json=spec)
        if response.status_code != 200:
            raise AssertionError(f"the sandbox refused the fault {spec}: HTTP {response.status_code} "
                                 f"{response.text[:300]}")

    def clear_faults(self) -> None:
        """``DELETE /_sandbox/faults``."""
        self.control.delete(f"{self.url}/_sandbox/faults").raise_for_status()

    def stop(self) -> None:
        self.control.close()
        self.server.stop()


def serve_sandbox(sandbox: Sandbox) -> RunningSandbox:
    """Start serving ``sandbox.app`` on a free loopback port."""
    return RunningSandbox(sandbox, ServerThread(sandbox.app).start())


SandboxFactory = Callable[[str | Sandbox], RunningSandbox]
"""The ``sandbox_server`` fixture: a connector's name (its own sandbox) or a sandbox object -> running."""
