"""The crossledger connector contract, run against the HubSpot connector and its own sandbox.

Run with ``python -m pytest tests`` once the package is installed next to crossledger.
"""

import uuid
from pathlib import Path
from typing import Any, ClassVar

from crossledger.testing import ConnectorContract, ContractKit, SignatureVector

from crossledger_hubspot.connector import HubSpotConnector
from crossledger_hubspot.signature import signature_headers

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_URL = "https://www.example.com/webhook_uri"
"""The webhook target URL the kit signs for: the one in HubSpot's own signature test vector."""

# HubSpot's Python client's v3 test vector (see fixtures/SOURCES.md): the timestamp is in milliseconds.
VECTOR_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
VECTOR_HEADERS = {"X-HubSpot-Signature-v3": "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
                  "X-HubSpot-Request-Timestamp": "15000000"}
VECTOR_BODY = b"{'example_field':'example_value'}"
VECTOR_SOURCE = "github.com/HubSpot/hubspot-api-python tests/spec/utils/test_signature.py"


class HubSpotKit(ContractKit):
    connector = HubSpotConnector()
    record_state_key = "companies"
    signature_vectors: ClassVar[list[SignatureVector]] = [
        SignatureVector(VECTOR_SECRET, VECTOR_HEADERS, VECTOR_BODY, now=15_001, valid=True, source=VECTOR_SOURCE),
        SignatureVector(VECTOR_SECRET, VECTOR_HEADERS, VECTOR_BODY, now=15_000 + 301, valid=False,
                        source=f"{VECTOR_SOURCE}, five minutes and a second later"),
    ]

    def sign(self, body: bytes, secret: str, timestamp: float) -> dict[str, str]:
        return signature_headers(secret, WEBHOOK_URL, body, int(timestamp * 1000))

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        return {**settings, "client_secret": current, "previous_client_secret": previous, "webhook_url": WEBHOOK_URL}

    def new_secret(self) -> str:
        return str(uuid.uuid4())  # HubSpot client secrets are UUIDs

    def webhook_samples(self) -> list[bytes]:
        return [path.read_bytes() for path in sorted(FIXTURES.glob("webhook_*.json"))]

    def records_in(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        return [company for company in state["companies"] if not company["archived"]]

    def shows(self, record: dict[str, Any], name: str) -> bool:
        return bool(record["properties"].get("name") == name)


class TestHubSpotContract(ConnectorContract):
    kit = HubSpotKit()
