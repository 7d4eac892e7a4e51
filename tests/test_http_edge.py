"""Every refusal at the HTTP edge is specific: a 4xx naming what is wrong with the input, in JSON
(or the sender's own refusal shape, a SOAP fault for Salesforce), without a traceback anywhere, and
the next good request is served. 503 is kept for a broker or store that cannot be reached.

The matrix runs each class of malformed input against every webhook endpoint and every ``/v1``
route of a real hub on loopback, each malformed body correctly signed.
"""

import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from crossledger.core.processes.embedded import EmbeddedHub, wait_until
from crossledger.core.reconcile.engine import RUN_LEASE
from crossledger.core.settings import HubSettings, Settings
from crossledger.devtools.bench.run import signed
from crossledger.plugins.salesforce import relay, soap
from crossledger.plugins.zendesk.signature import signature_headers

TOKEN = "edge-token"
STRIPE_SECRET, ZENDESK_SECRET, CDC_SECRET = "whsec_edge", "zendesk-edge", "cdc-edge"
ORG = "00D5g000004EdgeEAA"
TWO_MIB = b"x" * (2 * 1024 * 1024)


@dataclass(frozen=True)
class Endpoint:
    """One webhook endpoint: how its sender signs a body, and a good event of a type the hub ignores."""

    name: str
    connector: str
    media_type: str
    sign: Callable[[bytes], dict[str, str]]
    good: Callable[[str], bytes]


def stripe_event(unique: str, **extra: Any) -> bytes:
    event = {"id": f"evt_{unique}", "object": "event", "type": "balance.available", "created": int(time.time()),
             "data": {"object": {"object": "balance", "available": []}}, **extra}
    return json.dumps(event).encode()


def zendesk_event(unique: str, **extra: Any) -> bytes:
    event = {"type": "zen:event-type:omnichannel.agent_status_changed", "id": unique, "account_id": 1,
             "time": "2026-01-01T00:00:00Z", "zendesk_event_version": "2022-11-06", "subject": "zen:agent:1",
             "detail": {"id": "1"}, "event": {}, **extra}
    return json.dumps(event).encode()


def cdc_event(unique: str, **extra: Any) -> bytes:
    header = {"entityName": "Task", "recordIds": [f"00T5g{unique[:10]:0>10}"], "changeType": "CREATE",
              "changeOrigin": "", "transactionKey": unique, "sequenceNumber": 1, "commitTimestamp": 1767225600000,
              "commitNumber": 1, "commitUser": "0055g00000IntUsAAJ"}
    envelope = {"data": {"schema": "s", "payload": {"ChangeEventHeader": header, **extra}, "event": {"replayId": 1}},
                "channel": "/data/TaskChangeEvent"}
    return json.dumps(envelope).encode()


def outbound_message(unique: str) -> bytes:
    task = soap.Notification(f"04l5g{unique[:10]:0>10}AAA", "Task", {"Id": f"00T5g{unique[:10]:0>10}AAA"})
    return soap.render(soap.OutboundMessage(ORG, "04k5g0000000001AAA", None, "", "", [task]))


ENDPOINTS = [
    Endpoint("stripe", "stripe", "application/json", lambda body: signed(STRIPE_SECRET, body), stripe_event),
    Endpoint("zendesk", "zendesk", "application/json",
             lambda body: {**signature_headers(ZENDESK_SECRET, time.time(), body), "content-type": "application/json"},
             zendesk_event),
    Endpoint("salesforce-cdc", "salesforce", "application/json",
             lambda body: {relay.HEADER: relay.header_value(CDC_SECRET, int(time.time()), body),
                           "content-type": "application/json"}, cdc_event),
    Endpoint("salesforce-outbound", "salesforce", "text/xml",
             lambda body: {"content-type": soap.CONTENT_TYPE, "soapaction": '""'}, outbound_message),
]

DEEP_JSON = b'{"a":' * 5000 + b"1" + b"}" * 5000
DEEP_XML = (b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
            b'envelope/"><soapenv:Body>' + b"<a>" * 5000 + b"</a>" * 5000 + b"</soapenv:Body></soapenv:Envelope>")


