"""The Store conformance suite: every backend must pass the same tests.

Each test taking ``store`` (conftest.py) runs once on SQLite (a file in tmp_path) and once on
Redis (db 9, in a namespace of its own). The race tests release 8 threads (or, for SQLite, 2
processes) at once on one *atomic* method and check that exactly one caller won.
"""

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
import redis
from conftest import redis_url
from crossledger.core.store import (
    AuditRecord,
    Circuit,
    DeadLetter,
    Golden,
    InboxEntry,
    LoggedEvent,
    RedisStore,
    SQLiteStore,
    Store,
    open_store,
)
from crossledger.core.store.base import (
    LISTING_BATCH,
    ActionRecord,
    FindingClass,
    FindingRecord,
    JourneyRecord,
    JourneyState,
    Listing,
    OutcomePart,
    OutcomeRecord,
    ReconciliationRun,
    StepRecord,
    TriageRecord,
    Unit,
    UserRecord,
    hour_of,
)
from msgspec.structs import replace

T = TypeVar("T")
THREADS = 8


def race(work: Callable[[int], T]) -> list[T]:
    """``work(i)`` in thread ``i`` of :data:`THREADS`, all released together; results in thread order."""
    barrier = threading.Barrier(THREADS)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, range(THREADS)))


def event(id: str, at: float, source: str = "stripe", type: str = "customer.updated") -> LoggedEvent:
    return LoggedEvent(id=id, type=type, source=source, subject=f"cus-{id}", correlation_id=f"corr-{id}",
                       occurred_at=at, envelope={"id": id, "data": {"tags": [], "amount": 12.5}})


def letter(id: str, at: float, category: str = "validation", target: str | None = "netsuite") -> DeadLetter:
    return DeadLetter(id=id, created_at=at, actor="deliver", target=target, category=category,
                      reason="boom", event_id=f"evt-{id}", correlation_id=f"corr-{id}",
                      message={"args": [target, {"id": id}]}, attempts=3)


def audit_record(at: float, step: str, subject: str | None = None, correlation_id: str = "corr-1") -> AuditRecord:
    return AuditRecord(at=at, correlation_id=correlation_id, step=step, status="ok", subject=subject)


def journey(id: str, at: float, name: str = "order-to-cash", state: JourneyState = "running",
            subject: str = "inv_1") -> JourneyRecord:
    return JourneyRecord(id=id, name=name, version=1, key=f"key-{id}", subject=subject, state=state,
                         correlation_id=f"corr-{id}", started_at=at, updated_at=at,
                         steps={"invoice": StepRecord(), "payment": StepRecord()})


# -- inbox ----------------------------------------------------------------------------------------
def test_inbox_new_then_pending_then_duplicate(store: Store) -> None:
    payload = {"id": "evt_1", "amount": 1250, "lines": []}
    assert store.inbox_get("stripe", "evt_1") is None
    assert store.inbox_add("stripe", "evt_1", payload, "corr-1", 10.0) == "new"
    assert store.inbox_add("stripe", "evt_1", {"other": True}, "corr-2", 11.0) == "pending"
    assert store.inbox_get("stripe", "evt_1") == InboxEntry(
        source="stripe", source_event_id="evt_1", correlation_id="corr-1", received_at=10.0, payload=payload,
        enqueued=False)

    store.inbox_mark_enqueued("stripe", "evt_1")
    assert store.inbox_add("stripe", "evt_1", payload, "corr-1", 12.0) == "duplicate"
    entry = store.inbox_get("stripe", "evt_1")
    assert entry is not None and entry.enqueued is True
    assert store.inbox_add("hubspot", "evt_1", payload, "corr-3", 13.0) == "new"  # ids are per source


def test_a_new_inbound_event_is_recorded_with_its_message_in_flight_and_a_seen_one_without(store: Store) -> None:
    """With its message in flight an entry counts as enqueued (the recovery sweep sends a message
    whose enqueue never happened), until the caller says its enqueue failed."""
    ingest = {"actor_name": "ingest", "args": ["evt_1"]}
    received = audit_record(10.0, "webhook", correlation_id="corr-1")
    store.inbox_add("stripe", "evt_0", {}, "corr-0", 9.0, inflight=("m0", ingest, 100.0))  # connected, script loaded
    before = store.round_trips.count
    assert store.inbox_add("stripe", "evt_1", {}, "corr-1", 10.0, inflight=("m1", ingest, 10.0),
                           received=received) == "new"
    assert store.round_trips.count - before == 1
    assert store.audit_trail("corr-1") == [received]
    assert store.inbox_add("stripe", "evt_1", {}, "corr-2", 11.0, inflight=("m2", ingest, 11.0),
                           received=audit_record(11.0, "webhook", correlation_id="corr-2")) == "duplicate"
    assert store.audit_trail("corr-2") == []
    store.inbox_mark_pending("stripe", "evt_1")
    assert store.inbox_add("stripe", "evt_1", {}, "corr-3", 12.0, inflight=("m3", ingest, 12.0)) == "pending"
    entry = store.inbox_get("stripe", "evt_1")
    assert entry is not None and (entry.enqueued, entry.correlation_id) == (False, "corr-1")
    store.inbox_mark_enqueued("stripe", "evt_1")
    assert store.inbox_add("stripe", "evt_1", {}, "corr-4", 13.0, inflight=("m4", ingest, 13.0)) == "duplicate"
    assert store.inflight_overdue(100.0, 10) == [("m1", ingest)]


def test_log_event_is_idempotent_by_id(store: Store) -> None:
    first = event("e1", 10.0)
    store.log_event(first)
    store.log_event(replace(first, source="other", occurred_at=5.0))
    assert store.get_event("e1") == first
    assert store.events() == [first]
    assert store.get_event("missing") is None


def test_events_filter_and_come_oldest_first_ties_by_id(store: Store) -> None:
    for logged in [event("e3", 30.0), event("e1", 10.0, source="hubspot"), event("e2", 20.0, type="invoice.paid"),
                   event("e4", 30.0, source="hubspot", type="invoice.paid"), event("e0", 30.0)]:
        store.log_event(logged)

    def ids(**filters: Any) -> list[str]:
        return [logged.id for logged in store.events(**filters)]

    assert ids() == ["e1", "e2", "e0", "e3", "e4"]
    assert ids(source="hubspot") == ["e1", "e4"]
    assert ids(type="invoice.paid") == ["e2", "e4"]
    assert ids(since=20.0, until=30.0) == ["e2", "e0", "e3", "e4"]
    assert ids(since=20.5, until=29.5) == []
    assert ids(source="stripe", type="customer.updated", since=15.0) == ["e0", "e3"]
    assert ids(limit=2) == ["e1", "e2"]
    assert ids(source="stripe", limit=2) == ["e2", "e0"]
    assert ids(source="nobody") == []


def test_events_filter_finds_sparse_matches_far_apart(store: Store) -> None:
    for n in range(250):
        store.log_event(event(f"e{n:03}", float(n), source="rare" if n % 60 == 0 else "common"))
    assert [logged.id for logged in store.events(source="rare", limit=4)] == ["e000", "e060", "e120", "e180"]


# -- golden records -------------------------------------------------------------------------------
def test_golden_put_rejects_stale_and_overwrites_equal_version(store: Store) -> None:
    v2 = Golden(canonical_id="cus_1", entity_type="customer", version=2, data={"name": "Ada"})
    assert store.golden_get("cus_1") is None
    assert store.golden_put(v2) is True
    assert store.golden_put(replace(v2, version=1, data={"name": "stale"})) is False
    assert store.golden_get("cus_1") == v2

    again = replace(v2, data={"name": "Ada L."})
    assert store.golden_put(again) is True
    assert store.golden_get("cus_1") == again
    v3 = replace(v2, version=3, data={"name": "Ada Lovelace"})
    assert store.golden_put(v3) is True
    assert store.golden_get("cus_1") == v3


def test_golden_records_are_found_by_the_customer_they_name(store: Store) -> None:
    def record(canonical_id: str, customer: str, version: int = 1) -> Golden:
        return Golden(canonical_id=canonical_id, entity_type=canonical_id.split("/")[0], version=version,
                      data={"customer_id": customer, "total": {"amount": 100, "currency": "USD"}})

    store.golden_put(Golden(canonical_id="customer/s/c1", entity_type="customer", version=1, data={"name": "Ada"}))
    store.golden_put(record("payment/s/p1", "customer/s/c1"))
    store.golden_put(record("invoice/s/i1", "customer/s/c1"))
    store.golden_put(record("invoice/s/i2", "customer/s/c2"))
    with store.unit() as unit:  # a unit of work keeps the index as a write alone does
        unit.golden_put(record("subscription/s/s1", "customer/s/c1"))
    moved = record("invoice/s/i3", "customer/s/c1")
    store.golden_put(moved)
    store.golden_put(record("invoice/s/i3", "customer/s/c2", version=2))  # now another customer's
    assert [g.canonical_id for g in store.golden_for_customer("customer/s/c1")] == [
        "invoice/s/i1", "payment/s/p1", "subscription/s/s1"]
    assert [g.canonical_id for g in store.golden_for_customer("customer/s/c1", limit=1)] == ["invoice/s/i1"]
    assert [g.canonical_id for g in store.golden_for_customer("customer/s/c1", entity_type="payment")] == [
        "payment/s/p1"]
    assert [g.canonical_id for g in store.golden_for_customer("customer/s/c2")] == ["invoice/s/i2", "invoice/s/i3"]
    assert store.golden_for_customer("customer/s/nobody") == []
    assert [g.canonical_id for g in store.golden_for_customer("customer/s/c1", limit=1, offset=1)] == [
        "payment/s/p1"]


