"""Cross-references for connectors, answered by the store (the :class:`Refs` protocol)."""

from crossledger.canonical.entities import canonical_id
from crossledger.core.stores.base import Store


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
