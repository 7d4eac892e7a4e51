"""What an operator does with what they see: trace a transaction by any system's id, and discard
dead letters that need no delivery (by id or by filter, from the CLI or over HTTP)."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
from conftest import redis_url, start_system
from crossledger.core.processes.embedded import EmbeddedHub
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.store import DeadLetter, SQLiteStore
from crossledger.core.telemetry import metrics

CROSSLEDGER = str(Path(sys.executable).with_name("crossledger"))


def run(*args: str, store: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    width = {"COLUMNS": str(columns)} if columns else {}
    return subprocess.run([CROSSLEDGER, *args], capture_output=True, text=True, timeout=60,
                          env={"CROSSLEDGER_STORE": store, "PATH": "", **width})


# -- trace by any id --------------------------------------------------------------------------------
def test_trace_finds_a_transaction_by_any_systems_id(tmp_path: Path) -> None:
    system = start_system(tmp_path)
    try:
        customer = system.customer("Traceable Ltd")
        system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
        store = system.hub.runtime.store
        canonical = store.xref_find("customer", "stripe", customer["id"])
        assert canonical is not None
        netsuite_id = store.xrefs(canonical)["netsuite"]
        received = next(record for record in store.audit_for_subject(canonical))
        event_id = next(record.detail.split()[-1] for record in store.audit_trail(received.correlation_id)
                        if record.status == "received" and record.detail)

        for key in (customer["id"], netsuite_id, event_id, canonical):
            answer = httpx.get(f"{system.hub.url}/v1/transactions/{key}")
            assert answer.status_code == 200, (key, answer.text)
            steps = answer.json()["steps"]
            assert any(step["status"] == "delivered" and step["system"] == "netsuite" for step in steps), key
        missing = httpx.get(f"{system.hub.url}/v1/transactions/cus_nobody")
        assert missing.status_code == 404 and "no transaction, entity or system id" in missing.text
    finally:
        system.stop()

    for key in (customer["id"], netsuite_id):
        traced = run("trace", key, store=f"sqlite:///{tmp_path}/hub.db")
        assert traced.returncode == 0, traced.stderr
        assert f"trace {key}" in traced.stdout and "delivered" in traced.stdout
    narrow = run("trace", customer["id"], store=f"sqlite:///{tmp_path}/hub.db", columns=80)
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and any("delivered" in line and "netsuite id" in line for line in lines), (
        narrow.stdout)  # a delivery's status and its detail on one line, readable at 80 columns
    unknown = run("trace", "cus_nobody", store=f"sqlite:///{tmp_path}/hub.db")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no transaction, entity or system id 'cus_nobody' in the audit"


# -- discarding dead letters ------------------------------------------------------------------------
def letter(letter_id: str, created_at: float, category: str = "data", target: str = "netsuite") -> DeadLetter:
    return DeadLetter(id=letter_id, created_at=created_at, actor="deliver", target=target, category=category,
                      reason="refused by the target", event_id=f"ev-{letter_id}", correlation_id=f"corr-{letter_id}",
                      message={"args": []}, attempts=1)


def test_dlq_discard_by_id_and_by_filter_with_a_dry_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    store = SQLiteStore(tmp_path / "hub.db")
    now = time.time()
    for dead in (letter("d1", now - 7200), letter("d2", now - 7200), letter("d3", now - 60),
                 letter("d4", now - 7200, category="validation")):
        store.dlq_add(dead)

    by_id = run("dlq", "discard", "d1", "--reason", "the customer was deleted in Stripe", store=url)
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout.strip() == "discarded d1"
    closed = store.dlq_get("d1")
    assert closed is not None and closed.state == "discarded"
    assert closed.discard_reason == "the customer was deleted in Stripe" and closed.discarded_at is not None
    trail = store.audit_trail("corr-d1")
    assert [(record.step, record.status) for record in trail] == [("discard", "discarded")]
    assert trail[0].detail == "dead letter d1 discarded: the customer was deleted in Stripe"

    again = run("dlq", "discard", "d1", "--reason", "twice", store=url)
    assert again.returncode == 1 and again.stderr.strip() == "error: dead letter d1 is discarded, not open"
    no_reason = run("dlq", "discard", "d2", store=url)
    assert no_reason.returncode == 2 and "--reason is required" in no_reason.stderr
    nothing = run("dlq", "discard", "--reason", "x", store=url)
    assert nothing.returncode == 2 and "name dead letter ids, or select them" in nothing.stderr

    before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 600))
    dry = run("dlq", "discard", "--category", "data", "--before", before, "--reason", "obsolete", store=url)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "1 open dead letters match; nothing discarded (dry run). Pass --yes to discard them."
    assert store.dlq_get("d2").state == "open"  # type: ignore[union-attr]

    applied = run("dlq", "discard", "--category", "data", "--before", before, "--reason", "obsolete", "--yes",
                  store=url)
    assert applied.returncode == 0 and applied.stdout.strip() == "discarded d2"
    assert [dead.id for dead in store.dlq_list()] == ["d3", "d4"]  # too recent, another category
    listed = run("dlq", "list", "--state", "discarded", store=url)
    assert "discarded" in listed.stdout and "the customer was deleted in Stripe" in listed.stdout
    store.close()


def test_discard_over_http_records_the_reason(tmp_path: Path) -> None:
    settings = Settings(hub=HubSettings(store=f"sqlite:///{tmp_path}/hub.db"))
    with EmbeddedHub(settings, threads=1) as hub:
        hub.runtime.store.dlq_add(letter("d1", time.time()))
        url = f"{hub.url}/v1/dead-letters/d1/discard"
        blank = httpx.post(url, json={"reason": "  "})
        answer = httpx.post(url, json={"reason": "replaced by a manual entry in NetSuite"})
        again = httpx.post(url, json={"reason": "twice"})
        listed = httpx.get(f"{hub.url}/v1/dead-letters", params={"state": "discarded"}).json()["dead_letters"]
        trail = httpx.get(f"{hub.url}/v1/transactions/corr-d1").json()["steps"]
        counted = metrics.registry.get_sample_value("crossledger_dead_letters_discarded_total", {"category": "data"})

    assert blank.status_code == 422
    assert answer.status_code == 200, answer.text
    assert (answer.json()["state"], answer.json()["discard_reason"]) == ("discarded",
                                                                        "replaced by a manual entry in NetSuite")
    assert again.status_code == 409 and again.json()["error"]["message"] == "dead letter d1 is discarded, not open"
    assert [dead["id"] for dead in listed] == ["d1"] and listed[0]["discarded_at"] is not None
    assert [(step["step"], step["status"]) for step in trail] == [("discard", "discarded")]
    assert counted is not None and counted >= 1


def test_dlq_replay_goes_on_past_a_letter_it_cannot_replay_and_names_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    store = SQLiteStore(f"{tmp_path}/hub.db")
    for letter_id in ("d1", "d2"):
        store.dlq_add(msgspec.structs.replace(letter(letter_id, time.time()),
                                              message={"args": ["netsuite", {"id": f"e-{letter_id}"}]}))
    assert store.dlq_set_state("d1", "replayed")  # replayed by someone else already

    replayed = subprocess.run([CROSSLEDGER, "dlq", "replay", "d1", "gone", "d2"], capture_output=True, text=True,
                              timeout=60, env={"CROSSLEDGER_STORE": url, "PATH": "",
                                               "CROSSLEDGER_BROKER": redis_url(5)})

    assert replayed.returncode == 1
    assert "replayed d2" in replayed.stdout
    assert "dead letter d1 is replayed, not open" in replayed.stderr and "no dead letter 'gone'" in replayed.stderr
    assert "2 of 3 dead letters not replayed" in replayed.stderr
    assert store.dlq_get("d2").state == "replayed"  # type: ignore[union-attr]
    store.close()
