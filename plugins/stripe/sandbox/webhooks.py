"""Webhook endpoints and events in the Stripe sandbox.

Every change in the account records an ``event`` (``GET /v1/events``) and POSTs it, signed with
``Stripe-Signature``, to each webhook endpoint that listens for its type or for ``*``
(:meth:`.Account.emit`). ``POST /v1/webhook_endpoints`` registers an endpoint (an ``http://`` or
``https://`` URL and its ``enabled_events``); its signing secret is in that answer and never
again, as in Stripe.
"""

import re
from functools import partial

from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.wire import (
    Call,
    Endpoint,
    Record,
    assign,
    created_within,
    deleted,
    exclusive,
    invalid,
    new_id,
    now,
    reads,
    retrieve,
    token,
)


def _webhook_endpoint(url: str, events: list[str], api_version: str | None, created: int) -> Record:
    return {
        "api_version": api_version,
        "application": None,
        "created": created,
        "description": None,
        "enabled_events": events,
        "id": new_id("we"),
        "livemode": False,
        "metadata": {},
        "object": "webhook_endpoint",
        "status": "enabled",
        "url": url,
    }


class Webhooks:
    """Webhook endpoints, and the list of events (see the module doc)."""

    def __init__(self, account: Account) -> None:
        self._account = account

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/v1/webhook_endpoints", self.create_webhook_endpoint),
            *reads(self._account.webhook_endpoints),
            Endpoint("DELETE", "/v1/webhook_endpoints/{id}", self.delete_webhook_endpoint),
            Endpoint("GET", "/v1/events", self.list_events),
            Endpoint("GET", "/v1/events/{id}", partial(retrieve, self._account.events)),
        ]

    def list_events(self, call: Call) -> Record:
        """``GET /v1/events``, newest first: ``type`` (one type, or a group with ``*``:
        ``invoice.*``), ``types[]`` (several, exact), ``created`` (:func:`.wire.created_within`)."""
        params = call.params
        exclusive(params, "type", "types")
        wanted = params.text("type")
        named = set(params.strings("types")) if "types" in params else None
        pattern = None if wanted is None else re.compile(
            "^" + ".".join(".+" if part == "*" else re.escape(part) for part in wanted.split(".")) + "$")
        within = created_within(params)

        def kept(event: Record) -> bool:
            return (within(event) and (pattern is None or bool(pattern.match(event["type"])))
                    and (named is None or event["type"] in named))

        return self._account.events.page(params, "type", "types", "created", keep=kept)

    def create_webhook_endpoint(self, call: Call) -> Record:
        """Register an endpoint; its signing secret is in this answer and never again."""
        params = call.params.accept("api_version", "description", "enabled_events", "metadata", "url")
        url = params.required("url")
        if not re.match(r"https?://", url):
            raise invalid(f"Invalid URL: {url}. Use an http:// or https:// URL.", param="url", code="url_invalid")
        events = params.strings("enabled_events")
        if not events:
            raise invalid("Missing required param: enabled_events.", param="enabled_events", code="parameter_missing")
        endpoint = _webhook_endpoint(url, events, params.text("api_version"), now())
        self._account.webhook_endpoints.add(endpoint)
        assign(endpoint, params, ("description", "metadata"))
        secret = self._account.webhook_secrets[endpoint["id"]] = f"whsec_{token(32)}"
        return {**endpoint, "secret": secret}

    def delete_webhook_endpoint(self, call: Call) -> Record:
        call.params.accept()
        endpoint = self._account.webhook_endpoints.get(call.id)
        self._account.webhook_endpoints.remove(endpoint["id"])
        del self._account.webhook_secrets[endpoint["id"]]
        return deleted(endpoint)
