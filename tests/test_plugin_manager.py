"""Plugin loading: entry points, isolation of broken plugins, duplicate names."""

import sys
from pathlib import Path
from typing import Any

import pytest
from crossledger.plugins import CrossledgerPluginManager, Route, load_plugins


def install_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A real (unpacked) distribution on sys.path, found by importlib.metadata like any installed one."""
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"  # normalized, as installers write it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[crossledger]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


GOOD = '''
from crossledger.plugins import BaseConnector, SystemKind, hookimpl
from pydantic import BaseModel

class Settings(BaseModel):
    url: str = "http://x"

class Acme(BaseConnector):
    name = "acme"
    kind = SystemKind.CRM
    version = "2.0.0"
    settings_model = Settings

class Impostor(Acme):
    name = "stripe"

@hookimpl
def crossledger_connectors():
    return [Acme(), Impostor(), object()]
'''

RAISING = '''
from crossledger.plugins import hookimpl

@hookimpl
def crossledger_connectors():
    raise RuntimeError("boom")
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("cl_good_plugin", "cl_raising_plugin"):
        sys.modules.pop(module, None)


def test_builtins_register_through_the_hook() -> None:
    manager = CrossledgerPluginManager()
    manager.register_builtins()
    assert {"stripe", "netsuite"} <= set(manager.connectors)
    assert manager.problems == []


def test_broken_plugins_are_reported_and_skipped(site: Path) -> None:
    install_distribution(site, "crossledger-acme", {"acme": "cl_good_plugin"}, {"cl_good_plugin": GOOD})
    install_distribution(site, "crossledger-missing", {"missing": "cl_does_not_exist"}, {})
    install_distribution(site, "crossledger-raising", {"raising": "cl_raising_plugin"}, {"cl_raising_plugin": RAISING})

    manager = load_plugins()

    assert manager.connectors["acme"].version == "2.0.0"
    assert type(manager.connectors["stripe"]).__module__ == "crossledger.plugins.stripe.connector"
    assert manager.infos["acme"].distribution == "crossledger-acme"
    assert manager.infos["acme"].version == "1.2.3"
    problems = "\n".join(manager.problems)
    assert "plugin 'missing' failed to load: ModuleNotFoundError" in problems
    assert "plugin 'raising' crossledger_connectors() raised: boom" in problems
    assert "connector name 'stripe' is taken; skipped" in problems
    assert "lacks ['name', 'kind', 'version', 'capabilities', 'settings_model']" in problems


def test_plugins_can_be_disabled_by_name(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_distribution(site, "crossledger-acme", {"acme": "cl_good_plugin"}, {"cl_good_plugin": GOOD})
    monkeypatch.setenv("CROSSLEDGER_DISABLE_PLUGINS", "acme")
    assert "acme" not in load_plugins().connectors


def test_hooks_are_called_through_pluggy_so_tracing_and_wrappers_apply() -> None:
    from crossledger.plugins import hookimpl

    class Renamer:
        """A plugin wrapping its own hook implementation, as pluggy users write them."""

        @hookimpl
        def crossledger_routes(self) -> list[str]:
            return ["raw"]

        @hookimpl(wrapper=True, specname="crossledger_routes")
        def wrap_routes(self) -> Any:
            routes = yield
            return [[f"wrapped-{route}" for route in offered] for offered in routes]

    manager = CrossledgerPluginManager()
    manager.register_builtins()
    manager.register(Renamer(), name="renamer")
    traced: list[str] = []
    manager.trace.root.setwriter(traced.append)
    undo = manager.enable_tracing()
    try:
        routes = manager.routes()
    finally:
        undo()
    assert "wrapped-raw" in routes
    assert any("crossledger_routes" in line for line in traced)
    manager.check_pending()


SUPPORT = {"zendesk", "support"}
"""Zendesk, by name or by the role it plays."""


def test_a_plugin_that_only_wraps_a_hook_wraps_every_plugins_part() -> None:
    from crossledger.plugins import hookimpl

    class NoZendesk:
        """A policy plugin: whoever offers routes, none reaches Zendesk."""

        def __init__(self) -> None:
            self.wrapped: list[int] = []

        @hookimpl(wrapper=True)
        def crossledger_routes(self) -> Any:
            offered = yield
            self.wrapped.append(len(offered))
            return [[route for route in routes if not SUPPORT & set(route.targets)] for routes in offered]

    class Acme:
        @hookimpl
        def crossledger_routes(self) -> list[Route]:
            return [Route("customer.upserted", ("zendesk",)), Route("customer.upserted", ("acme",))]

    manager = CrossledgerPluginManager()
    manager.register_builtins()
    unfiltered = manager.routes()
    wrapper = NoZendesk()
    manager.register(wrapper, name="no-zendesk")
    manager.register(Acme(), name="acme")

    routes = manager.routes()

    assert any(SUPPORT & set(route.targets) for route in unfiltered)
    assert [route for route in routes if SUPPORT & set(route.targets)] == []
    assert Route("customer.upserted", ("acme",)) in routes
    assert wrapper.wrapped == [1, 1]  # once around each plugin's part: the built-ins', then Acme's


def test_firstresult_hooks_answer_with_the_first_result() -> None:
    """A hook another plugin declares with ``firstresult`` behaves as pluggy's, through ``pm.hook``."""
    from crossledger.plugins import hookimpl, hookspec

    class Specs:
        @hookspec(firstresult=True)
        def acme_region(self, customer: str) -> str | None:  # type: ignore[empty-body]
            """The region a customer lives in; the first plugin that knows answers."""

    class Unsure:
        @hookimpl
        def acme_region(self, customer: str) -> str | None:
            return None

    class Knows:
        @hookimpl
        def acme_region(self, customer: str) -> str | None:
            return f"eu ({customer})"

    class NeverAsked:
        @hookimpl
        def acme_region(self, customer: str) -> str | None:
            raise AssertionError("asked after the first result")

    manager = CrossledgerPluginManager()
    manager.add_hookspecs(Specs)
    # pluggy calls the last registered first: Unsure, then Knows, which answers; NeverAsked is not reached.
    for plugin in (NeverAsked(), Knows(), Unsure()):
        manager.register(plugin)

    assert manager.hook.acme_region(customer="c1") == "eu (c1)"


def test_check_pending_reports_a_misspelled_hook() -> None:
    from crossledger.plugins import hookimpl
    from pluggy import PluginValidationError

    class Typo:
        @hookimpl
        def crossledger_conectors(self) -> list[object]:
            return []

    manager = CrossledgerPluginManager()
    manager.register_builtins()
    manager.check_pending()  # the built-ins implement only hooks that exist
    manager.register(Typo(), name="typo")

    with pytest.raises(PluginValidationError, match="crossledger_conectors"):
        manager.check_pending()
