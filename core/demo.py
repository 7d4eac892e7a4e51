"""``crossledger demo``: order-to-cash across the reference topology, on the sandboxes.

Everything runs in this process with no service: the Salesforce, Stripe, NetSuite and Zendesk
sandboxes on one port, the hub (memory broker, SQLite store, NetSuite polled twice a second) on
another. People work in their systems' APIs (:mod:`.demo_drivers`), and after each step the demo
waits, on conditions with a deadline, until the hub has carried it through everywhere:

1. **Sales** creates accounts in Salesforce (a parent and its subsidiary; one with payment terms
   typed in). The hub makes each a customer in Stripe, NetSuite and Zendesk, once, and writes
   every system's id into the others.
2. **Billing** in Stripe: plan subscriptions and a month of invoices in USD, EUR (VAT) and JPY
   (consumption tax). NetSuite is down for a while in the middle; the hub parks and catches up.
3. **Finance** in NetSuite approves most invoices (they post) and changes one customer's terms.
   The poll brings both back: Salesforce shows the posted invoices, the terms and the balance.
4. **Sales** changes that account's payment terms in Salesforce: the ERP owns terms, so the hub
   keeps the change out of NetSuite, and its audit says why.
5. **Billing** collects: payments, a void, a credit note, a partial refund, a plan upgrade (the
   Zendesk organization's tier follows). Stripe re-sends some webhooks, Salesforce a message.
6. **Collections** gives up on an unpaid invoice (marked uncollectible): the customer is suspended
   in Zendesk, flagged in Salesforce and put on credit hold in NetSuite; then it pays, and is
   reinstated everywhere.

Each of these is a journey (:mod:`crossledger.plugins.journeys`): a closed-won account's
onboarding, a subscription's changes, the refunds and credit notes, the suspension and the
reinstatement. The demo prints every run, and fails if one did not complete.

Then the four systems are reconciled (:func:`~crossledger.core.reconcile.reconcile_topology`), and
the demo prints what each system holds and one customer's timeline across all four.
"""

import json
import logging
import random
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crossledger.canonical.entities import external_key
from crossledger.core import metrics
from crossledger.core.demo_drivers import (
    NetSuiteFinance,
    SalesforceUser,
    Sandboxes,
    StripeDriver,
    demo_sandboxes,
    in_flight,
)
from crossledger.core.embedded import EmbeddedHub
from crossledger.core.reconcile import NAMES, SYSTEMS, Report, reconcile_topology
from crossledger.core.sandboxes import SandboxSet
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.stores.base import JourneyRecord
from crossledger.core.timeline import timeline, timeline_table
from crossledger.plugins import load_plugins
from crossledger.plugins.journeys import BUILTIN_JOURNEYS
from crossledger.plugins.sandbox import ServerThread
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

CURRENCIES = ("USD", "EUR", "JPY")
# Exclusive tax rates per currency: VAT on EUR invoices, consumption tax on JPY (whole yen); none on USD.
TAX_RATES = {"eur": ("VAT", "20"), "jpy": ("Consumption tax", "10")}
# A plausible price range per currency, in minor units.
PRICE_RANGE = {"usd": (1_500, 90_000), "eur": (1_500, 90_000), "jpy": (2_000, 90_000)}
# Monthly plan prices per tier and currency, in minor units; Stripe's products carry metadata[tier].
PLANS = {"pro": {"usd": 4_900, "eur": 4_500, "jpy": 7_000}, "enterprise": {"usd": 19_900, "eur": 18_500,
                                                                              "jpy": 29_000}}
