"""The runtime: one object that wires settings, plugins, store, broker and pipeline together.

Every process builds one: the web process to accept webhooks and enqueue, worker processes to run
the actors (:mod:`crossledger.actors` declares them on :attr:`Runtime.broker` and binds their
:class:`~crossledger.core.hub.outbox.Outbox` with :meth:`Runtime.bind`), the embedded mode both.

Calls point one way: an actor calls the runtime; the runtime calls the pipeline (which returns what
became of a delivery and what follows from it, and calls nothing above it), hands outcomes to the
journey engine (:meth:`~crossledger.core.journeys.engine.Engine.on_outcome`), and sends through the
outbox. The middleware (:mod:`crossledger.core.messaging.retries`, :mod:`~crossledger.core.messaging.middleware`)
calls the runtime through the narrow interfaces it declares.
"""

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import dramatiq
import httpx
import msgspec
from crossledger.canonical.entities import ENTITY_TYPES
from crossledger.canonical.versions import CURRENT_VERSIONS
from crossledger.core.hub.ledger import Ledger, discarded
from crossledger.core.hub.outbox import AnyMessage, Carried, JourneyReply, MessageContext, Outbox, Unbound
from crossledger.core.hub.pipeline import Bound, Pipeline, effect, noop
from crossledger.core.hub.policy import OwnershipPolicy
from crossledger.core.hub.roles import Roles
from crossledger.core.hub.router import Router
from crossledger.core.ingress.refusals import Refused, check_portable
from crossledger.core.journeys.engine import Engine, JourneySettings, StepExhausted, StepRetry, WriteFailed, Written
from crossledger.core.messaging.broker import build_broker
from crossledger.core.messaging.circuits import CircuitBreaker, Circuits
from crossledger.core.messaging.dead_letters import DeadLetters
from crossledger.core.messaging.middleware import Recovery
from crossledger.core.messaging.retries import Retries, RetryPolicy
from crossledger.core.settings import ConfigError, Settings, connector_settings
from crossledger.core.store import open_store
from crossledger.core.store.base import AuditRecord, DeadLetter, OutcomePart, Store, Unit
from crossledger.core.telemetry import metrics, safelog
from crossledger.core.telemetry.alerts import init_sentry
from crossledger.plugins.connector import AnswersHandshakes, ReadsJsonWebhooks, TakesSomeEvents
from crossledger.plugins.errors import (
    Category,
    ConnectorError,
    PayloadError,
    SchemaError,
    SignatureError,
    exception_reason,
)
from crossledger.plugins.journey_definition import Journey
from crossledger.plugins.manager import CrossledgerPluginManager, load_plugins
from crossledger.plugins.types import Capability, Context, Headers, InboundEvent, OwnershipRule, SystemKind
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import CurrentMessage

log = logging.getLogger(__name__)

DRAIN_BATCH = 200
REDRIVE_BATCH = 1000
BROKER_OPTIONS = ("redis_message_id", "eta")
"""Message options a broker sets for itself on enqueue: not part of the message the hub sent."""


