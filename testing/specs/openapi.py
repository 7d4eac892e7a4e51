"""Check JSON documents against a vendor's published OpenAPI 3.0 description.

A vendor's OpenAPI description is the most complete statement of its API there is.
:class:`OpenAPISpec` holds one (they run to megabytes: load it once), finds the operation a concrete
request was (``GET /v1/customers/cus_123`` is Stripe's ``/v1/customers/{customer}``), the response
it documents for a status, and validates a body against that response's schema, ``$ref`` resolved,
as a response (``writeOnly`` properties must not be there) and with OpenAPI 3.0's ``nullable``
understood (see :data:`Validator`). What is wrong is a list of
:class:`~crossledger.testing.specs.problems.Problem`.
"""

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from crossledger.testing.specs import documents
from crossledger.testing.specs.problems import Allowed, Problem, nothing_allowed, problems
from jsonschema import validators
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4


def _null_or(keyword: Callable[..., Iterator[ValidationError]]) -> Callable[..., Iterator[ValidationError]]:
    def check(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
        if instance is None and schema.get("nullable") is True:
            return
        yield from keyword(validator, value, instance, schema)

    return check


Validator: Any = validators.extend(
    OAS30ReadValidator,
    {name: _null_or(OAS30ReadValidator.VALIDATORS[name]) for name in ("anyOf", "oneOf", "allOf", "enum")},
)
"""``OAS30ReadValidator``, with ``nullable: true`` letting null through ``anyOf``/``oneOf``/``allOf`` and ``enum``.

OpenAPI 3.0.0 says ``nullable`` "allows sending a null value for the defined schema"; 3.0.3 narrowed
it to the ``type`` in the same object (so null must also be listed in an ``enum``), and
openapi-schema-validator follows 3.0.3. Descriptions mean the 3.0.0 reading: Stripe's (3.0.0) marks
an optional expandable field ``{"anyOf": [id, object], "nullable": true}`` and an optional choice
``{"type": "string", "enum": [...], "nullable": true}``; Zendesk's (3.0.3) marks a ticket's
``priority`` and ``type`` as nullable enums, and its API answers ``null`` there.
"""

Errata = Mapping[str, Any]
"""Replacements for the schemas at some JSON pointers of a description (``#/components/...``), where
it is known to say less than the API does; each vendor's errata say why, entry by entry."""


@dataclass(frozen=True)
class Response:
    """What an operation documents as its answer with some status."""

    template: str
    """The operation's path template: ``/v1/customers/{customer}``."""
    key: str
    """The documented status it was found under: the status itself, its range (``4XX``) or ``default``."""
    schema: str | None
    """A JSON pointer to the schema of its JSON body; None when it documents none (``204 No Content``)."""


class OpenAPISpec:
    """An OpenAPI 3.0 description, ready to say what a response should look like and whether it does."""

    URI = "urn:crossledger:openapi-spec"

    def __init__(self, document: Mapping[str, Any], *, errata: Errata | None = None) -> None:
        version = str(document.get("openapi", ""))
        if not version.startswith("3.0"):
            raise ValueError(f"not an OpenAPI 3.0 description (openapi: {version or 'missing'})")
        self.document = _corrected(document, errata) if errata else document
        self._registry: Registry = Registry().with_resource(self.URI, DRAFT4.create_resource(dict(self.document)))

    @classmethod
    def load(cls, path: Path, *, errata: Errata | None = None) -> "OpenAPISpec":
        """Read a description stored as JSON (gzipped or not) or YAML (see :mod:`.documents`)."""
        return cls(documents.load(path), errata=errata)

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern[str], str]]:
        return path_patterns(self.document.get("paths", {}))

    def operation(self, method: str, path: str) -> str | None:
        """The spec's path template for a concrete ``method`` and ``path`` (no query string), or None."""
        return matching_template(self._templates, self.document.get("paths", {}), method, path)

    def response(self, method: str, path: str, status: int) -> Response | None:
        """What ``method path`` documents for ``status``: the status itself, else its range (``4XX``),
        else ``default``; None when it documents none of them. KeyError when there is no such operation."""
        template = self.operation(method, path)
        if template is None:
            raise KeyError(f"the spec describes no operation {method.upper()} {path}")
        responses = self.document["paths"][template][method.lower()].get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
        if key is None:
            return None
        pointer = _pointer("paths", template, method.lower(), "responses", key)
        node = responses[key]
        while "$ref" in node:  # a response defined once under #/components/responses
            pointer = node["$ref"].removeprefix("#")
            node = self._at(pointer)
        has_schema = "schema" in node.get("content", {}).get("application/json", {})
        return Response(template, key, pointer + _pointer("content", "application/json", "schema") if has_schema
                        else None)

    def response_pointer(self, method: str, path: str, status: int) -> str:
        """A JSON pointer to the schema of the JSON response of ``method path`` with ``status``.
        KeyError when the spec has none."""
        response = self.response(method, path, status)
        if response is None:
            raise KeyError(f"the spec gives {method.upper()} {path} no response for status {status}")
        if response.schema is None:
            raise KeyError(f"the spec gives {method.upper()} {response.template} {response.key} "
                           "no application/json schema")
        return response.schema

    def check(self, method: str, path: str, status: int, document: Any,
              allowed: Allowed = nothing_allowed) -> list[Problem]:
        """The problems of a response body against its operation's response schema."""
        return self.check_at(self.response_pointer(method, path, status), document, allowed)

    def check_component(self, name: str, document: Any, allowed: Allowed = nothing_allowed) -> list[Problem]:
        """The problems of ``document`` against the component schema ``name`` (``#/components/schemas/name``)."""
        if name not in self.document.get("components", {}).get("schemas", {}):
            raise KeyError(f"the spec has no component schema {name!r}")
        return self.check_at(_pointer("components", "schemas", name), document, allowed)

    def check_at(self, pointer: str, document: Any, allowed: Allowed = nothing_allowed) -> list[Problem]:
        """The problems of ``document`` against the schema at a JSON pointer into the spec."""
        validator = Validator({"$ref": f"{self.URI}#{pointer}"}, registry=self._registry,
                              format_checker=oas30_format_checker)
        found: list[Problem] = problems(validator, document, allowed)
        return found

    def _at(self, pointer: str) -> Any:
        node: Any = self.document
        for part in _parts(pointer):
            node = node[part]
        return node


