"""Prometheus metrics of this process, served at ``GET /metrics``.

Counters are per process (the web process counts what it received; each worker what it
delivered); the store-derived gauges (open dead letters, parked work) are the same everywhere.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry()

events_received = Counter(
    "crossledger_events_received", "Inbound events accepted, by source", ["source"], registry=registry
)
events_duplicate = Counter(
    "crossledger_events_duplicate", "Inbound events dropped as already received", ["source"], registry=registry
)
events_ignored = Counter(
    "crossledger_events_ignored", "Inbound events acknowledged that carry nothing the hub syncs, by source and type",
    ["source", "type"], registry=registry,
)
webhooks_rejected = Counter(
    "crossledger_webhooks_rejected",
    "Webhooks refused at the edge, by connector (\"unknown\" for a path naming none) and reason "
    "(malformed, signature, unknown, body_timeout, too_large, content_type, schema, unavailable)",
    ["connector", "reason"], registry=registry,
)
dead_letters_discarded = Counter(
    "crossledger_dead_letters_discarded", "Dead letters an operator discarded, by category", ["category"],
    registry=registry,
)
events_delivered = Counter(
    "crossledger_events_delivered", "Canonical events delivered to a target", ["target", "type"],
    registry=registry,
)
dead_lettered = Counter(
    "crossledger_dead_lettered", "Messages dead-lettered, by category", ["category"], registry=registry
)
outcomes = Counter(
    "crossledger_outcomes",
    "Accepted inbound messages concluded, by outcome (delivered, noop, conflict, dead_letter) and source",
    ["outcome", "source"], registry=registry,
)
retried = Counter("crossledger_retried", "Retries scheduled, by category", ["category"], registry=registry)
poll_failures = Counter(
    "crossledger_poll_failures", "Polls of a pull system that could not reach it", ["source"], registry=registry
)
redriven = Counter(
    "crossledger_redriven", "Messages the recovery sweep sent again (never settled after they were due)",
    registry=registry,
)
store_round_trips = Counter(
    "crossledger_store_round_trips",
    "Round trips to the store, by backend: a Redis command or pipeline sent and answered, an SQLite "
    "statement or transaction", ["store"], registry=registry,
)
parked = Counter("crossledger_parked", "Deliveries parked on an open circuit", ["target"], registry=registry)
delivery_latency = Histogram(
    "crossledger_delivery_latency_seconds",
    "From webhook receipt to acknowledged delivery",
    ["target"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=registry,
)
dead_letters_open = Gauge("crossledger_dead_letters_open", "Dead letters awaiting replay", registry=registry)
messages_in_flight = Gauge(
    "crossledger_messages_in_flight", "Messages sent and not yet settled (what the recovery sweep watches)",
    registry=registry,
)
parked_now = Gauge("crossledger_parked_now", "Deliveries parked now, by target", ["target"], registry=registry)
journeys_started = Counter("crossledger_journeys_started", "Journey runs started", ["journey"], registry=registry)
journeys_completed = Counter("crossledger_journeys_completed", "Journey runs completed", ["journey"], registry=registry)
journeys_compensated = Counter(
    "crossledger_journeys_compensated", "Journey runs undone after a step failed", ["journey"], registry=registry
)
journeys_parked = Counter(
    "crossledger_journeys_parked", "Journey runs stopped for an operator", ["journey"], registry=registry
)
journeys_sla_breached = Counter(
    "crossledger_journeys_sla_breached", "Journey runs that missed their SLA", ["journey"], registry=registry
)
journey_steps_queued = Counter(
    "crossledger_journey_steps_queued", "Journey steps held while their target is down", ["journey", "target"],
    registry=registry,
)
journeys_overdue = Gauge(
    "crossledger_journeys_overdue", "Unfinished journey runs past their SLA now", ["journey"], registry=registry
)
journey_duration = Histogram(
    "crossledger_journey_duration_seconds",
    "From a journey's start to its completion",
    ["journey"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 86400),
    registry=registry,
)
reconciliation_findings = Gauge(
    "crossledger_reconciliation_findings",
    "Differences the latest reconciliation run found, by class (missing, duplicate, orphan, amount_mismatch, "
    "status_mismatch, field_drift, balance) and the system the difference is in",
    ["class", "system"], registry=registry,
)
