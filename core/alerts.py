"""Alerting through Sentry, when ``[hub] sentry_dsn`` is set.

What pages an operator is what needs one: each dead letter (category, target and reason as tags),
each journey that is compensated, parked, or held because a system is down, and the critical log
written when a message could be neither retried nor dead-lettered. Dramatiq's
per-attempt ERROR logs are left out (a retried transient failure is not news), and message bodies
never leave: customer and billing data stay in the hub (events carry
ids, not payloads; the SDK's default of not sending personal data is kept).
"""

import logging

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration


def init_sentry(dsn: str, environment: str | None = None) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        default_integrations=False,
        # No breadcrumbs from logs: Dramatiq logs failed messages with their arguments, which hold
        # customer data (a test checks that no e-mail address reaches Sentry).
        integrations=[LoggingIntegration(level=None, event_level=logging.CRITICAL)],
    )


def dead_lettered(letter_id: str, category: str, target: str | None, reason: str) -> None:
    """One Sentry event per dead letter, grouped by category and target."""
    if sentry_sdk.get_client().is_active():
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("category", category)
            scope.set_tag("target", target or "-")
            scope.set_tag("dead_letter", letter_id)
            scope.fingerprint = ["dead-letter", category, target or "-"]
            sentry_sdk.capture_message(f"dead letter ({category}): {reason}", level="error")


def journey(name: str, run_id: str, what: str, reason: str) -> None:
    """One Sentry event per journey run compensated, parked or queued, grouped by journey and outcome."""
    if sentry_sdk.get_client().is_active():
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("journey", name)
            scope.set_tag("journey_run", run_id)
            scope.fingerprint = ["journey", name, what]
            sentry_sdk.capture_message(f"journey {name} {what}: {reason}", level="warning")
