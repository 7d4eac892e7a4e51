"""The runtime: one object that wires settings, plugins, store, broker and pipeline together.

Every process builds one: the web process to accept webhooks and enqueue, worker processes to run
the actors (:mod:`crossledger.actors` declares them on :attr:`Runtime.broker`), the embedded mode
both. Messages are sent by actor name, so the runtime does not import the actors.
"""

import hashlib
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
import httpx
import msgspec
from crossledger.canonical.entities import ENTITY_TYPES
from crossledger.canonical.versions import CURRENT_VERSIONS
from crossledger.core import alerts, metrics, safelog
from crossledger.core.alerts import init_sentry
from crossledger.core.broker import DELIVER_QUEUE, INGEST_QUEUE, broker_dead_letters, build_broker
from crossledger.core.edge import Refused, check_portable
from crossledger.core.journeys import Engine, JourneySettings, StepRetry
from crossledger.core.ledger import Ledger, discarded
from crossledger.core.middleware import Governance, Recovery
from crossledger.core.pipeline import Bound, JourneyReply, Pipeline, effect, noop
from crossledger.core.policy import OwnershipPolicy
from crossledger.core.router import Router
from crossledger.core.settings import ConfigError, Settings, connector_settings
from crossledger.core.stores import open_store
from crossledger.core.stores.base import AuditRecord, DeadLetter, OutcomePart, Store
from crossledger.plugins.errors import Category, ConnectorError, PayloadError, SchemaError, SignatureError, described
from crossledger.plugins.journey import Journey
from crossledger.plugins.manager import CrossledgerPluginManager, load_plugins
from crossledger.plugins.types import Capability, Context, Headers, InboundEvent, OwnershipRule, SystemKind
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name

log = logging.getLogger(__name__)

INGEST = "ingest"
DELIVER = "deliver"
PROBE = "probe_target"
DRAIN = "drain_target"
REPLAY = "replay"
POLL = "poll"
JOURNEY = "journey"
QUEUES = {INGEST: INGEST_QUEUE, DELIVER: DELIVER_QUEUE, PROBE: DELIVER_QUEUE, DRAIN: DELIVER_QUEUE,
          REPLAY: INGEST_QUEUE, POLL: INGEST_QUEUE, JOURNEY: INGEST_QUEUE}
DRAIN_BATCH = 200
REDRIVE_BATCH = 1000
BROKER_OPTIONS = ("redis_message_id", "eta")
"""Message options a broker sets for itself on enqueue: not part of the message the hub sent."""
AnyMessage = MessageProxy | dramatiq.Message[Any]


@dataclass(frozen=True)
class MessageContext:
    """What a message's arguments say about the event it carries (for audit and dead letters).

    ``ingest(source, event, correlation_id, received_at)``; ``deliver(target, envelope)``.
    """

    system: str | None
    target: str | None
    correlation_id: str | None
    subject: str | None
    event_id: str | None

    @classmethod
    def of(cls, message: "AnyMessage") -> "MessageContext":
        args = list(message.args)
        system = str(args[0]) if args and message.actor_name in (INGEST, DELIVER) else None
        if message.actor_name == DELIVER and len(args) > 1 and isinstance(args[1], dict):
            envelope = args[1]
            return cls(system, system, envelope.get("correlation_id"), envelope.get("subject"), envelope.get("id"))
        correlation_id = str(args[2]) if message.actor_name == INGEST and len(args) > 2 else None
        return cls(system, None, correlation_id, None, None)