def path_patterns(paths: Mapping[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    """Each path template of a description (OpenAPI 3 or Swagger 2) as a pattern; templates with
    more literal segments come first, so ``/v1/invoices/search`` wins over ``/v1/invoices/{invoice}``."""
    def literal_segments(template: str) -> int:
        return sum(not segment.startswith("{") for segment in template.split("/"))

    ordered = sorted(paths, key=lambda t: (-literal_segments(t), t))
    return [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"), t) for t in ordered]


def matching_template(patterns: list[tuple[re.Pattern[str], str]], paths: Mapping[str, Any], method: str,
                      path: str) -> str | None:
    """The template of ``patterns`` a concrete ``method`` and ``path`` is an operation of, or None."""
    for pattern, template in patterns:
        if pattern.match(path) and method.lower() in paths[template]:
            return template
    return None


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _parts(pointer: str) -> list[str]:
    """The keys a JSON pointer (with or without its leading ``#``) names."""
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.removeprefix("#").split("/")[1:]]


def _corrected(document: Mapping[str, Any], errata: Errata) -> dict[str, Any]:
    """A copy of ``document`` with each erratum's schema in place of the one at its pointer."""
    corrected = copy.deepcopy(dict(document))
    for pointer, schema in errata.items():
        *parents, last = _parts(pointer)
        node: Any = corrected
        for part in parents:
            node = node[part]
        if last not in node:
            raise KeyError(f"an erratum for {pointer}, where the description has nothing")
        node[last] = schema
    return corrected
