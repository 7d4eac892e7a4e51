"""Live reconciliation against drift injected behind the hub's back.

Stripe and NetSuite run as sandboxes on loopback with an embedded hub between them (the ``system``
fixture). The hub syncs a few customers and invoices; then people change the systems without it:
a NetSuite user edits, deletes, re-keys and invents records through NetSuite's REST API, and Stripe
changes records while its webhook to the hub is gone (the endpoint deleted through Stripe's API, so
the deliveries are never made). Every change must come back as a finding of the right class, with a
repair where the hub may make one; the repairs go through the hub's ``/v1/reconciliations`` API,
dry run first, and once a person has removed what the hub never deletes, a second run is clean.
"""

import csv
import io
import json
import subprocess
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import tomli_w
from crossledger.core.processes.embedded import wait_until
from crossledger.core.reconcile import Reconciler, engine
from crossledger.core.reconcile.engine import default_since
from crossledger.core.store.base import ReconciliationRun
from crossledger.core.store.sqlite import SQLiteStore
from crossledger.devtools.demo.drivers import NetSuiteFinance, SalesforceUser
from crossledger.plugins.errors import ConnectorError

from tests.conftest import CROSSLEDGER, System, start_system
from tests.test_topology import ALL, WON, account, settle


def eid(entity: str, stripe_id: str) -> str:
    return f"{entity}.stripe.{stripe_id}"


def subject(entity: str, stripe_id: str) -> str:
    return f"{entity}/stripe/{stripe_id}"


