"""Every built-in (and third-party) sandbox on one port, each under ``/<system>/``; and the
topologies a developer picks among: a billing system and an ERP, with Salesforce and Zendesk around.

``crossledger sandbox`` serves this (``--billing stripe|zuora --erp netsuite|business-central``); the
demo and the tests start it in-process.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crossledger.plugins.connector import Connector
from crossledger.plugins.types import Capability, Sandbox
from starlette.applications import Starlette
from starlette.routing import Mount


class Billing(StrEnum):
    """The ``--billing`` choices; each is its connector's name."""

    STRIPE = "stripe"
    ZUORA = "zuora"


class Erp(StrEnum):
    """The ``--erp`` choices, spelled as on the command line (``business-central``)."""

    NETSUITE = "netsuite"
    BUSINESS_CENTRAL = "business-central"


CRM, SUPPORT = "salesforce", "zendesk"
"""The systems around every pair."""


@dataclass(frozen=True)
class Topology:
    """One billing × ERP pair, and the connector names that make it up."""

    billing: Billing = Billing.STRIPE
    erp: Erp = Erp.NETSUITE

    @property
    def billing_system(self) -> str:
        return self.billing.value

    @property
    def erp_system(self) -> str:
        """The ERP's connector name (``business_central``: a name is an identifier, an option a word)."""
        return self.erp.value.replace("-", "_")

    @property
    def systems(self) -> tuple[str, str, str, str]:
        """The four systems: CRM, billing, ERP, support."""
        return CRM, self.billing_system, self.erp_system, SUPPORT

    def roles(self) -> dict[str, str]:
        """The ``[topology]`` table that names this pair's billing and ERP connectors."""
        return {"billing": self.billing_system, "erp": self.erp_system}

    def __str__(self) -> str:
        return f"{self.billing.value}+{self.erp.value}"


def topology(billing: str, erp: str) -> Topology:
    """The pair the options ``--billing`` and ``--erp`` name; ValueError with one readable line."""
    if billing not in set(Billing):
        raise ValueError(f"--billing must be {' or '.join(Billing)}, not {billing!r}")
    if erp not in set(Erp):
        raise ValueError(f"--erp must be {' or '.join(Erp)}, not {erp!r}")
    return Topology(Billing(billing), Erp(erp))


PAIRS: tuple[Topology, ...] = tuple(Topology(billing, erp) for billing in Billing for erp in Erp)
"""Every billing × ERP pair."""


class SandboxSet:
    def __init__(self, connectors: dict[str, Connector], names: list[str] | None = None) -> None:
        chosen = names or [n for n, c in connectors.items() if Capability.SANDBOX in c.capabilities]
        self.sandboxes: dict[str, Sandbox] = {name: connectors[name].sandbox() for name in chosen}
        self.app = Starlette(routes=[Mount(f"/{name}", app=sb.app) for name, sb in self.sandboxes.items()])

    def subscribe(self, hub_url: str, systems: Iterable[str] | None = None) -> None:
        """Register the hub's webhook endpoint in every system that pushes (of ``systems``, if given)."""
        chosen = self.sandboxes if systems is None else set(systems)
        for name, sandbox in self.sandboxes.items():
            if name in chosen:
                sandbox.subscribe(f"{hub_url.rstrip('/')}/webhooks/{name}")

    def config(self, base_url: str) -> dict[str, dict[str, Any]]:
        """``[connectors.*]`` sections pointing the hub at these sandboxes."""
        return {name: sb.connector_settings(f"{base_url.rstrip('/')}/{name}") for name, sb in self.sandboxes.items()}
