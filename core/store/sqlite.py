"""The SQLite store: the embedded default, one file shared by the web process and the workers.

Each thread (of each process) gets its own connection, because a sqlite3 connection must not be
used by two threads at once. The file is in WAL mode, so readers never wait for the writer, and
every connection waits up to :data:`BUSY_TIMEOUT` for the write lock instead of failing at once.

Atomic methods are either one statement (an upsert whose ``DO UPDATE`` has a ``WHERE``, an
``UPDATE ... WHERE state = 'open'``) or a ``BEGIN IMMEDIATE`` transaction, which takes the write
lock *before* reading, so a read-then-write cannot interleave with any other writer, thread or
process.

Each record table has one column per field of its Struct, with the same name; ``dict`` fields are
msgspec JSON in BLOB columns. That lets :meth:`SQLiteStore._insert` and :func:`_load` handle every
record type alike.
"""

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import msgspec
from crossledger.core.store.base import (
    LISTING_BATCH,
    ActionRecord,
    AuditRecord,
    Circuit,
    DeadLetter,
    DeadLetterState,
    Delivery,
    DeliveryStatus,
    FindingClass,
    FindingRecord,
    Golden,
    InboxEntry,
    InboxStatus,
    JourneyRecord,
    JourneyState,
    LedgerState,
    LoggedEvent,
    OutcomeChange,
    OutcomePart,
    OutcomeRecord,
    Read,
    ReconciliationRun,
    RoundTrips,
    StoredRecord,
    TriageRecord,
    Unit,
    UserRecord,
    decode_json,
    decoder,
    encode_json,
    hour_of,
    inbox_entry,
    opening,
    query_words,
    search_terms,
    settling,
    unit_of,
)

R = TypeVar("R", bound=msgspec.Struct)
T = TypeVar("T")

#: Seconds a connection waits for another connection's write lock before raising "database is locked".
BUSY_TIMEOUT = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    source TEXT NOT NULL, source_event_id TEXT NOT NULL, correlation_id TEXT NOT NULL,
    received_at REAL NOT NULL, payload BLOB NOT NULL, enqueued INTEGER NOT NULL,
    PRIMARY KEY (source, source_event_id));
CREATE INDEX IF NOT EXISTS inbox_unenqueued ON inbox (received_at) WHERE enqueued = 0;

CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, source TEXT NOT NULL, subject TEXT NOT NULL,
    correlation_id TEXT NOT NULL, occurred_at REAL NOT NULL, envelope BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_at, id);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, occurred_at, id);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, occurred_at, id);

CREATE TABLE IF NOT EXISTS golden (
    canonical_id TEXT PRIMARY KEY, entity_type TEXT NOT NULL, version INTEGER NOT NULL,
    data BLOB NOT NULL, source_event_id TEXT);
CREATE INDEX IF NOT EXISTS golden_by_customer ON golden (json_extract(CAST(data AS TEXT), '$.customer_id'));

CREATE TABLE IF NOT EXISTS xrefs (
    canonical_id TEXT NOT NULL, system TEXT NOT NULL, entity_type TEXT NOT NULL,
    external_id TEXT NOT NULL, PRIMARY KEY (canonical_id, system));
CREATE UNIQUE INDEX IF NOT EXISTS xrefs_by_external ON xrefs (entity_type, system, external_id);

CREATE TABLE IF NOT EXISTS applied_versions (
    target TEXT NOT NULL, canonical_id TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (target, canonical_id));

CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY, status TEXT NOT NULL, external_id TEXT, updated_at REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0);

CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, actor TEXT NOT NULL, target TEXT,
    category TEXT NOT NULL, reason TEXT NOT NULL, event_id TEXT, correlation_id TEXT,
    message BLOB NOT NULL, attempts INTEGER NOT NULL, state TEXT NOT NULL, discarded_at REAL,
    discard_reason TEXT);
CREATE INDEX IF NOT EXISTS dead_letters_by_state ON dead_letters (state, created_at);

CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, correlation_id TEXT NOT NULL, step TEXT NOT NULL,
    status TEXT NOT NULL, system TEXT, event_id TEXT, subject TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_by_correlation ON audit (correlation_id, at);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit (subject, at);

CREATE TABLE IF NOT EXISTS circuits (
    target TEXT PRIMARY KEY, status TEXT NOT NULL, failures INTEGER NOT NULL, opened_at REAL);

CREATE TABLE IF NOT EXISTS parked (seq INTEGER PRIMARY KEY, target TEXT NOT NULL, message BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS parked_by_target ON parked (target);

CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);

CREATE TABLE IF NOT EXISTS journeys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL,
    subject TEXT NOT NULL, state TEXT NOT NULL, correlation_id TEXT NOT NULL, started_at REAL NOT NULL,
    updated_at REAL NOT NULL, steps BLOB NOT NULL, data BLOB NOT NULL, trigger TEXT, finished_at REAL,
    reason TEXT, sla_s REAL, sla_breached INTEGER NOT NULL);
