"""The plugin manager: built-ins first, then the ``crossledger`` entry-point group.

Unlike :meth:`pluggy.PluginManager.load_setuptools_entrypoints`, one broken plugin never stops
the hub: an import error, a hook that raises, a connector that lacks the contract or reuses a
name already taken are each recorded in :attr:`CrossledgerPluginManager.problems` and skipped.
Set ``CROSSLEDGER_DISABLE_PLUGINS`` to a comma-separated list of entry-point names to block them.
"""

import importlib.metadata
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import pluggy
from crossledger.plugins import hookspecs
from crossledger.plugins.connector import Connector
from crossledger.plugins.journey_definition import Journey
from crossledger.plugins.types import OwnershipRule, Route
from pluggy import HookCaller, HookImpl

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT
_REQUIRED = ("name", "kind", "version", "capabilities", "settings_model")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None


class CrossledgerPluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs.CrossledgerSpecs)
        self.problems: list[str] = []
        self.infos: dict[str, PluginInfo] = {}
        self._callers: dict[str, list[tuple[str, HookCaller]]] = {}

    def register_builtins(self) -> None:
        from crossledger.plugins import builtin

        self.register(builtin, name="builtin")
        self.infos["builtin"] = PluginInfo("builtin", "crossledger", _own_version())

    def load_entrypoints(self) -> int:
        """Register every plugin of the entry-point group; return how many loaded."""
        blocked = {n.strip() for n in os.environ.get("CROSSLEDGER_DISABLE_PLUGINS", "").split(",") if n.strip()}
        loaded = 0
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.name in blocked or self.has_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
                self.register(plugin, name=entry_point.name)
            except Exception as error:  # any failure in third-party code is reported, not raised
                self._problem(f"plugin {entry_point.name!r} failed to load: {type(error).__name__}: {error}")
                continue
            dist = entry_point.dist
            self.infos[entry_point.name] = PluginInfo(
                entry_point.name, dist.name if dist else None, dist.version if dist else None
            )
            loaded += 1
        return loaded

    def _problem(self, message: str) -> None:
        log.warning("%s", message)
        self.problems.append(message)

    @cached_property
    def connectors(self) -> dict[str, Connector]:
        """Every valid connector by name; the first registration of a name wins."""
        found: dict[str, Connector] = {}
        for plugin, offered in self._gather("crossledger_connectors"):
            for connector in cast(list[Connector], offered):
                missing = [attr for attr in _REQUIRED if not hasattr(connector, attr)]
                if missing:
                    self._problem(f"plugin {plugin!r}: connector {connector!r} lacks {missing}")
                elif connector.name in found:
                    self._problem(f"plugin {plugin!r}: connector name {connector.name!r} is taken; skipped")
                else:
                    found[connector.name] = connector
        return found

    def ownership_rules(self) -> list[OwnershipRule]:
        return [rule for _, rules in self._gather("crossledger_ownership_rules") for rule in rules]

    def routes(self) -> list[Route]:
        return [route for _, routes in self._gather("crossledger_routes") for route in routes]

    @cached_property
    def journeys(self) -> dict[str, Journey]:
        """Every contributed journey by name; the first of a name wins, a duplicate is reported."""
        found: dict[str, Journey] = {}
        for plugin_name, journeys in self._gather("crossledger_journeys"):
            for journey in journeys:
                if journey.name in found:
                    self._problem(f"plugin {plugin_name!r} journey {journey.name!r} duplicates one already "
                                  f"registered; skipped")
                    continue
                found[journey.name] = journey
        return found

    def _gather(self, hook_name: str) -> Iterator[tuple[str, list[Any]]]:
        """Each plugin's records from a registration hook, in registration order (built-ins first);
        a plugin whose hook raises is reported and skipped."""
        for plugin_name, call in self._per_plugin(hook_name):
            try:
                records = [record for offered in call() for record in offered or ()]
            except Exception as error:
                self._problem(f"plugin {plugin_name!r} {hook_name}() raised: {error}")
                continue
            yield plugin_name, records

    def notify(self, hook_name: str, **kwargs: object) -> None:
        """Call an observer hook on every plugin; a plugin that raises is logged and skipped."""
        for plugin_name, call in self._per_plugin(hook_name):
            try:
                call(**kwargs)
            except Exception:
                log.exception("plugin %r %s() raised", plugin_name, hook_name)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self._callers.clear()
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self._callers.clear()
        return super().unregister(plugin, name)

    def _per_plugin(self, hook_name: str) -> list[tuple[str, HookCaller]]:
        """One hook caller per plugin implementing ``hook_name``, in registration order.

        Each is pluggy's own caller for that plugin's implementations (``subset_hook_caller``, as
        pytest calls a hook on some conftest plugins only), so tracing, monitoring and wrappers
        apply, while one plugin's exception cannot keep the others from being called. A plugin that
        only wraps the hook is kept in every caller: its wrapper wraps each plugin's part (it sees
        and may change what each plugin returns). A plugin's wrapper beside its own implementation
        wraps that implementation. Built once per hook until a plugin comes or goes: observers are
        called for every event.
        """
        if hook_name not in self._callers:
            self._callers[hook_name] = self._subset_callers(hook_name)
        return self._callers[hook_name]

    def _subset_callers(self, hook_name: str) -> list[tuple[str, HookCaller]]:
        impls = getattr(self.hook, hook_name).get_hookimpls()
        implementing = list(dict.fromkeys(impl.plugin for impl in impls if not _wraps(impl)))
        wrapping_only = [impl.plugin for impl in impls if _wraps(impl) and impl.plugin not in implementing]
        everyone = self.get_plugins()
        return [
            (str(self.get_name(plugin)),
             self.subset_hook_caller(hook_name, remove_plugins=[
                 other for other in everyone if other is not plugin and other not in wrapping_only]))
            for plugin in implementing
        ]


def _wraps(impl: HookImpl) -> bool:
    """Whether a hook implementation is a wrapper (new style, or old-style ``hookwrapper``)."""
    return impl.wrapper or impl.hookwrapper


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("crossledger")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_plugins() -> CrossledgerPluginManager:
    """A manager with the built-in connectors and every installed third-party plugin."""
    manager = CrossledgerPluginManager()
    manager.register_builtins()
    manager.load_entrypoints()
    return manager