def test_golden_records_are_found_by_the_words_of_their_name_and_email(store: Store) -> None:
    def customer(key: str, name: str, email: str | None = None, version: int = 1) -> Golden:
        data = {"name": name} if email is None else {"name": name, "email": email}
        return Golden(canonical_id=f"customer/s/{key}", entity_type="customer", version=version, data=data)

    store.golden_put(customer("c1", "Acme Ltd", "Billing@Acme.example"))
    with store.unit() as unit:  # a unit of work keeps the index as a write alone does
        unit.golden_put(customer("c2", "Acme Widgets", "ops@widgets.example"))
    store.golden_put(customer("c3", "Zed Corp"))
    store.golden_put(customer("c3", "Old Name", version=0))  # stale: neither written nor indexed
    assert store.golden_named("acme") == ["customer/s/c1", "customer/s/c2"]
    assert store.golden_named("ACME wid") == ["customer/s/c2"]  # every word starts a term
    assert store.golden_named("billing@acme") == ["customer/s/c1"]
    assert store.golden_named("widgets.example") == ["customer/s/c2"]
    assert store.golden_named("acme", limit=1) == ["customer/s/c1"]
    assert store.golden_named("old") == [] and store.golden_named("cme") == [] and store.golden_named("  ") == []
    store.golden_put(customer("c1", "Renamed Inc", version=2))  # the old name and email leave the index
    assert store.golden_named("acme") == ["customer/s/c2"] and store.golden_named("renamed") == ["customer/s/c1"]


def test_a_one_word_search_answers_the_first_records_by_id_up_to_the_limit(store: Store) -> None:
    """A record that matches a word by several of its terms is one record, and the ``limit`` records
    answered are the first by id, not by term: both backends answer the same."""
    def customer(key: str, name: str) -> Golden:
        return Golden(canonical_id=f"customer/s/{key}", entity_type="customer", version=1, data={"name": name})

    for key, name in (("c1", "Azure Apex Atlas"), ("c2", "Alpha"), ("c3", "Ant"), ("c4", "Bee")):
        store.golden_put(customer(key, name))
    assert store.golden_named("a", limit=2) == ["customer/s/c1", "customer/s/c2"]
    assert store.golden_named("a", limit=3) == ["customer/s/c1", "customer/s/c2", "customer/s/c3"]
    assert store.golden_named("a") == ["customer/s/c1", "customer/s/c2", "customer/s/c3"]


def test_golden_records_of_an_earlier_release_are_indexed_by_the_migration_step(store: Store, tmp_path: Path) -> None:
    """A store made before the indexes (their keys, their table, removed here) fills them: SQLite
    when the file is opened, Redis at the first search."""
    store.golden_put(Golden(canonical_id="customer/s/c1", entity_type="customer", version=1,
                            data={"name": "Acme Ltd", "email": "ann@acme.example"}))
    store.golden_put(Golden(canonical_id="invoice/s/i1", entity_type="invoice", version=1,
                            data={"customer_id": "customer/s/c1"}))
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("DROP TABLE golden_terms")
        reopened: Store = SQLiteStore(store.path)
    else:
        assert isinstance(store, RedisStore)
        where = store._redis.connection_pool.connection_kwargs  # its server and db (redis_url empties the db)
        url = f"redis://{where['host']}:{where['port']}/{where['db']}"
        client = redis.Redis.from_url(url)
        client.delete(*client.keys(f"{store.namespace}:golden:[tci]*"))  # terms, customer sets, marker
        reopened = RedisStore(url, namespace=store.namespace)
    assert reopened.golden_named("ann@acme") == ["customer/s/c1"]
    assert [g.canonical_id for g in reopened.golden_for_customer("customer/s/c1")] == ["invoice/s/i1"]
    reopened.close()


def test_a_page_s_records_outcomes_and_events_are_read_in_one_round_trip_each(store: Store) -> None:
    store.golden_put(Golden(canonical_id="invoice/s/i1", entity_type="invoice", version=1, data={"total": 1}))
    store.xref_put("invoice/s/i1", "invoice", "netsuite", "42")
    store.audit(audit_record(2.0, "deliver", "invoice/s/i1", "corr-b"), audit_record(1.0, "ingest", "invoice/s/i1"))
    store.journey_start(journey("j-old", 1.0, subject="invoice/s/i1"))
    store.journey_start(journey("j-new", 2.0, subject="invoice/s/i1"))
    store.outcome_open(OutcomeRecord(correlation_id="corr-1", source="stripe", received_at=1.0, updated_at=1.0))
    store.log_event(event("e1", 1.0))
    before = store.round_trips.count
    records = store.records_get(["invoice/s/i1", "invoice/s/none", "invoice/s/i1"])
    outcomes = store.outcomes_get(["corr-1", "corr-none"])
    events = store.events_get(["e1", "e-none"])
    assert store.round_trips.count - before == 3
    found, empty = records["invoice/s/i1"], records["invoice/s/none"]
    assert found.golden is not None and found.golden.data == {"total": 1} and found.xrefs == {"netsuite": "42"}
    assert [r.step for r in found.audit] == ["ingest", "deliver"] and found.journey is not None
    assert found.journey.id == "j-new"
    assert (empty.golden, empty.xrefs, empty.audit, empty.journey) == (None, {}, [], None)
    assert list(outcomes) == ["corr-1"] and list(events) == ["e1"]
    assert store.records_get([]) == {} and store.outcomes_get([]) == {} and store.events_get([]) == {}


# -- cross-references -----------------------------------------------------------------------------
def test_xrefs_map_both_ways(store: Store) -> None:
    store.xref_put("cus_1", "customer", "stripe", "cus_A")
    store.xref_put("cus_1", "customer", "netsuite", "42")
    assert store.xref_get("cus_1", "stripe") == "cus_A"
    assert store.xref_get("cus_1", "hubspot") is None
    assert store.xref_find("customer", "stripe", "cus_A") == "cus_1"
    assert store.xref_find("invoice", "stripe", "cus_A") is None
    assert store.xref_find("customer", "netsuite", "cus_A") is None
    assert store.xrefs("cus_1") == {"stripe": "cus_A", "netsuite": "42"}
    assert store.xrefs("nobody") == {}


def test_xref_latest_link_wins(store: Store) -> None:
    store.xref_put("cus_1", "customer", "stripe", "cus_A")
    store.xref_put("cus_1", "customer", "stripe", "cus_B")
    assert store.xref_get("cus_1", "stripe") == "cus_B"
    assert store.xref_find("customer", "stripe", "cus_A") is None
    assert store.xref_find("customer", "stripe", "cus_B") == "cus_1"

    store.xref_put("cus_2", "customer", "stripe", "cus_B")
    assert store.xref_find("customer", "stripe", "cus_B") == "cus_2"
    assert store.xrefs("cus_1") == {}
    store.xref_put("cus_2", "customer", "stripe", "cus_B")
    assert store.xrefs("cus_2") == {"stripe": "cus_B"}


# -- applied versions and deliveries ----------------------------------------------------------------
def test_applied_version_keeps_the_maximum(store: Store) -> None:
    assert store.applied_version("netsuite", "cus_1") is None
    store.set_applied_version("netsuite", "cus_1", 3)
    store.set_applied_version("netsuite", "cus_1", 1)
    assert store.applied_version("netsuite", "cus_1") == 3
    store.set_applied_version("netsuite", "cus_1", 5)
    assert store.applied_version("netsuite", "cus_1") == 5
    assert store.applied_version("hubspot", "cus_1") is None


def test_delivery_set_and_get(store: Store) -> None:
    assert store.delivery_get("k1") is None
    before = time.time()
    store.delivery_set("k1", "sent")
    sent = store.delivery_get("k1")
    assert sent is not None and (sent.key, sent.status, sent.external_id) == ("k1", "sent", None)
    assert before <= sent.updated_at <= time.time()
    store.delivery_set("k1", "acknowledged", "ns-42")
    acknowledged = store.delivery_get("k1")
    assert acknowledged is not None and (acknowledged.status, acknowledged.external_id) == ("acknowledged", "ns-42")


