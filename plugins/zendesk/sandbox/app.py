"""A local emulator of the parts of Zendesk Support's API the hub uses, faithful on the wire.

What a client meets at ``https://{subdomain}.zendesk.com/api/v2`` it meets here:

- **Auth**: ``Authorization: Basic base64("{email}/token:{api_token}")``; anything else is a 401
  ``{"error": "Couldn't authenticate you"}``.
- **Resources** are wrapped in a root key (``{"organization": {...}}``), have integer ids, ISO 8601
  UTC times to the second (``2024-04-17T17:18:10Z``) and a ``url``. Paths work with and without
  ``.json``. Unknown attributes in a body are ignored, as Zendesk ignores them. Every answer has
  the shape Zendesk's published Support API description gives it (the tests check each one against
  it): ``null`` only where it documents one, ``""`` for empty text it documents as text (a user's
  ``details`` and ``notes``, a ticket's ``raw_subject``), integers it documents as such left out
  when there are none (a user's ``default_group_id``).
- **Organizations** and **users**: create (201), ``create_or_update`` (201 created / 200 updated;
  matched on ``id``, then ``external_id``, and for users on ``email``; case-insensitively), show,
  update (``PUT``; ``organization_fields`` / ``user_fields`` are merged key by key and stored as
  given), list and search by ``external_id`` (users also by ``query``). Organization names,
  external ids and user e-mails are unique: a clash is a 422 ``DuplicateValue``.
- **Tickets**: create with Zendesk's idempotency: under an ``Idempotency-Key`` the first success is
  stored for two hours, and the same key with the same body returns it again
  (``x-idempotency-lookup: hit``; the first answer says ``miss``), while the same key with another
  body is a 400 ``IdempotentRequestError``. Show, update (a comment is added to the audit;
  ``safe_update`` with a stale ``updated_stamp`` is a 409 ``UpdateConflict``; closed tickets refuse
  updates), list, and find by ``external_id`` (not unique on tickets).
- **Errors**: ``{"error", "description", "details": {field: [{"description", "error"}]}}``; 404
  ``RecordNotFound``; 400 for a missing root key (``ParameterMissing``) or bad paging.
- **Pagination**: cursor when ``page[size]`` (at most 100) is given: ``meta.has_more``,
  ``meta.after_cursor``/``before_cursor``, ``links.next``/``prev`` as absolute URLs, continued with
  ``page[after]``/``page[before]``. Otherwise offset: ``page``/``per_page`` with ``next_page``,
  ``previous_page`` and ``count``; beyond the first 10,000 records it is a 400.
- **Rate limit**: every response carries ``X-Rate-Limit`` and ``X-Rate-Limit-Remaining``; once the
  account's per-minute budget is spent, 429 ``text/plain`` with ``Retry-After`` (seconds).
- **Webhooks** (``POST /webhooks``, ``GET /webhooks/{id}/signing_secret``): each has its own signing
  secret and signs every delivery with it (:mod:`..signature`). A webhook subscribed to
  ``zen:event-type:...`` types gets organization and user events (``organization.created``,
  ``.name_changed``, ``.external_id_changed``, ``.tags_changed``, ``.custom_field_changed``; ``user.created``,
  ``.name_changed``, ``.external_id_changed``, ``.role_changed``, ``.custom_field_changed``), details
  with ids as strings. A webhook subscribed to ``conditional_ticket_events`` stands for one
  connected to two triggers ("Ticket is Created", "Ticket is Updated") whose body is the
  connector's :data:`~crossledger.plugins.zendesk.connector.TRIGGER_TEMPLATE`, placeholders filled
  in as Zendesk fills them (strings, ``""`` for none, statuses capitalised). Deliveries go out in the
  background and are retried on any non-2xx answer.

- **Incremental export** (``GET /incremental/organizations?start_time=``, and users): time-based,
  what changed at or after ``start_time`` (at least a minute ago) and before the last minute, oldest
  first, ``per_page`` (at most 1,000) and the rest of the last record's second; ``end_time``,
  ``next_page``, ``end_of_stream``.

Not emulated: OAuth, deletion, identities and memberships (and their events), bulk and cursor-based
incremental endpoints (tickets), ticket comments as a resource, custom ticket fields, SLA policies, side-loading.
"""

import base64
import binascii
import copy
import hmac
import itertools
import json
import math
import re
import secrets
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from crossledger.plugins.emulator import Faults, WebhookSender, build_app
from crossledger.plugins.zendesk.connector import API_ROOT, EVENT_TYPE_PREFIX, MAX_PAGE_SIZE, TRIGGER_TEMPLATE
from crossledger.plugins.zendesk.signature import WEBHOOK_ID_HEADER, signature_headers, timestamp_text
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

Record = dict[str, Any]
Clock = Callable[[], float]

OFFSET_LIMIT = 10_000
EXPORT_PAGE_SIZE = 1000
"""The most records a page of a time-based incremental export holds (``per_page``)."""
IDEMPOTENCY_TTL_S = 2 * 3600
EVENT_VERSION = "2022-06-20"
TICKET_EVENTS = "conditional_ticket_events"
TICKET_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
ROLES = ("end-user", "agent", "admin")
DEFAULT_RATE_LIMIT = 700
"""Requests a minute: Zendesk's Enterprise plan."""