class ReplaySelection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which logged events to replay: every given filter applies; times are Unix seconds."""

    source: str | None = None
    type: str | None = None
    since: float | None = None
    until: float | None = None
    targets: list[str] | None = None


class WebhookRejected(Refused):
    """A webhook the hub refuses; ``status`` is the HTTP answer (see :mod:`crossledger.core.edge`)."""


#: What a connector's parser raises on a body it cannot read (deep nesting, a timestamp out of range,
#: invalid text), besides its own PayloadError: the body's fault, so a 400, never a 5xx to retry.
MALFORMED = (ValueError, RecursionError, OverflowError, UnicodeError, msgspec.DecodeError)


class Runtime:
    def __init__(self, settings: Settings, *, plugins: CrossledgerPluginManager | None = None,
                 store: Store | None = None) -> None:
        safelog.install()  # before anything logs: every process builds a runtime
        self.settings = settings
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
        self.policy = OwnershipPolicy(rules, kinds)
        deliverable = {n for n, b in self.connectors.items() if Capability.DELIVER in b.connector.capabilities}
        self.router = Router(self.plugins.routes(), settings.routes, deliverable)
        self.pipeline = Pipeline(
            store=self.store, plugins=self.plugins, connectors=self.connectors, policy=self.policy,
            router=self.router, circuit_threshold=hub.circuit_threshold, on_circuit_open=self.schedule_probe,
            lease_ttl_s=hub.lease_ttl_s, stale_open_s=max(30.0, hub.circuit_cooldown_s * 10),
        )
        self.ledger = Ledger(self.store)
        self.journeys = Engine(
            store=self.store, pipeline=self.pipeline, journeys=self.plugins.journeys,
            settings=journey_settings(settings, self.plugins.journeys), send=self.send,
            deliver_actor=DELIVER, journey_actor=JOURNEY, ledger=self.ledger,
        )
        if hub.sentry_dsn is not None:
            init_sentry(hub.sentry_dsn.get_secret_value())
        middleware = [Governance(self.handle_failure, self.settle, patience_s=hub.redrive_after_s),
                      Recovery(self.recover_messages, interval_s=min(hub.redrive_after_s / 2, 60.0))]
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
    def send(self, actor: str, *args: Any, delay_ms: int | None = None) -> None:
        """Enqueue a message for ``actor`` (declared by crossledger.actors) by name."""
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=QUEUES[actor], actor_name=actor, args=args, kwargs={}, options={})
        self.dispatch(message, delay_ms)

    def dispatch(self, message: dramatiq.Message[Any], delay_ms: int | None = None) -> None:
        """Record ``message`` among the messages in flight, due after ``delay_ms``, then
        enqueue it. It stays there until it settles (:meth:`settle`), so one the broker loses is
        found by :meth:`recover_messages`; one recorded and never enqueued (a failure in between)
        is found the same way."""
        self.store.inflight_put(message.message_id, _inflight_record(message), time.time() + (delay_ms or 0) / 1000)
        self.broker.enqueue(message, delay=delay_ms)

    def settle(self, message: AnyMessage) -> None:
        """``message`` has its outcome (handled, or dead-lettered, or reported to its journey)."""
        self.store.inflight_settle(message.message_id)

    def schedule_probe(self, target: str) -> None:
        delay = int(self.settings.hub.circuit_cooldown_s * 1000)
        log.warning("circuit for %s is open: parking its deliveries, probing in %d ms", target, delay)
        self.send(PROBE, target, delay_ms=delay)

    # -- webhooks -----------------------------------------------------------------------------------
    def accept_webhook(self, name: str, headers: Headers, body: bytes) -> tuple[int, str, bytes]:
        """Verify, parse, dedupe and durably enqueue; the answer is the connector's own reply.

        Raises :class:`WebhookRejected` (404, 415, 401, 400, 422) or lets broker and store errors
        through (the HTTP layer answers 503 so the sender retries). ``headers`` have lower-case names.
        """
        bound = self.connectors.get(name)
        if bound is None or Capability.WEBHOOKS not in bound.connector.capabilities:
            raise WebhookRejected(404, f"no connector {name!r} receives webhooks here")
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # Optional on a connector (BaseConnector declares none: any type is read).
        accepted: frozenset[str] = getattr(bound.connector, "webhook_media_types", frozenset())
        if media_type and accepted and media_type not in accepted:
            raise WebhookRejected(415, f"content type {media_type!r} is not one of {', '.join(sorted(accepted))}")
        try:
            bound.connector.verify_webhook(bound.ctx, headers, body)
            if media_type == "application/json" or (not media_type and body.lstrip()[:1] in (b"{", b"[")):
                check_portable(msgspec.json.decode(body))  # before any connector reads it
            events = bound.connector.parse_webhook(bound.ctx, headers, body)
        except SignatureError as error:
            raise WebhookRejected(401, f"signature rejected: {error}") from None
        except SchemaError as error:
            raise WebhookRejected(422, f"not an event this endpoint takes: {error}") from None
        except (PayloadError, *MALFORMED) as error:
            raise WebhookRejected(400, f"malformed body: {_sentence(error)}") from None
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
        status = self.store.inbox_add(name, event.source_event_id, payload, correlation_id, received_at)
        if status == "duplicate":
            metrics.events_duplicate.labels(name).inc()
            return False
        if status == "pending":
            entry = self.store.inbox_get(name, event.source_event_id)
            if entry is not None:
                correlation_id, received_at = entry.correlation_id, entry.received_at
        self.send(INGEST, name, payload, correlation_id, received_at)
        self.store.inbox_mark_enqueued(name, event.source_event_id)
        self.store.audit(AuditRecord(at=received_at, correlation_id=correlation_id, step=via, status="received",
                                     system=name, detail=f"{event.type} {event.source_event_id}"))
        metrics.events_received.labels(name).inc()
        return True

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
            self.send(POLL, name)
        return admitted

    # -- delivering ---------------------------------------------------------------------------------
    def deliver(self, target: str, envelope: dict[str, Any], reply: JourneyReply | None = None, *,
                bypass_circuit: bool = False) -> None:
        """Deliver one event and enqueue what follows from it (cross-reference links, or the report
        to the journey that asked for it). A routed delivery settles its part of the outcome ledger,
        its links pending in its place, before they are sent (so none can settle before it is
        pending); a journey's write is accounted for by its run, a parked one stays pending."""
        follow_ons = self.pipeline.deliver(target, envelope, bypass_circuit=bypass_circuit, reply=reply)
        if reply is None and follow_ons.status != "parked":
            part = OutcomePart(outcome="delivered", target=target, reason="; ".join(follow_ons.withheld) or None) \
                if follow_ons.status == "delivered" else \
                noop(f"superseded: a newer version was already delivered to {target}")
            links = [effect(other, link["id"]) for other, link in follow_ons.deliveries]
            self.ledger.settle(envelope, target, part, links)
        for other, follow_on in follow_ons.deliveries:
            self.send(DELIVER, other, follow_on)
        self.pipeline.followed(follow_ons)
        if reply is not None:
            self.journeys.written(reply, target, follow_ons.status)

    def ingested(self, source: str, event: dict[str, Any], correlation_id: str, received_at: float) -> None:
        """Ingest one inbound event; start the journeys it triggers and enqueue its deliveries, having
        opened its outcome ledger entry with them pending."""
        result = self.pipeline.ingest(source, event, correlation_id, received_at)
        routed = self.journeys.routed(result.events, result.deliveries)
        self.ledger.opened(correlation_id, source, received_at, routed.pending(), result.settled | routed.settled)
        for target, envelope in routed.deliveries:
            self.send(DELIVER, target, envelope)
        self.journeys.hold(routed.holds)

    # -- failures -----------------------------------------------------------------------------------
    def handle_failure(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException) -> None:
        """Retry with backoff, or dead-letter. Raising here makes Governance fail the message."""
        error = exception if isinstance(exception, ConnectorError) else ConnectorError(
            Category.TRANSIENT, described(exception, safelog.REASON_TYPES))
        hub = self.settings.hub
        retries = int(message.options.get("retries", 0))
        budget_free = error.category in (Category.RATE_LIMITED, Category.TARGET_DOWN)
        age_ms = time.time() * 1000 - message.message_timestamp
        attempts = int(message.options.get("attempts", 1))
        if error.category.retryable and age_ms < hub.max_age_s * 1000 and (budget_free or retries < hub.max_retries):
            # The delay grows with every attempt, budget-free ones included: a rate limit without
            # Retry-After must not be hammered at the minimum backoff for days.
            delay = self.backoff_ms(attempts - 1, error.retry_after)
            options = {**message.options, "retries": retries + (0 if budget_free else 1),
                       "attempts": attempts + 1, "last_error": str(error)[:1000]}
            self.dispatch(message.copy(options=options), delay)
            # One line for a planned retry; a defect's traceback was written when it was raised.
            log.warning("retrying message %s for %s in %d ms: attempt %d failed (%s)", safelog.message_ref(message),
                        MessageContext.of(message).system or "-", delay, attempts, _reason_class(exception))
            metrics.retried.labels(str(error.category)).inc()
            self._audit_message(message, "retry", f"{error} (again in {delay} ms)")
            return
        exhausted = f"gave up after {attempts} attempts: {error.message}"
        reason = exhausted if error.category.retryable else error.message
        # A journey's step failing is the journey's to handle (compensate or park), not a dead letter.
        reply = _reply_of(message)
        if isinstance(error, StepRetry):
            self.journeys.exhausted(error)
        elif reply is not None:
            self.journeys.write_failed(reply, str(message.args[0]), reason)
        else:
            self.dead_letter(message, str(error.category), reason, letter_id=_letter_id(message))
            self.settle(message)
            return
        log.warning("message %s for %s failed for good (%s): reported to its journey", safelog.message_ref(message),
                    MessageContext.of(message).system or "-", error.category)
        self._audit_message(message, "failed", f"{error.category}: {reason} (reported to journey)")
        self.settle(message)

    def backoff_ms(self, earlier_attempts: int, retry_after: float | None) -> int:
        """The target's Retry-After (plus a little jitter), or exponential backoff with jitter: a delay
        drawn from [50%, 100%] of ``min_backoff * 2**earlier_attempts``, capped at ``max_backoff``."""
        hub = self.settings.hub
        if retry_after is not None:
            return int(retry_after * 1000 + random.uniform(0, 250))
        ceiling = min(hub.max_backoff_ms, hub.min_backoff_ms * 2 ** min(earlier_attempts, 30))
        return int(ceiling * random.uniform(0.5, 1.0))

    def dead_letter(self, message: AnyMessage, category: str, reason: str, *, letter_id: str | None = None) -> None:
        context = MessageContext.of(message)
        letter = DeadLetter(
            id=letter_id or uuid.uuid4().hex[:16], created_at=time.time(), actor=message.actor_name,
            target=context.target, category=category, reason=reason, event_id=context.event_id,
            correlation_id=context.correlation_id,
            message={"queue_name": message.queue_name, "actor_name": message.actor_name, "args": list(message.args),
                     "kwargs": dict(message.kwargs)},
            attempts=int(message.options.get("attempts", 1)),
        )
        self.store.dlq_add(letter)
        self.ledger.dead_lettered(letter)
        log.warning("dead-lettered message %s for %s: %s (dead letter %s)", safelog.message_ref(message),
                    context.target or context.system or "-", category, letter.id)
        metrics.dead_lettered.labels(category).inc()
        alerts.dead_lettered(letter.id, category, context.target, reason)
        self._audit_message(message, "dead-lettered", f"{category}: {reason} (dead letter {letter.id})")
        self.plugins.notify("crossledger_event_dead_lettered", event_id=letter.event_id or "",
                            target=context.target, category=category, reason=reason)

    def sweep_broker_dead_letters(self) -> int:
        """Move what the broker dead-lettered into the hub's dead letters (ids stay stable, so a
        sweep that is interrupted or runs twice records each message once); how many moved."""
        moved = 0
        for message_id, message, discard in broker_dead_letters(self.broker):
            self.dead_letter(message, "broker", "the broker dead-lettered it (an actor this hub does not declare, "
                             "or a failure the hub could not handle); see the worker log",
                             letter_id=f"broker-{message_id}")
            self.settle(message)
            discard()
            moved += 1
        return moved

    def recover_messages(self) -> int:
        """The recovery sweep: send again every message in flight that is ``redrive_after_s`` past
        due and has not settled, and move the broker's own dead letters into the hub's; how many
        were sent again. One process sweeps at a time (a lease in the store).

        Such a message was lost by the broker (a Redis restarted without its data), or is held for
        good by a live worker (Dramatiq drops the delayed messages it holds in memory when Redis
        goes away, though they stay claimed by that worker), or was recorded and never enqueued.
        Sending one that is merely slow is harmless: deliveries are idempotent by key. It is due
        again ``redrive_after_s`` later, so it is sent at most once per period. One older than
        ``max_age_s`` that still never settled (it fails in a way nothing records) is dead-lettered
        instead, as Governance dead-letters a message that keeps failing."""
        lease, owner = "recovery-sweep", uuid.uuid4().hex
        hub = self.settings.hub
        if not self.store.lock_acquire(lease, owner, hub.redrive_after_s / 2):
            return 0
        try:
            self.sweep_broker_dead_letters()  # first: what is there has its outcome, not to be sent again
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
        self.sweep_broker_dead_letters()
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
            self.dead_letter(message, "broker", reason, letter_id=_letter_id(message))
            self.settle(message)
            return False
        self.store.inflight_put(message_id, record, now)
        self.broker.enqueue(message)
        self._audit_message(message, "redriven", why)
        return True

    def _audit_message(self, message: AnyMessage, status: str, detail: str) -> None:
        context = MessageContext.of(message)
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
                self.deliver(target, message["envelope"], message.get("reply"), bypass_circuit=True)
            except ConnectorError as error:
                if error.category in (Category.TARGET_DOWN, Category.AMBIGUOUS):
                    self.store.circuit_reopen(target, time.time())
                    self.schedule_probe(target)
                    return
                self.send(DELIVER, target, message["envelope"], message.get("reply"))  # normal failure path
            self.store.unpark(target, [parked_id])
        log.warning("circuit for %s closed: draining parked deliveries", target)
        self.store.circuit_close(target)
        self.pipeline.forget_circuit(target)
        self.drain_target(target)

    def drain_target(self, target: str, follow_up: bool = True) -> None:
        """Re-enqueue everything parked for ``target``, and once more a little later for deliveries
        that parked while the circuit was closing. Messages leave the parked list only after they are
        enqueued, so a failure or a crash in between sends some twice (harmless: deliveries are
        idempotent) and loses none."""
        while batch := self.store.parked(target, DRAIN_BATCH):
            for _, message in batch:
                self.send(DELIVER, target, message["envelope"], message.get("reply"))
            self.store.unpark(target, [parked_id for parked_id, _ in batch])
        if follow_up:
            self.send(DRAIN, target, False, delay_ms=int(self.settings.hub.circuit_cooldown_s * 1000))

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
        args = list(letter.message["args"])
        refreshed = refresh and letter.actor == INGEST  # only an inbound event has a source object to re-read
        if refreshed:
            args = [args[0], self.refreshed(args[0], args[1]), *args[2:]]
        if not self.store.dlq_set_state(letter_id, "replayed"):
            raise ValueError(f"dead letter {letter_id} was replayed by someone else just now")
        self.ledger.replayed(letter)
        try:
            self.send(letter.actor, *args)
        except BaseException:
            self.store.dlq_add(letter)  # back to open, as it was
            self.ledger.dead_lettered(letter)
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
        self.send(REPLAY, msgspec.to_builtins(selection))

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
                    self.send(DELIVER, target, event.envelope)
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


