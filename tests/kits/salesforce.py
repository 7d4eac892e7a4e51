"""The Salesforce connector's contract kit: how relayed CDC events are signed, Salesforce's real
payloads, and where the accounts the sample events make show in the sandbox. Also
:class:`OutboundReceiver`, the local endpoint the tests point the sandbox's outbound messages at.

Two kinds of body reach ``/webhooks/salesforce``. Relayed Change Data Capture events carry the
relay's HMAC (:mod:`crossledger.plugins.salesforce.relay`): that is what the suite's signature tests
exercise, so the signed sample is a CDC event. Outbound messages are authenticated by their
``OrganizationId``, which the suite cannot sign; their sample names the sandbox org, so it passes
the same check with any headers.
"""

import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.salesforce import relay, soap
from crossledger.plugins.salesforce.connector import SalesforceConnector
from crossledger.plugins.salesforce.sandbox.app import INTEGRATION_USER_ID, ORGANIZATION_ID
from crossledger.testing.kit import ContractKit, Headers, SignatureVector
from crossledger.testing.specs import salesforce as salesforce_spec
from crossledger.testing.specs.answers import ASGIApp, Recorder
from crossledger.testing.specs.salesforce import SObjectDescribe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIXTURES = Path(__file__).parent.parent / "fixtures" / "payloads" / "salesforce"
SPECS = Path(__file__).parent.parent / "fixtures" / "specs" / "salesforce"
DESCRIBED = ("Account", "Contact")


@cache
def published_describes() -> dict[str, SObjectDescribe]:
    """Salesforce's describe of Account and Contact, standard fields only (tests/fixtures/specs)."""
    return {name: SObjectDescribe.from_cassette(SPECS / f"cumulusci-cassette-GET_sobjects_{name}_describe.yaml")
            for name in DESCRIBED}


def checked(app: ASGIApp) -> Recorder:
    """``app`` (a Salesforce sandbox) with every REST answer checked against Salesforce's describes
    and its error shape."""
    return Recorder(app, salesforce_spec.checker(published_describes()))

ACCOUNT_ID = "0015g00000KpQrSAAV"
"""Stands in for the ``<record_ID>`` placeholder of the documentation's CDC example."""

VECTOR_SECRET = "cdc-relay-example-secret"
VECTOR_BODY = (b'{"data":{"schema":"IeRuaY6cbI_HsV8Rv1Mc5g","payload":{"ChangeEventHeader":{"entityName":"Account",'
               b'"changeType":"CREATE"}},"event":{"replayId":6421}},"channel":"/data/ChangeEvents"}')
VECTOR_HEADER = "t=1700000000,v1=0c92e241fc4ff3cf4de9986eaa89b31b871778de5061adf5e3d98cde25047063"
"""The example in docs/connectors/salesforce.md; the MAC was computed independently with
``printf '1700000000.%s' "$BODY" | openssl dgst -sha256 -hmac cdc-relay-example-secret``."""


def _vector(now: float, valid: bool, body: bytes = VECTOR_BODY, source: str = "") -> SignatureVector:
    return SignatureVector(secret=VECTOR_SECRET, headers={relay.HEADER: VECTOR_HEADER}, body=body, now=now,
                           valid=valid, source=source)


SIGNATURE_VECTORS = [
    _vector(1700000060, True, source="the documented example, a minute after it was signed"),
    _vector(1700000000 + relay.TOLERANCE_S + 1, False, source="the same, one second past the tolerance"),
    _vector(1700000060, False, VECTOR_BODY.replace(b"CREATE", b"DELETE"), "the body changed after signing"),
]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def cdc_account_create() -> bytes:
    """The documentation's AccountChangeEvent CREATE, with real-looking ids for its placeholders."""
    text = fixture("cdc_account_create_cometd.json").replace("<record_ID>", ACCOUNT_ID)
    return text.replace("<User_ID>", INTEGRATION_USER_ID).replace("<Owner_ID>", INTEGRATION_USER_ID).encode()


def outbound_notifications(organization_id: str = ORGANIZATION_ID) -> bytes:
    """The real outbound message (two Contact notifications), sent by ``organization_id``."""
    return fixture("outbound_message_notifications.xml").replace("012345678901234", organization_id).encode()


class SalesforceKit(ContractKit):
    connector = SalesforceConnector()
    record_state_key = "accounts"
    signature_vectors: ClassVar[list[SignatureVector]] = SIGNATURE_VECTORS
    retry_after_on_429 = False  # Salesforce signals limits with 403 REQUEST_LIMIT_EXCEEDED and no Retry-After

    def sign(self, body: bytes, secret: str, timestamp: float) -> Headers:
        return {"Content-Type": "application/json", relay.HEADER: relay.header_value(secret, int(timestamp), body)}

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        return {**settings, "cdc_secret": current, "previous_cdc_secret": previous}

    def webhook_samples(self) -> list[bytes]:
        """A CDC account creation (the signed sample), the real outbound message, and a platform event
        (which parses, and which the hub ignores)."""
        return [cdc_account_create(), outbound_notifications(), fixture("platform_event_cometd.json").encode()]

    def record_id(self, record: dict[str, Any]) -> str:
        return str(record["Id"])


Answer = Callable[[bytes], tuple[int, bytes]]
"""How a receiver answers one delivery attempt: the body -> (status, reply body)."""


def acknowledge(body: bytes) -> tuple[int, bytes]:
    return 200, soap.ACK


class OutboundReceiver:
    """A loopback endpoint for the sandbox's outbound messages. The first attempts get the ``script``
    answers in turn (to show Salesforce's retries), the rest ``answer``; every attempt is recorded."""

    def __init__(self, answer: Answer = acknowledge, script: tuple[tuple[int, bytes], ...] = ()) -> None:
        self.answer = answer
        self.script = list(script)
        self.attempts: list[tuple[bytes, int, bytes]] = []
        self._lock = threading.Lock()
        self._server = ServerThread(Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])).start()

    @property
    def url(self) -> str:
        return f"{self._server.url}/hook"

    def acknowledged(self) -> list[bytes]:
        """The bodies answered with the Ack, in arrival order."""
        with self._lock:
            return [body for body, status, reply in self.attempts if status == 200 and reply == soap.ACK]

    def stop(self) -> None:
        self._server.stop()

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            status, reply = self.script.pop(0) if self.script else self.answer(body)
            self.attempts.append((body, status, reply))
        return Response(reply, status_code=status, media_type=soap.CONTENT_TYPE)
