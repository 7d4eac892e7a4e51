"""Business Central's webhook subscriptions (``/api/v2.0/subscriptions``) and their notifications.

- **Subscribe**: ``POST subscriptions`` ``{"notificationUrl", "resource", "clientState"}``, the
  resource an entity set of a company (``/api/v2.0/companies({id})/customers``). Before answering,
  Business Central POSTs to ``notificationUrl?validationToken={token}``; only a 200 whose body is the
  token creates the subscription (201), anything else answers 400. At most 200 subscriptions.
- **Expiry and renewal**: a subscription expires three days after it was made or last renewed, and
  is then gone. ``PATCH subscriptions('{id}')`` with ``If-Match`` renews it, repeating the
  handshake; ``DELETE`` (with ``If-Match``) ends it.
- **Notifications** are thin, gathered and delayed: the changes of ``notification_delay_s`` (about
  30 s in Business Central) go in one POST per notification URL, ``{"value": [{"subscriptionId",
  "clientState", "expirationDateTime", "resource", "changeType", "lastModifiedDateTime"}]}``, the
  resource naming the record (``api/v2.0/companies(…)/customers(…)``), ``changeType`` ``created``,
  ``updated`` or ``deleted``. A line's change is notified as its document's. More than
  :data:`COLLECTION_THRESHOLD` changes of one subscription in one window become one ``collection``
  notification whose resource filters ``lastDateTimeModified gt`` the window's start (the control
  route forces one). Notifications carry no signature: the ``clientState`` is the subscriber's check.
- **Failures**: only 408, 429 and 5xx answers (or no answer) are retried, with growing delays;
  any other non-2xx answer deletes the subscription, as Business Central does.
"""

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
from crossledger.plugins.business_central.sandbox.books import NOTIFYING, BCError, Change, invalid, timestamp
from crossledger.plugins.business_central.sandbox.odata import Record, etag, segments

if TYPE_CHECKING:
    from crossledger.plugins.business_central.sandbox.app import Answer, BusinessCentralSandbox

LIFETIME_S = 3 * 24 * 3600
MAX_SUBSCRIPTIONS = 200
COLLECTION_THRESHOLD = 1000
MAX_ATTEMPTS = 8
RETRYABLE = frozenset({408, 429})
_RESOURCE = re.compile(r"^/?api/v2\.0/companies\((?P<company>[0-9a-fA-F-]{36})\)/(?P<entity_set>\w+)$")


@dataclass
class Subscription:
    record: Record
    version: int = 1
    pending: list[Change] = field(default_factory=list)
    first_pending: float | None = None


@dataclass
class _Delivery:
    url: str
    notifications: list[Record]
    subscription_ids: set[str]
    attempt: int = 0
    due: float = 0.0


