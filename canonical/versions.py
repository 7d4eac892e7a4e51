"""Event versions and upcasters.

Every event type has a current version. When the shape of an event's data changes, bump its
version here and register an upcaster that lifts the previous version's raw dict one step. Messages
already sitting in queues or in the dead letters are upcast when they are decoded, so they survive
a deploy. Upcasters work on plain dicts because the old shape no longer has a Struct.
"""

from collections.abc import Callable
from typing import Any

RawEvent = dict[str, Any]
Upcaster = Callable[[RawEvent], RawEvent]

CURRENT_VERSIONS: dict[str, int] = {
    "customer.upserted": 1,
    "customer.suspended": 1,
    "customer.reinstated": 1,
    # Left inactive where it was made (a journey undoing its step), not deleted: the record stays.
    "customer.deactivated": 1,
    "customer.deleted": 1,
    # The hub's own: a system now has an id for the customer; tell the others (cross-references).
    "customer.linked": 1,
    "contact.upserted": 1,
    "contact.deleted": 1,
    "subscription.created": 1,
    "subscription.amended": 1,
    "subscription.renewed": 1,
    "subscription.cancelled": 1,
    "invoice.issued": 1,
    "invoice.voided": 1,
    "invoice.paid": 1,
    "invoice.posted": 1,
    "payment.settled": 1,
    "credit_memo.issued": 1,
    "refund.issued": 1,
    "journal_entry.posted": 1,
    "entitlement.changed": 1,
    "case.opened": 1,
    "case.updated": 1,
}

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class VersionError(ValueError):
    """An event whose type is unknown, or whose version is newer than this code knows."""


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` to lift ``event_type`` from ``from_version`` to ``from_version + 1``.

    Example::

        @register_upcaster("customer.upserted", 1)
        def split_name(raw):
            first, _, last = raw["data"].pop("full_name").partition(" ")
            raw["data"]["name"] = f"{first} {last}".strip()
            return raw
    """

    def decorator(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return decorator


def upcast(raw: RawEvent) -> RawEvent:
    """Lift a raw event dict to the current version of its type, one registered step at a time."""
    event_type = raw.get("type")
    if event_type not in CURRENT_VERSIONS:
        raise VersionError(f"unknown event type {event_type!r}")
    current = CURRENT_VERSIONS[event_type]
    version = int(raw.get("version", 1))
    if version > current:
        raise VersionError(f"{event_type} version {version} is newer than this hub knows ({current})")
    while version < current:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise VersionError(f"no upcaster for {event_type} from version {version}")
        raw = step(raw)
        version += 1
        raw["version"] = version
    return raw
