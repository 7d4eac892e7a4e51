"""One billing × ERP pair on loopback for the journey tests, and the people who work in it.

:func:`start_pair` runs the pair's four sandboxes (Salesforce, the billing system, the ERP, Zendesk)
around an embedded hub configured for that pair (:class:`~crossledger.devtools.sandboxes.Topology`).
A :class:`Billing` user works in the billing system through its own API (Stripe's form posts, Zuora's
REST after its OAuth login), and :class:`Books` reads the ERP's records as the ERP keeps them, so a
journey test reads the same for every pair.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import httpx
from conftest import System, start_system
from crossledger.canonical import external_key
from crossledger.core.processes.embedded import wait_until
from crossledger.devtools.demo.drivers import SalesforceUser
from crossledger.devtools.demo.run import StripeDriver
from crossledger.devtools.sandboxes import PAIRS, Topology
from crossledger.plugins.business_central.outbound import customer_number, document_number
from crossledger.plugins.zuora.sandbox.catalog import catalog_id

IDS = [str(pair) for pair in PAIRS]
"""The pairs' test ids: ``stripe+netsuite``, ``zuora+business-central``, ..."""
WON = "Customer - Direct"
"""The account Type an org's flow sets when the deal is closed won: what starts onboarding."""


class Billing(Protocol):
    """Someone working in the billing system, through its own API."""

    system: str
    pushes: str
    """Its sandbox's control route for what it pushes to the hub (``/_sandbox/{pushes}``: hold, release)."""

    def customer(self, name: str) -> str:
        """A customer made in billing itself; its id there."""

    def invoice(self, customer: str, amount: int) -> str:
        """An invoice of ``amount`` (minor units, USD) billed to ``customer`` and issued; its id."""

    def pay(self, invoice: str, amount: int, customer: str) -> None:
        """The invoice paid in full, outside the billing system (a check)."""

    def made_for(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        """The billing records the hub made for ``canonical_id``."""

    def subscribe(self, customer: str, plan: str, price: int) -> str:
        """``customer`` subscribed to ``plan`` at ``price`` a month; the subscription's key in canonical ids."""

    def change_plan(self, subscription: str, plan: str, price: int) -> None:
        """The subscription moved to another plan (an upgrade)."""

    def credit_and_refund(self, invoice: str, amount: int) -> tuple[str, str]:
        """Part of a paid invoice credited and the credit paid back; (credit memo id, refund id)."""

    def stop_collecting(self, invoice: str, subscription: str) -> None:
        """Collections give up on the customer who left ``invoice`` unpaid: Stripe writes the invoice
        off (uncollectible); Zuora, which has no such status, suspends the subscription."""


class StripeBilling:
    system = "stripe"
    pushes = "webhooks"

    def __init__(self, settings: dict[str, Any]) -> None:
        self.api = StripeDriver(settings["base_url"], settings["api_key"])

    def customer(self, name: str) -> str:
        """A customer with a card on file, so that an invoice paid by it can be refunded."""
        return str(self.api.post("/v1/customers", name=name, email=f"{name.split()[0].lower()}@example.com",
                                 **{"invoice_settings[default_payment_method]": "pm_card_visa"})["id"])

    def invoice(self, customer: str, amount: int) -> str:
        self.api.post("/v1/invoiceitems", customer=customer, amount=amount, currency="usd", description="plan")
        invoice = self.api.post("/v1/invoices", customer=customer, collection_method="send_invoice", days_until_due=30)
        return str(self.api.post(f"/v1/invoices/{invoice['id']}/finalize")["id"])

    def pay(self, invoice: str, amount: int, customer: str) -> None:
        """By the card on file (a customer made in Stripe here has one), else outside Stripe."""
        card = (self.api.get(f"/v1/customers/{customer}").get("invoice_settings") or {}).get("default_payment_method")
        self.api.post(f"/v1/invoices/{invoice}/pay", **({} if card else {"paid_out_of_band": "true"}))

    def credit_and_refund(self, invoice: str, amount: int) -> tuple[str, str]:
        note = self.api.post("/v1/credit_notes", invoice=invoice, amount=amount, refund_amount=amount)
        [refund] = [entry["refund"] for entry in note["refunds"]]
        return str(note["id"]), str(refund)

    def stop_collecting(self, invoice: str, subscription: str) -> None:
        self.api.post(f"/v1/invoices/{invoice}/mark_uncollectible")

    def made_for(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        return [c for c in _listed(state, "customers") if c.get("metadata", {}).get("crossledger_id") == canonical_id]

    def _price(self, plan: str, price: int) -> str:
        product = self.api.post("/v1/products", name=f"Support {plan}", **{"metadata[tier]": plan})
        return str(self.api.post("/v1/prices", product=product["id"], currency="usd", unit_amount=price,
                                 **{"recurring[interval]": "month"})["id"])

    def subscribe(self, customer: str, plan: str, price: int) -> str:
        return str(self.api.post("/v1/subscriptions", customer=customer, collection_method="send_invoice",
                                 days_until_due=30, **{"items[0][price]": self._price(plan, price)})["id"])

    def change_plan(self, subscription: str, plan: str, price: int) -> None:
        item = self.api.get(f"/v1/subscriptions/{subscription}")["items"]["data"][0]["id"]
        self.api.post(f"/v1/subscriptions/{subscription}", proration_behavior="none",
                      **{"items[0][id]": item, "items[0][price]": self._price(plan, price)})


class ZuoraBilling:
    system = "zuora"
    pushes = "callouts"
    HUB_ID = "CrossledgerId__c"
    """The account custom field the connector keeps the hub's id in (its default ``hub_id_field``)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.http = httpx.Client(base_url=settings["base_url"], timeout=30)
        token = self.http.post("/oauth/token", data={"client_id": settings["client_id"], "grant_type":
                                                     "client_credentials", "client_secret": settings["client_secret"]})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(path, json=body)
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        assert found.get("success") is not False, found
        return found

    def customer(self, name: str) -> str:
        contact = {"firstName": "Accounts", "lastName": "Payable", "country": "USA", "state": "California"}
        account = self._post("/v1/accounts", {"name": name, "currency": "USD", "billCycleDay": 1, "autoPay": False,
                                              "billToContact": contact})
        return str(account["accountId"])

    def invoice(self, customer: str, amount: int) -> str:
        today = date.today().isoformat()
        return str(self._post("/v1/invoices", {
            "accountId": customer, "invoiceDate": today, "dueDate": today, "status": "Posted",
            "invoiceItems": [{"amount": amount / 100, "chargeName": "plan", "serviceStartDate": today}]})["id"])

    def credit_and_refund(self, invoice: str, amount: int) -> tuple[str, str]:
        [item] = self.http.get(f"/v1/invoices/{invoice}/items").json()["invoiceItems"]
        memo = self._post(f"/v1/invoices/{invoice}/creditmemos", {
            "autoPost": True, "reasonCode": "Service issue",
            "items": [{"invoiceItemId": item["id"], "amount": amount / 100, "skuName": "SKU-1"}]})
        refund = self._post(f"/v1/creditmemos/{memo['id']}/refunds", {
            "totalAmount": amount / 100, "type": "External", "methodType": "Check",
            "refundDate": date.today().isoformat()})
        return str(memo["id"]), str(refund["id"])

    def pay(self, invoice: str, amount: int, customer: str) -> None:
        self._post("/v1/payments", {"accountId": customer, "amount": amount / 100, "currency": "USD",
                                    "type": "External", "effectiveDate": date.today().isoformat(),
                                    "invoices": [{"invoiceId": invoice, "amount": amount / 100}]})

    def stop_collecting(self, invoice: str, subscription: str) -> None:
        account = self.http.get(f"/v1/subscriptions/{subscription}").json()["accountId"]
        self._order(account, {"type": "Suspend", "suspend": {"suspendPolicy": "Today"}}, subscription)

    def made_for(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        return [a for a in _listed(state, "accounts") if a.get(self.HUB_ID) == canonical_id]

    @staticmethod
    def _plan(plan: str, price: int) -> dict[str, Any]:
        return {"productRatePlanId": catalog_id(plan), "chargeOverrides": [
            {"pricing": {"recurringFlatFee": {"listPrice": price / 100}}, "billing": {"billingPeriod": "Month"}}]}

    def _order(self, account: str, action: dict[str, Any], subscription: str | None = None) -> dict[str, Any]:
        number = self.http.get(f"/v1/accounts/{account}").json()["basicInfo"]["accountNumber"]
        entry = {"orderActions": [action], **({"subscriptionNumber": subscription} if subscription else {})}
        return self._post("/v1/orders", {"orderDate": date.today().isoformat(), "existingAccountNumber": number,
                                         "subscriptions": [entry]})

    def subscribe(self, customer: str, plan: str, price: int) -> str:
        placed = self._order(customer, {"type": "CreateSubscription", "createSubscription": {
            "subscribeToRatePlans": [self._plan(plan, price)],
            "terms": {"initialTerm": {"period": 12, "periodType": "Month", "termType": "TERMED"}}}})
        [number] = placed["subscriptionNumbers"]
        return str(number)

    def change_plan(self, subscription: str, plan: str, price: int) -> None:
        current = self.http.get(f"/v1/subscriptions/{subscription}").json()
        [rate_plan] = current["ratePlans"]
        self._order(current["accountId"], {"type": "ChangePlan", "changePlan": {
            "productRatePlanId": rate_plan["productRatePlanId"], "newProductRatePlan": self._plan(plan, price)}},
            subscription)


class Books(Protocol):
    """The ERP's records of what the hub booked there."""

    system: str

    def customers(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]: ...

    def invoices(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]: ...

    def payments_of(self, state: dict[str, Any], invoice: dict[str, Any]) -> list[dict[str, Any]]:
        """The payments applied to ``invoice`` (one of :meth:`invoices`)."""

    def post_payments(self, sandbox: Any) -> None:
        """What finance does so that the payments the hub booked settle their invoices."""

    def subscriptions(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]] | None:
        """The ERP's records of a subscription; None when the ERP keeps no subscriptions."""

    def credit_memos(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]: ...

    def refunds(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]] | None:
        """The ERP's records of a refund; None when the ERP keeps no refunds."""

    def on_hold(self, state: dict[str, Any], canonical_id: str) -> bool:
        """Whether the customer may not be invoiced (a credit hold, a block)."""


