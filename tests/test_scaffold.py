"""``crossledger new-connector``: the package it makes installs, passes the contract suite as made, is
ruff-clean and shows in ``crossledger plugins``; a bad name, kind or directory is a one-line error.

Packages are installed with pip into a directory of their own (``--target``, no dependencies) and
used through PYTHONPATH in subprocesses, so no test changes the environment it runs in.
``test_third_party`` installs the HubSpot example with the same helpers.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crossledger.devtools.scaffold.make import ScaffoldError, scaffold

BIN = Path(sys.executable).parent


def isolated_env(site: Path | None) -> dict[str, str]:
    """This environment with ``site`` (and nothing else) on PYTHONPATH."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return env | {"PYTHONPATH": str(site)} if site else env


def run(*command: str, site: Path | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` with a tool of this environment (``crossledger``, ``ruff``) or ``python -m ...``."""
    program = sys.executable if command[0] == "python" else str(BIN / command[0])
    return subprocess.run([program, *command[1:]], capture_output=True, text=True, timeout=timeout,
                          env=isolated_env(site), cwd=cwd)


def pip_install(package: Path, site: Path) -> None:
    """Install the source tree ``package`` into ``site`` only (pip builds it in place: pass a copy)."""
    done = run("python", "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(package),
               timeout=300)
    assert done.returncode == 0, f"pip could not install {package.name}:\n{done.stderr}"


def passed_tests(package: Path, site: Path) -> list[str]:
    """Run the package's own test suite in a subprocess that sees it installed in ``site``; it must
    pass. The reasons of the tests it skipped."""
    result = run("python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:logging", "tests",
                 site=site, cwd=package)
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
    return [line.split(": ", 1)[-1] for line in result.stdout.splitlines() if line.startswith("SKIPPED")]


UNDECLARED = "does not declare Capability"
"""How the contract suite skips what a connector does not claim to do (polling, say)."""


def plugin_rows(listing: str) -> dict[str, list[str]]:
    """The rows of ``crossledger plugins``' connector table, by connector name."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listing.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in rows}


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``crossledger new-connector acme`` made and installed: (the package, the site it is installed in)."""
    root = tmp_path_factory.mktemp("scaffold")
    made = run("crossledger", "new-connector", "acme", "--dir", str(root))
    assert made.returncode == 0, made.stderr
    package, site = root / "crossledger-acme", root / "site"
    pip_install(package, site)
    return package, site


def test_generated_package_passes_the_contract_suite(acme: tuple[Path, Path]) -> None:
    skipped = passed_tests(*acme)
    # Only what it does not claim, and the signature vectors its author is told to add from the docs.
    assert all(UNDECLARED in reason or "no documented signature vectors" in reason for reason in skipped), skipped


SANDBOX_LISTING = """
import json, time
from starlette.testclient import TestClient
from crossledger_acme.sandbox import AcmeSandbox

sandbox = AcmeSandbox()
client = TestClient(sandbox.app, headers={"Authorization": f"Bearer {sandbox.api_key}"})
first = client.put("/v1/customers/external/a", json={"name": "A"}).json()
time.sleep(int(time.time()) + 1.05 - time.time())
second = client.put("/v1/customers/external/b", json={"name": "B"}).json()
answers = {query: client.get(f"/v1/customers?{query}") for query in (
    f"updated_since={second['updated']}", f"updated_since={first['updated']}&limit=1",
    "updated_since=yesterday", "updated_since=")}
print(json.dumps({query: [answer.status_code, answer.json()] for query, answer in answers.items()}))
"""


def test_generated_sandbox_lists_by_updated_since(acme: tuple[Path, Path]) -> None:
    _, site = acme
    done = run("python", "-c", SANDBOX_LISTING, site=site)
    assert done.returncode == 0, done.stderr
    answers = list(json.loads(done.stdout).values())
    [since_second, since_first, not_a_number, empty] = answers
    assert since_second[0] == 200 and [c["name"] for c in since_second[1]["data"]] == ["B"]
    assert since_second[1]["next_cursor"] is None
    assert since_first[0] == 200 and [c["name"] for c in since_first[1]["data"]] == ["A"]
    assert since_first[1]["next_cursor"] == since_first[1]["data"][0]["id"]  # the cursor: the last id read
    for status, body in (not_a_number, empty):
        assert status == 400 and body["error"] == {"code": "invalid_request",
                                                   "message": "updated_since must be an integer"}


def test_generated_package_is_ruff_clean(acme: tuple[Path, Path]) -> None:
    package, _ = acme
    result = run("ruff", "check", "--no-cache", str(package))
    assert result.returncode == 0, result.stdout


def test_crossledger_plugins_lists_the_new_connector(acme: tuple[Path, Path]) -> None:
    _, site = acme
    listing = run("crossledger", "plugins", site=site)
    assert listing.returncode == 0, listing.stderr
    assert plugin_rows(listing.stdout)["acme"] == ["crm", "0.1.0", "deliver, fetch, list, probe, sandbox, webhooks"]
    assert "plugin acme: crossledger-acme 0.1.0" in listing.stdout
    assert listing.stderr == ""  # no problems reported


@pytest.mark.parametrize(("args", "message"), [
    (["Acme"], "invalid connector name 'Acme'"),
    (["acme-crm"], "invalid connector name 'acme-crm'"),
    (["acme__crm"], "invalid connector name 'acme__crm'"),
    (["9acme"], "invalid connector name '9acme'"),
    (["a" * 31], "at most 30 characters"),
    (["stripe"], "a connector named 'stripe' is already installed"),
    (["acme", "--kind", "ledger"], "invalid kind 'ledger': use one of crm, billing, erp, support"),
    (["acme", "--dir", "no/such/dir"], "directory no/such/dir does not exist"),
])
def test_bad_requests_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("crossledger", "new-connector", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-made


def test_an_existing_directory_is_left_alone(tmp_path: Path) -> None:
    existing = tmp_path / "crossledger-acme"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    result = run("crossledger", "new-connector", "acme", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {existing} already exists; remove it or pass another --dir"
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]


def test_names_and_kind_shape_the_package(tmp_path: Path) -> None:
    root = scaffold("acme_billing", kind="billing", parent=tmp_path)
    assert root == tmp_path / "crossledger-acme-billing"
    connector = (root / "src" / "crossledger_acme_billing" / "connector.py").read_text()
    assert 'SYSTEM = "acme_billing"' in connector
    assert "class AcmeBillingConnector(BaseConnector, ListsPages):" in connector
    assert "kind: ClassVar[SystemKind] = SystemKind.BILLING" in connector
    assert 'SIGNATURE_HEADER = "X-Acme-Billing-Signature"' in connector
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "crossledger-acme-billing"' in pyproject
    assert 'acme_billing = "crossledger_acme_billing.plugin"' in pyproject
    with pytest.raises(ScaffoldError, match="already installed"):
        scaffold("acme", parent=tmp_path, taken={"acme"})
