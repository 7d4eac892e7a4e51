"""Imports point one way: canonical <- plugins <- core <- actors. A module may import only the
packages to its left (and its own); core reaches the actors by module name only
(:mod:`crossledger.core.processes.composition`), never by an import. The developer tools and the
test kit sit beside the runtime: it imports neither (the CLI's developer commands alone reach
``devtools``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["canonical", "plugins", "core", "actors"]
BESIDE = {"devtools", "testing"}
DEVELOPER_COMMANDS = Path("core/cli/develop.py")


def _imported(path: Path) -> set[str]:
    """The crossledger packages ``path`` imports (``crossledger.<package>...``), wherever it does."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found |= {name.split(".")[1] for name in names if name.startswith("crossledger.") and name.count(".") >= 1}
    return found


@pytest.mark.parametrize("package", ORDER)
def test_a_package_imports_only_the_packages_to_its_left(package: str) -> None:
    forbidden = set(ORDER[ORDER.index(package) + 1:]) | BESIDE

    def refused(path: Path) -> set[str]:
        allowed = {"devtools"} if path.relative_to(ROOT) == DEVELOPER_COMMANDS else set()
        return _imported(path) & (forbidden - allowed)

    wrong = {str(path.relative_to(ROOT)): sorted(refused(path))
             for path in sorted((ROOT / package).rglob("*.py")) if refused(path)}
    assert wrong == {}


def _imported_at_load(path: Path) -> set[str]:
    """The modules ``path`` imports when it is loaded (its top-level statements)."""
    tree = ast.parse(path.read_text(), str(path))
    return {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names} | \
        {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}


def test_no_connector_loads_its_sandbox_on_the_runtime_path() -> None:
    """A connector's emulator is for tests, the demo and the bench: the connector's own modules reach
    it only inside ``sandbox()``, so a production process never loads it."""
    loaded = {str(path.relative_to(ROOT)): sorted(name for name in _imported_at_load(path) if ".sandbox" in name)
              for path in sorted((ROOT / "plugins").glob("*/*.py"))}
    assert {path: names for path, names in loaded.items() if names} == {}
