"""Journeys as they run in production: ``crossledger serve`` and ``crossledger worker`` over Redis.

A journey's state lives in the store and its moves are broker messages, so a worker killed with
SIGKILL in the middle of a run loses nothing: the message it held comes back to the next worker,
and the run goes on where it stopped. Should the messages be lost too, the worker that starts
resumes the runs nobody has touched for a while (:meth:`Engine.recover`).

The kill lands mid-journey deterministically: NetSuite does the onboarding's ``erp`` write and then
holds its answer (the sandbox's ``timeout_after_commit`` fault), so the worker dies with the
customer made in NetSuite and the write not yet acknowledged, the sharpest point for "once".
"""

import os
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from conftest import Processes, redis_url, sandbox_config
from crossledger.canonical import external_key
from crossledger.core.journeys.engine import RESUME_AFTER_S
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import load_settings
from crossledger.core.store import open_store
from crossledger.core.store.base import JourneyRecord, Store
from crossledger.devtools.demo.drivers import SalesforceUser
from crossledger.devtools.demo.run import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BROKER_DB, STORE_DB = 14, 15
WON = "Customer - Direct"
HELD_ANSWER_MS = 8_000
"""How long NetSuite holds its answer to the write it made: the worker is killed well within it,
and within the NetSuite client's timeout (10 s) and the actor's time limit (below)."""
HUB = ("\n[hub]\nredis_heartbeat_timeout_ms = 3000\nredis_maintenance_chance = 200000\nmin_backoff_ms = 100\n"
       "max_backoff_ms = 1000\ncircuit_cooldown_s = 1.0\ntime_limit_s = 10\nlease_ttl_s = 11.0\n")
"""A dead worker's messages come back after 3 s, its leases lapse after 11 s."""


class Hub:
    """Every sandbox (``crossledger sandbox``), ``serve`` and one ``worker``, on this test's Redis dbs."""

    def __init__(self, tmp_path: Path, processes: Processes) -> None:
        self.processes = processes
        self.broker, store_url = redis_url(BROKER_DB), redis_url(STORE_DB)
        sandbox_port, hub_port = free_port(), free_port()
        config = sandbox_config(tmp_path, processes, sandbox_port, hub_port, HUB)
        self.env = {**os.environ, "CROSSLEDGER_CONFIG": str(config), "CROSSLEDGER_BROKER": self.broker,
                    "CROSSLEDGER_STORE": store_url}
        processes.start("serve", "--port", str(hub_port), env=self.env, name="serve")
        self.worker = self.start_worker("worker")
        assert wait_until(lambda: _answers(f"http://127.0.0.1:{hub_port}/readyz"), 30), \
            (tmp_path / "serve.log").read_text()
        self.sandboxes = f"http://127.0.0.1:{sandbox_port}"
        self.settings = load_settings(config, environ={})
        self.store: Store = open_store(store_url)

    def start_worker(self, name: str) -> Any:
        self.worker = self.processes.start("worker", "--processes", "1", "--threads", "4", env=self.env, name=name)
        return self.worker

    def state(self, system: str) -> dict[str, Any]:
        return httpx.get(f"{self.sandboxes}/{system}/_sandbox/state").json()  # type: ignore[no-any-return]

    def fault(self, system: str, **spec: Any) -> None:
        httpx.post(f"{self.sandboxes}/{system}/_sandbox/faults", json=spec).raise_for_status()

    def clear_fault(self, system: str) -> None:
        httpx.delete(f"{self.sandboxes}/{system}/_sandbox/faults").raise_for_status()

    def onboarding(self) -> JourneyRecord | None:
        runs = self.store.journeys(name="onboarding")
        return runs[0] if runs else None

    def kill_mid_erp(self, canonical_id: str) -> JourneyRecord:
        """Onboard an account with NetSuite holding the answer to the write it makes; SIGKILL the
        worker once billing is done, the erp step running and the NetSuite customer made."""
        def erp_in_flight() -> bool:
            run = self.onboarding()
            return run is not None and run.steps["billing"].status == "done" \
                and run.steps["erp"].status == "running" and len(_records(self, "netsuite", canonical_id)) == 1

        assert wait_until(erp_in_flight, 30, interval=0.05), f"the erp step never got in flight: {self.onboarding()}"
        self.processes.kill(self.worker)
        self.clear_fault("netsuite")
        run = self.onboarding()
        assert run is not None and run.state == "running" and run.steps["erp"].status == "running", run
        return run

    def completed(self) -> JourneyRecord:
        assert wait_until(lambda: (run := self.onboarding()) is not None and run.state == "completed", 90), \
            f"the run did not complete: {self.onboarding()}"
        run = self.onboarding()
        assert run is not None
        return run



