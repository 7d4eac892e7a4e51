"""Cross-references for connectors, answered by the store (the :class:`Refs` protocol)."""

from collections.abc import Callable, Mapping, Sequence

from crossledger.canonical.entities import canonical_id
from crossledger.core.store.base import Store, Unit
from crossledger.plugins.types import Refs


class StoreRefs:
    """The store's cross-references, as the message being handled sees them: ``unit`` gives its unit
    of work, if any, where a new record's link is written (committed with the rest of the message)
    and where the ids it read are kept, so asking twice costs one round trip."""

    def __init__(self, store: Store, unit: Callable[[], Unit | None] = lambda: None) -> None:
        self._store = store
        self._unit = unit

    def external_id(self, canonical_id: str, system: str) -> str | None:
        unit = self._unit()
        if unit is None:
            return self._store.xref_get(canonical_id, system)
        if (canonical_id, system) not in unit.links:
            unit.links[canonical_id, system] = self._store.xref_get(canonical_id, system)
        return unit.links[canonical_id, system]

    def prefetch(self, lookups: Sequence[tuple[str, str, str]]) -> None:
        """Read the lookups not read yet in one round trip, kept in the message's unit (without one,
        there is nowhere to keep them: each is read when asked)."""
        unit = self._unit()
        wanted = [] if unit is None else list(dict.fromkeys(key for key in lookups if key not in unit.found))
        if unit is None or not wanted:
            return
        found = self._store.read([("xref_find", key) for key in wanted]) or []
        unit.found.update(zip(wanted, found, strict=True))

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        unit = self._unit()
        key = (entity_type, system, external_id)
        known = unit.found[key] if unit is not None and key in unit.found else self._store.xref_find(*key)
        if known is not None:
            return known
        new = canonical_id(entity_type, system, external_id)  # the same for every caller: no race to win
        if unit is None:
            self._store.xref_put(new, entity_type, system, external_id)
        else:
            unit.xref_put(new, entity_type, system, external_id)
            unit.found[key] = new
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

    def prefetch(self, lookups: Sequence[tuple[str, str, str]]) -> None:
        self._refs.prefetch(lookups)