def test_a_delivery_state_keeps_its_generation_through_writes_units_and_attempt_marks(store: Store) -> None:
    """The count of an operation's definite failures (which key it sends next) is kept by every
    write of the state, a unit's included, and left alone by the attempt marks of its delivery."""
    assert store.delivery_get("k1") is None
    store.delivery_set("k1", "failed", generation=2)
    assert (store.delivery_get("k1").status, store.delivery_get("k1").generation) == ("failed", 2)  # type: ignore[union-attr]
    store.read([("delivery_get", ("k1",))], lease=("netsuite|cus-1", "me", 30), attempt="a-1")
    unit = Unit()
    unit.delivery_set("k1", "acknowledged", "ns-1", 2)
    unit.lock_release("netsuite|cus-1", "me")
    store.commit(unit)
    acknowledged = store.delivery_get("k1")
    assert acknowledged is not None and (acknowledged.status, acknowledged.external_id, acknowledged.generation) == (
        "acknowledged", "ns-1", 2)
    [marked] = store.read([], lease=("netsuite|cus-1", "me", 30), attempt="a-1")  # type: ignore[misc]
    assert (marked.status, marked.generation) == ("sent", 0)
    store.delivery_set("k2", "sent")
    assert store.delivery_get("k2").generation == 0  # type: ignore[union-attr]


