"""The sandbox org's outbound messages: queued on every change, sent in batches, retried until Ack.

The org has one outbound message action per object (Account, Contact), each with its own
``ActionId``, both pointing at the endpoint registered with :meth:`OutboundMessaging.subscribe`
(the hub's ``/webhooks/salesforce``). Every create or update of such a record through the API
queues a notification with a new ``04l...`` id. Queued notifications leave after each API request,
grouped by action, up to 100 per message (:data:`~.soap.MAX_NOTIFICATIONS`), and carry the record
*as it is when the message is built*: a record changed twice before it was sent appears twice with
the same, latest data, and a deleted one not at all (Salesforce documents both).

A message is delivered only when the answer is the SOAP Ack; anything else (an error status, a
fault, a 200 without ``<Ack>true</Ack>``) is retried with growing delays, as Salesforce does
(its delays reach two hours; the sandbox's are shorter so tests finish).

:meth:`hold` keeps notifications queued so that many changes make full batches on :meth:`release`;
:meth:`resend` sends the last message again, the way Salesforce sometimes delivers one twice.
"""

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from crossledger.plugins.emulator import WebhookSender
from crossledger.plugins.salesforce import soap
from crossledger.plugins.salesforce.ids import IdFactory

SOAP_API_VERSION = "62.0"

ReadFields = Callable[[str, str], dict[str, str | None] | None]
"""``(sObject type, record id)`` -> the record's fields as SOAP text, None when it no longer exists."""


def acknowledged(response: httpx.Response) -> bool:
    """Whether the receiver took the message: HTTP 200 with the Ack, and nothing else."""
    return response.status_code == 200 and soap.is_ack(response.content)


def _headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": soap.CONTENT_TYPE, "SOAPAction": '""'}


@dataclass(frozen=True)
class _Queued:
    notification_id: str
    sobject: str
    record_id: str


class OutboundMessaging:
    """The outbound message queue of one org. Not thread-safe: the sandbox calls it under its lock."""

    def __init__(self, organization_id: str, ids: IdFactory, sobjects: tuple[str, ...]) -> None:
        self._organization_id = organization_id
        self._ids = ids
        self._actions = {sobject: ids.new("04k") for sobject in sobjects}
        self._sender = WebhookSender(accepted=acknowledged)
        self._endpoint: str | None = None
        self._queued: list[_Queued] = []
        self._held = False
        self._last: bytes | None = None
        self.messages = 0

    def subscribe(self, url: str | None) -> None:
        """Point every action at ``url`` (the endpoint URL of the outbound message definitions);
        None deactivates them, dropping what is queued."""
        self._endpoint = url
        if url is None:
            self._queued.clear()

    def queue(self, sobject: str, record_id: str) -> None:
        """A record of ``sobject`` was created or edited: queue a notification if an action watches it."""
        if self._endpoint is not None and sobject in self._actions:
            self._queued.append(_Queued(self._ids.new("04l"), sobject, record_id))

    def hold(self) -> None:
        self._held = True

    def release(self, read: ReadFields, instance_url: str) -> int:
        """Stop holding and send everything queued; how many messages that made."""
        self._held = False
        return self.flush(read, instance_url)

    def flush(self, read: ReadFields, instance_url: str) -> int:
        """Send the queued notifications (unless held), one message per action and 100 notifications."""
        if self._held or self._endpoint is None:
            return 0
        queued, self._queued = self._queued, []
        sent = 0
        for sobject, action_id in self._actions.items():
            notifications = [soap.Notification(item.notification_id, sobject, fields) for item in queued
                             if item.sobject == sobject and (fields := read(sobject, item.record_id)) is not None]
            for start in range(0, len(notifications), soap.MAX_NOTIFICATIONS):
                self._send(self._message(action_id, notifications[start:start + soap.MAX_NOTIFICATIONS], instance_url))
                sent += 1
        return sent

    def resend(self) -> bool:
        """Send the last message again, same notification ids and all; False when none was sent yet."""
        if self._last is None or self._endpoint is None:
            return False
        self._send(self._last)
        return True

    def wait(self, timeout: float) -> bool:
        """Block until every message was acknowledged or given up on; False on timeout."""
        return self._sender.wait_idle(timeout)

    def stats(self) -> dict[str, object]:
        return {"endpoint": self._endpoint, "messages": self.messages, "queued": len(self._queued),
                "held": self._held, **self._sender.stats()}

    def _message(self, action_id: str, notifications: list[soap.Notification], instance_url: str) -> bytes:
        org15 = self._organization_id[:15]
        return soap.render(soap.OutboundMessage(
            organization_id=self._organization_id,
            action_id=action_id,
            session_id=None,  # "Send Session ID" is off: the hub never acts as the org's user
            enterprise_url=f"{instance_url}/services/Soap/c/{SOAP_API_VERSION}/{org15}",
            partner_url=f"{instance_url}/services/Soap/u/{SOAP_API_VERSION}/{org15}",
            notifications=notifications,
        ))

    def _send(self, body: bytes) -> None:
        assert self._endpoint is not None
        self._last = body
        self.messages += 1
        self._sender.send(self._endpoint, body, _headers)