class Subscriptions:
    """The tenant's subscriptions, and the thread that sends their notifications."""

    def __init__(self, sandbox: "BusinessCentralSandbox", delay_s: float) -> None:
        self.sandbox = sandbox
        self.delay_s = delay_s
        self.handshakes = 0
        self.sent = 0
        self.deleted_by_failure = 0
        self._subscriptions: dict[str, Subscription] = {}
        self._retries: list[_Delivery] = []
        self._wake = threading.Condition(sandbox._lock)
        self._client = httpx.Client(timeout=5.0)
        self._sender: threading.Thread | None = None

    def _start_sending(self) -> None:
        """The sending thread, started with the first subscription (most sandboxes never have one)."""
        if self._sender is None:
            self._sender = threading.Thread(target=self._run, name="bc-sandbox-notifications", daemon=True)
            self._sender.start()

    @property
    def clock(self) -> Callable[[], float]:
        return self.sandbox.clock

    def wake(self) -> None:
        """After a request: the sender gathers its changes (with no subscription yet, nobody is told
        of them, then or later)."""
        with self._wake:
            if self._sender is None:
                self.sandbox.books.changed.clear()
            self._wake.notify_all()

    def listed(self) -> list[Record]:
        with self._wake:
            self._expire()
            return [self._shown(s) for s in self._subscriptions.values()]

    # -- the API -------------------------------------------------------------------------------------

    async def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> "Answer":
        from crossledger.plugins.business_central.sandbox.app import _body, error_body

        try:
            parts = segments(path)
            key = parts[0][1]
            body = _body(raw) if method in ("POST", "PATCH") else {}
            if key is None and method == "GET":
                return 200, {}, {"value": self.listed()}
            if key is None and method == "POST":
                return await self._create(body)
            if key is None:
                raise BCError(405, "BadRequest_MethodNotAllowed", f"'{method}' is not supported here.")
            if method == "GET":
                return 200, {}, self._shown(self._get(key))
            if method == "PATCH":
                return await self._renew(key, body, headers.get("if-match"))
            if method == "DELETE":
                with self._wake:
                    self._check_etag(self._get(key), headers.get("if-match"))
                    del self._subscriptions[key]
                return 204, {}, None
            raise BCError(405, "BadRequest_MethodNotAllowed", f"'{method}' is not supported here.")
        except BCError as error:
            return error.status, {}, error_body(error.status, error.code, error.message)

    async def _create(self, body: Record) -> "Answer":
        url, resource = body.get("notificationUrl"), body.get("resource")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid("The notificationUrl must be an absolute http(s) URL.")
        match = _RESOURCE.match(resource) if isinstance(resource, str) else None
        if match is None or match["entity_set"] not in NOTIFYING:
            raise invalid(f"The resource '{resource}' cannot be subscribed to.")
        if match["company"] != self.sandbox.company_id:
            raise BCError(404, "BadRequest_ResourceNotFound", "The company was not found.")
        client_state = body.get("clientState", "")
        if not isinstance(client_state, str) or len(client_state) > 2048:
            raise invalid("The clientState must be a string of at most 2048 characters.")
        with self._wake:
            self._expire()
            if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
                raise invalid(f"The maximum number of subscriptions ({MAX_SUBSCRIPTIONS}) has been reached.")
        await self._handshake(url)
        now = self.clock()
        subscription_id = uuid.uuid4().hex
        record = {"subscriptionId": subscription_id, "notificationUrl": url, "resource": resource,
                  "userId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.sandbox.client_id)),
                  "lastModifiedDateTime": timestamp(now), "clientState": client_state,
                  "expirationDateTime": timestamp(now + LIFETIME_S), "systemCreatedAt": timestamp(now),
                  "systemCreatedBy": self.sandbox.client_id}
        with self._wake:
            subscription = self._subscriptions[subscription_id] = Subscription(record)
            self._start_sending()
            return 201, {"ETag": self._etag(subscription)}, self._shown(subscription)

    async def _renew(self, key: str, body: Record, if_match: str | None) -> "Answer":
        with self._wake:
            subscription = self._get(key)
            self._check_etag(subscription, if_match)
            url = str(body.get("notificationUrl", subscription.record["notificationUrl"]))
        await self._handshake(url)
        now = self.clock()
        with self._wake:
            subscription = self._get(key)
            subscription.record.update({name: body[name] for name in ("notificationUrl", "clientState")
                                        if name in body})
            subscription.record.update(expirationDateTime=timestamp(now + LIFETIME_S),
                                       lastModifiedDateTime=timestamp(now))
            subscription.version += 1
            return 200, {"ETag": self._etag(subscription)}, self._shown(subscription)

    async def _handshake(self, url: str) -> None:
        """The validation POST to ``url?validationToken=``: the answer must be 200 and the token."""
        token = uuid.uuid4().hex
        separator = "&" if "?" in url else "?"
        self.handshakes += 1
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                answer = await client.post(f"{url}{separator}validationToken={quote(token)}")
        except httpx.HTTPError:
            raise invalid("The subscription was not created: the notification URL could not be reached.") from None
        if answer.status_code != 200 or answer.text.strip().strip('"') != token:
            raise invalid("The subscription was not created: the notification URL did not answer the "
                          "validation token.")

    def _get(self, key: str) -> Subscription:
        self._expire()
        subscription = self._subscriptions.get(key)
        if subscription is None:
            raise BCError(404, "BadRequest_ResourceNotFound", f"The subscription '{key}' was not found.")
        return subscription

    def _etag(self, subscription: Subscription) -> str:
        return etag(subscription.version, subscription.record["subscriptionId"])

    def _check_etag(self, subscription: Subscription, if_match: str | None) -> None:
        if not if_match:
            raise BCError(400, "BadRequest_InvalidToken", "Could not validate the client concurrency token "
                                                          "required by the service.")
        if if_match.strip() not in ("*", self._etag(subscription)):
            raise BCError(412, "Request_EntityChanged", "Another user has already changed the record.")

    def _shown(self, subscription: Subscription) -> Record:
        return {"@odata.etag": self._etag(subscription), **subscription.record}

    def _expire(self) -> None:
        now = timestamp(self.clock())
        for key in [k for k, s in self._subscriptions.items() if s.record["expirationDateTime"] <= now]:
            del self._subscriptions[key]

    # -- notifications -------------------------------------------------------------------------------

    def flush(self, *, collection: bool = False) -> int:
        """Send every subscription's gathered changes now; how many notifications went out."""
        with self._wake:
            self._gather()
            deliveries = self._due(force=True, collection=collection)
        for delivery in deliveries:
            self._send(delivery)
        return sum(len(d.notifications) for d in deliveries)

    def _run(self) -> None:
        while True:
            with self._wake:
                waiting = self._retries or any(s.pending for s in self._subscriptions.values())
                self._wake.wait(timeout=0.05 if waiting else 1.0)  # woken by every request anyway
                self._gather()
                deliveries = self._due(force=False, collection=False)
                now = time.monotonic()
                retries = [d for d in self._retries if d.due <= now]
                self._retries = [d for d in self._retries if d.due > now]
            for delivery in deliveries + retries:
                self._send(delivery)

    def _gather(self) -> None:
        """Move the books' new changes onto the subscriptions watching their entity sets."""
        changes, self.sandbox.books.changed = self.sandbox.books.changed, []
        if not changes:
            return
        self._expire()
        for subscription in self._subscriptions.values():
            match = _RESOURCE.match(subscription.record["resource"])
            watched = [c for c in changes if match is not None and c.entity_set == match["entity_set"]]
            if watched and subscription.first_pending is None:
                subscription.first_pending = time.monotonic()
            subscription.pending += watched

    def _due(self, *, force: bool, collection: bool) -> list[_Delivery]:
        """The notifications due now, one delivery per notification URL."""
        by_url: dict[str, _Delivery] = {}
        now = time.monotonic()
        for subscription in self._subscriptions.values():
            if not subscription.pending or subscription.first_pending is None:
                continue
            if not force and now - subscription.first_pending < self.delay_s:
                continue
            record = subscription.record
            delivery = by_url.setdefault(record["notificationUrl"], _Delivery(record["notificationUrl"], [], set()))
            delivery.subscription_ids.add(record["subscriptionId"])
            delivery.notifications += self._notifications(subscription, collection)
            subscription.pending, subscription.first_pending = [], None
        return list(by_url.values())

    def _notifications(self, subscription: Subscription, collection: bool) -> list[Record]:
        record = subscription.record
        base = record["resource"].lstrip("/")
        common = {"subscriptionId": record["subscriptionId"], "clientState": record["clientState"],
                  "expirationDateTime": record["expirationDateTime"]}
        changes = subscription.pending
        if collection or len(changes) > COLLECTION_THRESHOLD:
            since = _before(min(change.at for change in changes))
            return [{**common, "resource": f"{base}?$filter=lastDateTimeModified%20gt%20{since}",
                     "changeType": "collection", "lastModifiedDateTime": max(change.at for change in changes)}]
        return [{**common, "resource": f"{base}({change.record_id})", "changeType": change.change_type,
                 "lastModifiedDateTime": change.at} for change in changes]

    def _send(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        try:
            answer: int | None = self._client.post(delivery.url, json={"value": delivery.notifications}).status_code
        except httpx.HTTPError:
            answer = None
        if answer is not None and 200 <= answer < 300:
            self.sent += 1
            return
        with self._wake:
            if answer is None or answer in RETRYABLE or answer >= 500:
                if delivery.attempt < MAX_ATTEMPTS:
                    delivery.due = time.monotonic() + min(8.0, 0.25 * 2 ** (delivery.attempt - 1))
                    self._retries.append(delivery)
                return
            for subscription_id in delivery.subscription_ids:  # any other refusal ends the subscription
                if self._subscriptions.pop(subscription_id, None) is not None:
                    self.deleted_by_failure += 1


def _before(moment: str) -> str:
    """The millisecond before a timestamp, so ``gt`` includes the moment itself."""
    at = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) - timedelta(milliseconds=1)
    return timestamp(at.timestamp())