def test_a_delivery_state_of_an_earlier_release_reads_as_generation_0(store: Store) -> None:
    """A state written before generations (SQLite: a file without the column, given it when opened;
    Redis: a record without the field) is one that never failed under a key of its own."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("DROP TABLE deliveries")
            db.execute("CREATE TABLE deliveries (key TEXT PRIMARY KEY, status TEXT NOT NULL, external_id TEXT, "
                       "updated_at REAL NOT NULL)")
            db.execute("INSERT INTO deliveries VALUES ('k-old', 'failed', NULL, 1.0)")
        reopened: Store = SQLiteStore(store.path)
    else:
        assert isinstance(store, RedisStore)
        store._redis.hset(f"{store.namespace}:deliveries", "k-old",
                          b'{"key":"k-old","status":"failed","external_id":null,"updated_at":1.0}')
        reopened = store
    old = reopened.delivery_get("k-old")
    assert old is not None and (old.status, old.generation) == ("failed", 0)
    reopened.delivery_set("k-old", "failed", generation=1)
    assert reopened.delivery_get("k-old").generation == 1  # type: ignore[union-attr]
    if reopened is not store:
        reopened.close()


# -- dead letters ---------------------------------------------------------------------------------
def test_dead_letters_list_newest_first_and_change_state_once(store: Store) -> None:
    letters = [letter("d1", 10.0), letter("d2", 30.0, category="target_down"),
               letter("d3", 20.0, target="hubspot"), letter("d4", 40.0, target=None)]
    for dead in letters:
        store.dlq_add(dead)

    def ids(**filters: Any) -> list[str]:
        return [dead.id for dead in store.dlq_list(**filters)]

    assert store.dlq_get("d1") == letters[0]
    assert store.dlq_get("missing") is None
    assert ids() == ["d4", "d2", "d3", "d1"]
    assert ids(category="validation") == ["d4", "d3", "d1"]
    assert ids(target="netsuite") == ["d2", "d1"]
    assert ids(category="validation", target="netsuite") == ["d1"]
    assert ids(limit=2) == ["d4", "d2"]
    assert store.dlq_count() == 4

    assert store.dlq_set_state("d2", "replayed") is True
    assert store.dlq_set_state("d2", "discarded") is False
    assert store.dlq_set_state("missing", "replayed") is False
    assert store.dlq_get("d2") == replace(letters[1], state="replayed")
    assert store.dlq_set_state("d3", "discarded") is True
    assert ids() == ["d4", "d1"]
    assert ids(state="replayed") == ["d2"]
    assert ids(state=None) == ["d4", "d2", "d3", "d1"]
    assert ids(state=None, category="validation") == ["d4", "d3", "d1"]
    assert [store.dlq_count(state) for state in ("open", "replayed", "discarded")] == [2, 1, 1]


# -- audit ----------------------------------------------------------------------------------------
def test_audit_trail_and_subject_timeline_oldest_first(store: Store) -> None:
    records = [audit_record(3.0, "deliver", "cus_1"), audit_record(1.0, "webhook"),
               audit_record(2.0, "ingest", "cus_1"), audit_record(2.0, "route", "cus_2"),
               audit_record(1.5, "webhook", "cus_1", correlation_id="corr-2")]
    for record in records:
        store.audit(record)
    assert store.audit_trail("corr-1") == [records[1], records[2], records[3], records[0]]
    assert store.audit_for_subject("cus_1") == [records[4], records[2], records[0]]
    assert store.audit_trail("nobody") == [] and store.audit_for_subject("nobody") == []


# -- circuits -------------------------------------------------------------------------------------
def test_circuit_opens_at_threshold_closes_and_reopens(store: Store) -> None:
    closed = Circuit(target="netsuite", status="closed", failures=0, opened_at=None)
    assert store.circuit_get("netsuite") == closed
    assert store.circuit_failure("netsuite", 3, 10.0) == replace(closed, failures=1)
    assert store.circuit_failure("netsuite", 3, 11.0) == replace(closed, failures=2)
    opened = Circuit(target="netsuite", status="open", failures=3, opened_at=12.0)
    assert store.circuit_failure("netsuite", 3, 12.0) == opened
    assert store.circuit_failure("netsuite", 3, 13.0) == replace(opened, failures=4)
    assert store.circuit_get("netsuite") == replace(opened, failures=4)

    store.circuit_reopen("netsuite", 20.0)
    assert store.circuit_get("netsuite") == replace(opened, failures=4, opened_at=20.0)
    store.circuit_close("netsuite")
    assert store.circuit_get("netsuite") == closed
    assert store.circuit_failure("netsuite", 3, 30.0) == replace(closed, failures=1)

    store.circuit_reopen("hubspot", 5.0)
    assert store.circuit_get("hubspot") == Circuit(target="hubspot", status="open", failures=0, opened_at=5.0)


# -- parked work and cursors ----------------------------------------------------------------------
def test_parked_is_fifo_per_target_and_stays_until_unparked(store: Store) -> None:
    for n in range(5):
        store.park("netsuite", {"n": n, "envelope": {"id": f"e{n}", "tags": []}})
    store.park("hubspot", {"n": 99})
    assert store.parked_count("netsuite") == 5
    first = store.parked("netsuite", 2)
    assert [message for _, message in first] == [{"n": 0, "envelope": {"id": "e0", "tags": []}},
                                                 {"n": 1, "envelope": {"id": "e1", "tags": []}}]
    assert store.parked("netsuite", 2) == first  # reading takes nothing away
    assert store.unpark("netsuite", [parked_id for parked_id, _ in first]) == 2
    assert store.unpark("netsuite", [parked_id for parked_id, _ in first]) == 0  # already gone
    store.park("netsuite", {"n": 5})
    rest = store.parked("netsuite", 10)
    assert [message["n"] for _, message in rest] == [2, 3, 4, 5]
    assert store.unpark("hubspot", [parked_id for parked_id, _ in rest]) == 0  # ids are per target
    assert store.unpark("netsuite", [parked_id for parked_id, _ in rest]) == 4
    assert store.parked("netsuite", 10) == [] and store.unpark("netsuite", []) == 0
    assert store.parked_count("netsuite") == 0
    assert store.parked_count("hubspot") == 1


def test_parking_is_one_round_trip_and_a_unit_parks_in_its_commit_in_line(store: Store) -> None:
    store.park("netsuite", {"n": 0})  # connected, script loaded
    before = store.round_trips.count
    store.park("netsuite", {"n": 1})
    assert store.round_trips.count - before == 1
    store.inflight_put("m1", {"args": []}, 1.0)
    before = store.round_trips.count
    with store.unit() as unit:
        unit.park("netsuite", {"n": 2})
        unit.audit(audit_record(1.0, "deliver"))
        unit.inflight_settle("m1")
        unit.park("netsuite", {"n": 3})
    assert store.round_trips.count - before == 1
    store.park("netsuite", {"n": 4})
    assert [message["n"] for _, message in store.parked("netsuite", 10)] == [0, 1, 2, 3, 4]
    assert store.inflight_count() == 0
    assert [record.step for record in store.audit_trail("corr-1")] == ["deliver"]


def test_cursors(store: Store) -> None:
    assert store.cursor_get("stripe.events") is None
    store.cursor_set("stripe.events", "evt_100")
    store.cursor_set("stripe.events", "evt_200")
    assert store.cursor_get("stripe.events") == "evt_200"
    assert store.cursor_get("hubspot.deals") is None


def test_leases(store: Store) -> None:
    assert store.lock_acquire("netsuite|customer/stripe/cus_1", "worker-a", 30)
    assert not store.lock_acquire("netsuite|customer/stripe/cus_1", "worker-b", 30)
    assert store.lock_acquire("netsuite|customer/stripe/cus_2", "worker-b", 30)
    store.lock_release("netsuite|customer/stripe/cus_1", "worker-b")  # not the holder: no effect
    assert not store.lock_acquire("netsuite|customer/stripe/cus_1", "worker-b", 30)
    store.lock_release("netsuite|customer/stripe/cus_1", "worker-a")
    assert store.lock_acquire("netsuite|customer/stripe/cus_1", "worker-b", 30)


def test_an_expired_lease_can_be_taken_over(store: Store) -> None:
    assert store.lock_acquire("k", "crashed-worker", 0.05)
    time.sleep(0.1)
    assert store.lock_acquire("k", "worker-b", 30)
    store.lock_release("k", "crashed-worker")  # the late holder cannot free the new holder's lease
    assert not store.lock_acquire("k", "worker-c", 30)


def test_a_lease_is_renewed_by_its_holder_alone_while_it_holds_it(store: Store) -> None:
    assert store.lock_acquire("k", "run-a", 0.2)
    assert not store.lock_acquire("k", "run-a", 30)  # taking it again does not extend it
    assert not store.lock_renew("k", "run-b", 30)  # not the holder: nothing changes
    assert store.lock_renew("k", "run-a", 30)
    time.sleep(0.3)  # past the first ttl: renewed, still held
    assert not store.lock_acquire("k", "run-b", 30)
    store.lock_release("k", "run-a")
    assert store.lock_acquire("k", "lapsing", 0.05)
    time.sleep(0.1)
    assert not store.lock_renew("k", "lapsing", 30)  # lapsed: held no longer, though no one took it
    assert store.lock_acquire("k", "run-c", 30)
    assert not store.lock_renew("k", "lapsing", 30)


# -- journeys -------------------------------------------------------------------------------------
def test_journey_starts_once_and_keeps_the_first_run(store: Store) -> None:
    first = journey("j1", 10.0)
    assert store.journey_get("j1") is None
    assert store.journey_start(first) is True
    assert store.journey_start(replace(first, state="completed", started_at=20.0, data={"again": True})) is False
    assert store.journey_get("j1") == first
    assert store.journeys() == [first]
    assert store.journeys(state="completed") == []


def test_journey_put_and_get_round_trip_every_field(store: Store) -> None:
    started = journey("j1", 10.0)
    store.journey_start(started)
    progressed = replace(
        started, state="waiting", updated_at=12.5, trigger="evt_1", reason="netsuite is down", sla_s=3600.0,
        sla_breached=True, finished_at=None,
        steps={"invoice": StepRecord(status="done", attempts=1, started_at=10.0, finished_at=11.0),
               "payment": StepRecord(status="queued", waiting_on=["netsuite", "hubspot"], attempts=2,
                                     detail="circuit open", started_at=11.0)},
        data={"invoice": {"id": "in_1", "lines": [{"amount": 1250, "tax": 0.2}], "memo": None}, "paid": False})
    store.journey_put(progressed)
    assert store.journey_get("j1") == progressed
    assert store.journeys() == [progressed]


def test_journeys_filter_together_newest_first_ties_by_id(store: Store) -> None:
    for run in [journey("j1", 10.0), journey("j2", 20.0, name="refund"), journey("j3", 30.0, state="parked"),
                journey("j4", 40.0, subject="inv_2"), journey("j0", 40.0, name="refund", subject="inv_2"),
                journey("j5", 5.0, name="refund", state="parked", subject="inv_2")]:
        assert store.journey_start(run)

    def ids(**filters: Any) -> list[str]:
        return [run.id for run in store.journeys(**filters)]

    assert ids() == ["j4", "j0", "j3", "j2", "j1", "j5"]
    assert ids(name="refund") == ["j0", "j2", "j5"]
    assert ids(state="parked") == ["j3", "j5"]
    assert ids(subject="inv_2") == ["j4", "j0", "j5"]
    assert ids(name="order-to-cash", state="running") == ["j4", "j1"]
    assert ids(name="refund", subject="inv_2") == ["j0", "j5"]
    assert ids(state="parked", subject="inv_1") == ["j3"]
    assert ids(name="refund", state="parked", subject="inv_2") == ["j5"]
    assert ids(name="refund", state="running", subject="inv_1") == ["j2"]
    assert ids(name="nobody") == [] and ids(state="completed") == [] and ids(subject="nobody") == []
    assert ids(limit=2) == ["j4", "j0"]
    assert ids(name="refund", limit=2) == ["j0", "j2"]


def test_journeys_filter_finds_sparse_matches_far_apart(store: Store) -> None:
    for n in range(250):
        store.journey_start(journey(f"j{n:03}", float(n), state="parked" if n % 60 == 0 else "running",
                                    name="refund" if n % 60 == 0 else "order-to-cash"))
    assert [run.id for run in store.journeys(subject="inv_1", state="parked", limit=3)] == ["j240", "j180", "j120"]
    assert [run.id for run in store.journeys(subject="inv_1", name="refund", limit=3)] == ["j240", "j180", "j120"]


def test_journeys_state_filter_follows_journey_put(store: Store) -> None:
    running = journey("j1", 10.0)
    store.journey_start(running)
    store.journey_start(journey("j2", 20.0))
    completed = replace(running, state="completed", updated_at=15.0, finished_at=15.0)
    store.journey_put(completed)
    assert [run.id for run in store.journeys(state="running")] == ["j2"]
    assert store.journeys(state="completed") == [completed]
    assert store.journeys(name="order-to-cash", state="completed", subject="inv_1") == [completed]
    assert [run.id for run in store.journeys()] == ["j2", "j1"]  # moved, not copied

    store.journey_put(replace(completed, state="running"))
    assert store.journeys(state="completed") == []
    assert [run.id for run in store.journeys(state="running")] == ["j2", "j1"]


# -- lifecycle ------------------------------------------------------------------------------------
def test_ping(store: Store) -> None:
    assert store.ping() is None


def test_reset_deletes_everything(store: Store) -> None:
    store.inbox_add("stripe", "evt_1", {}, "corr-1", 1.0)
    store.log_event(event("e1", 1.0))
    store.golden_put(Golden(canonical_id="cus_1", entity_type="customer", version=1, data={}))
    store.xref_put("cus_1", "customer", "stripe", "cus_A")
    store.set_applied_version("netsuite", "cus_1", 1)
    store.delivery_set("k1", "sent")
    store.dlq_add(letter("d1", 1.0))
    store.audit(audit_record(1.0, "webhook", "cus_1"))
    store.circuit_failure("netsuite", 1, 1.0)
    store.park("netsuite", {"n": 1})
    store.cursor_set("stripe.events", "evt_1")
    store.journey_start(journey("j1", 1.0))

    store.reset()
    assert store.inbox_get("stripe", "evt_1") is None
    assert store.get_event("e1") is None and store.events() == []
    assert store.golden_get("cus_1") is None
    assert store.xrefs("cus_1") == {} and store.xref_find("customer", "stripe", "cus_A") is None
    assert store.applied_version("netsuite", "cus_1") is None
    assert store.delivery_get("k1") is None
    assert store.dlq_get("d1") is None and store.dlq_list(state=None) == [] and store.dlq_count() == 0
    assert store.audit_trail("corr-1") == [] and store.audit_for_subject("cus_1") == []
    assert store.circuit_get("netsuite").status == "closed"
    assert store.parked_count("netsuite") == 0
    assert store.cursor_get("stripe.events") is None
    assert store.journey_get("j1") is None and store.journeys() == [] and store.journeys(state="running") == []
    assert store.inbox_add("stripe", "evt_1", {}, "corr-1", 2.0) == "new"


# -- races on the atomic methods --------------------------------------------------------------------
def test_inbox_add_race_has_one_new_per_event(store: Store) -> None:
    results = race(lambda _: [store.inbox_add("stripe", f"evt_{n}", {"n": n}, "corr", 1.0) for n in range(20)])
    for n in range(20):
        assert sorted(statuses[n] for statuses in results) == ["new"] + ["pending"] * (THREADS - 1)


def test_concurrent_drains_lose_nothing_and_remove_each_message_once(store: Store) -> None:
    for n in range(200):
        store.park("netsuite", {"n": n})

    def drain(_: int) -> tuple[set[int], int]:
        """Read, "re-enqueue", then remove: as the runtime drains. Drains may read the same message."""
        seen: set[int] = set()
        removed = 0
        while batch := store.parked("netsuite", 7):
            seen |= {message["n"] for _, message in batch}
            removed += store.unpark("netsuite", [parked_id for parked_id, _ in batch])
        return seen, removed

    results = race(drain)
    assert set().union(*(seen for seen, _ in results)) == set(range(200))  # every message was sent
    assert sum(removed for _, removed in results) == 200  # and removed exactly once
    assert store.parked_count("netsuite") == 0


def test_lease_race_has_one_holder(store: Store) -> None:
    assert race(lambda n: store.lock_acquire("contended", f"worker-{n}", 30)).count(True) == 1


def test_dlq_set_state_race_has_one_winner(store: Store) -> None:
    for n in range(10):
        store.dlq_add(letter(f"d{n}", float(n)))
    states = ("replayed", "discarded")
    results = race(lambda i: [store.dlq_set_state(f"d{n}", states[i % 2]) for n in range(10)])
    for n in range(10):
        winners = [i for i, won in enumerate(results) if won[n]]
        assert len(winners) == 1
        assert store.dlq_get(f"d{n}") == replace(letter(f"d{n}", float(n)), state=states[winners[0] % 2])
    assert store.dlq_count("open") == 0
    assert store.dlq_count("replayed") + store.dlq_count("discarded") == 10


def test_journey_start_race_has_one_winner(store: Store) -> None:
    results = race(lambda i: store.journey_start(replace(journey("j1", 10.0), data={"started_by": i})))
    assert results.count(True) == 1
    assert store.journey_get("j1") == replace(journey("j1", 10.0), data={"started_by": results.index(True)})
    assert len(store.journeys(state="running")) == 1


def _add_in_process(path: str, barrier: Barrier, results: "Queue[list[str]]") -> None:
    store = SQLiteStore(path)
    barrier.wait()
    results.put([store.inbox_add("stripe", f"evt_{n}", {"n": n}, "corr", 1.0) for n in range(50)])
    store.close()


def test_sqlite_processes_race_on_one_file(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    processes = [spawn.Process(target=_add_in_process, args=(str(tmp_path / "shared.db"), barrier, results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    for n in range(50):
        assert sorted(statuses[n] for statuses in outcomes) == ["new", "pending"]


def test_memory_store_serves_every_thread_one_database() -> None:
    store = open_store("sqlite:///:memory:")
    assert sorted(race(lambda _: store.inbox_add("stripe", "evt_1", {}, "corr", 1.0))) == (
        ["new"] + ["pending"] * (THREADS - 1))
    assert store.inbox_get("stripe", "evt_1") is not None
    store.close()


# -- open_store and Redis specifics -----------------------------------------------------------------
def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///data.db")
    assert isinstance(relative, SQLiteStore) and (tmp_path / "data.db").exists()
    absolute = open_store(f"sqlite:///{tmp_path / 'abs.db'}")  # an absolute path: four slashes
    assert isinstance(absolute, SQLiteStore) and absolute.path == str(tmp_path / "abs.db")
    named = open_store("redis://127.0.0.1:1/9?namespace=hub-a")
    assert isinstance(named, RedisStore) and named.namespace == "hub-a"
    default = open_store("redis://localhost/0")
    assert isinstance(default, RedisStore) and default.namespace == "crossledger"
    for opened in (relative, absolute, named, default):
        opened.close()


# -- the outcome ledger ---------------------------------------------------------------------------
def opened(correlation_id: str, pending: list[str], source: str = "stripe", at: float = 10.0,
           parts: dict[str, OutcomePart] | None = None) -> OutcomeRecord:
    return OutcomeRecord(correlation_id=correlation_id, source=source, received_at=at, updated_at=at,
                         pending=pending, parts=parts or {})


DELIVERED_NETSUITE = OutcomePart(outcome="delivered", target="netsuite")


def test_an_outcome_concludes_when_its_last_effect_settles_and_a_dead_letter_decides_it(store: Store) -> None:
    assert store.outcome_open(opened("c1", ["netsuite|e1", "zendesk|e1"]))
    assert store.outcome_settle("c1", "netsuite|e1", DELIVERED_NETSUITE, ["salesforce|l1"]).outcome == "pending"
    assert store.outcome_settle("c1", "netsuite|e1", DELIVERED_NETSUITE) is None  # settled once only
    store.outcome_settle("c1", "zendesk|e1", OutcomePart(outcome="dead_letter", target="zendesk",
                                                         category="data", reason="bad phone"))
    last = store.outcome_settle("c1", "salesforce|l1", OutcomePart(outcome="delivered", target="salesforce"))
    assert last is not None and (last.outcome, last.category, last.reason) == ("dead_letter", "data", "bad phone")
    assert store.outcome_get("c1") == last and last.pending == []

    # Replayed, the dead letter is pending again, and its delivery makes the message delivered.
    assert store.outcome_settle("c1", "zendesk|e1", None, amend=True).outcome == "pending"
    done = store.outcome_settle("c1", "zendesk|e1", OutcomePart(outcome="delivered", target="zendesk"))
    assert done is not None and (done.outcome, done.targets) == ("delivered", ["netsuite", "salesforce", "zendesk"])
    assert store.outcome_counts() == {("delivered", "stripe"): 1}


def test_an_outcome_with_nothing_pending_is_concluded_when_opened(store: Store) -> None:
    noop = OutcomePart(outcome="noop", reason="the record is as the hub already has it")
    assert store.outcome_open(opened("c1", [], parts={"ingest": noop}))
    assert store.outcome_open(opened("c2", [], source="netsuite", parts={
        "a": OutcomePart(outcome="conflict", reason="held"), "b": DELIVERED_NETSUITE}))
    assert store.outcome_open(opened("c3", ["netsuite|e3"], at=11.0))
    found = store.outcome_get("c1")
    assert found is not None and (found.outcome, found.reason) == ("noop", "the record is as the hub already has it")
    assert store.outcome_counts() == {("noop", "stripe"): 1, ("conflict", "netsuite"): 1, ("pending", "stripe"): 1}
    assert [r.correlation_id for r in store.outcomes()] == ["c3", "c2", "c1"]
    assert [r.correlation_id for r in store.outcomes(outcome="conflict")] == ["c2"]
    assert [r.correlation_id for r in store.outcomes(source="stripe", limit=1)] == ["c3"]
    assert store.outcome_settle("missing", "x", DELIVERED_NETSUITE) is None


def test_messages_concluded_are_counted_by_hour_once_each_in_their_latest_outcome(store: Store) -> None:
    now = time.time()
    store.outcome_open(opened("c1", [], parts={"ingest": OutcomePart(outcome="noop", reason="stale")}))
    store.outcome_open(opened("c2", ["netsuite|e2"]))
    store.outcome_settle("c2", "netsuite|e2", OutcomePart(outcome="dead_letter", category="data", reason="refused"))
    store.outcome_open(opened("c3", ["netsuite|e3"]))  # still pending: not concluded
    store.outcome_open(opened("c4", [], parts={"ingest": OutcomePart(outcome="dead_letter", reason="gave up")}))
    store.outcome_open(opened("c4", ["netsuite|e4"]))  # its ingest seen again: pending once more
    hour = hour_of(now)
    assert store.concluded_by_hour(now - 7200) == {(hour, "noop"): 1, (hour, "dead_letter"): 1}
    store.outcome_settle("c2", "netsuite|e2", None, amend=True)  # replayed: pending, then delivered
    store.outcome_settle("c2", "netsuite|e2", DELIVERED_NETSUITE)
    before = store.round_trips.count
    assert store.concluded_by_hour(now - 7200) == {(hour, "noop"): 1, (hour, "delivered"): 1}
    assert store.round_trips.count - before == 1
    assert store.concluded_by_hour(now + 3600) == {}


def test_an_ingest_seen_again_keeps_a_settled_outcome_but_replaces_a_dead_letter(store: Store) -> None:
    store.outcome_open(opened("c1", [], parts={"ingest": OutcomePart(outcome="noop", reason="stale")}))
    assert not store.outcome_open(opened("c1", ["netsuite|e1"]))
    dead = OutcomePart(outcome="dead_letter", category="transient", reason="gave up")
    store.outcome_open(opened("c2", [], parts={"ingest": dead}))
    assert store.outcome_open(opened("c2", ["netsuite|e2"]))
    assert store.outcome_counts() == {("noop", "stripe"): 1, ("pending", "stripe"): 1}


def test_an_ingest_run_again_with_no_news_leaves_its_pending_entry_to_its_deliveries(store: Store) -> None:
    """The ingest committed and sent its delivery; run again (its worker killed before the broker's
    ack), it finds no news. Its deliveries still settle the entry: a dead letter among them decides
    the message, directly and in a unit of work alike."""
    no_news = {"ingest": OutcomePart(outcome="noop", reason="the record is as the hub already has it")}
    store.outcome_open(opened("c1", ["netsuite|e1"]))
    assert not store.outcome_open(opened("c1", [], parts=no_news))
    store.outcome_open(opened("c2", ["netsuite|e2"]))
    with store.unit() as unit:
        unit.outcome_open(opened("c2", [], parts=no_news))
    for correlation_id, token in (("c1", "netsuite|e1"), ("c2", "netsuite|e2")):
        entry = store.outcome_settle(correlation_id, token, OutcomePart(outcome="dead_letter", target="netsuite",
                                                                        category="data", reason="refused"))
        assert entry is not None and (entry.outcome, entry.reason) == ("dead_letter", "refused"), entry
    assert store.outcome_counts() == {("dead_letter", "stripe"): 2}


def test_a_failed_units_commit_keeps_what_it_recorded_and_leaves_its_decisions_to_the_retry(store: Store) -> None:
    """A message that fails commits its audit records and what it recorded of calls it made, but not
    the golden record it merged nor the ledger entry it opened: its retry decides them again (else it
    would find the record as it left it, and route nothing)."""
    golden = Golden(canonical_id="customer/stripe/cus_f", entity_type="customer", version=1, data={"name": "F"})
    audit = AuditRecord(at=1.0, correlation_id="c-failed", step="ingest", status="routed")
    unit = Unit()
    unit.golden_put(golden)
    unit.audit(audit)
    unit.delivery_set("key-f", "failed")
    unit.outcome_open(opened("c-failed", ["netsuite|ef"]))
    unit.failed()
    store.commit(unit)
    assert store.golden_get(golden.canonical_id) is None and store.outcome_get("c-failed") is None
    assert store.audit_trail("c-failed") == [audit]
    delivery = store.delivery_get("key-f")
    assert delivery is not None and delivery.status == "failed"


def test_what_a_message_is_about_rides_in_its_outcome_entry_through_open_and_settle(store: Store) -> None:
    about = ["customer/stripe/cus_1", "invoice/stripe/in_1"]
    store.outcome_open(replace(opened("c1", ["netsuite|e1", "netsuite|e2"]), subjects=about))
    with store.unit() as unit:
        unit.outcome_open(replace(opened("c2", [], parts={"ingest": OutcomePart(outcome="noop")}), subjects=[]))
    assert store.outcome_settle("c1", "netsuite|e1", DELIVERED_NETSUITE) is not None
    with store.unit() as unit:
        unit.outcome_settle("c1", "netsuite|e2", DELIVERED_NETSUITE)
    assert unit.entry is not None and (unit.entry.outcome, unit.entry.subjects) == ("delivered", about)
    assert [(o.correlation_id, o.subjects) for o in store.outcomes()] == [("c2", []), ("c1", about)]
    assert {cid: o.subjects for cid, o in store.outcomes_get(["c1", "c2"]).items()} == {"c1": about, "c2": []}


def test_an_outcome_entry_of_an_earlier_release_reads_as_not_saying_what_it_is_about(store: Store) -> None:
    """Written before the entry said what its message is about (no ``subjects`` key): None, and so
    it stays as the message settles."""
    store.outcome_open(opened("c1", ["netsuite|e1"]))
    earlier = msgspec.json.encode({key: value for key, value in msgspec.to_builtins(opened("c1", ["netsuite|e1"])
                                                                                    ).items() if key != "subjects"})
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE outcomes SET record = ? WHERE correlation_id = 'c1'", (earlier,))
    else:
        assert isinstance(store, RedisStore)
        store._redis.set(f"{store.namespace}:outcome:c1", earlier)
    found = store.outcome_get("c1")
    assert found is not None and found.subjects is None and found.pending == ["netsuite|e1"]
    settled = store.outcome_settle("c1", "netsuite|e1", DELIVERED_NETSUITE)
    assert settled is not None and (settled.outcome, settled.subjects) == ("delivered", None)
    assert [o.subjects for o in store.outcomes()] == [None]


def test_concurrent_settles_of_one_message_lose_none(store: Store) -> None:
    tokens = [f"t{i}|e" for i in range(THREADS)]
    store.outcome_open(opened("c1", tokens))
    results = race(lambda i: store.outcome_settle("c1", tokens[i], OutcomePart(outcome="delivered",
                                                                                target=f"t{i}")))
    concluded = [result for result in results if result is not None and result.outcome != "pending"]
    assert len(concluded) == 1 and concluded[0].targets == sorted(f"t{i}" for i in range(THREADS))
    assert store.outcome_counts() == {("delivered", "stripe"): 1}


@pytest.mark.parametrize("url", [
    "", "postgres://localhost/db", "sqlite://", "sqlite:///", "sqlite://data.db", "redis://",
    "redis://localhost:port/0", "redis://localhost:1/zero", "redis://localhost:1/0?db=1",
])
def test_open_store_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"use sqlite:///.*redis://host:port/db\[\?namespace=name\]"):
        open_store(url)


def test_redis_namespace_must_not_overlap_or_glob() -> None:
    for namespace in ("", "hub:a", "hub*"):
        with pytest.raises(ValueError, match="namespace"):
            RedisStore("redis://127.0.0.1:1/9", namespace)


def test_redis_ping_raises_when_unreachable() -> None:
    unreachable = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(redis.ConnectionError):
        unreachable.ping()
    unreachable.close()


@pytest.mark.redis
def test_redis_reset_spares_other_namespaces() -> None:
    url = redis_url(9)
    mine, neighbour = RedisStore(url, "test-hub"), RedisStore(url, "test-hub-2")
    for each in (mine, neighbour):
        each.cursor_set("poll", "evt_1")
        each.park("netsuite", {"n": 1})
    client = redis.Redis.from_url(url)
    client.set("unrelated", "1")

    mine.reset()
    assert mine.cursor_get("poll") is None and mine.parked_count("netsuite") == 0
    assert neighbour.cursor_get("poll") == "evt_1" and neighbour.parked_count("netsuite") == 1
    assert client.get("unrelated") == b"1"
    for closing in (mine, neighbour, client):
        closing.close()


@pytest.mark.redis
def test_redis_journey_put_moves_the_run_between_indexes() -> None:
    """The listing checks every filter on the records too, so a run left behind in an index it has
    moved out of would not show up in results, only make every later listing read past it."""
    url = redis_url(9)
    store, client = RedisStore(url, "test-journeys"), redis.Redis.from_url(url)
    store.journey_start(journey("j1", 10.0))
    store.journey_put(journey("j1", 10.0, state="completed", subject="inv_2"))
    indexes = {key.decode(): client.zrange(key, 0, -1) for key in client.scan_iter("test-journeys:journeys:*")}
    assert indexes == {f"test-journeys:journeys:{index}": [b"j1"] for index in
                       ("by-start", "name:order-to-cash", "state:completed", "subject:inv_2")}
    store.reset()
    for closing in (store, client):
        closing.close()


# -- discarding dead letters ------------------------------------------------------------------------
def test_dlq_discard_records_why_and_when_once(store: Store) -> None:
    for dead in (letter("d1", 10.0), letter("d2", 20.0)):
        store.dlq_add(dead)
    assert store.dlq_set_state("d2", "replayed") is True

    assert store.dlq_discard("d1", "the customer was deleted at the source", 99.5) is True
    assert store.dlq_get("d1") == replace(letter("d1", 10.0), state="discarded", discarded_at=99.5,
                                          discard_reason="the customer was deleted at the source")
    assert store.dlq_discard("d1", "again", 100.0) is False  # closed once; the first reason stays
    assert store.dlq_get("d1").discard_reason == "the customer was deleted at the source"  # type: ignore[union-attr]
    assert store.dlq_discard("d2", "replayed already", 100.0) is False
    assert store.dlq_discard("missing", "no such letter", 100.0) is False
    assert [dead.id for dead in store.dlq_list(state="discarded")] == ["d1"]
    assert [store.dlq_count(state) for state in ("open", "replayed", "discarded")] == [0, 1, 1]


def test_dlq_discard_race_has_one_winner(store: Store) -> None:
    store.dlq_add(letter("d1", 1.0))
    results = race(lambda i: store.dlq_discard("d1", f"operator {i}", float(i)))
    assert results.count(True) == 1
    winner = results.index(True)
    closed = store.dlq_get("d1")
    assert closed is not None and (closed.discard_reason, closed.discarded_at) == (f"operator {winner}", float(winner))
    assert store.dlq_count("discarded") == 1 and store.dlq_count("open") == 0


def test_sqlite_file_from_before_discards_gains_the_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the dead_letters table as released before discards were recorded
        old.execute("CREATE TABLE dead_letters (id TEXT PRIMARY KEY, created_at REAL NOT NULL, actor TEXT NOT NULL, "
                    "target TEXT, category TEXT NOT NULL, reason TEXT NOT NULL, event_id TEXT, correlation_id TEXT, "
                    "message BLOB NOT NULL, attempts INTEGER NOT NULL, state TEXT NOT NULL)")
    old.close()
    store = SQLiteStore(path)
    store.dlq_add(letter("d1", 1.0))
    assert store.dlq_discard("d1", "obsolete", 2.0) is True
    assert store.dlq_get("d1").discard_reason == "obsolete"  # type: ignore[union-attr]
    store.close()


def test_messages_in_flight_are_recorded_until_settled_and_listed_most_overdue_first(store: Store) -> None:
    store.inflight_put("m1", {"actor_name": "deliver", "args": ["netsuite", {"id": "e1"}]}, 100.0)
    store.inflight_put("m2", {"actor_name": "ingest", "args": []}, 50.0)
    store.inflight_put("m3", {"actor_name": "journey", "args": []}, 300.0)
    assert store.inflight_count() == 3
    assert store.inflight_overdue(200.0, 10) == [("m2", {"actor_name": "ingest", "args": []}),
                                                ("m1", {"actor_name": "deliver", "args": ["netsuite", {"id": "e1"}]})]
    assert store.inflight_overdue(100.0, 10) == [("m2", {"actor_name": "ingest", "args": []})]  # due before, not at
    assert [message_id for message_id, _ in store.inflight_overdue(1000.0, 2)] == ["m2", "m1"]

    store.inflight_put("m2", {"actor_name": "ingest", "args": ["again"]}, 400.0)  # recorded again: due later
    assert store.inflight_count() == 3
    assert store.inflight_overdue(350.0, 10)[0][0] == "m1"
    assert store.inflight_overdue(1000.0, 10)[-1] == ("m2", {"actor_name": "ingest", "args": ["again"]})

    store.inflight_settle("m1")
    store.inflight_settle("m1")  # settling twice is harmless
    store.inflight_settle("never-sent")
    assert store.inflight_count() == 2
    assert [message_id for message_id, _ in store.inflight_overdue(1000.0, 10)] == ["m3", "m2"]


def test_a_unit_of_work_commits_its_writes_together_in_one_round_trip(store: Store) -> None:
    store.inflight_put("settled-by-the-unit", {"args": []}, 1.0)
    store.inbox_add("stripe", "evt_1", {"id": "evt_1"}, "corr-1", 1.0)
    assert store.lock_acquire("cus-1", "me", 30)
    before = store.round_trips.count
    with store.unit() as unit:
        unit.audit(audit_record(1.0, "ingest", subject="cus-1"), audit_record(2.0, "deliver"))
        unit.log_event(event("e1", 5.0))
        unit.golden_put(Golden(canonical_id="cus-1", entity_type="customer", version=2, data={"v": 2}))
        unit.golden_put(Golden(canonical_id="cus-1", entity_type="customer", version=1, data={"v": 1}))  # stale
        unit.xref_put("cus-1", "customer", "netsuite", "ns-1")
        unit.set_applied_version("netsuite", "cus-1", 7)
        unit.set_applied_version("netsuite", "cus-1", 3)  # older: the maximum stays
        unit.delivery_set("key-1", "acknowledged", "ns-1")
        unit.inbox_mark_enqueued("stripe", "evt_1")
        unit.inflight_put("follow-on", {"args": ["netsuite"]}, 2.0)
        unit.inflight_settle("settled-by-the-unit")
        unit.lock_release("cus-1", "someone else")  # not the holder: kept
        unit.dlq_add(letter("dl-1", 3.0))
        assert store.audit_trail("corr-1") == []  # nothing is written before the commit
        assert store.golden_get("cus-1") is None
        assert store.dlq_get("dl-1") is None
    assert store.round_trips.count - before == 4  # the three reads above, and the commit

    assert [record.step for record in store.audit_trail("corr-1")] == ["ingest", "deliver"]
    assert [record.step for record in store.audit_for_subject("cus-1")] == ["ingest"]
    assert store.get_event("e1") == event("e1", 5.0)
    assert store.golden_get("cus-1").data == {"v": 2}  # type: ignore[union-attr]
    assert store.xref_get("cus-1", "netsuite") == "ns-1"
    assert store.xref_find("customer", "netsuite", "ns-1") == "cus-1"
    assert store.applied_version("netsuite", "cus-1") == 7
    assert store.delivery_get("key-1").external_id == "ns-1"  # type: ignore[union-attr]
    assert store.inbox_add("stripe", "evt_1", {"id": "evt_1"}, "corr-2", 2.0) == "duplicate"
    assert [message_id for message_id, _ in store.inflight_overdue(10.0, 10)] == ["follow-on"]
    assert not store.lock_acquire("cus-1", "someone else", 30)
    assert [dead.id for dead in store.dlq_list()] == ["dl-1"]


def test_a_unit_left_by_an_exception_writes_nothing(store: Store) -> None:
    before = store.round_trips.count
    with pytest.raises(RuntimeError), store.unit() as unit:
        unit.audit(audit_record(1.0, "ingest"))
        unit.inflight_put("m1", {"args": []}, 1.0)
        raise RuntimeError("the handler failed")
    with store.unit():
        pass  # an empty unit costs nothing
    assert store.round_trips.count == before
    assert store.audit_trail("corr-1") == []
    assert store.inflight_count() == 0


def test_a_committed_unit_is_atomic_under_concurrent_units(store: Store) -> None:
    """Many units at once: each one's writes land whole (no interleaving loses or splits one)."""
    def commit(i: int) -> None:
        with store.unit() as unit:
            unit.audit(*(audit_record(float(n), f"step-{i}-{n}", correlation_id=f"corr-{i}") for n in range(5)))
            unit.set_applied_version("netsuite", "cus-1", i)
    race(commit)
    assert store.applied_version("netsuite", "cus-1") == THREADS - 1
    for i in range(THREADS):
        assert [record.step for record in store.audit_trail(f"corr-{i}")] == [f"step-{i}-{n}" for n in range(5)]