-- One index per filter, each in the listing's order, so a filtered page reads only its own rows.
CREATE INDEX IF NOT EXISTS journeys_by_start ON journeys (started_at, id);
CREATE INDEX IF NOT EXISTS journeys_by_name ON journeys (name, started_at, id);
CREATE INDEX IF NOT EXISTS journeys_by_state ON journeys (state, started_at, id);
CREATE INDEX IF NOT EXISTS journeys_by_subject ON journeys (subject, started_at, id);

CREATE TABLE IF NOT EXISTS outcomes (
    correlation_id TEXT PRIMARY KEY, source TEXT NOT NULL, outcome TEXT NOT NULL, received_at REAL NOT NULL,
    record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS outcomes_by_state ON outcomes (outcome, source);
CREATE INDEX IF NOT EXISTS outcomes_by_time ON outcomes (received_at, correlation_id);
CREATE TABLE IF NOT EXISTS inflight (message_id TEXT PRIMARY KEY, due_at REAL NOT NULL, message BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS inflight_by_due ON inflight (due_at);
CREATE TABLE IF NOT EXISTS reconciliations (id TEXT PRIMARY KEY, started_at REAL NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS reconciliations_by_time ON reconciliations (started_at, id);
CREATE TABLE IF NOT EXISTS findings (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, class TEXT NOT NULL, system TEXT NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS listings (
    generation TEXT NOT NULL, id TEXT NOT NULL, record BLOB NOT NULL, PRIMARY KEY (generation, id));
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS triage (id TEXT PRIMARY KEY, updated_at REAL NOT NULL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS actions (seq INTEGER PRIMARY KEY, item TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS actions_by_item ON actions (item, seq);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_TERMS = ("CREATE TABLE golden_terms (term TEXT NOT NULL, canonical_id TEXT NOT NULL, "
          "PRIMARY KEY (term, canonical_id))",
          "CREATE INDEX golden_terms_by_record ON golden_terms (canonical_id)")
"""The name and email index of :meth:`SQLiteStore.golden_named` (``search_terms``), made apart from
the other tables: a file of an earlier release gets it filled from its golden records when opened."""

#: How many values one ``IN (...)`` holds (SQLite allows 32,766 variables since 3.32; older, 999).
IN_CHUNK = 900

#: Columns added since a table was first released: (table, column, declaration), added to older files.
_ADDED_COLUMNS = [("dead_letters", "discarded_at", "REAL"), ("dead_letters", "discard_reason", "TEXT"),
                  ("outcomes", "concluded_at", "REAL"),
                  # An operation's state of an earlier release never failed under a key of its own: 0.
                  ("deliveries", "generation", "INTEGER NOT NULL DEFAULT 0")]
_AFTER_COLUMNS = (
    # An entry concluded before its column existed: when it last changed, the time its outcome was set.
    "UPDATE outcomes SET concluded_at = json_extract(CAST(record AS TEXT), '$.updated_at') "
    "WHERE outcome != 'pending' AND concluded_at IS NULL",
    "CREATE INDEX IF NOT EXISTS outcomes_by_conclusion ON outcomes (concluded_at, outcome)",
)


class SQLiteStore:
    """The :class:`~crossledger.core.store.base.Store` in one SQLite file (or ``":memory:"``).

    An in-memory database exists only inside its connection, so a ``":memory:"`` store shares one
    connection between threads and serializes them with a lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.round_trips = RoundTrips("sqlite")
        self._local = threading.local()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._opened_lock = threading.Lock()
        self._shared: sqlite3.Connection | None = None
        self._lock: AbstractContextManager[Any] = nullcontext()
        if self.path == ":memory:":
            self._shared = self._connect()
            self._lock = threading.RLock()
        self._create_schema()

    def _create_schema(self) -> None:
        """Create the tables. Two processes opening a new file at once (web and worker starting
        together) can get SQLITE_BUSY here without the busy handler being consulted (switching to
        WAL, first schema write), so retry for as long as the busy timeout would have waited."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                with self._session() as db:
                    db.executescript(_SCHEMA)
                    _add_columns(db)
                    _add_terms(db)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                self._local.handle = (None, None)  # start again on a fresh connection
                time.sleep(0.05)

    # -- connections --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, each statement commits on its own unless it runs inside
        # an explicit BEGIN (see _transaction). check_same_thread=False: close() may run on another
        # thread; otherwise a connection serves one thread, or all of them under the lock.
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # with WAL: never corrupt; a power cut may undo the last commits
        with self._opened_lock:
            self._opened.append((os.getpid(), db))
        return db

    def _connection(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on first use, and opened again in a forked child
        (an SQLite connection must not cross ``fork()``)."""
        if self._shared is not None:
            return self._shared
        pid, db = getattr(self._local, "handle", (None, None))
        if db is None or pid != os.getpid():
            db = self._connect()
            self._local.handle = (os.getpid(), db)
        return db

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for one round trip; a session opened inside another (a method
        called by :meth:`commit`, a statement of a transaction) is part of the outer one."""
        with self._lock:
            depth = getattr(self._local, "depth", 0)
            if not depth:
                self.round_trips.add()
            self._local.depth = depth + 1
            try:
                yield self._connection()
            finally:
                self._local.depth = depth

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: hold the write lock from the first read to the commit. Inside a
        transaction already (a unit being committed) it is part of that one."""
        with self._session() as db:
            if db.in_transaction:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- units of work ------------------------------------------------------------------------------
    def unit(self) -> AbstractContextManager[Unit]:
        return unit_of(self)

    def commit(self, unit: Unit) -> None:
        """One ``BEGIN IMMEDIATE`` transaction running the unit's writes, each as its method does."""
        if not unit:
            return
        with self._transaction():
            for method, args in unit.writes:
                getattr(self, method)(*args)
            if unit.ledger is not None:
                unit.entry = self._outcome_change(*unit.ledger)

    def read(self, reads: Sequence[Read], *, lease: tuple[str, str, float] | None = None,
             watch: str | None = None, attempt: str | None = None) -> list[Any] | None:
        """The reads in one session (in a transaction with the lease, taken first, and the attempt
        mark). ``watch`` is not needed: the commit reads the ledger entry in its own transaction, no
        round trip more."""
        with self._transaction() if lease is not None or attempt is not None else self._session():
            if lease is not None and not self.lock_acquire(*lease):
                return None
            marked = [] if attempt is None else [self._mark_attempt(attempt)]
            return marked + [getattr(self, method)(*args) for method, args in reads]

    # -- statements ---------------------------------------------------------------------------------
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self._session() as db:
            return db.execute(sql, params).rowcount

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._session() as db:
            return db.execute(sql, params).fetchall()

    def _scalar(self, kind: type[T], sql: str, params: Sequence[Any]) -> T | None:
        """The first column of the first row as a ``kind``, or None without rows."""
        rows = self._query(sql, params)
        return msgspec.convert(rows[0][0], kind, strict=False) if rows else None

    def _count(self, table: str, where: str, params: Sequence[Any]) -> int:
        return self._scalar(int, f"SELECT count(*) FROM {table} WHERE {where}", params) or 0

    def _insert(self, table: str, record: msgspec.Struct, on_conflict: str = "") -> int:
        """Insert ``record`` one column per field, followed by an ``ON CONFLICT`` clause; the number
        of rows written (0 when the conflict clause skipped it)."""
        return self._insert_many(table, [record], on_conflict)

    def _insert_many(self, table: str, records: Sequence[msgspec.Struct], on_conflict: str = "") -> int:
        """Insert several records of one type in one transaction."""
        if not records:
            return 0
        columns = ", ".join(records[0].__struct_fields__)
        rows = [[encode_json(value) if isinstance(value, dict) else value
                 for value in msgspec.structs.astuple(record)] for record in records]
        placeholders = ", ".join("?" * len(rows[0]))
        with self._session() as db:
            return db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) {on_conflict}",
                                  rows).rowcount

    def _select(self, cls: type[R], table: str, where: str, params: Sequence[Any], then: str = "") -> list[R]:
        """Records of type ``cls`` from ``table``; ``then`` follows the ``WHERE`` (order, limit)."""
        columns = ", ".join(cls.__struct_fields__)
        rows = self._query(f"SELECT {columns} FROM {table} WHERE {where} {then}", params)
        return [_load(cls, row) for row in rows]

    def _select_one(self, cls: type[R], table: str, where: str, params: Sequence[Any]) -> R | None:
        found = self._select(cls, table, where, params, "LIMIT 1")
        return found[0] if found else None

    # -- inbox --------------------------------------------------------------------------------------
    def inbox_add(self, source: str, source_event_id: str, payload: dict[str, Any],
                  correlation_id: str, received_at: float,
                  inflight: tuple[str, dict[str, Any], float] | None = None,
                  received: AuditRecord | None = None) -> InboxStatus:
        entry = inbox_entry(source, source_event_id, payload, correlation_id, received_at,
                            enqueued=inflight is not None, received=received)
        with self._transaction():
            if self._insert("inbox", entry, "ON CONFLICT DO NOTHING"):
                if inflight is not None:
                    self.inflight_put(*inflight)
                if received is not None:
                    self.audit(received)
                return "new"  # the primary key lets exactly one of concurrent inserts through
        # The entry exists and can only have moved on to enqueued, so reading it now is a fair answer.
        enqueued = self._scalar(bool, "SELECT enqueued FROM inbox WHERE source = ? AND source_event_id = ?",
                                (source, source_event_id))
        return "duplicate" if enqueued else "pending"

    def inbox_mark_enqueued(self, source: str, source_event_id: str) -> None:
        self._execute("UPDATE inbox SET enqueued = 1 WHERE source = ? AND source_event_id = ?",
                      (source, source_event_id))

    def inbox_mark_pending(self, source: str, source_event_id: str) -> None:
        self._execute("UPDATE inbox SET enqueued = 0 WHERE source = ? AND source_event_id = ?",
                      (source, source_event_id))

    def inbox_get(self, source: str, source_event_id: str) -> InboxEntry | None:
        return self._select_one(InboxEntry, "inbox", "source = ? AND source_event_id = ?",
                                (source, source_event_id))

    # -- event log ----------------------------------------------------------------------------------
    def log_event(self, event: LoggedEvent) -> None:
        self._insert("events", event, "ON CONFLICT DO NOTHING")

    def get_event(self, event_id: str) -> LoggedEvent | None:
        return self._select_one(LoggedEvent, "events", "id = ?", (event_id,))

    def events(self, *, source: str | None = None, type: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1000) -> list[LoggedEvent]:
        where, params = _where(("source = ?", source), ("type = ?", type),
                               ("occurred_at >= ?", since), ("occurred_at <= ?", until))
        return self._select(LoggedEvent, "events", where, [*params, limit],
                            "ORDER BY occurred_at, id LIMIT ?")

    # -- golden records -----------------------------------------------------------------------------
    def golden_get(self, canonical_id: str) -> Golden | None:
        return self._select_one(Golden, "golden", "canonical_id = ?", (canonical_id,))

    def golden_put(self, record: Golden) -> bool:
        """The record and its name and email terms, in one transaction (a unit's, when committing one)."""
        overwrite = _overwrite(Golden, "canonical_id")
        with self._transaction() as db:
            if not self._insert("golden", record, f"{overwrite} WHERE excluded.version >= golden.version"):
                return False
            _index_terms(db, record.canonical_id, record.data)
            return True

    def golden_for_customer(self, customer_id: str, *, entity_type: str | None = None,
                            limit: int = 500, offset: int = 0) -> list[Golden]:
        where, params = _where(("json_extract(CAST(data AS TEXT), '$.customer_id') = ?", customer_id),
                               ("entity_type = ?", entity_type))
        return self._select(Golden, "golden", where, [*params, limit, offset],
                            "ORDER BY canonical_id LIMIT ? OFFSET ?")

    def golden_named(self, query: str, *, limit: int = 100) -> list[str]:
        """One query: per word, the records with a term in ``[word, word + U+10FFFF)`` (an index
        range on the primary key), intersected."""
        words = query_words(query)
        if not words:
            return []
        ranges = " INTERSECT ".join(["SELECT canonical_id FROM golden_terms WHERE term >= ? AND term < ?"] * len(words))
        params = [bound for word in words for bound in (word, word + "\U0010ffff")]
        rows = self._query(f"SELECT DISTINCT canonical_id FROM ({ranges}) ORDER BY canonical_id LIMIT ?",
                           [*params, limit])
        return [row[0] for row in rows]

    # -- batch reads --------------------------------------------------------------------------------
    def records_get(self, canonical_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """One session (one round trip): per kind, one query with ``IN`` (a query per
        :data:`IN_CHUNK` ids); the latest journey run by a window over the subject's runs."""
        ids = list(dict.fromkeys(canonical_ids))
        if not ids:
            return {}
        golden: dict[str, Golden] = {}
        xrefs: dict[str, dict[str, str]] = {}
        audit: dict[str, list[AuditRecord]] = {}
        journeys: dict[str, JourneyRecord] = {}
        with self._session():
            for chunk, marks in _chunks(ids):
                golden.update((g.canonical_id, g) for g in self._select(
                    Golden, "golden", f"canonical_id IN ({marks})", chunk))
                for canonical_id, system, external_id in self._query(
                        f"SELECT canonical_id, system, external_id FROM xrefs WHERE canonical_id IN ({marks})", chunk):
                    xrefs.setdefault(canonical_id, {})[system] = external_id
                for record in self._select(AuditRecord, "audit", f"subject IN ({marks})", chunk, "ORDER BY at, seq"):
                    audit.setdefault(str(record.subject), []).append(record)
                columns = ", ".join(JourneyRecord.__struct_fields__)
                latest = self._query(
                    f"SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY subject "
                    f"ORDER BY started_at DESC, id DESC) AS n FROM journeys WHERE subject IN ({marks})) WHERE n = 1",
                    chunk)
                journeys.update((run.subject, run) for run in (_load(JourneyRecord, row) for row in latest))
        return {canonical_id: StoredRecord(canonical_id=canonical_id, golden=golden.get(canonical_id),
                                           xrefs=xrefs.get(canonical_id, {}), audit=audit.get(canonical_id, []),
                                           journey=journeys.get(canonical_id))
                for canonical_id in ids}

    def outcomes_get(self, correlation_ids: Sequence[str]) -> dict[str, OutcomeRecord]:
        found: dict[str, OutcomeRecord] = {}
        with self._session() if correlation_ids else nullcontext():
            for chunk, marks in _chunks(list(dict.fromkeys(correlation_ids))):
                for (raw,) in self._query(f"SELECT record FROM outcomes WHERE correlation_id IN ({marks})", chunk):
                    record = decoder(OutcomeRecord).decode(raw)
                    found[record.correlation_id] = record
        return found

    def events_get(self, event_ids: Sequence[str]) -> dict[str, LoggedEvent]:
        found: dict[str, LoggedEvent] = {}
        with self._session() if event_ids else nullcontext():
            for chunk, marks in _chunks(list(dict.fromkeys(event_ids))):
                events = self._select(LoggedEvent, "events", f"id IN ({marks})", chunk)
                found.update((event.id, event) for event in events)
        return found

    # -- cross-references ---------------------------------------------------------------------------
    def xref_put(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        # REPLACE deletes every row in the way of either unique key: the record's old link in this
        # system and another record's link to this external id.
        self._execute("INSERT OR REPLACE INTO xrefs (canonical_id, system, entity_type, external_id) "
                      "VALUES (?, ?, ?, ?)", (canonical_id, system, entity_type, external_id))

    def xref_get(self, canonical_id: str, system: str) -> str | None:
        return self._scalar(str, "SELECT external_id FROM xrefs WHERE canonical_id = ? AND system = ?",
                            (canonical_id, system))

    def xref_find(self, entity_type: str, system: str, external_id: str) -> str | None:
        return self._scalar(
            str, "SELECT canonical_id FROM xrefs WHERE entity_type = ? AND system = ? AND external_id = ?",
            (entity_type, system, external_id))

    def xrefs(self, canonical_id: str) -> dict[str, str]:
        rows = self._query("SELECT system, external_id FROM xrefs WHERE canonical_id = ?", (canonical_id,))
        return dict(rows)

    # -- applied versions ---------------------------------------------------------------------------
    def applied_version(self, target: str, canonical_id: str) -> int | None:
        return self._scalar(int, "SELECT version FROM applied_versions WHERE target = ? AND canonical_id = ?",
                            (target, canonical_id))

    def set_applied_version(self, target: str, canonical_id: str, version: int) -> None:
        self._execute("INSERT INTO applied_versions (target, canonical_id, version) VALUES (?, ?, ?) "
                      "ON CONFLICT (target, canonical_id) "
                      "DO UPDATE SET version = max(version, excluded.version)",
                      (target, canonical_id, version))

    # -- delivery states ----------------------------------------------------------------------------
    def delivery_get(self, key: str) -> Delivery | None:
        return self._select_one(Delivery, "deliveries", "key = ?", (key,))

    def delivery_set(self, key: str, status: DeliveryStatus, external_id: str | None = None,
                     generation: int = 0) -> None:
        delivery = Delivery(key=key, status=status, external_id=external_id, updated_at=time.time(),
                            generation=generation)
        self._insert("deliveries", delivery, _overwrite(Delivery, "key"))

    def _mark_attempt(self, key: str) -> Delivery | None:
        """The attempt mark ``key`` made ``sent`` (within :meth:`read`'s transaction); what it was."""
        before = self.delivery_get(key)
        self.delivery_set(key, "sent")
        return before

    # -- dead letters -------------------------------------------------------------------------------
    def dlq_add(self, letter: DeadLetter) -> None:
        self._insert("dead_letters", letter, _overwrite(DeadLetter, "id"))

    def dlq_get(self, letter_id: str) -> DeadLetter | None:
        return self._select_one(DeadLetter, "dead_letters", "id = ?", (letter_id,))

    def dlq_list(self, *, state: DeadLetterState | None = "open", category: str | None = None,
                 target: str | None = None, limit: int = 100, oldest_first: bool = False) -> list[DeadLetter]:
        where, params = _where(("state = ?", state), ("category = ?", category), ("target = ?", target))
        order = "ASC" if oldest_first else "DESC"
        return self._select(DeadLetter, "dead_letters", where, [*params, limit],
                            f"ORDER BY created_at {order}, id {order} LIMIT ?")

    def dlq_set_state(self, letter_id: str, state: DeadLetterState) -> bool:
        return bool(self._execute("UPDATE dead_letters SET state = ? WHERE id = ? AND state = 'open'",
                                  (state, letter_id)))

    def dlq_count(self, state: DeadLetterState = "open") -> int:
        return self._count("dead_letters", "state = ?", (state,))

    # -- audit timeline -----------------------------------------------------------------------------
    def audit(self, *records: AuditRecord) -> None:
        self._insert_many("audit", records)

    def audit_trail(self, correlation_id: str) -> list[AuditRecord]:
        return self._select(AuditRecord, "audit", "correlation_id = ?", (correlation_id,), "ORDER BY at, seq")

    def audit_for_subject(self, subject: str) -> list[AuditRecord]:
        return self._select(AuditRecord, "audit", "subject = ?", (subject,), "ORDER BY at, seq")

    # -- circuit breakers ---------------------------------------------------------------------------
    def circuit_get(self, target: str) -> Circuit:
        found = self._select_one(Circuit, "circuits", "target = ?", (target,))
        return found or Circuit(target=target, status="closed", failures=0, opened_at=None)

    def circuit_failure(self, target: str, threshold: int, now: float) -> Circuit:
        with self._transaction() as db:
            db.execute("INSERT INTO circuits (target, status, failures) VALUES (?, 'closed', 0) "
                       "ON CONFLICT DO NOTHING", (target,))
            db.execute("""
                UPDATE circuits SET failures = failures + 1,
                    status = CASE WHEN failures + 1 >= :threshold THEN 'open' ELSE status END,
                    opened_at = CASE WHEN status = 'closed' AND failures + 1 >= :threshold
                                     THEN :now ELSE opened_at END
                WHERE target = :target""", {"target": target, "threshold": threshold, "now": now})
            return self.circuit_get(target)

    def circuit_close(self, target: str) -> None:
        self._execute("DELETE FROM circuits WHERE target = ?", (target,))

    def circuit_reopen(self, target: str, now: float) -> None:
        self._execute("INSERT INTO circuits (target, status, failures, opened_at) VALUES (?, 'open', 0, ?) "
                      "ON CONFLICT (target) DO UPDATE SET status = 'open', opened_at = excluded.opened_at",
                      (target, now))

    # -- parked work --------------------------------------------------------------------------------
    def park(self, target: str, message: dict[str, Any]) -> None:
        self._execute("INSERT INTO parked (target, message) VALUES (?, ?)",
                      (target, encode_json(message)))

    def parked(self, target: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self._query("SELECT seq, message FROM parked WHERE target = ? ORDER BY seq LIMIT ?", (target, limit))
        return [(str(seq), decode_json(message)) for seq, message in rows]

    def unpark(self, target: str, ids: list[str]) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        return self._execute(f"DELETE FROM parked WHERE target = ? AND seq IN ({marks})", (target, *map(int, ids)))

    def parked_count(self, target: str) -> int:
        return self._count("parked", "target = ?", (target,))

    # -- leases -------------------------------------------------------------------------------------
    def lock_acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        return self._execute(
            "INSERT INTO locks (key, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "owner = excluded.owner, expires_at = excluded.expires_at WHERE locks.expires_at < ?",
            (key, owner, now + ttl_s, now)) == 1

    def lock_renew(self, key: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        return self._execute("UPDATE locks SET expires_at = ? WHERE key = ? AND owner = ? AND expires_at >= ?",
                             (now + ttl_s, key, owner, now)) == 1

    def lock_release(self, key: str, owner: str) -> None:
        self._execute("DELETE FROM locks WHERE key = ? AND owner = ?", (key, owner))

    # -- journeys -----------------------------------------------------------------------------------
    def journey_start(self, record: JourneyRecord) -> bool:
        return bool(self._insert("journeys", record, "ON CONFLICT DO NOTHING"))

    def journey_put(self, record: JourneyRecord) -> None:
        self._insert("journeys", record, _overwrite(JourneyRecord, "id"))

    def journey_get(self, journey_id: str) -> JourneyRecord | None:
        return self._select_one(JourneyRecord, "journeys", "id = ?", (journey_id,))

    def journeys(self, *, name: str | None = None, state: JourneyState | None = None, subject: str | None = None,
                 limit: int = 100) -> list[JourneyRecord]:
        where, params = _where(("name = ?", name), ("state = ?", state), ("subject = ?", subject))
        return self._select(JourneyRecord, "journeys", where, [*params, limit],
                            "ORDER BY started_at DESC, id DESC LIMIT ?")

    # -- poll cursors -------------------------------------------------------------------------------
    def cursor_get(self, name: str) -> str | None:
        return self._scalar(str, "SELECT value FROM cursors WHERE name = ?", (name,))

    def cursor_set(self, name: str, value: str) -> None:
        self._execute("INSERT INTO cursors (name, value) VALUES (?, ?) "
                      "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))

    # -- lifecycle ----------------------------------------------------------------------------------
    def ping(self) -> None:
        self._query("SELECT 1")

    def reset(self) -> None:
        with self._transaction() as db:
            tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite%'").fetchall()
            for (table,) in tables:
                db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        """Close every connection this process opened, whichever thread opened it."""
        with self._opened_lock:
            mine = [db for pid, db in self._opened if pid == os.getpid()]
            self._opened.clear()
        for db in mine:
            db.close()

    # -- the outcome ledger -------------------------------------------------------------------------
    def _outcome_write(self, db: sqlite3.Connection, record: OutcomeRecord) -> None:
        db.execute("INSERT INTO outcomes (correlation_id, source, outcome, received_at, concluded_at, record) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (correlation_id) DO UPDATE SET source = excluded.source, "
                   "outcome = excluded.outcome, received_at = excluded.received_at, "
                   "concluded_at = excluded.concluded_at, record = excluded.record",
                   (record.correlation_id, record.source, record.outcome, record.received_at,
                    None if record.outcome == "pending" else record.updated_at, encode_json(record)))

    @staticmethod
    def _outcome_read(db: sqlite3.Connection, correlation_id: str) -> OutcomeRecord | None:
        row = db.execute("SELECT record FROM outcomes WHERE correlation_id = ?", (correlation_id,)).fetchone()
        return None if row is None else decoder(OutcomeRecord).decode(row[0])

    def _outcome_change(self, correlation_id: str, change: OutcomeChange) -> OutcomeRecord | None:
        with self._transaction() as db:
            changed = change(self._outcome_read(db, correlation_id))
            if changed is not None:
                self._outcome_write(db, changed)
            return changed

    def outcome_open(self, record: OutcomeRecord) -> bool:
        return self._outcome_change(record.correlation_id, opening(record)) is not None

    def outcome_settle(self, correlation_id: str, token: str, part: OutcomePart | None,
                       follow_ons: list[str] | None = None, *, amend: bool = False) -> OutcomeRecord | None:
        return self._outcome_change(correlation_id, settling(token, part, follow_ons, amend=amend))

    def outcome_get(self, correlation_id: str) -> OutcomeRecord | None:
        with self._session() as db:
            return self._outcome_read(db, correlation_id)

    def outcomes(self, *, outcome: LedgerState | None = None, source: str | None = None,
                 limit: int = 100) -> list[OutcomeRecord]:
        where, params = _where(("outcome = ?", outcome), ("source = ?", source))
        rows = self._query(f"SELECT record FROM outcomes WHERE {where} "
                           "ORDER BY received_at DESC, correlation_id DESC LIMIT ?", [*params, limit])
        return [decoder(OutcomeRecord).decode(raw) for (raw,) in rows]

    def outcome_counts(self) -> dict[tuple[LedgerState, str], int]:
        rows = self._query("SELECT outcome, source, count(*) FROM outcomes GROUP BY outcome, source")
        return {(outcome, source): count for outcome, source, count in rows}

    def concluded_by_hour(self, since: float) -> dict[tuple[int, LedgerState], int]:
        rows = self._query("SELECT CAST(concluded_at / 3600 AS INTEGER) * 3600, outcome, count(*) FROM outcomes "
                           "WHERE concluded_at >= ? GROUP BY 1, 2", (hour_of(since),))
        return {(int(hour), outcome): count for hour, outcome, count in rows}

    # -- discarding dead letters --------------------------------------------------------------------
    def dlq_discard(self, letter_id: str, reason: str, at: float) -> bool:
        return bool(self._execute("UPDATE dead_letters SET state = 'discarded', discarded_at = ?, discard_reason = ? "
                                  "WHERE id = ? AND state = 'open'", (at, reason, letter_id)))

    # -- messages in flight -------------------------------------------------------------------------
    def inflight_put(self, message_id: str, message: dict[str, Any], due_at: float) -> None:
        self._execute("INSERT INTO inflight (message_id, due_at, message) VALUES (?, ?, ?) ON CONFLICT (message_id) "
                      "DO UPDATE SET due_at = excluded.due_at, message = excluded.message",
                      (message_id, due_at, encode_json(message)))

    def inflight_settle(self, message_id: str) -> None:
        self._execute("DELETE FROM inflight WHERE message_id = ?", (message_id,))

    def inflight_overdue(self, before: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self._query("SELECT message_id, message FROM inflight WHERE due_at < ? ORDER BY due_at LIMIT ?",
                           (before, limit))
        return [(message_id, decode_json(message)) for message_id, message in rows]

    def inflight_count(self) -> int:
        return self._count("inflight", "1", ())

    # -- reconciliation -----------------------------------------------------------------------------
    def reconciliation_put(self, run: ReconciliationRun, findings: list[FindingRecord] | None = None) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO reconciliations (id, started_at, record) VALUES (?, ?, ?) ON CONFLICT (id) "
                       "DO UPDATE SET record = excluded.record", (run.id, run.started_at, msgspec.json.encode(run)))
            if findings is not None:
                db.execute("DELETE FROM findings WHERE run_id = ?", (run.id,))
                rows = [(run.id, seq, f.id, f.cls, f.system, msgspec.json.encode(f)) for seq, f in enumerate(findings)]
                db.executemany("INSERT INTO findings (run_id, seq, id, class, system, record) "
                               "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def reconciliation_get(self, run_id: str) -> ReconciliationRun | None:
        rows = self._query("SELECT record FROM reconciliations WHERE id = ?", (run_id,))
        return msgspec.json.decode(rows[0][0], type=ReconciliationRun) if rows else None

    def reconciliations(self, *, limit: int = 20) -> list[ReconciliationRun]:
        rows = self._query("SELECT record FROM reconciliations ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))
        return [msgspec.json.decode(raw, type=ReconciliationRun) for (raw,) in rows]

    def reconciliation_latest_done(self, *, full: bool = False) -> ReconciliationRun | None:
        full_only = " AND json_extract(CAST(record AS TEXT), '$.since') IS NULL" if full else ""
        rows = self._query("SELECT record FROM reconciliations WHERE json_extract(CAST(record AS TEXT), '$.state') = "
                           f"'done'{full_only} ORDER BY started_at DESC, id DESC LIMIT 1")
        return msgspec.json.decode(rows[0][0], type=ReconciliationRun) if rows else None

    def reconciliation_findings(self, run_id: str, *, cls: FindingClass | None = None,
                                system: str | None = None) -> list[FindingRecord]:
        where, params = _where(("run_id = ?", run_id), ("class = ?", cls), ("system = ?", system))
        rows = self._query(f"SELECT record FROM findings WHERE {where} ORDER BY seq", params)
        return [msgspec.json.decode(raw, type=FindingRecord) for (raw,) in rows]

    # What reconciliation read of a system: one row per record, a generation's rows by id.
    def listing_put(self, generation: str, items: Sequence[tuple[str, bytes | None]]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM listings WHERE generation = ? AND id = ?",
                           [(generation, record_id) for record_id, packed in items if packed is None])
            db.executemany("INSERT INTO listings (generation, id, record) VALUES (?, ?, ?) ON CONFLICT "
                           "(generation, id) DO UPDATE SET record = excluded.record",
                           [(generation, record_id, packed) for record_id, packed in items if packed is not None])

    def listing_scan(self, generation: str) -> Iterator[bytes]:
        after = ""
        while True:
            rows = self._query("SELECT id, record FROM listings WHERE generation = ? AND id > ? ORDER BY id LIMIT ?",
                               (generation, after, LISTING_BATCH))
            yield from (bytes(record) for _, record in rows)
            if len(rows) < LISTING_BATCH:
                return
            after = rows[-1][0]

    def listing_drop(self, generation: str) -> None:
        self._execute("DELETE FROM listings WHERE generation = ?", (generation,))

    # -- the operator console -----------------------------------------------------------------------
    # Records as JSON in one column, beside the columns they are looked up or ordered by.
    def user_put(self, user: UserRecord) -> None:
        self._execute("INSERT INTO users (name, record) VALUES (?, ?) "
                      "ON CONFLICT (name) DO UPDATE SET record = excluded.record", (user.name, encode_json(user)))

    def user_get(self, name: str) -> UserRecord | None:
        rows = self._query("SELECT record FROM users WHERE name = ?", (name,))
        return decoder(UserRecord).decode(rows[0][0]) if rows else None

    def user_new_epoch(self, name: str, epoch: str) -> bool:
        with self._transaction() as db:
            rows = db.execute("SELECT record FROM users WHERE name = ?", (name,)).fetchall()
            if not rows:
                return False
            user = msgspec.structs.replace(decoder(UserRecord).decode(rows[0][0]), session_epoch=epoch)
            db.execute("UPDATE users SET record = ? WHERE name = ?", (encode_json(user), name))
            return True

    def users(self) -> list[UserRecord]:
        return [decoder(UserRecord).decode(raw) for (raw,) in self._query("SELECT record FROM users ORDER BY name")]

    def triage_put(self, record: TriageRecord) -> None:
        self._execute("INSERT INTO triage (id, updated_at, record) VALUES (?, ?, ?) ON CONFLICT (id) "
                      "DO UPDATE SET updated_at = excluded.updated_at, record = excluded.record",
                      (record.id, record.updated_at, encode_json(record)))

    def triage_get(self, item_id: str) -> TriageRecord | None:
        rows = self._query("SELECT record FROM triage WHERE id = ?", (item_id,))
        return decoder(TriageRecord).decode(rows[0][0]) if rows else None

    def triages(self) -> list[TriageRecord]:
        rows = self._query("SELECT record FROM triage ORDER BY updated_at DESC, id")
        return [decoder(TriageRecord).decode(raw) for (raw,) in rows]

    def action_add(self, record: ActionRecord) -> None:
        self._execute("INSERT INTO actions (item, record) VALUES (?, ?)", (record.item, encode_json(record)))

    def actions(self, *, item: str | None = None, limit: int = 100) -> list[ActionRecord]:
        where, params = _where(("item = ?", item))
        rows = self._query(f"SELECT record FROM actions WHERE {where} ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [decoder(ActionRecord).decode(raw) for (raw,) in rows]

    def secret(self, name: str, candidate: str) -> str:
        with self._transaction() as db:
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, candidate))
            return str(db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])


def _add_columns(db: sqlite3.Connection) -> None:
    """Bring a file made by an older release up to :data:`_ADDED_COLUMNS` (and what depends on
    them: :data:`_AFTER_COLUMNS`)."""
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    for statement in _AFTER_COLUMNS:
        db.execute(statement)


def _add_terms(db: sqlite3.Connection) -> None:
    """Make the name and email index if the file has none (a new file, or one of an earlier
    release), and fill it from the golden records there are: the migration step of
    :meth:`SQLiteStore.golden_named`. In a transaction: two processes opening the file at once make
    it once (the second finds it made)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'golden_terms'").fetchone():
            for statement in _TERMS:
                db.execute(statement)
            for canonical_id, data in db.execute("SELECT canonical_id, data FROM golden").fetchall():
                _index_terms(db, canonical_id, decode_json(data))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _index_terms(db: sqlite3.Connection, canonical_id: str, data: dict[str, Any]) -> None:
    """Replace the record's terms in the name and email index (none left for a record without a name
    or email, or whose name was erased)."""
    db.execute("DELETE FROM golden_terms WHERE canonical_id = ?", (canonical_id,))
    db.executemany("INSERT OR IGNORE INTO golden_terms (term, canonical_id) VALUES (?, ?)",
                   [(term, canonical_id) for term in search_terms(data)])


def _chunks(values: list[str]) -> Iterator[tuple[list[str], str]]:
    """``values`` a :data:`IN_CHUNK` at a time, each with its ``?, ?, ...`` placeholders."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start:start + IN_CHUNK]
        yield chunk, ", ".join("?" * len(chunk))


def _load(cls: type[R], row: Sequence[Any]) -> R:
    """The Struct a row selected by :meth:`SQLiteStore._select` holds (BLOBs are JSON fields)."""
    fields = {name: decode_json(value) if isinstance(value, bytes) else value
              for name, value in zip(cls.__struct_fields__, row, strict=True)}
    return msgspec.convert(fields, cls, strict=False)  # strict=False: SQLite's 0/1 become bools


def _overwrite(cls: type[msgspec.Struct], key: str) -> str:
    """An ``ON CONFLICT`` clause that overwrites every other column of the row with this ``key``."""
    columns = ", ".join(f"{field} = excluded.{field}" for field in cls.__struct_fields__ if field != key)
    return f"ON CONFLICT ({key}) DO UPDATE SET {columns}"


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """``AND`` the conditions whose parameter is given (not None): the clause and its parameters."""
    given = [(sql, param) for sql, param in conditions if param is not None]
    return " AND ".join(sql for sql, _ in given) or "1", [param for _, param in given]
