"""The reference topology end to end: Salesforce, Stripe, NetSuite and Zendesk sandboxes around one
embedded hub, with the default routes and ownership rules. Every step is a real HTTP exchange."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import System, start_system
from crossledger.canonical import external_key
from crossledger.core.processes.embedded import wait_until
from crossledger.devtools.demo.drivers import SalesforceUser
from crossledger.plugins.netsuite.sandbox.user import NetSuiteUser
from crossledger.plugins.netsuite.settings import NetSuiteSettings

ALL = ("salesforce", "stripe", "netsuite", "zendesk")
WON = "Customer - Direct"
"""The account Type an org's flow sets when the deal is closed won: what starts onboarding."""


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[System]:
    running = start_system(tmp_path, systems=ALL)
    yield running
    running.stop()
    assert all(any(exchange.is_json for exchange in app.exchanges) for app in running.checked.values()), \
        "the checked sandboxes gave no answer to check"
    departures = running.departures()
    assert departures == [], "\n".join(departures)


def quiet(system: System) -> bool:
    """Every sandbox has sent what it had to send, and the hub has nothing left to do."""
    senders = system.sandboxes.sandboxes
    return (senders["stripe"].wait_for_webhooks(0)  # type: ignore[attr-defined]
            and senders["salesforce"].wait_for_outbound(0)  # type: ignore[attr-defined]
            and senders["zendesk"].wait_for_webhooks(0)  # type: ignore[attr-defined]
            and system.hub.idle())


def settle(system: System, condition: Any = lambda: True, timeout: float = 30) -> None:
    assert wait_until(lambda: quiet(system) and condition(), timeout), f"did not settle: {_debug(system)}"


def _debug(system: System) -> str:
    store = system.hub.runtime.store
    letters = [(letter.category, letter.reason) for letter in store.dlq_list()]
    journeys = [(run.name, run.state, run.reason, {name: step.status for name, step in run.steps.items()})
                for run in store.journeys()]
    return f"dead letters {letters}, journeys {journeys}, every sender done and the hub idle: {quiet(system)}"


def records(system: System, name: str, kind: str) -> list[dict[str, Any]]:
    found = system.state(name).get(kind, [])
    return list(found.values()) if isinstance(found, dict) else list(found)


def stripe_customers(system: System, canonical_id: str) -> list[dict[str, Any]]:
    return [c for c in records(system, "stripe", "customers")
            if c.get("metadata", {}).get("crossledger_id") == canonical_id]


def netsuite_customers(system: System, canonical_id: str) -> list[dict[str, Any]]:
    return [c for c in records(system, "netsuite", "customer") if c.get("externalId") == external_key(canonical_id)]


def zendesk_organizations(system: System, canonical_id: str) -> list[dict[str, Any]]:
    return [o for o in records(system, "zendesk", "organizations")
            if o.get("external_id") == external_key(canonical_id)]


def account(system: System, account_id: str) -> dict[str, Any]:
    [found] = [a for a in records(system, "salesforce", "accounts") if a["Id"] == account_id]
    return found


def test_an_account_becomes_a_customer_once_everywhere_with_the_ids_cross_referenced(topology: System) -> None:
    sales = SalesforceUser(topology.hub.runtime.settings.connectors["salesforce"])
    account_id = sales.create_account(dict(Name="Initech LLC", Type=WON, Website="https://initech.example",
                                          Phone="+1 555 0100", CurrencyIsoCode="USD", BillingCity="Austin",
                                          BillingCountry="US"))
    canonical_id = f"customer/salesforce/{account_id}"

    def linked() -> bool:
        row = account(topology, account_id)
        return all(row.get(f) for f in ("Stripe_Customer_Id__c", "NetSuite_Id__c", "Zendesk_Organization_Id__c"))

    settle(topology, linked)
    [stripe] = stripe_customers(topology, canonical_id)
    [netsuite] = netsuite_customers(topology, canonical_id)
    [zendesk] = zendesk_organizations(topology, canonical_id)
    row = account(topology, account_id)
    assert (row["Stripe_Customer_Id__c"], row["NetSuite_Id__c"], row["Zendesk_Organization_Id__c"]) == \
        (stripe["id"], str(netsuite["id"]), str(zendesk["id"]))
    store = topology.hub.runtime.store
    assert store.xrefs(canonical_id) == {"salesforce": account_id, "stripe": stripe["id"],
                                         "netsuite": str(netsuite["id"]), "zendesk": str(zendesk["id"])}
    assert stripe["metadata"].get("salesforce_id") == account_id
    assert store.dlq_count() == 0

    # Salesforce sends the same outbound message again: nothing new anywhere.
    httpx.post(f"{topology.server.url}/salesforce/_sandbox/outbound/resend").raise_for_status()
    settle(topology)
    assert len(stripe_customers(topology, canonical_id)) == 1
    assert len(netsuite_customers(topology, canonical_id)) == 1
    assert len(zendesk_organizations(topology, canonical_id)) == 1
    assert len(records(topology, "stripe", "customers")) == 1
    assert store.dlq_count() == 0


