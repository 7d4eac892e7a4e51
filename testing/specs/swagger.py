"""Check JSON documents against a vendor's published Swagger 2.0 description.

Swagger 2.0 (Zuora's v1 API reference is published in it) differs from OpenAPI 3.0 where it matters
here in two places: a response's schema sits directly under ``responses.<status>.schema`` (no media
types), and the shared schemas are under ``#/definitions``. A Swagger 2.0 schema is a subset of JSON
Schema draft 4 (plus ``discriminator``, ``readOnly``, ``example`` and ``x-`` extensions, which
validate nothing), so the whole document is registered as one draft-4 resource and every
``#/definitions/...`` reference resolves inside it. Unknown ``format`` values (Zuora's
``decimal``, ``number``, ``URL``) are annotations: only the formats draft 4 defines are checked.
Response headers are documented too (``Zuora-Request-Id``: 36 characters), but only bodies are checked.
"""

import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from crossledger.testing.specs import documents
from crossledger.testing.specs.openapi import matching_template, path_patterns
from crossledger.testing.specs.problems import Allowed, Problem, nothing_allowed, problems
from jsonschema import Draft4Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4


class SwaggerSpec:
    """A Swagger 2.0 description, ready to say what a response should look like and whether it does."""

    URI = "urn:crossledger:swagger-spec"

    def __init__(self, document: Mapping[str, Any]) -> None:
        if str(document.get("swagger", "")) != "2.0":
            raise ValueError(f"not a Swagger 2.0 description (swagger: {document.get('swagger', 'missing')})")
        # YAML reads an unquoted ``200:`` as an integer key, which no JSON pointer can name: one JSON
        # round trip gives every key as the string a pointer names it by.
        self.document = json.loads(json.dumps(document, default=str))  # and YAML dates as text
        self._registry: Registry = Registry().with_resource(self.URI, DRAFT4.create_resource(self.document))

    @classmethod
    def load(cls, path: Path) -> "SwaggerSpec":
        return cls(documents.load(path))

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern[str], str]]:
        return path_patterns(self.document.get("paths", {}))

    def operation(self, method: str, path: str) -> str | None:
        """The description's path template for a concrete ``method`` and ``path``, or None."""
        return matching_template(self._templates, self.document.get("paths", {}), method, path)

    def response_pointer(self, method: str, path: str, status: int) -> str | None:
        """A JSON pointer to the schema documented for ``method path`` answering ``status`` (the status
        itself, else ``default``); None when it documents no schema for it. KeyError when the
        description has no such operation."""
        template = self.operation(method, path)
        if template is None:
            raise KeyError(f"the description has no operation {method.upper()} {path}")
        responses = self.document["paths"][template][method.lower()].get("responses", {})
        key = next((k for k in (str(status), "default") if k in responses), None)
        if key is None or "schema" not in responses[key]:
            return None
        return "/" + "/".join(part.replace("~", "~0").replace("/", "~1")
                              for part in ("paths", template, method.lower(), "responses", str(key), "schema"))

    def check_at(self, pointer: str, document: Any, allowed: Allowed = nothing_allowed) -> list[Problem]:
        """The problems of ``document`` against the schema at a JSON pointer into the description."""
        found = problems(self._validator(f"{self.URI}#{pointer}"), document, allowed)
        return found

    def check_definition(self, name: str, document: Any, allowed: Allowed = nothing_allowed) -> list[Problem]:
        """The problems of ``document`` against ``#/definitions/<name>``."""
        if name not in self.document.get("definitions", {}):
            raise KeyError(f"the description has no definition {name!r}")
        return self.check_at(f"/definitions/{name}", document, allowed)

    def _validator(self, ref: str) -> Any:
        return Draft4Validator({"$ref": ref}, registry=self._registry, format_checker=Draft4Validator.FORMAT_CHECKER)
