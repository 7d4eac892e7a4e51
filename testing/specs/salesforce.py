"""Hold a sandbox to Salesforce's describe results and its REST API's error shape.

Salesforce publishes no OpenAPI description of its REST API, but an org describes each of its
objects (``GET /sobjects/{Type}/describe``): every field, with its type, length and whether it may
be ``null``. :class:`SObjectDescribe` turns one describe into the JSON schema of a record as REST
shows it, and compares a served describe with it; :func:`checker` checks every answer of an org's
REST API with them.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossledger.testing.specs import documents
from crossledger.testing.specs.answers import Check, Exchange
from crossledger.testing.specs.problems import Problem, problems
from jsonschema import Draft4Validator, FormatChecker

Json = dict[str, Any]

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
        """The describe recorded in a VCR cassette (its JSON body is the string at
        ``response.body.string``); ``standard_only`` drops the recording org's own custom fields
        (named ``__c``: they are that org's, not Salesforce's, though the recording marks some of
        them standard)."""
        body: Json = json.loads(documents.load(path)["response"]["body"]["string"])
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

    def violations(self, record: Any, *, whole: bool) -> list[Problem]:
        """How a record departs from this describe (``whole``: see :meth:`record_schema`)."""
        validator = Draft4Validator(self.record_schema(whole=whole), format_checker=FormatChecker())
        found: list[Problem] = problems(validator, record)
        return found

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


ERROR_SCHEMA: Json = {
    "type": "array", "minItems": 1,
    "items": {"type": "object", "required": ["message", "errorCode"], "additionalProperties": False,
              "properties": {"message": {"type": "string"}, "errorCode": {"type": "string"},
                             "fields": {"type": "array", "items": {"type": "string"}}}},
}
"""A refusal of Salesforce's REST API: ``[{"message", "errorCode", "fields"}]`` (REST API Developer
Guide, "Status Codes and Error Responses")."""


def checker(describes: dict[str, SObjectDescribe]) -> Check:
    """A :data:`~crossledger.testing.specs.answers.Check` of an org's REST API: refusals in
    Salesforce's error shape, every record of a described object as its describe says (a record read
    whole, with every described field), and a served describe with every described field as described.
    The OAuth endpoint (which answers in OAuth's shape) and the sandbox's control routes are left out."""
    errors = Draft4Validator(ERROR_SCHEMA)

    def check(exchange: Exchange) -> list[str]:
        if not exchange.is_json or not exchange.path.startswith("/services/data/"):
            return []
        body = exchange.json()
        if exchange.status >= 400:
            return [f"{exchange}: {problem}" for problem in problems(errors, body)]
        segments = [segment for segment in exchange.path.split("/")[4:] if segment]  # after /services/data/vNN.N
        match segments:
            case ["sobjects", name, "describe"] if name in describes:
                return [f"{exchange}: {found}" for found in describes[name].describe_violations(body)]
            case ["sobjects", name, _] if name in describes and exchange.status == 200:
                found = describes[name].violations(body, whole="fields=" not in exchange.query)
            case ["query", *_] if isinstance(body, dict):
                found = [problem for record in body.get("records", [])
                         if isinstance(record, dict) and record.get("attributes", {}).get("type") in describes
                         for problem in describes[record["attributes"]["type"]].violations(record, whole=False)]
            case _:
                found = []
        return [f"{exchange}: {problem}" for problem in found]

    return check
