"""The order-to-cash journeys on every billing × ERP pair: Stripe or Zuora, NetSuite or Business
Central, with Salesforce and Zendesk around, one embedded hub configured for the pair. Every step is
a real HTTP exchange on loopback; the journeys and routes are the same for every pair (they name
roles, not systems), so each test reads the same whatever the pair. Each runs on the embedded
default store (SQLite) and on a Redis store.

The Stripe and NetSuite specifics (a NetSuite refusal, its subsidiaries, refunds to the minor unit,
journal entries) are in test_journeys_onboarding.py and test_journeys_billing.py.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import redis_url
from crossledger.core.journeys.engine import journey_id
from crossledger.core.processes.embedded import wait_until
from crossledger.core.reconcile.engine import Reconciler
from crossledger.devtools.sandboxes import PAIRS, Topology
from crossledger.plugins.netsuite.outbound import CROSS_REFERENCE_FIELDS
from crossledger.plugins.zendesk.connector import XREF_FIELDS
from pairs import IDS, WON, Pair, start_pair

SETTLE_S = 90


STORES = ("sqlite", "redis")
"""The embedded default, and a Redis store (the suite's private redis-server) under the same hub."""


@pytest.fixture(params=PAIRS, ids=IDS)
def topology(request: pytest.FixtureRequest) -> Topology:
    chosen: Topology = request.param
    return chosen


@pytest.fixture(params=STORES)
def pair(request: pytest.FixtureRequest, topology: Topology, tmp_path: Path) -> Iterator[Pair]:
    store = {"store": f"{redis_url(8)}?namespace=pair-{uuid.uuid4().hex[:8]}"} if request.param == "redis" else {}
    running = start_pair(tmp_path, topology, **store)
    yield running
    running.stop()


def company(name: str) -> dict[str, object]:
    domain = name.split()[0].lower()
    return {"Name": name, "Type": WON, "Website": f"https://{domain}.example", "Email__c": f"billing@{domain}.example",
            "CurrencyIsoCode": "USD", "BillingStreet": "1 Main Street", "BillingCity": "Austin",
            "BillingPostalCode": "73301", "BillingCountry": "US"}


def link_fields(pair: Pair) -> tuple[str, str, str]:
    """The Account fields that keep the pair's billing, ERP and support ids."""
    from crossledger.plugins.salesforce.mapping import LINK_FIELDS

    return LINK_FIELDS[pair.billing.system], LINK_FIELDS[pair.erp], LINK_FIELDS["zendesk"]


def test_onboarding_makes_a_won_account_a_customer_once_in_billing_the_erp_and_support(pair: Pair) -> None:
    account_id = pair.sales.create_account(company("Initech LLC"))
    canonical_id = f"customer/salesforce/{account_id}"
    fields = link_fields(pair)
    pair.settle(lambda: all(pair.account(account_id).get(field) for field in fields), timeout=SETTLE_S)

    [billing] = pair.billing.made_for(pair.state(pair.billing.system), canonical_id)
    [erp] = pair.books.customers(pair.state(pair.erp), canonical_id)
    store = pair.system.hub.runtime.store
    xrefs = store.xrefs(canonical_id)
    assert set(xrefs) == {"salesforce", pair.billing.system, pair.erp, "zendesk"}
    assert [pair.account(account_id)[field] for field in fields] == [
        xrefs[pair.billing.system], xrefs[pair.erp], xrefs["zendesk"]]
    assert xrefs[pair.billing.system] == str(billing["id"]) and xrefs[pair.erp] == str(erp["id"])
    run = store.journey_get(journey_id("onboarding", canonical_id))
    assert run is not None and run.state == "completed", run

    # Support keeps the billing and ERP ids, and NetSuite the billing id, whichever the pair.
    kept = {XREF_FIELDS[pair.billing.system]: xrefs[pair.billing.system], XREF_FIELDS[pair.erp]: xrefs[pair.erp]}
    pair.settle(lambda: kept.items() <= zendesk_fields(pair, canonical_id).items(), timeout=SETTLE_S)
    if pair.erp == "netsuite":
        [erp] = pair.books.customers(pair.state(pair.erp), canonical_id)
        assert erp[CROSS_REFERENCE_FIELDS[pair.billing.system]] == xrefs[pair.billing.system]
    assert pair.letters() == []


def customer_in_the_erp(pair: Pair, name: str) -> tuple[str, str]:
    """A customer made in billing, once the hub has it in the ERP too: (its billing id, canonical id)."""
    customer = pair.billing.customer(name)
    canonical_customer = f"customer/{pair.billing.system}/{customer}"
    store = pair.system.hub.runtime.store
    pair.settle(lambda: store.xref_get(canonical_customer, pair.erp) is not None, timeout=SETTLE_S)
    return customer, canonical_customer


def paid_invoice_everywhere(pair: Pair, customer: str, canonical_customer: str) -> tuple[str, str]:
    """An invoice of 42.00 billed to ``customer``, then paid by card (so that it can be refunded);
    (its id in billing, its canonical id)."""
    invoice = pair.billing.invoice(customer, "USD", [4_200])
    pair.billing.pay(invoice, by_card=True)
    return invoice, f"invoice/{pair.billing.system}/{invoice}"


def booked(pair: Pair, canonical_invoice: str) -> bool:
    """The ERP has the invoice once, with one payment applied to it."""
    state = pair.state(pair.erp)
    invoices = pair.books.invoices(state, canonical_invoice)
    return len(invoices) == 1 and len(pair.books.payments_of(state, invoices[0])) == 1


def test_an_invoice_and_its_payment_in_billing_are_booked_once_in_the_erp(pair: Pair) -> None:
    customer, canonical_customer = customer_in_the_erp(pair, "Hooli Inc")

    _, canonical_invoice = paid_invoice_everywhere(pair, customer, canonical_customer)
    pair.settle(lambda: booked(pair, canonical_invoice), timeout=SETTLE_S)
    pair.settle(timeout=SETTLE_S)  # repeats and echoes change nothing
    assert booked(pair, canonical_invoice)
    assert len(pair.books.customers(pair.state(pair.erp), canonical_customer)) == 1
    assert pair.letters() == []


def test_an_invoice_paid_while_the_erp_is_down_is_booked_once_when_it_is_back(pair: Pair) -> None:
    customer, canonical_customer = customer_in_the_erp(pair, "Vandelay Industries")
    store = pair.system.hub.runtime.store

    pair.system.fault(pair.erp, mode="down")
    _, canonical_invoice = paid_invoice_everywhere(pair, customer, canonical_customer)
    # While the ERP is down the hub keeps trying, so it is never idle: wait for its refused attempt.
    assert wait_until(lambda: any(record.system == pair.erp and record.status == "failed"
                                  for record in store.audit_for_subject(canonical_invoice)), SETTLE_S), pair.debug()
    assert pair.books.invoices(pair.state(pair.erp), canonical_invoice) == []

    pair.system.clear_fault(pair.erp)
    pair.settle(lambda: booked(pair, canonical_invoice), timeout=SETTLE_S)
    assert pair.letters() == []


# -- reconciliation ----------------------------------------------------------------------------
def reconcile(pair: Pair, seeded: set[str]) -> set[tuple[str, str, str, str]]:
    """A run's findings as (class, entity, subject, system), less the orphans the ERP was seeded with
    (Business Central's demo company has customers of its own, which no source claims)."""
    response = httpx.post(f"{pair.system.hub.url}/v1/reconciliations", json={}, timeout=60)
    assert response.status_code == 201, response.text
    return {(f["class"], f["entity"], f["subject"], f["system"]) for f in response.json()["findings"]
            if not (f["class"] == "orphan" and any(record in f["subject"] for record in seeded))}


def ids(state: dict[str, Any]) -> set[str]:
    """The id of every record in a sandbox's state."""
    return {str(record["id"]) for records in state.values() if isinstance(records, list)
            for record in records if isinstance(record, dict) and "id" in record}


def test_reconciliation_reads_the_pairs_billing_and_erp_and_finds_what_differs(pair: Pair) -> None:
    seeded = ids(pair.state(pair.erp))
    customer, canonical_customer = customer_in_the_erp(pair, "Globex Corp")
    _, canonical_paid = paid_invoice_everywhere(pair, customer, canonical_customer)
    pair.settle(lambda: booked(pair, canonical_paid), timeout=SETTLE_S)
    pair.books.post_payments(pair.system.sandboxes.sandboxes[pair.erp])

    compared = {(p.entity, p.source, p.target) for p in Reconciler(pair.system.hub.runtime).pairs()}
    assert {("invoice", pair.billing.system, pair.erp), ("customer", "salesforce", pair.billing.system),
            ("customer", "salesforce", pair.erp)} <= compared, compared
    assert reconcile(pair, seeded) == set()

    # An invoice billing posts while its webhooks or callouts are held back: the hub has not heard
    # of it, so it is missing in the ERP, and the period's balance there is short by its total.
    pair.billing.hold()
    unheard = pair.billing.invoice(customer, "USD", [1_500])
    canonical_unheard = f"invoice/{pair.billing.system}/{unheard}"
    found = reconcile(pair, seeded)
    assert {finding for finding in found if finding[0] != "balance"} == {
        ("missing", "invoice", canonical_unheard, pair.erp)}, found
    assert [system for cls, _, _, system in found if cls == "balance"] == [pair.erp], found
    pair.billing.release()
    pair.settle(lambda: len(pair.books.invoices(pair.state(pair.erp), canonical_unheard)) == 1, timeout=SETTLE_S)
    assert reconcile(pair, seeded) == set()


# -- subscription change ----------------------------------------------------------------------------
def zendesk_fields(pair: Pair, canonical_id: str) -> dict[str, Any]:
    organization_id = pair.system.hub.runtime.store.xref_get(canonical_id, "zendesk")
    found = [o for o in pair.state("zendesk")["organizations"] if str(o["id"]) == organization_id]
    return dict(found[0].get("organization_fields") or {}) if found else {}


def test_a_subscription_is_enriched_from_the_crm_and_its_upgrade_waits_for_the_erp_to_come_back(pair: Pair) -> None:
    account_id = pair.sales.create_account({**company("Hooli Inc"), "Contract_Term_Months__c": 24,
                                            "Legal_Entity__c": "Hooli UK Ltd"})
    canonical_customer = f"customer/salesforce/{account_id}"
    store = pair.system.hub.runtime.store
    billing_field = link_fields(pair)[0]
    pair.settle(lambda: all(pair.account(account_id).get(field) for field in link_fields(pair)), timeout=SETTLE_S)
    customer = pair.account(account_id)[billing_field]

    subscription, _ = pair.billing.subscribe(customer, "pro", "USD", 9_000)
    canonical_id = f"subscription/{pair.billing.system}/{subscription}"

    def runs() -> list[str]:
        return [run.state for run in store.journeys(name="subscription-change", subject=canonical_id)]

    pair.settle(lambda: runs() == ["completed"], timeout=SETTLE_S)
    assert zendesk_fields(pair, canonical_customer).get("subscription_status") == "active"
    booked = pair.books.subscriptions(pair.state(pair.erp), canonical_id)
    if booked is not None:  # an ERP that keeps subscriptions has it, with the CRM's contract
        [record] = booked
        assert (record["custrecord_cl_contract_term"], record["custrecord_cl_legal_entity"]) == (24, "Hooli UK Ltd")
    golden = store.golden_get(canonical_id)
    assert golden is not None and golden.data["contract_term_months"] == 24  # enriched whatever the ERP

    pair.system.fault(pair.erp, mode="down")
    pair.billing.change_plan(subscription, "enterprise", "USD", 25_000)
    if booked is None:  # nothing to book in this ERP: the upgrade does not wait for it
        assert wait_until(lambda: runs() == ["completed", "completed"], SETTLE_S), (runs(), pair.debug())
    else:
        assert wait_until(lambda: sorted(runs()) == ["completed", "waiting"], SETTLE_S), (runs(), pair.debug())
    pair.system.clear_fault(pair.erp)
    pair.settle(lambda: runs() == ["completed", "completed"], timeout=SETTLE_S)
    if booked is not None:
        # Stripe says a price's tier, Zuora its catalog's rate plan (Tier__c).
        assert [record.get("custrecord_cl_plan_tier") for record in pair.books.subscriptions(
            pair.state(pair.erp), canonical_id) or []] == ["enterprise"]
    assert zendesk_fields(pair, canonical_customer).get("plan_tier") == "enterprise"
    assert pair.letters() == []


# -- refunds ---------------------------------------------------------------------------------------
def test_a_credit_and_its_refund_are_booked_in_the_erp_once_as_far_as_it_keeps_them(pair: Pair) -> None:
    customer, canonical_customer = customer_in_the_erp(pair, "Refundable Co")
    store = pair.system.hub.runtime.store
    invoice, canonical_invoice = paid_invoice_everywhere(pair, customer, canonical_customer)
    pair.settle(lambda: booked(pair, canonical_invoice), timeout=SETTLE_S)

    memo, refund = pair.billing.credit(invoice, 1_200, refund=True)
    memo_id, refund_id = f"creditmemo/{pair.billing.system}/{memo}", f"refund/{pair.billing.system}/{refund}"

    def completed(subject: str) -> bool:
        return [run.state for run in store.journeys(name="refund", subject=subject)] == ["completed"]

    pair.settle(lambda: completed(memo_id) and completed(refund_id), timeout=SETTLE_S)
    state = pair.state(pair.erp)
    [credit] = pair.books.credit_memos(state, memo_id)
    assert float(credit.get("total", credit.get("totalAmountIncludingTax", 0))) == 12.0
    refunds = pair.books.refunds(state, refund_id)
    assert refunds is None or [float(r["total"]) for r in refunds] == [12.0]  # None: the ERP keeps no refunds
    assert pair.letters() == []


# -- suspension ------------------------------------------------------------------------------------
def test_suspension_for_non_payment_holds_the_customer_everywhere_and_payment_reinstates_it(pair: Pair) -> None:
    """Collections give up on an unpaid invoice (Stripe: uncollectible; Zuora: the subscription
    suspended); the payment reinstates the customer."""
    account_id = pair.sales.create_account(company("Pied Piper Inc"))
    canonical_customer = f"customer/salesforce/{account_id}"
    store = pair.system.hub.runtime.store
    pair.settle(lambda: all(pair.account(account_id).get(field) for field in link_fields(pair)), timeout=SETTLE_S)
    customer = pair.account(account_id)[link_fields(pair)[0]]
    subscription, _ = pair.billing.subscribe(customer, "pro", "USD", 4_000)
    invoice = pair.billing.invoice(customer, "USD", [4_000])
    pair.settle(timeout=SETTLE_S)

    def finished(name: str) -> list[str]:
        return [run.state for run in store.journeys(name=name, subject=canonical_customer)]

    pair.billing.stop_collecting(invoice, subscription)
    pair.settle(lambda: finished("suspension") == ["completed"], timeout=SETTLE_S)
    assert zendesk_fields(pair, canonical_customer).get("subscription_status") == "suspended"
    assert pair.account(account_id)["Account_Status__c"] == "Suspended"
    assert pair.books.on_hold(pair.state(pair.erp), canonical_customer)

    pair.billing.pay(invoice)
    pair.settle(lambda: finished("reinstatement") == ["completed"], timeout=SETTLE_S)
    assert zendesk_fields(pair, canonical_customer).get("subscription_status") == "active"
    assert not pair.account(account_id).get("Account_Status__c")
    assert not pair.books.on_hold(pair.state(pair.erp), canonical_customer)
    assert pair.letters() == []
