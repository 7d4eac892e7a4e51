"""One reconciliation run: read, match, classify, keep.

Which systems are compared is derived, not configured: for each entity type some connector lists,
the **source** is the system that owns the entity's key field group (a customer's ``profile``, a
document's ``document``) under the ownership rules, and the **targets** are the systems the hub
routes that entity to from the source and that list it too. With Stripe and NetSuite that is
Stripe's customers and invoices against NetSuite's; add Salesforce and the CRM becomes the source
of customers.

Each system's records of an entity type are read into a *listing* in the store, page by page, the
run kept after each page with the cursor of the next (:meth:`Reconciler.run` says when a read is
incremental). For each (entity, source, target) :class:`Pair`:

1. the target's listing is held as projections by canonical id: the id the record is marked with,
   else the hub's cross-reference of its id; a record with neither is held by its business key (an
   invoice number typed again by hand);
2. the source's listing streams past: each record takes what the target has under its canonical id and its
   business key. Nothing: ``missing``. Two or more: ``duplicate``. One: its values are compared,
   and each differing field group is judged by its rule: the owner's value is right, the other
   system drifted (``amount_mismatch`` for totals and currency, ``status_mismatch`` for open or
   settled and what remains owed, ``field_drift`` for anything else);
3. what the target still holds that no source record claimed is an ``orphan``;
4. documents are summed per currency and period on both sides: a difference is a ``balance``
   finding, the way a payout reconciliation reads.

A finding's ``id`` hashes what the difference is about (class, entity, subject, system, and the
fields or ids involved), never the values, so the same difference keeps its id, and its age, from
run to run.
"""

import hashlib
import itertools
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, get_args

import msgspec
from crossledger.canonical.entities import ENTITY_TYPES, canonical_id
from crossledger.canonical.money import format_money, money
from crossledger.core.hub.pipeline import DEPENDENCY_EVENTS, Bound
from crossledger.core.store.base import FindingClass, FindingRecord, Listing, ReconciliationRun, Store
from crossledger.core.telemetry import metrics, safelog
from crossledger.plugins.connector import ListsPages
from crossledger.plugins.errors import Category
from crossledger.plugins.types import Capability, Page, Projection

if TYPE_CHECKING:
    from crossledger.core.hub.runtime import Runtime

log = logging.getLogger(__name__)

FINDING_CLASSES: tuple[FindingClass, ...] = get_args(FindingClass)

KEY_GROUPS = {"customer": "profile", "contact": "profile"}
"""The field group whose owner is an entity's system of record for reconciliation (else ``document``)."""

VALUE_CLASSES: dict[str, FindingClass] = {"total": "amount_mismatch", "currency": "amount_mismatch",
                                          "status": "status_mismatch", "amount_remaining": "status_mismatch"}
"""The class of a difference in a projected value; any other value that differs is ``field_drift``."""

VALUE_GROUPS = {"amount_remaining": "status"}
"""Projected values that are no canonical field, and the field group that decides them."""

GOLDEN_STATUSES = {"issued": "open", "uncollectible": "open", "paid": "settled", "void": "settled"}
"""A canonical invoice status as the ledger reads it (the ``status`` of a projection)."""

EVENT_TYPES = {**DEPENDENCY_EVENTS, "refund": "refund.issued"}
"""The event that carries an entity to its targets: what its routes are looked up by, and what a
``deliver`` repair sends."""

PAGE_SIZE = 100
"""Records a page of a connector without :class:`~crossledger.plugins.connector.ListsPages` is kept
by (its ``records`` pages as it likes; the run keeps what it read every this many)."""
SINCE_OVERLAP_S = 120.0
"""How far before the last read an incremental read starts: clocks of the hub and a system disagree
by seconds, a write commits a moment after the time it is stamped with, and Zendesk's export leaves
out its latest minute. Records read twice cost little; one missed is a difference never seen."""
RATE_LIMIT_WAITS = 5
"""How many times a page is asked for again when the system says it is rate limited."""
RATE_LIMIT_WAIT_S = 60.0
"""The longest a run waits for a rate limit at once (a system may name hours: the run stops then)."""
FULL_EVERY_S = 86_400.0
"""How old the last full run may be before the default run (``crossledger reconcile`` without
``--since``, the schedule, ``POST /v1/reconciliations`` with ``{}``) is full again: deletions are found
by full runs."""
RUN_LEASE = "reconcile:run"
"""The store lease every run holds (scheduled, ``crossledger reconcile``, ``POST /v1/reconciliations``):
one run at a time, across processes."""
RUN_LEASE_TTL_S = 3600.0
"""How long the lease lasts from the last page a run read (it is renewed after every page and every
comparison): far longer than any one page or comparison; a process that dies mid-run frees it after this."""


