"""crossledger.testing: the pytest plugin and the connector contract suite.

Everything a connector's tests need, importable from here::

    from crossledger.testing import ConnectorContract, ContractKit, SignatureVector

Names are imported on first use (PEP 562), because pytest imports this package in every run (the
plugin lives in it) and a run that does not use it should not pay for it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossledger.testing.contract import ConnectorContract, ContractRun
    from crossledger.testing.hub import FAST_RETRIES, HubFactory, StubHub, start_hub
    from crossledger.testing.kit import ContractKit, SignatureVector
    from crossledger.testing.refs import MemoryRefs
    from crossledger.testing.sandboxes import RunningSandbox, SandboxFactory, serve_sandbox

_HOMES = {
    "ConnectorContract": "contract",
    "ContractRun": "contract",
    "ContractKit": "kit",
    "SignatureVector": "kit",
    "MemoryRefs": "refs",
    "RunningSandbox": "sandboxes",
    "SandboxFactory": "sandboxes",
    "serve_sandbox": "sandboxes",
    "FAST_RETRIES": "hub",
    "HubFactory": "hub",
    "StubHub": "hub",
    "start_hub": "hub",
}

__all__ = [
    "FAST_RETRIES",
    "ConnectorContract",
    "ContractKit",
    "ContractRun",
    "HubFactory",
    "MemoryRefs",
    "RunningSandbox",
    "SandboxFactory",
    "SignatureVector",
    "StubHub",
    "serve_sandbox",
    "start_hub",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
