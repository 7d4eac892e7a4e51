"""The Business Central connector's contract kit: how its notifications are vouched for (the
subscription's ``clientState`` in every notification, no signature), its documented notification
payload, and where the customers the sample events make show in the sandbox. Also
:func:`api_spec` and :func:`checked`, which hold the sandbox's answers to the published description,
and the :class:`Clock` the connector and sandbox tests move on (to expire tokens and subscriptions)."""

import json
import re
import time
from functools import cache
from pathlib import Path
from typing import Any

from crossledger.plugins.business_central.connector import BusinessCentralConnector
from crossledger.plugins.business_central.sandbox.books import demo_id
from crossledger.testing.kit import ContractKit, Headers
from crossledger.testing.specs import business_central as bc_spec
from crossledger.testing.specs.answers import ASGIApp, Recorder
from crossledger.testing.specs.openapi import OpenAPISpec

_COMPANY = re.compile(r"companies\([^)]*\)")
FIXTURES = Path(__file__).parent.parent / "fixtures" / "payloads" / "business_central"
API_SPEC = Path(__file__).parent.parent / "fixtures" / "specs" / "business-central" / "BCOAS1.0.yaml"


class Clock:
    """A clock a test moves on: now, plus ``offset`` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@cache
def api_spec() -> OpenAPISpec:
    """Microsoft's published description of the API (v1.0; see tests/fixtures/specs/README.md), with
    the v2.0 differences as errata."""
    return bc_spec.load(API_SPEC)


def checked(app: ASGIApp) -> Recorder:
    """``app`` (a Business Central sandbox) with every JSON answer of its company API checked."""
    return Recorder(app, bc_spec.checker(api_spec()))


def documented_notification() -> dict[str, Any]:
    """The notification body of Microsoft's webhooks page (created, updated, deleted, collection)."""
    loaded: dict[str, Any] = json.loads((FIXTURES / "webhook_notification.json").read_bytes())
    return loaded


class BusinessCentralKit(ContractKit):
    connector = BusinessCentralConnector()
    record_state_key = "customers"
    max_signature_age_s = None  # nothing timestamped is signed
    signs_body = False  # the clientState vouches for the sender; the body is not signed

    def sign(self, body: bytes, secret: str, timestamp: float) -> Headers:
        return {"content-type": "application/json"}

    company_id: str | None = None
    """The configured company (the sandbox's, a new one each run), once :meth:`with_secrets` saw it."""

    def carry_secret(self, body: bytes, secret: str) -> bytes:
        """Every notification carries its subscription's clientState, the configured secret, and is
        about the company subscribed to, the configured one (the connector drops any other's)."""
        try:
            notifications = json.loads(body)
        except ValueError:
            return body
        for notification in notifications.get("value", []):
            notification["clientState"] = secret
            if self.company_id is not None and isinstance(notification.get("resource"), str):
                notification["resource"] = _COMPANY.sub(f"companies({self.company_id})", notification["resource"])
        return json.dumps(notifications).encode()

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        self.company_id = settings["company_id"]
        return {**settings, "client_state": current, "previous_client_state": previous}

    def webhook_samples(self) -> list[bytes]:
        """The documented body as it is, and its customer notification naming a customer of the
        sandbox's demo company (the documented ids exist in no company of ours)."""
        documented = documented_notification()
        customer = dict(documented["value"][1])
        company, _, _ = customer["resource"].partition(")/")
        customer["resource"] = f"{company})/customers({demo_id('customers', '10000')})"
        return [json.dumps(documented).encode(), json.dumps({"value": [customer]}).encode()]

    def shows(self, record: dict[str, Any], name: str) -> bool:
        return record.get("displayName") == name
