"""The pytest plugin's fixtures, used as a connector author or the project's own tests use them."""

import json
import subprocess
import sys

import httpx
import pytest
from crossledger.devtools.bench.run import customer_event, signed
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox
from crossledger.testing import FAST_RETRIES, HubFactory, MemoryRefs, SandboxFactory
from crossledger.testing import plugin as testing_plugin


def test_crossledger_plugins_loads_the_builtins(crossledger_plugins: CrossledgerPluginManager) -> None:
    assert {"stripe", "netsuite"} <= set(crossledger_plugins.connectors)
    assert crossledger_plugins.problems == []


def test_sandbox_server_serves_by_name_or_object(sandbox_server: SandboxFactory) -> None:
    by_name = sandbox_server("netsuite")
    own = NetSuiteSandbox()
    by_object = sandbox_server(own)

    assert by_name.url != by_object.url and by_object.sandbox is own
    assert by_name.settings()["base_url"] == by_name.url
    assert by_name.state()["customer"] == []
    by_name.fault(mode="http_500")
    assert httpx.get(f"{by_name.url}/anything").status_code == 500
    by_name.clear_faults()
    assert httpx.get(f"{by_name.url}/anything").status_code != 500


def test_sandbox_server_names_what_is_installed(sandbox_server: SandboxFactory) -> None:
    with pytest.raises(LookupError, match=r"no connector 'nowhere' is installed .*netsuite"):
        sandbox_server("nowhere")


def test_stub_hub_delivers_a_webhook_to_a_sandbox(sandbox_server: SandboxFactory, stub_hub: HubFactory) -> None:
    netsuite = sandbox_server("netsuite")
    stripe = {"base_url": "http://127.0.0.1:9", "api_key": "sk_test_unused", "webhook_secret": "whsec_plugin"}
    # Only Stripe -> NetSuite: no cross-reference links back to the Stripe that is not there.
    hub = stub_hub({"stripe": stripe, "netsuite": {**netsuite.settings(), "timeout_s": 1.0}},
                   routes={"customer.linked": []})
    body = customer_event(1)

    answer = hub.webhook("stripe", body, signed("whsec_plugin", body))
    hub.settle(lambda: len(netsuite.state()["customer"]) == 1, timeout=15)

    assert answer.status_code == 200
    customer_id = json.loads(body)["data"]["object"]["id"]
    canonical = hub.store.xref_find("customer", "stripe", customer_id)
    assert canonical is not None
    assert hub.store.xref_get(canonical, "netsuite") == netsuite.state()["customer"][0]["id"]
    assert hub.runtime.settings.hub.min_backoff_ms == FAST_RETRIES["min_backoff_ms"]


def test_stub_hub_settle_fails_with_the_hub_state(stub_hub: HubFactory) -> None:
    hub = stub_hub({}, max_retries=0)
    with pytest.raises(AssertionError, match=r"did not settle within 0.2 s \(idle: True, open dead letters: 0\)"):
        hub.settle(lambda: False, timeout=0.2)


def test_memory_refs_answer_like_the_store() -> None:
    refs = MemoryRefs()
    minted = refs.canonical_id("customer", "acme", "A1")

    assert minted == "customer/acme/A1" and refs.external_id(minted, "acme") == "A1"
    refs.put("customer/origin/1", "customer", "acme", "B1")
    refs.put("customer/origin/1", "customer", "acme", "B2")  # the record moved: its old id is free again
    refs.put("customer/origin/2", "customer", "acme", "A1")  # another record claims A1
    assert refs.external_id("customer/origin/1", "acme") == "B2"
    assert refs.canonical_id("customer", "acme", "B1") == "customer/acme/B1"
    assert refs.canonical_id("customer", "acme", "A1") == "customer/origin/2"
    assert refs.external_id(minted, "acme") is None
    assert refs.external_id("customer/origin/1", "other") is None


def test_the_plugin_hooks_nothing_and_imports_nothing_heavy() -> None:
    assert [name for name in vars(testing_plugin) if name.startswith("pytest_")] == []
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, crossledger.testing.plugin; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in ("httpx", "pydantic", "msgspec", "dramatiq", "starlette")
             or m.startswith(("crossledger.core", "crossledger.plugins", "crossledger.testing.contract"))]
    assert heavy == []
