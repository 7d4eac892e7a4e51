"""Dead letters alert through Sentry; checked against a local endpoint that speaks Sentry's protocol."""

import gzip
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sentry_sdk
from conftest import System, start_system
from crossledger.core.processes.embedded import wait_until
from crossledger.core.telemetry.alerts import init_sentry
from crossledger.devtools.bench.run import signed
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import WITHHELD
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def sentry_receiver() -> tuple[ServerThread, list[dict]]:  # type: ignore[type-arg]
    """Collects the items of every envelope POSTed to /api/<project>/envelope/."""
    items: list[dict] = []  # type: ignore[type-arg]

    async def envelope(request: Request) -> JSONResponse:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.split(b"\n")
        items.extend(json.loads(line) for line in lines[2::2] if line.strip())
        return JSONResponse({})

    app = Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"])])
    return ServerThread(app).start(), items


@contextmanager
def reporting_to_sentry(tmp_path: Path) -> Iterator[tuple[System, list[dict]]]:  # type: ignore[type-arg]
    """A hub on the sandboxes whose Sentry DSN points at a local receiver: the hub and the items
    received. Afterwards the SDK is flushed, then switched off for the rest of the suite."""
    receiver, items = sentry_receiver()
    system = start_system(tmp_path, sentry_dsn=f"http://publickey@127.0.0.1:{receiver.port}/42")
    try:
        yield system, items
        sentry_sdk.flush(5)
    finally:
        system.stop()
        sentry_sdk.init()  # no DSN
        receiver.stop()


def test_a_dead_letter_raises_one_sentry_event_without_customer_data(tmp_path: Path) -> None:
    with reporting_to_sentry(tmp_path) as (system, items):
        customer = system.stripe.post("/v1/customers", name="Secretive Ltd", email="ceo@secretive.example")
        invoice = system.invoice(customer["id"], [5_000])
        system.settle(lambda: len(system.state("netsuite")["invoice"]) == 1)
        broken = {**invoice, "total": invoice["total"] + 1}
        body = json.dumps({"id": "evt_broken", "object": "event", "type": "invoice.finalized",
                           "created": int(time.time()), "data": {"object": broken}}).encode()
        secret = system.hub.runtime.settings.connectors["stripe"]["webhook_secret"]
        httpx.post(f"{system.hub.url}/webhooks/stripe", content=body, headers=signed(secret, body))
        system.settle(lambda: system.hub.runtime.store.dlq_count() == 1)

    events = [item for item in items if "message" in item]
    assert len(events) == 1
    [event] = events
    assert event["message"].startswith("dead letter (data): invoice invoice/stripe/")
    assert event["tags"]["category"] == "data" and event["tags"]["target"] == "-"
    assert "ceo@secretive.example" not in json.dumps(items)


def test_a_dead_letter_names_the_field_that_broke_but_not_its_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Stripe invoice whose status holds an e-mail: msgspec's error quotes it, the connector's
    ConnectorError wraps that error, and the reason reaches the dead letter, the log and Sentry."""
    caplog.set_level(logging.DEBUG)
    email = "billing.lead@quoted-value.example"
    with reporting_to_sentry(tmp_path) as (system, items):
        customer = system.stripe.post("/v1/customers", name="Quoted Ltd")
        invoice = system.invoice(customer["id"], [5_000])
        system.settle(lambda: len(system.state("netsuite")["invoice"]) == 1)
        broken = {**invoice, "id": "in_quoted", "status": email}
        body = json.dumps({"id": "evt_quoted", "object": "event", "type": "invoice.finalized",
                           "created": int(time.time()), "data": {"object": broken}}).encode()
        secret = system.hub.runtime.settings.connectors["stripe"]["webhook_secret"]
        httpx.post(f"{system.hub.url}/webhooks/stripe", content=body, headers=signed(secret, body))
        system.settle(lambda: system.hub.runtime.store.dlq_count() == 1)
        [letter] = system.hub.runtime.store.dlq_list()

    assert letter.category == "data"
    assert letter.reason == "stripe invoice 'in_quoted' is malformed: Invalid enum value '…' - at `$.status`"
    [event] = [item for item in items if "message" in item]
    assert event["message"] == f"dead letter (data): {letter.reason}"
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    for where, text in (("the log", logged), ("Sentry", json.dumps(items)), ("the reason", letter.reason)):
        assert email not in text, f"the e-mail reached {where}"


def test_a_journey_step_held_while_its_system_is_down_raises_one_sentry_event(tmp_path: Path) -> None:
    with reporting_to_sentry(tmp_path) as (system, items):
        system.fault("netsuite", mode="down")
        customer = system.stripe.post("/v1/customers", name="Queued Ltd", email="ap@queued.example",
                                      **{"invoice_settings[default_payment_method]": "pm_card_visa"})
        product = system.stripe.post("/v1/products", name="Support pro", **{"metadata[tier]": "pro"})
        price = system.stripe.post("/v1/prices", product=product["id"], currency="usd", unit_amount=9_000,
                                   **{"recurring[interval]": "month"})
        system.stripe.post("/v1/subscriptions", customer=customer["id"], **{"items[0][price]": price["id"]})
        store = system.hub.runtime.store
        assert wait_until(lambda: any(run.state == "waiting" for run in store.journeys(name="subscription-change")),
                          30)

    events = [item for item in items if "message" in item and item["message"].startswith("journey ")]
    assert len(events) == 1, events
    [event] = events
    assert event["message"].startswith("journey subscription-change queued: erp: netsuite is unavailable")
    assert event["tags"]["journey"] == "subscription-change"
    assert "ap@queued.example" not in json.dumps(items)


def test_a_critical_log_reaches_sentry_with_types_and_frames_but_no_values() -> None:
    """Whatever the SDK collects unasked (locals of every frame, an exception's text, breadcrumbs
    from logs or added by hand), only ids, types and code leave."""
    # Built, not written out: the frames sent carry the lines of code around them.
    private = ["@".join(["ceo", domain]) for domain in ("breadcrumb.example", "logged.example", "local.example")]
    private.append(" ".join(["Private", "Person"]))
    receiver, items = sentry_receiver()
    init_sentry(f"http://publickey@127.0.0.1:{receiver.port}/42")
    log = logging.getLogger("crossledger.test")
    try:
        sentry_sdk.add_breadcrumb(message=f"customer {private[0]}", category="test")
        log.warning("about to fail for %s", {"email": private[1]})

        def handle(payload: dict[str, str]) -> None:
            email = payload["email"]
            raise ValueError(f"cannot use {email}")

        try:
            handle({"email": private[2], "name": private[3]})
        except ValueError:
            log.critical("could not retry or dead-letter message %s", "msg-1", exc_info=True)
        sentry_sdk.flush(5)
    finally:
        sentry_sdk.init()
        receiver.stop()

    [event] = [item for item in items if "exception" in item]
    sent = json.dumps(items)
    for value in private:
        assert value not in sent, value
    [error] = event["exception"]["values"]
    assert error["type"] == "ValueError" and error["value"] == WITHHELD
    assert [frame["function"] for frame in error["stacktrace"]["frames"]][-1] == "handle"
    assert "msg-1" in json.dumps(event["logentry"])