@pytest.fixture
def hub(tmp_path: Path, processes: Processes) -> Hub:
    return Hub(tmp_path, processes)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _records(hub: Hub, system: str, canonical_id: str) -> list[dict[str, Any]]:
    """What ``system`` holds for the canonical customer."""
    if system == "stripe":
        return [c for c in hub.state("stripe")["customers"] if c["metadata"].get("crossledger_id") == canonical_id]
    collection, field = {"netsuite": ("customer", "externalId"), "zendesk": ("organizations", "external_id")}[system]
    return [record for record in hub.state(system)[collection] if record.get(field) == external_key(canonical_id)]


def _sell(hub: Hub, name: str, domain: str, tax_id: str) -> tuple[str, str]:
    """A closed-won account in Salesforce, with NetSuite set to make its customer and hold the
    answer; (the account id, the canonical id)."""
    hub.fault("netsuite", mode="timeout_after_commit", latency_ms=HELD_ANSWER_MS)
    sales = SalesforceUser(hub.settings.connectors["salesforce"])
    account_id = sales.create_account({"Name": name, "Type": WON, "Website": f"https://{domain}",
                                       "Email__c": f"ap@{domain}", "Tax_Id__c": tax_id, "CurrencyIsoCode": "USD",
                                       "BillingCity": "Austin", "BillingCountry": "US"})
    return account_id, f"customer/salesforce/{account_id}"


def _onboarded_once(hub: Hub, account_id: str, canonical_id: str) -> None:
    """One customer in each system, every id written back to the Salesforce account, no dead letters."""
    [stripe] = _records(hub, "stripe", canonical_id)
    [netsuite] = _records(hub, "netsuite", canonical_id)
    [zendesk] = _records(hub, "zendesk", canonical_id)
    [account] = [a for a in hub.state("salesforce")["accounts"] if a["Id"] == account_id]
    assert (account["Stripe_Customer_Id__c"], account["NetSuite_Id__c"], account["Zendesk_Organization_Id__c"]) \
        == (stripe["id"], str(netsuite["id"]), str(zendesk["id"]))
    assert [(letter.category, letter.reason) for letter in hub.store.dlq_list()] == []


def test_a_worker_killed_mid_onboarding_resumes_it_after_restart_and_it_completes_once(hub: Hub) -> None:
    account_id, canonical_id = _sell(hub, "Initrode Inc", "initrode.example", "12-3456789")
    killed = hub.kill_mid_erp(canonical_id)

    # The message the dead worker held comes back to the next one, long before the recovery
    # sweep would look at the run: redelivery alone finishes it.
    hub.start_worker("worker-2")
    run = hub.completed()
    assert run.id == killed.id and all(step.status == "done" for step in run.steps.values()), run.steps
    assert run.finished_at is not None and run.finished_at - killed.updated_at < RESUME_AFTER_S
    assert len(hub.store.journeys(name="onboarding")) == 1
    _onboarded_once(hub, account_id, canonical_id)


def test_the_worker_that_starts_resumes_a_run_whose_messages_were_lost(hub: Hub) -> None:
    account_id, canonical_id = _sell(hub, "Globex Corp", "globex.example", "98-7654321")
    killed = hub.kill_mid_erp(canonical_id)

    # The broker loses every message (a Redis without persistence restarted, say), and the run
    # has not been touched for longer than the sweep waits: only the sweep can move it now.
    redis.Redis.from_url(hub.broker).flushdb()
    hub.store.journey_put(msgspec.structs.replace(killed, updated_at=killed.updated_at - RESUME_AFTER_S - 1))
    hub.start_worker("worker-2")
    run = hub.completed()
    assert all(step.status == "done" for step in run.steps.values()), run.steps
    _onboarded_once(hub, account_id, canonical_id)
