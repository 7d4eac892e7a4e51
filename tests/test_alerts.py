"""Dead letters alert through Sentry; checked against a local endpoint that speaks Sentry's protocol."""

import gzip
import json
import time
from pathlib import Path

import httpx
import sentry_sdk
from conftest import start_system
from crossledger.core.bench import signed
from crossledger.core.embedded import wait_until
from crossledger.plugins.sandbox import ServerThread
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


def test_a_dead_letter_raises_one_sentry_event_without_customer_data(tmp_path: Path) -> None:
    receiver, items = sentry_receiver()
    system = start_system(tmp_path, sentry_dsn=f"http://publickey@127.0.0.1:{receiver.port}/42")
    try:
        customer = system.stripe.post("/v1/customers", name="Secretive Ltd", email="ceo@secretive.example")
        invoice = system.invoice(customer["id"], [5_000])
        system.settle(lambda: len(system.state("netsuite")["invoice"]) == 1)
        broken = {**invoice, "total": invoice["total"] + 1}
        body = json.dumps({"id": "evt_broken", "object": "event", "type": "invoice.finalized",
                           "created": int(time.time()), "data": {"object": broken}}).encode()
        secret = system.hub.runtime.settings.connectors["stripe"]["webhook_secret"]
        httpx.post(f"{system.hub.url}/webhooks/stripe", content=body, headers=signed(secret, body))
        system.settle(lambda: system.hub.runtime.store.dlq_count() == 1)
        sentry_sdk.flush(5)
    finally:
        system.hub.stop()
        system.server.stop()
        sentry_sdk.init()  # no DSN: switch the SDK off for the rest of the suite
        receiver.stop()

    events = [item for item in items if "message" in item]
    assert len(events) == 1
    [event] = events
    assert event["message"].startswith("dead letter (data): invoice invoice/stripe/")
    assert event["tags"]["category"] == "data" and event["tags"]["target"] == "-"
    assert "ceo@secretive.example" not in json.dumps(items)


def test_a_journey_step_held_while_its_system_is_down_raises_one_sentry_event(tmp_path: Path) -> None:
    receiver, items = sentry_receiver()
    system = start_system(tmp_path, sentry_dsn=f"http://publickey@127.0.0.1:{receiver.port}/42")
    try:
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
        sentry_sdk.flush(5)
    finally:
        system.hub.stop()
        system.server.stop()
        sentry_sdk.init()
        receiver.stop()

    events = [item for item in items if "message" in item and item["message"].startswith("journey ")]
    assert len(events) == 1, events
    [event] = events
    assert event["message"].startswith("journey subscription-change queued: erp: netsuite is unavailable")
    assert event["tags"]["journey"] == "subscription-change"
    assert "ap@queued.example" not in json.dumps(items)
