"""Cross-references held in memory: the :class:`~crossledger.plugins.types.Refs` a connector gets
from the hub, without a store.

It answers exactly as the hub's ``StoreRefs`` does (``crossledger.core.hub.refs``): a system's id for a
canonical record, and the canonical id of a system's record, minting and remembering
``<entity>/<system>/<id>`` for a record seen for the first time. :meth:`MemoryRefs.put` is what the
pipeline does after every successful write (``xref_put``), so a connector's next ``plan`` sees the
id its last ``execute`` returned.
"""

import threading
from collections.abc import Sequence

from crossledger.canonical.entities import canonical_id as new_canonical_id


class MemoryRefs:
    """Cross-references by (canonical id, system) and by (entity type, system, external id); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._external: dict[tuple[str, str], tuple[str, str]] = {}  # (canonical, system) -> (type, external)
        self._canonical: dict[tuple[str, str, str], str] = {}  # (type, system, external) -> canonical

    def external_id(self, canonical_id: str, system: str) -> str | None:
        """The id ``system`` uses for the canonical record, if it has one."""
        with self._lock:
            found = self._external.get((canonical_id, system))
        return None if found is None else found[1]

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        """The canonical id of ``system``'s record: a known cross-reference, or a new id, remembered."""
        with self._lock:
            known = self._canonical.get((entity_type, system, external_id))
        if known is not None:
            return known
        minted = new_canonical_id(entity_type, system, external_id)
        self.put(minted, entity_type, system, external_id)
        return minted

    def prefetch(self, lookups: Sequence[tuple[str, str, str]]) -> None:
        """Nothing to read ahead: every lookup is in memory."""

    def put(self, canonical_id: str, entity_type: str, system: str, external_id: str) -> None:
        """Link the canonical record to ``system``'s ``external_id``, replacing any link in the way of
        either side (the canonical record's old id there, another record's claim on that id), as the
        store's ``xref_put`` does."""
        with self._lock:
            old = self._external.pop((canonical_id, system), None)
            if old is not None:
                self._canonical.pop((old[0], system, old[1]), None)
            other = self._canonical.pop((entity_type, system, external_id), None)
            if other is not None:
                self._external.pop((other, system), None)
            self._external[(canonical_id, system)] = (entity_type, external_id)
            self._canonical[(entity_type, system, external_id)] = canonical_id

