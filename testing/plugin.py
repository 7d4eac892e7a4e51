"""The pytest plugin (entry point ``pytest11``): fixtures for connector authors and the project's tests.

pytest loads this module in every run in an environment where crossledger is installed, so it
imports nothing heavy and hooks nothing: a test that uses none of these fixtures runs exactly as
without the plugin. Each fixture imports what it needs when a test asks for it.

``crossledger_plugins``
    A plugin manager with the built-in connectors and every installed third-party plugin
    (:func:`crossledger.plugins.load_plugins`).
``sandbox_server``
    A factory: ``sandbox_server("netsuite")`` (a connector's name) or ``sandbox_server(AcmeSandbox())``
    serves the sandbox on loopback and returns a
    :class:`~crossledger.testing.sandboxes.RunningSandbox` (``url``, ``settings()``, ``state()``,
    ``fault(...)``, ``clear_faults()``); every one started is stopped at teardown.
``stub_hub``
    A factory: ``stub_hub({"netsuite": running.settings()}, routes=..., **hub_options)`` starts an
    embedded hub (memory broker, worker threads, a SQLite store in the test's ``tmp_path``) and
    returns a :class:`~crossledger.testing.hub.StubHub` (``url``, ``runtime``, ``store``,
    ``webhook(...)``, ``wait_until(...)``, ``settle(...)``); every one started is stopped at teardown.

The contract suite is a test class, not a fixture: ``from crossledger.testing import ConnectorContract``.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from crossledger.plugins.manager import CrossledgerPluginManager
    from crossledger.plugins.types import Sandbox
    from crossledger.testing.hub import HubFactory, StubHub
    from crossledger.testing.sandboxes import RunningSandbox, SandboxFactory

# Plain asserts in the suite then explain themselves like asserts in the author's own tests.
pytest.register_assert_rewrite("crossledger.testing.contract", "crossledger.testing.delivery")


@pytest.fixture
def crossledger_plugins() -> "CrossledgerPluginManager":
    """The built-in connectors and every installed plugin, loaded as the hub loads them."""
    from crossledger.plugins.manager import load_plugins

    return load_plugins()


@pytest.fixture
def sandbox_server() -> "Iterator[SandboxFactory]":
    """Serve a connector's sandbox (by connector name, or a sandbox object) on loopback."""
    from crossledger.plugins.manager import load_plugins
    from crossledger.testing.sandboxes import serve_sandbox

    started: list[RunningSandbox] = []

    def start(system: "str | Sandbox") -> "RunningSandbox":
        if isinstance(system, str):
            connectors = load_plugins().connectors
            if system not in connectors:
                raise LookupError(f"no connector {system!r} is installed (installed: {', '.join(sorted(connectors))})")
            system = connectors[system].sandbox()
        running = serve_sandbox(system)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def stub_hub(tmp_path: Path) -> "Iterator[HubFactory]":
    """Start embedded hubs (memory broker, worker threads, SQLite under ``tmp_path``) for this test."""
    from crossledger.testing.hub import start_hub

    started: list[StubHub] = []

    def start(connectors: dict[str, dict[str, Any]], **options: Any) -> "StubHub":
        store_dir = tmp_path / f"hub-{len(started)}"
        store_dir.mkdir()
        hub = start_hub(store_dir, connectors, **options)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop()
