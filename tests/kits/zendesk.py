"""The Zendesk connector's contract kit: how Zendesk signs webhooks, its real payloads, and where the
organizations the sample events make show in the sandbox. Also :class:`WebhookReceiver`, the local
endpoint the Zendesk tests point the sandbox's webhooks at."""

import json
import threading
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.zendesk.connector import ZendeskConnector
from crossledger.plugins.zendesk.sandbox.app import new_signing_secret
from crossledger.plugins.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers
from crossledger.testing.kit import ContractKit, Headers, SignatureVector
from crossledger.testing.specs import zendesk as zendesk_spec
from crossledger.testing.specs.answers import ASGIApp, Recorder
from crossledger.testing.specs.openapi import OpenAPISpec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIXTURES = Path(__file__).parent.parent / "fixtures" / "payloads" / "zendesk"
SUPPORT_API_SPEC = Path(__file__).parent.parent / "fixtures" / "specs" / "zendesk" / "zendesk-support-oas.yaml"


@cache
def support_api() -> OpenAPISpec:
    """Zendesk's published description of its Support API (see tests/fixtures/specs/README.md), with
    its errata."""
    return OpenAPISpec.load(SUPPORT_API_SPEC, errata=zendesk_spec.ERRATA)


def checked(app: ASGIApp) -> Recorder:
    """``app`` (a Zendesk sandbox) with every JSON answer it gives under ``/api/v2`` checked against
    :func:`support_api`; the webhooks API and the sandbox's control routes are not described there."""
    return Recorder(app, zendesk_spec.checker(support_api()))

VECTOR_BODY = b'{"say": "hello"}'
VECTOR_TIMESTAMP = "2021-07-25T10:00:00Z"
VECTOR_NOW = 1627207200.0  # VECTOR_TIMESTAMP as Unix seconds

DOCUMENTED_VECTOR = SignatureVector(
    secret="dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",
    headers={SIGNATURE_HEADER: "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0=", TIMESTAMP_HEADER: VECTOR_TIMESTAMP},
    body=VECTOR_BODY,
    now=VECTOR_NOW,
    valid=True,
    source="developer.zendesk.com/documentation/webhooks/verifying: its example secret and body, timestamp + body",
)
"""The current docs' secret (used as the string it is, not base64-decoded) on their example body."""

OLD_ORDER_VECTOR = SignatureVector(
    secret="HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=",
    headers={SIGNATURE_HEADER: "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw=", TIMESTAMP_HEADER: VECTOR_TIMESTAMP},
    body=VECTOR_BODY,
    now=VECTOR_NOW,
    valid=False,
    source="an older copy of the same page, whose sample signs body + timestamp: the retired order must fail",
)


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


class ZendeskKit(ContractKit):
    connector = ZendeskConnector()
    record_state_key = "organizations"
    signature_vectors: ClassVar[list[SignatureVector]] = [DOCUMENTED_VECTOR, OLD_ORDER_VECTOR]
    changed_since_lag_s: ClassVar[float] = 60.0  # the incremental export shows nothing of its last minute

    def sign(self, body: bytes, secret: str, timestamp: float) -> Headers:
        return signature_headers(secret, timestamp, body)

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        # The trigger webhook's secret is dropped, so the check sees exactly the pair being rolled.
        return {**settings, "webhook_secret": current, "previous_webhook_secret": previous,
                "ticket_webhook_secret": None}

    def new_secret(self) -> str:
        return new_signing_secret()

    def shows(self, record: dict[str, Any], name: str) -> bool:
        """An organization's name is the customer's followed by its source id (see
        :func:`~crossledger.plugins.zendesk.connector.organization_name`)."""
        return isinstance(record.get("name"), str) and record["name"].startswith(f"{name} (")

    def webhook_samples(self) -> list[bytes]:
        """Zendesk's documented organization and user events, and a ticket webhook (the delivered
        body of the third-party capture: its signature was illustrative, so it is signed afresh)."""
        bodies = [fixture("webhook_event_organization_created.json"), fixture("webhook_event_user_active_changed.json"),
                  fixture("webhook_ticket_created_delivery_thirdparty.json")["body"]]
        return [json.dumps(body).encode() for body in bodies]


class WebhookReceiver:
    """A loopback endpoint that records every delivery attempt (headers, body, the status it gave)
    and refuses the first ``fail_first`` attempts with a 500, so a sender's retries show."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts: list[tuple[dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()
        self._server = ServerThread(Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])).start()

    @property
    def url(self) -> str:
        return f"{self._server.url}/hook"

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        """The attempts answered 200, in arrival order."""
        with self._lock:
            return [(headers, body) for headers, body, status in self.attempts if status == 200]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.delivered()]

    def stop(self) -> None:
        self._server.stop()

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            status = 500 if len(self.attempts) < self.fail_first else 200
            self.attempts.append((dict(request.headers), body, status))
        return Response(status_code=status)
