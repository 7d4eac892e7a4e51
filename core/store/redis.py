"""The Redis store: shared by workers scaled out over many hosts.

Every key starts with ``<namespace>:``, so several hubs (or test runs) can share one Redis database
and :meth:`RedisStore.reset` deletes only its own keys. Records are msgspec JSON, written once;
what changes about a record afterwards lives beside it, in an index Redis can update atomically:
an inbox entry is not yet enqueued while it sits in ``inbox:pending``, a dead letter's state is its
field in ``dlq:state``. Journey runs are the exception: the runtime rewrites a run whole at each
step, and one script stores it and moves it between its indexes.

Atomic methods are a single command (``LPOP`` with a count), a ``MULTI`` transaction, or a Lua
script: Redis runs a script to its end before it serves any other client.

The keys, after ``<namespace>:``::

    inbox                       hash   ["source","source event id"] -> InboxEntry
    inbox:pending               zset   entries never marked enqueued, by received_at
    events                      hash   event id -> LoggedEvent
    events:by-time              zset   event ids by occurred_at
    golden / golden:version     hash   canonical id -> Golden / its version
    golden:customer:<cust. id>  set    canonical ids of the golden records that named that customer
    golden:terms                zset   "<term> <canonical id>", all scored 0: the name and email index
    golden:terms:of             hash   canonical id -> the JSON list of its terms in golden:terms
    golden:indexed              string set once every golden record written before these indexes
                                       existed is in them (:meth:`RedisStore._golden_indexed`)
    xref:<canonical id>         hash   system -> link, the JSON ["entity type","system","external id"]
    xref-find                   hash   link -> canonical id
    applied                     hash   ["target","canonical id"] -> version
    deliveries                  hash   key -> Delivery
    dlq / dlq:state             hash   letter id -> DeadLetter / its current state
    dlq:all / dlq:<state>       zset   letter ids by created_at: every letter / those in that state
    audit:trail:<corr. id>      list   AuditRecord, in the order appended
    audit:subject:<subject>     list   AuditRecord, in the order appended
    circuit:<target>            hash   failures, opened_at (the circuit is open when opened_at is set)
    parked:<target>             list   messages, oldest first
    lock:<key>                  string the lease holder, expiring with the lease
    journeys                    hash   journey id -> JourneyRecord
    journeys:by-start           zset   journey ids by started_at
    journeys:name:<name>        zset   journey ids by started_at, of the runs with that name
    journeys:state:<state>      zset   journey ids by started_at, of the runs in that state
    journeys:subject:<subject>  zset   journey ids by started_at, of the runs about that subject
    cursors                     hash   name -> value
    outcome:<corr. id>          string OutcomeRecord (its own key, so one message's update watches only it)
    outcomes:by-time            zset   correlation ids by received_at
    outcomes:count              hash   ["state","source"] -> how many entries are in that state
    outcomes:concluded:<state>  zset   correlation ids of the entries concluded in that state, by when
"""

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from operator import attrgetter
from typing import Any, Literal, TypeVar, cast, get_args

import msgspec
import redis
from crossledger.core.store.base import (
    KEPT_ON_OPEN,
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
    concluded,
    decode_json,
    decoder,
    encode_json,
    hour_of,
    inbox_entry,
    query_words,
    search_terms,
    settling,
    unit_of,
)

R = TypeVar("R", bound=msgspec.Struct)
T = TypeVar("T")

DEFAULT_NAMESPACE = "crossledger"

_NAMESPACE = re.compile(r"[\w.-]+")  # no ':' (a prefix of another namespace) nor glob characters (SCAN MATCH)

_INBOX_ADD = """
-- KEYS: entries, pending, in-flight messages, in flight, audit trail. ARGV: field, entry, received_at,
-- message id, message, due at, audit record ('' for none: no message in flight, no record)
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
    if ARGV[4] ~= '' then
        redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
        redis.call('ZADD', KEYS[4], ARGV[6], ARGV[4])
    else
        redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
    end
    if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[5], ARGV[7]) end
    return 'new'
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 'pending' end
return 'duplicate'
"""

_PUT_UNLESS_STALE = """
-- KEYS: versions. ARGV: field, version (golden records have their own script: _GOLDEN_PUT)
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

_INDEX_TERMS = """
-- KEYS[3]: golden:terms, KEYS[4]: golden:terms:of. ARGV[1]: canonical id, ARGV[4]: its terms (JSON)
local function index_terms()
    local old = redis.call('HGET', KEYS[4], ARGV[1])
    if old then
        for _, term in ipairs(cjson.decode(old)) do redis.call('ZREM', KEYS[3], term .. ' ' .. ARGV[1]) end
    end
    local terms = cjson.decode(ARGV[4])
    for _, term in ipairs(terms) do redis.call('ZADD', KEYS[3], 0, term .. ' ' .. ARGV[1]) end
    if #terms > 0 then redis.call('HSET', KEYS[4], ARGV[1], ARGV[4]) else redis.call('HDEL', KEYS[4], ARGV[1]) end