def test_payment_terms_changed_in_salesforce_do_not_overwrite_netsuite(topology: System) -> None:
    sales = SalesforceUser(topology.hub.runtime.settings.connectors["salesforce"])
    account_id = sales.create_account(dict(Name="Hooli Inc", Type=WON, Website="https://hooli.example",
                                          CurrencyIsoCode="USD"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(topology, lambda: len(netsuite_customers(topology, canonical_id)) == 1)
    [before] = netsuite_customers(topology, canonical_id)

    sales.update_account(account_id, dict(Payment_Terms__c="Net 90", Phone="+1 555 0199"))
    settle(topology, lambda: any(c.get("phone") == "+1 555 0199" for c in netsuite_customers(topology, canonical_id)))

    [after] = netsuite_customers(topology, canonical_id)
    assert after.get("terms") == before.get("terms")
    audit = topology.hub.runtime.store.audit_for_subject(canonical_id)
    why = [r.detail for r in audit if r.status == "stripped" and r.system == "salesforce"]
    assert "financial (dimensions) owned by netsuite" in why


def stripe_customer_with_card(system: System, name: str) -> dict[str, Any]:
    return system.stripe.post("/v1/customers", name=name, email=f"{name.split()[0].lower()}@example.com",
                              **{"invoice_settings[default_payment_method]": "pm_card_visa"})


def tier_price(system: System, tier: str, amount: int) -> str:
    product = system.stripe.post("/v1/products", name=f"Support {tier}", **{"metadata[tier]": tier})
    price = system.stripe.post("/v1/prices", product=product["id"], currency="usd", unit_amount=amount,
                               **{"recurring[interval]": "month"})
    return str(price["id"])


def test_an_upgrade_changes_the_zendesk_tier_and_a_credit_note_with_a_refund_lands_in_netsuite_once(
        topology: System) -> None:
    customer = stripe_customer_with_card(topology, "Vandelay Industries")
    basic, pro = tier_price(topology, "basic", 2_000), tier_price(topology, "pro", 9_000)
    subscription = topology.stripe.post("/v1/subscriptions", customer=customer["id"], **{"items[0][price]": basic})
    canonical_id = f"customer/stripe/{customer['id']}"

    def tier() -> str | None:
        organizations = zendesk_organizations(topology, canonical_id)
        return organizations[0].get("organization_fields", {}).get("plan_tier") if organizations else None

    settle(topology, lambda: tier() == "basic")
    topology.stripe.post(f"/v1/subscriptions/{subscription['id']}", proration_behavior="none",
                         **{"items[0][id]": subscription["items"]["data"][0]["id"], "items[0][price]": pro})
    settle(topology, lambda: tier() == "pro")
    [organization] = zendesk_organizations(topology, canonical_id)
    assert organization["organization_fields"]["sla"] == "4h"

    # The first month's invoice was paid by card: credit half of it and refund that half.
    invoice = topology.stripe.get("/v1/invoices", customer=customer["id"])["data"][0]
    assert invoice["status"] == "paid"
    credit_note = topology.stripe.post("/v1/credit_notes", invoice=invoice["id"], amount=1_000, refund_amount=1_000)
    store = topology.hub.runtime.store

    def refunded() -> bool:
        return all(records(topology, "netsuite", kind) for kind in ("customerRefund", "creditmemo"))

    settle(topology, refunded)
    netsuite_invoice = store.xref_get(f"invoice/stripe/{invoice['id']}", "netsuite")
    [memo] = records(topology, "netsuite", "creditmemo")
    [refund] = records(topology, "netsuite", "customerRefund")
    assert memo["externalId"] == external_key(f"creditmemo/stripe/{credit_note['id']}")
    # The invoice was paid, so the credit stays on the account (nothing open to apply it to), names
    # its invoice, and the refund pays it out.
    assert memo["createdFrom"]["id"] == netsuite_invoice and memo["apply"]["items"] == []
    assert memo["total"] == 10.0 and refund["total"] == 10.0
    assert [line["doc"]["id"] for line in refund["apply"]["items"]] == [str(memo["id"])]
    assert [(letter.category, letter.reason) for letter in store.dlq_list()] == []


def test_an_invoice_posted_in_netsuite_reaches_salesforce_through_polling_once(topology: System) -> None:
    sales = SalesforceUser(topology.hub.runtime.settings.connectors["salesforce"])
    account_id = sales.create_account(dict(Name="Wayne Enterprises", Type=WON, Website="https://wayne.example",
                                          CurrencyIsoCode="USD"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(topology, lambda: len(stripe_customers(topology, canonical_id)) == 1)
    [customer] = stripe_customers(topology, canonical_id)
    invoice = topology.invoice(customer["id"], [4_200, 800])
    invoice_id = f"invoice/stripe/{invoice['id']}"

    def in_salesforce() -> list[dict[str, Any]]:
        return [i for i in records(topology, "salesforce", "invoices")
                if i.get("CrossLedger_Id__c") == external_key(invoice_id)]

    settle(topology, lambda: bool(in_salesforce()))
    settle(topology)  # later polls and echoes change nothing
    [posted] = in_salesforce()
    assert posted["Posting_Status__c"] == "posted" and posted["Account__c"] == account_id
    assert float(posted["Total__c"]) == 50.0
    audit = topology.hub.runtime.store.audit_for_subject(invoice_id)
    assert [r.status for r in audit if r.system == "salesforce" and r.step == "invoice.upsert"] == ["delivered"]


def test_terms_set_in_netsuite_survive_a_salesforce_edit_in_the_same_second(topology: System) -> None:
    """NetSuite stamps whole seconds, Salesforce milliseconds: the ERP's change, polled after the
    CRM's edit of other fields in that second, must still land (it speaks only for what it owns)."""
    sales = SalesforceUser(topology.hub.runtime.settings.connectors["salesforce"])
    account_id = sales.create_account(dict(Name="Soylent Corp", Type=WON, Website="https://soylent.example",
                                          CurrencyIsoCode="USD"))
    canonical_id = f"customer/salesforce/{account_id}"
    settle(topology, lambda: bool(account(topology, account_id).get("NetSuite_Id__c")))
    netsuite_id = account(topology, account_id)["NetSuite_Id__c"]

    settings = NetSuiteSettings(**topology.hub.runtime.settings.connectors["netsuite"])
    with NetSuiteUser(settings) as finance:
        finance.set_terms(netsuite_id, "3")
    sales.update_account(account_id, dict(Phone="+1 555 0142"))

    settle(topology, lambda: account(topology, account_id).get("Payment_Terms__c") == "3")
    golden = topology.hub.runtime.store.golden_get(canonical_id)
    assert golden is not None and golden.data["dimensions"].get("terms") == "3"
    assert golden.data["phone"] == "+1 555 0142"


def test_two_stripe_customers_with_the_same_name_become_two_organizations(topology: System) -> None:
    """Zendesk keeps organization names unique; two different customers called the same must still
    both reach support, each as its own organization, and stay apart through later updates."""
    first = topology.stripe.post("/v1/customers", name="Acme Ltd", email="billing@acme-uk.example")
    second = topology.stripe.post("/v1/customers", name="Acme Ltd", email="accounts@acme-us.example")
    ids = [f"customer/stripe/{customer['id']}" for customer in (first, second)]
    settle(topology, lambda: all(zendesk_organizations(topology, canonical_id) for canonical_id in ids))
    topology.stripe.post(f"/v1/customers/{second['id']}", phone="+1 555 0199")
    settle(topology)
    organizations = [only_one(zendesk_organizations(topology, canonical_id)) for canonical_id in ids]
    names = [organization["name"] for organization in organizations]
    assert len(set(names)) == 2 and all(name.startswith("Acme Ltd") for name in names)
    assert names == [f"Acme Ltd ({first['id']})", f"Acme Ltd ({second['id']})"]
    assert topology.hub.runtime.store.dlq_count() == 0, _debug(topology)


def only_one(items: list[dict[str, Any]]) -> dict[str, Any]:
    [item] = items
    return item


def test_an_edit_in_salesforce_of_a_customer_born_in_stripe_reaches_every_system(topology: System) -> None:
    """Finding 3: the onboarding journey covers billing, ERP and support for Salesforce accounts, but
    a customer born in Stripe has no run and never will: the edit must go by the routes."""
    customer = topology.customer("Kramerica Industries")
    canonical_id = f"customer/stripe/{customer['id']}"
    store = topology.hub.runtime.store
    settle(topology, lambda: all(store.xref_get(canonical_id, system) for system in ALL))
    account_id = store.xref_get(canonical_id, "salesforce")
    assert account_id is not None
    sales = SalesforceUser(topology.hub.runtime.settings.connectors["salesforce"])

    sales.update_account(account_id, dict(Name="Kramerica Global", Phone="+1 555 0123"))

    def everywhere() -> bool:
        [stripe] = [c for c in records(topology, "stripe", "customers") if c["id"] == customer["id"]]
        netsuite = netsuite_customers(topology, canonical_id)
        zendesk = zendesk_organizations(topology, canonical_id)
        return (stripe.get("name"), stripe.get("phone")) == ("Kramerica Global", "+1 555 0123") \
            and [c.get("phone") for c in netsuite] == ["+1 555 0123"] \
            and [o.get("name") for o in zendesk] == [f"Kramerica Global ({customer['id']})"]

    settle(topology, everywhere, timeout=20)
    assert store.dlq_count() == 0
    edit = store.outcomes(source="salesforce", limit=1)[0]  # the newest: the edit
    assert edit.outcome == "delivered"
    assert edit.targets == ["netsuite", "stripe", "zendesk"]