def test_a_unit_settles_an_outcome_with_its_writes_atomically(store: Store) -> None:
    store.outcome_open(OutcomeRecord(correlation_id="corr-1", source="stripe", received_at=1.0, updated_at=1.0,
                                     pending=["netsuite|e1"]))
    with store.unit() as unit:
        unit.outcome_settle("corr-1", "netsuite|e1", OutcomePart(outcome="delivered", target="netsuite"))
        unit.inflight_settle("m1")
        unit.audit(audit_record(1.0, "deliver"))
    assert unit.entry is not None and unit.entry.outcome == "delivered"
    assert store.outcome_get("corr-1") == unit.entry
    assert [record.step for record in store.audit_trail("corr-1")] == ["deliver"]

    with store.unit() as again:  # settled before (a redelivered message): the entry stays, the writes land
        again.outcome_settle("corr-1", "netsuite|e1", OutcomePart(outcome="delivered", target="netsuite"))
        again.audit(audit_record(2.0, "deliver again"))
    assert again.entry is None
    assert len(store.audit_trail("corr-1")) == 2
    assert store.outcome_counts() == {("delivered", "stripe"): 1}

    with store.unit() as opened:
        opened.outcome_open(OutcomeRecord(correlation_id="corr-2", source="stripe", received_at=2.0, updated_at=2.0))
        with pytest.raises(ValueError):
            opened.outcome_settle("corr-2", "x", None)  # one entry per unit
    assert opened.entry is not None and opened.entry.outcome == "noop"


