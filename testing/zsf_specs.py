"""Hold the Zendesk and Salesforce sandboxes to their vendors' published descriptions.

A sandbox is only as useful as it is faithful: a connector tested against a sandbox that answers
``null`` where the API always gives a string, or an error body the API never sends, passes here and
fails in production. The checks below read the vendors' own documents and say where an answer
departs from them:

- :class:`OpenAPIDescription`: an OpenAPI 3.0 document (Zendesk's Support API). A response is
  checked against the schema its operation documents for that status, with OpenAPI 3.0 semantics
  (``nullable``, ``readOnly``/``writeOnly``) by ``openapi-schema-validator``; a status the operation
  does not document is checked against the vendor's error shape, when one is given.
- :class:`SObjectDescribe`: a Salesforce describe result (``GET /sobjects/{Type}/describe``). A record
  is checked field by field: every field the describe lists is there (for a whole record), has the
  JSON type of its describe type, and is ``null`` only where the describe says ``nillable``.
- :class:`CheckedApp`: wraps a sandbox's ASGI app and checks every JSON answer it gives with one of
  the above, so a test sees the departures of every call made through any client (zenpy,
  simple-salesforce, the connectors).

Loading: the Zendesk document is YAML 1.2 with an unquoted ``=`` that PyYAML reads as the obsolete
``tag:yaml.org,2002:value``; :func:`load_yaml` reads it as the plain string it is. Salesforce's
describes are VCR cassettes whose JSON body is the string at ``response.body.string``.
"""

import copy
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

Json = dict[str, Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Checker = Callable[[str, str, int, Any], list[str]]
"""``(method, target, status, JSON body) -> departures``, an empty list when the answer is faithful;
the target is the path, with ``?`` and the query string when there is one."""


class _Yaml12Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader that reads YAML 1.1's ``=`` value tag as the plain scalar YAML 1.2 makes it."""


_Yaml12Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@cache
def load_yaml(path: Path) -> Any:
    """The YAML document at ``path``, read once per process (the Zendesk one is 1.5 MB)."""
    with path.open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_Yaml12Loader)  # a safe loader, with one more scalar tag


def _messages(errors: Any, where: str) -> list[str]:
    """One line per departure: where in the body, and what is wrong there."""
    return [f"{where}: {_path(error)}: {_reason(error)}"
            for error in sorted(errors, key=lambda error: list(map(str, error.absolute_path)))]


def _path(error: ValidationError) -> str:
    return "/".join(map(str, error.absolute_path)) or "(body)"


def _reason(error: ValidationError) -> str:
    """The error's message; for a value matching none of several shapes (``anyOf``), what each
    shape found wrong, rather than the whole value."""
    if not error.context:
        return str(error.message)
    by_shape: dict[int, list[str]] = {}
    for sub in error.context:
        by_shape.setdefault(sub.schema_path[0] if sub.schema_path else 0, []).append(f"{_path(sub)}: {sub.message}")
    return "matches none of its documented shapes: " + " | ".join("; ".join(found) for found in by_shape.values())


# -- OpenAPI ---------------------------------------------------------------------------------------------------


def _nullable_enum(validator: Any, enums: Any, instance: Any, schema: Json) -> Any:
    """``enum`` where ``nullable: true`` lets ``null`` through: what OpenAPI 3.0 documents mean by a
    nullable enum (Zendesk's ``priority`` and ``type`` of a ticket), though 3.0.3 asks for ``null``
    in the list too."""
    if instance is None and schema.get("nullable") is True:
        return
    if instance not in enums:
        yield ValidationError(f"{instance!r} is not one of {enums!r}")


_ResponseValidator = validators.extend(OAS30ReadValidator, {"enum": _nullable_enum})


@dataclass(frozen=True)
class _Operation:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int
    responses: Json
    pointer: str