class ReconciliationBusy(Exception):
    """Another run holds the lease: this one does not start."""


class LeaseLost(ReconciliationBusy):
    """The run's lease ran out (a page or a comparison took longer than :data:`RUN_LEASE_TTL_S`) and
    another run may hold it now: this one stops without writing again; the run is resumed from its
    last page kept."""


@dataclass(frozen=True)
class Pair:
    """One comparison: ``entity`` records of ``source`` (the system of record) against ``target``'s."""

    entity: str
    source: str
    target: str


@dataclass
class RunReport:
    """A finished run and its findings."""

    run: ReconciliationRun
    findings: list[FindingRecord]


_PACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder(Projection)


@dataclass
class _Held:
    """What one downstream system holds of an entity type: by canonical id, else by business key,
    else loose; and its documents' totals per (currency, period).

    This is the one index a run keeps (the source streams past it), so a projection is held packed
    (MessagePack: its id, mark, key, time, period and the few compared values, about 150 bytes for
    an invoice) and unpacked only when a source record takes it."""

    by_subject: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    by_key: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    loose: list[bytes] = field(default_factory=list)
    sums: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def take(self, subject: str, key: str | None) -> list[Projection]:
        """Every record held for ``subject``, and any held by nothing but the same business key."""
        return unpacked(self.by_subject.pop(subject, []) + (self.by_key.pop(key, []) if key else []))


def unpacked(held: Iterable[bytes]) -> list[Projection]:
    return [_UNPACK.decode(packed) for packed in held]


def _add(sums: dict[tuple[str, str], int], projection: Projection) -> None:
    """Count a document's total in its (currency, period)."""
    total, currency = projection.values.get("total"), projection.values.get("currency")
    if projection.period and isinstance(total, int) and isinstance(currency, str):
        sums[(currency, projection.period)] += total


