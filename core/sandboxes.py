"""Every built-in (and third-party) sandbox on one port, each under ``/<system>/``.

``crossledger sandbox`` serves this; the demo and the tests start it in-process.
"""

from typing import Any

from crossledger.plugins.connector import Connector
from crossledger.plugins.types import Capability, Sandbox
from starlette.applications import Starlette
from starlette.routing import Mount


class SandboxSet:
    def __init__(self, connectors: dict[str, Connector], names: list[str] | None = None) -> None:
        chosen = names or [n for n, c in connectors.items() if Capability.SANDBOX in c.capabilities]
        self.sandboxes: dict[str, Sandbox] = {name: connectors[name].sandbox() for name in chosen}
        self.app = Starlette(routes=[Mount(f"/{name}", app=sb.app) for name, sb in self.sandboxes.items()])

    def subscribe(self, hub_url: str) -> None:
        """Register the hub's webhook endpoint in every system that pushes."""
        for name, sandbox in self.sandboxes.items():
            sandbox.subscribe(f"{hub_url.rstrip('/')}/webhooks/{name}")

    def config(self, base_url: str) -> dict[str, dict[str, Any]]:
        """``[connectors.*]`` sections pointing the hub at these sandboxes."""
        return {name: sb.connector_settings(f"{base_url.rstrip('/')}/{name}") for name, sb in self.sandboxes.items()}
