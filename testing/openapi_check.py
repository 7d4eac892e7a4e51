"""Check JSON documents against a vendor's published OpenAPI 3.0 description.

A sandbox is only as good as its likeness to the real API, and a vendor's OpenAPI description is
the most complete statement of that API there is. :class:`OpenAPISpec` loads one (once: they run to
megabytes), finds the operation a concrete request was (``GET /v1/customers/cus_123`` is the
spec's ``/v1/customers/{customer}``), the schema of its response for a status, and validates a
body against it with ``$ref`` resolved and OpenAPI 3.0's ``nullable`` understood
(openapi-schema-validator's ``OAS30Validator`` on jsonschema; see :data:`Validator` for the one
reading of ``nullable`` it is taught).

Every failure is a :class:`Problem` that names where it is in the document, the schema keyword
that failed and why. A caller that knows of accepted departures (a spec older than the API version
a sandbox speaks, say) passes ``allowed``: problems it accepts are dropped, and a value that must
match one of several schemas (``anyOf``: an id or the expanded object) passes when every problem
of one of them is accepted. What is left is a real departure from the spec.
"""

import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

Location = tuple[str | int, ...]
"""Where a value is in a document: keys and list indexes from its root."""

@dataclass(frozen=True)
class Problem:
    """One way a document departs from its schema."""

    location: Location
    """Where: for a missing property, the object that lacks it."""
    keyword: str
    """The schema keyword that failed: ``required``, ``type``, ``enum``, ``maxLength``..."""
    message: str = field(compare=False)
    """Why, in the validator's words (two problems differing only in wording are one)."""
    name: str | None = None
    """The property concerned: the missing one for ``required``, else the last key of ``location``."""

    def __str__(self) -> str:
        where = "/".join(map(str, self.location)) or "(root)"
        return f"{where}: {self.message} [{self.keyword}]"


Allowed = Callable[[Any, Problem], bool]
"""Whether a problem (seen in the given whole document) is an accepted departure."""


