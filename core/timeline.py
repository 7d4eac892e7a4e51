"""One transaction's timeline, from the audit records.

A key is a correlation id (one inbound event and everything it caused) or a canonical entity id;
for an entity, the timeline joins the whole trails of every correlation that touched it, so an
invoice shows its webhook, ingest, parking, probing and delivery, and those of its payments.
"""

from crossledger.core.stores.base import AuditRecord, Store


def timeline(store: Store, key: str, *, related: list[str] | None = None) -> list[AuditRecord]:
    """The audit records of ``key`` (and of the ``related`` entities), oldest first."""
    trail = store.audit_trail(key)
    if trail:
        return trail
    correlations = {record.correlation_id for subject in [key, *(related or [])]
                    for record in store.audit_for_subject(subject)}
    records = [record for correlation in correlations for record in store.audit_trail(correlation)]
    return sorted(records, key=lambda record: record.at)
