"""The reconciliation engine's comparison over a store's listings, on each backend (the ``store``
fixture: SQLite, then Redis), without systems to read: the listings are put in the store as a run
would have read them."""

from types import SimpleNamespace
from typing import Any, cast

import msgspec
from crossledger.core.reconcile import Reconciler
from crossledger.core.reconcile.engine import finding_id
from crossledger.core.store.base import Listing, ReconciliationRun, Store
from crossledger.plugins.types import Projection

PACK = msgspec.msgpack.Encoder()


def reconciler(store: Store) -> Reconciler:
    """A reconciler over ``store`` alone: the comparison reads no system and needs no ownership rule."""
    runtime = SimpleNamespace(store=store, policy=SimpleNamespace(effective=list), connectors={})
    return Reconciler(cast(Any, runtime))


def test_a_duplicate_keeps_its_id_whatever_order_the_store_reads_the_copies_in(store: Store) -> None:
    """Two NetSuite invoices keyed by hand with one Stripe invoice's number: the finding's id names
    the copies sorted, not in the order the listing is read back (Redis's follows its hash table: a
    small hash keeps insertion order, put here against the ids' order), so it keeps its age and its
    triage from run to run."""
    source = Projection(id="in_1", mark="invoice/stripe/in_1", key="INV-1")
    store.listing_put("stripe", [(source.id, PACK.encode(source))])
    store.listing_put("netsuite", [(copy, PACK.encode(Projection(id=copy, key="INV-1"))) for copy in ("9", "10")])
    run = ReconciliationRun(id="run", started_at=0.0, listings={
        "stripe.invoice": Listing(generation="stripe", read_at=0.0, done=True),
        "netsuite.invoice": Listing(generation="netsuite", read_at=0.0, done=True)})

    [duplicate] = [f for f in reconciler(store)._compare("invoice", "stripe", ["netsuite"], run)
                   if f.cls == "duplicate"]
    assert duplicate.id == finding_id("duplicate", "invoice", "invoice/stripe/in_1", "netsuite", "10, 9")
    assert "10, 9" in duplicate.detail