class ReplaySelection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which logged events to replay: every given filter applies; times are Unix seconds."""

    source: str | None = None
    type: str | None = None
    since: float | None = None
    until: float | None = None
    targets: list[str] | None = None


class WebhookRejected(Refused):
    """A webhook the hub refuses; ``status`` is the HTTP answer (see :mod:`crossledger.core.ingress.refusals`)."""


#: What a connector's parser raises on a body it cannot read (deep nesting, a timestamp out of range,
#: invalid text), besides its own PayloadError: the body's fault, so a 400, never a 5xx to retry.
MALFORMED = (ValueError, RecursionError, OverflowError, UnicodeError, msgspec.DecodeError)
_JSON = msgspec.json.Decoder()
"""Webhook bodies, decoded once (:meth:`Runtime.accept_webhook`)."""


class Runtime:
    def __init__(self, settings: Settings, *, plugins: CrossledgerPluginManager | None = None,
                 store: Store | None = None) -> None:
        safelog.install()  # before anything logs: every process builds a runtime
        self.settings = settings
        self._local = threading.local()
        hub = settings.hub
        self.plugins = plugins or load_plugins()
        self.store = store or _open(hub.store, hub.namespace)
        self.connectors = self._bind_connectors()
        check_references(settings, self.connectors)
        kinds = {name: str(bound.connector.kind) for name, bound in self.connectors.items()}
        rules = list(self.plugins.ownership_rules())
        for key, entry in settings.ownership.items():
            entity, group = key.split(".", 1)  # the key's pattern has exactly one dot
            rules.append(OwnershipRule(entity, group, owners=tuple(entry.owners), on_violation=entry.on_violation))
        self.roles = Roles(kinds, settings.topology)
        self.policy = OwnershipPolicy(rules, self.roles)
        deliverable = {n for n, b in self.connectors.items() if Capability.DELIVER in b.connector.capabilities}
        takes = {n: b.connector.takes for n, b in self.connectors.items() if isinstance(b.connector, TakesSomeEvents)}
        self.router = Router(self.plugins.routes(), settings.routes, deliverable, self.roles, takes)
        self.pipeline = Pipeline(
            store=self.store, plugins=self.plugins, connectors=self.connectors, policy=self.policy,
            router=self.router, lease_ttl_s=hub.lease_ttl_s,
        )
        self.circuits = Circuits(self.store, threshold=hub.circuit_threshold,
                                 stale_open_s=max(30.0, hub.circuit_cooldown_s * 10))
        self.ledger = Ledger(self.store)
        self.outbox = cast(Outbox, Unbound())
        self.journeys = Engine(
            store=self.store, pipeline=self.pipeline, journeys=self.plugins.journeys, roles=self.roles,
            settings=journey_settings(settings, self.plugins.journeys), outbox=self.outbox, ledger=self.ledger,
        )
        self.dead_letters = DeadLetters(self.store, self.ledger, about=self.about,
                                        notify=self.plugins.notify)
        if hub.sentry_dsn is not None:
            init_sentry(hub.sentry_dsn.get_secret_value())
        policy = RetryPolicy(max_retries=hub.max_retries, min_backoff_ms=hub.min_backoff_ms,
                             max_backoff_ms=hub.max_backoff_ms, max_age_s=hub.max_age_s)
        # The breaker after Retries: Dramatiq calls ``after_*`` hooks in reverse order, so a failure
        # has counted towards its target's circuit before Retries asks whether to park it (retry).
        middleware = [Retries(self, policy, patience_s=hub.redrive_after_s),
                      Recovery(self.recover_messages, on_boot=self.recover_at_boot,
                               interval_s=min(hub.redrive_after_s / 2, 60.0)),
                      CircuitBreaker(self, self.circuits)]
        try:
            self.broker = build_broker(
                hub.broker, namespace=hub.namespace, middleware=middleware,
                time_limit_ms=hub.time_limit_s * 1000, heartbeat_timeout_ms=hub.redis_heartbeat_timeout_ms,
                maintenance_chance=hub.redis_maintenance_chance, retry_s=hub.redis_retry_s,
            )
        except ValueError as error:
            raise ConfigError(f"[hub] broker: {error}") from None

    def _bind_connectors(self) -> dict[str, Bound]:
        available = self.plugins.connectors
        bound: dict[str, Bound] = {}
        for name, raw in self.settings.connectors.items():
            if name not in available:
                known = ", ".join(sorted(available)) or "none"
                raise ConfigError(f"[connectors.{name}]: no such connector is installed (installed: {known})")
            connector = available[name]
            settings = connector_settings(connector.settings_model, name, raw)
            timeout = float(getattr(settings, "timeout_s", 10.0))
            http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
            bound[name] = Bound(connector, Context(settings=settings, http=http, clock=time.time))
        return bound

    # -- sending ------------------------------------------------------------------------------------
    def bind(self, outbox: Outbox) -> None:
        """Send through ``outbox`` (the actors', :func:`crossledger.actors.declare`)."""
        self.outbox = self.journeys.outbox = outbox

    def dispatch(self, message: dramatiq.Message[Any], delay_ms: int | None = None) -> None:
        """Record ``message`` among the messages in flight, due after ``delay_ms``, then
        enqueue it. It stays there until it settles (:meth:`settle`), so one the broker loses is
        found by :meth:`recover_messages`; one recorded and never enqueued (a failure in between)
        is found the same way. Sent while a message is handled (:meth:`handling`), it is recorded in
        that message's commit and enqueued after it."""
        outbox: list[tuple[dramatiq.Message[Any], int | None]] | None = getattr(self._local, "outbox", None)
        if outbox is not None:
            outbox.append((message, delay_ms))
            return
        self.store.inflight_put(message.message_id, _inflight_record(message), time.time() + (delay_ms or 0) / 1000)
        self.broker.enqueue(message, delay=delay_ms)

    def _composed(self, send: Callable[[], None]) -> dramatiq.Message[Any]:
        """The one message ``send`` sends through the outbox, composed but neither recorded in
        flight nor enqueued: the caller records it with its own write, then enqueues it."""
        held: list[tuple[dramatiq.Message[Any], int | None]] = []
        outer = getattr(self._local, "outbox", None)
        self._local.outbox = held
        try:
            send()
        finally:
            self._local.outbox = outer
        [(message, _)] = held
        return message

    def settle(self, message: AnyMessage) -> None:
        """``message`` has its outcome (handled, or dead-lettered, or reported to its journey);
        nothing to do when its handler's commit settled it already (:meth:`handling`)."""
        if getattr(self._local, "settled", None) == message.message_id:
            self._local.settled = None
            return
        self.store.inflight_settle(message.message_id)

    @contextmanager
    def handling(self, *, settle: bool = True) -> Iterator[Unit]:
        """One message's unit of work, for the actor handling it: what the block writes into the
        unit, and the messages it sends, are committed at its end in one round trip, with the message
        itself settled in that commit; only then are those messages enqueued. A crash before the
        commit leaves the message to run again; after it, the messages it sends are recorded in
        flight, and sent again by the recovery sweep (or by the embedded hub's start) if their
        enqueue never happened. When the block fails, what it recorded so far is committed (its
        audit records, the leases it holds, the calls it made: :meth:`Unit.failed`), and nothing it
        decided or meant to send is."""
        if getattr(self._local, "outbox", None) is not None:
            raise RuntimeError("one message is handled at a time in a thread")
        self._local.settled = None  # a mark left by a message that failed after its commit is done with
        unit = Unit()
        outbox: list[tuple[dramatiq.Message[Any], int | None]] = []
        self._local.outbox = outbox
        try:
            yield unit
        except BaseException:
            self._local.outbox = None
            unit.failed()
            self.store.commit(unit)
            raise
        self._local.outbox = None
        now = time.time()
        for message, delay_ms in outbox:
            unit.inflight_put(message.message_id, _inflight_record(message), now + (delay_ms or 0) / 1000)
        current = CurrentMessage.get_current_message() if settle else None
        handled = current.message_id if current is not None else None
        if handled is not None:
            unit.inflight_settle(handled)
        self.store.commit(unit)
        self._local.settled = handled
        self.ledger.committed(unit)
        for message, delay_ms in outbox:
            self.broker.enqueue(message, delay=delay_ms)

    def schedule_probe(self, target: str) -> None:
        delay = int(self.settings.hub.circuit_cooldown_s * 1000)
        log.warning("circuit for %s is open: parking its deliveries, probing in %d ms", target, delay)
        self.outbox.probe(target, delay)

    # -- webhooks -----------------------------------------------------------------------------------
    def accept_webhook(self, name: str, headers: Headers, body: bytes,
                       query: Mapping[str, str] | None = None) -> tuple[int, str, bytes]:
        """Verify, parse, dedupe and durably enqueue; the answer is the connector's own reply.

        Raises :class:`WebhookRejected` (404, 415, 401, 400, 422) or lets broker and store errors
        through (the HTTP layer answers 503 so the sender retries). ``headers`` have lower-case names.
        A request that is the system checking the endpoint (a subscription's validation handshake,
        told apart by a connector that :class:`AnswersHandshakes`) gets the connector's answer and
        admits nothing.
        """
        bound = self.connectors.get(name)
        if bound is None or Capability.WEBHOOKS not in bound.connector.capabilities:
            raise WebhookRejected(404, f"no connector {name!r} receives webhooks here")
        if isinstance(bound.connector, AnswersHandshakes) and \
                (answer := bound.connector.webhook_handshake(query or {}, headers, body)) is not None:
            return answer
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # Optional on a connector (BaseConnector declares none: any type is read).
        accepted: frozenset[str] = getattr(bound.connector, "webhook_media_types", frozenset())
        if media_type and accepted and media_type not in accepted:
            raise WebhookRejected(415, f"content type {media_type!r} is not one of {', '.join(sorted(accepted))}")
        try:
            bound.connector.verify_webhook(bound.ctx, headers, body)
            if media_type == "application/json" or (not media_type and body.lstrip()[:1] in (b"{", b"[")):
                document = _JSON.decode(body)
                check_portable(document)  # before any connector reads it
                if isinstance(bound.connector, ReadsJsonWebhooks):  # then it needs no second decode
                    events = bound.connector.parse_webhook_json(bound.ctx, headers, document)
                else:
                    events = bound.connector.parse_webhook(bound.ctx, headers, body)
            else:
                events = bound.connector.parse_webhook(bound.ctx, headers, body)
        except SignatureError as error:
            raise _rejected(401, "signature rejected", error) from None
        except SchemaError as error:
            raise _rejected(422, "not an event this endpoint takes", error) from None
        except (PayloadError, *MALFORMED) as error:
            raise _rejected(400, "malformed body", error) from None
        for event in events:
            self.admit(name, event, "webhook")
        return bound.connector.webhook_reply(events)

    def webhook_error(self, name: str, rejected: Refused) -> tuple[int, str, bytes] | None:
        """The refusal in the sender's own shape, if its connector has one (a broken one gets the
        hub's JSON error rather than a crash)."""
        bound = self.connectors.get(name)
        if bound is None:
            return None
        try:
            return bound.connector.webhook_error(rejected.status, rejected.message)
        except Exception:
            log.exception("connector %s could not shape its webhook refusal", name)
            return None

    def admit(self, name: str, event: InboundEvent, via: str) -> bool:
        """Dedupe an inbound event by its source id and durably enqueue its ingest; False for a
        duplicate. An event received before whose enqueue never completed is enqueued again."""
        payload = msgspec.to_builtins(event)
        correlation_id, received_at = uuid.uuid4().hex, time.time()
        ingest = self._composed(lambda: self.outbox.ingest(name, payload, correlation_id, received_at))
        # A new event's inbox entry, its ingest recorded in flight and its audit record: one round
        # trip, before the enqueue, so an enqueue that never happens is redriven by the recovery sweep.
        status = self.store.inbox_add(
            name, event.source_event_id, payload, correlation_id, received_at,
            inflight=(ingest.message_id, _inflight_record(ingest), received_at),
            received=AuditRecord(at=received_at, correlation_id=correlation_id, step=via, status="received",
                                 system=name, detail=f"{event.type} {event.source_event_id}"))
        if status == "duplicate":
            metrics.events_duplicate.labels(name).inc()
            return False
        if status == "new":
            try:
                self.broker.enqueue(ingest)
            except BaseException:
                self._enqueue_failed(name, event.source_event_id)
                raise
        else:  # pending: an enqueue of its ingest failed; sent again, as first received
            entry = self.store.inbox_get(name, event.source_event_id)
            if entry is not None:
                correlation_id, received_at = entry.correlation_id, entry.received_at
            self.outbox.ingest(name, payload, correlation_id, received_at)
            self.store.inbox_mark_enqueued(name, event.source_event_id)
        metrics.events_received.labels(name).inc()
        return True

    def _enqueue_failed(self, name: str, source_event_id: str) -> None:
        """The sender's retry of this event is to enqueue it again (the recovery sweep would, later)."""
        try:
            self.store.inbox_mark_pending(name, source_event_id)
        except Exception as error:  # the store is down too: the sweep sends it once it is back
            log.warning("could not mark %s event %s for another enqueue (%s)", name, source_event_id,
                        type(error).__name__)

    # -- polling ------------------------------------------------------------------------------------
    def pollable(self) -> list[str]:
        return [name for name, bound in self.connectors.items() if Capability.POLL in bound.connector.capabilities]

    def poll(self, name: str) -> int:
        """Ask a pull system for its changes since the stored cursor and admit them like webhooks.

        One poll per system at a time (a lease in the store), so two schedulers never race on the
        cursor. The cursor moves only after the page's events are durably enqueued: a crash in
        between polls the page again, and the inbox drops what was already admitted. A system that
        cannot be reached is logged and polled again at the next tick; nothing is dead-lettered for
        it. Returns how many new events were admitted."""
        bound = self.pipeline.bound(name)
        lease, owner = f"poll|{name}", uuid.uuid4().hex
        # Longer than a message may run, so an overrunning poll is killed before its lease frees.
        if not self.store.lock_acquire(lease, owner, self.settings.hub.lease_ttl_s):
            return 0
        try:
            cursor = self.store.cursor_get(name)
            try:
                result = bound.connector.poll(bound.ctx, cursor)
            except Exception as error:
                failure = self.pipeline.classified(bound, error)
                if not failure.category.retryable:
                    raise failure from error
                log.warning("polling %s failed, trying again at the next tick: %s", name, failure)
                metrics.poll_failures.labels(name).inc()
                return 0
            admitted = sum(self.admit(name, event, "poll") for event in result.events)
            if result.cursor is not None and result.cursor != cursor:
                self.store.cursor_set(name, result.cursor)
        finally:
            self.store.lock_release(lease, owner)
        if result.has_more:
            self.outbox.poll(name)
        return admitted

    # -- delivering ---------------------------------------------------------------------------------
    def deliver(self, target: str, envelope: dict[str, Any], reply: JourneyReply | None = None) -> None:
        """Deliver one event and enqueue what follows from it (cross-reference links, or the report
        to the journey that asked for it). A routed delivery settles its part of the outcome ledger,
        its links pending in its place, before they are sent (so none can settle before it is
        pending); a journey's write is accounted for by its run."""
        with self.handling() as unit:
            delivery = self.pipeline.deliver(target, envelope, reply=reply, unit=unit)
            if reply is None:
                part = OutcomePart(outcome="delivered", target=target,
                                   reason="; ".join(delivery.withheld) or None) \
                    if delivery.status == "delivered" else \
                    noop(f"superseded: a newer version was already delivered to {target}")
                links = [effect(other, link["id"]) for other, link in delivery.follow_ons]
                self.ledger.settle(envelope, target, part, links, unit)
            for other, follow_on in delivery.follow_ons:
                self.outbox.deliver(other, follow_on)
        self.pipeline.links_sent(delivery)
        if reply is not None:
            self.journeys.on_outcome(Written(reply, target, delivery.status))

    # -- the circuit breaker middleware calls these ---------------------------------------------------
    def carried(self, message: AnyMessage) -> Carried | None:
        return self.outbox.carried(message)

    def park(self, message: AnyMessage, delivery: Carried, why: str) -> None:
        """Keep ``delivery`` for when its target's circuit closes, in place of running ``message``:
        parked in order, the message settled, its journey (if a step asked for the write) told the
        write waits. Its part of the outcome ledger stays pending until it is drained and delivered.
        One unit of work, so one round trip: parked, audited and settled in one atomic commit (a
        crash before it leaves the message to run again; the ids of a target's line keep the order
        in which the commits parked)."""
        target, envelope = delivery.target, delivery.envelope
        parked: dict[str, Any] = {"target": target, "envelope": envelope}
        if delivery.reply is not None:
            parked["reply"] = delivery.reply
        with self.handling(settle=False) as unit:
            unit.park(target, parked)
            unit.audit(AuditRecord(at=time.time(), correlation_id=envelope.get("correlation_id") or "-",
                                   step="deliver", status="parked", system=target, event_id=envelope.get("id"),
                                   subject=envelope.get("subject"), detail=why))
            unit.inflight_settle(message.message_id)
            if delivery.reply is not None:
                self.journeys.on_outcome(Written(delivery.reply, target, "parked"))
        metrics.parked.labels(target).inc()

    def ingested(self, source: str, event: dict[str, Any], correlation_id: str, received_at: float) -> None:
        """Ingest one inbound event; start the journeys it triggers and enqueue its deliveries, having
        opened its outcome ledger entry with them pending."""
        with self.handling() as unit:
            result = self.pipeline.ingest(source, event, correlation_id, received_at, unit)
            routed = self.journeys.routed(result.events, result.deliveries)
            self.ledger.opened(correlation_id, source, received_at, routed.pending(),
                               result.settled | routed.settled, unit, subjects=result.subjects)
            for target, envelope in routed.deliveries:
                self.outbox.deliver(target, envelope)
        self.journeys.hold(routed.holds)

    # -- a message's fate (the Retries middleware calls these) --------------------------------------
    def retry(self, message: dramatiq.Message[Any], delay_ms: int, error: ConnectorError) -> bool:
        """Send a failed message's copy again after ``delay_ms`` (recorded in flight under its id);
        False when it waits parked instead: a delivery that found its target down, whose circuit is
        open now (this failure may have opened it), waits for the probe, not for a timer."""
        delivery = self.carried(message) if error.category is Category.TARGET_DOWN else None
        if delivery is not None and self.circuits.open(delivery.target) is not None:
            self.park(message, delivery, f"circuit open: {error}")
            return False
        self.dispatch(message, delay_ms)
        self._audit_message(message, "retry", f"{error} (again in {delay_ms} ms)")
        return True

    def about(self, message: AnyMessage) -> MessageContext:
        """What ``message`` carries, as the actors' outbox reads it."""
        return self.outbox.about(message)

    def give_up(self, message: MessageProxy, error: ConnectorError, reason: str) -> None:
        """No more attempts at ``message``: a journey's step failing (its lookups, or one of its
        writes) is the journey's to handle (compensate or park); anything else is a dead letter."""
        context = self.outbox.about(message)
        if isinstance(error, StepRetry):
            self.journeys.on_outcome(StepExhausted(error))
        elif context.reply is not None:
            self.journeys.on_outcome(WriteFailed(context.reply, context.target or "-", reason))
        else:
            self.dead_letters.write(message, str(error.category), reason)  # settles it too
            return
        log.warning("message %s failed for good (%s): reported to its journey", safelog.message_ref(message),
                    error.category)
        self._audit_message(message, "failed", f"{error.category}: {reason} (reported to journey)")
        self.settle(message)

    # -- recovery (the Recovery middleware calls these) ---------------------------------------------
    def recover_at_boot(self) -> None:
        """When a worker boots: probe the circuits left open and resume the journey runs left
        untouched (their messages may have died with a process)."""
        self.recover_circuits()
        self.journeys.recover()

    def recover_messages(self) -> int:
        """The recovery sweep: send again every message in flight that is ``redrive_after_s`` past
        due and has not settled; how many were sent again. One process sweeps at a time (a lease in
        the store).

        Such a message was lost by the broker (a Redis restarted without its data), or is held for
        good by a live worker (Dramatiq drops the delayed messages it holds in memory when Redis
        goes away, though they stay claimed by that worker), or was dead-lettered by the broker
        (an actor this hub does not declare), or was recorded and never enqueued.
        Sending one that is merely slow is harmless: deliveries are idempotent by key. It is due
        again ``redrive_after_s`` later, so it is sent at most once per period. One older than
        ``max_age_s`` that still never settled (it fails in a way nothing records) is dead-lettered
        instead, as the Retries middleware dead-letters a message that keeps failing."""
        lease, owner = "recovery-sweep", uuid.uuid4().hex
        hub = self.settings.hub
        if not self.store.lock_acquire(lease, owner, hub.redrive_after_s / 2):
            return 0
        try:
            now = time.time()
            overdue = self.store.inflight_overdue(now - hub.redrive_after_s, REDRIVE_BATCH)
            why = f"not settled {hub.redrive_after_s:g} s after it was due; sent again"
            sent = sum(self._send_again(message_id, record, now, why) for message_id, record in overdue)
            if sent:
                log.warning("recovery sweep: sent again %d messages that never settled", sent)
                metrics.redriven.inc(sent)
            return sent
        finally:
            self.store.lock_release(lease, owner)

    def resume_in_flight(self) -> int:
        """At the start of a hub whose broker lives in its process (``memory``): send again every
        message recorded in flight; how many.

        That record is written before a webhook is answered 2xx and before any message is
        enqueued, so it is the write-ahead log of the in-process queue: what it still holds died
        with the previous process (a crash, or a stop that left work queued), and nothing else
        can be running it. A retry waiting for its backoff is sent at once. They are read in one
        go: the in-process queue is about to hold them all in memory anyway. Call it before the
        worker and the web app start: what they record later is not resent."""
        now = time.time()
        recorded = self.store.inflight_overdue(math.inf, self.store.inflight_count())
        why = "resumed on start: the hub stopped before it settled"
        sent = sum(self._send_again(message_id, record, now, why) for message_id, record in recorded)
        if sent:
            log.warning("resumed %d messages in flight when the hub last stopped", sent)
            metrics.redriven.inc(sent)
        return sent

    def _send_again(self, message_id: str, record: dict[str, Any], now: float, why: str) -> bool:
        """Enqueue a recorded message again, recorded as due ``now``; or dead-letter it (False)
        when it is older than ``max_age_s``: it keeps failing in a way nothing records."""
        hub = self.settings.hub
        message: dramatiq.Message[Any] = dramatiq.Message(**{**record, "args": tuple(record["args"])})
        if now * 1000 - message.message_timestamp > hub.max_age_s * 1000:
            reason = (f"never settled in {hub.max_age_s} s, though sent again every "
                      f"{hub.redrive_after_s:g} s; see the worker log")
            self.dead_letters.write(message, "broker", reason)  # settles it too
            return False
        self.store.inflight_put(message_id, record, now)
        self.broker.enqueue(message)
        self._audit_message(message, "redriven", why)
        return True

    def _audit_message(self, message: AnyMessage, status: str, detail: str) -> None:
        context = self.outbox.about(message)
        self.store.audit(AuditRecord(at=time.time(), correlation_id=context.correlation_id or "-",
                                     step=message.actor_name, status=status, system=context.system,
                                     event_id=context.event_id, subject=context.subject, detail=detail))

    # -- circuit recovery ---------------------------------------------------------------------------
    def probe_target(self, target: str) -> None:
        """Half-open: try one parked delivery. Success closes the circuit and drains the rest; a target
        still down (or hung: no answer) keeps it open and probes again later."""
        # The probed delivery stays parked until it is delivered or handed on: a crash here re-sends it.
        for parked_id, message in self.store.parked(target, 1):
            try:
                self.deliver(target, message["envelope"], message.get("reply"))
            except ConnectorError as error:
                if error.category in (Category.TARGET_DOWN, Category.AMBIGUOUS):
                    self.circuits.reopened(target)
                    self.schedule_probe(target)
                    return
                self.outbox.deliver(target, message["envelope"], message.get("reply"))  # normal failure path
            self.store.unpark(target, [parked_id])
        log.warning("circuit for %s closed: draining parked deliveries", target)
        self.circuits.closed(target)
        self.drain_target(target)

    def drain_target(self, target: str, follow_up: bool = True) -> None:
        """Re-enqueue everything parked for ``target``, and once more a little later for deliveries
        that parked while the circuit was closing. Messages leave the parked list only after they are
        enqueued, so a failure or a crash in between sends some twice (harmless: deliveries are
        idempotent) and loses none."""
        while batch := self.store.parked(target, DRAIN_BATCH):
            for _, message in batch:
                self.outbox.deliver(target, message["envelope"], message.get("reply"))
            self.store.unpark(target, [parked_id for parked_id, _ in batch])
        if follow_up:
            self.outbox.drain(target, False, delay_ms=int(self.settings.hub.circuit_cooldown_s * 1000))

    def recover_circuits(self) -> None:
        """At start: probe every open circuit (its probe message may have died with a process)."""
        for target in self.router.deliverable:
            if self.store.circuit_get(target).status == "open":
                self.schedule_probe(target)

    # -- replay -------------------------------------------------------------------------------------
    def replay_dead_letter(self, letter_id: str, *, refresh: bool = False) -> DeadLetter:
        """Re-enqueue one open dead letter, once, with a fresh retry budget. If the enqueue fails the
        letter stays open; two operators replaying at once replay it once."""
        letter = self.store.dlq_get(letter_id)
        if letter is None:
            raise KeyError(f"no dead letter {letter_id!r}")
        if letter.state != "open":
            raise ValueError(f"dead letter {letter_id} is {letter.state}, not open")
        if not self.store.dlq_set_state(letter_id, "replayed"):
            raise ValueError(f"dead letter {letter_id} was replayed by someone else just now")
        self.ledger.replayed(letter)
        try:
            refreshed = self.outbox.resend(letter.actor, letter.message["args"], refresh=refresh)
        except BaseException:
            unit = Unit()  # back to open, as it was
            unit.dlq_add(letter)
            self.ledger.dead_lettered(letter, unit)
            self.store.commit(unit)
            self.ledger.committed(unit)
            raise
        detail = f"dead letter {letter.id}" + (" (refreshed from source)" if refreshed else "")
        self.store.audit(AuditRecord(at=time.time(), correlation_id=letter.correlation_id or "-", step="replay",
                                     status="replayed", system=letter.target, event_id=letter.event_id, detail=detail))
        return letter

    def discard_dead_letter(self, letter_id: str, reason: str) -> DeadLetter:
        """Close one open dead letter without delivering it: the reason and the time go into the
        letter and its transaction's audit trail. KeyError for no such letter, ValueError when it is
        not open (replayed, or discarded already: the first reason stands)."""
        letter = self.store.dlq_get(letter_id)
        if letter is None:
            raise KeyError(f"no dead letter {letter_id!r}")
        at = time.time()
        if not self.store.dlq_discard(letter_id, reason, at):
            current = self.store.dlq_get(letter_id)
            raise ValueError(f"dead letter {letter_id} is {current.state if current else 'gone'}, not open")
        self.store.audit(AuditRecord(at=at, correlation_id=letter.correlation_id or "-", step="discard",
                                     status="discarded", system=letter.target, event_id=letter.event_id,
                                     detail=f"dead letter {letter.id} discarded: {reason}"))
        discarded(self.store, letter, reason)
        metrics.dead_letters_discarded.labels(letter.category).inc()
        log.info("dead letter %s (%s, target %s) discarded", letter.id, letter.category, letter.target)
        return msgspec.structs.replace(letter, state="discarded", discarded_at=at, discard_reason=reason)

    def request_replay(self, selection: ReplaySelection) -> None:
        """Enqueue a ``replay`` of the event log; a worker runs it."""
        self.outbox.replay(msgspec.to_builtins(selection))

    def replay_events(self, *, source: str | None = None, type: str | None = None, since: float | None = None,
                      until: float | None = None, targets: list[str] | None = None) -> int:
        """Deliver logged canonical events again to their routed targets (or to ``targets``).

        Effects already acknowledged are skipped by their idempotency keys, so a replay reaches only
        targets that never got an event: one added to a route later, or deliveries lost on the way.
        Returns how many deliveries were enqueued.
        """
        sent = 0
        for event in self.store.events(source=source, type=type, since=since, until=until, limit=100_000):
            for target in self.router.targets(event.type, event.source):
                if targets is None or target in targets:
                    self.outbox.deliver(target, event.envelope)
                    sent += 1
        self.store.audit(AuditRecord(at=time.time(), correlation_id="replay", step="replay", status="enqueued",
                                     detail=f"{sent} deliveries from the event log (source={source}, type={type}, "
                                            f"since={since}, until={until}, targets={targets})"))
        return sent

    def refreshed(self, source: str, raw_event: dict[str, Any]) -> dict[str, Any]:
        """The inbound event with its object re-read from the source system (fixed at the source)."""
        bound = self.pipeline.bound(source)
        event = msgspec.convert(raw_event, InboundEvent)
        return msgspec.to_builtins(bound.connector.refetch(bound.ctx, event))  # type: ignore[no-any-return]

    def refresh_gauges(self) -> None:
        metrics.dead_letters_open.set(self.store.dlq_count("open"))
        metrics.messages_in_flight.set(self.store.inflight_count())
        for target in self.connectors:
            metrics.parked_now.labels(target).set(self.store.parked_count(target))
        for name, count in self.journeys.overdue().items():
            metrics.journeys_overdue.labels(name).set(count)

    def close(self) -> None:
        for bound in self.connectors.values():
            bound.ctx.http.close()
        self.broker.close()
        self.store.close()


def _rejected(status: int, what: str, error: BaseException) -> WebhookRejected:
    """A refusal whose sender hears the parser's own words, and whose log line keeps only what may be
    written of them (:func:`~crossledger.plugins.errors.exception_reason`)."""
    return WebhookRejected(status, f"{what}: {_sentence(error)}",
                           logged=f"{what} ({type(error).__name__}: {exception_reason(error)})")


def _sentence(error: BaseException) -> str:
    """What a parser's error says, in one line (a RecursionError's text names the interpreter)."""
    if isinstance(error, RecursionError):
        return "nested too deep"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _inflight_record(message: dramatiq.Message[Any]) -> dict[str, Any]:
    """``message`` as the record of messages in flight keeps it: its canonical queue, without the
    broker's own options."""
    options = {key: value for key, value in message.options.items() if key not in BROKER_OPTIONS}
    return {"queue_name": q_name(message.queue_name), "actor_name": message.actor_name, "args": list(message.args),
            "kwargs": dict(message.kwargs), "options": options, "message_id": message.message_id,
            "message_timestamp": message.message_timestamp}


def journey_settings(settings: Settings, journeys: dict[str, Journey]) -> dict[str, JourneySettings]:
    """``[journeys.<name>]`` tables, each naming an installed journey."""
    parsed = {}
    for name, raw in settings.journeys.items():
        if name not in journeys:
            known = ", ".join(sorted(journeys)) or "none"
            raise ConfigError(f"[journeys.{name}]: no such journey is installed (installed: {known})")
        try:
            parsed[name] = JourneySettings.parse(journeys[name], raw)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return parsed


def check_references(settings: Settings, connectors: dict[str, Bound]) -> None:
    """``[ownership]`` and ``[routes]`` must name things that exist: a typo is an error, not a rule
    that silently never applies."""
    owners = {str(kind) for kind in SystemKind} | set(connectors)
    for key, entry in settings.ownership.items():
        entity, group = key.split(".", 1)
        if entity not in ENTITY_TYPES:
            raise ConfigError(f"[ownership] {key}: no entity {entity!r} (entities: {', '.join(sorted(ENTITY_TYPES))})")
        groups = ENTITY_TYPES[entity].field_groups
        if group not in groups:
            raise ConfigError(f"[ownership] {key}: {entity} has no field group {group!r} "
                              f"(groups: {', '.join(sorted(groups))})")
        unknown = [owner for owner in entry.owners if owner not in owners]
        if unknown:
            raise ConfigError(f"[ownership] {key}: unknown owner {unknown[0]!r} "
                              f"(a system kind or a configured connector: {', '.join(sorted(owners))})")
    for event_type, targets in settings.routes.items():
        if event_type not in CURRENT_VERSIONS:
            raise ConfigError(f"[routes] {event_type!r} is not an event type "
                              f"({', '.join(sorted(CURRENT_VERSIONS))})")
        unknown = [target for target in targets if target not in connectors]
        if unknown:
            raise ConfigError(f"[routes] {event_type}: {unknown[0]!r} is not a configured connector")


def _open(url: str, namespace: str) -> Store:
    """The store at ``url``; a Redis store takes the hub's namespace unless the URL names one."""
    if url.startswith("redis") and "namespace=" not in url:
        url = f"{url}{'&' if '?' in url else '?'}namespace={namespace}"
    try:
        return open_store(url)
    except ValueError as error:
        raise ConfigError(f"[hub] store: {error}") from None
