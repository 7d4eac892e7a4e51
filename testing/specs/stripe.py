"""What holding the Stripe sandbox to Stripe's published OpenAPI description needs beyond OpenAPI.

The bundled spec (``tests/fixtures/specs/stripe-openapi-spec3.json.gz``) describes API version
**2023-08-16**, while the sandbox, the hub's client and stripe-python speak ``2026-10-28.endive``.
The differences that are API-version drift, and only those, are accepted: :data:`DRIFT` for fields,
:data:`ADDED` for operations newer than the spec, :data:`NEWER_OBJECTS` for kinds of object. Each
entry says which version changed what; ``tests/test_stripe_openapi.py`` checks each one against the
SDK's generated models (which follow the pinned version), and fails when an entry no answer needed
is left, so the allow-list can neither hide a departure of the sandbox's own nor go stale.

Objects inside events (``data.object``, untyped in the spec) are checked against the component
schema of their own type; an error answer of an operation the spec does not have is checked
against the ``error`` schema every error of Stripe's has.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from crossledger.testing.specs.answers import Check, Exchange
from crossledger.testing.specs.openapi import OpenAPISpec
from crossledger.testing.specs.problems import Location, Problem


@dataclass(frozen=True)
class Drift:
    """A difference between API version 2023-08-16 (the spec) and the pinned one, documented by Stripe."""

    owner: str
    """The ``object`` the field belongs to."""
    field: str
    """The field, dotted from the object (``automatic_tax.status``)."""
    keyword: str
    """How the spec sees it: ``required`` for a field the spec requires and later versions removed."""
    why: str


BASIL = "2025-03-31.basil"
DRIFT = (
    Drift("invoice", "paid", "required", f"{BASIL} removed it: `status` says whether an invoice is paid"),
    Drift("invoice", "paid_out_of_band", "required", f"{BASIL} removed it: invoice payments say how it was paid"),
    Drift("invoice", "total_tax_amounts", "required", f"{BASIL} replaced it with `total_taxes`"),
    Drift("line_item", "proration", "required",
          f"{BASIL} moved it to `parent.invoice_item_details` / `parent.subscription_item_details`"),
    Drift("line_item", "type", "required", f"{BASIL} replaced it with `parent.type`"),
    Drift("credit_note", "tax_amounts", "required", f"{BASIL} replaced it with `total_taxes`"),
    Drift("credit_note_line_item", "tax_amounts", "required", f"{BASIL} replaced it with `taxes`"),
    Drift("product", "features", "required", "2024-04-10 renamed it `marketing_features`"),
    Drift("subscription", "current_period_start", "required", f"{BASIL} moved it to each subscription item"),
    Drift("subscription", "current_period_end", "required", f"{BASIL} moved it to each subscription item"),
)
"""Every accepted difference of a field."""


@dataclass(frozen=True)
class Added:
    """An operation newer than the spec, and the component schema its answer is checked against
    (None: the spec has no schema for what it answers)."""

    method: str
    path: str
    component: str | None
    sdk: tuple[str, str]
    """The SDK's service and method for it (``client.v1.<service>.<method>``), which the pinned version has."""
    why: str


ADDED = (
    Added("POST", "/v1/invoices/create_preview", "invoice", ("invoices", "create_preview"),
          "2024-04-10 added it (in place of GET /v1/invoices/upcoming, which basil removed); it answers an invoice"),
    Added("GET", "/v1/invoice_payments", None, ("invoice_payments", "list"),
          f"{BASIL} added invoice payments; the 2023 spec has no invoice_payment schema"),
    Added("GET", "/v1/invoice_payments/{id}", None, ("invoice_payments", "retrieve"),
          f"{BASIL} added invoice payments; the 2023 spec has no invoice_payment schema"),
)
NEWER_OBJECTS = {"invoice_payment": f"{BASIL} added it (events such as invoice_payment.paid carry one)"}


def stripe_object_at(document: Any, location: Location) -> tuple[str | None, str]:
    """The Stripe object a location is in (the ``object`` of the nearest enclosing object that has
    one) and the field path within it, list indexes left out: ``("invoice", "lines")``."""
    owner: str | None = None
    path: list[str] = []
    node: Any = document
    for part in (None, *location):
        if part is not None:
            node = node[part]
            if isinstance(part, str):
                path.append(part)
        if isinstance(node, dict) and isinstance(node.get("object"), str):
            owner, path = node["object"], []
    return owner, ".".join(path)


@dataclass
class DriftFilter:
    """Accepts the problems :data:`DRIFT` lists, and remembers which entries it needed."""

    used: set[Drift] = field(default_factory=set)

    def __call__(self, document: Any, problem: Problem) -> bool:
        owner, path = stripe_object_at(document, problem.location)
        if problem.keyword == "required":
            path = ".".join(filter(None, [path, problem.name]))
        found = next((d for d in DRIFT if (d.owner, d.field, d.keyword) == (owner, path, problem.keyword)), None)
        if found is not None:
            self.used.add(found)
        return found is not None


def _added(exchange: Exchange) -> Added | None:
    for added in ADDED:
        pattern = added.path.replace("{id}", "[^/]+")
        if exchange.method == added.method and re.fullmatch(pattern, exchange.path):
            return added
    return None


def events_in(body: Any) -> list[dict[str, Any]]:
    """The events an answer is or lists."""
    items = body["data"] if isinstance(body, dict) and body.get("object") == "list" else [body]
    return [item for item in items if isinstance(item, dict) and item.get("object") == "event"]


def checker(spec: OpenAPISpec, is_drift: DriftFilter) -> Check:
    """A :data:`~crossledger.testing.specs.answers.Check` of the Stripe API's answers (``/v1/``; each
    must be JSON), drift aside."""

    def check(exchange: Exchange) -> list[str]:
        if not exchange.path.startswith("/v1/"):
            return []
        body = exchange.json()
        added = _added(exchange)
        if exchange.status >= 400 and (added or spec.operation(exchange.method, exchange.path) is None):
            problems = spec.check_component("error", body, is_drift)  # errors of any route have one shape
        elif added is not None:
            problems = [] if added.component is None else spec.check_component(added.component, body, is_drift)
        else:
            problems = spec.check(exchange.method, exchange.path, exchange.status, body, is_drift)
        for event in events_in(body):
            problems += object_problems(event["data"]["object"], ("data", "object"))
        return [f"{exchange}: {problem}" for problem in problems]

    def object_problems(obj: dict[str, Any], at: Location) -> list[Problem]:
        """An event's object (untyped in the spec) checked against the component schema of its type."""
        kind = obj["object"]
        if kind in NEWER_OBJECTS:
            return []
        if kind not in spec.document["components"]["schemas"]:
            return [Problem(at, "object", f"the spec has no schema for a {kind!r}")]
        return [Problem(at + problem.location, problem.keyword, problem.message, problem.name)
                for problem in spec.check_component(kind, obj, is_drift)]

    return check