UPGRADE = ("pro", "enterprise")
DUPLICATE_DELIVERIES = 8
LEFT_PENDING_EVERY = 7  # finance leaves every 7th invoice waiting for approval
LEFT_OPEN_EVERY = 4  # billing leaves every 4th posted invoice open
FINANCE_TERMS = "2"  # NetSuite's "Net 30", by internal id: dimensions travel as NetSuite ids
SALES_TERMS = "Net 90"  # what a sales rep types into Payment_Terms__c afterwards
CLOSED_WON = "Customer - Direct"  # the account Type a won deal sets: what makes the account a customer
MIN_ACCOUNTS, MIN_INVOICES = 2, 6
POLL_INTERVAL_S = 0.5
SETTLE_CHECK_S = 0.25
POLL_FAILURES = "crossledger_poll_failures_total"
JOURNEY_KINDS = tuple(journey.name for journey in BUILTIN_JOURNEYS)
"""The demo runs each built-in journey at least once: onboarding, subscription change, suspension..."""

__all__ = ["StripeDriver", "free_port", "run_demo"]  # the tests drive Stripe with the demo's driver


@dataclass(frozen=True)
class Account:
    """An account sales creates: ``parent`` names another account, ``terms`` is what the rep types
    into Payment_Terms__c, ``tier`` the plan it subscribes to (None: invoices only)."""

    name: str
    currency: str
    city: str
    country: str
    tier: str | None = None
    parent: str | None = None
    terms: str | None = None

    @property
    def domain(self) -> str:
        return self.name.lower().replace(" ", "-") + ".example"

    @property
    def tax_id(self) -> str:
        """A VAT-style number (country, then digits) made up from the name: one per company."""
        return f"{self.country}{zlib.crc32(self.name.encode()):010d}"


ACCOUNTS = (
    Account("Northwind Traders Inc", "USD", "Seattle", "US", tier="pro"),
    Account("Northwind Traders GmbH", "EUR", "Berlin", "DE", tier="pro", parent="Northwind Traders Inc"),
    Account("Contoso Pharmaceuticals", "USD", "Boston", "US", terms="Net 60"),
    Account("Fabrikam SARL", "EUR", "Lyon", "FR", tier="enterprise"),
    Account("Tailspin Toys KK", "JPY", "Osaka", "JP", tier="pro"),
    Account("Adventure Works Ltd", "USD", "Denver", "US"),
    Account("Wingtip Toys Oy", "EUR", "Helsinki", "FI"),
    Account("Litware KK", "JPY", "Tokyo", "JP"),
)
"""The first account is the demo's protagonist: upgraded, its terms changed, its timeline printed."""


def accounts(count: int) -> list[Account]:
    """``count`` accounts: the named ones first, then plain ones in turn of currency."""
    extra = [Account(f"Customer {n + 1:02d} Ltd", CURRENCIES[n % len(CURRENCIES)], "Leeds", "GB")
             for n in range(len(ACCOUNTS), count)]
    return [*ACCOUNTS, *extra][:count]


@dataclass(frozen=True)
class Billed:
    """A finalized Stripe invoice: whose, and whether a subscription made it."""

    id: str
    account: Account
    recurring: bool = False


class Stalled(Exception):
    """A step did not finish before the deadline; the message says which."""


