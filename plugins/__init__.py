"""The crossledger plugin API: hooks, the Connector protocol, typed records and the manager.

Write a plugin::

    from crossledger.plugins import hookimpl, BaseConnector

    class AcmeConnector(BaseConnector):
        name = "acme"
        ...

    @hookimpl
    def crossledger_connectors():
        return [AcmeConnector()]
"""

from crossledger.plugins.connector import (
    AnswersHandshakes,
    BaseConnector,
    Connector,
    ListsPages,
    NotSupported,
    ReadsJsonWebhooks,
    TakesSomeEvents,
    all_records,
    json_body,
)
from crossledger.plugins.errors import (
    Category,
    ConnectorError,
    MissingDependency,
    PayloadError,
    PluginError,
    SignatureError,
    exception_reason,
)
from crossledger.plugins.hookspecs import hookimpl, hookspec
from crossledger.plugins.manager import CrossledgerPluginManager, load_plugins
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    InboundEvent,
    Operation,
    Outcome,
    OwnershipRule,
    Page,
    PollResult,
    Projection,
    Refs,
    Route,
    Sandbox,
    SystemKind,
)

__all__ = [
    "AnswersHandshakes",
    "BaseConnector",
    "Capability",
    "Category",
    "Change",
    "Connector",
    "ConnectorError",
    "Context",
    "CrossledgerPluginManager",
    "InboundEvent",
    "ListsPages",
    "MissingDependency",
    "NotSupported",
    "Operation",
    "Outcome",
    "OwnershipRule",
    "Page",
    "PayloadError",
    "PluginError",
    "PollResult",
    "Projection",
    "ReadsJsonWebhooks",
    "Refs",
    "Route",
    "Sandbox",
    "SignatureError",
    "SystemKind",
    "TakesSomeEvents",
    "all_records",
    "exception_reason",
    "hookimpl",
    "hookspec",
    "json_body",
    "load_plugins",
]
