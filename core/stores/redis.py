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
"""

import re
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Literal, TypeVar, cast, get_args

import msgspec
import redis
from crossledger.core.stores.base import (
    AuditRecord,
    Circuit,
    DeadLetter,
    DeadLetterState,
    Delivery,
    DeliveryStatus,
    Golden,
    InboxEntry,
    InboxStatus,
    JourneyRecord,
    JourneyState,
    LedgerState,
    LoggedEvent,
    OutcomePart,
    OutcomeRecord,
    concluded,
    replaces,
    settled,
)

R = TypeVar("R", bound=msgspec.Struct)

DEFAULT_NAMESPACE = "crossledger"

_NAMESPACE = re.compile(r"[\w.-]+")  # no ':' (a prefix of another namespace) nor glob characters (SCAN MATCH)

_INBOX_ADD = """
-- KEYS: entries, pending. ARGV: field, entry, received_at
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
    return 'new'
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 'pending' end
return 'duplicate'
"""

_PUT_UNLESS_STALE = """
-- KEYS: versions[, values]. ARGV: field, version[, value]
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if KEYS[2] then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
return 1
"""

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

_CIRCUIT_FAILURE = """
-- KEYS: circuit:<target>. ARGV: threshold, now
if redis.call('HINCRBY', KEYS[1], 'failures', 1) >= tonumber(ARGV[1]) then
    redis.call('HSETNX', KEYS[1], 'opened_at', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'failures', 'opened_at')
