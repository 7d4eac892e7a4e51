"""Billing through its own API: one driver per billing system, behind :class:`BillingDriver`.

A billing clerk does the same work whichever system the company bills in: subscribes customers to
plans, issues invoices with tax, collects, voids, credits, refunds, changes a plan and stops
collecting from a customer who does not pay. Each driver does it through its system's public API
(Stripe's form-encoded requests with the secret key; Zuora's JSON v1 API with an OAuth
client-credentials token), finds what the hub made there, holds back and releases what its system
pushes to the hub (through its sandbox's control routes), and counts what the system holds from
its sandbox's ``/_sandbox/state``.

``crossledger demo`` bills through these drivers, and so do the journey tests on every billing ×
ERP pair (``tests/pairs.py``): one driver per system, whoever drives it.

What a system cannot do is declared, never skipped in silence: :attr:`BillingDriver.cannot` maps
a part of the story (:data:`VOID`) to why
it is skipped, and the demo says so in its summary.
"""

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from random import Random
from typing import Any, Protocol

import httpx
from crossledger.canonical.money import from_decimal, money, to_decimal
from crossledger.devtools.demo.drivers import TIMEOUT_S, Json, Sandboxes, StripeDriver, listed
from crossledger.devtools.demo.reconcile import ENDED_SUBSCRIPTIONS, FINALIZED

VOID = "void"
"""The parts of the story a billing system may not be able to play."""
TAX_RATES = {"EUR": ("VAT", "20"), "JPY": ("Consumption tax", "10")}
"""Exclusive tax per currency: VAT on EUR invoices, consumption tax on JPY (whole yen); none on USD."""
PLANS = {"pro": {"USD": 4_900, "EUR": 4_500, "JPY": 7_000},
         "enterprise": {"USD": 19_900, "EUR": 18_500, "JPY": 29_000}}
"""Monthly list prices per tier and currency, in minor units."""
PRODUCT_SKU, TIER_FIELD = "SKU-SUPPORT", "Tier__c"
"""Zuora's catalog: the product whose rate plans the company sells, and the custom field naming a
rate plan's tier."""


class BillingDriver(Protocol):
    """A billing clerk at work in one billing system. Ids are that system's; amounts minor units;
    a price of None is the plan's list price (:data:`PLANS`)."""

    system: str
    """The connector's name (``stripe``)."""
    title: str
    """How people write it (``Stripe``)."""
    cannot: Mapping[str, str]
    """The parts of the story this system cannot play, each with the reason."""

    def customer(self, name: str) -> str:
        """A customer made in billing itself (not by the hub), billed in USD; its id."""

    def customer_for(self, crossledger_id: str) -> str | None:
        """The billing customer the hub made for a canonical customer, asked of the system's API."""

    def made_for(self, state: Json, canonical_id: str) -> list[Json]:
        """Every billing customer in ``state`` (the sandbox's) the hub made for ``canonical_id``."""

    def subscribe(self, customer: str, tier: str, currency: str, price: int | None = None) -> tuple[str, str]:
        """A monthly subscription to ``tier``: its id (its key in canonical ids) and the id of its
        first (finalized) invoice."""

    def change_plan(self, subscription: str, tier: str, currency: str, price: int | None = None) -> None:
        """The subscription moved to another plan (an upgrade), without proration."""

    def invoice(self, customer: str, currency: str, amounts: list[int]) -> str:
        """A finalized invoice of one line per amount, with the currency's tax: its id."""

    def total(self, invoice: str) -> int:
        """What the invoice bills, tax included."""

    def pay(self, invoice: str, *, by_card: bool = False) -> None:
        """Collect what the invoice still owes (by card, or recorded as paid out of band)."""

    def void(self, invoice: str) -> None: ...

    def credit(self, invoice: str, amount: int, *, refund: bool = False) -> tuple[str, str | None]:
        """A credit note of ``amount`` on the invoice, paid back on a paid one when ``refund``:
        (the credit note's id, the refund's id or None)."""

    def stop_collecting(self, invoice: str, subscription: str) -> None:
        """Collections give up on the customer who left ``invoice`` unpaid (Stripe: the invoice
        uncollectible; Zuora, which has no such status: the customer's ``subscription`` suspended)."""

    def hold(self) -> None:
        """The system keeps back what it pushes to the hub, as when its deliveries are failing."""

    def release(self) -> None:
        """What it kept back is sent, in order."""

    def resend(self, rng: Random, most: int) -> int:
        """Deliver notifications again, as the system sometimes does (Stripe: up to ``most`` events
        chosen with ``rng``; Zuora's sandbox: every callout made so far); how many."""

    def counts(self, state: Json) -> dict[str, int]:
        """What the system holds: ``billing_customers``, ``billing_subscriptions``,
        ``billing_invoices_finalized``, ``billing_payments``, ``billing_voids``,
        ``billing_credit_notes``, ``billing_refunds``."""


