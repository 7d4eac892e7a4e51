"""Recovery paths: nothing parked or dead-lettered is lost when the broker fails, open circuits
recover after a restart, voids before their invoice, and probes only where a write may have landed."""

import json
import time
from pathlib import Path

import dramatiq
import httpx
import pytest
from conftest import System, start_system
from crossledger.actors import declare
from crossledger.core.bench import signed
from crossledger.core.demo import free_port
from crossledger.core.embedded import wait_until
from crossledger.core.runtime import Runtime
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.stores.base import DeadLetter
from crossledger.plugins.errors import Category, ConnectorError
from dramatiq.broker import MessageProxy


def unreachable_broker_runtime(tmp_path: Path) -> Runtime:
    """A runtime whose Redis broker is down: every enqueue fails for real."""
    settings = Settings(hub=HubSettings(broker=f"redis://127.0.0.1:{free_port()}/0",
                                        store=f"sqlite:///{tmp_path}/hub.db"),
                        connectors={"stripe": {"api_key": "sk", "webhook_secret": "whsec"}})
    runtime = Runtime(settings)
    declare(runtime)
    return runtime


def test_a_failed_drain_keeps_what_it_could_not_send(tmp_path: Path) -> None:
    runtime = unreachable_broker_runtime(tmp_path)
    for n in range(3):
        runtime.store.park("netsuite", {"target": "netsuite", "envelope": {"n": n}})
    with pytest.raises(Exception):  # noqa: B017 - whatever the broker raises, the messages stay parked
        runtime.drain_target("netsuite")
    assert runtime.store.parked_count("netsuite") == 3
    runtime.close()


def test_a_failed_replay_leaves_the_dead_letter_open(tmp_path: Path) -> None:
    runtime = unreachable_broker_runtime(tmp_path)
    runtime.store.dlq_add(DeadLetter(id="L1", created_at=1.0, actor="deliver", target="netsuite", category="data",
                                     reason="r", event_id=None, correlation_id="c", attempts=1,
                                     message={"queue_name": "crossledger-deliver", "actor_name": "deliver",
                                              "args": ["netsuite", {}], "kwargs": {}}))
    with pytest.raises(Exception):  # noqa: B017
        runtime.replay_dead_letter("L1")
    letter = runtime.store.dlq_get("L1")
    assert letter is not None and letter.state == "open"
    runtime.close()


def test_an_open_circuit_recovers_after_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/shared.db"
    before = start_system(tmp_path, store=store, circuit_threshold=1)
    before.fault("netsuite", mode="down")
    before.customer("Parked Ltd")
    assert wait_parked(before)
    before.hub.stop()  # the scheduled probe dies with the process
    before.server.stop()

    after = start_system(tmp_path, store=store, circuit_threshold=1)
    try:
        after.settle(lambda: len(after.state("netsuite")["customer"]) == 1, timeout=30)
        assert after.state("netsuite")["customer"][0]["companyName"] == "Parked Ltd"
        assert after.hub.runtime.store.circuit_get("netsuite").status == "closed"
    finally:
        after.hub.stop()
        after.server.stop()


def wait_parked(system: System) -> bool:
    store = system.hub.runtime.store
    return wait_until(lambda: store.parked_count("netsuite") == 1 and store.circuit_get("netsuite").status == "open",
                      20)


def test_a_void_delivers_its_invoice_first(tmp_path: Path) -> None:
    system = start_system(tmp_path, routes={"invoice.issued": []})  # NetSuite only hears of the void
    try:
        customer = system.customer("Voided Co")
        invoice = system.invoice(customer["id"], [7_000])
        system.stripe.post(f"/v1/invoices/{invoice['id']}/void")
        system.settle(lambda: len(system.state("netsuite")["creditmemo"]) == 1, timeout=30)
        [record] = system.state("netsuite")["invoice"]
        assert float(record["total"]) == 70.0 and float(record["amountRemaining"]) == 0.0
        assert system.hub.runtime.store.dlq_count() == 0
    finally:
        system.hub.stop()
        system.server.stop()


def test_a_refused_write_is_sent_again_without_a_probe(system: System) -> None:
    system.fault("netsuite", mode="http_500", count=1)
    system.customer("Retry Ltd")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    store = system.hub.runtime.store
    subject = store.xref_find("customer", "stripe", system.state("stripe")["customers"][0]["id"]) or ""
    statuses = [r.status for r in store.audit_for_subject(subject) if r.step == "customer.upsert"]
    assert statuses == ["failed", "delivered"]  # a 500 is an answer: nothing to probe


def test_a_signature_with_foreign_characters_is_401(system: System) -> None:
    body = json.dumps({"id": "evt_x", "object": "event"}).encode()
    header = signed("whsec_wrong", body)["Stripe-Signature"].split(",v1=")[0] + ",v1=\u00e9\u00e9"
    answer = httpx.post(f"{system.hub.url}/webhooks/stripe", content=body,
                        headers={"Stripe-Signature": header.encode("utf-8")})  # raw bytes, as an attacker sends
    assert answer.status_code == 401


def test_budget_free_retries_still_back_off(tmp_path: Path) -> None:
    settings = Settings(hub=HubSettings(store=f"sqlite:///{tmp_path}/hub.db", min_backoff_ms=100,
                                        max_backoff_ms=100_000),
                        connectors={"stripe": {"api_key": "sk", "webhook_secret": "whsec"}})
    runtime = Runtime(settings)
    declare(runtime)
    message = dramatiq.Message(queue_name="crossledger-deliver", actor_name="deliver", args=("netsuite", {}),
                               kwargs={}, options={"attempts": 6, "retries": 0})
    before = time.time() * 1000
    runtime.handle_failure(runtime.broker, MessageProxy(message),
                           ConnectorError(Category.RATE_LIMITED, "slow down, no Retry-After"))

    [raw] = list(runtime.broker.queues["crossledger-deliver.DQ"].queue)
    retried = dramatiq.Message.decode(raw)
    assert retried.options["retries"] == 0 and retried.options["attempts"] == 7  # no retry budget spent
    assert 100 * 2**5 * 0.5 <= retried.options["eta"] - before <= 100 * 2**5 + 50  # yet it backs off
    runtime.close()