def _null_or(keyword: Callable[..., Iterator[ValidationError]]) -> Callable[..., Iterator[ValidationError]]:
    def check(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
        if instance is None and schema.get("nullable") is True:
            return
        yield from keyword(validator, value, instance, schema)

    return check


Validator: Any = validators.extend(
    OAS30Validator, {name: _null_or(OAS30Validator.VALIDATORS[name]) for name in ("anyOf", "oneOf", "allOf", "enum")}
)
"""``OAS30Validator``, with ``nullable: true`` letting null through ``anyOf``/``oneOf``/``allOf`` and ``enum``.

OpenAPI 3.0.0 says ``nullable`` "allows sending a null value for the defined schema"; 3.0.3 narrowed
it to the ``type`` in the same object (so null must also be listed in an ``enum``), and
openapi-schema-validator follows 3.0.3. Specs written to 3.0.0 (Stripe's, say) mark an optional
expandable field ``{"anyOf": [id, object], "nullable": true}`` and an optional choice
``{"type": "string", "enum": [...], "nullable": true}``, which only the 3.0.0 reading lets be null.
"""


def _nothing_allowed(document: Any, problem: Problem) -> bool:
    return False


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


class OpenAPISpec:
    """An OpenAPI 3.0 description, ready to say what a response should look like and whether it does."""

    URI = "urn:crossledger:openapi-spec"

    def __init__(self, document: Mapping[str, Any]) -> None:
        version = str(document.get("openapi", ""))
        if not version.startswith("3.0"):
            raise ValueError(f"not an OpenAPI 3.0 description (openapi: {version or 'missing'})")
        self.document = document
        self._registry: Registry = Registry().with_resource(self.URI, DRAFT4.create_resource(dict(document)))

    @classmethod
    def load(cls, path: Path) -> "OpenAPISpec":
        """Read a description stored as JSON, gzipped (``.json.gz``) or not. Convert a YAML one first:
        JSON loads many times faster."""
        raw = path.read_bytes()
        return cls(json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw))

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern[str], str]]:
        """Each path template as a pattern; templates with more literal segments come first, so
        ``/v1/invoices/search`` wins over ``/v1/invoices/{invoice}``."""
        def literal_segments(template: str) -> int:
            return sum(not segment.startswith("{") for segment in template.split("/"))

        ordered = sorted(self.document.get("paths", {}), key=lambda t: (-literal_segments(t), t))
        return [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"), t) for t in ordered]

    def operation(self, method: str, path: str) -> str | None:
        """The spec's path template for a concrete ``method`` and ``path`` (no query string), or None."""
        for pattern, template in self._templates:
            if pattern.match(path) and method.lower() in self.document["paths"][template]:
                return template
        return None

    def response_pointer(self, method: str, path: str, status: int) -> str:
        """A JSON pointer to the schema of the JSON response of ``method path`` with ``status``: the
        status itself, else its range (``4XX``), else ``default``. KeyError when the spec has none."""
        template = self.operation(method, path)
        if template is None:
            raise KeyError(f"the spec describes no operation {method.upper()} {path}")
        responses = self.document["paths"][template][method.lower()].get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
        if key is None:
            raise KeyError(f"the spec gives {method.upper()} {template} no response for status {status}")
        content = responses[key].get("content", {})
        if "application/json" not in content or "schema" not in content["application/json"]:
            raise KeyError(f"the spec gives {method.upper()} {template} {key} no application/json schema")
        return _pointer("paths", template, method.lower(), "responses", key, "content", "application/json", "schema")

    def check(
        self, method: str, path: str, status: int, document: Any, allowed: Allowed = _nothing_allowed
    ) -> list[Problem]:
        """The problems of a response body against its operation's response schema."""
        return self.check_at(self.response_pointer(method, path, status), document, allowed)

    def check_component(self, name: str, document: Any, allowed: Allowed = _nothing_allowed) -> list[Problem]:
        """The problems of ``document`` against the component schema ``name`` (``#/components/schemas/name``)."""
        if name not in self.document.get("components", {}).get("schemas", {}):
            raise KeyError(f"the spec has no component schema {name!r}")
        return self.check_at(_pointer("components", "schemas", name), document, allowed)

    def check_at(self, pointer: str, document: Any, allowed: Allowed = _nothing_allowed) -> list[Problem]:
        """The problems of ``document`` against the schema at a JSON pointer into the spec."""
        validator = Validator({"$ref": f"{self.URI}#{pointer}"}, registry=self._registry)
        found: list[Problem] = []
        for error in validator.iter_errors(document):
            found += _remaining(error, document, allowed)
        return list(dict.fromkeys(found))


def _problems_of(error: ValidationError) -> Iterator[Problem]:
    """The problems one validation error stands for (one per missing property of a ``required``)."""
    location: Location = tuple(error.absolute_path)
    keyword = str(error.validator)
    if keyword == "required" and isinstance(error.instance, Mapping):
        for name in error.validator_value:
            if name not in error.instance:
                yield Problem(location, keyword, f"{name!r} is a required property", name)
        return
    name = next((part for part in reversed(location) if isinstance(part, str)), None)
    yield Problem(location, keyword, error.message, name)


def _remaining(error: ValidationError, document: Any, allowed: Allowed) -> list[Problem]:
    """The problems behind ``error`` that ``allowed`` does not accept.

    An ``anyOf``/``oneOf`` that no branch matched is fine when one branch's problems are all accepted;
    otherwise what is wrong is told by the branch that came closest: one for the instance's type (an
    expanded object is judged as the object, not as the id it could have been), with fewest problems.
    """
    if error.validator in ("anyOf", "oneOf") and error.context:
        here = tuple(error.absolute_path)
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        left = [list(dict.fromkeys(p for sub in subs for p in _remaining(sub, document, allowed)))
                for subs in branches.values()]
        if any(not problems for problems in left):
            return []
        return min(left, key=lambda problems: (any(p.keyword == "type" and p.location == here for p in problems),
                                               len(problems)))
    return [problem for problem in _problems_of(error) if not allowed(document, problem)]


# -- Recording what a served app answers ------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request an app answered: what was asked and what came back."""

    method: str
    path: str
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """ASGI middleware that keeps every HTTP exchange of the app it wraps, so a test can drive a
    sandbox with any client (an official SDK included) and check afterwards all that it answered.

    ``path`` is the path within the app (a mount's prefix is left out), without the query string.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        chunks: list[bytes] = []

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording_send)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        self.exchanges.append(Exchange(scope["method"], path, status, b"".join(chunks)))