def _pointer_part(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


class OpenAPIDescription:
    """The operations of an OpenAPI 3.0 document, and what each documents as its responses.

    ``strip_suffix`` is dropped from request paths before they are matched (Zendesk serves every
    path with and without ``.json``); ``error_schema`` (a JSON schema) checks the statuses an
    operation does not document; ``errata`` replaces the schemas at some JSON pointers, where the
    document is known to say less than the API does (each with its reason, see
    :data:`ZENDESK_ERRATA`)."""

    def __init__(self, document: Json, *, strip_suffix: str = "", error_schema: Json | None = None,
                 errata: dict[str, Json] | None = None) -> None:
        if errata:
            document = copy.deepcopy(document)
            for pointer, schema in errata.items():
                *parents, last = _parts(pointer)
                node: Any = document
                for part in parents:
                    node = node[part]
                node[last] = schema
        self.document = document
        self.strip_suffix = strip_suffix
        self.error_schema = error_schema
        self._operations: dict[str, list[_Operation]] = {}
        for template, item in document["paths"].items():
            segments = template.strip("/").split("/")
            pattern = re.compile("/" + "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segments))
            literal = sum(not s.startswith("{") for s in segments)
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    pointer = f"#/paths/{_pointer_part(template)}/{method}/responses"
                    self._operations.setdefault(method.upper(), []).append(
                        _Operation(template, pattern, literal, operation["responses"], pointer))

    @classmethod
    def from_file(cls, path: Path, **options: Any) -> "OpenAPIDescription":
        return cls(load_yaml(path), **options)

    def operation(self, method: str, path: str) -> _Operation | None:
        """The operation ``method path`` is, the most literal template winning (``/organizations/search``
        over ``/organizations/{organization_id}``)."""
        path = path.removesuffix(self.strip_suffix) if self.strip_suffix else path
        found = [op for op in self._operations.get(method.upper(), []) if op.pattern.fullmatch(path)]
        return max(found, key=lambda op: op.literal_segments, default=None)

    def violations(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """How the answer ``status`` + ``body`` to ``method path`` departs from the document."""
        where = f"{method} {path} -> {status}"
        operation = self.operation(method, path.partition("?")[0])
        if operation is None:
            return [f"{where}: the document has no such operation"]
        response = operation.responses.get(str(status)) or operation.responses.get(f"{str(status)[0]}XX")
        if response is None:
            if status < 400:
                return [f"{where}: {operation.template} documents no {status} answer"]
            if self.error_schema is None:
                return []
            return _messages(Draft4Validator(self.error_schema).iter_errors(body), where)
        key = str(status) if str(status) in operation.responses else f"{str(status)[0]}XX"
        pointer = response.get("$ref", f"{operation.pointer}/{key}")
        schema = self._resolve(pointer).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        validator = _ResponseValidator({**self.document, "$ref": _schema_pointer(pointer)},
                                       format_checker=oas30_format_checker)
        return _messages(validator.iter_errors(body), where)

    def _resolve(self, pointer: str) -> Json:
        node: Any = self.document
        for part in _parts(pointer):
            node = node[part]
        if "$ref" in node:
            return self._resolve(node["$ref"])
        return node  # type: ignore[no-any-return]


def _parts(pointer: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.removeprefix("#/").split("/")]


def _schema_pointer(response_pointer: str) -> str:
    return f"{response_pointer}/content/{_pointer_part('application/json')}/schema"


ZENDESK_ERROR_SCHEMA: Json = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "description": {"type": "string"},
        "details": {"type": "object", "additionalProperties": {"type": "array", "items": {
            "type": "object", "required": ["description", "error"],
            "properties": {"description": {"type": "string"}, "error": {"type": "string"}}}}},
    },
    "additionalProperties": False,
}
"""Zendesk's error body where an operation documents none: ``{"error": "RecordNotFound",
"description": "Not found"}`` (the document's ``ErrorNotFoundExample`` and 404 examples), with
``details`` for validation errors (``{"name": [{"description": "Name: has already been taken",
"error": "DuplicateValue"}]}``, developer.zendesk.com "Errors")."""


ZENDESK_ERRATA: dict[str, Json] = {
    "#/components/schemas/OrganizationObject/properties/organization_fields/additionalProperties": {
        "anyOf": [{"type": "string", "nullable": True}, {"type": "number"}, {"type": "boolean"}]},
}
"""Where Zendesk's description says less than its API does: a custom organization field's value is
documented as a string or a number, but a checkbox field holds a boolean and a field with no value
(never set, or cleared with ``null``, as the hub clears an ended SLA) is ``null``
(developer.zendesk.com, "Custom organization fields": "you can clear a field by setting it to
null")."""


# -- Salesforce describe ---------------------------------------------------------------------------------------


_DESCRIBE_TYPES: dict[str, Json] = {
    "boolean": {"type": "boolean"},
    "int": {"type": "integer"},
    "double": {"type": "number"}, "currency": {"type": "number"}, "percent": {"type": "number"},
    "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
    "datetime": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$"},
    "time": {"type": "string"},
    "address": {"type": "object", "properties": {
        name: {"type": ["string", "null"]} for name in ("street", "city", "state", "postalCode", "country",
                                                         "geocodeAccuracy")} | {
        name: {"type": ["number", "null"]} for name in ("latitude", "longitude")}},
    "location": {"type": "object"},
}
"""A describe type as JSON in REST records; every other type (id, reference, string, textarea, picklist,
phone, url, email...) is a string."""


def _field_schema(described: Json) -> Json:
    schema = dict(_DESCRIBE_TYPES.get(described["type"], {"type": "string"}))
    if schema["type"] == "string" and described.get("length"):
        schema["maxLength"] = described["length"]
    if described["nillable"]:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


@dataclass
class SObjectDescribe:
    """One object's describe result, and the JSON schema of its records in REST answers."""

    body: Json
    fields: dict[str, Json] = field(init=False)

    def __post_init__(self) -> None:
        self.fields = {described["name"]: described for described in self.body["fields"]}

    @classmethod
    def from_cassette(cls, path: Path, *, standard_only: bool = True) -> "SObjectDescribe":
        """The describe recorded in a VCR cassette; ``standard_only`` drops the recording org's own
        custom fields (named ``__c``: they are that org's, not Salesforce's, though the recording
        marks some of them standard)."""
        body: Json = json.loads(load_yaml(path)["response"]["body"]["string"])
        if standard_only:
            body = {**body, "fields": [f for f in body["fields"] if not f["name"].endswith("__c")]}
        return cls(body)

    @property
    def name(self) -> str:
        return str(self.body["name"])

    def record_schema(self, *, whole: bool) -> Json:
        """Records as REST shows them: ``attributes`` and the described fields; a ``whole`` record
        (``GET /sobjects/{Type}/{Id}`` without ``fields``) has every one of them."""
        properties = {name: _field_schema(described) for name, described in self.fields.items()}
        properties["attributes"] = {"type": "object", "required": ["type", "url"],
                                    "properties": {"type": {"const": self.name}, "url": {"type": "string"}}}
        return {"type": "object", "properties": properties,
                "required": ["attributes", *self.fields] if whole else ["attributes"]}

    def violations(self, record: Any, *, whole: bool, where: str = "") -> list[str]:
        validator = Draft4Validator(self.record_schema(whole=whole), format_checker=FormatChecker())
        return _messages(validator.iter_errors(record), where or self.name)

    def describe_violations(self, served: Json) -> list[str]:
        """How a served describe departs from this one: each of these fields must be served with the
        same type, length, nillability, createability and updateability."""
        shown = {described["name"]: described for described in served.get("fields", [])}
        found: list[str] = []
        for name, expected in self.fields.items():
            actual = shown.get(name)
            if actual is None:
                found.append(f"{self.name}.{name}: not in the served describe")
                continue
            found += [f"{self.name}.{name}: {key} is {actual.get(key)!r}, Salesforce says {expected[key]!r}"
                      for key in ("type", "length", "nillable", "createable", "updateable", "referenceTo")
                      if actual.get(key) != expected[key]]
        return found


SALESFORCE_ERROR_SCHEMA: Json = {
    "type": "array", "minItems": 1,
    "items": {"type": "object", "required": ["message", "errorCode"], "additionalProperties": False,
              "properties": {"message": {"type": "string"}, "errorCode": {"type": "string"},
                             "fields": {"type": "array", "items": {"type": "string"}}}},
}
"""A refusal of Salesforce's REST API: ``[{"message", "errorCode", "fields"}]`` (REST API Developer
Guide, "Status Codes and Error Responses")."""


def salesforce_checker(describes: dict[str, SObjectDescribe]) -> Checker:
    """A :data:`Checker` for a Salesforce org's REST API: refusals in Salesforce's error shape, every
    record of a described object as its describe says (a record read whole, with every described
    field), and a served describe with every described field as described."""
    errors = Draft4Validator(SALESFORCE_ERROR_SCHEMA)

    def check(method: str, target: str, status: int, body: Any) -> list[str]:
        path, _, query = target.partition("?")
        where = f"{method} {path} -> {status}"
        if not path.startswith("/services/data/"):
            return []  # the OAuth endpoint answers in OAuth's shape; the sandbox's control routes
        if status >= 400:
            return _messages(errors.iter_errors(body), where)
        segments = [segment for segment in path.split("/")[4:] if segment]  # after /services/data/vNN.N
        match segments:
            case ["sobjects", name, "describe"] if name in describes:
                return describes[name].describe_violations(body)
            case ["sobjects", name, _] if name in describes and status == 200:
                return describes[name].violations(body, whole="fields=" not in query, where=where)
            case ["query", *_] if isinstance(body, dict):
                return [problem for record in body.get("records", [])
                        if isinstance(record, dict) and record.get("attributes", {}).get("type") in describes
                        for problem in describes[record["attributes"]["type"]].violations(record, whole=False,
                                                                                          where=where)]
        return []

    return check


# -- checking every answer -----------------------------------------------------------------------------------


@dataclass
class CheckedApp:
    """An ASGI app whose every JSON answer is checked by ``checker``; :attr:`departures` collects
    what was found, :attr:`checked` counts the answers looked at."""

    app: ASGIApp
    checker: Checker
    departures: list[str] = field(default_factory=list)
    checked: int = 0

    def take_departures(self) -> list[str]:
        """The departures found so far, forgotten here (so the next test starts clean)."""
        found, self.departures = self.departures, []
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._check(scope, started, b"".join(chunks))
            await send(message)

        await self.app(scope, receive, capture)

    def _check(self, scope: Scope, started: Message, body: bytes) -> None:
        headers = {key.decode().lower(): value.decode() for key, value in started.get("headers", [])}
        if "json" not in headers.get("content-type", "") or not body:
            return
        self.checked += 1
        # Under a Mount the path still starts with the mount's prefix, which root_path names.
        path = str(scope.get("path", "")).removeprefix(str(scope.get("root_path", "")))
        query = scope.get("query_string", b"").decode("latin-1")
        path = f"{path}?{query}" if query else path
        try:
            self.departures += self.checker(scope["method"], path, int(started["status"]), json.loads(body))
        except Exception as error:  # a broken check must fail the test, not the answer
            self.departures.append(f"{scope['method']} {path}: the check itself failed: {error!r}")
