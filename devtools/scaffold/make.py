"""``crossledger new-connector NAME``: a new third-party connector package, ready to adapt.

:func:`scaffold` writes ``crossledger-NAME/``: an installable distribution whose plugin registers
through the ``crossledger`` entry-point group, with a working connector, its sandbox and the
contract suite's kit. As generated it passes the contract suite against its own sandbox, so its
author starts from green and changes one thing at a time.

The package is the tree under ``templates/`` (package data), each file a :class:`string.Template`
named as its path in the package plus ``.tmpl``; the path is a template too. Placeholders:
``${name}`` (the connector name, ``acme_crm``), ``${Class}`` (``AcmeCrm``), ``${Header}``
(``Acme-Crm``, for HTTP header names), ``${kind}`` / ``${KIND}`` (``crm`` / ``CRM``), ``${package}``
(``crossledger_acme_crm``), ``${dist}`` (``crossledger-acme-crm``) and ``${requirement}`` (the
crossledger it was made with). The generated connector speaks to a made-up but typical REST system
(described in its docstring), which its sandbox emulates; each part the author must change for
their real system carries a TODO.
"""

import importlib.metadata
import importlib.resources
import re
from collections.abc import Iterator, Set
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from string import Template

from crossledger.plugins.types import SystemKind

NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
MAX_NAME = 30
TEMPLATES = "templates"
SUFFIX = ".tmpl"


class ScaffoldError(Exception):
    """The package cannot be made as asked; the message is one line for the operator."""


def check_name(name: str, taken: Set[str]) -> None:
    """Refuse a name that cannot be a package, a canonical id segment, or a new connector's name."""
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise ScaffoldError(
            f"invalid connector name {name!r}: use lowercase letters and digits, words joined by single '_', "
            f"starting with a letter, at most {MAX_NAME} characters (it becomes the package crossledger_<name>, "
            "canonical ids customer/<name>/... and the URL /webhooks/<name>)")
    if name in taken:
        raise ScaffoldError(f"a connector named {name!r} is already installed; choose another name")


def placeholders(name: str, kind: str) -> dict[str, str]:
    """The values the templates are filled with, for connector ``name`` of system ``kind``."""
    try:
        system_kind = SystemKind(kind)
    except ValueError:
        raise ScaffoldError(f"invalid kind {kind!r}: use one of {', '.join(k.value for k in SystemKind)}") from None
    words = [word.capitalize() for word in name.split("_")]
    return {"name": name, "Class": "".join(words), "Header": "-".join(words), "kind": system_kind.value,
            "KIND": system_kind.name, "package": f"crossledger_{name}", "dist": f"crossledger-{name.replace('_', '-')}",
            "requirement": f"crossledger>={importlib.metadata.version('crossledger')}"}


def scaffold(name: str, *, kind: str = "crm", parent: Path = Path("."), taken: Set[str] = frozenset()) -> Path:
    """Write the package ``crossledger-NAME/`` under ``parent``; the new directory.

    ``taken`` are the names of installed connectors, which a new one must not reuse (the hub
    would skip it as a duplicate).
    """
    check_name(name, taken)
    values = placeholders(name, kind)
    if not parent.is_dir():
        raise ScaffoldError(f"directory {parent} does not exist")
    root = parent / values["dist"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists; remove it or pass another --dir")
    for path, template in templates():
        target = root / Template(str(path)).substitute(values)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return root


def templates() -> Iterator[tuple[PurePosixPath, Traversable]]:
    """Each template file, with its path in the new package (still a template: ``src/${package}/...``).
    Read as package resources, so it works from a wheel as from a source tree."""

    def walk(folder: Traversable, path: PurePosixPath) -> Iterator[tuple[PurePosixPath, Traversable]]:
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
            if entry.is_dir():
                yield from walk(entry, path / entry.name)
            elif entry.name.endswith(SUFFIX):
                yield path / entry.name.removesuffix(SUFFIX), entry

    return walk(importlib.resources.files(__package__ or __name__).joinpath(TEMPLATES), PurePosixPath())

