"""The Stripe -> NetSuite slice end to end, on the embedded default (memory broker, SQLite).

Every exchange is real HTTP on loopback: the Stripe sandbox signs and POSTs webhooks to the hub,
the hub's workers call the NetSuite sandbox with OAuth 1.0a. Nothing of ours is mocked.
"""

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import System, start_system
from crossledger.core.processes.embedded import wait_until
from crossledger.devtools.bench.run import signed


def netsuite_external_ids(system: System, kind: str) -> Counter[str]:
    return Counter(record.get("externalId") for record in system.state("netsuite")[kind])


def webhook(system: System, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    secret = system.hub.runtime.settings.connectors["stripe"]["webhook_secret"]
    return httpx.post(f"{system.hub.url}/webhooks/stripe", content=body,
                      headers=headers if headers is not None else signed(secret, body))


def test_customers_invoices_and_payments_reach_netsuite_once(system: System) -> None:
    customer = system.customer("Globex Corp")
    paid = system.invoice(customer["id"], [12_000, 3_050], pay=True)
    system.invoice(customer["id"], [9_900])

    system.settle(lambda: system.reconcile().ok)

    report = system.reconcile()
    assert report.problems == []
    assert report.counts["netsuite_customers"] == 1
    assert report.counts["netsuite_invoices"] == 2
    assert report.counts["netsuite_payments"] == 1
    store = system.hub.runtime.store
    ns_invoice = store.xref_get(store.xref_find("invoice", "stripe", paid["id"]) or "", "netsuite")
    [record] = [r for r in system.state("netsuite")["invoice"] if r["id"] == ns_invoice]
    assert float(record["total"]) == 150.50


def test_zero_decimal_currency_keeps_exact_amounts(system: System) -> None:
    customer = system.customer("Nippon KK")
    system.invoice(customer["id"], [12_345, 100], currency="jpy", pay=True)
    system.settle(lambda: system.reconcile().ok)
    [invoice] = system.state("netsuite")["invoice"]
    assert float(invoice["total"]) == 12_445


def test_one_webhook_delivered_five_times_gives_one_record(system: System) -> None:
    system.customer("Initech")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    event = system.stripe.get("/v1/events", type="customer.created")["data"][0]
    for _ in range(4):
        system.stripe.post(f"/_sandbox/events/{event['id']}/resend")
    body = json.dumps(event).encode()
    answers = [webhook(system, body).status_code for _ in range(5)]

    system.settle()
    assert answers == [200] * 5
    assert list(netsuite_external_ids(system, "customer").values()) == [1]
    audit = system.hub.runtime.store.audit_for_subject(
        system.hub.runtime.store.xref_find("customer", "stripe", event["data"]["object"]["id"]) or "")
    assert sum(1 for r in audit if r.step == "customer.upsert" and r.status == "delivered") == 1


def test_bad_signature_is_401_and_nothing_is_enqueued(system: System) -> None:
    body = json.dumps({"id": "evt_forged", "object": "event", "type": "customer.created", "created": 1,
                       "data": {"object": {"id": "cus_forged", "object": "customer"}}}).encode()
    forged = signed("whsec_not_the_secret", body)
    answer = webhook(system, body, forged)
    stale = webhook(system, body, {"Stripe-Signature": "t=1000,v1=00", "Content-Type": "application/json"})

    assert answer.status_code == 401
    assert answer.json()["error"]["message"].startswith("signature rejected")
    assert stale.status_code == 401
    assert system.hub.runtime.store.inbox_get("stripe", "evt_forged") is None


def test_signed_body_that_is_not_json_is_400(system: System) -> None:
    answer = webhook(system, b"this is not json")
    assert answer.status_code == 400
    assert "malformed body" in answer.json()["error"]["message"]


def test_unknown_connector_and_oversized_body(system: System) -> None:
    assert httpx.post(f"{system.hub.url}/webhooks/nosuch", content=b"{}").status_code == 404
    huge = webhook(system, b"x" * (1024 * 1024 + 1), {"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert huge.json() == {"error": {"status": 413, "message": "body larger than 1048576 bytes"}}


def invoice_event(system: System, invoice: dict[str, Any], event_id: str) -> bytes:
    """A new event about ``invoice``, stamped now as Stripe stamps the events it emits."""
    return json.dumps({"id": event_id, "object": "event", "api_version": "2025-10-29", "created": int(time.time()),
                       "data": {"object": invoice}, "livemode": False, "pending_webhooks": 1,
                       "request": {"id": None, "idempotency_key": None}, "type": "invoice.finalized"}).encode()


def test_invariant_breach_is_dead_lettered_and_replays_once_after_the_fix(system: System) -> None:
    customer = system.customer("Umbrella plc")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    control = f"{system.server.url}/stripe/_sandbox/webhooks"
    httpx.post(control, json={"hold": True}).raise_for_status()  # Stripe's own events wait till the end
    invoice = system.invoice(customer["id"], [5_000])
    broken = {**invoice, "total": invoice["total"] + 1}  # a snapshot whose total is not its lines

    assert webhook(system, invoice_event(system, broken, "evt_broken_total")).status_code == 200
    # settle() would wait for the held events too: wait for the hub alone.
    assert wait_until(lambda: system.hub.idle() and system.hub.runtime.store.dlq_count() == 1, 30)

    [letter] = system.hub.runtime.store.dlq_list()
    assert letter.category == "data"
    assert "total 50.01 USD != lines 50.00 USD + tax 0.00 USD - discounts 0.00 USD = 50.00 USD" in letter.reason
    replay = httpx.post(f"{system.hub.url}/v1/dead-letters/{letter.id}/replay?refresh=1")
    again = httpx.post(f"{system.hub.url}/v1/dead-letters/{letter.id}/replay")
    assert wait_until(lambda: system.hub.idle() and len(system.state("netsuite")["invoice"]) == 1, 30)

    assert replay.status_code == 200
    assert again.status_code == 409
    assert system.hub.runtime.store.dlq_count() == 0
    trail = system.hub.runtime.store.audit_trail(letter.correlation_id or "")
    assert [r.status for r in trail if r.step == "invoice.upsert"] == ["delivered"]
    # Stripe's own events about the invoice now arrive: the hub already has it as it is, so nothing moves.
    httpx.post(control, json={"release": "in_order"}).raise_for_status()
    system.settle()
    assert list(netsuite_external_ids(system, "invoice").values()) == [1]
    audit = system.hub.runtime.store.audit_for_subject(f"invoice/stripe/{invoice['id']}")
    assert "unchanged" in [r.status for r in audit]


def test_netsuite_down_parks_work_and_everything_lands_once_back(system: System) -> None:
    system.fault("netsuite", mode="down")
    customer = system.customer("Stark Industries")
    for amounts in ([1_000], [2_000, 500], [7_700]):
        system.invoice(customer["id"], amounts, pay=True)
    store = system.hub.runtime.store
    # While NetSuite is down a probe is always scheduled, so the hub is never idle: wait for the parking.
    assert wait_until(lambda: store.parked_count("netsuite") >= 3 and store.circuit_get("netsuite").status == "open",
                      30)
    assert store.dlq_count() == 0

    system.clear_fault("netsuite")
    system.settle(lambda: system.reconcile().ok, timeout=60)

    assert store.dlq_count() == 0
    assert store.parked_count("netsuite") == 0
    assert store.circuit_get("netsuite").status == "closed"
    assert all(n == 1 for n in netsuite_external_ids(system, "invoice").values())
    assert len(system.state("netsuite")["customerpayment"]) == 3


def test_timeout_after_commit_is_probed_not_duplicated(system: System) -> None:
    system.fault("netsuite", mode="timeout_after_commit", count=1, latency_ms=2500)
    system.customer("Wayne Enterprises")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1, timeout=30)
    system.settle()

    assert len(system.state("netsuite")["customer"]) == 1
    store = system.hub.runtime.store
    subject = store.xref_find("customer", "stripe", system.state("stripe")["customers"][0]["id"]) or ""
    statuses = [r.status for r in store.audit_for_subject(subject) if r.step == "customer.upsert"]
    assert statuses[0] == "failed"
    assert "probed" in statuses


def test_rate_limits_are_retried_after_retry_after(system: System) -> None:
    system.fault("netsuite", mode="http_429", count=2, retry_after=1)
    system.customer("Hooli")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    metrics = httpx.get(f"{system.hub.url}/metrics").text
    assert 'crossledger_retried_total{category="rate_limited"}' in metrics
    assert system.hub.runtime.store.dlq_count() == 0


def test_trace_shows_every_step_across_systems(system: System) -> None:
    customer = system.customer("Acme Ltd")
    invoice = system.invoice(customer["id"], [4_200])
    system.settle(lambda: system.reconcile().ok)
    subject = system.hub.runtime.store.xref_find("invoice", "stripe", invoice["id"])
    answer = httpx.get(f"{system.hub.url}/v1/transactions/{subject}")

    assert answer.status_code == 200
    steps = [(s["step"], s["system"], s["status"]) for s in answer.json()["steps"]]
    assert ("ingest", "stripe", "routed") in steps
    assert ("invoice.upsert", "netsuite", "delivered") in steps
    correlation = answer.json()["steps"][0]["correlation_id"]
    trail = httpx.get(f"{system.hub.url}/v1/transactions/{correlation}").json()["steps"]
    assert trail[0]["step"] == "webhook" and trail[0]["status"] == "received"


def test_health_readiness_and_metrics(system: System) -> None:
    assert httpx.get(f"{system.hub.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{system.hub.url}/readyz").json()["connectors"] == ["netsuite", "stripe"]
    system.customer("Soylent")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    text = httpx.get(f"{system.hub.url}/metrics").text
    assert 'crossledger_events_received_total{source="stripe"}' in text
    assert 'crossledger_events_delivered_total{target="netsuite",type="customer.upserted"}' in text
    assert "crossledger_delivery_latency_seconds_bucket" in text
    assert "crossledger_dead_letters_open 0.0" in text


def customer_event(customer: str, name: str, created: int, event_id: str) -> bytes:
    obj = {"id": customer, "object": "customer", "name": name, "email": None, "phone": None, "address": None,
           "currency": None, "metadata": {}, "created": created, "livemode": False}
    return json.dumps({"id": event_id, "object": "event", "api_version": "2025-10-29", "created": created,
                       "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
                       "request": {"id": None, "idempotency_key": None}, "type": "customer.updated"}).encode()


@pytest.fixture
def unlinked(tmp_path: Path) -> Iterator[System]:
    """A system that does not write cross-references back, for events about customers invented by
    the test (Stripe has no such customer to hold NetSuite's id)."""
    running = start_system(tmp_path, routes={"customer.linked": []})
    yield running
    running.stop()


def test_concurrent_updates_of_one_entity_land_newest_last(unlinked: System) -> None:
    system = unlinked
    # The first write is slow, so later versions would overtake it if deliveries were not serialized.
    system.fault("netsuite", mode="latency", latency_ms=600, count=1)
    for version in range(8):
        body = customer_event("cus_ordered", f"Version {version}", 1_800_000_000 + version, f"evt_v{version}")
        assert webhook(system, body).status_code == 200
    system.settle(timeout=60)

    [record] = system.state("netsuite")["customer"]
    assert record["companyName"] == "Version 7"
    store = system.hub.runtime.store
    audit = store.audit_for_subject("customer/stripe/cus_ordered")
    assert store.applied_version("netsuite", "customer/stripe/cus_ordered") == 1_800_000_007 * 1_000_000
    assert not [r for r in audit if r.status == "failed"]


def test_same_second_events_arriving_out_of_order_keep_the_newest(system: System) -> None:
    control = f"{system.server.url}/stripe/_sandbox/webhooks"
    for _ in range(5):  # until both events fall in one second of Stripe's clock
        httpx.post(control, json={"hold": True}).raise_for_status()
        customer = system.stripe.post("/v1/customers", name="Old Name", email="tie@example.com")
        system.stripe.post(f"/v1/customers/{customer['id']}", name="New Name")
        events = [e for e in system.stripe.get("/v1/events", limit=10)["data"]
                  if e["data"]["object"].get("id") == customer["id"]]
        assert httpx.post(control, json={"release": "reverse"}).json()["released"] >= 2  # updated first
        system.settle()
        if len({event["created"] for event in events}) == 1:
            break
    else:
        pytest.fail("could not get two events into one second")

    store = system.hub.runtime.store
    subject = store.xref_find("customer", "stripe", customer["id"]) or ""
    netsuite = [c for c in system.state("netsuite")["customer"] if c["externalId"] == subject.replace("/", ".")]
    assert [c["companyName"] for c in netsuite] == ["New Name"]
    golden = store.golden_get(subject)
    assert golden is not None and golden.data["name"] == "New Name"
    assert any(r.status == "tie" for r in store.audit_for_subject(subject))


def test_tax_reaches_netsuite_as_its_own_line_with_exact_totals(system: System) -> None:
    rate = system.stripe.post("/v1/tax_rates", display_name="Consumption tax", percentage="10", inclusive="false")
    customer = system.customer("Tokyo KK")
    for amount in (1_234, 5_678):  # yen: tax 123.4 -> 123 and 567.8 -> 568, per line
        system.stripe.post("/v1/invoiceitems", customer=customer["id"], amount=amount, currency="jpy")
    invoice = system.stripe.post("/v1/invoices", customer=customer["id"], **{"default_tax_rates[0]": rate["id"]})
    system.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
    system.settle(lambda: system.reconcile().ok)

    store = system.hub.runtime.store
    ns_id = store.xref_get(store.xref_find("invoice", "stripe", invoice["id"]) or "", "netsuite")
    record = system.hub.runtime.connectors["netsuite"].connector.fetch(
        system.hub.runtime.connectors["netsuite"].ctx, "invoice", ns_id or "")
    assert [(line["item"]["id"], float(line["amount"])) for line in record["item"]["items"]] == [
        ("1", 1234.0), ("1", 5678.0), ("2", 691.0)]
    assert float(record["total"]) == 7_603