end
"""

_GOLDEN_PUT = _INDEX_TERMS + """
-- KEYS: versions, values, terms, terms of[, the customer's set]. ARGV: canonical id, version, record, terms
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if KEYS[5] then redis.call('SADD', KEYS[5], ARGV[1]) end
index_terms()
return 1
"""

_GOLDEN_INDEX = _INDEX_TERMS + """
-- KEYS: versions, (unused), terms, terms of[, the customer's set]. ARGV: canonical id, version, (unused), terms
-- Indexes a record written before the indexes existed, unless it was written again since (a newer
-- version indexed itself).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if KEYS[5] then redis.call('SADD', KEYS[5], ARGV[1]) end
index_terms()
return 1
"""

_LATEST_JOURNEY = """
-- KEYS: journeys:subject:<subject>, journeys. The most recently started run about the subject.
local id = redis.call('ZREVRANGE', KEYS[1], 0, 0)[1]
if id then return redis.call('HGET', KEYS[2], id) end
return false
"""

INDEX_PAGE = 500
"""How many golden records :meth:`RedisStore._golden_indexed` reads and indexes per round trip."""
RUNS_BATCH = 100
"""Reconciliation runs read a round trip while looking for the latest finished one."""

_XREF_PUT = """
-- KEYS: the record's links, xref-find. ARGV: system, link, canonical id, key prefix of links.
-- Touches the previous holder's links by a computed key: fine on one Redis, not on a cluster.
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous then redis.call('HDEL', KEYS[2], previous) end
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder then redis.call('HDEL', ARGV[4] .. holder, ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""

_DLQ_SET_STATE = """
-- KEYS: dlq:state, dlq:open, dlq:<new state>. ARGV: letter id, new state
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'open' then return 0 end
local created_at = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], created_at, ARGV[1])
return 1
"""

_DLQ_DISCARD = """
-- KEYS: dlq, dlq:state, dlq:open, dlq:discarded. ARGV: letter id, the letter as discarded (JSON)
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 'open' then return 0 end
local created_at = redis.call('ZSCORE', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], 'discarded')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], created_at, ARGV[1])
return 1
"""

_LOCK_RELEASE = """
-- KEYS: lock:<key>. ARGV: owner
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_LOCK_RENEW = """
-- KEYS: lock:<key>. ARGV: owner, ttl in ms
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_JOURNEY_WRITE = """
-- KEYS: journeys, journeys:by-start, then the run's index for each indexed field.
-- ARGV: journey id, record, started_at, 'start' (only if new) or 'put', key prefix of the indexes,
-- then the indexed fields' names, in the order of their KEYS.
-- Leaves the previous indexes by computed keys: fine on one Redis, not on a cluster.
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous then
    if ARGV[4] == 'start' then return 0 end
    local was = cjson.decode(previous)
    for i = 6, #ARGV do redis.call('ZREM', ARGV[5] .. ARGV[i] .. ':' .. was[ARGV[i]], ARGV[1]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1]) end
return 1
"""

#: The journey fields with an index of their own (``journeys:<field>:<value>``), the most selective
#: first: :meth:`RedisStore.journeys` walks the first one a query filters on.
_JOURNEY_INDEXED = ("subject", "state", "name")

_MARK_ATTEMPT = """
-- KEYS: deliveries[, lock:<key>]. ARGV: the attempt mark's key, the mark as sent (JSON)[, lease owner,
-- lease ttl in ms]. With a lock, the lease is taken first, and nothing is done while someone else
-- holds it (nil). Else the mark is 'sent'; {the mark before} (nil inside: never attempted).
if KEYS[2] and not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return false end
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {before}
"""

_OUTCOME_OPEN = """
-- KEYS: outcome:<corr. id>, outcomes:by-time, outcomes:count. ARGV: corr. id, the entry (JSON),
-- received_at, the entry's count field, the states whose entry stays (joined by ' '), the key prefix
-- of the concluded sets, the entry's outcome and when it concluded ('' while pending), then each
-- state an entry may have and its count field for this entry's source.
-- The entry is stored unless an existing one stays (base.replaces: a pending one stays when this
-- entry sends nothing, ARGV[7] not 'pending'); whether it was. The concluded sets are named by
-- computed keys: fine on one Redis, not on a cluster.
local before = redis.call('GET', KEYS[1])
if before then
    local was = cjson.decode(before)['outcome']
    if string.find(' ' .. ARGV[5] .. ' ', ' ' .. was .. ' ', 1, true) then return 0 end
    if was == 'pending' and ARGV[7] ~= 'pending' then return 0 end
    for i = 9, #ARGV, 2 do
        if ARGV[i] == was then redis.call('HINCRBY', KEYS[3], ARGV[i + 1], -1) end
    end
    redis.call('ZREM', ARGV[6] .. was, ARGV[1])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
if ARGV[8] ~= '' then redis.call('ZADD', ARGV[6] .. ARGV[7], ARGV[8], ARGV[1]) end
return 1
"""

_PARK = """
-- KEYS: parked:<target>:seq, parked:<target>:msgs, parked:<target>. ARGV: the message (JSON)
-- The next number in the target's line, and the message under it: together, in one step.
local parked_id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], parked_id, ARGV[1])
redis.call('ZADD', KEYS[3], parked_id, parked_id)
"""

_CIRCUIT_FAILURE = """
-- KEYS: circuit:<target>. ARGV: threshold, now
if redis.call('HINCRBY', KEYS[1], 'failures', 1) >= tonumber(ARGV[1]) then
    redis.call('HSETNX', KEYS[1], 'opened_at', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'failures', 'opened_at')
"""


class RedisStore:
    """The :class:`~crossledger.core.store.base.Store` in Redis, under ``namespace``.

    One client, whose connection pool serves every thread; ``url`` is as for
    :meth:`redis.Redis.from_url`.
    """

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"Redis store namespace {namespace!r}: use letters, digits, '_', '.' and '-'")
        self.namespace = namespace
        self.round_trips = RoundTrips("redis")
        self._redis = redis.Redis.from_url(url)
        pool = self._redis.connection_pool
        pool.connection_class = _counting(pool.connection_class, self.round_trips)
        self._local = threading.local()
        self._inbox_add = self._redis.register_script(_INBOX_ADD)
        self._put_unless_stale = self._redis.register_script(_PUT_UNLESS_STALE)
        self._xref_put = self._redis.register_script(_XREF_PUT)
        self._golden_put = self._redis.register_script(_GOLDEN_PUT)
        self._indexed = False
        self._dlq_set_state = self._redis.register_script(_DLQ_SET_STATE)
        self._dlq_discard = self._redis.register_script(_DLQ_DISCARD)
        self._circuit_failure = self._redis.register_script(_CIRCUIT_FAILURE)
        self._park = self._redis.register_script(_PARK)
        self._outcome_open = self._redis.register_script(_OUTCOME_OPEN)
        self._lock_release = self._redis.register_script(_LOCK_RELEASE)
        self._lock_renew = self._redis.register_script(_LOCK_RENEW)
        self._journey_write = self._redis.register_script(_JOURNEY_WRITE)

    # -- units of work ------------------------------------------------------------------------------
    def unit(self) -> AbstractContextManager[Unit]:
        return unit_of(self)

    def commit(self, unit: Unit) -> None:
        """One ``MULTI`` transaction holding every command of the unit's writes, each queued as its
        method would send it (:meth:`_pipe`, :meth:`_run`), and the ledger entry's change."""
        if unit.opening is not None:  # decided by a script, in the transaction
            entry = concluded(unit.opening, time.time())
            pipe = self._redis.pipeline()
            self._queue(pipe, unit)
            self._local.unit = pipe
            try:
                self._open(entry)
            finally:
                self._local.unit = None
            unit.entry = entry if pipe.execute()[-1] else None
        elif unit.ledger is not None:  # read the entry under WATCH first: one round trip more
            unit.entry = self._outcome_update(*unit.ledger, unit=unit)
        elif unit:
            pipe = self._redis.pipeline()
            self._queue(pipe, unit)
            pipe.execute()

    def _queue(self, pipe: "redis.client.Pipeline", unit: Unit) -> None:
        """Queue the commands of the unit's writes on ``pipe``."""
        self._local.unit = pipe
        try:
            for method, args in unit.writes:
                getattr(self, method)(*args)
        finally:
            self._local.unit = None

    @contextmanager
    def _pipe(self, *, transaction: bool = True) -> Iterator["redis.client.Pipeline"]:
        """A pipeline to queue one write's commands on: the unit's being committed, or one of its own
        sent when the block ends (a ``MULTI`` transaction with ``transaction``)."""
        committing: redis.client.Pipeline | None = getattr(self._local, "unit", None)
        if committing is not None:
            yield committing
            return
        pipe = self._redis.pipeline(transaction=transaction)
        yield pipe
        pipe.execute()

    def _run(self, script: "redis.commands.core.Script", keys: list[str], args: Sequence[Any]) -> Any:
        """Run ``script``, or queue it in the unit being committed. Queued, it goes as ``EVAL`` with
        its source: by digest, redis-py would first ask whether the server has it, a round trip more."""
        committing: redis.client.Pipeline | None = getattr(self._local, "unit", None)
        if committing is None:
            return script(keys=keys, args=args)
        committing.eval(cast(str, script.script), len(keys), *keys, *args)
        return None

    def read(self, reads: Sequence[Read], *, lease: tuple[str, str, float] | None = None,
             watch: str | None = None, attempt: str | None = None) -> list[Any] | None:
        """One pipeline (not a transaction): ``SET NX`` of the lease first (with ``attempt``, a script
        that takes the lease and marks the attempt), then each read's command; Redis runs a
        connection's commands in order, so the reads see the state under the lease. With ``watch``,
        the ledger entry is watched and read in that round trip too (:meth:`_watching_read`)."""
        pipe = self._redis.pipeline(transaction=False)
        if attempt is not None:
            self._mark_attempt(pipe, attempt, lease)
        elif lease is not None:
            self._lease(pipe, *lease)
        decoders: list[Callable[[Any], Any]] = []
        self._local.reads = (pipe, decoders)
        try:
            for method, args in reads:
                getattr(self, method)(*args)
        finally:
            self._local.reads = None
        replies = pipe.execute() if watch is None else self._watching_read(pipe, watch)
        marked: list[Any] = []
        if lease is not None or attempt is not None:
            if not replies[0]:
                self._unwatch()
                return None
            if attempt is not None:
                marked = [_decode_one(Delivery, replies[0][0])]
            replies = replies[1:]
        return marked + [decode(reply) for decode, reply in zip(decoders, replies, strict=True)]

    def _watching_read(self, reads: "redis.client.Pipeline", correlation_id: str) -> list[Any]:
        """The replies of the commands queued on ``reads``, sent between ``WATCH`` and ``GET`` of the
        ledger entry on a connection held until this thread's next commit (or watching read): the
        commit's transaction then changes the entry from what was read here, and fails if anyone
        wrote it since (it is then redone from a fresh read). One round trip for what would be two."""
        self._unwatch()
        key = self._key("outcome", correlation_id)
        watching = self._redis.pipeline()
        connection = watching.connection = watching.connection_pool.get_connection()
        watching.watching = True
        try:
            commands = [args for args, _ in reads.command_stack]
            connection.send_packed_command(connection.pack_commands(  # type: ignore[no-untyped-call]
                [("WATCH", key), *commands, ("GET", key)]))
            connection.read_response()
            replies = [watching.parse_response(connection, args[0], **options)  # type: ignore[no-untyped-call]
                       for args, options in reads.command_stack]
            before = cast(bytes | None, connection.read_response())
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]  # replies may be left unread
            watching.reset()
            raise
        self._local.watched = (correlation_id, watching, before)
        return replies

    def _unwatch(self) -> None:
        """Let go of this thread's watched ledger entry, if any (its connection back to the pool)."""
        watched = getattr(self._local, "watched", None)
        self._local.watched = None
        if watched is not None:
            watched[1].reset()

    def _get(self, send: Callable[[Any], Any], decode: Callable[[Any], T]) -> T:
        """A read: ``send`` its command to the client, ``decode`` the reply. Within :meth:`read` the
        command is queued on its pipeline and the decoding left to it (the placeholder returned is
        not looked at)."""
        batch: tuple[redis.client.Pipeline, list[Callable[[Any], Any]]] | None = getattr(self._local, "reads", None)
        if batch is None:
            return decode(send(self._redis))
        send(batch[0])
        batch[1].append(decode)
        return cast(T, None)

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def _scan(self, index: str, fetch: Callable[[list[bytes]], list[R]], *, limit: int,
              wanted: dict[str, Any] | None = None, low: float | str = "-inf", high: float | str = "+inf",
              newest_first: bool = False) -> list[R]:
        """Walk the sorted set ``index`` between the scores ``low`` and ``high`` a page at a time,
        ``fetch`` the records of each page and keep those whose fields equal every ``wanted`` value
        that is not None, until ``limit`` are kept."""
        kept: list[R] = []
        page = max(limit, 100)  # filters may reject most of a page
        offset = 0
        while len(kept) < limit:
            first, last = (high, low) if newest_first else (low, high)
            ids = cast(list[bytes], self._redis.zrange(index, first, last, desc=newest_first, byscore=True,
                                                       offset=offset, num=page))
            if not ids:
                break
            offset += len(ids)
            kept += [record for record in fetch(ids) if _matches(record, wanted or {})]
        return kept[:limit]

    def _from_hash(self, cls: type[R], key: str) -> Callable[[list[bytes]], list[R]]:
        """A ``fetch`` for :meth:`_scan`: the ``cls`` records stored in the hash ``key`` under the ids."""
        return lambda ids: _decode_all(cls, self._redis.hmget(key, ids))

    # -- inbox --------------------------------------------------------------------------------------
    def inbox_add(self, source: str, source_event_id: str, payload: dict[str, Any],
                  correlation_id: str, received_at: float,
                  inflight: tuple[str, dict[str, Any], float] | None = None,
                  received: AuditRecord | None = None) -> InboxStatus:
        entry = inbox_entry(source, source_event_id, payload, correlation_id, received_at,
                            enqueued=inflight is not None, received=received)  # inbox_get: the pending set says
        keys = [self._key("inbox"), self._key("inbox", "pending"), self._key("inflight", "msgs"),
                self._key("inflight"), self._key("audit", "trail", correlation_id)]
        args: list[bytes | str | float] = [_field(source, source_event_id), encode_json(entry), received_at]
        if inflight is not None:
            message_id, message, due_at = inflight
            args += [message_id, encode_json(message), due_at]
        else:
            args += ["", "", ""]
        args.append("" if received is None else encode_json(received))  # its trail only, as audit() writes it
        return cast(InboxStatus, _text(self._inbox_add(keys=keys, args=args)))

    def inbox_mark_enqueued(self, source: str, source_event_id: str) -> None:
        with self._pipe(transaction=False) as pipe:
            pipe.zrem(self._key("inbox", "pending"), _field(source, source_event_id))

    def inbox_mark_pending(self, source: str, source_event_id: str) -> None:
        entry = self._redis.hget(self._key("inbox"), _field(source, source_event_id))
        if entry is not None:
            self._redis.zadd(self._key("inbox", "pending"),
                             {_field(source, source_event_id): decoder(InboxEntry).decode(entry).received_at})

    def inbox_get(self, source: str, source_event_id: str) -> InboxEntry | None:
        field = _field(source, source_event_id)
        pipe = self._redis.pipeline()
        pipe.hget(self._key("inbox"), field)
        pipe.zscore(self._key("inbox", "pending"), field)
        raw, pending = pipe.execute()
        if raw is None:
            return None
        return msgspec.structs.replace(decoder(InboxEntry).decode(raw), enqueued=pending is None)

    # -- event log ----------------------------------------------------------------------------------
    def log_event(self, event: LoggedEvent) -> None:
        with self._pipe() as pipe:
            pipe.hsetnx(self._key("events"), event.id, encode_json(event))
            pipe.zadd(self._key("events", "by-time"), {event.id: event.occurred_at}, nx=True)

    def get_event(self, event_id: str) -> LoggedEvent | None:
        return _decode_one(LoggedEvent, self._redis.hget(self._key("events"), event_id))

    def events(self, *, source: str | None = None, type: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1000) -> list[LoggedEvent]:
        return self._scan(self._key("events", "by-time"), self._from_hash(LoggedEvent, self._key("events")),
                          limit=limit, wanted={"source": source, "type": type},
                          low="-inf" if since is None else since, high="+inf" if until is None else until)

    # -- golden records -----------------------------------------------------------------------------
    def golden_get(self, canonical_id: str) -> Golden | None:
        return self._get(lambda client: client.hget(self._key("golden"), canonical_id),
                         lambda raw: _decode_one(Golden, raw))

    def golden_put(self, record: Golden) -> bool:
        """One script: the record unless stale, its customer's set, its name and email terms."""
        return bool(self._run(self._golden_put, *self._golden_script(record, encode_json(record))))

    def _golden_script(self, record: Golden, raw: bytes) -> tuple[list[str], list[str | int | bytes]]:
        """The keys and arguments of :data:`_GOLDEN_PUT` and :data:`_GOLDEN_INDEX` for ``record``."""
        keys = [self._key("golden", "version"), self._key("golden"), self._key("golden", "terms"),
                self._key("golden", "terms", "of")]
        customer = record.data.get("customer_id")
        if isinstance(customer, str):
            keys.append(self._key("golden", "customer", customer))
        return keys, [record.canonical_id, record.version, raw, encode_json(search_terms(record.data))]

    def _golden_indexed(self) -> None:
        """The migration step of the golden indexes (the customer sets, the name and email terms),
        once per namespace: every golden record, :data:`INDEX_PAGE` at a time (``HSCAN``), put in
        them by a script that skips a record written again meanwhile, then ``golden:indexed`` set.
        Two processes doing it at once do the same thing twice: harmless."""
        if self._indexed:
            return
        marker = self._key("golden", "indexed")
        if not self._redis.exists(marker):
            for page in self._pages(self._key("golden")):
                pipe = self._redis.pipeline(transaction=False)
                for raw in page:
                    keys, args = self._golden_script(decoder(Golden).decode(raw), b"")
                    pipe.eval(_GOLDEN_INDEX, len(keys), *keys, *args)
                pipe.execute()
            self._redis.set(marker, "1")
        self._indexed = True

    def _pages(self, key: str) -> Iterator[list[bytes]]:
        """The values of the hash ``key``, a page of about :data:`INDEX_PAGE` at a time."""
        cursor = 0
        while True:
            cursor, found = cast(tuple[int, dict[bytes, bytes]], self._redis.hscan(key, cursor, count=INDEX_PAGE))
            if found:
                yield list(found.values())
            if not cursor:
                return

    def golden_for_customer(self, customer_id: str, *, entity_type: str | None = None,
                            limit: int = 500, offset: int = 0) -> list[Golden]:
        """The index keeps every record that ever named the customer: each is read, and kept if it
        still does (a record moved to another customer leaves a stale member, filtered out here)."""
        self._golden_indexed()
        index = self._key("golden", "customer", customer_id)
        members = sorted(_text(member) for member in self._redis.smembers(index))
        if not members:
            return []
        found = _decode_all(Golden, self._redis.hmget(self._key("golden"), members))
        return [record for record in found if record.data.get("customer_id") == customer_id
                and entity_type in (None, record.entity_type)][offset:offset + limit]

    def golden_named(self, query: str, *, limit: int = 100) -> list[str]:
        """One pipeline: per word, the members of ``golden:terms`` from ``<word>`` up to ``<word>\\xff``
        (``ZRANGEBYLEX``), their canonical ids intersected, the first ``limit`` by id, as SQLite
        answers. Each range is read whole, a single word's too: its members are in term order (a
        record once per term it matches), so a range cut at ``limit`` members would answer fewer
        records, and others than the first by id."""
        words = query_words(query)
        if not words:
            return []
        self._golden_indexed()
        pipe = self._redis.pipeline(transaction=False)
        for word in words:
            pipe.zrangebylex(self._key("golden", "terms"), b"[" + word.encode(), b"(" + word.encode() + b"\xff")
        found: set[str] | None = None
        for members in pipe.execute():
            ids = {_text(member).partition(" ")[2] for member in members}
            found = ids if found is None else found & ids
        return sorted(found or ())[:limit]

    # -- batch reads --------------------------------------------------------------------------------
    def records_get(self, canonical_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """One pipeline: per record ``HGET`` of its golden record, ``HGETALL`` of its links, ``LRANGE``
        of its audit records and a script for its latest journey run."""
        ids = list(dict.fromkeys(canonical_ids))
        pipe = self._redis.pipeline(transaction=False)
        for canonical_id in ids:
            pipe.hget(self._key("golden"), canonical_id)
            pipe.hgetall(self._key("xref", canonical_id))
            pipe.lrange(self._key("audit", "subject", canonical_id), 0, -1)
            pipe.eval(_LATEST_JOURNEY, 2, self._key("journeys", "subject", canonical_id), self._key("journeys"))
        replies = pipe.execute() if ids else []
        found = {}
        for at, canonical_id in enumerate(ids):
            golden, links, audit, journey = replies[4 * at:4 * at + 4]
            found[canonical_id] = StoredRecord(
                canonical_id=canonical_id, golden=_decode_one(Golden, golden),
                xrefs={_text(system): _external_id(link) for system, link in links.items()},
                audit=sorted(_decode_all(AuditRecord, audit), key=attrgetter("at")),
                journey=_decode_one(JourneyRecord, journey))
        return found

    def outcomes_get(self, correlation_ids: Sequence[str]) -> dict[str, OutcomeRecord]:
        """One ``MGET``."""
        ids = list(dict.fromkeys(correlation_ids))
        return {record.correlation_id: record for record in self._outcome_records([i.encode() for i in ids])}

    def events_get(self, event_ids: Sequence[str]) -> dict[str, LoggedEvent]:
        """One ``HMGET``."""
        ids = list(dict.fromkeys(event_ids))
        raws = self._redis.hmget(self._key("events"), ids) if ids else []
        return {event.id: event for event in _decode_all(LoggedEvent, raws)}

    # -- cross-references ---------------------------------------------------------------------------
    def xref_put(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        link = _field(entity_type, system, external_id)
        self._run(self._xref_put, [self._key("xref", canonical_id), self._key("xref-find")],
                  [system, link, canonical_id, self._key("xref", "")])

    def xref_get(self, canonical_id: str, system: str) -> str | None:
        return self._get(lambda client: client.hget(self._key("xref", canonical_id), system),
                         lambda link: None if link is None else _external_id(link))

    def xref_find(self, entity_type: str, system: str, external_id: str) -> str | None:
        return self._get(lambda client: client.hget(self._key("xref-find"), _field(entity_type, system, external_id)),
                         lambda found: None if found is None else _text(found))

    def xrefs(self, canonical_id: str) -> dict[str, str]:
        links = self._redis.hgetall(self._key("xref", canonical_id))
        return {_text(system): _external_id(link) for system, link in links.items()}

    # -- applied versions ---------------------------------------------------------------------------
    def applied_version(self, target: str, canonical_id: str) -> int | None:
        return self._get(lambda client: client.hget(self._key("applied"), _field(target, canonical_id)),
                         lambda version: None if version is None else int(version))

    def set_applied_version(self, target: str, canonical_id: str, version: int) -> None:
        self._run(self._put_unless_stale, [self._key("applied")], [_field(target, canonical_id), version])

    # -- delivery states ----------------------------------------------------------------------------
    def delivery_get(self, key: str) -> Delivery | None:
        return self._get(lambda client: client.hget(self._key("deliveries"), key),
                         lambda raw: _decode_one(Delivery, raw))

    def _mark_attempt(self, pipe: "redis.client.Pipeline", key: str, lease: tuple[str, str, float] | None) -> None:
        """Queue on ``pipe`` the script that takes ``lease`` (if any) and marks the attempt ``key``
        (:meth:`read`), as ``EVAL`` with its source (by digest, redis-py would ask first)."""
        sent = Delivery(key=key, status="sent", external_id=None, updated_at=time.time())
        keys: list[str] = [self._key("deliveries")]
        args: list[str | bytes | int] = [key, encode_json(sent)]
        if lease is not None:
            lock, owner, ttl_s = lease
            keys.append(self._key("lock", lock))
            args += [owner, _lease_ms(ttl_s)]
        pipe.eval(_MARK_ATTEMPT, len(keys), *keys, *args)

    def delivery_set(self, key: str, status: DeliveryStatus, external_id: str | None = None,
                     generation: int = 0) -> None:
        delivery = Delivery(key=key, status=status, external_id=external_id, updated_at=time.time(),
                            generation=generation)
        with self._pipe(transaction=False) as pipe:
            pipe.hset(self._key("deliveries"), key, encode_json(delivery))

    # -- dead letters -------------------------------------------------------------------------------
    def dlq_add(self, letter: DeadLetter) -> None:
        with self._pipe() as pipe:
            pipe.hset(self._key("dlq"), letter.id, encode_json(letter))
            pipe.hset(self._key("dlq", "state"), letter.id, letter.state)
            for state in get_args(DeadLetterState):  # a letter added again may change state
                pipe.zrem(self._key("dlq", state), letter.id)
            pipe.zadd(self._key("dlq", letter.state), {letter.id: letter.created_at})
            pipe.zadd(self._key("dlq", "all"), {letter.id: letter.created_at})

    def _letters(self, ids: Sequence[bytes | str]) -> list[DeadLetter]:
        """The letters with these ids that exist, each with its current state."""
        pipe = self._redis.pipeline()
        pipe.hmget(self._key("dlq"), ids)
        pipe.hmget(self._key("dlq", "state"), ids)
        raws, states = pipe.execute()
        return [msgspec.structs.replace(decoder(DeadLetter).decode(raw), state=_text(state))
                for raw, state in zip(raws, states, strict=True) if raw is not None]

    def dlq_get(self, letter_id: str) -> DeadLetter | None:
        found = self._letters([letter_id])
        return found[0] if found else None

    def dlq_list(self, *, state: DeadLetterState | None = "open", category: str | None = None,
                 target: str | None = None, limit: int = 100, oldest_first: bool = False) -> list[DeadLetter]:
        return self._scan(self._key("dlq", state or "all"), self._letters, limit=limit, newest_first=not oldest_first,
                          wanted={"state": state, "category": category, "target": target})

    def dlq_set_state(self, letter_id: str, state: DeadLetterState) -> bool:
        keys = [self._key("dlq", "state"), self._key("dlq", "open"), self._key("dlq", state)]
        return bool(self._dlq_set_state(keys=keys, args=[letter_id, state]))

    def dlq_count(self, state: DeadLetterState = "open") -> int:
        return int(self._redis.zcard(self._key("dlq", state)))

    # -- audit timeline -----------------------------------------------------------------------------
    def audit(self, *records: AuditRecord) -> None:
        with self._pipe(transaction=False) as pipe:
            for record in records:
                raw = encode_json(record)
                pipe.rpush(self._key("audit", "trail", record.correlation_id), raw)
                if record.subject is not None:
                    pipe.rpush(self._key("audit", "subject", record.subject), raw)

    def _timeline(self, key: str) -> list[AuditRecord]:
        """The records of one audit list, oldest ``at`` first (stable: ties keep the append order)."""
        return sorted(_decode_all(AuditRecord, self._redis.lrange(key, 0, -1)), key=attrgetter("at"))

    def audit_trail(self, correlation_id: str) -> list[AuditRecord]:
        return self._timeline(self._key("audit", "trail", correlation_id))

    def audit_for_subject(self, subject: str) -> list[AuditRecord]:
        return self._timeline(self._key("audit", "subject", subject))

    # -- circuit breakers ---------------------------------------------------------------------------
    def circuit_get(self, target: str) -> Circuit:
        return self._get(lambda client: client.hmget(self._key("circuit", target), ["failures", "opened_at"]),
                         lambda reply: _circuit(target, *reply))

    def circuit_failure(self, target: str, threshold: int, now: float) -> Circuit:
        reply = self._circuit_failure(keys=[self._key("circuit", target)], args=[threshold, now])
        return _circuit(target, *reply)

    def circuit_close(self, target: str) -> None:
        self._redis.delete(self._key("circuit", target))

    def circuit_reopen(self, target: str, now: float) -> None:
        self._redis.hset(self._key("circuit", target), "opened_at", now)

    # -- parked work --------------------------------------------------------------------------------
    def park(self, target: str, message: dict[str, Any]) -> None:
        """One script: its number in line (``INCR``) and the message appear together, in one round
        trip, or queued in the unit being committed."""
        self._run(self._park, [self._key("parked", target, "seq"), self._key("parked", target, "msgs"),
                               self._key("parked", target)], [encode_json(message)])

    def parked(self, target: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        ids = [raw.decode() for raw in cast(list[bytes], self._redis.zrange(self._key("parked", target), 0, limit - 1))]
        if not ids:
            return []
        raws = self._redis.hmget(self._key("parked", target, "msgs"), ids)
        return [(parked_id, decode_json(raw)) for parked_id, raw in zip(ids, raws, strict=True)
                if raw is not None]

    def unpark(self, target: str, ids: list[str]) -> int:
        if not ids:
            return 0
        pipe = self._redis.pipeline()
        pipe.zrem(self._key("parked", target), *ids)
        pipe.hdel(self._key("parked", target, "msgs"), *ids)
        removed, _ = pipe.execute()
        return int(removed)

    def parked_count(self, target: str) -> int:
        return int(self._redis.zcard(self._key("parked", target)))

    # -- leases -------------------------------------------------------------------------------------
    def lock_acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(self._lease(self._redis, key, owner, ttl_s))

    def _lease(self, client: Any, key: str, owner: str, ttl_s: float) -> Any:
        return client.set(self._key("lock", key), owner, nx=True, px=_lease_ms(ttl_s))

    def lock_renew(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(self._lock_renew(keys=[self._key("lock", key)], args=[owner, _lease_ms(ttl_s)]))

    def lock_release(self, key: str, owner: str) -> None:
        self._run(self._lock_release, [self._key("lock", key)], [owner])

    # -- journeys -----------------------------------------------------------------------------------
    def _write_journey(self, record: JourneyRecord, mode: Literal["start", "put"]) -> bool:
        """Store the run and file it under its indexes, leaving those of the run it replaces;
        ``mode`` ``start`` does nothing (and returns False) when the run exists."""
        indexes = [self._key("journeys", field, getattr(record, field)) for field in _JOURNEY_INDEXED]
        keys = [self._key("journeys"), self._key("journeys", "by-start"), *indexes]
        args: list[bytes | str | float] = [record.id, encode_json(record), record.started_at, mode,
                                           self._key("journeys", ""), *_JOURNEY_INDEXED]
        return bool(self._journey_write(keys=keys, args=args))

    def journey_start(self, record: JourneyRecord) -> bool:
        return self._write_journey(record, "start")

    def journey_put(self, record: JourneyRecord) -> None:
        self._write_journey(record, "put")

    def journey_get(self, journey_id: str) -> JourneyRecord | None:
        return _decode_one(JourneyRecord, self._redis.hget(self._key("journeys"), journey_id))

    def journeys(self, *, name: str | None = None, state: JourneyState | None = None, subject: str | None = None,
                 limit: int = 100) -> list[JourneyRecord]:
        wanted = {"name": name, "state": state, "subject": subject}
        index = next((self._key("journeys", field, value) for field in _JOURNEY_INDEXED
                      if (value := wanted[field]) is not None), self._key("journeys", "by-start"))
        return self._scan(index, self._from_hash(JourneyRecord, self._key("journeys")), limit=limit,
                          wanted=wanted, newest_first=True)

    # -- poll cursors -------------------------------------------------------------------------------
    def cursor_get(self, name: str) -> str | None:
        value = self._redis.hget(self._key("cursors"), name)
        return None if value is None else _text(value)

    def cursor_set(self, name: str, value: str) -> None:
        self._redis.hset(self._key("cursors"), name, value)

    # -- lifecycle ----------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise :class:`redis.ConnectionError` when Redis cannot be reached."""
        self._redis.ping()

    def reset(self) -> None:
        """Delete this namespace's keys (never ``FLUSHDB``: the database may be shared)."""
        keys = list(self._redis.scan_iter(match=self._key("*"), count=1000))
        for start in range(0, len(keys), 1000):
            self._redis.unlink(*keys[start:start + 1000])
        self._indexed = False

    def close(self) -> None:
        self._redis.close()

    # -- the outcome ledger -------------------------------------------------------------------------
    def _outcome_update(self, correlation_id: str, change: OutcomeChange,
                        unit: Unit | None = None) -> OutcomeRecord | None:
        """Apply ``change`` to the entry atomically, and the ``unit``'s writes with it, in two round
        trips: WATCH its key and read it, then write in MULTI (all redone if another worker wrote the
        entry in between); the entry written, or None when ``change`` kept it."""
        key = self._key("outcome", correlation_id)
        watched = getattr(self._local, "watched", None) if unit is not None else None
        if watched is not None:
            self._local.watched = None
            if watched[0] != correlation_id:
                watched[1].reset()
                watched = None
        while True:
            if watched is not None:  # read with the unit's first reads (:meth:`_watching_read`)
                pipe, raw = watched[1], watched[2]
                watched = None
            else:
                pipe = self._redis.pipeline()
                raw = None
            try:
                before = _decode_one(OutcomeRecord, raw if pipe.watching else self._watch_and_get(pipe, key))
                after = change(before)
                pipe.multi()
                if unit is not None:
                    self._queue(pipe, unit)
                if after is not None:
                    pipe.set(key, encode_json(after))
                    pipe.zadd(self._key("outcomes", "by-time"), {correlation_id: after.received_at})
                    if before is not None and before.outcome != after.outcome:
                        pipe.zrem(self._key("outcomes", "concluded", before.outcome), correlation_id)
                    if after.outcome != "pending":
                        pipe.zadd(self._key("outcomes", "concluded", after.outcome), {correlation_id: after.updated_at})
                    if before is None or (before.outcome, before.source) != (after.outcome, after.source):
                        if before is not None:
                            pipe.hincrby(self._key("outcomes", "count"), _field(before.outcome, before.source), -1)
                        pipe.hincrby(self._key("outcomes", "count"), _field(after.outcome, after.source), 1)
                pipe.execute()
                return after
            except redis.WatchError:
                continue
            finally:
                pipe.reset()

    @staticmethod
    def _watch_and_get(pipe: "redis.client.Pipeline", key: str) -> bytes | None:
        """``WATCH key`` and ``GET key`` sent together on ``pipe``'s connection, which ``pipe`` then
        holds (as its own ``watch`` would: redis-py sends each command of a watching pipeline alone,
        a round trip apiece). A connection lost here raises as redis-py's would, for the caller's
        retry; the watch is gone with it."""
        connection = pipe.connection = pipe.connection_pool.get_connection()
        pipe.watching = True
        try:
            connection.send_packed_command(connection.pack_commands(  # type: ignore[no-untyped-call]
                [("WATCH", key), ("GET", key)]))
            connection.read_response()
            return cast(bytes | None, connection.read_response())
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise

    def outcome_open(self, record: OutcomeRecord) -> bool:
        return bool(self._open(concluded(record, time.time())))

    def _open(self, entry: OutcomeRecord) -> Any:
        """Store ``entry`` unless the existing one stays, by a script (run now, or queued in the unit
        being committed); whether it was stored."""
        states = [value for state in get_args(LedgerState) for value in (state, _field(state, entry.source))]
        keys = [self._key("outcome", entry.correlation_id), self._key("outcomes", "by-time"),
                self._key("outcomes", "count")]
        args = [entry.correlation_id, encode_json(entry), entry.received_at, _field(entry.outcome, entry.source),
                " ".join(KEPT_ON_OPEN), self._key("outcomes", "concluded", ""), entry.outcome,
                "" if entry.outcome == "pending" else entry.updated_at, *states]
        return self._run(self._outcome_open, keys, args)

    def outcome_settle(self, correlation_id: str, token: str, part: OutcomePart | None,
                       follow_ons: list[str] | None = None, *, amend: bool = False) -> OutcomeRecord | None:
        return self._outcome_update(correlation_id, settling(token, part, follow_ons, amend=amend))

    def outcome_get(self, correlation_id: str) -> OutcomeRecord | None:
        return _decode_one(OutcomeRecord, self._redis.get(self._key("outcome", correlation_id)))

    def _outcome_records(self, ids: list[bytes]) -> list[OutcomeRecord]:
        keys = [self._key("outcome", _text(correlation_id)) for correlation_id in ids]
        return _decode_all(OutcomeRecord, self._redis.mget(keys)) if keys else []

    def outcomes(self, *, outcome: LedgerState | None = None, source: str | None = None,
                 limit: int = 100) -> list[OutcomeRecord]:
        return self._scan(self._key("outcomes", "by-time"), self._outcome_records, limit=limit, newest_first=True,
                          wanted={"outcome": outcome, "source": source})

    def outcome_counts(self) -> dict[tuple[LedgerState, str], int]:
        counts = self._redis.hgetall(self._key("outcomes", "count"))
        return {cast(tuple[LedgerState, str], tuple(decode_json(field))): int(count)
                for field, count in counts.items() if int(count)}

    def concluded_by_hour(self, since: float) -> dict[tuple[int, LedgerState], int]:
        """A ``ZCOUNT`` per hour and outcome, pipelined. The sets fill as entries conclude: an
        entry concluded before they existed is not counted."""
        hours = range(hour_of(since), hour_of(time.time()) + 3600, 3600)
        wanted = [(hour, outcome) for outcome in get_args(LedgerState) if outcome != "pending" for hour in hours]
        pipe = self._redis.pipeline(transaction=False)
        for hour, outcome in wanted:
            pipe.zcount(self._key("outcomes", "concluded", outcome), hour, f"({hour + 3600}")
        counts = pipe.execute()
        return {key: int(count) for key, count in zip(wanted, counts, strict=True) if count}


    # -- discarding dead letters --------------------------------------------------------------------
    def dlq_discard(self, letter_id: str, reason: str, at: float) -> bool:
        letter = self.dlq_get(letter_id)
        if letter is None:
            return False
        closed = msgspec.structs.replace(letter, state="discarded", discarded_at=at, discard_reason=reason)
        keys = [self._key("dlq"), self._key("dlq", "state"), self._key("dlq", "open"), self._key("dlq", "discarded")]
        return bool(self._dlq_discard(keys=keys, args=[letter_id, encode_json(closed)]))

    # -- messages in flight -------------------------------------------------------------------------
    def inflight_put(self, message_id: str, message: dict[str, Any], due_at: float) -> None:
        with self._pipe() as pipe:
            pipe.hset(self._key("inflight", "msgs"), message_id, encode_json(message))
            pipe.zadd(self._key("inflight"), {message_id: due_at})

    def inflight_settle(self, message_id: str) -> None:
        with self._pipe() as pipe:
            pipe.zrem(self._key("inflight"), message_id)
            pipe.hdel(self._key("inflight", "msgs"), message_id)

    def inflight_overdue(self, before: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        ids = cast(list[bytes], self._redis.zrange(self._key("inflight"), "-inf", f"({before}", byscore=True,
                                                   offset=0, num=limit))
        if not ids:
            return []
        raws = cast(list[bytes | None], self._redis.hmget(self._key("inflight", "msgs"), ids))
        return [(_text(message_id), decode_json(raw)) for message_id, raw in zip(ids, raws, strict=True)
                if raw is not None]

    def inflight_count(self) -> int:
        return int(self._redis.zcard(self._key("inflight")))

    # -- reconciliation -----------------------------------------------------------------------------
    # Runs: a hash of records and a sorted set by start time; a run's findings: a list of records.
    def reconciliation_put(self, run: ReconciliationRun, findings: list[FindingRecord] | None = None) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self._key("recon"), run.id, msgspec.json.encode(run))
        pipe.zadd(self._key("recon", "runs"), {run.id: run.started_at})
        if findings is not None:
            pipe.delete(self._key("recon", "findings", run.id))
            if findings:
                pipe.rpush(self._key("recon", "findings", run.id), *(msgspec.json.encode(f) for f in findings))
        pipe.execute()

    def reconciliation_get(self, run_id: str) -> ReconciliationRun | None:
        raw = self._redis.hget(self._key("recon"), run_id)
        return None if raw is None else msgspec.json.decode(raw, type=ReconciliationRun)

    def reconciliations(self, *, limit: int = 20) -> list[ReconciliationRun]:
        ids = cast(list[bytes], self._redis.zrevrange(self._key("recon", "runs"), 0, limit - 1))
        raws = self._redis.hmget(self._key("recon"), ids) if ids else []
        return [msgspec.json.decode(raw, type=ReconciliationRun) for raw in raws if raw is not None]

    def reconciliation_latest_done(self, *, full: bool = False) -> ReconciliationRun | None:
        """Runs read newest first, :data:`RUNS_BATCH` a round trip, until one finished."""
        runs = self._key("recon", "runs")
        for start in itertools.count(0, RUNS_BATCH):
            ids = cast(list[bytes], self._redis.zrevrange(runs, start, start + RUNS_BATCH - 1))
            for raw in self._redis.hmget(self._key("recon"), ids) if ids else []:
                run = None if raw is None else msgspec.json.decode(raw, type=ReconciliationRun)
                if run is not None and run.state == "done" and (not full or run.since is None):
                    return run
            if len(ids) < RUNS_BATCH:
                return None
        raise AssertionError("unreachable")

    def reconciliation_findings(self, run_id: str, *, cls: FindingClass | None = None,
                                system: str | None = None) -> list[FindingRecord]:
        found = [msgspec.json.decode(raw, type=FindingRecord)
                 for raw in self._redis.lrange(self._key("recon", "findings", run_id), 0, -1)]
        return [f for f in found if (cls is None or f.cls == cls) and (system is None or f.system == system)]

    # What reconciliation read of a system: a hash per generation, record id -> packed projection.
    def listing_put(self, generation: str, items: Sequence[tuple[str, bytes | None]]) -> None:
        key = self._key("recon", "listing", generation)
        pipe = self._redis.pipeline(transaction=False)
        removed = [record_id for record_id, packed in items if packed is None]
        kept = {record_id: packed for record_id, packed in items if packed is not None}
        if removed:
            pipe.hdel(key, *removed)
        if kept:
            pipe.hset(key, mapping=kept)  # type: ignore[arg-type]
        pipe.execute()

    def listing_scan(self, generation: str) -> Iterator[bytes]:
        """``HSCAN`` may return a field twice (the hash resized between two calls): each record id is
        yielded once, or the run would see a copy that is not there."""
        seen: set[bytes] = set()
        for record_id, packed in self._redis.hscan_iter(self._key("recon", "listing", generation),
                                                        count=LISTING_BATCH):
            if record_id not in seen:
                seen.add(record_id)
                yield bytes(packed)

    def listing_drop(self, generation: str) -> None:
        self._redis.unlink(self._key("recon", "listing", generation))

    # -- the operator console -----------------------------------------------------------------------
    # Users and triage: hashes of records (triage with a sorted set by update time); the audit log:
    # a list, newest first, and one per item.
    def user_put(self, user: UserRecord) -> None:
        self._redis.hset(self._key("users"), user.name, encode_json(user))

    def user_get(self, name: str) -> UserRecord | None:
        return _decode_one(UserRecord, self._redis.hget(self._key("users"), name))

    def user_new_epoch(self, name: str, epoch: str) -> bool:
        """Under ``WATCH`` of the users: redone from a fresh read if anyone changed one in between."""
        key = self._key("users")

        found: list[UserRecord] = []

        def change(pipe: "redis.client.Pipeline") -> None:
            found[:] = _decode_all(UserRecord, [pipe.hget(key, name)])
            pipe.multi()
            for user in found:
                pipe.hset(key, name, encode_json(msgspec.structs.replace(user, session_epoch=epoch)))

        self._redis.transaction(change, key)
        return bool(found)

    def users(self) -> list[UserRecord]:
        found = _decode_all(UserRecord, list(self._redis.hgetall(self._key("users")).values()))
        return sorted(found, key=lambda user: user.name)

    def triage_put(self, record: TriageRecord) -> None:
        with self._pipe() as pipe:
            pipe.hset(self._key("triage"), record.id, encode_json(record))
            pipe.zadd(self._key("triage", "by-time"), {record.id: record.updated_at})

    def triage_get(self, item_id: str) -> TriageRecord | None:
        return _decode_one(TriageRecord, self._redis.hget(self._key("triage"), item_id))

    def triages(self) -> list[TriageRecord]:
        ids = cast(list[bytes], self._redis.zrevrange(self._key("triage", "by-time"), 0, -1))
        found = _decode_all(TriageRecord, self._redis.hmget(self._key("triage"), ids)) if ids else []
        return sorted(found, key=lambda record: (-record.updated_at, record.id))

    def action_add(self, record: ActionRecord) -> None:
        raw = encode_json(record)
        with self._pipe() as pipe:
            pipe.lpush(self._key("actions"), raw)
            pipe.lpush(self._key("actions", "item", record.item), raw)

    def actions(self, *, item: str | None = None, limit: int = 100) -> list[ActionRecord]:
        key = self._key("actions") if item is None else self._key("actions", "item", item)
        return _decode_all(ActionRecord, self._redis.lrange(key, 0, limit - 1))

    def secret(self, name: str, candidate: str) -> str:
        pipe = self._redis.pipeline()
        pipe.hsetnx(self._key("secrets"), name, candidate)
        pipe.hget(self._key("secrets"), name)
        return _text(pipe.execute()[-1])


def _counting(connection_class: type[Any], trips: RoundTrips) -> type[Any]:
    """``connection_class`` counting each command or pipeline it sends (one packet, one answer awaited)
    as a round trip of ``trips``."""

    class Counting(connection_class):  # type: ignore[misc]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            trips.add()
            super().send_packed_command(command, check_health)

    return Counting


def _field(*parts: str) -> bytes:
    """An unambiguous hash field for a compound key: the JSON array of its parts."""
    return encode_json(parts)


def _external_id(link: bytes | str) -> str:
    """The external id in a link, the JSON ``["entity type", "system", "external id"]``."""
    return cast(str, decode_json(link)[2])


def _decode_one(cls: type[R], raw: bytes | str | None) -> R | None:
    return None if raw is None else decoder(cls).decode(raw)


def _decode_all(cls: type[R], raws: Sequence[bytes | str | None]) -> list[R]:
    """The records among ``raws``, skipping the missing (None) ones."""
    return [decoder(cls).decode(raw) for raw in raws if raw is not None]


def _matches(record: msgspec.Struct, wanted: dict[str, Any]) -> bool:
    return all(getattr(record, name) == value for name, value in wanted.items() if value is not None)


def _circuit(target: str, failures: bytes | str | None, opened_at: bytes | str | None) -> Circuit:
    return Circuit(target=target, status="closed" if opened_at is None else "open",
                   failures=int(failures or 0), opened_at=None if opened_at is None else float(opened_at))


def _text(reply: bytes | str) -> str:
    """A reply as text. redis-py types replies ``bytes | str``; this client never decodes, so bytes."""
    return cast(bytes, reply).decode()


def _lease_ms(ttl_s: float) -> int:
    """A lease's time to live as Redis takes it (``PX``): whole milliseconds, at least one."""
    return max(1, int(ttl_s * 1000))
