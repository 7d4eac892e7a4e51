"""What the hot path costs the store: round trips per event, on the real hub.

Stripe records become NetSuite records through an embedded hub (HTTP on loopback, the real
sandboxes) whose store is Redis, the shared store of a scaled-out hub, where each round trip is a
network wait and Redis CPU. Each event is a webhook admitted, an ingest and one delivery; the
store counts its round trips (:class:`~crossledger.core.store.base.RoundTrips`). The budgets are
what the hub reaches now: a change that adds store work to every event fails here.
"""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import System, redis_url, start_system

EVENTS = 20
WARM_UP = 10
CUSTOMER_ROUND_TRIPS = 7
"""The budget of a new customer: admission, ingest and delivery together, each message's reads and its commit."""
INVOICE_ROUND_TRIPS = 11
"""The budget of an invoice made and finalized: the sandbox sends each of its events (only its
``invoice.finalized`` is delivered, as in the bench); that one looks up its customer's id on both
sides (Stripe's at ingest, NetSuite's read with the delivery's lease)."""


@pytest.fixture
def redis_system(tmp_path: Path) -> Iterator[System]:
    running = start_system(tmp_path, routes={"customer.linked": []},
                           store=f"{redis_url(6)}?namespace=hot-{uuid.uuid4().hex[:8]}", poll_interval_s=3600)
    yield running
    running.hub.stop()
    running.server.stop()


def round_trips_per_event(system: System, send: Callable[[int], object], written: Callable[[], int]) -> float:
    """The store's round trips per event of ``EVENTS`` events sent by ``send``, after ``WARM_UP``
    (connections opened, scripts loaded: what every later event finds); ``written`` counts what the
    target holds."""
    store, start = system.hub.runtime.store, written()
    for n in range(WARM_UP):
        send(n)
    system.settle(lambda: written() == start + WARM_UP)
    before = store.round_trips.count
    for n in range(WARM_UP, WARM_UP + EVENTS):
        send(n)
    system.settle(lambda: written() == start + WARM_UP + EVENTS)
    per_event = (store.round_trips.count - before) / EVENTS
    assert system.reconcile().problems == []
    return per_event


@pytest.mark.redis
def test_each_customer_costs_the_store_a_bounded_number_of_round_trips(redis_system: System) -> None:
    system = redis_system
    per_event = round_trips_per_event(system, lambda n: system.customer(f"Customer {n} Ltd"),
                                      lambda: len(system.state("netsuite")["customer"]))
    assert per_event <= CUSTOMER_ROUND_TRIPS, f"{per_event:.1f} store round trips per event"
    print(f"{per_event:.2f} store round trips per customer")


@pytest.mark.redis
def test_each_invoice_costs_the_store_a_bounded_number_of_round_trips(redis_system: System) -> None:
    system = redis_system
    customer = system.customer("Invoiced Ltd")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    per_event = round_trips_per_event(system, lambda n: system.invoice(customer["id"], [1_000 + n]),
                                      lambda: len(system.state("netsuite")["invoice"]))
    assert per_event <= INVOICE_ROUND_TRIPS, f"{per_event:.1f} store round trips per invoice"
    print(f"{per_event:.2f} store round trips per invoice")