class Reconciler:
    """Runs reconciliations for a runtime's configured systems (see the module doc)."""

    def __init__(self, runtime: "Runtime", *, page_size: int | None = None,
                 overlap_s: float = SINCE_OVERLAP_S) -> None:
        self.runtime = runtime
        self.store: Store = runtime.store
        self.page_size = page_size
        self.overlap_s = overlap_s
        self._owners = {(rule.entity, rule.field_group): rule.owner for rule in runtime.policy.effective()}
        self._lease_owner = ""  # the run's, while it runs (see run)

    # -- what is compared ------------------------------------------------------------------------
    def listing(self) -> dict[str, Bound]:
        """The connectors that list records for reconciliation."""
        return {name: bound for name, bound in self.runtime.connectors.items()
                if Capability.LIST in bound.connector.capabilities}

    def pairs(self) -> list[Pair]:
        """Every (entity, system of record, downstream system) the configuration implies."""
        listing = self.listing()
        pairs: list[Pair] = []
        for entity in sorted({e for bound in listing.values() for e in bound.connector.lists}):
            source = self.owner(entity, KEY_GROUPS.get(entity, "document"))
            if source is None or source not in listing or entity not in listing[source].connector.lists:
                continue
            routed = self.runtime.router.targets(EVENT_TYPES.get(entity, f"{entity}.upserted"), source)
            pairs += [Pair(entity, source, target) for target in routed
                      if target in listing and entity in listing[target].connector.lists]
        return pairs

    def owner(self, entity: str, group: str) -> str | None:
        return self._owners.get((entity, group))

    def rule(self, entity: str, group: str) -> str:
        owner = self.owner(entity, group)
        return f"{entity}.{group}: {owner} is the system of record" if owner else f"{entity}.{group}: no owner"

    # -- a run -----------------------------------------------------------------------------------
    def run(self, *, since: float | None = None) -> RunReport:
        """Read what changed, compare every pair; keep the run and its findings; set the findings gauge.

        Without ``since`` the run is full: every system is read in full. With ``since`` (Unix
        seconds) it is incremental: each system is read since its last finished read (or ``since``,
        the earlier of the two), less :data:`SINCE_OVERLAP_S`, where its connector filters by
        "changed since" (:class:`~crossledger.plugins.connector.ListsPages`), and what it read is laid
        over what the store keeps of that last read; a system that cannot filter, or has no finished
        read yet, is read in full. The comparison is then of the whole of both sides, so a change made
        after the last run in either system is found, and a hand-made copy too; a record deleted in a
        system that filters is in no "changed since" answer, so deletions there are found by full
        runs. An amount or field that differs is reported when a record involved changed since
        ``since`` or the difference is still open from the last run; every other class always.

        The run is kept after every page it reads, with each listing's cursor, and after each
        comparison of one entity type (its system of record against every target). A run that stops
        before the end (a system down, the process killed) is resumed by the next with the same
        ``since``: the same run, its finished comparisons kept, each listing read on from the page
        after the last it finished. Raises :class:`ReconciliationBusy` while another run is under way.

        The run's lease is renewed after every page read and before every save of a comparison: a
        run that finds it lost (:class:`LeaseLost`) stops there, before writing what it read, since
        another run may be writing the same run now."""
        owner = uuid.uuid4().hex
        if not self.store.lock_acquire(RUN_LEASE, owner, RUN_LEASE_TTL_S):
            raise ReconciliationBusy("a reconciliation is already running: try again when it has finished")
        self._lease_owner = owner
        try:
            return self._run(since)
        finally:
            self.store.lock_release(RUN_LEASE, owner)

    def _keep_lease(self) -> None:
        """Renew the run's lease for another :data:`RUN_LEASE_TTL_S`; :class:`LeaseLost` when it ran out."""
        if not self.store.lock_renew(RUN_LEASE, self._lease_owner, RUN_LEASE_TTL_S):
            raise LeaseLost("this reconciliation's lease ran out and another run may have taken it over: "
                            "it stopped, and the next run resumes it")

    def _run(self, since: float | None) -> RunReport:
        last = latest_finished(self.store)
        kept = {key: listing for key, listing in (last.listings if last else {}).items() if listing.done}
        run, findings = self._resumed(since, kept) or (ReconciliationRun(id=uuid.uuid4().hex, started_at=time.time(),
                                                                         since=since), [])
        self.store.reconciliation_put(run, findings)
        previous = self._previous_first_seen()
        counts: dict[str, int] = defaultdict(int, run.counts)
        pairs = self.pairs()
        compared: dict[tuple[str, str], list[str]] = defaultdict(list)
        for pair in pairs:
            compared[(pair.entity, pair.source)].append(pair.target)
        for (entity, source), targets in compared.items():
            step = f"{entity}:{source}"
            if step in run.checkpoint:
                continue
            try:
                for system in (*targets, source):
                    run = self._read(run, system, entity, kept.get(f"{system}.{entity}"), counts)
                findings += [f for f in self._compare(entity, source, targets, run)
                             if f.id in previous or _within(f, since)]
            except LeaseLost:
                raise  # the run may be another's now: nothing more written
            except Exception as error:
                # Kept as it stood after its last page and its last finished comparison, which the next
                # run with the same `since` resumes from. The text kept (and logged) is what safelog
                # allows: a connector's classified error keeps its reason, any other exception its
                # type, never the record values it may quote.
                read = self.store.reconciliation_get(run.id) or run  # with the pages read before the stop
                failed = msgspec.structs.replace(read, state="failed", finished_at=time.time(),
                                                 error=safelog.exception_text(error))
                self.store.reconciliation_put(failed)
                log.warning("reconciliation %s failed in %s: %s", run.id, step, failed.error)
                raise
            run = msgspec.structs.replace(run, counts=dict(counts), checkpoint=[*run.checkpoint, step])
            self._keep_lease()
            self.store.reconciliation_put(run, findings)
        findings = [msgspec.structs.replace(f, first_seen=previous.get(f.id, f.first_seen)) for f in findings]
        by_class: dict[str, int] = defaultdict(int)
        for finding in findings:
            by_class[finding.cls] += 1
        done = msgspec.structs.replace(run, state="done", finished_at=time.time(), counts=dict(counts),
                                       findings=dict(by_class))
        self._keep_lease()
        self.store.reconciliation_put(done, findings)
        self._drop_unused(kept, done.listings)
        _gauge(findings, self.runtime.connectors)
        log.info("reconciliation %s: %d findings over %d pairs", run.id, len(findings), len(pairs))
        return RunReport(done, findings)

    def _resumed(self, since: float | None,
                 kept: dict[str, Listing]) -> tuple[ReconciliationRun, list[FindingRecord]] | None:
        """The latest run, running again, with the findings of the comparisons it finished, when it
        stopped before the end (it failed, or its process died: this run holds the lease, so no other
        is running) after reading something, and compared as this run would (the same ``since``);
        else None, and the run starts afresh (what the stopped run read for itself is dropped)."""
        latest = next(iter(self.store.reconciliations(limit=1)), None)
        if latest is None or latest.state == "done":
            return None
        if latest.since != since or not (latest.checkpoint or latest.listings):
            self._drop_unused(latest.listings, kept)
            return None
        log.info("reconciliation %s resumes after %s", latest.id,
                 ", ".join(latest.checkpoint) or "its last page")
        return (msgspec.structs.replace(latest, state="running", finished_at=None, error=None),
                self.store.reconciliation_findings(latest.id))

    def _drop_unused(self, old: dict[str, Listing], now: dict[str, Listing]) -> None:
        """Forget the kept reads of ``old`` that ``now`` no longer stands on."""
        standing = {listing.generation for listing in now.values()}
        for generation in {listing.generation for listing in old.values()} - standing:
            self.store.listing_drop(generation)

    def _previous_first_seen(self) -> dict[str, float]:
        """When each finding of the latest finished run was first seen."""
        latest = latest_finished(self.store)
        return {} if latest is None else {f.id: f.first_seen for f in self.store.reconciliation_findings(latest.id)}

    # -- reading -----------------------------------------------------------------------------------
    def _read(self, run: ReconciliationRun, system: str, entity: str, last: Listing | None,
              counts: dict[str, int]) -> ReconciliationRun:
        """Read ``system``'s ``entity`` records into the store, page by page, keeping the run after
        each page with the cursor of the next (see :meth:`run`); the run as it stands after the last."""
        key = f"{system}.{entity}"
        listing = run.listings.get(key) or self._plan(run, system, entity, last)
        bound = self.runtime.connectors[system]
        for page in self._pages(system, entity, listing):
            self._keep_lease()  # before the page is kept: lost, the run may be another's now
            items: list[tuple[str, bytes | None]] = []
            for record in page.records:
                projection = bound.connector.project(entity, record)
                if projection is not None:
                    items.append((projection.id, _PACK.encode(projection)))
                elif isinstance(gone := record.get("id", record.get("Id")), str | int):
                    items.append((str(gone), None))  # outside the books now (a draft again, cancelled)
            self.store.listing_put(listing.generation, items)
            if page.records:
                counts[key] += len(page.records)
            listing = msgspec.structs.replace(listing, cursor=page.next, done=page.next is None)
            run = msgspec.structs.replace(run, counts=dict(counts), listings={**run.listings, key: listing})
            self.store.reconciliation_put(run)
        return run

    def _plan(self, run: ReconciliationRun, system: str, entity: str, last: Listing | None) -> Listing:
        """How this run reads ``system``'s ``entity``: since the last finished read (less the overlap)
        into what that read kept, when the run is incremental and the connector filters; else in full
        into a generation of the run's own."""
        connector = self.runtime.connectors[system].connector
        filters = isinstance(connector, ListsPages) and entity in connector.lists_since
        if run.since is not None and last is not None and filters:
            since = min(run.since, last.read_at) - self.overlap_s
            return Listing(generation=last.generation, read_at=run.started_at, since=since)
        return Listing(generation=f"{run.id}:{system}.{entity}", read_at=run.started_at)

    def _pages(self, system: str, entity: str, listing: Listing) -> Iterator[Page]:
        """The pages still to read, from ``listing.cursor``: through ``records_page`` when the
        connector has it; else its ``records`` in pages of :data:`PAGE_SIZE`, whose cursor is how many
        were read (a resumed listing reads those again, and passes over them)."""
        if listing.done:
            return
        bound = self.runtime.connectors[system]
        connector = bound.connector
        if isinstance(connector, ListsPages):
            since = None if listing.since is None else datetime.fromtimestamp(listing.since, UTC)
            cursor = listing.cursor
            while True:
                page = self._patiently(system, partial(connector.records_page, bound.ctx, entity, cursor=cursor,
                                                       since=since, page_size=self.page_size))
                yield page
                if page.next is None:
                    return
                cursor = page.next
        read = int(listing.cursor or 0)
        records = itertools.islice(connector.records(bound.ctx, entity, page_size=self.page_size), read, None)
        size = self.page_size or PAGE_SIZE
        batch = list(itertools.islice(records, size))
        while True:
            following = list(itertools.islice(records, size))
            read += len(batch)
            yield Page(records=batch, next=str(read) if following else None)
            if not following:
                return
            batch = following

    def _patiently(self, system: str, read: Callable[[], Page]) -> Page:
        """One page, asked for again while the system says it is rate limited: after the
        ``Retry-After`` it names (1 s when it names none), at most :data:`RATE_LIMIT_WAITS` times and
        :data:`RATE_LIMIT_WAIT_S` a time; then the run stops, and the next resumes at this page."""
        connector = self.runtime.connectors[system].connector
        for attempt in range(RATE_LIMIT_WAITS + 1):
            try:
                return read()
            except Exception as error:
                classified = connector.classify(error)
                if classified.category is not Category.RATE_LIMITED or attempt == RATE_LIMIT_WAITS:
                    raise
                wait = min(classified.retry_after or 1.0, RATE_LIMIT_WAIT_S)
                log.info("reconciliation: %s is rate limited, asking again in %.0f s", system, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _projections(self, listing: Listing) -> Iterator[Projection]:
        """What a listing keeps, read back from the store."""
        for packed in self.store.listing_scan(listing.generation):
            yield _UNPACK.decode(packed)

    def _canonical(self, entity: str, system: str, projection: Projection) -> str | None:
        return projection.mark or self.store.xref_find(entity, system, projection.id)

    def _hold(self, entity: str, target: str, listing: Listing) -> "_Held":
        """What ``target`` holds of ``entity``: by canonical id (its mark, else the hub's
        cross-reference), else by business key."""
        held = _Held()
        for projection in self._projections(listing):
            _add(held.sums, projection)
            known = self._canonical(entity, target, projection)
            packed = _PACK.encode(projection)
            if known is not None:
                held.by_subject[known].append(packed)
            elif projection.key:
                held.by_key[projection.key].append(packed)
            else:
                held.loose.append(packed)
        return held

    def _compare(self, entity: str, source: str, targets: list[str],
                 run: ReconciliationRun) -> Iterator[FindingRecord]:
        """The source's records, as the run read them, against what each target holds (see the
        module doc)."""
        rule = self.rule(entity, KEY_GROUPS.get(entity, "document"))
        held = {target: self._hold(entity, target, run.listings[f"{target}.{entity}"]) for target in targets}
        makers = {target: _Maker(Pair(entity, source, target), run.id, rule) for target in targets}
        billed: dict[tuple[str, str], int] = defaultdict(int)
        for projection in self._projections(run.listings[f"{source}.{entity}"]):
            _add(billed, projection)
            subject = self._canonical(entity, source, projection) or canonical_id(entity, source, projection.id)
            for target, downstream in held.items():
                yield from self._judge(makers[target], subject, projection, downstream.take(subject, projection.key))
        for target, downstream in held.items():
            finding = makers[target]
            for subject, projections in downstream.by_subject.items():
                for projection in unpacked(projections):
                    yield finding.make("orphan", subject, {target: _shown(projection)},
                                       f"{target} {entity} {projection.id} is for {subject}, which {source} no "
                                       "longer has", None, discriminator=projection.id)
            for projection in unpacked([p for group in downstream.by_key.values() for p in group] + downstream.loose):
                yield finding.make("orphan", canonical_id(entity, target, projection.id), {target: _shown(projection)},
                                   f"{target} {entity} {projection.id} matches no {source} record", None,
                                   discriminator=projection.id)
            for currency, period in sorted(set(billed) | set(downstream.sums)):
                expected, booked = billed.get((currency, period), 0), downstream.sums.get((currency, period), 0)
                if expected != booked:
                    yield finding.balance(currency, period, expected, booked)

    def _judge(self, finding: "_Maker", subject: str, projection: Projection,
               found: list[Projection]) -> Iterator[FindingRecord]:
        """One source record against what one target holds for it."""
        entity, source, target = finding.pair.entity, finding.pair.source, finding.pair.target
        if not found:
            yield finding.make("missing", subject, {source: _shown(projection)},
                               f"{target} has no {entity} for {source} {projection.id}",
                               self._resync(finding.pair, subject, projection))
        elif len(found) > 1:
            # Sorted: the order a listing is read back in is the store's (Redis's hash order moves
            # when it restarts or resizes), and the finding's id, its age and its triage hang on it.
            ids = ", ".join(sorted(p.id for p in found))
            yield finding.make("duplicate", subject, {source: _shown(projection), target: [_shown(p) for p in found]},
                               f"{target} has {len(found)} {entity} records for {source} {projection.id}: {ids}; "
                               f"the hub never deletes: remove the copies in {target} by hand", None,
                               discriminator=ids)
        else:
            yield from self._differences(finding.pair, finding, subject, projection, found[0])

    def _differences(self, pair: Pair, finding: "_Maker", subject: str, source: Projection,
                     target: Projection) -> Iterator[FindingRecord]:
        """One finding per class of the values that differ, judged by their field groups' owners."""
        differing: dict[FindingClass, list[str]] = defaultdict(list)
        for name, value in source.values.items():
            if name in target.values and value is not None and target.values[name] != value:
                differing[VALUE_CLASSES.get(name, "field_drift")].append(name)
        groups = ENTITY_TYPES[pair.entity].field_groups
        for cls, names in differing.items():
            group = VALUE_GROUPS.get(names[0]) or next((g for g, fields in groups.items() if names[0] in fields),
                                                       "document")
            owner = self.owner(pair.entity, group)
            right = owner if owner in (pair.source, pair.target) else pair.source
            wrong = pair.target if right == pair.source else pair.source
            repair = self._resync(pair, subject, source) if right == pair.source else None
            values = "; ".join(f"{n}: {pair.source} {readable(n, source.values)}, "
                               f"{pair.target} {readable(n, target.values)}" for n in names)
            yield finding.make(cls, subject, {pair.source: _shown(source), pair.target: _shown(target)},
                               f"{', '.join(names)} differ ({values}); {right} is right, {wrong} drifted",
                               repair, discriminator=",".join(names), rule=self.rule(pair.entity, group),
                               system=wrong)

    # -- proposed repairs --------------------------------------------------------------------------
    def _resync(self, pair: Pair, subject: str, source: Projection) -> dict[str, Any] | None:
        """How to bring ``pair.target`` in line with the source: deliver the hub's golden record when
        it agrees with the source; else, when the source can, recover the event the hub missed (its
        delivery then follows the routes); else nothing the hub can do."""
        golden = self.store.golden_get(subject)
        if golden is not None and _agrees(pair.entity, golden.data, source):
            return {"action": "deliver", "target": pair.target, "subject": subject, "entity": pair.entity}
        if Capability.RECOVER in self.runtime.connectors[pair.source].connector.capabilities:
            return {"action": "recover", "source": pair.source, "entity": pair.entity, "id": source.id,
                    "subject": subject}
        return None


@dataclass(frozen=True)
class _Maker:
    """Builds the findings of one pair."""

    pair: Pair
    run_id: str
    key_rule: str

    def make(self, cls: FindingClass, subject: str, records: dict[str, Any], detail: str,
             repair: dict[str, Any] | None, *, discriminator: str = "", rule: str | None = None,
             system: str | None = None) -> FindingRecord:
        system = system or self.pair.target
        return FindingRecord(id=finding_id(cls, self.pair.entity, subject, system, discriminator), run_id=self.run_id,
                             cls=cls, entity=self.pair.entity, subject=subject, system=system, records=records,
                             rule=rule or self.key_rule, detail=detail, first_seen=time.time(), repair=repair)

    def balance(self, currency: str, period: str, billed: int, booked: int) -> FindingRecord:
        source, target = self.pair.source, self.pair.target
        subject = f"balance/{self.pair.entity}/{currency}/{period}"
        records = {source: {"id": None, "values": {"currency": currency, "period": period, "total": billed}},
                   target: {"id": None, "values": {"currency": currency, "period": period, "total": booked}}}
        return FindingRecord(
            id=finding_id("balance", self.pair.entity, subject, target, ""), run_id=self.run_id, cls="balance",
            entity=self.pair.entity, subject=subject, system=target, records=records, rule=self.key_rule,
            detail=f"{self.pair.entity} totals for {period}: {source} {format_money(money(billed, currency))}, "
                   f"{target} {format_money(money(booked, currency))} (the other findings explain the difference)",
            first_seen=time.time())


MONEY_VALUES = frozenset({"total", "amount_remaining"})
"""Projected values in minor units of the projection's ``currency``."""


def readable(name: str, values: dict[str, Any]) -> str:
    """A projected value as people read it: money as ``2,807.00 USD``, text quoted."""
    value, currency = values.get(name), values.get("currency")
    if name in MONEY_VALUES and isinstance(value, int) and isinstance(currency, str):
        return format_money(money(value, currency))
    return repr(value)


def latest_finished(store: Store, *, full: bool = False) -> ReconciliationRun | None:
    """The newest run that finished (a running or failed one is passed over, however many there
    are since); with ``full``, the newest finished full run. What an incremental run lays its reads
    over and keeps its open differences from, and where the default run starts: one answer for all."""
    return store.reconciliation_latest_done(full=full)


def default_since(store: Store, *, full_every_s: float = FULL_EVERY_S) -> float | None:
    """Where an incremental run starts: when the last finished run started. None, a full run, when
    none has finished, or when the last finished full run is ``full_every_s`` old or more (or was
    never made): a deletion is in no system's "changed since" answer, so a full run is what finds
    it, and the default makes one that often."""
    latest = latest_finished(store)
    if latest is None:
        return None
    full = latest if latest.since is None else latest_finished(store, full=True)
    if full is None or time.time() - full.started_at >= full_every_s:
        return None
    return latest.started_at


def finding_id(cls: str, entity: str, subject: str, system: str, discriminator: str) -> str:
    """Stable for one difference across runs (values left out: they may change, the difference stays)."""
    return hashlib.sha256(f"{cls}|{entity}|{subject}|{system}|{discriminator}".encode()).hexdigest()[:20]


def _agrees(entity: str, golden: dict[str, Any], source: Projection) -> bool:
    """Whether the hub's golden record holds the source's projected values (those it has)."""
    held = golden_values(entity, golden)
    return all(held[name] == value for name, value in source.values.items() if name in held and value is not None)


def golden_values(entity: str, data: dict[str, Any]) -> dict[str, Any]:
    """A golden record's values named as a projection names them."""
    values: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict) and set(value) == {"amount", "currency"}:
            values[name] = value["amount"]
        elif entity == "invoice" and name == "status":
            values[name] = GOLDEN_STATUSES.get(str(value))
        elif isinstance(value, str | int) or value is None:
            values[name] = value
    return values