# -- errors ------------------------------------------------------------------------------------------------


class ZendeskError(Exception):
    """A refused request, answered in Zendesk's error shape."""

    def __init__(self, status: int, error: str, description: str | None = None, *,
                 details: dict[str, list[Record]] | None = None) -> None:
        super().__init__(description or error)
        self.status = status
        self.body: Record = {"error": error}
        if description is not None:
            self.body["description"] = description
        if details is not None:
            self.body["details"] = details

    def response(self) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="Web Password"'} if self.status == 401 else None
        return JSONResponse(self.body, status_code=self.status, headers=headers)


def _not_found() -> ZendeskError:
    return ZendeskError(404, "RecordNotFound", "Not found")


def _invalid(field: str, description: str, error: str = "InvalidValue") -> ZendeskError:
    """A 422 ``RecordInvalid`` naming one field, as Zendesk's validation errors do."""
    return ZendeskError(422, "RecordInvalid", "Record validation errors",
                        details={field: [{"description": description, "error": error}]})


def _bad_paging(description: str) -> ZendeskError:
    return ZendeskError(400, "InvalidPaginationParameter", description)


def _rate_limited(retry_after: int) -> Response:
    """Zendesk's 429: plain text, and how long to wait in ``Retry-After``."""
    return PlainTextResponse("Too Many Requests", status_code=429, headers={"Retry-After": str(retry_after)})


def fault_response(status: int, retry_after: int | None) -> Response:
    """An injected fault as Zendesk would answer it."""
    if status == 429:
        return _rate_limited(retry_after or 1)
    if status == 503:
        return ZendeskError(503, "ServiceUnavailable", "Zendesk is temporarily unavailable").response()
    return ZendeskError(status, "InternalServerError", "Something went wrong on our end").response()


# -- helpers ---------------------------------------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    """Equal, strings case-insensitively (external ids and e-mails are unique regardless of case)."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return a == b


def _string_id(value: int | None, none: str | None) -> str | None:
    """An id as event details show it: a string, and ``none`` when there is none."""
    return none if value is None else str(value)


def _comment(fields: Record) -> Record | None:
    """A ticket write's ``comment``, when it has one."""
    comment = fields.get("comment")
    return comment if isinstance(comment, dict) else None