def _sentence(error: BaseException) -> str:
    """What a parser's error says, in one line (a RecursionError's text names the interpreter)."""
    if isinstance(error, RecursionError):
        return "nested too deep"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _reason_class(exception: BaseException) -> str:
    """A failure's class for the log: a classified error's category, or a defect's type."""
    return str(exception.category) if isinstance(exception, ConnectorError) else type(exception).__name__


def _letter_id(message: AnyMessage) -> str:
    """One dead letter per message, however often it is written (a write retried after Redis came
    back, a copy the recovery sweep sent): its id derives from the message id."""
    return hashlib.sha256(message.message_id.encode()).hexdigest()[:16]


def _inflight_record(message: dramatiq.Message[Any]) -> dict[str, Any]:
    """``message`` as the record of messages in flight keeps it: its canonical queue, without the
    broker's own options."""
    options = {key: value for key, value in message.options.items() if key not in BROKER_OPTIONS}
    return {"queue_name": q_name(message.queue_name), "actor_name": message.actor_name, "args": list(message.args),
            "kwargs": dict(message.kwargs), "options": options, "message_id": message.message_id,
            "message_timestamp": message.message_timestamp}


def _reply_of(message: AnyMessage) -> JourneyReply | None:
    """The journey a ``deliver`` message reports to, if a journey's step sent it."""
    args = message.args
    if message.actor_name == DELIVER and len(args) > 2 and isinstance(args[2], dict):
        return args[2]  # type: ignore[return-value]
    return None


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
