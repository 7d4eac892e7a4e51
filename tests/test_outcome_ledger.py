"""The outcome ledger end to end: every accepted inbound message ends in exactly one outcome
(delivered, a no-op with its reason, a conflict held for a person, or a dead letter with its class),
shown in its trace and counted in the store and the metrics."""

from pathlib import Path

from conftest import System, start_system
from crossledger.core.processes.embedded import wait_until
from crossledger.core.store.base import OutcomeRecord
from crossledger.core.telemetry import metrics
from crossledger.core.views.timeline import timeline


def concluded(system: System, source: str = "stripe") -> list[OutcomeRecord]:
    """The source's entries once none is pending and the hub is idle (oldest first)."""
    store = system.hub.runtime.store
    system.settle(lambda: not store.outcomes(outcome="pending"))
    return list(reversed(store.outcomes(source=source)))


def news(entries: list[OutcomeRecord]) -> list[OutcomeRecord]:
    """The entries less the echoes: each id the hub writes into Stripe comes back as a webhook that
    is no news (asserted so)."""
    echoes = [entry for entry in entries if entry.outcome == "noop"]
    assert all("as the hub already has it" in (entry.reason or "") for entry in echoes), echoes
    return [entry for entry in entries if entry.outcome != "noop"]


def counted(outcome: str, source: str) -> float:
    return metrics.registry.get_sample_value("crossledger_outcomes_total", {"outcome": outcome, "source": source}) or 0


def test_a_new_customer_is_delivered_to_its_targets_and_links_and_shown_in_its_trace(system: System) -> None:
    before = counted("delivered", "stripe")
    customer = system.customer("Acme Ltd")
    store = system.hub.runtime.store
    system.settle(lambda: store.xref_get(f"customer/stripe/{customer['id']}", "netsuite") is not None)
    [created] = news(concluded(system))
    # NetSuite got the customer; its id went back to Stripe as a link: both are the message's effects.
    assert (created.outcome, created.targets, created.pending) == ("delivered", ["netsuite", "stripe"], [])
    subject = f"customer/stripe/{customer['id']}"
    assert created.subjects == [subject]  # what the message is about, kept with its outcome
    assert counted("delivered", "stripe") == before + 1
    assert store.outcome_counts() == {("delivered", "stripe"): 1, ("noop", "stripe"): 1}
    [line] = [r for r in timeline(store, created.correlation_id) if r.step == "outcome"]
    assert (line.status, line.detail, line.subject) == ("delivered", "to netsuite, stripe", subject)

    # The same customer saved again in Stripe without a change the hub syncs: a no-op, with why.
    system.stripe.post(f"/v1/customers/{customer['id']}", description="not synced")
    *_, unchanged = concluded(system)
    assert unchanged.outcome == "noop" and "as the hub already has it" in (unchanged.reason or "")
    assert unchanged.subjects == [subject]  # no news, but news of that customer
    assert store.outcome_counts() == {("delivered", "stripe"): 1, ("noop", "stripe"): 2}


def test_a_change_an_ownership_rule_rejects_is_a_conflict_held_for_a_person(tmp_path: Path) -> None:
    system = start_system(tmp_path, ownership={"customer.profile": {"owners": ["erp"], "on_violation": "reject"}})
    try:
        customer = system.customer("Acme Ltd")  # a new record is taken as its source has it
        [created] = news(concluded(system))
        assert created.outcome == "delivered"
        system.stripe.post(f"/v1/customers/{customer['id']}", name="Acme Holdings")
        [_, rejected] = news(concluded(system))
        assert (rejected.outcome, rejected.category) == ("conflict", "policy")
        assert "may not change customer profile (name)" in (rejected.reason or "")
        assert system.hub.runtime.store.dlq_count() == 1  # held where a person replays or discards it
    finally:
        system.stop()


def test_a_dead_letter_concludes_its_message_and_its_replay_makes_it_delivered(system: System) -> None:
    runtime = system.hub.runtime
    store = runtime.store
    system.fault("netsuite", mode="http_500", count=1000)
    customer = system.customer("Acme Ltd")
    assert wait_until(lambda: store.dlq_count() == 1, 30)
    system.clear_fault("netsuite")
    [dead] = news(concluded(system))
    assert (dead.outcome, dead.category) == ("dead_letter", "transient")
    assert "gave up" in (dead.reason or "")
    assert dead.subjects == [f"customer/stripe/{customer['id']}"]  # its delivery died, not what it is about

    [letter] = store.dlq_list()
    runtime.replay_dead_letter(letter.id)
    system.settle(lambda: store.xref_get(f"customer/stripe/{customer['id']}", "netsuite") is not None)
    [replayed] = news(concluded(system))
    assert (replayed.outcome, replayed.targets) == ("delivered", ["netsuite", "stripe"])
    assert store.outcome_counts()[("delivered", "stripe")] == 1


def test_a_discarded_dead_letter_says_so_in_its_outcome(system: System) -> None:
    store = system.hub.runtime.store
    system.fault("netsuite", mode="http_500", count=1000)
    system.customer("Acme Ltd")
    assert wait_until(lambda: store.dlq_count() == 1, 30)
    system.clear_fault("netsuite")
    [letter] = store.dlq_list()
    system.hub.runtime.discard_dead_letter(letter.id, "a test invoice, booked by hand")
    [dead] = news(concluded(system))
    assert dead.outcome == "dead_letter" and (dead.reason or "").endswith(
        "(discarded by an operator: a test invoice, booked by hand)")


def test_a_delivery_parked_on_an_open_circuit_stays_pending_until_it_lands(system: System) -> None:
    store = system.hub.runtime.store
    system.fault("netsuite", mode="down")
    customer = system.customer("Acme Ltd")
    assert wait_until(lambda: store.parked_count("netsuite") == 1, 30)
    [waiting] = store.outcomes(outcome="pending")
    assert waiting.outcome == "pending" and waiting.pending == [f"netsuite|{waiting.pending[0].split('|')[1]}"]
    system.clear_fault("netsuite")
    system.settle(lambda: store.xref_get(f"customer/stripe/{customer['id']}", "netsuite") is not None)
    [landed] = news(concluded(system))
    assert landed.outcome == "delivered"


def test_an_edit_outside_the_system_of_record_is_a_noop_that_says_the_rules_stripped_it(tmp_path: Path) -> None:
    system = start_system(tmp_path, ownership={"customer.profile": {"owners": ["erp"]}})
    try:
        customer = system.customer("Acme Ltd")
        news(concluded(system))
        system.stripe.post(f"/v1/customers/{customer['id']}", name="Acme Holdings")
        *_, stripped = concluded(system)
        assert stripped.outcome == "noop"
        assert stripped.reason == "the ownership rules stripped profile (name) owned by netsuite; the rest is as the " \
                                  "hub has it"
    finally:
        system.stop()
