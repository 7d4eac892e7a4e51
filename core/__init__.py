"""The runtime: everything that runs in a Procfile process, one subpackage per role.

==============  ==========================================================================================
``ingress``     the HTTP edge (ASGI app): bodies read safely, webhooks verified, deduplicated, enqueued
``hub``         one message's work: transform, invariants, ownership, routing, delivery, outcome ledger
``journeys``    the journey engine: multi-step flows driven by the hub's outcomes
``store``       durable state (SQLite for the embedded default, Redis for scale): one protocol, two backends
``messaging``   the broker wiring and the middleware that owns the circuit breaker, retries and dead letters
``processes``   the Procfile's processes: composition, embedded (all in one), scheduler, graceful stop
``reconcile``   live reconciliation: every system read through its connector, differences classified
``telemetry``   metrics, alerts (Sentry), and logs that never carry payloads or personal data
``views``       read models shared by the CLI and the HTTP API: timelines, journey runs
``cli``         the ``crossledger`` command
==============  ==========================================================================================

``settings`` (this package's one module) is the configuration every role reads.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crossledger")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
