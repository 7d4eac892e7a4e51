"""Cross-references for connectors, answered by the store (the :class:`Refs` protocol)."""

from collections.abc import Mapping

from crossledger.canonical.entities import canonical_id
from crossledger.core.stores.base import Store
from crossledger.plugins.types import Refs


class StoreRefs:
    def __init__(self, store: Store) -> None:
        self._store = store

    def external_id(self, canonical_id: str, system: str) -> str | None:
        return self._store.xref_get(canonical_id, system)

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        known = self._store.xref_find(entity_type, system, external_id)
        if known is not None:
            return known
        new = canonical_id(entity_type, system, external_id)
        self._store.xref_put(new, entity_type, system, external_id)
        return new


class LinkedRefs:
    """Cross-references with some of a record's ids given for one delivery: a journey telling a
    second CRM account of a company the ids its billing and ERP records have."""

    def __init__(self, refs: Refs, subject: str, links: Mapping[str, str]) -> None:
        self._refs = refs
        self._subject = subject
        self._links = links

    def external_id(self, canonical_id: str, system: str) -> str | None:
        given = self._links.get(system) if canonical_id == self._subject else None
        return given or self._refs.external_id(canonical_id, system)

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        return self._refs.canonical_id(entity_type, system, external_id)