def json_cases(endpoint: Endpoint) -> list[tuple[str, bytes, int, str]]:
    """(class, body, status, what the message says) for an endpoint that reads JSON."""
    unique = uuid.uuid4().hex
    good = json.loads(endpoint.good(unique))
    return [
        ("not JSON", b"{not json", 400, "malformed body"),
        ("nested thousands deep", DEEP_JSON, 400, "malformed body"),
        ("integer past 64 bits", endpoint.good(unique).replace(b"{", b'{"big": 123456789012345678901234567890, ', 1),
         400, "integer outside 64 bits"),
        ("lone surrogate", endpoint.good(unique).replace(b"{", b'{"text": "\\ud800", ', 1), 400, "surrogate"),
        ("JSON of another shape", json.dumps({"hello": "world"}).encode(), 422, "not an event this endpoint takes"),
        ("a JSON array", json.dumps([good]).encode(), 422, "not an event this endpoint takes"),
    ]


def xml_cases(endpoint: Endpoint) -> list[tuple[str, bytes, int, str]]:
    good = outbound_message(uuid.uuid4().hex)
    return [
        ("not XML", b"<soapenv:Envelope", 400, "malformed body"),
        ("nested thousands deep", DEEP_XML, 400, "malformed body"),
        ("lone surrogate", good.replace(b"<Id>", b"<Id>&#xD800;", 1), 400, "malformed body"),
        ("a DTD", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>', 400, "DTD"),
        ("XML of another shape", b'<?xml version="1.0" encoding="UTF-8"?><invoice/>', 422, "not an outbound message"),
        ("an empty message", good.replace(good[good.index(b"<Notification>"):good.index(b"</notifications>")], b""),
         422, "1 to 100 notifications"),
    ]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedHub]:
    folder = tmp_path_factory.mktemp("edge")
    connectors = {
        "stripe": {"api_key": "sk_test_edge", "webhook_secret": STRIPE_SECRET, "base_url": "http://127.0.0.1:9"},
        "zendesk": {"base_url": "http://127.0.0.1:9", "email": "hub@example.com", "api_token": "t",
                    "webhook_secret": ZENDESK_SECRET},
        "salesforce": {"base_url": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s",
                       "organization_id": ORG, "cdc_secret": CDC_SECRET},
    }
    settings = Settings(hub=HubSettings(store=f"sqlite:///{folder}/hub.db", api_token=TOKEN), connectors=connectors)
    with EmbeddedHub(settings, threads=2) as running:
        yield running


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The captured log, which must hold no traceback when the test ends."""
    caplog.set_level(logging.INFO)
    yield caplog
    assert not [record for record in caplog.records if record.exc_info], "a refusal logged a traceback"
    assert "Traceback" not in caplog.text


def assert_refused(answer: httpx.Response, status: int, says: str, endpoint: Endpoint | None = None) -> None:
    assert answer.status_code == status, answer.text[:500]
    if endpoint is not None and endpoint.connector == "salesforce":  # its own refusal shape: a SOAP fault
        assert answer.headers["content-type"].startswith("text/xml")
        fault = re.search(r"<faultstring>(.*)</faultstring>", answer.text, re.DOTALL)
        assert fault is not None and says in fault.group(1), answer.text[:500]
        return
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["status"] == status and says in error["message"], error


def assert_served(hub: EmbeddedHub, endpoint: Endpoint) -> None:
    body = endpoint.good(uuid.uuid4().hex)
    answer = httpx.post(f"{hub.url}/webhooks/{endpoint.connector}", content=body, headers=endpoint.sign(body))
    assert answer.status_code == 200, answer.text[:500]


def rejected(connector: str, reason: str) -> float:
    from crossledger.core.telemetry import metrics

    return metrics.registry.get_sample_value("crossledger_webhooks_rejected_total",
                                             {"connector": connector, "reason": reason}) or 0.0


# -- webhooks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[endpoint.name for endpoint in ENDPOINTS])
def test_malformed_signed_webhooks_are_specific_refusals(hub: EmbeddedHub, quiet: pytest.LogCaptureFixture,
                                                         endpoint: Endpoint) -> None:
    cases = xml_cases(endpoint) if endpoint.media_type == "text/xml" else json_cases(endpoint)
    for label, body, status, says in cases:
        before = rejected(endpoint.connector, "schema" if status == 422 else "malformed")
        answer = httpx.post(f"{hub.url}/webhooks/{endpoint.connector}", content=body, headers=endpoint.sign(body))
        assert answer.status_code == status, f"{label}: {answer.status_code} {answer.text[:300]}"
        assert_refused(answer, status, says, endpoint)
        assert rejected(endpoint.connector, "schema" if status == 422 else "malformed") == before + 1, label
        assert_served(hub, endpoint)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[endpoint.name for endpoint in ENDPOINTS])
def test_signature_size_and_content_type_refusals(hub: EmbeddedHub, quiet: pytest.LogCaptureFixture,
                                                  endpoint: Endpoint) -> None:
    url = f"{hub.url}/webhooks/{endpoint.connector}"
    good = endpoint.good(uuid.uuid4().hex)
    if endpoint.media_type == "application/json":  # an outbound message is vouched for by its org id instead
        forged = {**endpoint.sign(good), **endpoint.sign(b"another body")}
        assert_refused(httpx.post(url, content=good, headers=forged), 401, "signature rejected", endpoint)
        assert_served(hub, endpoint)
    else:
        other_org = good.replace(ORG.encode(), b"00D000000000001AAA")
        assert_refused(httpx.post(url, content=other_org, headers=endpoint.sign(other_org)), 401, "OrganizationId",
                       endpoint)
        assert_served(hub, endpoint)

    before = rejected(endpoint.connector, "too_large")
    assert_refused(httpx.post(url, content=TWO_MIB, headers=endpoint.sign(TWO_MIB)), 413, "body larger than",
                   endpoint)
    assert rejected(endpoint.connector, "too_large") == before + 1
    assert_served(hub, endpoint)

    as_text = {**endpoint.sign(good), "content-type": "text/plain"}
    assert_refused(httpx.post(url, content=good, headers=as_text), 415, "content type 'text/plain'", endpoint)
    assert rejected(endpoint.connector, "content_type") >= 1
    assert_served(hub, endpoint)


def test_unknown_connector_is_404_counted_without_minting_a_label(hub: EmbeddedHub,
                                                                 quiet: pytest.LogCaptureFixture) -> None:
    before = rejected("unknown", "unknown")
    for name in ("nosuch", "another-made-up-name"):
        assert_refused(httpx.post(f"{hub.url}/webhooks/{name}", content=b"{}"), 404, "no connector")
    assert rejected("unknown", "unknown") == before + 2
    assert rejected("nosuch", "unknown") == 0


def test_an_event_of_a_type_the_hub_ignores_is_acknowledged_and_counted(hub: EmbeddedHub) -> None:
    from crossledger.core.telemetry import metrics

    def ignored() -> float:
        return metrics.registry.get_sample_value("crossledger_events_ignored_total",
                                                 {"source": "stripe", "type": "balance.available"}) or 0.0

    before = ignored()
    body = stripe_event(uuid.uuid4().hex)
    answer = httpx.post(f"{hub.url}/webhooks/stripe", content=body, headers=signed(STRIPE_SECRET, body))
    assert answer.status_code == 200
    assert wait_until(lambda: ignored() == before + 1, 10)
    exposed = httpx.get(f"{hub.url}/metrics").text
    assert 'crossledger_events_ignored_total{source="stripe",type="balance.available"}' in exposed
    assert "crossledger_webhooks_rejected_total" in exposed


# -- /v1 ---------------------------------------------------------------------------------------------
JSON_ROUTES = ["/v1/replay", "/v1/journeys/onboarding", "/v1/dead-letters/d-edge/discard"]


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_v1_json_bodies_are_refused_specifically(hub: EmbeddedHub, quiet: pytest.LogCaptureFixture,
                                                 path: str) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    as_json = {**auth, "content-type": "application/json"}
    for body, headers, status, says in [
        (b"{not json", as_json, 400, "not JSON"),
        (DEEP_JSON, as_json, 400, "nested more than"),
        (b'{"reason": 123456789012345678901234567890}', as_json, 400, "integer outside 64 bits"),
        (b'{"reason": "\\ud800"}', as_json, 400, "not JSON"),
        (b'["a list"]', as_json, 422, "not what this endpoint takes"),
        (b'{"colour": "red"}', as_json, 422, "not what this endpoint takes"),
        (TWO_MIB, as_json, 413, "body larger than"),
        (b'{"reason": "x"}', {**auth, "content-type": "text/plain"}, 415, "not application/json"),
        (b'{"reason": "x"}', {"content-type": "application/json"}, 401, "bearer token"),
    ]:
        if path == "/v1/journeys/onboarding" and says == "not what this endpoint takes" and body.startswith(b"{"):
            status, says = 422, "invalid onboarding request"  # the journey's own input check: a schema refusal too
        assert_refused(httpx.post(f"{hub.url}{path}", content=body, headers=headers), status, says)
        assert httpx.get(f"{hub.url}/healthz").status_code == 200


def test_v1_unknown_routes_ids_and_methods(hub: EmbeddedHub, quiet: pytest.LogCaptureFixture) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    for method, path, status in [
        ("GET", "/v1/nosuch", 404), ("GET", "/v1/dead-letters/nope", 404), ("GET", "/v1/journeys/nope", 404),
        ("POST", "/v1/dead-letters/nope/replay", 404), ("POST", "/v1/journeys/nope/resume", 404),
        ("POST", "/v1/journeys/nope/cancel", 404), ("GET", "/v1/transactions/nope", 404),
        ("DELETE", "/v1/replay", 405), ("GET", "/v1/dead-letters?state=lost", 400),
        ("GET", "/v1/dead-letters?limit=ten", 400), ("GET", "/v1/journeys?limit=0", 400),
        ("GET", "/v1/reconciliations?limit=ten", 400), ("GET", "/v1/reconciliations/nope", 404),
        ("GET", "/v1/reconciliations/latest?class=bogus", 400), ("POST", "/v1/reconciliations/nope/repair", 404),
        ("DELETE", "/v1/reconciliations", 405), ("GET", "/v1/reconciliations/latest?system=nosuch", 400),
    ]:
        answer = httpx.request(method, f"{hub.url}{path}", headers=auth)
        assert answer.status_code == status, (method, path, answer.text)
        assert answer.json()["error"]["status"] == status
        assert httpx.request(method, f"{hub.url}{path}").status_code in (401, 404, 405)  # no token: never served
    discard = httpx.post(f"{hub.url}/v1/dead-letters/nope/discard", json={"reason": "obsolete"}, headers=auth)
    assert_refused(discard, 404, "no dead letter 'nope'")
    assert hub.runtime.store.lock_acquire(RUN_LEASE, "another run", 60)  # one under way elsewhere
    assert_refused(httpx.post(f"{hub.url}/v1/reconciliations", json={}, headers=auth), 409, "already running")


def test_an_unexpected_failure_is_a_500_logged_once_with_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(hub=HubSettings(store=f"sqlite:///{tmp_path}/hub.db"))
    with EmbeddedHub(settings, threads=1) as broken:
        with sqlite3.connect(tmp_path / "hub.db") as db:  # a row damaged on disk: a bug's kind of failure
            db.execute("INSERT INTO dead_letters (id, created_at, actor, category, reason, message, attempts, state) "
                       "VALUES ('damaged', 1, 'deliver', 'data', 'r', X'7B6E6F', 1, 'open')")
        db.close()
        with caplog.at_level(logging.ERROR):
            answer = httpx.get(f"{broken.url}/v1/dead-letters/damaged")
            again = httpx.get(f"{broken.url}/healthz")
    assert answer.status_code == 500 and again.status_code == 200
    message = answer.json()["error"]["message"]
    assert "Traceback" not in answer.text and "DecodeError" not in answer.text
    request_id = re.search(r"request (\w+)", message)
    assert request_id is not None
    logged = [record for record in caplog.records if request_id.group(1) in record.getMessage()]
    assert len(logged) == 1 and "GET /v1/dead-letters/damaged" in logged[0].getMessage()
    assert len([record for record in caplog.records if record.exc_info]) == 1  # once, not again by the server
