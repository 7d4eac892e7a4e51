"""A third-party connector, installed like any distribution: the HubSpot example (examples/).

It is pip-installed into a directory of its own next to a deliberately broken plugin distribution,
and used through PYTHONPATH in subprocesses (helpers in ``test_scaffold``), so nothing here changes
the environment the tests run in. The example is copied first: pip builds a source tree in place.
"""

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_scaffold import UNDECLARED, passed_tests, pip_install, plugin_rows, run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crossledger-hubspot"

BROKEN_DIST = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "crossledger-broken"
        version = "0.0.1"

        [project.entry-points.crossledger]
        unimportable = "crossledger_broken.missing"
        nameless = "crossledger_broken.nameless"
        """,
    "src/crossledger_broken/__init__.py": '"""Plugins that break: one is not importable, one has no name."""\n',
    "src/crossledger_broken/nameless.py": """\
        from crossledger.plugins import BaseConnector, SystemKind, hookimpl
        from pydantic import BaseModel


        class NoName(BaseConnector):
            kind = SystemKind.CRM
            settings_model = BaseModel


        @hookimpl
        def crossledger_connectors():
            return [NoName()]
        """,
}

DISCOVERY = """\
import json
from crossledger.plugins import load_plugins

manager = load_plugins()
info = manager.infos["hubspot"]
routes = [route for route in manager.routes() if "hubspot" in (route.source, *route.targets)]
print(json.dumps({
    "connector": type(manager.connectors["hubspot"]).__module__,
    "distribution": [info.distribution, info.version],
    "routes": [[route.event_type, route.source, list(route.targets)] for route in routes],
    "connectors": sorted(manager.connectors),
}))
"""

END_TO_END = """\
import json
import sys

from crossledger.devtools.demo.run import StripeDriver, free_port
from crossledger.core.processes.embedded import EmbeddedHub, wait_until
from crossledger.devtools.sandboxes import SandboxSet
from crossledger.core.settings import HubSettings, Settings
from crossledger.plugins import load_plugins
from crossledger.plugins.emulator import ServerThread

sandboxes = SandboxSet(load_plugins().connectors, ["stripe", "hubspot"])
server = ServerThread(sandboxes.app).start()
port = free_port()
sandboxes.subscribe(f"http://127.0.0.1:{port}")  # both push to the hub: HubSpot echoes the hub's write
connectors = sandboxes.config(server.url)
settings = Settings(hub=HubSettings(broker="memory", store=f"sqlite:///{sys.argv[1]}"), connectors=connectors)
hub = EmbeddedHub(settings, port=port, threads=4).start()
stripe, hubspot = sandboxes.sandboxes["stripe"], sandboxes.sandboxes["hubspot"]
driver = StripeDriver(connectors["stripe"]["base_url"], connectors["stripe"]["api_key"])


def settled():
    return stripe.wait_for_webhooks(0) and hubspot.wait_for_webhooks(0) and hub.idle()


def companies(key):
    return [c for c in hubspot.state()["companies"] if c["properties"].get("crossledger_id") == key]


customer = driver.post("/v1/customers", name="Globex Corp", email="billing@globex.example")
key = f"customer.stripe.{customer['id']}"
landed = wait_until(lambda: companies(key) and settled(), 30)
event = driver.get("/v1/events", type="customer.created")["data"][0]
driver.post(f"/_sandbox/events/{event['id']}/resend")  # Stripe sometimes delivers an event twice
wait_until(settled, 30)
store = hub.runtime.store
canonical = store.xref_find("customer", "stripe", customer["id"])
print(json.dumps({"landed": bool(landed), "companies": companies(key), "canonical": canonical,
                  "hubspot_id": store.xref_get(canonical, "hubspot"), "dead_letters": store.dlq_count(),
                  "hubspot_webhooks": hubspot.state()["webhooks"]}))
hub.stop()
server.stop()
"""


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(content))
    return root


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The HubSpot example and the broken plugins installed in one site: (the example's copy, the site)."""
    root = tmp_path_factory.mktemp("third_party")
    example = shutil.copytree(EXAMPLE, root / EXAMPLE.name,
                              ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"))
    site = root / "site"
    pip_install(example, site)
    pip_install(write_tree(root / "crossledger-broken", BROKEN_DIST), site)
    return example, site


def last_json_line(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def test_plugins_lists_hubspot_and_reports_broken_plugins_without_failing(installed: tuple[Path, Path]) -> None:
    _, site = installed
    listing = run("crossledger", "plugins", site=site)
    assert listing.returncode == 0, listing.stderr
    rows = plugin_rows(listing.stdout)
    assert rows["hubspot"] == ["crm", "0.1.0", "deliver, fetch, probe, sandbox, webhooks"]
    assert {"stripe", "netsuite"} <= set(rows)
    assert "plugin hubspot: crossledger-hubspot 0.1.0" in listing.stdout
    problems = listing.stderr.splitlines()
    assert any(line.startswith("problem: plugin 'unimportable' failed to load: ModuleNotFoundError")
               for line in problems), listing.stderr
    assert any(line.startswith("problem: plugin 'nameless': connector") and line.endswith("lacks ['name']")
               for line in problems), listing.stderr


def test_load_plugins_finds_hubspot_through_its_entry_point(installed: tuple[Path, Path]) -> None:
    _, site = installed
    result = run("python", "-c", DISCOVERY, site=site)
    assert result.returncode == 0, result.stderr
    found = last_json_line(result.stdout)
    assert found["connector"] == "crossledger_hubspot.connector"
    assert found["distribution"] == ["crossledger-hubspot", "0.1.0"]
    assert ["customer.upserted", "stripe", ["hubspot"]] in found["routes"]
    assert "nameless" not in found["connectors"] and "hubspot" in found["connectors"]


def test_hubspot_passes_the_contract_suite(installed: tuple[Path, Path]) -> None:
    skipped = passed_tests(*installed)
    assert all(UNDECLARED in reason for reason in skipped), skipped  # its signature vectors are checked too


def test_a_stripe_customer_lands_in_hubspot_once(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, site = installed
    result = run("python", "-c", END_TO_END, str(tmp_path / "hub.db"), site=site, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = last_json_line(result.stdout)
    assert outcome["landed"] and len(outcome["companies"]) == 1, outcome
    [company] = outcome["companies"]
    assert company["properties"]["name"] == "Globex Corp"
    assert outcome["hubspot_id"] == company["id"], outcome  # the hub knows the company it made
    assert outcome["dead_letters"] == 0, outcome
    # HubSpot's signed echo of the company's creation was accepted (2xx), not retried until abandoned.
    webhooks = outcome["hubspot_webhooks"]
    assert webhooks["sent"] >= 1 and webhooks["failed_attempts"] == webhooks["abandoned"] == 0, outcome