class _Pushes:
    """Holding back and releasing what the system pushes to the hub, through its sandbox's control
    route ``/_sandbox/{pushes}`` (Stripe's webhooks, Zuora's callouts)."""

    system: str
    pushes: str
    sandboxes: Sandboxes

    def hold(self) -> None:
        self.sandboxes.control(self.system, f"/_sandbox/{self.pushes}", {"hold": True})

    def release(self) -> None:
        self.sandboxes.control(self.system, f"/_sandbox/{self.pushes}", {"release": "in_order"})


def _counts(customers: int, subscriptions: int, invoices: int, payments: int, voids: int, notes: int,
            refunds: int) -> dict[str, int]:
    return {"billing_customers": customers, "billing_subscriptions": subscriptions,
            "billing_invoices_finalized": invoices, "billing_payments": payments, "billing_voids": voids,
            "billing_credit_notes": notes, "billing_refunds": refunds}


def _tax(amount: int, currency: str) -> int:
    """The exclusive tax on ``amount`` minor units, rounded to a minor unit (0 where none applies)."""
    rate = TAX_RATES.get(currency)
    return int((Decimal(amount) * Decimal(rate[1]) / 100).quantize(Decimal(1), ROUND_HALF_EVEN)) if rate else 0


class StripeBilling(_Pushes):
    """Billing in Stripe: products and prices carry ``metadata[tier]``, tax rates are Stripe's."""

    system, title, pushes = "stripe", "Stripe", "webhooks"
    cannot: Mapping[str, str] = {}

    def __init__(self, settings: Mapping[str, Any], sandboxes: Sandboxes) -> None:
        self.api = StripeDriver(settings["base_url"], settings["api_key"])
        self.sandboxes = sandboxes
        self.products: dict[str, str] = {}
        """The product of each tier."""
        self.prices: dict[tuple[str, str, int], str] = {}
        """The monthly price of each (tier, currency, amount): the list prices, and any other asked for."""
        self.tax_rates: dict[str, str] = {}

    def customer(self, name: str) -> str:
        """A customer with a card on file, as one who signs up in Stripe gives."""
        return str(self.api.post("/v1/customers", name=name, email=f"{name.split()[0].lower()}@example.com",
                                 **{"invoice_settings[default_payment_method]": "pm_card_visa"})["id"])

    def customer_for(self, crossledger_id: str) -> str | None:
        return self.api.customer_for(crossledger_id)

    def made_for(self, state: Json, canonical_id: str) -> list[Json]:
        return [c for c in listed(state, "customers") if c.get("metadata", {}).get("crossledger_id") == canonical_id]

    def _catalog(self) -> None:
        """The plans' products and list prices, and the tax rates, made once before the first use."""
        if self.products:
            return
        for tier, amounts in PLANS.items():
            self.products[tier] = self.api.post("/v1/products", name=f"Support {tier.title()}",
                                                **{"metadata[tier]": tier})["id"]
            for currency, amount in amounts.items():
                self.prices[(tier, currency, amount)] = self.api.post(
                    "/v1/prices", product=self.products[tier], currency=currency.lower(), unit_amount=amount,
                    lookup_key=f"{tier}_{currency.lower()}_monthly", **{"recurring[interval]": "month"})["id"]
        self.tax_rates = {currency: self.api.post("/v1/tax_rates", display_name=name, percentage=percent,
                                                  inclusive="false")["id"]
                          for currency, (name, percent) in TAX_RATES.items()}

    def _price(self, tier: str, currency: str, price: int | None) -> str:
        """The tier's monthly price at ``price`` (its list price when None), made on first use."""
        self._catalog()
        key = (tier, currency, PLANS[tier][currency] if price is None else price)
        if key not in self.prices:
            self.prices[key] = self.api.post("/v1/prices", product=self.products[tier], currency=currency.lower(),
                                             unit_amount=key[2], **{"recurring[interval]": "month"})["id"]
        return self.prices[key]

    def subscribe(self, customer: str, tier: str, currency: str, price: int | None = None) -> tuple[str, str]:
        subscription = self.api.post("/v1/subscriptions", customer=customer, collection_method="send_invoice",
                                     days_until_due=30, **{"items[0][price]": self._price(tier, currency, price)})
        return str(subscription["id"]), str(subscription["latest_invoice"])

    def change_plan(self, subscription: str, tier: str, currency: str, price: int | None = None) -> None:
        current = self.api.get(f"/v1/subscriptions/{subscription}")
        self.api.post(f"/v1/subscriptions/{subscription}", proration_behavior="none", **{
            "items[0][id]": current["items"]["data"][0]["id"], "items[0][price]": self._price(tier, currency, price)})

    def invoice(self, customer: str, currency: str, amounts: list[int]) -> str:
        self._catalog()
        for line, amount in enumerate(amounts, start=1):
            self.api.post("/v1/invoiceitems", customer=customer, currency=currency.lower(), amount=amount,
                          description=f"Service line {line}")
        taxes = {"default_tax_rates[0]": self.tax_rates[currency]} if currency in self.tax_rates else {}
        invoice = self.api.post("/v1/invoices", customer=customer, collection_method="send_invoice",
                                days_until_due=30, **taxes)
        self.api.post(f"/v1/invoices/{invoice['id']}/finalize")
        return str(invoice["id"])

    def total(self, invoice: str) -> int:
        return int(self.api.get(f"/v1/invoices/{invoice}")["total"])

    def pay(self, invoice: str, *, by_card: bool = False) -> None:
        how = {"payment_method": "pm_card_visa"} if by_card else {"paid_out_of_band": "true"}
        self.api.post(f"/v1/invoices/{invoice}/pay", **how)

    def void(self, invoice: str) -> None:
        self.api.post(f"/v1/invoices/{invoice}/void")

    def credit(self, invoice: str, amount: int, *, refund: bool = False) -> tuple[str, str | None]:
        """A credit note; with ``refund``, it refunds the card that paid the invoice (one refund)."""
        extra = {"refund_amount": amount} if refund else {}
        note = self.api.post("/v1/credit_notes", invoice=invoice, amount=amount, reason="order_change", **extra)
        refunds = [str(entry["refund"]) for entry in note.get("refunds") or []]
        return str(note["id"]), refunds[0] if refunds else None

    def stop_collecting(self, invoice: str, subscription: str) -> None:
        self.api.post(f"/v1/invoices/{invoice}/mark_uncollectible")

    def resend(self, rng: Random, most: int) -> int:
        events = self.api.get("/v1/events", limit=100)["data"]
        chosen = rng.sample(events, min(most, len(events)))
        for event in chosen:
            self.sandboxes.resend_stripe_event(event["id"])
        return len(chosen)

    def counts(self, state: Json) -> dict[str, int]:
        finalized = [i for i in state.get("invoices", []) if i["status"] in FINALIZED]
        return _counts(
            customers=sum(1 for c in state.get("customers", []) if not c.get("deleted")),
            subscriptions=sum(1 for s in state.get("subscriptions", []) if s["status"] not in ENDED_SUBSCRIPTIONS),
            invoices=len(finalized),
            payments=sum(1 for p in state.get("invoice_payments", []) if p.get("status") == "paid"),
            voids=sum(1 for i in finalized if i["status"] == "void"),
            notes=sum(1 for n in state.get("credit_notes", []) if n["status"] == "issued"),
            refunds=sum(1 for r in state.get("refunds", []) if r["status"] in ("succeeded", "pending")))