def _shown(projection: Projection) -> dict[str, Any]:
    """A record as a finding shows it."""
    return {"id": projection.id, "values": projection.values, "changed_at": projection.changed_at}


def _within(finding: FindingRecord, since: float | None) -> bool:
    """Whether an incremental run since ``since`` keeps ``finding`` (see :meth:`Reconciler.run`): a
    record that is gone or copied, and a status (it moves when another record changes, a payment
    deleted, without the record's own time changing) are always news; a field or an amount that
    differs, when either side changed since then (a side that does not say when counts as changed).
    Systems stamp whole seconds, so the second ``since`` falls in counts as after it."""
    if since is None or finding.cls not in ("amount_mismatch", "field_drift"):
        return True
    return any(record.get("changed_at") is None or record["changed_at"] >= math.floor(since)
               for record in finding.records.values())


def _gauge(findings: list[FindingRecord], systems: Iterable[str]) -> None:
    """The latest run's findings by class and system (zero where it found none)."""
    counted: dict[tuple[str, str], int] = defaultdict(int)
    for finding in findings:
        counted[(finding.cls, finding.system)] += 1
    for cls in FINDING_CLASSES:
        for system in systems:
            metrics.reconciliation_findings.labels(cls, system).set(counted.get((cls, system), 0))


def report_json(report: RunReport) -> dict[str, Any]:
    """``{"run": {...}, "findings": [...]}``: each finding with its ``age`` in seconds at the run's end."""
    run = report.run
    end = run.finished_at or time.time()
    findings = []
    for finding in report.findings:
        shown = msgspec.to_builtins(finding)
        shown["age"] = round(max(0.0, end - finding.first_seen), 3)
        findings.append(shown)
    return {"run": msgspec.to_builtins(run) | {"started": _iso(run.started_at)}, "findings": findings}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