def test_units_settling_one_entry_at_once_lose_no_settlement(store: Store) -> None:
    tokens = [f"netsuite|e{i}" for i in range(THREADS)]
    store.outcome_open(OutcomeRecord(correlation_id="corr-1", source="stripe", received_at=1.0, updated_at=1.0,
                                     pending=tokens))

    def settle(i: int) -> None:
        with store.unit() as unit:
            unit.outcome_settle("corr-1", tokens[i], OutcomePart(outcome="delivered", target="netsuite"))
            unit.audit(audit_record(float(i), f"deliver-{i}"))
    race(settle)
    record = store.outcome_get("corr-1")
    assert record is not None and record.outcome == "delivered" and sorted(record.parts) == sorted(tokens)
    assert len(store.audit_trail("corr-1")) == THREADS


def test_units_that_read_their_ledger_entry_with_their_reads_lose_no_settlement(store: Store) -> None:
    """Each unit reads the entry with its lease (``watch``), then settles it while the others do: its
    commit changes the entry as it is then, not as it was read."""
    tokens = [f"netsuite|e{i}" for i in range(THREADS)]
    store.outcome_open(OutcomeRecord(correlation_id="corr-1", source="stripe", received_at=1.0, updated_at=1.0,
                                     pending=tokens))

    def settle(i: int) -> None:
        assert store.read([("xref_get", (f"cus-{i}", "netsuite"))], lease=(f"lease-{i}", "me", 5.0),
                          watch="corr-1") == [None]
        with store.unit() as unit:
            unit.outcome_settle("corr-1", tokens[i], OutcomePart(outcome="delivered", target="netsuite"))
            unit.lock_release(f"lease-{i}", "me")
    race(settle)
    record = store.outcome_get("corr-1")
    assert record is not None and record.outcome == "delivered" and sorted(record.parts) == sorted(tokens)
    assert store.read([], lease=("held", "me", 5.0)) == [] and store.read([], lease=("held", "other", 5.0),
                                                                          watch="corr-1") is None