"""


class RedisStore:
    """The :class:`~crossledger.core.stores.base.Store` in Redis, under ``namespace``.

    One client, whose connection pool serves every thread; ``url`` is as for
    :meth:`redis.Redis.from_url`.
    """

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"Redis store namespace {namespace!r}: use letters, digits, '_', '.' and '-'")
        self.namespace = namespace
        self._redis = redis.Redis.from_url(url)
        self._inbox_add = self._redis.register_script(_INBOX_ADD)
        self._put_unless_stale = self._redis.register_script(_PUT_UNLESS_STALE)
        self._xref_put = self._redis.register_script(_XREF_PUT)
        self._dlq_set_state = self._redis.register_script(_DLQ_SET_STATE)
        self._dlq_discard = self._redis.register_script(_DLQ_DISCARD)
        self._circuit_failure = self._redis.register_script(_CIRCUIT_FAILURE)
        self._lock_release = self._redis.register_script(_LOCK_RELEASE)
        self._journey_write = self._redis.register_script(_JOURNEY_WRITE)

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
                  correlation_id: str, received_at: float) -> InboxStatus:
        entry = InboxEntry(source=source, source_event_id=source_event_id, correlation_id=correlation_id,
                           received_at=received_at, payload=payload, enqueued=False)
        keys = [self._key("inbox"), self._key("inbox", "pending")]
        args: list[bytes | float] = [_field(source, source_event_id), msgspec.json.encode(entry), received_at]
        return cast(InboxStatus, _text(self._inbox_add(keys=keys, args=args)))

    def inbox_mark_enqueued(self, source: str, source_event_id: str) -> None:
        self._redis.zrem(self._key("inbox", "pending"), _field(source, source_event_id))

    def inbox_get(self, source: str, source_event_id: str) -> InboxEntry | None:
        field = _field(source, source_event_id)
        pipe = self._redis.pipeline()
        pipe.hget(self._key("inbox"), field)
        pipe.zscore(self._key("inbox", "pending"), field)
        raw, pending = pipe.execute()
        if raw is None:
            return None
        return msgspec.structs.replace(msgspec.json.decode(raw, type=InboxEntry), enqueued=pending is None)

    # -- event log ----------------------------------------------------------------------------------
    def log_event(self, event: LoggedEvent) -> None:
        pipe = self._redis.pipeline()
        pipe.hsetnx(self._key("events"), event.id, msgspec.json.encode(event))
        pipe.zadd(self._key("events", "by-time"), {event.id: event.occurred_at}, nx=True)
        pipe.execute()

    def get_event(self, event_id: str) -> LoggedEvent | None:
        return _decode_one(LoggedEvent, self._redis.hget(self._key("events"), event_id))

    def events(self, *, source: str | None = None, type: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1000) -> list[LoggedEvent]:
        return self._scan(self._key("events", "by-time"), self._from_hash(LoggedEvent, self._key("events")),
                          limit=limit, wanted={"source": source, "type": type},
                          low="-inf" if since is None else since, high="+inf" if until is None else until)

    # -- golden records -----------------------------------------------------------------------------
    def golden_get(self, canonical_id: str) -> Golden | None:
        return _decode_one(Golden, self._redis.hget(self._key("golden"), canonical_id))

    def golden_put(self, record: Golden) -> bool:
        keys = [self._key("golden", "version"), self._key("golden")]
        args: list[str | int | bytes] = [record.canonical_id, record.version, msgspec.json.encode(record)]
        return bool(self._put_unless_stale(keys=keys, args=args))

    # -- cross-references ---------------------------------------------------------------------------
    def xref_put(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        link = _field(entity_type, system, external_id)
        self._xref_put(keys=[self._key("xref", canonical_id), self._key("xref-find")],
                       args=[system, link, canonical_id, self._key("xref", "")])

    def xref_get(self, canonical_id: str, system: str) -> str | None:
        link = self._redis.hget(self._key("xref", canonical_id), system)
        return None if link is None else _external_id(link)

    def xref_find(self, entity_type: str, system: str, external_id: str) -> str | None:
        found = self._redis.hget(self._key("xref-find"), _field(entity_type, system, external_id))
        return None if found is None else _text(found)

    def xrefs(self, canonical_id: str) -> dict[str, str]:
        links = self._redis.hgetall(self._key("xref", canonical_id))
        return {_text(system): _external_id(link) for system, link in links.items()}

    # -- applied versions ---------------------------------------------------------------------------
    def applied_version(self, target: str, canonical_id: str) -> int | None:
        version = self._redis.hget(self._key("applied"), _field(target, canonical_id))
        return None if version is None else int(version)

    def set_applied_version(self, target: str, canonical_id: str, version: int) -> None:
        self._put_unless_stale(keys=[self._key("applied")], args=[_field(target, canonical_id), version])

    # -- delivery states ----------------------------------------------------------------------------
    def delivery_get(self, key: str) -> Delivery | None:
        return _decode_one(Delivery, self._redis.hget(self._key("deliveries"), key))

    def delivery_set(self, key: str, status: DeliveryStatus, external_id: str | None = None) -> None:
        delivery = Delivery(key=key, status=status, external_id=external_id, updated_at=time.time())
        self._redis.hset(self._key("deliveries"), key, msgspec.json.encode(delivery))

    # -- dead letters -------------------------------------------------------------------------------
    def dlq_add(self, letter: DeadLetter) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self._key("dlq"), letter.id, msgspec.json.encode(letter))
        pipe.hset(self._key("dlq", "state"), letter.id, letter.state)
        for state in get_args(DeadLetterState):  # a letter added again may change state
            pipe.zrem(self._key("dlq", state), letter.id)
        pipe.zadd(self._key("dlq", letter.state), {letter.id: letter.created_at})
        pipe.zadd(self._key("dlq", "all"), {letter.id: letter.created_at})
        pipe.execute()

    def _letters(self, ids: Sequence[bytes | str]) -> list[DeadLetter]:
        """The letters with these ids that exist, each with its current state."""
        pipe = self._redis.pipeline()
        pipe.hmget(self._key("dlq"), ids)
        pipe.hmget(self._key("dlq", "state"), ids)
        raws, states = pipe.execute()
        return [msgspec.structs.replace(msgspec.json.decode(raw, type=DeadLetter), state=_text(state))
                for raw, state in zip(raws, states, strict=True) if raw is not None]

    def dlq_get(self, letter_id: str) -> DeadLetter | None:
        found = self._letters([letter_id])
        return found[0] if found else None

    def dlq_list(self, *, state: DeadLetterState | None = "open", category: str | None = None,
                 target: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return self._scan(self._key("dlq", state or "all"), self._letters, limit=limit, newest_first=True,
                          wanted={"state": state, "category": category, "target": target})

    def dlq_set_state(self, letter_id: str, state: DeadLetterState) -> bool:
        keys = [self._key("dlq", "state"), self._key("dlq", "open"), self._key("dlq", state)]
        return bool(self._dlq_set_state(keys=keys, args=[letter_id, state]))

    def dlq_count(self, state: DeadLetterState = "open") -> int:
        return int(self._redis.zcard(self._key("dlq", state)))

    # -- audit timeline -----------------------------------------------------------------------------
    def audit(self, *records: AuditRecord) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            raw = msgspec.json.encode(record)
            pipe.rpush(self._key("audit", "trail", record.correlation_id), raw)
            if record.subject is not None:
                pipe.rpush(self._key("audit", "subject", record.subject), raw)
        pipe.execute()

    def _timeline(self, key: str) -> list[AuditRecord]:
        """The records of one audit list, oldest ``at`` first (stable: ties keep the append order)."""
        return sorted(_decode_all(AuditRecord, self._redis.lrange(key, 0, -1)), key=attrgetter("at"))

    def audit_trail(self, correlation_id: str) -> list[AuditRecord]:
        return self._timeline(self._key("audit", "trail", correlation_id))

    def audit_for_subject(self, subject: str) -> list[AuditRecord]:
        return self._timeline(self._key("audit", "subject", subject))

    # -- circuit breakers ---------------------------------------------------------------------------
    def circuit_get(self, target: str) -> Circuit:
        return _circuit(target, *self._redis.hmget(self._key("circuit", target), ["failures", "opened_at"]))

    def circuit_failure(self, target: str, threshold: int, now: float) -> Circuit:
        reply = self._circuit_failure(keys=[self._key("circuit", target)], args=[threshold, now])
        return _circuit(target, *reply)

    def circuit_close(self, target: str) -> None:
        self._redis.delete(self._key("circuit", target))

    def circuit_reopen(self, target: str, now: float) -> None:
        self._redis.hset(self._key("circuit", target), "opened_at", now)

    # -- parked work --------------------------------------------------------------------------------
    def park(self, target: str, message: dict[str, Any]) -> None:
        parked_id = str(self._redis.incr(self._key("parked", target, "seq")))
        pipe = self._redis.pipeline()  # MULTI: the message and its place in line appear together
        pipe.hset(self._key("parked", target, "msgs"), parked_id, msgspec.json.encode(message))
        pipe.zadd(self._key("parked", target), {parked_id: int(parked_id)})
        pipe.execute()

    def parked(self, target: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        ids = [raw.decode() for raw in cast(list[bytes], self._redis.zrange(self._key("parked", target), 0, limit - 1))]
        if not ids:
            return []
        raws = self._redis.hmget(self._key("parked", target, "msgs"), ids)
        return [(parked_id, msgspec.json.decode(raw)) for parked_id, raw in zip(ids, raws, strict=True)
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
        return bool(self._redis.set(self._key("lock", key), owner, nx=True, px=max(1, int(ttl_s * 1000))))

    def lock_release(self, key: str, owner: str) -> None:
        self._lock_release(keys=[self._key("lock", key)], args=[owner])

    # -- journeys -----------------------------------------------------------------------------------
    def _write_journey(self, record: JourneyRecord, mode: Literal["start", "put"]) -> bool:
        """Store the run and file it under its indexes, leaving those of the run it replaces;
        ``mode`` ``start`` does nothing (and returns False) when the run exists."""
        indexes = [self._key("journeys", field, getattr(record, field)) for field in _JOURNEY_INDEXED]
        keys = [self._key("journeys"), self._key("journeys", "by-start"), *indexes]
        args: list[bytes | str | float] = [record.id, msgspec.json.encode(record), record.started_at, mode,
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

    def close(self) -> None:
        self._redis.close()

    # -- the outcome ledger -------------------------------------------------------------------------
    def _outcome_update(self, correlation_id: str,
                        change: Callable[[OutcomeRecord | None], OutcomeRecord | None]) -> OutcomeRecord | None:
        """Apply ``change`` to the entry atomically: WATCH its key, read, and write in MULTI (redone if
        another worker wrote the entry in between); the entry written, or None when ``change`` kept it."""
        key = self._key("outcome", correlation_id)
        written: list[OutcomeRecord | None] = [None]

        def apply(pipe: redis.client.Pipeline) -> None:
            before = _decode_one(OutcomeRecord, pipe.get(key))
            written[0] = after = change(before)
            pipe.multi()
            if after is None:
                return
            pipe.set(key, msgspec.json.encode(after))
            pipe.zadd(self._key("outcomes", "by-time"), {correlation_id: after.received_at})
            if before is None or (before.outcome, before.source) != (after.outcome, after.source):
                if before is not None:
                    pipe.hincrby(self._key("outcomes", "count"), _field(before.outcome, before.source), -1)
                pipe.hincrby(self._key("outcomes", "count"), _field(after.outcome, after.source), 1)

        self._redis.transaction(apply, key)
        return written[0]

    def outcome_open(self, record: OutcomeRecord) -> bool:
        return self._outcome_update(record.correlation_id, lambda existing: concluded(record, time.time())
                                    if replaces(existing) else None) is not None

    def outcome_settle(self, correlation_id: str, token: str, part: OutcomePart | None,
                       follow_ons: list[str] | None = None, *, amend: bool = False) -> OutcomeRecord | None:
        return self._outcome_update(correlation_id, lambda record: None if record is None else settled(
            record, token, part, follow_ons or [], time.time(), amend=amend))

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
        return {cast(tuple[LedgerState, str], tuple(msgspec.json.decode(field))): int(count)
                for field, count in counts.items() if int(count)}


    # -- discarding dead letters --------------------------------------------------------------------
    def dlq_discard(self, letter_id: str, reason: str, at: float) -> bool:
        letter = self.dlq_get(letter_id)
        if letter is None:
            return False
        closed = msgspec.structs.replace(letter, state="discarded", discarded_at=at, discard_reason=reason)
        keys = [self._key("dlq"), self._key("dlq", "state"), self._key("dlq", "open"), self._key("dlq", "discarded")]
        return bool(self._dlq_discard(keys=keys, args=[letter_id, msgspec.json.encode(closed)]))

    # -- messages in flight -------------------------------------------------------------------------
    def inflight_put(self, message_id: str, message: dict[str, Any], due_at: float) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self._key("inflight", "msgs"), message_id, msgspec.json.encode(message))
        pipe.zadd(self._key("inflight"), {message_id: due_at})
        pipe.execute()

    def inflight_settle(self, message_id: str) -> None:
        pipe = self._redis.pipeline()
        pipe.zrem(self._key("inflight"), message_id)
        pipe.hdel(self._key("inflight", "msgs"), message_id)
        pipe.execute()

    def inflight_overdue(self, before: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        ids = cast(list[bytes], self._redis.zrange(self._key("inflight"), "-inf", f"({before}", byscore=True,
                                                   offset=0, num=limit))
        if not ids:
            return []
        raws = cast(list[bytes | None], self._redis.hmget(self._key("inflight", "msgs"), ids))
        return [(_text(message_id), msgspec.json.decode(raw)) for message_id, raw in zip(ids, raws, strict=True)
                if raw is not None]

    def inflight_count(self) -> int:
        return int(self._redis.zcard(self._key("inflight")))


def _field(*parts: str) -> bytes:
    """An unambiguous hash field for a compound key: the JSON array of its parts."""
    return msgspec.json.encode(parts)


def _external_id(link: bytes | str) -> str:
    """The external id in a link, the JSON ``["entity type", "system", "external id"]``."""
    return cast(str, msgspec.json.decode(link)[2])


def _decode_one(cls: type[R], raw: bytes | str | None) -> R | None:
    return None if raw is None else msgspec.json.decode(raw, type=cls)


def _decode_all(cls: type[R], raws: Sequence[bytes | str | None]) -> list[R]:
    """The records among ``raws``, skipping the missing (None) ones."""
    return [msgspec.json.decode(raw, type=cls) for raw in raws if raw is not None]


def _matches(record: msgspec.Struct, wanted: dict[str, Any]) -> bool:
    return all(getattr(record, name) == value for name, value in wanted.items() if value is not None)


def _circuit(target: str, failures: bytes | str | None, opened_at: bytes | str | None) -> Circuit:
    return Circuit(target=target, status="closed" if opened_at is None else "open",
                   failures=int(failures or 0), opened_at=None if opened_at is None else float(opened_at))


def _text(reply: bytes | str) -> str:
    """A reply as text. redis-py types replies ``bytes | str``; this client never decodes, so bytes."""
    return cast(bytes, reply).decode()
