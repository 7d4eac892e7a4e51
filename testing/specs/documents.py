"""Read a vendor's description from disk: JSON (gzipped or not) or YAML.

Stripe's spec is stored as gzipped JSON (JSON loads many times faster than YAML, and its 5 MB pack
to 0.4). Zendesk's is YAML 1.2 with an unquoted ``=`` that PyYAML, a YAML 1.1 reader, takes for the
obsolete ``tag:yaml.org,2002:value``; :class:`_Yaml12Loader` reads it as the plain string it is.
Salesforce's describes are VCR cassettes, YAML too.
"""

import gzip
import json
from pathlib import Path
from typing import Any

import yaml


class _Yaml12Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader that reads YAML 1.1's ``=`` value tag as the plain scalar YAML 1.2 makes it."""


_Yaml12Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load(path: Path) -> Any:
    """The document at ``path``: ``.json``, ``.json.gz``, ``.yaml`` or ``.yml``."""
    if path.suffix in (".yaml", ".yml"):
        with path.open(encoding="utf-8") as stream:
            return yaml.load(stream, Loader=_Yaml12Loader)  # a safe loader, with one more scalar tag
    if path.suffixes[-2:] == [".json", ".gz"]:
        return json.loads(gzip.decompress(path.read_bytes()))
    if path.suffix == ".json":
        return json.loads(path.read_bytes())
    raise ValueError(f"{path.name}: not a description this reads (.json, .json.gz, .yaml, .yml)")