class NetSuiteBooks:
    system = "netsuite"

    def customers(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        return [c for c in _listed(state, "customer") if c.get("externalId") == external_key(canonical_id)]

    def invoices(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        return [i for i in _listed(state, "invoice") if i.get("externalId") == external_key(canonical_id)]

    def payments_of(self, state: dict[str, Any], invoice: dict[str, Any]) -> list[dict[str, Any]]:
        return [p for p in _listed(state, "customerpayment")
                if any(line["doc"]["id"] == str(invoice["id"]) for line in p["apply"]["items"])]

    def post_payments(self, sandbox: Any) -> None:
        """Nothing: a NetSuite customer payment applies to its invoices as it is created."""

    def subscriptions(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]] | None:
        return self._marked(state, "customrecord_cl_subscription", canonical_id)

    def credit_memos(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        return self._marked(state, "creditmemo", canonical_id)

    def refunds(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]] | None:
        return self._marked(state, "customerRefund", canonical_id)

    def on_hold(self, state: dict[str, Any], canonical_id: str) -> bool:
        [customer] = self.customers(state, canonical_id)
        return bool(customer.get("creditHoldOverride", {}).get("id") == "ON")

    @staticmethod
    def _marked(state: dict[str, Any], kind: str, canonical_id: str) -> list[dict[str, Any]]:
        return [r for r in _listed(state, kind) if r.get("externalId") == external_key(canonical_id)]


class BusinessCentralBooks:
    system = "business_central"

    def customers(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        return [c for c in _listed(state, "customers") if c.get("number") == customer_number(canonical_id)]

    def invoices(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        key = document_number(canonical_id)
        return [i for i in _listed(state, "salesInvoices") if i.get("externalDocumentNumber") == key]

    def payments_of(self, state: dict[str, Any], invoice: dict[str, Any]) -> list[dict[str, Any]]:
        return [p for p in _listed(state, "customerPayments") if p.get("appliesToInvoiceId") == invoice["id"]]

    def post_payments(self, sandbox: Any) -> None:
        """A user posts the payment journal: its lines settle their invoices (the API cannot post it)."""
        sandbox.post_payment_journal()

    def subscriptions(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]] | None:
        """None: the standard API has no place for a subscription."""
        return None

    def credit_memos(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]]:
        key = document_number(canonical_id)
        return [m for m in _listed(state, "salesCreditMemos") if m.get("externalDocumentNumber") == key]

    def refunds(self, state: dict[str, Any], canonical_id: str) -> list[dict[str, Any]] | None:
        """None: the standard API has no customer refunds."""
        return None

    def on_hold(self, state: dict[str, Any], canonical_id: str) -> bool:
        [customer] = self.customers(state, canonical_id)
        return bool(customer.get("blocked") == "Invoice")


def _listed(state: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = state.get(kind, [])
    return list(found.values()) if isinstance(found, dict) else list(found)


BILLING: dict[str, Callable[[dict[str, Any]], Billing]] = {"stripe": StripeBilling, "zuora": ZuoraBilling}
BOOKS: dict[str, Callable[[], Books]] = {"netsuite": NetSuiteBooks, "business_central": BusinessCentralBooks}
SENDERS = ("wait_for_webhooks", "wait_for_callouts", "wait_for_outbound")
"""How each sandbox that pushes says it has nothing left to send."""


@dataclass
class Pair:
    """A running pair: the hub and its sandboxes (``system``), and the people working in them."""

    topology: Topology
    system: System
    billing: Billing
    books: Books

    @property
    def erp(self) -> str:
        return self.books.system

    @property
    def sales(self) -> SalesforceUser:
        return SalesforceUser(self.system.hub.runtime.settings.connectors["salesforce"])

    def state(self, system: str) -> dict[str, Any]:
        return self.system.state(system)

    def quiet(self) -> bool:
        """Every sandbox has sent what it had to, and the hub has nothing left to do."""
        for sandbox in self.system.sandboxes.sandboxes.values():
            for sender in SENDERS:
                if hasattr(sandbox, sender) and not getattr(sandbox, sender)(0):
                    return False
        return self.system.hub.idle()

    def settle(self, condition: Callable[[], bool] = lambda: True, timeout: float = 60) -> None:
        assert wait_until(lambda: self.quiet() and condition(), timeout), f"did not settle: {self.debug()}"

    def debug(self) -> str:
        store = self.system.hub.runtime.store
        letters = [(letter.category, letter.reason) for letter in store.dlq_list()]
        journeys = [(run.name, run.state, run.reason, {name: step.status for name, step in run.steps.items()})
                    for run in store.journeys()]
        return f"dead letters {letters}, journeys {journeys}, quiet: {self.quiet()}"

    def letters(self) -> list[tuple[str, str]]:
        return [(letter.category, letter.reason) for letter in self.system.hub.runtime.store.dlq_list()]

    def account(self, account_id: str) -> dict[str, Any]:
        [found] = [a for a in _listed(self.state("salesforce"), "accounts") if a["Id"] == account_id]
        return found

    def hold_billing(self) -> None:
        """Billing keeps back what it pushes to the hub, as when its deliveries are failing."""
        self._push_control({"hold": True})

    def release_billing(self) -> None:
        self._push_control({"release": "in_order"})

    def _push_control(self, command: dict[str, Any]) -> None:
        url = f"{self.system.server.url}/{self.billing.system}/_sandbox/{self.billing.pushes}"
        httpx.post(url, json=command, timeout=10).raise_for_status()

    def stop(self) -> None:
        self.system.stop()


def start_pair(tmp_path: Path, topology: Topology, **options: Any) -> Pair:
    """The pair's sandboxes and a hub configured for it (``[topology]`` names its billing and ERP)."""
    system = start_system(tmp_path, systems=topology.systems, topology=topology.roles(), **options)
    billing = BILLING[topology.billing_system](system.hub.runtime.settings.connectors[topology.billing_system])
    return Pair(topology, system, billing, BOOKS[topology.erp_system]())