def _cursor(record_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": "id", "v": record_id}).encode()).decode().rstrip("=")


def _from_cursor(cursor: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["v"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise _bad_paging("The cursor is invalid") from error
    if not isinstance(value, int):
        raise _bad_paging("The cursor is invalid")
    return value


def _token(length: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_signing_secret() -> str:
    """A signing secret shaped like Zendesk's: URL-safe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# -- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What the sandbox knows about organizations or users: the same verbs, different rules."""

    collection: str
    root: str
    custom_fields: str
    defaults: Record
    writable: frozenset[str]
    unique: tuple[str, ...]
    match_on: tuple[str, ...]
    watched: tuple[str, ...]
    """Attributes whose change has its own event (``organization.name_changed``...)."""
    detail: Callable[[Record], Record]
    """The record as an event's ``detail`` shows it: a few fields, ids as strings."""
    references: dict[str, str] = field(default_factory=dict)
    """Fields that must name an existing record, and the collection it is in."""
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Fields whose value must be one of a few."""
    blank: frozenset[str] = frozenset()
    """Text fields Zendesk never shows as ``null``: cleared or never set, they are ``""``."""
    absent_when_none: frozenset[str] = frozenset()
    """Fields a record leaves out rather than show as ``null`` (Zendesk documents them as integers)."""


def _organization_detail(record: Record) -> Record:
    return {"created_at": record["created_at"], "external_id": record["external_id"],
            "group_id": _string_id(record["group_id"], None), "id": str(record["id"]), "name": record["name"],
            "shared_comments": record["shared_comments"], "shared_tickets": record["shared_tickets"],
            "updated_at": record["updated_at"]}


def _user_detail(record: Record) -> Record:
    """Zendesk's user detail: no name, ``""`` for no external id, ``"0"`` for no organization or group."""
    return {"created_at": record["created_at"], "email": record["email"], "external_id": record["external_id"] or "",
            "default_group_id": _string_id(record["default_group_id"], "0"), "id": str(record["id"]),
            "organization_id": _string_id(record["organization_id"], "0"), "role": record["role"],
            "updated_at": record["updated_at"]}


ORGANIZATIONS = Kind(
    collection="organizations", root="organization", custom_fields="organization_fields",
    defaults={"name": None, "external_id": None, "details": None, "notes": None, "domain_names": [],
              "group_id": None, "shared_tickets": False, "shared_comments": False, "tags": [],
              "organization_fields": {}},
    writable=frozenset({"name", "external_id", "details", "notes", "domain_names", "group_id", "shared_tickets",
                        "shared_comments", "tags", "organization_fields"}),
    unique=("name", "external_id"), match_on=("external_id",), watched=("name", "external_id", "tags"),
    detail=_organization_detail,
)
USERS = Kind(
    collection="users", root="user", custom_fields="user_fields",
    defaults={"name": None, "email": None, "external_id": None, "organization_id": None, "role": "end-user",
              "active": True, "verified": False, "suspended": False, "phone": None, "details": "",
              "notes": "", "tags": [], "default_group_id": None, "user_fields": {}},
    writable=frozenset({"name", "email", "external_id", "organization_id", "role", "verified", "suspended", "phone",
                        "details", "notes", "tags", "user_fields"}),
    unique=("email", "external_id"), match_on=("external_id", "email"), watched=("name", "external_id", "role"),
    detail=_user_detail, references={"organization_id": "organizations"}, choices={"role": ROLES},
    blank=frozenset({"details", "notes"}), absent_when_none=frozenset({"default_group_id"}),
)
KINDS = {kind.collection: kind for kind in (ORGANIZATIONS, USERS)}
TICKET_FIELDS = frozenset({"subject", "status", "priority", "type", "tags", "external_id", "organization_id",
                           "requester_id", "assignee_id", "group_id", "custom_fields"})

_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


@dataclass
class _Webhook:
    id: str
    name: str
    endpoint: str
    subscriptions: list[str]
    secret: str
    created_at: str

    def shown(self) -> Record:
        return {"id": self.id, "name": self.name, "status": "active", "endpoint": self.endpoint,
                "http_method": "POST", "request_format": "json", "subscriptions": self.subscriptions,
                "created_at": self.created_at}


@dataclass(frozen=True)
class _Stored:
    """A ticket creation remembered under its idempotency key."""

    fingerprint: str
    at: float
    body: Record


class Account:
    """One Zendesk account's records, rules and outgoing webhooks. Not thread-safe: the sandbox
    calls it with its lock held."""

    def __init__(self, clock: Clock, sender: WebhookSender, admin_email: str) -> None:
        self._clock = clock
        self._sender = sender
        self.account_id = secrets.randbelow(9 * 10**7) + 10**7
        self.records: dict[str, dict[int, Record]] = {"organizations": {}, "users": {}, "tickets": {}}
        self.webhooks: dict[str, _Webhook] = {}
        self._ids = itertools.count(secrets.randbelow(10**12) + 10**12)
        self._ticket_ids = itertools.count(1)
        self._field_ids: dict[str, int] = {}
        self._idempotent: dict[str, _Stored] = {}
        self.admin = self.create(USERS, {"name": "Sandbox Admin", "email": admin_email, "role": "admin"})

    def now(self) -> str:
        return timestamp_text(self._clock())

    # organizations and users

    def get(self, collection: str, record_id: int) -> Record:
        record = self.records[collection].get(record_id)
        if record is None:
            raise _not_found()
        return record

    def create(self, kind: Kind, fields: Record) -> Record:
        now = self.now()
        record = {"id": next(self._ids), **copy.deepcopy(kind.defaults), "created_at": now, "updated_at": now}
        self._write(kind, record, fields)
        self.records[kind.collection][record["id"]] = record
        self._emit_events(kind, None, record)
        return record

    def update(self, kind: Kind, record: Record, fields: Record) -> Record:
        before = copy.deepcopy(record)
        changed = copy.deepcopy(record)
        self._write(kind, changed, fields)
        if changed != before:
            changed["updated_at"] = self.now()
        record.update(changed)
        self._emit_events(kind, before, record)
        return record

    def create_or_update(self, kind: Kind, fields: Record) -> tuple[Record, bool]:
        """The record ``fields`` match (by id, then ``match_on``), updated; or a new one."""
        if fields.get("id") is not None:
            if not isinstance(fields["id"], int):
                raise _invalid("id", f"Id: {fields['id']} is not an integer")
            return self.update(kind, self.get(kind.collection, fields["id"]), fields), False
        for name in kind.match_on:
            found = self.find(kind, name, fields.get(name))
            if found is not None:
                return self.update(kind, found, fields), False
        return self.create(kind, fields), True

    def find(self, kind: Kind, name: str, value: object) -> Record | None:
        if value is None or value == "":
            return None
        return next((r for r in self.records[kind.collection].values() if _same(r.get(name), value)), None)

    def _write(self, kind: Kind, record: Record, fields: Record) -> None:
        """Apply the writable ``fields`` to ``record`` (custom fields merged), then check the result."""
        for name, value in fields.items():
            if name not in kind.writable:
                continue  # Zendesk ignores attributes it does not know or lets nobody write
            if name == kind.custom_fields:
                if not isinstance(value, dict):
                    raise _invalid(name, f"{name} must be an object")
                record[name] = {**record[name], **value}
            elif value is None and name in kind.blank:
                record[name] = ""
            else:
                record[name] = value
        self._check(kind, record)

    def _check(self, kind: Kind, record: Record) -> None:
        if not isinstance(record.get("name"), str) or not record["name"].strip():
            raise _invalid("name", "Name: cannot be blank", "BlankValue")
        for name in kind.unique:
            clash = self.find(kind, name, record.get(name))
            if clash is not None and clash["id"] != record["id"]:
                # Zendesk's words: the field's label and no value ("Name: has already been taken").
                raise _invalid(name, f"{name.replace('_', ' ').capitalize()}: has already been taken", "DuplicateValue")
        for name, allowed in kind.choices.items():
            if record[name] not in allowed:
                raise _invalid(name, f"{name.capitalize()}: {record[name]} is not valid")
        for name, collection in kind.references.items():
            self._existing(name, collection, record[name])

    def _existing(self, field: str, collection: str, value: object) -> None:
        """A reference must name a record that exists (Zendesk: ``Organization: is invalid``)."""
        if value is not None and (not isinstance(value, int) or value not in self.records[collection]):
            label = field.removesuffix("_id").capitalize()
            raise _invalid(field, f"{label}: is invalid")

    # tickets

    def create_ticket(self, fields: Record, key: str | None) -> tuple[Record, bool]:
        """A new ticket (with its audit), or the one created before under ``key`` (``hit``)."""
        now_s = self._clock()
        self._idempotent = {k: v for k, v in self._idempotent.items() if now_s - v.at < IDEMPOTENCY_TTL_S}
        fingerprint = json.dumps(fields, sort_keys=True)
        stored = self._idempotent.get(key) if key else None
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise ZendeskError(400, "IdempotentRequestError",
                                   "The request parameters do not match those of the original request "
                                   "made with this Idempotency-Key")
            return copy.deepcopy(stored.body), True
        ticket = self._new_ticket(fields)
        body = {"ticket": ticket, "audit": self._audit(ticket, fields, created=True)}
        if key:
            self._idempotent[key] = _Stored(fingerprint, now_s, copy.deepcopy(body))
        return body, False

    def _new_ticket(self, fields: Record) -> Record:
        comment = _comment(fields) or {}
        description = comment.get("body") or comment.get("html_body") or fields.get("description")
        if not isinstance(description, str) or not description.strip():
            raise _invalid("description", "Description: cannot be blank", "BlankValue")
        requester = self._requester(fields)
        now = self.now()
        ticket: Record = {
            "id": next(self._ticket_ids), "external_id": None, "subject": None, "raw_subject": None,
            "description": description, "status": "new", "priority": None, "type": None,
            "requester_id": requester, "submitter_id": self.admin["id"], "assignee_id": None,
            "organization_id": None, "group_id": None, "tags": [], "custom_fields": [],
            "via": {"channel": "api"}, "created_at": now, "updated_at": now,
        }
        self._apply_ticket(ticket, fields)
        self.records["tickets"][ticket["id"]] = ticket
        self._emit_ticket(ticket, "ticket.created")
        return ticket

    def _requester(self, fields: Record) -> int:
        """``requester_id``, or ``requester: {email, name}`` (found or made an end user), or the caller."""
        given = fields.get("requester")
        if isinstance(given, dict) and given.get("email"):
            found = self.find(USERS, "email", given["email"])
            made = found or self.create(USERS, {"email": given["email"], "name": given.get("name") or given["email"]})
            return int(made["id"])
        requester_id = fields.get("requester_id")
        if requester_id is None:
            return int(self.admin["id"])
        self._existing("requester_id", "users", requester_id)
        return int(requester_id)

    def update_ticket(self, ticket: Record, fields: Record) -> Record:
        if ticket["status"] == "closed":
            raise _invalid("status", "Status: closed prevents ticket update")
        if fields.get("safe_update") and fields.get("updated_stamp") != ticket["updated_at"]:
            raise ZendeskError(409, "UpdateConflict", "Safe Update prevented the update due to outdated ticket "
                                                      "data. Please fetch the latest ticket data and try again.")
        changed = copy.deepcopy(ticket)
        self._apply_ticket(changed, fields)
        if changed != ticket or _comment(fields) is not None:
            changed["updated_at"] = self.now()
        ticket.update(changed)
        audit = self._audit(ticket, fields, created=False)
        self._emit_ticket(ticket, "ticket.updated")
        return {"ticket": ticket, "audit": audit}

    def _apply_ticket(self, ticket: Record, fields: Record) -> None:
        for name in TICKET_FIELDS & fields.keys():
            ticket[name] = fields[name]
        ticket["raw_subject"] = ticket["subject"] or ""  # documented as text, unlike the nullable subject
        if ticket["status"] not in TICKET_STATUSES:
            raise _invalid("status", f"Status: {ticket['status']} is not a valid status")
        if ticket["priority"] is not None and ticket["priority"] not in PRIORITIES:
            raise _invalid("priority", f"Priority: {ticket['priority']} is not a valid priority")
        self._existing("organization_id", "organizations", ticket["organization_id"])
        self._existing("requester_id", "users", ticket["requester_id"])

    def _audit(self, ticket: Record, fields: Record, *, created: bool) -> Record:
        comment = _comment(fields)
        events: list[Record] = []
        if comment is not None:
            events.append({"id": next(self._ids), "type": "Comment", "body": comment.get("body"),
                           "public": comment.get("public", True), "author_id": self.admin["id"]})
        action = "Create" if created else "Change"
        events += [{"id": next(self._ids), "type": action, "field_name": name, "value": ticket[name]}
                   for name in sorted(TICKET_FIELDS & fields.keys())]
        return {"id": next(self._ids), "ticket_id": ticket["id"], "created_at": ticket["updated_at"],
                "author_id": self.admin["id"], "events": events}

    # webhooks

    def create_webhook(self, fields: Record, secret: str | None = None) -> _Webhook:
        for name in ("name", "endpoint"):
            if not isinstance(fields.get(name), str) or not fields[name]:
                raise _invalid(name, f"{name.capitalize()}: cannot be blank", "BlankValue")
        subscriptions = fields.get("subscriptions") or []
        if not isinstance(subscriptions, list) or not all(isinstance(s, str) for s in subscriptions):
            raise _invalid("subscriptions", "Subscriptions: must be a list of event types")
        if TICKET_EVENTS in subscriptions and len(subscriptions) > 1:
            raise _invalid("subscriptions", "Subscriptions: a webhook connected to triggers cannot also "
                                            "subscribe to events")
        webhook = _Webhook(id="01" + _token(24, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), name=fields["name"],
                           endpoint=fields["endpoint"], subscriptions=list(subscriptions),
                           secret=secret or new_signing_secret(), created_at=self.now())
        self.webhooks[webhook.id] = webhook
        return webhook

    def _emit_events(self, kind: Kind, before: Record | None, after: Record) -> None:
        for event_type, event in _changes(kind, before, after, self._field_id):
            body = {"type": EVENT_TYPE_PREFIX + event_type, "account_id": self.account_id, "id": str(uuid.uuid4()),
                    "time": after["updated_at"], "zendesk_event_version": EVENT_VERSION,
                    "subject": f"zen:{kind.root}:{after['id']}", "detail": kind.detail(after), "event": event}
            self._send(EVENT_TYPE_PREFIX + event_type, body)

    def _emit_ticket(self, ticket: Record, event_type: str) -> None:
        self._send(TICKET_EVENTS, _render_trigger(ticket, event_type))

    def _field_id(self, key: str) -> int:
        """The id of the custom field ``key`` (Zendesk defines each field once, with an id)."""
        return self._field_ids.setdefault(key, 360_000_000 + len(self._field_ids))

    def _send(self, subscription: str, body: Record) -> None:
        payload = json.dumps(body).encode()
        for webhook in self.webhooks.values():
            if subscription in webhook.subscriptions:
                self._sender.send(webhook.endpoint, payload, self._signer(webhook))

    def _signer(self, webhook: _Webhook) -> Callable[[bytes], dict[str, str]]:
        """Headers for one delivery attempt, signed at the time of that attempt."""

        def headers(body: bytes) -> dict[str, str]:
            return {"Content-Type": "application/json", "User-Agent": "Zendesk Webhook",
                    WEBHOOK_ID_HEADER: webhook.id, "X-Zendesk-Webhook-Invocation-Id": str(secrets.randbelow(10**10)),
                    **signature_headers(webhook.secret, self._clock(), body)}

        return headers


def _changes(kind: Kind, before: Record | None, after: Record,
             field_id: Callable[[str], int]) -> Iterator[tuple[str, Record]]:
    """The events a write makes: ``created``, or one per watched attribute and custom field changed."""
    if before is None:
        yield f"{kind.root}.created", {}
        return
    for name in kind.watched:
        if before[name] != after[name]:
            yield f"{kind.root}.{name}_changed", {"current": after[name], "previous": before[name]}
    old, new = before[kind.custom_fields], after[kind.custom_fields]
    for key in sorted(new.keys() | old.keys()):
        if old.get(key) != new.get(key):
            definition = {"id": str(field_id(key)), "title": key, "field_type": "text"}
            yield f"{kind.root}.custom_field_changed", {"current": new.get(key), "previous": old.get(key),
                                                         "custom_field": definition}


def _render_trigger(ticket: Record, event_type: str) -> Record:
    """The connector's trigger template with its placeholders filled in as Zendesk fills them."""
    values = {
        "ticket.id": str(ticket["id"]),
        "ticket.external_id": ticket["external_id"] or "",
        "ticket.title": ticket["subject"] or "",
        "ticket.description": ticket["description"] or "",
        "ticket.status": "On-hold" if ticket["status"] == "hold" else ticket["status"].capitalize(),
        "ticket.priority": (ticket["priority"] or "-").capitalize(),
        "ticket.organization.id": _string_id(ticket["organization_id"], ""),
        "ticket.requester.id": str(ticket["requester_id"]),
        "ticket.created_at_with_timestamp": ticket["created_at"],
        "ticket.updated_at_with_timestamp": ticket["updated_at"],
    }

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {name: fill(item) for name, item in value.items()}
        if isinstance(value, str):
            return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), ""), value)
        return value

    rendered: Record = fill(TRIGGER_TEMPLATE)
    return {**rendered, "event": event_type}


# -- HTTP ------------------------------------------------------------------------------------------------


class RateLimit:
    """The account's per-minute request budget, over a sliding minute; thread-safe."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> int | Response:
        """The requests left after this one, or the 429 to answer when the budget is spent."""
        with self._lock:
            now = self._clock()
            while self._times and self._times[0] <= now - 60:
                self._times.popleft()
            if len(self._times) >= self.per_minute:
                return _rate_limited(max(1, math.ceil(self._times[0] + 60 - now)))
            self._times.append(now)
            return self.per_minute - len(self._times)


@dataclass(frozen=True)
class Call:
    """One authenticated API request, its JSON body parsed."""

    request: Request
    body: Record

    @property
    def api_root(self) -> str:
        """``{scheme}://{host}{mount prefix}/api/v2``: where links and ``url`` fields point."""
        url = str(self.request.url.replace(query=""))
        return url[: url.index(API_ROOT) + len(API_ROOT)]

    @property
    def id(self) -> int:
        return int(self.request.path_params["id"])

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def root(self, name: str) -> Record:
        """The resource in the body's root key; Zendesk answers 400 without it."""
        value = self.body.get(name)
        if not isinstance(value, dict):
            raise ZendeskError(400, "ParameterMissing", f"param is missing or the value is empty: {name}")
        return value

    def link(self, **params: Any) -> str:
        """This endpoint's absolute URL with ``params`` as its query (for paging links)."""
        return str(self.request.url.replace(query=urlencode(params)))


Handler = Callable[[Call], Response]


def _parse_body(raw: bytes) -> Record:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ZendeskError(400, "InvalidJSON", f"The request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise ZendeskError(400, "InvalidJSON", "The request body must be a JSON object")
    return body


def _int_param(call: Call, name: str, default: int) -> int:
    raw = call.query(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise _bad_paging(f"{name} must be a positive integer")
    return int(raw)


def _page(call: Call, collection: str, records: list[Record]) -> Record:
    """One page of ``records`` (in id order): cursor paging when asked for, offset paging otherwise."""
    if any(name in call.request.query_params for name in ("page[size]", "page[after]", "page[before]")):
        return _cursor_page(call, collection, records)
    page, per_page = _int_param(call, "page", 1), _int_param(call, "per_page", MAX_PAGE_SIZE)
    if page < 1 or not 1 <= per_page <= MAX_PAGE_SIZE:
        raise _bad_paging(f"page must be at least 1 and per_page between 1 and {MAX_PAGE_SIZE}")
    start = (page - 1) * per_page
    if start >= OFFSET_LIMIT:
        raise _bad_paging(f"Offset pagination is limited to the first {OFFSET_LIMIT:,} records; "
                          "use cursor pagination (page[size])")
    more = start + per_page < len(records)
    return {collection: records[start: start + per_page],
            "next_page": call.link(page=page + 1, per_page=per_page) if more else None,
            "previous_page": call.link(page=page - 1, per_page=per_page) if page > 1 else None,
            "count": len(records)}


def _export_page(call: Call, collection: str, records: list[Record], now: float) -> Record:
    """One page of a time-based incremental export: the records updated at or after ``start_time``
    (Unix seconds, required, at least a minute in the past) and before the last minute ("data isn't
    provided for the most recent minute"), oldest change first, ``per_page`` of them (at most 1,000)
    and then every other record stamped in the last one's second, so a page never splits a second.
    ``end_time`` is that second and ``next_page`` starts there (so the next page repeats its records,
    as Zendesk says it may); ``end_of_stream`` once a page is not full."""
    raw = call.query("start_time")
    if raw is None:
        raise _bad_paging("start_time is required")
    start, per_page = _int_param(call, "start_time", 0), _int_param(call, "per_page", EXPORT_PAGE_SIZE)
    if start > now - 60:
        raise ZendeskError(400, "InvalidValue", "Too recent start_time. Use a start_time older than 1 minute")
    if not 1 <= per_page <= EXPORT_PAGE_SIZE:
        raise _bad_paging(f"per_page must be between 1 and {EXPORT_PAGE_SIZE}")
    stamped = sorted(((_epoch(record["updated_at"]), record) for record in records), key=lambda p: (p[0], p[1]["id"]))
    since = [(at, record) for at, record in stamped if start <= at <= now - 60]
    page = since[:per_page]
    end_of_stream = len(page) < per_page
    end = page[-1][0] if page else start
    page += [(at, record) for at, record in since[per_page:] if at == end]
    return {collection: [record for _, record in page], "count": len(page), "end_of_stream": end_of_stream,
            "end_time": end, "next_page": None if end_of_stream else call.link(start_time=end, per_page=per_page)}


def _epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _cursor_page(call: Call, collection: str, records: list[Record]) -> Record:
    size = _int_param(call, "page[size]", MAX_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _bad_paging(f"page[size] must be between 1 and {MAX_PAGE_SIZE}")
    after, before = call.query("page[after]"), call.query("page[before]")
    if before:
        items = [r for r in records if r["id"] < _from_cursor(before)][-size:]
    else:
        items = [r for r in records if after is None or r["id"] > _from_cursor(after)][:size]
    if not items:
        return {collection: [], "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
                "links": {"next": None, "prev": None}}
    first, last = _cursor(items[0]["id"]), _cursor(items[-1]["id"])
    later = records[-1]["id"] > items[-1]["id"]
    earlier = records[0]["id"] < items[0]["id"]
    # has_more looks the way the client is paging: forwards, or backwards with page[before].
    return {collection: items,
            "meta": {"has_more": earlier if before else later, "after_cursor": last, "before_cursor": first},
            "links": {"next": call.link(**{"page[size]": size, "page[after]": last}) if later else None,
                      "prev": call.link(**{"page[size]": size, "page[before]": first}) if earlier else None}}


def _list_answer(collection: str, records: list[Record]) -> Record:
    """A search answer: every match on one page."""
    return {collection: records, "next_page": None, "previous_page": None, "count": len(records)}


class ZendeskSandbox:
    """An in-memory Zendesk account behind its REST API; thread-safe.

    Serve :attr:`app` (e.g. with :class:`~crossledger.plugins.emulator.ServerThread`), point the
    connector at it with :meth:`connector_settings`, register the hub with :meth:`subscribe`, and
    read what was written with :meth:`state`.
    """

    def __init__(self, *, requests_per_minute: int = DEFAULT_RATE_LIMIT, clock: Clock = time.time) -> None:
        self.email = "admin@sandbox.zendesk.test"
        self.api_token = _token(40, string.ascii_letters + string.digits)
        self.signing_secret = new_signing_secret()
        self.ticket_signing_secret = new_signing_secret()
        self.faults = Faults()
        self._sender = WebhookSender()
        self.rate_limit = RateLimit(requests_per_minute, clock)
        self._lock = threading.RLock()
        self._clock = clock
        self._account = Account(clock, self._sender, self.email)
        self._app = build_app(self._routes(), faults=self.faults, state=self.state, fault_response=fault_response)

    @property
    def app(self) -> Any:
        return self._app

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "email": self.email, "api_token": self.api_token,
                "webhook_secret": self.signing_secret, "ticket_webhook_secret": self.ticket_signing_secret}

    def subscribe(self, hub_webhook_url: str) -> None:
        """Register the hub as an operator would: one webhook subscribed to every organization and
        user event, signed with :attr:`signing_secret`, and one connected to the ticket triggers,
        signed with :attr:`ticket_signing_secret` (Zendesk allows no webhook to be both)."""
        events = [EVENT_TYPE_PREFIX + f"{kind.root}.{change}" for kind in (ORGANIZATIONS, USERS)
                  for change in ("created", *(f"{name}_changed" for name in kind.watched), "custom_field_changed")]
        with self._lock:
            self._account.create_webhook({"name": "crossledger events", "endpoint": hub_webhook_url,
                                          "subscriptions": events}, self.signing_secret)
            self._account.create_webhook({"name": "crossledger tickets", "endpoint": hub_webhook_url,
                                          "subscriptions": [TICKET_EVENTS]}, self.ticket_signing_secret)

    def wait_for_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until every webhook sent so far was delivered or abandoned; False on timeout."""
        return self._sender.wait_idle(timeout)

    def state(self) -> dict[str, Any]:
        """Every record by collection, as the API shows them (with ``url``s relative to the host)."""
        with self._lock:
            shown = {collection: [self._shown(collection, record, API_ROOT) for record in records.values()]
                     for collection, records in self._account.records.items()}
        return {**shown, "webhooks": self._sender.stats()}

    # routing

    def _routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for kind in (ORGANIZATIONS, USERS):
            routes += self._route(f"/{kind.collection}", GET=self._lister(kind.collection),
                                  POST=self._creator(kind))
            routes += self._route(f"/{kind.collection}/create_or_update", POST=self._upserter(kind))
            routes += self._route(f"/{kind.collection}/search", GET=self._searcher(kind))
            routes += self._route(f"/{kind.collection}/{{id:int}}", GET=self._shower(kind.collection),
                                  PUT=self._updater(kind))
            routes += self._route(f"/incremental/{kind.collection}", GET=self._exporter(kind.collection))
        routes += self._route("/tickets", GET=self._list_tickets, POST=self._create_ticket)
        routes += self._route("/tickets/{id:int}", GET=self._shower("tickets"), PUT=self._update_ticket)
        routes += self._route("/webhooks", POST=self._create_webhook)
        routes += self._route("/webhooks/{webhook_id}/signing_secret", GET=self._signing_secret)
        return routes

    def _route(self, path: str, **handlers: Handler) -> list[BaseRoute]:
        """``path`` with and without ``.json``, its requests authenticated, rate-limited, parsed,
        run one at a time against the account, and refusals answered in Zendesk's shape."""

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                self._authenticate(request)
            except ZendeskError as refused:
                return refused.response()
            remaining = self.rate_limit.take()
            if isinstance(remaining, Response):
                return remaining
            try:
                call = Call(request, _parse_body(raw))
                with self._lock:
                    response = handlers["GET" if request.method == "HEAD" else request.method](call)
            except ZendeskError as error:
                response = error.response()
            response.headers["X-Rate-Limit"] = str(self.rate_limit.per_minute)
            response.headers["X-Rate-Limit-Remaining"] = str(remaining)
            return response

        full = API_ROOT + path
        return [Route(full + ".json", endpoint, methods=list(handlers)), Route(full, endpoint, methods=list(handlers))]

    def _authenticate(self, request: Request) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, ValueError):
            given = ""
        expected = f"{self.email}/token:{self.api_token}"
        if scheme.lower() != "basic" or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ZendeskError(401, "Couldn't authenticate you")

    # handlers: called with the lock held

    def _shown(self, collection: str, record: Record, api_root: str) -> Record:
        kind = KINDS.get(collection)
        hidden = kind.absent_when_none if kind is not None else frozenset()
        return {"url": f"{api_root}/{collection}/{record['id']}.json",
                **{name: copy.deepcopy(value) for name, value in record.items()
                   if not (value is None and name in hidden)}}

    def _one(self, call: Call, collection: str, record: Record, status: int = 200) -> Response:
        root = collection.removesuffix("s")
        return JSONResponse({root: self._shown(collection, record, call.api_root)}, status_code=status)

    def _many(self, call: Call, collection: str, records: list[Record]) -> list[Record]:
        return [self._shown(collection, record, call.api_root) for record in records]

    def _lister(self, collection: str) -> Handler:
        def handle(call: Call) -> Response:
            records = sorted(self._account.records[collection].values(), key=lambda r: int(r["id"]))
            return JSONResponse(_page(call, collection, self._many(call, collection, records)))
        return handle

    def _exporter(self, collection: str) -> Handler:
        """``GET /incremental/{collection}?start_time=`` (:func:`_export_page`)."""
        def handle(call: Call) -> Response:
            records = self._account.records[collection].values()
            return JSONResponse(_export_page(call, collection, self._many(call, collection, list(records)),
                                             self._clock()))
        return handle

    def _shower(self, collection: str) -> Handler:
        def handle(call: Call) -> Response:
            return self._one(call, collection, self._account.get(collection, call.id))
        return handle

    def _creator(self, kind: Kind) -> Handler:
        def handle(call: Call) -> Response:
            return self._one(call, kind.collection, self._account.create(kind, call.root(kind.root)), 201)
        return handle

    def _upserter(self, kind: Kind) -> Handler:
        def handle(call: Call) -> Response:
            record, created = self._account.create_or_update(kind, call.root(kind.root))
            return self._one(call, kind.collection, record, 201 if created else 200)
        return handle

    def _updater(self, kind: Kind) -> Handler:
        def handle(call: Call) -> Response:
            record = self._account.get(kind.collection, call.id)
            return self._one(call, kind.collection, self._account.update(kind, record, call.root(kind.root)))
        return handle

    def _searcher(self, kind: Kind) -> Handler:
        """``?external_id=`` (exact, any case); organizations also ``?name=``, users ``?query=`` (part
        of the name or e-mail)."""
        def handle(call: Call) -> Response:
            records = list(self._account.records[kind.collection].values())
            if call.query("external_id") is not None:
                found = [r for r in records if _same(r["external_id"], call.query("external_id"))]
            elif kind is ORGANIZATIONS and call.query("name") is not None:
                found = [r for r in records if _same(r["name"], call.query("name"))]
            elif kind is USERS and call.query("query") is not None:
                text = (call.query("query") or "").casefold()
                found = [r for r in records if any(text in (r[name] or "").casefold() for name in ("name", "email"))]
            else:
                raise ZendeskError(400, "ParameterMissing", "param is missing or the value is empty: external_id")
            return JSONResponse(_list_answer(kind.collection, self._many(call, kind.collection, found)))
        return handle

    def _list_tickets(self, call: Call) -> Response:
        tickets = sorted(self._account.records["tickets"].values(), key=lambda t: int(t["id"]))
        external_id = call.query("external_id")
        if external_id is not None:
            found = [ticket for ticket in tickets if _same(ticket["external_id"], external_id)]
            return JSONResponse(_list_answer("tickets", self._many(call, "tickets", found)))
        return JSONResponse(_page(call, "tickets", self._many(call, "tickets", tickets)))

    def _create_ticket(self, call: Call) -> Response:
        key = call.request.headers.get("idempotency-key")
        body, replayed = self._account.create_ticket(call.root("ticket"), key)
        body["ticket"] = self._shown("tickets", body["ticket"], call.api_root)
        headers = {"Location": body["ticket"]["url"]}
        if key:
            headers["x-idempotency-lookup"] = "hit" if replayed else "miss"
        return JSONResponse(body, status_code=201, headers=headers)

    def _update_ticket(self, call: Call) -> Response:
        ticket = self._account.get("tickets", call.id)
        body = self._account.update_ticket(ticket, call.root("ticket"))
        return JSONResponse({**body, "ticket": self._shown("tickets", body["ticket"], call.api_root)})

    def _create_webhook(self, call: Call) -> Response:
        webhook = self._account.create_webhook(call.root("webhook"))
        return JSONResponse({"webhook": webhook.shown()}, status_code=201)

    def _signing_secret(self, call: Call) -> Response:
        webhook = self._account.webhooks.get(call.request.path_params["webhook_id"])
        if webhook is None:
            raise _not_found()
        return JSONResponse({"signing_secret": {"algorithm": "SHA256", "secret": webhook.secret}})