def test_reads_are_answered_together_and_under_a_lease_when_asked(store: Store) -> None:
    store.golden_put(Golden(canonical_id="cus-1", entity_type="customer", version=1, data={"v": 1}))
    store.xref_put("cus-1", "customer", "netsuite", "ns-1")
    store.set_applied_version("netsuite", "cus-1", 5)
    store.delivery_set("key-1", "acknowledged", "ns-1")
    reads = [("golden_get", ("cus-1",)), ("xref_get", ("cus-1", "netsuite")),
             ("applied_version", ("netsuite", "cus-1")), ("delivery_get", ("key-1",)), ("circuit_get", ("netsuite",)),
             ("golden_get", ("nobody",)), ("applied_version", ("netsuite", "nobody"))]
    expected = [store.golden_get("cus-1"), "ns-1", 5, store.delivery_get("key-1"), store.circuit_get("netsuite"),
                None, None]
    before = store.round_trips.count
    assert store.read(reads) == expected
    assert store.read(reads, lease=("netsuite|cus-1", "me", 30)) == expected
    assert store.round_trips.count - before == 2
    assert store.read(reads, lease=("netsuite|cus-1", "someone else", 30)) is None  # held: nothing read
    assert not store.lock_acquire("netsuite|cus-1", "someone else", 30)
    store.lock_release("netsuite|cus-1", "me")
    assert store.read([], lease=("netsuite|cus-1", "someone else", 30)) == []


