"""The order-to-cash journeys end to end: Salesforce, Stripe, NetSuite and Zendesk sandboxes around one
embedded hub, every step a real HTTP exchange on loopback.

Onboarding makes a closed-won account a customer once everywhere (and only once, however the
account is sent again or started by hand), links a second account of the same company to the first,
and leaves Stripe's customer inactive when NetSuite refuses the new one. A subscription change
reaches Zendesk while NetSuite is down and NetSuite when it is back, enriched with the contract the
Salesforce account holds.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import System, start_system
from crossledger.core.cli import app
from crossledger.core.journeys.engine import journey_id
from crossledger.core.processes.embedded import wait_until
from crossledger.core.store.base import FINISHED, JourneyRecord
from crossledger.core.telemetry import metrics
from crossledger.devtools.demo.drivers import SalesforceUser
from test_topology import (
    ALL,
    WON,
    account,
    netsuite_customers,
    records,
    settle,
    stripe_customer_with_card,
    stripe_customers,
    tier_price,
    zendesk_organizations,
)
from typer.testing import CliRunner

SETTLE_S = 60
UNKNOWN_SUBSIDIARY = "99"
"""A NetSuite subsidiary id the sandbox does not have (it seeds 1, 2 and 3)."""
SUBSCRIPTIONS = "customrecord_cl_subscription"
LINKS = ("Stripe_Customer_Id__c", "NetSuite_Id__c", "Zendesk_Organization_Id__c")


def running(tmp_path: Path, **options: Any) -> Iterator[System]:
    system = start_system(tmp_path, systems=ALL, **options)
    yield system
    system.stop()


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[System]:
    yield from running(tmp_path)


@pytest.fixture
def strict_erp(tmp_path: Path) -> Iterator[System]:
    """French customers go to a subsidiary NetSuite does not have: it refuses to create them."""
    yield from running(tmp_path, journeys={"onboarding": {"subsidiaries": {"FR": UNKNOWN_SUBSIDIARY}}})


@pytest.fixture
def address_required(tmp_path: Path) -> Iterator[System]:
    """Onboarding parks an account without a billing address."""
    yield from running(tmp_path, journeys={"onboarding": {"require_address": True}})


def sales(system: System) -> SalesforceUser:
    return SalesforceUser(system.hub.runtime.settings.connectors["salesforce"])


def company(name: str, tax_id: str, **fields: Any) -> dict[str, Any]:
    """A complete Account of a customer: closed won, with a website, an e-mail, a tax id and an address."""
    domain = name.split()[0].lower()
    return {"Name": name, "Type": WON, "Website": f"https://{domain}.example", "Email__c": f"billing@{domain}.example",
            "Tax_Id__c": tax_id, "CurrencyIsoCode": "USD", "BillingStreet": "1 Main Street", "BillingCity": "Austin",
            "BillingPostalCode": "73301", "BillingCountry": "US", **fields}


def counts(system: System) -> tuple[int, int, int, int]:
    """Customers in Stripe and NetSuite, organizations in Zendesk, accounts in Salesforce."""
    return (len(records(system, "stripe", "customers")), len(records(system, "netsuite", "customer")),
            len(records(system, "zendesk", "organizations")), len(records(system, "salesforce", "accounts")))


def linked(system: System, account_id: str) -> bool:
    return all(account(system, account_id).get(field) for field in LINKS)


def onboarding(system: System, canonical_id: str) -> JourneyRecord | None:
    return system.hub.runtime.store.journey_get(journey_id("onboarding", canonical_id))


def statuses(run: JourneyRecord) -> dict[str, str]:
    return {name: step.status for name, step in run.steps.items()}


def letters(system: System) -> list[tuple[str, str]]:
    return [(letter.category, letter.reason) for letter in system.hub.runtime.store.dlq_list()]


def onboarding_runs(system: System) -> list[JourneyRecord]:
    return system.hub.runtime.store.journeys(name="onboarding")


# -- onboarding ----------------------------------------------------------------------------------
def test_onboarding_creates_the_customer_once_and_running_it_again_changes_nothing(topology: System) -> None:
    rep = sales(topology)
    account_id = rep.create_account(company("Initech LLC", "US12-3456789"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(topology, lambda: linked(topology, account_id), timeout=SETTLE_S)

    [stripe] = stripe_customers(topology, canonical_id)
    [netsuite] = netsuite_customers(topology, canonical_id)
    [zendesk] = zendesk_organizations(topology, canonical_id)
    row = account(topology, account_id)
    assert [row[field] for field in LINKS] == [stripe["id"], str(netsuite["id"]), str(zendesk["id"])]
    assert netsuite["vatRegNumber"] == "US12-3456789"
    run = onboarding(topology, canonical_id)
    assert run is not None and run.state == "completed", run
    assert set(statuses(run).values()) == {"done"}
    before = counts(topology)
    assert before == (1, 1, 1, 1)

    # (a) Salesforce sends the same outbound message again.
    httpx.post(f"{topology.server.url}/salesforce/_sandbox/outbound/resend").raise_for_status()
    settle(topology, timeout=SETTLE_S)
    assert counts(topology) == before

    # (b) Another edit is an update: it reaches every system, and starts no second onboarding.
    rep.update_account(account_id, {"Phone": "+1 555 0177"})
    settle(topology, lambda: [c.get("phone") for c in stripe_customers(topology, canonical_id)] == ["+1 555 0177"]
           and [c.get("phone") for c in netsuite_customers(topology, canonical_id)] == ["+1 555 0177"],
           timeout=SETTLE_S)
    assert counts(topology) == before
    assert [r.id for r in onboarding_runs(topology)] == [run.id]

    # (c) The same company asked for by hand: a run answers, and nothing new is made.
    response = httpx.post(f"{topology.hub.url}/v1/journeys/onboarding", json={
        "name": "Initech LLC", "tax_id": "US12-3456789", "website": "https://initech.example"})
    assert response.status_code in (200, 201), response.text
    by_hand = response.json()["id"]
    settle(topology, lambda: getattr(topology.hub.runtime.store.journey_get(by_hand), "state", None) == "completed",
           timeout=SETTLE_S)
    assert counts(topology) == before
    answered = topology.hub.runtime.store.journey_get(by_hand)
    assert answered is not None and answered.data["duplicate_of"] == canonical_id
    assert letters(topology) == []


def test_an_edit_made_while_onboarding_waits_reaches_every_system_when_it_completes(topology: System) -> None:
    rep = sales(topology)
    topology.fault("netsuite", mode="down")
    account_id = rep.create_account(company("Globex Corp", "US98-7654321", Phone="+1 555 0100"))
    canonical_id = f"customer/salesforce/{account_id}"

    def waiting() -> bool:
        run = onboarding(topology, canonical_id)
        return run is not None and run.steps["billing"].status == "done" and run.steps["erp"].status == "queued"

    assert wait_until(waiting, SETTLE_S)  # not settled: the hub keeps probing NetSuite
    rep.update_account(account_id, {"Phone": "+1 555 0199"})  # Stripe has the customer; NetSuite's write waits
    assert wait_until(lambda: bool(getattr(onboarding(topology, canonical_id), "data", {}).get("_held")), SETTLE_S)
    assert [c.get("phone") for c in stripe_customers(topology, canonical_id)] == ["+1 555 0100"]

    topology.clear_fault("netsuite")
    settle(topology, lambda: getattr(onboarding(topology, canonical_id), "state", None) == "completed"
           and [c.get("phone") for c in stripe_customers(topology, canonical_id)] == ["+1 555 0199"]
           and [c.get("phone") for c in netsuite_customers(topology, canonical_id)] == ["+1 555 0199"],
           timeout=SETTLE_S)
    assert counts(topology) == (1, 1, 1, 1)
    assert letters(topology) == []
    # The held edit's outcome waited for the run, and was settled by the deliveries it released.
    store = topology.hub.runtime.store
    assert wait_until(lambda: not store.outcomes(outcome="pending"), SETTLE_S), store.outcomes(outcome="pending")
    edits = [entry.targets for entry in store.outcomes(source="salesforce", outcome="delivered")]
    assert ["netsuite", "stripe", "zendesk"] in edits, edits


def test_an_edit_held_by_a_run_that_is_then_cancelled_ends_as_a_noop_that_says_so(topology: System) -> None:
    rep = sales(topology)
    topology.fault("netsuite", mode="down")
    account_id = rep.create_account(company("Globex Corp", "US98-7654321"))
    canonical_id = f"customer/salesforce/{account_id}"
    assert wait_until(lambda: getattr(onboarding(topology, canonical_id), "state", None) == "waiting", SETTLE_S)
    rep.update_account(account_id, {"Phone": "+1 555 0199"})
    store = topology.hub.runtime.store
    assert wait_until(lambda: bool(getattr(onboarding(topology, canonical_id), "data", {}).get("_held")), SETTLE_S)
    [edit] = store.outcomes(outcome="pending", source="salesforce")  # held: neither delivered nor dropped yet

    run = onboarding(topology, canonical_id)
    assert run is not None
    topology.hub.runtime.journeys.cancel(run.id)
    done = store.outcome_get(edit.correlation_id)
    assert done is not None and done.outcome == "noop"
    assert done.reason == f"journey run {run.id} was cancelled (cancelled by an operator); not delivered"
    topology.clear_fault("netsuite")


def test_an_edit_of_an_account_whose_onboarding_is_parked_is_a_conflict_held_for_a_person(
        address_required: System) -> None:
    rep = sales(address_required)
    account_id = rep.create_account(company("Globex Corp", "US98-7654321", BillingStreet=None, BillingCity=None,
                                            BillingPostalCode=None, BillingCountry=None))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(address_required, lambda: getattr(onboarding(address_required, canonical_id), "state", None) == "parked",
           timeout=SETTLE_S)
    rep.update_account(account_id, {"Phone": "+1 555 0199"})
    store = address_required.hub.runtime.store
    settle(address_required, lambda: len(store.outcomes(source="salesforce")) == 2, timeout=SETTLE_S)
    edit = store.outcomes(source="salesforce", limit=1)[0]
    assert edit.outcome == "conflict" and "parked for an operator" in (edit.reason or "")
    assert counts(address_required) == (0, 0, 0, 1)


def test_a_prospect_reaches_no_other_system_until_it_is_won(topology: System) -> None:
    rep = sales(topology)
    account_id = rep.create_account(company("Globex Corp", "US98-7654321", Type="Prospect"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(topology, lambda: topology.hub.runtime.store.golden_get(canonical_id) is not None, timeout=SETTLE_S)
    settle(topology, timeout=SETTLE_S)
    assert counts(topology) == (0, 0, 0, 1)
    assert onboarding_runs(topology) == []
    [prospect] = topology.hub.runtime.store.outcomes(source="salesforce")
    assert prospect.outcome == "noop" and "onboarding makes it there when a run starts" in (prospect.reason or "")

    rep.update_account(account_id, {"Type": WON})
    settle(topology, lambda: linked(topology, account_id), timeout=SETTLE_S)
    assert counts(topology) == (1, 1, 1, 1)
    run = onboarding(topology, canonical_id)
    assert run is not None and run.state == "completed"
    assert letters(topology) == []


def test_a_second_account_of_the_same_company_is_linked_to_the_first(topology: System) -> None:
    rep = sales(topology)
    first_id = rep.create_account(company("Umbrella Corporation", "GB123456789"))
    first = f"customer/salesforce/{first_id}"
    settle(topology, lambda: linked(topology, first_id), timeout=SETTLE_S)

    second_id = rep.create_account(company("Umbrella Corp.", "GB 123 456 789", Website="https://umbrella-eu.example",
                                           Email__c="ap@umbrella-eu.example"))
    second = f"customer/salesforce/{second_id}"
    settle(topology, lambda: bool(account(topology, second_id).get("Stripe_Customer_Id__c")), timeout=SETTLE_S)
    settle(topology, timeout=SETTLE_S)  # whatever the write-back sets off has run its course

    assert counts(topology) == (1, 1, 1, 2)
    assert stripe_customers(topology, second) == netsuite_customers(topology, second) == []
    one, two = account(topology, first_id), account(topology, second_id)
    assert [two[field] for field in LINKS[:2]] == [one[field] for field in LINKS[:2]]
    run = onboarding(topology, second)
    assert run is not None and run.state == "completed", run
    assert run.data["duplicate_of"] == first and run.data["matched_on"] == "tax-id"
    assert letters(topology) == []


def test_a_netsuite_refusal_leaves_the_stripe_customer_inactive_and_says_why(strict_erp: System,
                                                                               tmp_path: Path) -> None:
    account_id = sales(strict_erp).create_account(company("Bouygues SA", "FR40303265045", BillingCity="Paris",
                                                          BillingPostalCode="75008", BillingCountry="FR"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(strict_erp, lambda: getattr(onboarding(strict_erp, canonical_id), "state", None) in (*FINISHED, "parked"),
           timeout=SETTLE_S)

    run = onboarding(strict_erp, canonical_id)
    assert run is not None and run.state == "compensated", (run, records(strict_erp, "netsuite", "customer"))
    assert run.reason is not None
    assert statuses(run)["erp"] == "failed" and statuses(run)["support"] == "pending"
    [stripe] = stripe_customers(strict_erp, canonical_id)
    assert stripe["metadata"].get("crossledger_status") == "inactive"
    assert records(strict_erp, "netsuite", "customer") == []
    assert records(strict_erp, "zendesk", "organizations") == []
    assert letters(strict_erp) == []

    config = tmp_path / "cli.toml"
    config.write_text(f'[hub]\nbroker = "memory"\nstore = "sqlite:///{tmp_path / "hub.db"}"\n')
    shown = CliRunner().invoke(app, ["journeys", "show", run.id, "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "compensated" in shown.stdout
    said = " ".join(shown.stdout.split())  # the table wraps long reasons
    # NetSuite's code and the field it points at; not its detail, which quotes the value refused.
    assert "HTTP 400 Bad Request: INVALID_CONTENT at subsidiary" in said and "Invalid Field Value" not in said


# -- subscription change -------------------------------------------------------------------------
def netsuite_subscriptions(system: System) -> list[dict[str, Any]]:
    return records(system, "netsuite", SUBSCRIPTIONS)


def queued_count() -> float:
    value = metrics.registry.get_sample_value("crossledger_journey_steps_queued_total",
                                              {"journey": "subscription-change", "target": "netsuite"})
    return value or 0.0


def test_an_upgrade_while_netsuite_is_down_reaches_zendesk_at_once_and_netsuite_once_back(topology: System) -> None:
    customer = stripe_customer_with_card(topology, "Vandelay Industries")
    basic, pro = tier_price(topology, "basic", 2_000), tier_price(topology, "pro", 9_000)
    subscription = topology.stripe.post("/v1/subscriptions", customer=customer["id"], **{"items[0][price]": basic})
    canonical_id = f"customer/stripe/{customer['id']}"
    store = topology.hub.runtime.store

    def tier() -> str | None:
        organizations = zendesk_organizations(topology, canonical_id)
        return organizations[0].get("organization_fields", {}).get("plan_tier") if organizations else None

    settle(topology, lambda: tier() == "basic" and len(netsuite_subscriptions(topology)) == 1, timeout=SETTLE_S)
    earlier = {run.id for run in store.journeys(name="subscription-change")}
    queued_before = queued_count()

    topology.fault("netsuite", mode="down")
    topology.stripe.post(f"/v1/subscriptions/{subscription['id']}", proration_behavior="none",
                         **{"items[0][id]": subscription["items"]["data"][0]["id"], "items[0][price]": pro})

    def upgrade() -> JourneyRecord | None:
        new = [run for run in store.journeys(name="subscription-change") if run.id not in earlier]
        return new[0] if len(new) == 1 else None

    def waiting() -> bool:
        run = upgrade()
        return run is not None and run.state == "waiting" and statuses(run)["erp"] == "queued"

    # While NetSuite is down a probe is always scheduled, so the hub is never idle: wait for the run.
    assert wait_until(lambda: waiting() and tier() == "pro", SETTLE_S), [
        (run.state, statuses(run)) for run in store.journeys(name="subscription-change")]
    assert statuses(upgrade())["entitlement"] == "done"  # type: ignore[arg-type]
    assert [record["custrecord_cl_plan_tier"] for record in netsuite_subscriptions(topology)] == ["basic"]
    assert queued_count() == queued_before + 1

    topology.clear_fault("netsuite")
    settle(topology, lambda: getattr(upgrade(), "state", None) == "completed", timeout=SETTLE_S)
    [booked] = netsuite_subscriptions(topology)
    assert booked["custrecord_cl_plan_tier"] == "pro"
    audit = store.audit_for_subject(f"subscription/stripe/{subscription['id']}")
    delivered = [record for record in audit if record.system == "netsuite" and record.status == "delivered"]
    assert len(delivered) == 2, [(r.step, r.status, r.detail) for r in audit]  # the creation, then the upgrade
    assert letters(topology) == []


def test_a_subscription_carries_the_contract_of_the_salesforce_account_into_netsuite(topology: System) -> None:
    account_id = sales(topology).create_account(company("Hooli Inc", "US11-2233445", Contract_Term_Months__c=24,
                                                        Legal_Entity__c="Hooli UK Ltd"))
    settle(topology, lambda: linked(topology, account_id), timeout=SETTLE_S)
    stripe_id = account(topology, account_id)["Stripe_Customer_Id__c"]

    price = tier_price(topology, "pro", 9_000)
    subscription = topology.stripe.post("/v1/subscriptions", customer=stripe_id, collection_method="send_invoice",
                                        days_until_due=30, **{"items[0][price]": price})
    settle(topology, lambda: len(netsuite_subscriptions(topology)) == 1, timeout=SETTLE_S)

    [booked] = netsuite_subscriptions(topology)
    assert booked["custrecord_cl_contract_term"] == 24
    assert booked["custrecord_cl_legal_entity"] == "Hooli UK Ltd"
    assert booked["custrecord_cl_plan_tier"] == "pro"
    assert booked["externalId"].endswith(subscription["id"])
    assert letters(topology) == []
