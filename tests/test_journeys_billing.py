"""The billing journeys end to end on the reference topology: suspension and reinstatement for
non-payment, and refunds booked in NetSuite to the exact minor unit. Salesforce, Stripe, NetSuite
and Zendesk sandboxes around one embedded hub; every step is a real HTTP exchange."""

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import System, start_system
from crossledger.canonical import external_key
from crossledger.core.store.base import JourneyRecord
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

TIMESTAMPS = frozenset({"updated_at", "LastModifiedDate", "SystemModstamp", "lastModifiedDate"})
"""Fields every write restamps: a round trip that restores a record still moves them."""
SALES_RETURNS, REFUND_CLEARING = "14", "10"
"""NetSuite sandbox accounts (SEEDED: Sales, Checking) the refund policy's ledger accounts map to."""


def billing_topology(tmp_path: Path, **hub: Any) -> Iterator[System]:
    running = start_system(
        tmp_path, systems=ALL,
        journeys={"refund": {"journal_entry": True, "debit_account": "sales-returns",
                             "credit_account": "refund-clearing"}},
        netsuite={"accounts": {"sales-returns": SALES_RETURNS, "refund-clearing": REFUND_CLEARING}}, **hub)
    yield running
    running.stop()


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[System]:
    yield from billing_topology(tmp_path)


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[System]:
    """Retrying for a few seconds before giving up, so a step that waits for a record on its way
    (a refund's payment) is not given up on because the machine is loaded."""
    yield from billing_topology(tmp_path, max_retries=8)


def runs(system: System, name: str, subject: str | None = None) -> list[JourneyRecord]:
    return system.hub.runtime.store.journeys(name=name, subject=subject)


def finished(system: System, name: str, subject: str, count: int) -> bool:
    found = runs(system, name, subject)
    return len(found) == count and all(run.state in ("completed", "compensated", "parked") for run in found)


def assert_one_completed(system: System, name: str, subject: str) -> JourneyRecord:
    [run] = runs(system, name, subject)
    assert (run.state, run.reason) == ("completed", None), run
    return run


def dead_letters(system: System) -> list[tuple[str, str]]:
    return [(letter.category, letter.reason) for letter in system.hub.runtime.store.dlq_list()]


# -- suspension and reinstatement ---------------------------------------------------------------
def subscribed_customer(system: System) -> tuple[str, str, str]:
    """A closed-won Salesforce account onboarded everywhere, with an active Stripe subscription to
    the "pro" tier shown in Zendesk: (account id, canonical id, Stripe customer id)."""
    sales = SalesforceUser(system.hub.runtime.settings.connectors["salesforce"])
    account_id = sales.create_account(dict(Name="Pied Piper Inc", Type=WON, Website="https://piedpiper.example",
                                           CurrencyIsoCode="USD"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(system, lambda: bool(account(system, account_id).get("Zendesk_Organization_Id__c"))
           and finished(system, "onboarding", canonical_id, 1))
    [customer] = stripe_customers(system, canonical_id)
    system.stripe.post("/v1/subscriptions", customer=customer["id"], default_payment_method="pm_card_visa",
                       **{"items[0][price]": tier_price(system, "pro", 9_000)})
    settle(system, lambda: entitlement(system, canonical_id) == ("active", "pro"))
    return account_id, canonical_id, str(customer["id"])


def entitlement(system: System, canonical_id: str) -> tuple[str | None, str | None]:
    """Zendesk's (subscription_status, plan_tier) for the customer's organization."""
    found = zendesk_organizations(system, canonical_id)
    fields = found[0].get("organization_fields", {}) if found else {}
    return fields.get("subscription_status"), fields.get("plan_tier")


def snapshot(system: System, account_id: str, canonical_id: str) -> dict[str, dict[str, Any]]:
    """The customer's record in Salesforce, NetSuite and Zendesk, less the write timestamps."""
    [netsuite] = netsuite_customers(system, canonical_id)
    [zendesk] = zendesk_organizations(system, canonical_id)
    return {system_name: {key: value for key, value in record.items() if key not in TIMESTAMPS}
            for system_name, record in (("salesforce", account(system, account_id)), ("netsuite", netsuite),
                                        ("zendesk", zendesk))}


def open_invoice(system: System, customer_id: str, amount: int) -> str:
    return str(system.invoice(customer_id, [amount])["id"])


def test_suspension_for_non_payment_and_reinstatement_restore_every_system(topology: System) -> None:
    account_id, canonical_id, stripe_id = subscribed_customer(topology)
    before = snapshot(topology, account_id, canonical_id)
    first, second = open_invoice(topology, stripe_id, 4_000), open_invoice(topology, stripe_id, 2_500)
    settle(topology)

    topology.stripe.post(f"/v1/invoices/{first}/mark_uncollectible")
    settle(topology, lambda: finished(topology, "suspension", canonical_id, 1))
    assert_one_completed(topology, "suspension", canonical_id)
    [netsuite] = netsuite_customers(topology, canonical_id)
    assert entitlement(topology, canonical_id) == ("suspended", "pro")
    assert account(topology, account_id)["Account_Status__c"] == "Suspended"
    assert netsuite["creditHoldOverride"]["id"] == "ON"

    # Another invoice given up on while the customer is suspended: still one suspension.
    topology.stripe.post(f"/v1/invoices/{second}/mark_uncollectible")
    settle(topology)
    assert len(runs(topology, "suspension", canonical_id)) == 1

    topology.stripe.post(f"/v1/invoices/{first}/pay", paid_out_of_band="true")
    settle(topology, lambda: finished(topology, "reinstatement", canonical_id, 1))
    assert_one_completed(topology, "reinstatement", canonical_id)
    # The other invoice paid once reinstated: nothing to reinstate.
    topology.stripe.post(f"/v1/invoices/{second}/pay", paid_out_of_band="true")
    settle(topology)
    assert len(runs(topology, "reinstatement", canonical_id)) == 1
    assert len(runs(topology, "suspension", canonical_id)) == 1

    assert snapshot(topology, account_id, canonical_id) == before
    assert dead_letters(topology) == []


# -- refunds ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("currency", "refunded", "in_netsuite"), [
    ("jpy", 1_234, Decimal("1234")),    # zero-decimal: the minor unit is the yen
    ("kwd", 1_234, Decimal("1.234")),   # three decimals: 1234 fils
])
def test_a_partial_refund_is_booked_once_to_the_exact_minor_unit_with_a_balanced_journal_entry(
        topology: System, currency: str, refunded: int, in_netsuite: Decimal) -> None:
    customer = stripe_customer_with_card(topology, f"Refundable {currency.upper()} Co")
    topology.stripe.post("/v1/invoiceitems", customer=customer["id"], amount=5_000, currency=currency,
                         description="annual plan")
    invoice = topology.stripe.post("/v1/invoices", customer=customer["id"])
    topology.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
    paid = topology.stripe.post(f"/v1/invoices/{invoice['id']}/pay")
    assert paid["status"] == "paid"
    note = topology.stripe.post("/v1/credit_notes", invoice=invoice["id"], amount=refunded, refund_amount=refunded)
    [refund_id] = [entry["refund"] for entry in note["refunds"]]
    memo_id, refund_canonical = f"creditmemo/stripe/{note['id']}", f"refund/stripe/{refund_id}"

    store = topology.hub.runtime.store
    settle(topology, lambda: all(finished(topology, "refund", subject, 1) for subject in (memo_id, refund_canonical))
           and bool(records(topology, "netsuite", "journalentry")))
    assert_one_completed(topology, "refund", memo_id)
    assert_one_completed(topology, "refund", refund_canonical)

    netsuite_invoice = store.xref_get(f"invoice/stripe/{invoice['id']}", "netsuite")
    [memo] = records(topology, "netsuite", "creditmemo")
    [refund] = records(topology, "netsuite", "customerRefund")
    assert memo["externalId"] == external_key(memo_id)
    assert memo["createdFrom"]["id"] == netsuite_invoice
    assert Decimal(str(memo["total"])) == in_netsuite and Decimal(str(refund["total"])) == in_netsuite
    assert [line["doc"]["id"] for line in refund["apply"]["items"]] == [str(memo["id"])]

    [entry] = records(topology, "netsuite", "journalentry")
    lines = entry["line"]["items"]
    debits = [(line["account"]["id"], Decimal(str(line["debit"]))) for line in lines if line.get("debit")]
    credits = [(line["account"]["id"], Decimal(str(line["credit"]))) for line in lines if line.get("credit")]
    assert debits == [(SALES_RETURNS, in_netsuite)] and credits == [(REFUND_CLEARING, in_netsuite)]
    assert dead_letters(topology) == []


