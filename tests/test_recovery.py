"""Recovery paths: nothing parked or dead-lettered is lost when the broker fails, open circuits
recover after a restart, voids before their invoice, and probes only where a write may have landed."""

import json
import time
import uuid
from pathlib import Path

import dramatiq
import httpx
import pytest
from conftest import System, redis_url, start_system
from crossledger.actors import declare
from crossledger.actors.messages import Deliver
from crossledger.core.hub.runtime import Runtime
from crossledger.core.messaging.retries import Retries
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.store.base import DeadLetter
from crossledger.devtools.bench.run import signed
from crossledger.devtools.demo.run import free_port
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
        after.stop()


def test_a_circuit_whose_probe_was_lost_is_probed_by_the_next_delivery_parked_on_it(system: System) -> None:
    """Open for far longer than a probe takes, with no probe coming (its process died after boot):
    the circuit breaker parks the next delivery and probes again; the target is up, so it lands."""
    store = system.hub.runtime.store
    store.circuit_reopen("netsuite", time.time() - 3_600)
    system.customer("Orphaned Circuit Ltd")
    system.settle(lambda: any(record["companyName"] == "Orphaned Circuit Ltd"
                              for record in system.state("netsuite")["customer"]), timeout=30)
    assert store.circuit_get("netsuite").status == "closed"
    assert store.parked_count("netsuite") == 0


def test_the_delivery_that_opens_a_circuit_waits_parked_for_the_probe_not_on_a_timer(tmp_path: Path) -> None:
    system = start_system(tmp_path, circuit_threshold=1, min_backoff_ms=60_000, max_backoff_ms=60_000)
    try:
        system.fault("netsuite", mode="down")
        system.customer("Parked At Once Ltd")
        assert wait_parked(system)  # not after a minute's backoff: at once
        store = system.hub.runtime.store
        subject = store.xref_find("customer", "stripe", system.state("stripe")["customers"][0]["id"]) or ""
        trail = [record.status for record in store.audit_for_subject(subject) if record.system == "netsuite"]
        assert "parked" in trail and "retry" not in trail, trail
        system.clear_fault("netsuite")
        system.settle(lambda: len(system.state("netsuite")["customer"]) == 1, timeout=30)
    finally:
        system.stop()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_parking_a_delivery_is_one_round_trip_and_keeps_its_place_in_line(tmp_path: Path, backend: str) -> None:
    """Parked, audited and settled in one commit of the message's unit of work."""
    store = f"sqlite:///{tmp_path}/hub.db" if backend == "sqlite" else \
        f"{redis_url(7)}?namespace=park-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(Settings(hub=HubSettings(broker="memory", store=store),
                               connectors={"stripe": {"api_key": "sk", "webhook_secret": "whsec"}}))
    declare(runtime)
    try:
        messages = [Deliver("netsuite", {"id": f"e{n}", "correlation_id": "corr-1", "subject": "cus-1"}).message()
                    for n in range(4)]
        for message in messages:
            runtime.dispatch(message)  # recorded in flight, as sent
        runtime.park(messages[0], runtime.carried(messages[0]), "circuit open")  # connected, scripts loaded
        before = runtime.store.round_trips.count
        for message in messages[1:]:
            runtime.park(message, runtime.carried(message), "circuit open")
        assert runtime.store.round_trips.count - before == 3
        assert [parked["envelope"]["id"] for _, parked in runtime.store.parked("netsuite", 10)] == \
            ["e0", "e1", "e2", "e3"]
        assert runtime.store.inflight_count() == 0
        assert [record.status for record in runtime.store.audit_trail("corr-1")] == ["parked"] * 4
    finally:
        runtime.close()


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
        system.stop()


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
    [retries] = [m for m in runtime.broker.middleware if isinstance(m, Retries)]
    retries.after_process_message(runtime.broker, MessageProxy(message),
                                  exception=ConnectorError(Category.RATE_LIMITED, "slow down, no Retry-After"))

    [raw] = list(runtime.broker.queues["crossledger-deliver.DQ"].queue)
    retried = dramatiq.Message.decode(raw)
    assert retried.options["retries"] == 0 and retried.options["attempts"] == 7  # no retry budget spent
    assert 100 * 2**5 * 0.5 <= retried.options["eta"] - before <= 100 * 2**5 + 50  # yet it backs off
    runtime.close()
