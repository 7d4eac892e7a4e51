"""What holding a sandbox to Business Central's published API description needs beyond OpenAPI.

Microsoft publishes an OpenAPI description of the standard API **v1.0** only (``BCOAS1.0.yaml``);
for v2.0 it publishes none ("there's no downloadable .yaml file for version 2.0"). v2.0 keeps the
entities and their paths under ``/api/v2.0/``, so :func:`checker` finds each v2.0 answer's
operation in the v1.0 description, with these differences:

- the path: ``/v2.0/{tenant}/{environment}/api/v2.0`` is the description's server URL, and a
  document line's key is a GUID in v2.0 (``salesInvoiceLines(…)``) where v1.0 quoted it
  (``salesInvoiceLines('…')``);
- :data:`ERRATA`: v2.0 dates are ``Edm.Date`` (``2019-01-15``), where v1.0 documented
  ``date-time``; fields v2.0 added (``addressLine1``, ``postingDate``, ``lineObjectNumber``...) are
  simply extra, which the description allows;
- the YAML writes response statuses unquoted, so a YAML reader makes them integers where
  OpenAPI means the strings ``"200"``: :func:`load` turns them back;
- statuses an operation does not document are errors in OData's shape (:data:`ERROR_SCHEMA`);
- webhook subscriptions and ``$batch`` are not in the description: they are held to the shapes
  Microsoft's pages document (:data:`SUBSCRIPTION_SCHEMA`, :data:`BATCH_SCHEMA`).
"""

import re
from pathlib import Path
from typing import Any

from crossledger.testing.specs import documents
from crossledger.testing.specs.answers import Check, Exchange
from crossledger.testing.specs.openapi import Errata, OpenAPISpec
from crossledger.testing.specs.problems import problems
from jsonschema import Draft4Validator

API_ROOT = re.compile(r"^/v2\.0/[^/]+/[^/]+/api/v2\.0")
_LINE_KEY = re.compile(r"/(sales(?:Invoice|CreditMemo|Order|Quote)Lines)\(([^)']+)\)")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {"type": "object", "required": ["code", "message"], "additionalProperties": False,
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}
"""``{"error": {"code": "BadRequest_NotFound", "message": "...  CorrelationId:  ..."}}``
(dev-itpro/webservices/dynamics-error-codes.md)."""

_TIMESTAMP = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}
SUBSCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subscriptionId", "notificationUrl", "resource", "userId", "lastModifiedDateTime", "clientState",
                 "expirationDateTime"],
    "properties": {"subscriptionId": {"type": "string"}, "notificationUrl": {"type": "string"},
                   "resource": {"type": "string"}, "userId": {"type": "string"}, "clientState": {"type": "string"},
                   "lastModifiedDateTime": _TIMESTAMP, "expirationDateTime": _TIMESTAMP,
                   "@odata.etag": {"type": "string"}},
}
"""A subscription as ``dynamics_subscriptions_create.md`` shows it."""

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["responses"],
    "properties": {"responses": {"type": "array", "items": {
        "type": "object", "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "integer"}, "headers": {"type": "object"},
                       "body": {"type": ["object", "null"]}}}}},
}
"""A JSON batch answer (dev-itpro/webservices/use-odata-batch.md)."""

_DATE = {"type": "string", "format": "date", "nullable": True}
ERRATA: Errata = {
    f"#/components/schemas/{entity}/properties/{field}": _DATE
    for entity, fields in (("salesInvoice", ("invoiceDate", "dueDate")), ("salesCreditMemo", ("creditMemoDate",
                                                                                              "dueDate")),
                           ("customerPayment", ("postingDate",)))
    for field in fields
}
"""v2.0's ``Edm.Date`` fields, documented as ``date-time`` in v1.0."""


def load(path: Path) -> OpenAPISpec:
    """The description at ``path``, its response statuses as strings, with :data:`ERRATA`."""
    document = documents.load(path)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"] = {str(status): answer for status, answer in operation["responses"].items()}
    return OpenAPISpec(document, errata=ERRATA)


def checker(api: OpenAPISpec) -> Check:
    """A :data:`~crossledger.testing.specs.answers.Check` of a Business Central environment's JSON
    answers under its API root (see the module doc)."""
    errors, subscriptions, batches = (Draft4Validator(schema) for schema in (ERROR_SCHEMA, SUBSCRIPTION_SCHEMA,
                                                                               BATCH_SCHEMA))

    def check(exchange: Exchange) -> list[str]:
        match = API_ROOT.match(exchange.path)
        if not exchange.is_json or match is None:
            return []
        path = _LINE_KEY.sub(r"/\1('\2')", exchange.path[match.end():])
        document = exchange.json()
        if exchange.status >= 400:
            found = problems(errors, document)
        elif path.startswith("/subscriptions"):
            found = [p for item in document.get("value", [document]) for p in problems(subscriptions, item)]
        elif path == "/$batch":
            found = problems(batches, document)
        else:
            template = api.operation(exchange.method, path)
            if template is None:
                return [f"{exchange}: the description has no such operation"]
            response = api.response(exchange.method, path, exchange.status)
            if response is None:
                return [f"{exchange}: {template} documents no {exchange.status} answer"]
            found = [] if response.schema is None else api.check_at(response.schema, document)
        return [f"{exchange}: {problem}" for problem in found]

    return check