@dataclass
class Story:
    """What happened, as the demo saw it: the people's checks and the counts for the summary."""

    checks: dict[str, bool] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, passed: bool, note: str) -> None:
        self.checks[name] = passed
        self.notes.append(("" if passed else "[red]NOT[/red] ") + note)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def _metric(name: str, **labels: str) -> int:
    """A counter of this process's metrics registry (the hub runs in it)."""
    return int(metrics.registry.get_sample_value(name, labels) or 0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Demo:
    """The scenario: one method per step, each ending with a wait for the hub to carry it through."""

    def __init__(self, hub: EmbeddedHub, sandboxes: Sandboxes, settings: Settings, progress: Progress,
                 deadline: float, account_count: int, invoice_count: int) -> None:
        connectors = settings.connectors
        self.hub = hub
        self.store = hub.runtime.store
        self.sandboxes = sandboxes
        self.sales = SalesforceUser(connectors["salesforce"])
        self.stripe = StripeDriver(connectors["stripe"]["base_url"], connectors["stripe"]["api_key"])
        self.finance = NetSuiteFinance(connectors["netsuite"])
        self.progress = progress
        self.deadline = deadline
        self.accounts = accounts(account_count)
        self.invoice_count = invoice_count
        self.rng = random.Random(7)
        self.story = Story()
        self.report = Report(problems=["not checked yet"])
        self.account_ids: dict[str, str] = {}  # account name -> Salesforce id
        self.customers: dict[str, str] = {}  # account name -> canonical id
        self.stripe_ids: dict[str, str] = {}  # account name -> Stripe customer id
        self.invoices: list[Billed] = []  # every finalized Stripe invoice, in order
        self.prices: dict[tuple[str, str], str] = {}  # (tier, currency) -> Stripe price id
        self.subscriptions: dict[str, str] = {}  # account name -> Stripe subscription id
        self.left_open: list[Billed] = []  # posted invoices billing did not collect
        self.polls_failed = 0  # NetSuite polls that had failed when the outage began

    @property
    def protagonist(self) -> Account:
        return self.accounts[0]

    def run(self) -> None:
        self.sell()
        self.bill()
        self.post()
        self.edit_terms()
        self.collect()
        self.chase()

    # -- waiting ----------------------------------------------------------------------------------

    def wait_for(self, what: str, condition: Callable[[], bool], *, times: int = 1) -> None:
        """Check ``condition`` until it holds ``times`` checks in a row; :class:`Stalled` at the deadline."""
        task = self.progress.add_task(what, total=None)
        streak = 0
        while True:
            streak = streak + 1 if condition() else 0
            if streak >= times:
                break
            if time.monotonic() > self.deadline:
                raise Stalled(f"{what}: not done in time")
            time.sleep(SETTLE_CHECK_S)
        self.progress.update(task, total=1, completed=1)

    def settle(self, what: str, condition: Callable[[], bool] = lambda: True) -> None:
        """Wait until the four systems reconcile, nothing is in flight and ``condition`` holds, on two
        checks in a row (a webhook can be on its way between one look and the next)."""

        def settled() -> bool:
            states = self.sandboxes.states()
            self.report = reconcile_topology(states, self.store)
            return in_flight(states) == 0 and self.hub.idle() and self.report.ok and condition()

        self.wait_for(what, settled, times=2)

    def log(self, message: str) -> None:
        self.progress.console.log(message)

    # -- 1. sales ---------------------------------------------------------------------------------

    def sell(self) -> None:
        for account in self.accounts:
            # Closed won, with a way to reach the customer and a tax id: onboarded (a prospect
            # would stay in Salesforce).
            fields: dict[str, Any] = {"Name": account.name, "Type": CLOSED_WON, "CurrencyIsoCode": account.currency,
                                      "BillingCity": account.city, "BillingCountry": account.country,
                                      "Email__c": f"ap@{account.domain}", "Website": f"https://{account.domain}",
                                      "Tax_Id__c": account.tax_id}
            if account.parent:
                fields["ParentId"] = self.account_ids[account.parent]
            if account.terms:
                fields["Payment_Terms__c"] = account.terms
            self.account_ids[account.name] = self.sales.create_account(fields)
        self.sandboxes.resend_salesforce_outbound()
        self.story.count("duplicate_deliveries_sent")
        self.log(f"sales created {len(self.accounts)} accounts in Salesforce")
        self.settle("accounts becoming customers everywhere")
        for account in self.accounts:
            canonical = self.store.xref_find("customer", "salesforce", self.account_ids[account.name])
            stripe_id = self.stripe.customer_for(canonical) if canonical else None
            if canonical is None or stripe_id is None:
                raise Stalled(f"{account.name} has no Stripe customer")
            self.customers[account.name], self.stripe_ids[account.name] = canonical, stripe_id

    # -- 2. billing -------------------------------------------------------------------------------

    def bill(self) -> None:
        self._plans()
        for account in self.accounts:
            if account.tier:
                self._subscribe(account)
        tax_rates = {currency: self.stripe.post("/v1/tax_rates", display_name=name, percentage=percent,
                                                inclusive="false")["id"]
                     for currency, (name, percent) in TAX_RATES.items()}
        outage = (self.invoice_count // 3, self.invoice_count // 2)
        task = self.progress.add_task("billing in Stripe", total=self.invoice_count)
        for n in range(self.invoice_count):
            if n == outage[0]:
                self._take_netsuite_down()
            if n == outage[1]:
                self._bring_netsuite_up()
            self._invoice(self.accounts[n % len(self.accounts)], tax_rates)
            self.progress.advance(task)
        self.settle("NetSuite booking every invoice, Zendesk every plan")
        tier = self._zendesk_tier(self.protagonist)
        self.story.check("zendesk_tier_before_upgrade", tier == UPGRADE[0],
                         f"Zendesk shows {self.protagonist.name} on plan {tier!r} before the upgrade")

    def _take_netsuite_down(self) -> None:
        self.polls_failed = _metric(POLL_FAILURES, source="netsuite")
        self.sandboxes.take_down("netsuite")
        self.log("NetSuite is down")

    def _bring_netsuite_up(self) -> None:
        """Once a poll has found NetSuite down too (the hub polls it again at the next tick)."""
        self.wait_for("a poll finding NetSuite down", lambda: _metric(POLL_FAILURES, source="netsuite") >
                      self.polls_failed)
        self.sandboxes.bring_up("netsuite")
        self.log("NetSuite is back")

    def _plans(self) -> None:
        for tier, amounts in PLANS.items():
            product = self.stripe.post("/v1/products", name=f"Support {tier.title()}", **{"metadata[tier]": tier})
            for currency, amount in amounts.items():
                self.prices[(tier, currency)] = self.stripe.post(
                    "/v1/prices", product=product["id"], currency=currency, unit_amount=amount,
                    lookup_key=f"{tier}_{currency}_monthly", **{"recurring[interval]": "month"})["id"]

    def _subscribe(self, account: Account) -> None:
        assert account.tier is not None
        subscription = self.stripe.post(
            "/v1/subscriptions", customer=self.stripe_ids[account.name], collection_method="send_invoice",
            days_until_due=30, **{"items[0][price]": self.prices[(account.tier, account.currency.lower())]})
        self.subscriptions[account.name] = subscription["id"]
        self.invoices.append(Billed(subscription["latest_invoice"], account, recurring=True))

    def _invoice(self, account: Account, tax_rates: dict[str, str]) -> None:
        currency = account.currency.lower()
        customer = self.stripe_ids[account.name]
        for line in range(self.rng.randint(1, 3)):
            low, high = PRICE_RANGE[currency]
            self.stripe.post("/v1/invoiceitems", customer=customer, currency=currency,
                             amount=self.rng.randrange(low, high, 100), description=f"Service line {line + 1}")
        taxes = {"default_tax_rates[0]": tax_rates[currency]} if currency in tax_rates else {}
        invoice = self.stripe.post("/v1/invoices", customer=customer, collection_method="send_invoice",
                                   days_until_due=30, **taxes)
        self.stripe.post(f"/v1/invoices/{invoice['id']}/finalize")
        self.invoices.append(Billed(invoice["id"], account))

    def _zendesk_tier(self, account: Account) -> str | None:
        key = external_key(self.customers[account.name])
        organization = next(o for o in self.sandboxes.state("zendesk")["organizations"] if o["external_id"] == key)
        tier: str | None = organization["organization_fields"].get("plan_tier")
        return tier

    # -- 3. finance -------------------------------------------------------------------------------

    def post(self) -> None:
        posted = self.posted()
        for invoice in self.invoices:
            if invoice not in posted:
                self.story.count("invoices_left_pending_approval")
                continue
            self.finance.approve_invoice(self._netsuite_key("invoice", invoice.id))
            self.story.count("invoices_posted_by_finance")
        customer = self.store.xref_get(self.customers[self.protagonist.name], "netsuite") or ""
        self.finance.set_terms(customer, FINANCE_TERMS)
        self.log(f"finance approved {self.story.counts['invoices_posted_by_finance']} invoices in NetSuite and set "
                 f"{self.protagonist.name}'s terms")
        balance = self.finance.balance(customer)
        account = self.account_ids[self.protagonist.name]

        def terms_shown() -> bool:
            shown = self.sales.account(account)
            return shown["Payment_Terms__c"] == FINANCE_TERMS and shown["Open_Balance__c"] is not None \
                and Decimal(str(shown["Open_Balance__c"])) == balance

        self.settle("Salesforce showing what posted, the terms and the balance", terms_shown)
        self.story.check("terms_and_balance_in_salesforce", True,
                         f"Salesforce shows {self.protagonist.name}'s NetSuite terms ({FINANCE_TERMS}) "
                         f"and open balance ({balance} {self.protagonist.currency})")

    def posted(self) -> list[Billed]:
        """The invoices finance approves: all but every LEFT_PENDING_EVERY-th."""
        return [invoice for n, invoice in enumerate(self.invoices) if (n + 1) % LEFT_PENDING_EVERY]

    def _netsuite_key(self, entity_type: str, stripe_id: str) -> str:
        """The external id NetSuite has a Stripe record under: the hub's canonical id as a key."""
        canonical = self.store.xref_find(entity_type, "stripe", stripe_id)
        if canonical is None:
            raise Stalled(f"the hub does not know Stripe's {stripe_id}")
        return external_key(canonical)

    # -- 4. sales edits what finance owns -----------------------------------------------------------

    def edit_terms(self) -> None:
        canonical = self.customers[self.protagonist.name]
        customer = self.store.xref_get(canonical, "netsuite") or ""
        since = time.time()
        self.sales.update_account(self.account_ids[self.protagonist.name], {"Payment_Terms__c": SALES_TERMS})
        self.log(f"sales typed {SALES_TERMS!r} into {self.protagonist.name}'s payment terms in Salesforce")

        def stripped() -> list[str]:
            return [record.detail or "" for record in self.store.audit_for_subject(canonical)
                    if record.at >= since and record.system == "salesforce" and record.status == "stripped"]

        self.settle("the hub weighing the edit", lambda: bool(stripped()))
        terms = (self.finance.customer(customer).get("terms") or {}).get("id")
        self.story.check("salesforce_terms_edit_kept_out_of_netsuite", terms == FINANCE_TERMS,
                         f"NetSuite keeps terms {terms} for {self.protagonist.name}: the hub stripped "
                         f"Salesforce's change, {stripped()[0]}")

    # -- 5. billing collects ------------------------------------------------------------------------

    def collect(self) -> None:
        voided, credited, refunded, *_ = [invoice for invoice in self.posted() if not invoice.recurring]
        self.stripe.post(f"/v1/invoices/{voided.id}/void")
        self._credit(credited.id, share=3)
        self.stripe.post(f"/v1/invoices/{refunded.id}/pay", payment_method="pm_card_visa")
        self._credit(refunded.id, share=4, refund=True)
        self.story.count("invoices_voided")
        self.story.count("invoices_paid")
        rest = [invoice for invoice in self.posted() if invoice not in (voided, credited, refunded)]
        for n, invoice in enumerate(rest, start=1):
            if n % LEFT_OPEN_EVERY:
                self.stripe.post(f"/v1/invoices/{invoice.id}/pay", paid_out_of_band="true")
                self.story.count("invoices_paid")
            else:
                self.left_open.append(invoice)
        self._upgrade(self.protagonist)
        self._resend_some_webhooks()
        self.log(f"billing collected {self.story.counts['invoices_paid']} invoices, voided one, credited two "
                 f"(one with a partial refund) and upgraded {self.protagonist.name}")
        self.settle("NetSuite, Salesforce and Zendesk catching up with billing",
                    lambda: self._zendesk_tier(self.protagonist) == UPGRADE[1])
        self.story.check("zendesk_tier_after_upgrade", True,
                         f"Zendesk shows {self.protagonist.name} on plan {UPGRADE[1]!r} after the upgrade")

    def _credit(self, invoice_id: str, *, share: int, refund: bool = False) -> None:
        """A credit note for 1/``share`` of the invoice; on a paid one, refunded to the card."""
        invoice = self.stripe.get(f"/v1/invoices/{invoice_id}")
        amount = invoice["total"] // share
        extra = {"refund_amount": amount} if refund else {}
        self.stripe.post("/v1/credit_notes", invoice=invoice_id, amount=amount, reason="order_change", **extra)
        self.story.count("partial_refunds" if refund else "credit_notes")

    def _upgrade(self, account: Account) -> None:
        subscription = self.stripe.get(f"/v1/subscriptions/{self.subscriptions[account.name]}")
        self.stripe.post(f"/v1/subscriptions/{subscription['id']}", proration_behavior="none", **{
            "items[0][id]": subscription["items"]["data"][0]["id"],
            "items[0][price]": self.prices[(UPGRADE[1], account.currency.lower())]})

    # -- 6. collections ----------------------------------------------------------------------------

    def chase(self) -> None:
        """An open invoice written off suspends its customer; paying it reinstates the customer."""
        unpaid = self.left_open[0]
        account = unpaid.account
        self.stripe.post(f"/v1/invoices/{unpaid.id}/mark_uncollectible")
        self.log(f"collections marked {account.name}'s invoice {unpaid.id} uncollectible")
        self.settle(f"{account.name} suspended everywhere",
                    lambda: self._standing(account) == ("suspended", "Suspended"))
        self.story.check("suspended_everywhere", self._journey_done("suspension", account),
                         f"{account.name} is suspended in Zendesk and flagged in Salesforce")
        self.stripe.post(f"/v1/invoices/{unpaid.id}/pay", paid_out_of_band="true")
        self.story.count("invoices_paid")
        self.log(f"{account.name} paid the invoice")
        self.settle(f"{account.name} reinstated everywhere", lambda: self._standing(account) == ("active", None))
        self.story.check("reinstated_everywhere", self._journey_done("reinstatement", account),
                         f"{account.name} is active again in Zendesk, its Salesforce flag cleared")

    def _standing(self, account: Account) -> tuple[str | None, str | None]:
        """The Zendesk subscription status and the Salesforce account status of an account."""
        key = external_key(self.customers[account.name])
        organization = next(o for o in self.sandboxes.state("zendesk")["organizations"] if o["external_id"] == key)
        flag = self.sales.account(self.account_ids[account.name]).get("Account_Status__c")
        return organization["organization_fields"].get("subscription_status"), flag

    def _journey_done(self, journey: str, account: Account) -> bool:
        runs = self.store.journeys(name=journey, subject=self.customers[account.name], limit=1)
        return bool(runs) and runs[0].state == "completed"

    def _resend_some_webhooks(self) -> None:
        """Stripe delivers some events twice, as it does; the hub's inbox must drop the repeats."""
        events = self.stripe.get("/v1/events", limit=100)["data"]
        for event in self.rng.sample(events, min(DUPLICATE_DELIVERIES, len(events))):
            self.sandboxes.resend_stripe_event(event["id"])
            self.story.count("duplicate_deliveries_sent")


# -- running it ---------------------------------------------------------------------------------


def demo_settings(sandboxes: SandboxSet, server: ServerThread, store: str) -> Settings:
    connectors = sandboxes.config(server.url)
    # Read a NetSuite second once it is a second over (the default waits five, for clock skew).
    connectors["netsuite"]["poll_settle_s"] = 1
    return Settings(
        hub=HubSettings.model_validate({"broker": "memory", "store": store, "min_backoff_ms": 200,
                                        "max_backoff_ms": 4000, "circuit_cooldown_s": 1.0,
                                        "poll_interval_s": POLL_INTERVAL_S}),
        connectors=connectors,
    )


def run_demo(*, customers: int, invoices: int, timeout: float, store: str | None, json_summary: bool,
             console: Console) -> int:
    """Run the scenario with ``customers`` accounts and ``invoices`` one-off invoices; 0 when the
    four systems reconcile and every step did what it should."""
    if customers < MIN_ACCOUNTS or invoices < MIN_INVOICES:
        raise ValueError(f"the demo needs at least {MIN_ACCOUNTS} customers (a parent and its subsidiary) and "
                         f"{MIN_INVOICES} invoices (to void, credit, refund and pay some)")
    # Failures here are expected and classified (the outage); the audit tells them, not tracebacks.
    logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("crossledger.core.runtime").setLevel(logging.ERROR)  # polls failing while NetSuite is down
    plugins = load_plugins()
    sandbox_set = demo_sandboxes(plugins.connectors)
    server = ServerThread(sandbox_set.app).start()
    hub_port = free_port()
    sandbox_set.subscribe(f"http://127.0.0.1:{hub_port}")
    scratch = None if store else tempfile.mkdtemp(prefix="crossledger-demo-")  # removed at the end
    store_url = store or f"sqlite:///{scratch}/hub.db"
    settings = demo_settings(sandbox_set, server, store_url)
    started = time.monotonic()
    try:
        with EmbeddedHub(settings, port=hub_port) as hub:
            console.print(f"hub on {hub.url}, sandboxes on {server.url} (store {store_url})")
            with Progress(console=console, transient=json_summary) as progress:
                demo = Demo(hub, Sandboxes(server), settings, progress, started + timeout, customers, invoices)
                stalled = _run(demo)
            elapsed = time.monotonic() - started
            show_timeline(demo, console)
            show_journeys(demo, console)
            summary = summarize(demo, stalled, elapsed)
            show_summary(demo, summary, console)
    finally:
        server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if json_summary:
        print(json.dumps(summary, sort_keys=True))
    return 0 if summary["ok"] else 1


def _run(demo: Demo) -> str | None:
    """Run the scenario; what stalled, if a step did not finish in time."""
    try:
        demo.run()
    except Stalled as stalled:
        demo.log(f"[red]{stalled}[/red]")
        return str(stalled)
    return None


def show_timeline(demo: Demo, console: Console) -> None:
    """The protagonist's timeline: its account, customers, subscription and terms, in every system."""
    customer = demo.customers.get(demo.protagonist.name)
    if customer is None:
        return
    subscription = demo.store.xref_find("subscription", "stripe", demo.subscriptions.get(demo.protagonist.name, ""))
    subjects = {customer, subscription}
    records = [r for r in timeline(demo.store, customer, related=[s for s in subjects if s]) if r.subject in subjects]
    console.print(timeline_table(records, f"{demo.protagonist.name} across the four systems"))


def journey_runs(demo: Demo) -> list[dict[str, Any]]:
    """Every journey run, oldest first: what it is, about whom, how it ended, how long it took."""
    return [_journey_row(run) for run in reversed(demo.store.journeys(limit=100_000))]


def _journey_row(run: JourneyRecord) -> dict[str, Any]:
    end = run.finished_at or time.time()
    return {"journey": run.name, "subject": run.subject, "state": run.state,
            "seconds": round(end - run.started_at, 2), "steps": len(run.steps),
            "steps_done": sum(step.status == "done" for step in run.steps.values())}


def show_journeys(demo: Demo, console: Console) -> None:
    """One line per run; never wrapped, so each run stays one line to read (or to grep)."""
    console.print("Journeys", style="italic")
    for run in journey_runs(demo):
        console.print(f"{run['journey']:<20} {run['subject']:<48} {run['state']:<11} {run['seconds']:>6.2f} s  "
                      f"{run['steps_done']}/{run['steps']} steps", soft_wrap=True, markup=False, highlight=False)


def _journey_problems(runs: list[dict[str, Any]]) -> list[str]:
    """A run that did not complete, and a kind of journey the demo never completed."""
    problems = [f"journey {run['journey']} for {run['subject']} is {run['state']}" for run in runs
                if run["state"] != "completed"]
    completed = {run["journey"] for run in runs if run["state"] == "completed"}
    return problems + [f"no {kind} journey completed" for kind in JOURNEY_KINDS if kind not in completed]


def summarize(demo: Demo, stalled: str | None, elapsed: float) -> dict[str, Any]:
    store = demo.store
    journeys = journey_runs(demo)
    problems = ([stalled] if stalled else []) + demo.report.problems
    problems += [f"check failed: {name}" for name, passed in demo.story.checks.items() if not passed]
    problems += _journey_problems(journeys)
    dead_letters = store.dlq_count("open")
    parked = sum(store.parked_count(system) for system in SYSTEMS)
    problems += [f"{dead_letters} dead letters"] if dead_letters else []
    # What went wrong, not only how often: a failed run in CI leaves no store to look into.
    problems += [f"dead letter {letter.actor} to {letter.target}: {letter.category}: {letter.reason}"
                 for letter in store.dlq_list(limit=3)]
    problems += [f"{parked} deliveries still parked"] if parked else []
    return {
        "ok": not problems,
        **demo.report.counts,
        **demo.story.counts,
        **demo.story.checks,
        "parked_during_outage": _metric("crossledger_parked_total", target="netsuite"),
        "polls_failed_during_outage": _metric(POLL_FAILURES, source="netsuite"),
        "duplicates_dropped": sum(_metric("crossledger_events_duplicate_total", source=s) for s in SYSTEMS),
        "retries": sum(_metric("crossledger_retried_total", category=c)
                       for c in ("transient", "rate_limited", "target_down", "ambiguous")),
        "dead_letters": dead_letters,
        "still_parked": parked,
        "journeys": journeys,
        "journeys_completed": {kind: sum(run["journey"] == kind and run["state"] == "completed" for run in journeys)
                               for kind in JOURNEY_KINDS},
        "problems": problems[:20],
        "seconds": round(elapsed, 1),
    }


SYSTEM_ROWS = (
    ("customers", ("salesforce_accounts", "stripe_customers", "netsuite_customers", "zendesk_organizations")),
    ("subscriptions", (None, "stripe_subscriptions", "netsuite_subscriptions", "zendesk_plan_tiers")),
    ("invoices", (None, "stripe_invoices_finalized", "netsuite_invoices", None)),
    ("invoices posted", ("salesforce_invoices", None, "netsuite_posted_invoices", None)),
    ("payments", (None, "stripe_payments", "netsuite_payments", None)),
    ("voids", (None, "stripe_voids", None, None)),
    ("credit notes / memos", (None, "stripe_credit_notes", "netsuite_credit_memos", None)),
    ("refunds", (None, "stripe_refunds", "netsuite_refunds", None)),
)
"""The summary table: a row per kind of record, the count keys for Salesforce, Stripe, NetSuite, Zendesk."""
HUB_ROWS = ("duplicate_deliveries_sent", "duplicates_dropped", "parked_during_outage", "polls_failed_during_outage",
            "retries", "dead_letters", "still_parked", "seconds")


def show_summary(demo: Demo, summary: dict[str, Any], console: Console) -> None:
    systems = Table(title="What each system holds")
    systems.add_column("records")
    for system in SYSTEMS:
        systems.add_column(NAMES[system], justify="right")
    for label, keys in SYSTEM_ROWS:
        systems.add_row(label, *("" if key is None else str(summary.get(key, "")) for key in keys))
    console.print(systems)
    hub = Table(title="The hub")
    hub.add_column("what")
    hub.add_column("count", justify="right")
    for key in HUB_ROWS:
        hub.add_row(key.replace("_", " "), str(summary[key]))
    console.print(hub)
    for note in demo.story.notes:
        console.print(f"- {note}")
    for problem in summary["problems"]:
        console.print(f"[red]mismatch:[/red] {problem}")
    verdict = ("[green]Salesforce, Stripe, NetSuite and Zendesk agree.[/green]" if summary["ok"]
               else "[red]The systems do NOT agree.[/red]")
    console.print(verdict)