def test_a_refund_whose_events_arrive_before_the_payment_books_the_payment_in_full(patient: System) -> None:
    """Stripe does not promise the order of its events: here the refund, then the credit note, reach
    the hub before the invoice's payment. The credit note refunds a paid invoice, so its credit memo
    must not take the invoice's open balance (which only the undelivered payment settles): the
    payment is applied in full, and the customer refund pays out the credit memo, in any order."""
    control = f"{patient.server.url}/stripe/_sandbox/webhooks"
    customer = stripe_customer_with_card(patient, "Reordered JPY Co")
    invoice = str(patient.invoice(str(customer["id"]), [5_000], "jpy")["id"])
    settle(patient)

    httpx.post(control, json={"hold": True}).raise_for_status()
    assert patient.stripe.post(f"/v1/invoices/{invoice}/pay")["status"] == "paid"
    note = patient.stripe.post("/v1/credit_notes", invoice=invoice, amount=1_234, refund_amount=1_234)
    [refund_id] = [entry["refund"] for entry in note["refunds"]]
    httpx.post(control, json={"release": "reverse"}).raise_for_status()

    memo_id, refund_canonical = f"creditmemo/stripe/{note['id']}", f"refund/stripe/{refund_id}"
    settle(patient, lambda: all(finished(patient, "refund", subject, 1) for subject in (memo_id, refund_canonical))
           and bool(records(patient, "netsuite", "customerpayment")))
    assert dead_letters(patient) == []
    assert_one_completed(patient, "refund", memo_id)
    assert_one_completed(patient, "refund", refund_canonical)
    [netsuite_invoice] = records(patient, "netsuite", "invoice")
    [payment] = records(patient, "netsuite", "customerpayment")
    [memo] = records(patient, "netsuite", "creditmemo")
    [refund] = records(patient, "netsuite", "customerRefund")
    assert [(line["doc"]["id"], Decimal(str(line["amount"]))) for line in payment["apply"]["items"]] == [
        (str(netsuite_invoice["id"]), Decimal(5_000))]  # not refused: "amount remaining is 3766"
    assert Decimal(str(netsuite_invoice["amountRemaining"])) == 0
    assert memo["apply"]["items"] == [] and Decimal(str(memo["total"])) == Decimal(1_234)
    assert [(line["doc"]["id"], Decimal(str(line["amount"]))) for line in refund["apply"]["items"]] == [
        (str(memo["id"]), Decimal(1_234))]
