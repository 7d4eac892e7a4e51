"""What holding a sandbox to Zendesk's description of its Support API needs beyond OpenAPI.

Zendesk serves every path with and without ``.json``, answers statuses an operation does not
document (401, 404, 422, 429...) in one error shape of its own (:data:`ERROR_SCHEMA`), and its
description says less than its API does in places (:data:`ERRATA`). Its webhooks API is documented
apart, with no published description, so :func:`checker` leaves it out.
"""

from typing import Any

from crossledger.plugins.zendesk.connector import API_ROOT
from crossledger.testing.specs.answers import Check, Exchange
from crossledger.testing.specs.openapi import Errata, OpenAPISpec
from crossledger.testing.specs.problems import problems
from jsonschema import Draft4Validator

WEBHOOKS = f"{API_ROOT}/webhooks"
"""Documented apart from the Support API (Zendesk publishes no description of its webhooks API)."""

ERROR_SCHEMA: dict[str, Any] = {
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
"description": "Not found"}`` (the description's ``ErrorNotFoundExample`` and 404 examples), with
``details`` for validation errors (``{"name": [{"description": "Name: has already been taken",
"error": "DuplicateValue"}]}``, developer.zendesk.com "Errors")."""

ERRATA: Errata = {
    "#/components/schemas/OrganizationObject/properties/organization_fields/additionalProperties": {
        "anyOf": [{"type": "string", "nullable": True}, {"type": "number"}, {"type": "boolean"}]},
}
"""Where Zendesk's description says less than its API does: a custom organization field's value is
documented as a string or a number, but a checkbox field holds a boolean and a field with no value
(never set, or cleared with ``null``, as the hub clears an ended SLA) is ``null``
(developer.zendesk.com, "Custom organization fields": "you can clear a field by setting it to
null")."""


def checker(support_api: OpenAPISpec) -> Check:
    """A :data:`~crossledger.testing.specs.answers.Check` of a Zendesk account's JSON answers under
    ``/api/v2`` (webhooks aside): each must be an operation of ``support_api``, with a status it
    documents and the body it documents for it, or a refusal in Zendesk's error shape."""
    errors = Draft4Validator(ERROR_SCHEMA)

    def check(exchange: Exchange) -> list[str]:
        path = exchange.path.removesuffix(".json")
        if not exchange.is_json or path.startswith(WEBHOOKS) or not path.startswith(API_ROOT):
            return []
        template = support_api.operation(exchange.method, path)
        if template is None:
            return [f"{exchange}: the description has no such operation"]
        response = support_api.response(exchange.method, path, exchange.status)
        if response is None and exchange.status < 400:
            return [f"{exchange}: {template} documents no {exchange.status} answer"]
        if response is None:
            found = problems(errors, exchange.json())
        elif response.schema is None:
            found = []
        else:
            found = support_api.check_at(response.schema, exchange.json())
        return [f"{exchange}: {problem}" for problem in found]

    return check