class ZuoraError(Exception):
    """Zuora refused a request (HTTP 200 with ``success: false`` included)."""


class ZuoraBilling(_Pushes):
    """Billing in Zuora: accounts the hub made (found by the hub-id custom field), subscriptions
    through orders, standalone invoices with tax items, payments applied to invoices, credit memos
    from invoices and refunds of memos. Zuora answers many refusals HTTP 200 with ``success: false``;
    the driver reads the body."""

    system, title, pushes = "zuora", "Zuora", "callouts"
    cannot: Mapping[str, str] = {
        VOID: "the Zuora connector maps no invoice-cancel callout (its sandbox does not cancel posted invoices)",
    }
    HUB_ID = "CrossledgerId__c"
    """The account custom field the connector keeps the hub's id in (its default ``hub_id_field``)."""

    def __init__(self, settings: Mapping[str, Any], sandboxes: Sandboxes) -> None:
        login = httpx.post(settings["base_url"] + "/oauth/token", timeout=TIMEOUT_S, data={
            "grant_type": "client_credentials", "client_id": settings["client_id"],
            "client_secret": settings["client_secret"]})
        login.raise_for_status()
        self.http = httpx.Client(base_url=settings["base_url"], timeout=TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        self.sandboxes = sandboxes
        catalog = self._call("GET", f"/v1/products/{PRODUCT_SKU}/product-rate-plans")["productRatePlans"]
        self.rate_plans = {str(plan[TIER_FIELD]): str(plan["id"]) for plan in catalog if plan.get(TIER_FIELD)}
        """The catalog's rate plan of each tier (its ``Tier__c``)."""

    def _call(self, method: str, path: str, **options: Any) -> Json:
        response = self.http.request(method, path, **options)
        response.raise_for_status()
        answer: Json = response.json()
        if answer.get("success") is False:
            raise ZuoraError(f"Zuora refused {method} {path}: {answer.get('reasons')}")
        return answer

    def customer(self, name: str) -> str:
        contact = {"firstName": "Accounts", "lastName": "Payable", "country": "USA", "state": "California"}
        account = self._call("POST", "/v1/accounts", json={"name": name, "currency": "USD", "billCycleDay": 1,
                                                           "autoPay": False, "billToContact": contact})
        return str(account["accountId"])

    def customer_for(self, crossledger_id: str) -> str | None:
        found = self._call("GET", "/object-query/accounts", params={"filter[]": f"{self.HUB_ID}.EQ:{crossledger_id}"})
        return str(found["data"][0]["id"]) if found["data"] else None

    def made_for(self, state: Json, canonical_id: str) -> list[Json]:
        return [a for a in listed(state, "accounts") if a.get(self.HUB_ID) == canonical_id]

    def subscribe(self, customer: str, tier: str, currency: str, price: int | None = None) -> tuple[str, str]:
        """An order creating the subscription; its first month billed at once as a standalone
        invoice (bill runs are not emulated)."""
        account = self._call("GET", f"/v1/accounts/{customer}")["basicInfo"]["accountNumber"]
        order = self._call("POST", "/v1/orders", json={
            "existingAccountNumber": account, "orderDate": _today(),
            "subscriptions": [{"orderActions": [{"type": "CreateSubscription", "createSubscription": {
                "terms": {"initialTerm": {"period": 12, "periodType": "Month", "termType": "TERMED"},
                          "autoRenew": True},
                "subscribeToRatePlans": [self._rate_plan(tier, currency, price)]}}]}]})
        number = str(order["subscriptionNumbers"][0])
        first = PLANS[tier][currency] if price is None else price
        return number, self._post_invoice(customer, currency, [first], f"Support {tier.title()}")

    def change_plan(self, subscription: str, tier: str, currency: str, price: int | None = None) -> None:
        self._order_on(subscription, lambda found: {"type": "ChangePlan", "changePlan": {
            "productRatePlanId": found["ratePlans"][0]["productRatePlanId"],
            "newProductRatePlan": self._rate_plan(tier, currency, price)}})

    def _rate_plan(self, tier: str, currency: str, price: int | None) -> Json:
        """The catalog's rate plan of ``tier``, priced by override (the catalog's carry no charges)."""
        amount = PLANS[tier][currency] if price is None else price
        return {"productRatePlanId": self.rate_plans[tier], "chargeOverrides": [{
            "pricing": {"recurringFlatFee": {"listPrice": _major(amount, currency)}},
            "billing": {"billingPeriod": "Month"}}]}

    def _order_on(self, subscription: str, action: Callable[[Json], Json]) -> None:
        """An order of one action on ``subscription``, made from the subscription as it is now."""
        found = self._call("GET", f"/v1/subscriptions/{subscription}")
        self._call("POST", "/v1/orders", json={
            "existingAccountNumber": found["accountNumber"], "orderDate": _today(),
            "subscriptions": [{"subscriptionNumber": subscription, "orderActions": [action(found)]}]})

    def invoice(self, customer: str, currency: str, amounts: list[int]) -> str:
        return self._post_invoice(customer, currency, amounts, "Service line")

    def _post_invoice(self, customer: str, currency: str, amounts: list[int], charge: str) -> str:
        tax = TAX_RATES.get(currency)
        items = [{"amount": _major(amount, currency), "chargeName": f"{charge} {line}",
                  "description": f"{charge} {line}", "serviceStartDate": _today(),
                  **({"taxItems": [{"taxName": tax[0], "taxRate": tax[1], "taxAmount": _major(_tax(amount, currency),
                                                                                           currency)}]} if tax else {})}
                 for line, amount in enumerate(amounts, start=1)]
        invoice = self._call("POST", "/v1/invoices", json={"accountId": customer, "invoiceDate": _today(),
                                                           "status": "Posted", "invoiceItems": items})
        return str(invoice["id"])

    def total(self, invoice: str) -> int:
        found = self._call("GET", f"/v1/invoices/{invoice}")
        return from_decimal(found["amount"], found["currency"]).amount

    def pay(self, invoice: str, *, by_card: bool = False) -> None:
        found = self._call("GET", f"/v1/invoices/{invoice}")
        self._call("POST", "/v1/payments", json={
            "accountId": found["accountId"], "amount": found["balance"], "currency": found["currency"],
            "type": "Electronic" if by_card else "External", "effectiveDate": _today(),
            "invoices": [{"invoiceId": invoice, "amount": found["balance"]}]})

    def void(self, invoice: str) -> None:
        raise NotImplementedError(self.cannot[VOID])

    def credit(self, invoice: str, amount: int, *, refund: bool = False) -> tuple[str, str | None]:
        """A memo crediting the invoice's first item, applied to what the invoice still owes; with
        ``refund``, what it leaves unapplied paid back (by check, outside Zuora)."""
        currency = self._call("GET", f"/v1/invoices/{invoice}")["currency"]
        [item, *_] = self._call("GET", f"/v1/invoices/{invoice}/items")["invoiceItems"]
        major = _major(amount, currency)
        memo = self._call("POST", f"/v1/invoices/{invoice}/creditmemos", json={
            "items": [{"invoiceItemId": item["id"], "amount": major}], "autoPost": True,
            "autoApplyToInvoiceUponPosting": True, "reasonCode": "Correcting invoice error"})
        if not refund:
            return str(memo["id"]), None
        paid_back = self._call("POST", f"/v1/creditmemos/{memo['id']}/refunds", json={
            "totalAmount": major, "type": "External", "methodType": "Check", "refundDate": _today()})
        return str(memo["id"]), str(paid_back["id"])

    def stop_collecting(self, invoice: str, subscription: str) -> None:
        """The subscription suspended by an order, as Zuora's collections do (resuming it once paid
        is left to them)."""
        self._order_on(subscription, lambda found: {"type": "Suspend", "suspend": {"suspendPolicy": "Today"}})

    def resend(self, rng: Random, most: int) -> int:
        """Zuora's callouts can come twice: every callout made so far is sent once more."""
        resent: int = self.sandboxes.control(self.system, f"/_sandbox/{self.pushes}", {"resend": "all"})["resent"]
        return resent

    def counts(self, state: Json) -> dict[str, int]:
        return _counts(
            customers=len(state.get("accounts", [])),
            subscriptions=sum(1 for s in state.get("subscriptions", []) if s["status"] != "Cancelled"),
            invoices=sum(1 for i in state.get("invoices", []) if i["status"] == "Posted"),
            payments=sum(1 for p in state.get("payments", []) if p["status"] == "Processed"),
            voids=0,
            notes=sum(1 for m in state.get("creditmemos", []) if m["status"] == "Posted"),
            refunds=sum(1 for r in state.get("refunds", []) if r["status"] == "Processed"))


def _major(amount: int, currency: str) -> str:
    return str(to_decimal(money(amount, currency)))


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


BILLING: dict[str, type[StripeBilling] | type[ZuoraBilling]] = {"stripe": StripeBilling, "zuora": ZuoraBilling}
"""The billing systems the demo can play, by connector name."""
