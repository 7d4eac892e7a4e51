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
events_delivered = Counter(
    "crossledger_events_delivered", "Canonical events delivered to a target", ["target", "type"],
    registry=registry,
)
dead_lettered = Counter(
    "crossledger_dead_lettered", "Messages dead-lettered, by category", ["category"], registry=registry
)
retried = Counter("crossledger_retried", "Retries scheduled, by category", ["category"], registry=registry)
poll_failures = Counter(
    "crossledger_poll_failures", "Polls of a pull system that could not reach it", ["source"], registry=registry
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
parked_now = Gauge("crossledger_parked_now", "Deliveries parked now, by target", ["target"], registry=registry)
