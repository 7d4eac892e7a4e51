"""What holding a sandbox to Zuora's description of its v1 API needs beyond Swagger 2.0.

Zuora's description comes in slices, one per API area (accounts, invoices, payments, credit memos,
refunds, orders, subscriptions, notifications, OAuth...), each a Swagger 2.0 document of its own:
:func:`checker` looks an exchange up in each. Most operations document only their ``200`` answer,
yet Zuora refuses in one shape of its own (:data:`ERROR_SCHEMA`), with HTTP 200 (``"success":
false``) or an error status; a refusal is held to that shape, whatever the status. Object Query
(``/object-query/...``) is not in the 2023 slices (Zuora documented it later), so its answers are
not checked against a description.
"""

import re
from pathlib import Path
from typing import Any

from crossledger.testing.specs.answers import Check, Exchange
from crossledger.testing.specs.problems import problems
from crossledger.testing.specs.swagger import SwaggerSpec
from jsonschema import Draft4Validator

SLICES = ("oauth", "accounts", "invoices", "payments", "credit-memos", "refunds", "orders", "subscriptions",
          "notifications", "product-rate-plans")
"""The slices of Zuora's description the sandbox is held to (file ``zuora-<slice>-api-openapi.yml``)."""

UNDESCRIBED = ("/object-query/",)
"""Paths Zuora serves that the 2023-12-15 description leaves out."""

RENAMED = ((re.compile(r"^/v1/credit-memos/invoice/([^/]+)$"), r"/v1/invoices/\1/creditmemos"),
           (re.compile(r"^/v1/credit-memos(?=/|$)"), "/v1/creditmemos"))
"""Paths Zuora's later reference (and zuora-sdk 3.21) names otherwise than the 2023-12-15 one, for the
same operations: each new path -> the path the description knows it by."""


def described_path(path: str) -> str:
    """``path`` as the 2023-12-15 description names it (:data:`RENAMED`)."""
    for pattern, old in RENAMED:
        if pattern.search(path):
            return pattern.sub(old, path)
    return path

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "reasons"],
    "properties": {
        "success": {"enum": [False]},
        "processId": {"type": "string"},
        "reasons": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "integer", "minimum": 10_000_000, "maximum": 99_999_999},
                           "message": {"type": "string"}}}},
    },
    "additionalProperties": False,
}
"""Zuora's v1 error body: ``{"success": false, "processId": "CBCFED6580B4E076", "reasons":
[{"code": 53100320, "message": "..."}]}`` (developer.zuora.com "Error codes"; the 8-digit code is a
resource code and a category). The description's ``CommonResponseType`` says the same, loosely."""


def load(directory: Path) -> list[SwaggerSpec]:
    """The bundled slices (:data:`SLICES`) in ``directory``."""
    return [SwaggerSpec.load(directory / f"zuora-{name}-api-openapi.yml") for name in SLICES]


def checker(slices: list[SwaggerSpec]) -> Check:
    """A :data:`~crossledger.testing.specs.answers.Check` of a Zuora tenant's JSON answers: each must be
    an operation of one of ``slices``, and answer the schema it documents, or a refusal in Zuora's
    error shape (with any status)."""
    errors = Draft4Validator(ERROR_SCHEMA)

    def check(exchange: Exchange) -> list[str]:
        if not exchange.is_json or exchange.path.startswith(("/_sandbox/", *UNDESCRIBED)):
            return []
        body = exchange.json()
        if isinstance(body, dict) and body.get("success") is False:
            return [f"{exchange}: {problem}" for problem in problems(errors, body)]
        path = described_path(exchange.path)
        spec = next((s for s in slices if s.operation(exchange.method, path)), None)
        if spec is None:
            return [f"{exchange}: the description has no such operation"]
        if exchange.status >= 400:
            return [f"{exchange}: a refusal that is not in Zuora's error shape"] + [
                f"{exchange}: {problem}" for problem in problems(errors, body)]
        pointer = spec.response_pointer(exchange.method, path, exchange.status)
        if pointer is None:
            return [f"{exchange}: the description documents no {exchange.status} answer with a body"]
        return [f"{exchange}: {problem}" for problem in spec.check_at(pointer, body)]

    return check