def test_a_lease_marks_the_attempt_it_is_taken_for(store: Store) -> None:
    """``attempt``: the mark is ``sent`` from the round trip that takes the lease, whatever it was
    (a replay of a delivery is an attempt too), and leads the answers as it was before; nothing is
    marked while someone else holds the lease."""
    store.xref_put("cus-1", "customer", "netsuite", "ns-1")
    reads = [("xref_get", ("cus-1", "netsuite"))]
    before = store.round_trips.count
    assert store.read(reads, lease=("netsuite|cus-1", "me", 30), watch="corr-1", attempt="a-1") == [None, "ns-1"]
    assert store.round_trips.count - before == 1
    assert store.delivery_get("a-1").status == "sent"  # type: ignore[union-attr]
    assert store.read(reads, lease=("netsuite|cus-1", "other", 30), attempt="a-2") is None
    assert store.delivery_get("a-2") is None
    store.delivery_set("a-1", "acknowledged", "ns-1")
    [earlier] = store.read([], lease=("netsuite|cus-2", "me", 30), attempt="a-1")  # type: ignore[misc]
    assert (earlier.status, earlier.external_id) == ("acknowledged", "ns-1")
    assert store.delivery_get("a-1").status == "sent"  # type: ignore[union-attr]
    [earlier] = store.read([], attempt="a-1")  # type: ignore[misc]  # under a lease already held
    assert earlier.status == "sent"


def finding(id: str, run_id: str, cls: FindingClass, system: str = "netsuite") -> FindingRecord:
    return FindingRecord(id=id, run_id=run_id, cls=cls, entity="invoice", subject=f"invoice/stripe/{id}",
                         system=system, records={"stripe": {"id": id, "values": {"total": 100}}},
                         rule="invoice.document: stripe is the system of record", detail="", first_seen=1.0,
                         repair={"action": "deliver", "target": system})


def test_reconciliation_runs_newest_first_with_their_findings_replaced_and_filtered(store: Store) -> None:
    first = ReconciliationRun(id="run-1", started_at=10.0)
    store.reconciliation_put(first, [finding("a", "run-1", "missing")])
    done = replace(first, state="done", finished_at=11.0, findings={"missing": 1})
    store.reconciliation_put(done)  # the run's state changes; its findings stay
    second = ReconciliationRun(id="run-2", started_at=20.0, state="done")
    found = [finding("b", "run-2", "orphan"), finding("c", "run-2", "missing", system="salesforce"),
             finding("a", "run-2", "missing")]
    store.reconciliation_put(second, found)

    assert store.reconciliation_get("run-1") == done
    assert store.reconciliation_get("run-0") is None
    assert [run.id for run in store.reconciliations()] == ["run-2", "run-1"]
    assert [run.id for run in store.reconciliations(limit=1)] == ["run-2"]
    assert store.reconciliation_findings("run-1") == [finding("a", "run-1", "missing")]
    assert store.reconciliation_findings("run-2") == found
    assert [f.id for f in store.reconciliation_findings("run-2", cls="missing")] == ["c", "a"]
    assert [f.id for f in store.reconciliation_findings("run-2", cls="missing", system="netsuite")] == ["a"]
    store.reconciliation_put(second, [])
    assert store.reconciliation_findings("run-2") == []


def test_the_latest_finished_run_is_found_past_any_number_of_failed_ones(store: Store) -> None:
    """Scheduled runs that fail on their first page pile up after the last finished one: it is found
    however many there are (past one round trip's worth on Redis), and the newest finished full run too."""
    assert store.reconciliation_latest_done() is None and store.reconciliation_latest_done(full=True) is None
    store.reconciliation_put(ReconciliationRun(id="full", started_at=1.0, state="done"))
    store.reconciliation_put(ReconciliationRun(id="incremental", started_at=2.0, state="done", since=1.0))
    for n in range(250):
        store.reconciliation_put(ReconciliationRun(id=f"failed-{n:03d}", started_at=3.0 + n, state="failed",
                                                   since=2.0))
    store.reconciliation_put(ReconciliationRun(id="running", started_at=1000.0, since=2.0))
    assert (latest := store.reconciliation_latest_done()) is not None and latest.id == "incremental"
    assert (full := store.reconciliation_latest_done(full=True)) is not None and full.id == "full"


def test_a_run_keeps_its_listings_and_their_projections_by_generation(store: Store) -> None:
    """A listing's projections by record id, replaced and removed by id, read back in batches past
    one round trip's worth, one generation apart from another, and dropped whole; a run keeps how
    far each of its listings got."""
    many = [(f"in_{n:05d}", f"packed {n}".encode()) for n in range(LISTING_BATCH + 5)]
    store.listing_put("g1", many)
    store.listing_put("g2", [("in_00001", b"other")])
    store.listing_put("g1", [("in_00001", b"changed"), ("in_00002", None), ("in_00003", None)])

    kept = list(store.listing_scan("g1"))
    assert len(kept) == LISTING_BATCH + 3 and b"changed" in kept and b"packed 1" not in kept
    assert b"packed 2" not in kept and b"packed 4" in kept and b"other" not in kept
    store.listing_drop("g1")
    assert list(store.listing_scan("g1")) == [] and list(store.listing_scan("g2")) == [b"other"]

    reading = Listing(generation="g2", read_at=5.0, since=4.0, cursor="in_00001")
    store.reconciliation_put(ReconciliationRun(id="run-3", started_at=30.0, listings={"stripe.invoice": reading}))
    assert store.reconciliation_get("run-3").listings == {"stripe.invoice": reading}  # type: ignore[union-attr]


def test_a_listing_is_read_back_with_each_record_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis's ``HSCAN`` may return a field again in a later batch (the hash resized between two
    calls; made to happen here): a record read twice would be a copy that is not there."""
    many = [(f"in_{n:05d}", f"packed {n}".encode()) for n in range(3 * LISTING_BATCH)]
    store.listing_put("g1", many)
    if isinstance(store, RedisStore):
        client, scan = store._redis, store._redis.hscan
        repeated: dict[Any, Any] = {}

        def rescanning(*args: Any, **kwargs: Any) -> Any:
            cursor, found = scan(*args, **kwargs)
            again = {**repeated, **found}
            repeated.update(found)
            return cursor, again

        monkeypatch.setattr(client, "hscan", rescanning)
    kept = list(store.listing_scan("g1"))
    assert sorted(kept) == sorted(packed for _, packed in many)


# -- the operator console ---------------------------------------------------------------------------
def test_users_are_replaced_by_name_and_listed_by_name(store: Store) -> None:
    bob = UserRecord(name="bob", role="viewer", salt="00", password_hash="aa", created_at=1.0)
    ann = UserRecord(name="ann", role="operator", salt="01", password_hash="bb", created_at=2.0)
    store.user_put(bob)
    store.user_put(ann)
    promoted = replace(bob, role="operator", password_hash="cc")
    store.user_put(promoted)
    assert store.user_get("bob") == promoted
    assert store.user_get("nobody") is None
    assert store.users() == [ann, promoted]


def test_a_new_session_epoch_keeps_the_rest_of_the_user(store: Store) -> None:
    ann = UserRecord(name="ann", role="operator", salt="00", password_hash="11", created_at=1.0, session_epoch="a")
    store.user_put(ann)
    assert store.user_new_epoch("ann", "b") is True
    assert store.user_get("ann") == replace(ann, session_epoch="b")
    assert store.user_new_epoch("nobody", "b") is False and store.user_get("nobody") is None


def test_triage_records_are_replaced_and_listed_most_recently_updated_first(store: Store) -> None:
    first = TriageRecord(id="dead-letter:d1", state="acknowledged", assignee="ann", updated_at=10.0)
    second = TriageRecord(id="finding:f1", notes=[{"by": "bob", "at": 11.0, "text": "looking"}], updated_at=11.0)
    store.triage_put(first)
    store.triage_put(second)
    resolved = replace(first, state="resolved", updated_at=12.0, resolved_at=12.0)
    store.triage_put(resolved)
    assert store.triage_get("dead-letter:d1") == resolved
    assert store.triage_get("finding:none") is None
    assert store.triages() == [resolved, second]


def test_the_console_audit_log_is_newest_first_and_per_item(store: Store) -> None:
    done = [ActionRecord(at=float(i), user="ann", action="retry", item=f"dead-letter:d{i % 2}") for i in range(5)]
    for record in done:
        store.action_add(record)
    assert store.actions() == done[::-1]
    assert store.actions(limit=2) == [done[4], done[3]]
    assert store.actions(item="dead-letter:d1") == [done[3], done[1]]


def test_a_secret_is_kept_by_the_first_caller_among_racing_ones(store: Store) -> None:
    kept = race(lambda i: store.secret("console-session", f"candidate-{i}"))
    assert len(set(kept)) == 1 and kept[0].startswith("candidate-")
    assert store.secret("console-session", "another") == kept[0]
    assert store.secret("other", "its own") == "its own"