def classes_by_subject(findings: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for finding in findings:
        found[finding["subject"]].add(finding["class"])
    return dict(found)


def remove(netsuite: NetSuiteFinance, record_type: str, external_id: str) -> None:
    """A NetSuite user deletes a record the hub made, through the REST API."""
    netsuite.http.delete(f"/{record_type}/{netsuite.record(record_type, external_id)['id']}").raise_for_status()


def run(system: System, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{system.hub.url}/v1/reconciliations", json=body, timeout=60)
    assert response.status_code == 201, response.text
    shown: dict[str, Any] = response.json()
    return shown


def drop_stripe_webhooks(system: System) -> None:
    """Delete the hub's webhook endpoint through Stripe's API: what Stripe changes now, the hub never hears."""
    endpoints = system.stripe.get("/v1/webhook_endpoints")["data"]
    assert endpoints, "the sandbox has no webhook endpoint for the hub"
    for endpoint in endpoints:
        system.stripe.http.delete(f"/v1/webhook_endpoints/{endpoint['id']}").raise_for_status()


def test_injected_drift_is_found_in_its_class_and_repaired_to_a_clean_run(system: System) -> None:
    acme, beta = system.customer("Acme Ltd"), system.customer("Beta Corp")
    paid = system.invoice(acme["id"], [1000, 250], pay=True)
    edited, deleted, copied = (system.invoice(acme["id"], [700]), system.invoice(beta["id"], [900]),
                               system.invoice(beta["id"], [400]))
    voided, credited = system.invoice(beta["id"], [300]), system.invoice(acme["id"], [600])
    system.stripe.post("/v1/credit_notes", invoice=credited["id"], amount=100)  # in step throughout
    system.settle()
    assert run(system, full=True)["findings"] == []  # in step before anyone touches anything

    # -- a NetSuite user, through NetSuite's REST API -------------------------------------------
    netsuite = NetSuiteFinance(system.hub.runtime.settings.connectors["netsuite"])
    beta_ns = netsuite.record("customer", eid("customer", beta["id"]))
    netsuite.http.patch(f"/customer/{beta_ns['id']}", json={"companyName": "Beta Corporation"}).raise_for_status()
    edited_ns = netsuite.record("invoice", eid("invoice", edited["id"]))
    netsuite.http.patch(f"/invoice/{edited_ns['id']}", json={"item": {"items": [
        {"item": {"id": "1"}, "quantity": 1, "amount": 8.00}]}}).raise_for_status()
    remove(netsuite, "invoice", eid("invoice", deleted["id"]))
    [payment] = system.stripe.get("/v1/invoice_payments", invoice=paid["id"])["data"]
    remove(netsuite, "customerpayment", eid("payment", payment["id"]))
    copied_ns = netsuite.record("invoice", eid("invoice", copied["id"]))
    for tran_id in (copied_ns["tranId"], "HAND-1"):  # the same invoice keyed in again; one nobody billed
        netsuite.http.post("/invoice", json={"entity": {"id": beta_ns["id"]}, "tranId": tran_id, "item": {
            "items": [{"item": {"id": "1"}, "quantity": 1, "amount": 4.00}]}}).raise_for_status()

    # -- Stripe, with the hub's webhook gone -----------------------------------------------------
    drop_stripe_webhooks(system)
    system.stripe.post(f"/v1/invoices/{voided['id']}/void")
    system.stripe.post(f"/v1/customers/{acme['id']}", email="billing@acme.example")
    unheard = system.customer("Gamma GmbH")
    unheard_invoice = system.invoice(unheard["id"], [5000])

    incremental = run(system)  # since the clean run: what changed is read again, laid over what it read
    seen = classes_by_subject(incremental["findings"])
    assert seen[subject("invoice", edited["id"])] >= {"amount_mismatch"}
    assert seen[subject("invoice", copied["id"])] == {"duplicate"}
    assert seen[subject("invoice", voided["id"])] == {"status_mismatch"}
    assert seen[subject("customer", beta["id"])] == seen[subject("customer", acme["id"])] == {"field_drift"}
    # a deletion is in no "changed since" answer: NetSuite's are for a full run
    assert subject("invoice", deleted["id"]) not in seen and subject("payment", payment["id"]) not in seen

    report = run(system, full=True)
    found = classes_by_subject(report["findings"])
    assert found[subject("customer", beta["id"])] == {"field_drift"}
    assert "amount_mismatch" in found[subject("invoice", edited["id"])]
    assert found[subject("invoice", deleted["id"])] == {"missing"}
    assert found[subject("payment", payment["id"])] == {"missing"}
    assert found[subject("invoice", paid["id"])] == {"status_mismatch"}  # owing again, without its payment
    assert found[subject("invoice", copied["id"])] == {"duplicate"}
    assert found[subject("invoice", voided["id"])] == {"status_mismatch"}
    assert found[subject("customer", acme["id"])] == {"field_drift"}
    assert found[subject("customer", unheard["id"])] == {"missing"}
    assert found[subject("invoice", unheard_invoice["id"])] == {"missing"}
    orphans = [f for f in report["findings"] if f["class"] == "orphan"]
    assert [f["records"]["netsuite"]["id"] for f in orphans] == [
        str(r["id"]) for r in system.state("netsuite")["invoice"] if r.get("tranId") == "HAND-1"]
    balances = {f["subject"].rsplit("/", 1)[0] for f in report["findings"] if f["class"] == "balance"}
    assert balances == {"balance/invoice/USD", "balance/payment/USD"}  # credit notes: in step
    assert {name for f in report["findings"] for name in f} >= {"id", "class", "entity", "subject", "records",
                                                                 "repair", "rule", "age"}

    by_class = {f["class"]: f for f in report["findings"]}
    assert "total: stripe 7.00 USD, netsuite " in by_class["amount_mismatch"]["detail"]  # money as people read it
    assert by_class["field_drift"]["rule"] == "customer.profile: stripe is the system of record"
    assert by_class["duplicate"]["repair"] is None and by_class["orphan"]["repair"] is None
    assert all(f["repair"] is None or (f["repair"].get("target") or f["repair"].get("source")) in ("netsuite", "stripe")
               for f in report["findings"])
    assert not [f for f in report["findings"] if f["repair"] and f["repair"].get("target") == "stripe"], (
        "a repair may never write into the system of record")
    repairs = {f["subject"]: f["repair"]["action"] for f in report["findings"] if f["repair"]}
    assert repairs == {
        subject("payment", payment["id"]): "deliver", subject("invoice", paid["id"]): "deliver",
        subject("customer", beta["id"]): "deliver", subject("invoice", edited["id"]): "deliver",
        subject("invoice", deleted["id"]): "deliver", subject("invoice", voided["id"]): "recover",
        subject("customer", acme["id"]): "recover", subject("customer", unheard["id"]): "recover",
        subject("invoice", unheard_invoice["id"]): "recover"}

    again = run(system, full=True)  # the same differences keep their ids, and their age grows
    assert {f["id"] for f in again["findings"]} == {f["id"] for f in report["findings"]}
    aged = {f["id"]: f["age"] for f in again["findings"]}
    assert all(aged[f["id"]] >= f["age"] for f in report["findings"])

    # -- repair: the dry run changes nothing, then apply ----------------------------------------
    latest = f"{system.hub.url}/v1/reconciliations/latest/repair"
    dry = httpx.post(latest, json={}, timeout=30).json()
    assert (dry["applied"], dry["count"], len(dry["preview"])) == (False, 9, 9)
    assert dry["without_repair"] == 4  # the copy, the invented invoice, the balances: a person's
    system.settle()
    assert run(system, full=True)["findings"] != []
    applied = httpx.post(latest, json={"apply": True}, timeout=30)
    assert applied.status_code == 202 and applied.json()["failed"] == []
    system.settle(timeout=60)
    # each repair delivery is accounted for: its outcome concluded, none left pending
    repaired = system.hub.runtime.store.outcomes(source="reconcile")
    assert repaired and all(entry.outcome == "delivered" for entry in repaired), repaired

    # what the hub never deletes, a person removes, as the findings say
    for finding in (f for f in report["findings"] if f["class"] in ("duplicate", "orphan")):
        copies = finding["records"]["netsuite"]
        for record in copies[1:] if isinstance(copies, list) else [copies]:
            netsuite.http.delete(f"/invoice/{record['id']}").raise_for_status()
    final = run(system, full=True)
    assert final["findings"] == [], [(f["class"], f["detail"]) for f in final["findings"]]
    assert netsuite.record("customer", eid("customer", beta["id"]))["companyName"] == "Beta Corp"
    assert netsuite.record("customer", eid("customer", acme["id"]))["email"] == "billing@acme.example"
    assert Decimal(str(netsuite.record("invoice", eid("invoice", unheard_invoice["id"]))["total"])) == 50


def test_a_recover_repaired_before_is_a_failed_repair_that_says_why_when_applied_again(system: System) -> None:
    """Stripe's customer the hub never heard of is recovered by the first apply. Applied again while
    that recovery cannot be delivered (NetSuite down: the customer in Stripe unchanged, no NetSuite
    id written back), the recovered event is one the hub already has: a failed repair with its
    reason, not counted as enqueued."""
    drop_stripe_webhooks(system)
    unheard = system.customer("Delta AS")
    report = run(system, full=True)
    [missing] = [f for f in report["findings"] if f["subject"] == subject("customer", unheard["id"])]
    assert (missing["class"], missing["repair"]["action"]) == ("missing", "recover")
    repair = f"{system.hub.url}/v1/reconciliations/{report['run']['id']}/repair"
    body = {"apply": True, "class": "missing"}

    system.fault("netsuite", mode="down")
    first = httpx.post(repair, json=body, timeout=30).json()
    second = httpx.post(repair, json=body, timeout=30).json()
    system.clear_fault("netsuite")
    system.settle(timeout=60)

    assert (first["enqueued"], first["failed"]) == (1, [])
    assert second["enqueued"] == 0 and len(second["failed"]) == 1
    assert f"recover {missing['subject']}: AlreadyAdmitted" in second["failed"][0]
    assert run(system, full=True)["findings"] == []


def test_reconciliations_are_kept_listed_read_back_and_counted(system: System) -> None:
    """Runs are kept with their findings, listed newest first, read back filtered by class, and the
    latest run's findings are the gauge at /metrics."""
    customer = system.customer("Delta SA")
    system.settle()
    first = run(system, full=True)
    netsuite = NetSuiteFinance(system.hub.runtime.settings.connectors["netsuite"])
    remove(netsuite, "customer", eid("customer", customer["id"]))
    second = run(system, full=True)
    listed = httpx.get(f"{system.hub.url}/v1/reconciliations", timeout=10).json()["reconciliations"]
    assert [r["id"] for r in listed][:2] == [second["run"]["id"], first["run"]["id"]]
    assert listed[0]["findings"] == {"missing": 1} and listed[0]["state"] == "done"
    one = httpx.get(f"{system.hub.url}/v1/reconciliations/{second['run']['id']}", params={"class": "missing"},
                    timeout=10).json()
    assert [f["subject"] for f in one["findings"]] == [subject("customer", customer["id"])]
    assert httpx.get(f"{system.hub.url}/v1/reconciliations/nope", timeout=10).status_code == 404
    assert httpx.get(f"{system.hub.url}/v1/reconciliations/latest", params={"class": "typo"},
                     timeout=10).status_code == 400
    metrics = httpx.get(f"{system.hub.url}/metrics", timeout=10).text
    assert 'crossledger_reconciliation_findings{class="missing",system="netsuite"} 1.0' in metrics


def test_a_system_that_cannot_be_read_fails_the_run_with_a_502_naming_it(system: System) -> None:
    """A system down during a run is its outage, not the hub's bug: a 502 with the reason, never a
    500, and the run kept as failed with that reason."""
    system.fault("netsuite", mode="down")
    try:
        answer = httpx.post(f"{system.hub.url}/v1/reconciliations", json={"full": True}, timeout=60)
    finally:
        system.clear_fault("netsuite")
    assert answer.status_code == 502, answer.text
    assert "netsuite" in answer.json()["error"]["message"]
    [failed] = httpx.get(f"{system.hub.url}/v1/reconciliations", timeout=10).json()["reconciliations"][:1]
    assert failed["state"] == "failed" and "netsuite" in failed["error"]


def test_a_run_that_stopped_midway_is_resumed_after_its_last_checkpoint(system: System) -> None:
    """Stripe goes down after two of the run's reads: the run stops, kept as failed after the
    comparisons it finished (credit notes, customers) with what they found. The next run resumes
    it: the same run, those comparisons not read again (a customer renamed since is not seen, the
    one renamed before is still reported), the rest read now. A fresh run then sees everything."""
    acme, beta = system.customer("Acme Ltd"), system.customer("Beta Corp")
    bill = system.invoice(acme["id"], [1200])
    system.settle()
    netsuite = NetSuiteFinance(system.hub.runtime.settings.connectors["netsuite"])

    def rename(customer: dict[str, Any]) -> None:
        found = netsuite.record("customer", eid("customer", customer["id"]))
        netsuite.http.patch(f"/customer/{found['id']}", json={"companyName": "Renamed by hand"}).raise_for_status()

    rename(acme)
    system.fault("stripe", mode="down", after=2)  # creditmemo, customer listed; down at the invoices
    try:
        stopped = httpx.post(f"{system.hub.url}/v1/reconciliations", json={"full": True}, timeout=60)
    finally:
        system.clear_fault("stripe")
    assert stopped.status_code == 502, stopped.text
    [failed] = httpx.get(f"{system.hub.url}/v1/reconciliations", timeout=10).json()["reconciliations"][:1]
    assert (failed["state"], failed["checkpoint"]) == ("failed", ["creditmemo:stripe", "customer:stripe"])
    # NetSuite's invoices were read (the target is read first), Stripe's were not
    assert failed["counts"] == {"netsuite.customer": 2, "stripe.customer": 2, "netsuite.invoice": 1}

    rename(beta)  # after the customers were compared: the resumed run does not read them again
    remove(netsuite, "invoice", eid("invoice", bill["id"]))  # after NetSuite's invoices were read
    resumed = run(system, full=True)
    assert (resumed["run"]["id"], resumed["run"]["state"]) == (failed["id"], "done")
    assert resumed["run"]["checkpoint"] == ["creditmemo:stripe", "customer:stripe", "invoice:stripe",
                                            "payment:stripe", "refund:stripe"]
    assert resumed["run"]["counts"]["stripe.customer"] == 2 and resumed["run"]["counts"]["stripe.invoice"] == 1
    assert resumed["run"]["counts"]["netsuite.invoice"] == 1  # not read again
    found = classes_by_subject(resumed["findings"])
    assert found[subject("customer", acme["id"])] == {"field_drift"}
    assert subject("customer", beta["id"]) not in found
    assert subject("invoice", bill["id"]) not in found

    fresh = run(system, full=True)
    assert fresh["run"]["id"] != failed["id"]
    assert classes_by_subject(fresh["findings"])[subject("customer", beta["id"])] == {"field_drift"}
    assert classes_by_subject(fresh["findings"])[subject("invoice", bill["id"])] == {"missing"}


def stripe_requests(system: System) -> int:
    """How many requests Stripe's API has answered since :func:`count_stripe_requests` (a fault that
    lets a great many through, counting them down)."""
    fault = httpx.get(f"{system.server.url}/stripe/_sandbox/faults", timeout=10).json()["fault"]
    return COUNTED - int(fault["passes"])


COUNTED = 1_000_000


def count_stripe_requests(system: System) -> None:
    system.fault("stripe", mode="down", after=COUNTED)


def test_an_incremental_run_reads_what_changed_since_the_last_and_finds_the_drift_made_after_it(
    system: System
) -> None:
    """After a full run, a NetSuite user edits one invoice's amount and keys another in again, and
    an invoice is voided in Stripe while its webhook to the hub is gone. The default run is
    incremental: it reads of NetSuite only what changed since the full run (by ``lastmodifieddate``;
    the overlap set to nothing here), two invoices of six and no customer, and of Stripe the one
    invoice its events name; it lays that over what the full run kept and finds all three."""
    customers = [system.customer(f"Customer{n} Ltd") for n in range(3)]
    bills = [system.invoice(customers[n % 3]["id"], [100 * (n + 1)]) for n in range(6)]
    system.settle()
    time.sleep(1.1)  # NetSuite stamps whole seconds: what was made falls before the full run's second
    reconciler = Reconciler(system.hub.runtime, overlap_s=0)
    first = reconciler.run(since=None)
    assert first.findings == []
    assert (first.run.counts["netsuite.invoice"], first.run.counts["netsuite.customer"]) == (6, 3)

    time.sleep(1.1)  # and what is changed now, after it
    netsuite = NetSuiteFinance(system.hub.runtime.settings.connectors["netsuite"])
    edited = netsuite.record("invoice", eid("invoice", bills[0]["id"]))
    netsuite.http.patch(f"/invoice/{edited['id']}", json={"item": {"items": [
        {"item": {"id": "1"}, "quantity": 1, "amount": 9.00}]}}).raise_for_status()
    copied = netsuite.record("invoice", eid("invoice", bills[1]["id"]))
    netsuite.http.post("/invoice", json={"entity": copied["entity"], "tranId": copied["tranId"], "item": {
        "items": [{"item": {"id": "1"}, "quantity": 1, "amount": 2.00}]}}).raise_for_status()

    drop_stripe_webhooks(system)
    system.stripe.post(f"/v1/invoices/{bills[2]['id']}/void")

    since = default_since(system.hub.runtime.store)
    assert since == first.run.started_at
    second = reconciler.run(since=since)

    found = classes_by_subject([msgspec.to_builtins(f) for f in second.findings])
    assert found[subject("invoice", bills[0]["id"])] >= {"amount_mismatch"}
    assert found[subject("invoice", bills[1]["id"])] == {"duplicate"}
    counts = second.run.counts
    assert (counts["netsuite.invoice"], counts.get("netsuite.customer", 0)) == (2, 0), counts
    assert (counts["stripe.invoice"], counts.get("stripe.customer", 0)) == (1, 0), counts
    assert found[subject("invoice", bills[2]["id"])] == {"status_mismatch"}
    listed = second.run.listings
    assert listed["netsuite.invoice"].since == listed["stripe.invoice"].since == first.run.started_at
    assert listed["netsuite.invoice"].generation == first.run.listings["netsuite.invoice"].generation


def test_an_open_difference_outlives_any_number_of_failed_runs_and_keeps_its_age(system: System) -> None:
    """A NetSuite user edits an invoice's amount; a full run reports it. NetSuite is then down for
    more than twenty runs, each failing on its first page (nothing read, nothing to resume). The next
    incremental run stands on the last finished one however many failed since: the difference, which
    changed before ``since``, is still reported, first seen when it was."""
    acme = system.customer("Acme Ltd")
    bill = system.invoice(acme["id"], [1200])
    system.settle()
    netsuite = NetSuiteFinance(system.hub.runtime.settings.connectors["netsuite"])
    edited = netsuite.record("invoice", eid("invoice", bill["id"]))
    netsuite.http.patch(f"/invoice/{edited['id']}", json={"item": {"items": [
        {"item": {"id": "1"}, "quantity": 1, "amount": 9.00}]}}).raise_for_status()
    time.sleep(1.1)  # NetSuite stamps whole seconds: the edit falls before the full run's second
    store = system.hub.runtime.store
    reconciler = Reconciler(system.hub.runtime)
    first = reconciler.run(since=None)
    [opened] = [f for f in first.findings if f.cls == "amount_mismatch"]
    since = default_since(store)
    assert since == first.run.started_at

    system.fault("netsuite", mode="down")
    try:
        for _ in range(21):
            with pytest.raises(ConnectorError):
                reconciler.run(since=since)
    finally:
        system.clear_fault("netsuite")
    assert [run.state for run in store.reconciliations(limit=22)] == ["failed"] * 21 + ["done"]

    assert default_since(store) == since
    later = reconciler.run(since=since)
    [still] = [f for f in later.findings if f.cls == "amount_mismatch"]
    assert (still.id, still.first_seen) == (opened.id, opened.first_seen)
    assert later.run.listings["netsuite.invoice"].since is not None  # laid over the finished run's read


def test_a_run_stopped_inside_a_listing_resumes_at_the_page_after_the_last_it_read(system: System) -> None:
    """Stripe goes down on the second page of its invoices (two a page): the run stops, kept with
    the first page read and its cursor. The next run resumes there: it asks Stripe for the two pages
    left (then the payments and refunds), not the three of the listing again, and finds nothing
    amiss: the first page's invoices are compared from what the run kept."""
    acme = system.customer("Acme Ltd")
    bills = [system.invoice(acme["id"], [100 * (n + 1)]) for n in range(5)]
    system.settle()
    reconciler = Reconciler(system.hub.runtime, page_size=2)
    # Stripe's requests: credit notes (none), customers (one page), invoices' first page; then down
    system.fault("stripe", mode="down", after=3)
    try:
        with pytest.raises(ConnectorError):
            reconciler.run(since=None)
    finally:
        system.clear_fault("stripe")
    [stopped] = system.hub.runtime.store.reconciliations(limit=1)
    assert (stopped.state, stopped.checkpoint) == ("failed", ["creditmemo:stripe", "customer:stripe"])
    listing = stopped.listings["stripe.invoice"]
    assert (listing.done, listing.cursor, stopped.counts["stripe.invoice"]) == (False, bills[3]["id"], 2)

    count_stripe_requests(system)
    try:
        resumed = reconciler.run(since=None)
        asked = stripe_requests(system)
    finally:
        system.clear_fault("stripe")
    assert (resumed.run.id, resumed.run.state) == (stopped.id, "done")
    # invoices' pages 2 and 3, then the invoice payments' three pages (one a finalized invoice) and refunds'
    assert asked == 2 + 3 + 1, f"Stripe was asked {asked} times"
    assert resumed.run.counts["stripe.invoice"] == 5
    assert resumed.findings == []


def test_a_run_whose_lease_lapsed_and_was_taken_stops_at_its_next_page_and_is_resumed(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page takes longer than the run's lease (made short here), and the next scheduled run takes
    the lease over: the first run stops at that page, before keeping it, and writes nothing more (the
    run may be the other's now); the run stays resumable, and the next run finishes it."""
    acme = system.customer("Acme Ltd")
    for amount in (100, 200, 300):
        system.invoice(acme["id"], [amount])
    system.settle()
    store = system.hub.runtime.store
    monkeypatch.setattr(engine, "RUN_LEASE_TTL_S", 2.0)
    reconciler = Reconciler(system.hub.runtime, page_size=2)
    asked = reconciler._patiently
    invoice_pages = 0

    def slowly(system_name: str, read: Any) -> Any:
        nonlocal invoice_pages
        if (system_name, read.args[1]) == ("netsuite", "invoice"):
            invoice_pages += 1
            if invoice_pages == 2:  # past the lease, and the next run takes it
                time.sleep(2.5)
                assert store.lock_acquire(engine.RUN_LEASE, "the-next-run", 3600)
        return asked(system_name, read)

    monkeypatch.setattr(reconciler, "_patiently", slowly)
    with pytest.raises(engine.LeaseLost):
        reconciler.run(since=None)
    [stopped] = store.reconciliations(limit=1)
    listing = stopped.listings["netsuite.invoice"]
    # the first page kept with the cursor of the second, which was read but not kept
    assert (stopped.state, stopped.counts["netsuite.invoice"], listing.done) == ("running", 2, False)
    assert listing.cursor is not None and "stripe.invoice" not in stopped.listings
    assert not store.lock_acquire(engine.RUN_LEASE, "a-third-run", 3600)  # the late run did not free it
    store.lock_release(engine.RUN_LEASE, "the-next-run")

    monkeypatch.setattr(reconciler, "_patiently", asked)
    resumed = reconciler.run(since=None)
    assert (resumed.run.id, resumed.run.state) == (stopped.id, "done")
    assert resumed.run.counts["netsuite.invoice"] == 3 and resumed.findings == []


def test_a_page_the_system_rate_limits_is_asked_for_again_after_its_retry_after(system: System) -> None:
    """Stripe answers a listing page 429 with ``Retry-After: 1``, twice: the run waits as it says and
    asks for the same page again, and finishes with everything read once."""
    acme = system.customer("Acme Ltd")
    for amount in (100, 200, 300):
        system.invoice(acme["id"], [amount])
    system.settle()
    system.fault("stripe", mode="http_429", retry_after=1, count=2, after=2)  # on the invoices' first page
    began = time.monotonic()
    try:
        report = Reconciler(system.hub.runtime, page_size=2).run(since=None)
    finally:
        system.clear_fault("stripe")
    assert time.monotonic() - began >= 2.0
    assert report.run.state == "done" and report.findings == []
    assert report.run.counts["stripe.invoice"] == 3


def test_the_default_run_is_incremental_since_the_last_and_full_once_the_last_full_run_is_a_day_old(
    tmp_path: Path
) -> None:
    """Where ``crossledger reconcile``, the schedule and ``POST {}`` start: full with no run finished;
    since the last finished run's start; full again once the last full run is a day old, since only a
    full run finds a record deleted in a system whose reads are incremental."""
    store = SQLiteStore(tmp_path / "store.db")
    now = time.time()
    assert default_since(store) is None
    store.reconciliation_put(ReconciliationRun(id="full", started_at=now - 3600, state="done"))
    store.reconciliation_put(ReconciliationRun(id="inc", started_at=now - 600, state="done", since=now - 3600))
    store.reconciliation_put(ReconciliationRun(id="stopped", started_at=now - 60, state="failed", since=now - 600))
    assert default_since(store) == now - 600
    assert default_since(store, full_every_s=3000) is None
    store.close()


def test_reconciliations_need_the_token_like_every_v1_route(tmp_path: Path) -> None:
    system = start_system(tmp_path, api_token="s3cret-token")
    try:
        url = f"{system.hub.url}/v1/reconciliations"
        assert httpx.post(url, json={}, timeout=30).status_code == 401
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.post(f"{url}/latest/repair", json={}, timeout=10).status_code == 401
        allowed = httpx.post(url, json={"full": True}, headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
        assert allowed.status_code == 201 and allowed.json()["findings"] == []
    finally:
        system.stop()


def test_the_command_reports_as_json_and_csv_exits_3_on_findings_and_repairs_dry_first(
        system: System, tmp_path: Path) -> None:
    """``crossledger reconcile`` as a process, with only the hub's configuration: the systems' URLs and
    credentials and the store."""
    runtime = system.hub.runtime
    config = tmp_path / "reconcile.toml"
    config.write_bytes(tomli_w.dumps({"hub": {"store": runtime.settings.hub.store, "broker": "memory"},
                                      "connectors": runtime.settings.connectors}).encode())
    customer = system.customer("Epsilon Oy")
    system.settle()

    def crossledger(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CROSSLEDGER, *args, "--config", str(config)], capture_output=True, text=True,
                              timeout=120, check=False)

    clean = crossledger("reconcile", "--full", "--format", "json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["findings"] == []
    netsuite = NetSuiteFinance(runtime.settings.connectors["netsuite"])
    remove(netsuite, "customer", eid("customer", customer["id"]))

    unseen = crossledger("reconcile", "--format", "json")  # incremental: a deletion is in no "changed since"
    assert unseen.returncode == 0, unseen.stderr
    found = crossledger("reconcile", "--full", "--format", "json")
    assert found.returncode == 3, found.stderr
    [missing] = json.loads(found.stdout)["findings"]
    assert (missing["class"], missing["subject"], missing["repair"]["action"]) == (
        "missing", subject("customer", customer["id"]), "deliver")
    rows = list(csv.DictReader(io.StringIO(crossledger("reconcile", "--full", "--format", "csv").stdout)))
    assert [(row["id"], row["class"]) for row in rows] == [(missing["id"], "missing")]
    table = crossledger("reconcile", "--full")
    assert table.returncode == 3 and missing["id"] in table.stdout

    dry = crossledger("reconcile", "repair", "class=missing", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    assert (json.loads(dry.stdout)["count"], json.loads(dry.stdout)["applied"]) == (1, False)
    assert crossledger("reconcile", "repair", "class=orphan", "--format", "json").stdout.count('"count": 0') == 1
    refused = crossledger("reconcile", "repair", "--apply")
    assert refused.returncode == 2 and "shared broker" in refused.stderr
    assert crossledger("reconcile", "repair", "class=typo").returncode == 2
    unknown_format = crossledger("reconcile", "repair", "--format", "yaml")
    assert unknown_format.returncode == 2 and unknown_format.stdout == ""
    assert unknown_format.stderr.strip().splitlines() == ["error: --format must be table or json"]


def test_the_crm_is_the_system_of_record_for_customers_in_the_reference_topology(tmp_path: Path) -> None:
    """With Salesforce connected it owns the customer profile: its accounts are compared with Stripe,
    NetSuite and Zendesk, and a profile changed by hand in Stripe (billing) is drift that the CRM's
    record repairs, written into Stripe, which is not the profile's system of record."""
    system = start_system(tmp_path, systems=ALL)
    try:
        connectors = system.hub.runtime.settings.connectors
        sales = SalesforceUser(connectors["salesforce"])
        account_id = sales.create_account({"Name": "Initech LLC", "Type": WON, "Email__c": "ap@initech.example",
                                           "CurrencyIsoCode": "USD"})
        linked = ("Stripe_Customer_Id__c", "NetSuite_Id__c", "Zendesk_Organization_Id__c")
        settle(system, lambda: all(account(system, account_id).get(field) for field in linked))
        ids = {field: account(system, account_id)[field] for field in linked}
        system.invoice(ids["Stripe_Customer_Id__c"], [1200], pay=True)
        settle(system)
        clean = run(system, full=True)
        assert clean["findings"] == [] and clean["run"]["counts"]["zendesk.customer"] == 1

        system.stripe.post(f"/v1/customers/{ids['Stripe_Customer_Id__c']}", email="someone@else.example")
        zendesk = connectors["zendesk"]
        httpx.put(f"{zendesk['base_url'].rstrip('/')}/api/v2/organizations/{ids['Zendesk_Organization_Id__c']}.json",
                  json={"organization": {"name": "Initrode"}}, auth=(f"{zendesk['email']}/token", zendesk["api_token"]),
                  timeout=10).raise_for_status()
        settle(system)
        found = {(f["class"], f["system"]): f for f in run(system, full=True)["findings"]}
        customer = f"customer/salesforce/{account_id}"
        assert set(found) == {("field_drift", "stripe"), ("field_drift", "zendesk")}
        assert {f["subject"] for f in found.values()} == {customer}
        assert found[("field_drift", "stripe")]["rule"] == "customer.profile: salesforce is the system of record"
        assert [f["repair"] for f in found.values()] == [
            {"action": "deliver", "target": target, "subject": customer, "entity": "customer"}
            for target in ("stripe", "zendesk")]
        applied = httpx.post(f"{system.hub.url}/v1/reconciliations/latest/repair", json={"apply": True}, timeout=30)
        assert applied.json()["count"] == 2
        settle(system)
        assert run(system, full=True)["findings"] == []
    finally:
        system.stop()


def test_the_scheduler_reconciles_every_interval_when_asked_to(tmp_path: Path) -> None:
    """A customer made in Stripe while its webhooks are held back is missing in NetSuite: the next
    scheduled run finds it, incremental or full (a deletion would be seen by a full run only, and
    which run comes first is the scheduler's timing)."""
    system = start_system(tmp_path, reconcile_interval_s=0.3)
    try:
        httpx.post(f"{system.server.url}/stripe/_sandbox/webhooks", json={"hold": True}).raise_for_status()
        system.customer("Zeta AB")
        store = system.hub.runtime.store

        def noticed() -> bool:
            latest = next((r for r in store.reconciliations() if r.state == "done"), None)
            return latest is not None and latest.findings == {"missing": 1}

        assert wait_until(noticed, 15), [r.findings for r in store.reconciliations()]
        assert wait_until(lambda: len(store.reconciliations(limit=100)) >= 2, 15)  # a run every interval, not once
    finally:
        system.stop()
