"""``crossledger demo``: order-to-cash across the reference topology, on the sandboxes.

The company bills in Stripe or Zuora and keeps its books in NetSuite or Business Central (the pair:
:mod:`.pair`, ``--billing`` and ``--erp``), with Salesforce as its CRM and Zendesk for support.
Everything runs in this process with no service: the four systems' sandboxes on one port, the hub
(memory broker, SQLite store, the ERP polled twice a second) on another. People work in their
systems' APIs (:mod:`.drivers`; billing through a :class:`~.billing.BillingDriver`, finance through an
:class:`~.erp.ErpDriver`), and after each step the demo waits, on conditions with a deadline, until
the hub has carried it through everywhere:

1. **Sales** creates accounts in Salesforce (a parent and its subsidiary; one with payment terms
   typed in). The hub makes each a customer in billing, the ERP and Zendesk, once, and writes
   every system's id into the others.
2. **Billing**: plan subscriptions and a month of invoices in USD, EUR (VAT) and JPY (consumption
   tax). The ERP is down for a while in the middle; the hub parks and catches up.
3. **Finance** approves most invoices in the ERP (they post) and changes one customer's terms.
   Salesforce shows the posted invoices, the terms and the balance.
4. **Sales** changes that account's payment terms in Salesforce: the ERP owns terms, so the hub
   keeps the change out of the ERP, and its audit says why.
5. **Billing** collects: payments, a void, a credit note, a partial refund, a plan upgrade (the
   Zendesk organization's tier follows). Billing re-sends some notifications, Salesforce a message.
6. **Collections** gives up on an unpaid invoice (marked uncollectible): the customer is suspended
   in Zendesk, flagged in Salesforce and put on credit hold in the ERP; then it pays, and is
   reinstated everywhere.

Each of these is a journey (:mod:`crossledger.plugins.journeys`): a closed-won account's
onboarding, a subscription's changes, the refunds and credit notes, the suspension and the
reinstatement. The demo prints every run, and fails if one did not complete.

A part of the story the pair's systems cannot play (Zuora has no uncollectible status, Business
Central no approval routing, no route carries a kind of document to the ERP...) is skipped, and the
summary names it with the reason (:attr:`Demo.skipped`).

While it runs, each step waits until what billing and the ERP hold agrees (:func:`.pair.disagreements`;
for Stripe and NetSuite also record by record: :func:`~crossledger.devtools.demo.reconcile.reconcile_topology`).
At the end the systems are reconciled live (:class:`~crossledger.core.reconcile.Reconciler`: every
system that lists its records read through its API, as ``crossledger reconcile`` does; the summary
names those that cannot be listed), and the demo prints what each system holds and one customer's
timeline across all four.
"""

import json
import logging
import random
import shutil
import socket
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crossledger.canonical.entities import external_key
from crossledger.canonical.money import format_money, from_decimal
from crossledger.core.processes.embedded import EmbeddedHub
from crossledger.core.reconcile import Reconciler, RunReport
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.store.base import JourneyRecord
from crossledger.core.telemetry import metrics
from crossledger.core.views.timeline import timeline, timeline_table
from crossledger.devtools.demo.billing import BILLING, VOID, BillingDriver
from crossledger.devtools.demo.drivers import (
    Json,
    SalesforceUser,
    Sandboxes,
    StripeDriver,
    demo_sandboxes,
    in_flight,
)
from crossledger.devtools.demo.erp import APPROVAL, BALANCE, ERPS, ErpDriver
from crossledger.devtools.demo.pair import TITLES, Pair, disagreements, route_gaps
from crossledger.devtools.demo.reconcile import reconcile_topology
from crossledger.devtools.sandboxes import CRM, SUPPORT, SandboxSet
from crossledger.plugins import load_plugins
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.journeys import BUILTIN_JOURNEYS
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

CURRENCIES = ("USD", "EUR", "JPY")
# A plausible price range per currency, in minor units.
PRICE_RANGE = {"USD": (1_500, 90_000), "EUR": (1_500, 90_000), "JPY": (2_000, 90_000)}
UPGRADE = ("pro", "enterprise")
DUPLICATE_DELIVERIES = 8
LEFT_PENDING_EVERY = 7  # finance leaves every 7th invoice waiting for approval
LEFT_OPEN_EVERY = 4  # billing leaves every 4th posted invoice open
SALES_TERMS = "Net 90"  # what a sales rep types into Payment_Terms__c afterwards
CLOSED_WON = "Customer - Direct"  # the account Type a won deal sets: what makes the account a customer
MIN_ACCOUNTS, MIN_INVOICES = 2, 6
POLL_INTERVAL_S = 0.5
SETTLE_CHECK_S = 0.25
POLL_FAILURES = "crossledger_poll_failures_total"
PARKED = "crossledger_parked_total"
JOURNEY_KINDS = tuple(journey.name for journey in BUILTIN_JOURNEYS)
"""The demo runs each built-in journey at least once: onboarding, subscription change, suspension..."""
DEFAULT_PAIR = Pair("stripe", "netsuite")

__all__ = ["Pair", "StripeDriver", "free_port", "run_demo"]  # the tests drive Stripe with the demo's driver


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
    """A finalized invoice (its billing system's id): whose, and whether a subscription made it."""

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
    """The scenario: one method per step, each ending with a wait for the hub to carry it through.

    Billing and the ERP are whichever the pair names (:mod:`.billing`, :mod:`.erp`); a part of the
    story one of them cannot play is skipped, with its reason in :attr:`skipped`."""

    def __init__(self, hub: EmbeddedHub, sandboxes: Sandboxes, settings: Settings, pair: Pair, progress: Progress,
                 deadline: float, account_count: int, invoice_count: int) -> None:
        connectors = settings.connectors
        self.hub = hub
        self.store = hub.runtime.store
        self.sandboxes = sandboxes
        self.pair = pair
        self.sales = SalesforceUser(connectors["salesforce"])
        self.billing: BillingDriver = BILLING[pair.billing](connectors[pair.billing], sandboxes)
        self.erp: ErpDriver = ERPS[pair.erp](connectors[pair.erp], sandboxes)
        self.skipped = {**self.billing.cannot, **self.erp.cannot, **route_gaps(pair, hub.runtime.router.targets)}
        """What this pair cannot show, each with the reason: the summary lists them."""
        self.progress = progress
        self.deadline = deadline
        self.accounts = accounts(account_count)
        self.invoice_count = invoice_count
        self.rng = random.Random(7)
        self.story = Story()
        self.problems = ["not checked yet"]  # the disagreements the last settle found
        self.account_ids: dict[str, str] = {}  # account name -> Salesforce id
        self.customers: dict[str, str] = {}  # account name -> canonical id
        self.billing_ids: dict[str, str] = {}  # account name -> billing customer id
        self.invoices: list[Billed] = []  # every finalized invoice, in order
        self.subscriptions: dict[str, str] = {}  # account name -> billing subscription id
        self.left_open: list[Billed] = []  # posted invoices billing did not collect
        self.polls_failed = 0  # ERP polls that had failed when the outage began
        self.parked = 0  # deliveries to the ERP parked when the outage began

    @property
    def protagonist(self) -> Account:
        return self.accounts[0]

    def can(self, part: str) -> bool:
        return part not in self.skipped

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
        """Wait until the systems agree, nothing is in flight and ``condition`` holds, on two checks
        in a row (a webhook can be on its way between one look and the next)."""

        def settled() -> bool:
            states = self.sandboxes.states(self.pair.systems)
            self.problems = self.agreement_problems(states)
            return in_flight(states) == 0 and self.hub.idle() and not self.problems and condition()

        self.wait_for(what, settled, times=2)

    def agreement_problems(self, states: Mapping[str, Json]) -> list[str]:
        """What billing and the ERP hold, and what Salesforce and Zendesk show, that does not agree;
        for Stripe and NetSuite also record by record (:func:`reconcile_topology`)."""
        problems = disagreements(self.pair, self.counts(states), self.skipped)
        if self.pair == DEFAULT_PAIR:
            problems += reconcile_topology(states, self.store).problems
        return problems

    def counts(self, states: Mapping[str, Json] | None = None) -> dict[str, int]:
        """What each system holds, by pair-neutral names (``billing_invoices_finalized``, ...)."""
        if states is None:
            states = self.sandboxes.states(self.pair.systems)
        organizations = states[SUPPORT].get("organizations", [])
        return {**self.billing.counts(states[self.pair.billing]), **self.erp.counts(states[self.pair.erp]),
                "salesforce_accounts": len(states[CRM].get("accounts", [])),
                "salesforce_invoices": len(states[CRM].get("invoices", [])),
                "zendesk_organizations": len(organizations),
                "zendesk_plan_tiers": sum(1 for o in organizations if (o.get("organization_fields") or {})
                                          .get("plan_tier"))}

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
            billing_id = self.billing.customer_for(canonical) if canonical else None
            if canonical is None or billing_id is None:
                raise Stalled(f"{account.name} has no {self.billing.title} customer")
            self.customers[account.name], self.billing_ids[account.name] = canonical, billing_id

    # -- 2. billing -------------------------------------------------------------------------------

    def bill(self) -> None:
        for account in self.accounts:
            if account.tier:
                subscription, invoice = self.billing.subscribe(self.billing_ids[account.name], account.tier,
                                                               account.currency)
                self.subscriptions[account.name] = subscription
                self.invoices.append(Billed(invoice, account, recurring=True))
        outage = (self.invoice_count // 3, self.invoice_count // 2)
        task = self.progress.add_task(f"billing in {self.billing.title}", total=self.invoice_count)
        for n in range(self.invoice_count):
            if n == outage[0]:
                self._take_erp_down()
            if n == outage[1]:
                self._bring_erp_up()
            self._invoice(self.accounts[n % len(self.accounts)])
            self.progress.advance(task)
        self.settle(f"{self.erp.title} booking every invoice, Zendesk every plan")
        tier = self._zendesk_tier(self.protagonist)
        self.story.check("zendesk_tier_before_upgrade", tier == UPGRADE[0],
                         f"Zendesk shows {self.protagonist.name} on plan {tier!r} before the upgrade")

    def _take_erp_down(self) -> None:
        self.polls_failed = _metric(POLL_FAILURES, source=self.erp.system)
        self.parked = _metric(PARKED, target=self.erp.system)
        self.erp.take_down()
        self.log(f"{self.erp.title} is down")

    def _bring_erp_up(self) -> None:
        """Once the hub has met the outage both ways: a poll found the ERP down (it polls again at the
        next tick) and a delivery was parked on its open circuit. A slow machine's workers may still be
        behind the invoices billed so far; the outage lasts until they reach one."""
        self.wait_for(f"a poll finding {self.erp.title} down",
                      lambda: _metric(POLL_FAILURES, source=self.erp.system) > self.polls_failed)
        self.wait_for(f"a delivery parked while {self.erp.title} is down",
                      lambda: _metric(PARKED, target=self.erp.system) > self.parked)
        self.erp.bring_up()
        self.log(f"{self.erp.title} is back")

    def _invoice(self, account: Account) -> None:
        low, high = PRICE_RANGE[account.currency]
        amounts = [self.rng.randrange(low, high, 100) for _ in range(self.rng.randint(1, 3))]
        self.invoices.append(Billed(self.billing.invoice(self.billing_ids[account.name], account.currency, amounts),
                                    account))

    def _zendesk_tier(self, account: Account) -> str | None:
        tier: str | None = self._organization(account)["organization_fields"].get("plan_tier")
        return tier

    def _organization(self, account: Account) -> Json:
        key = external_key(self.customers[account.name])
        return next(o for o in self.sandboxes.state(SUPPORT)["organizations"] if o["external_id"] == key)

    # -- 3. finance -------------------------------------------------------------------------------

    def post(self) -> None:
        if self.can(APPROVAL):
            self._approve()
        customer = self._erp_customer(self.protagonist)
        self.erp.set_terms(customer)
        self.log(f"finance set {self.protagonist.name}'s terms in {self.erp.title}")
        balance = self.erp.balance(customer) if self.can(BALANCE) else None
        account = self.account_ids[self.protagonist.name]

        def terms_shown() -> bool:
            shown = self.sales.account(account)
            return shown["Payment_Terms__c"] == self.erp.finance_terms and (
                balance is None or (shown["Open_Balance__c"] is not None
                                    and Decimal(str(shown["Open_Balance__c"])) == balance))

        self.settle("Salesforce showing what posted and the terms", terms_shown)
        shown = "" if balance is None else \
            f" and its open balance ({format_money(from_decimal(balance, self.protagonist.currency))})"
        self.story.check("terms_and_balance_in_salesforce", True,
                         f"Salesforce shows the terms {self.erp.title} set for {self.protagonist.name} "
                         f"({self.erp.terms_name(customer)}, carried as {self.erp.title}'s "
                         f"{self.erp.finance_terms!r}){shown}")

    def _approve(self) -> None:
        """Finance approves all invoices but every LEFT_PENDING_EVERY-th: those post."""
        posted = self.posted()
        for invoice in self.invoices:
            if invoice not in posted:
                self.story.count("invoices_left_pending_approval")
                continue
            self.erp.approve(self._canonical("invoice", invoice.id))
            self.story.count("invoices_posted_by_finance")
        self.log(f"finance approved {self.story.counts['invoices_posted_by_finance']} invoices in {self.erp.title}")

    def posted(self) -> list[Billed]:
        """The invoices that post: where finance approves them, all but every LEFT_PENDING_EVERY-th."""
        if not self.can(APPROVAL):
            return list(self.invoices)
        return [invoice for n, invoice in enumerate(self.invoices) if (n + 1) % LEFT_PENDING_EVERY]

    def _canonical(self, entity_type: str, billing_id: str) -> str:
        canonical = self.store.xref_find(entity_type, self.pair.billing, billing_id)
        if canonical is None:
            raise Stalled(f"the hub does not know {self.billing.title}'s {billing_id}")
        return canonical

    def _erp_customer(self, account: Account) -> str:
        customer = self.store.xref_get(self.customers[account.name], self.pair.erp)
        if customer is None:
            raise Stalled(f"the hub does not know {account.name}'s {self.erp.title} customer")
        return customer

    # -- 4. sales edits what finance owns -----------------------------------------------------------

    def edit_terms(self) -> None:
        canonical = self.customers[self.protagonist.name]
        since = time.time()
        self.sales.update_account(self.account_ids[self.protagonist.name], {"Payment_Terms__c": SALES_TERMS})
        self.log(f"sales typed {SALES_TERMS!r} into {self.protagonist.name}'s payment terms in Salesforce")

        def stripped() -> list[str]:
            return [record.detail or "" for record in self.store.audit_for_subject(canonical)
                    if record.at >= since and record.system == CRM and record.status == "stripped"]

        self.settle("the hub weighing the edit", lambda: bool(stripped()))
        customer = self._erp_customer(self.protagonist)
        terms = self.erp.terms(customer)
        self.story.check("salesforce_terms_edit_kept_out_of_erp", terms == self.erp.finance_terms,
                         f"{self.erp.title} keeps terms {self.erp.terms_name(customer)} for {self.protagonist.name}: "
                         "the hub stripped "
                         f"Salesforce's change, {stripped()[0]}")

    # -- 5. billing collects ------------------------------------------------------------------------

    def collect(self) -> None:
        one_off = [invoice for invoice in self.posted() if not invoice.recurring]
        voided = one_off.pop(0) if self.can(VOID) else None
        credited, refunded = one_off[:2]
        if voided is not None:
            self.billing.void(voided.id)
            self.story.count("invoices_voided")
        self.billing.credit(credited.id, self.billing.total(credited.id) // 3)
        self.story.count("credit_notes")
        self.billing.pay(refunded.id, by_card=True)
        self.billing.credit(refunded.id, self.billing.total(refunded.id) // 4, refund=True)
        self.story.count("partial_refunds")
        self.story.count("invoices_paid")
        rest = [invoice for invoice in self.posted() if invoice not in (voided, credited, refunded)]
        # A subscriber's invoice is always among those left open: collections chase it (Zuora
        # suspends the subscription of a customer who does not pay).
        chased = next(invoice for invoice in rest if invoice.account.name in self.subscriptions)
        for n, invoice in enumerate(rest, start=1):
            if n % LEFT_OPEN_EVERY and invoice is not chased:
                self.billing.pay(invoice.id)
                self.story.count("invoices_paid")
            else:
                self.left_open.append(invoice)
        self.billing.change_plan(self.subscriptions[self.protagonist.name], UPGRADE[1], self.protagonist.currency)
        self.story.count("duplicate_deliveries_sent", self.billing.resend(self.rng, DUPLICATE_DELIVERIES))
        self.log(f"billing collected {self.story.counts['invoices_paid']} invoices, "
                 f"{'voided one, ' if voided else ''}credited two (one with a partial refund) and upgraded "
                 f"{self.protagonist.name}")
        self.settle(f"{self.erp.title}, Salesforce and Zendesk catching up with billing",
                    lambda: self._zendesk_tier(self.protagonist) == UPGRADE[1])
        self.story.check("zendesk_tier_after_upgrade", True,
                         f"Zendesk shows {self.protagonist.name} on plan {UPGRADE[1]!r} after the upgrade")

    # -- 6. collections ----------------------------------------------------------------------------

    def chase(self) -> None:
        """Collections give up on a subscriber's open invoice, which suspends the customer; paying
        it reinstates the customer."""
        unpaid = next(invoice for invoice in self.left_open if invoice.account.name in self.subscriptions)
        account = unpaid.account
        self.billing.stop_collecting(unpaid.id, self.subscriptions[account.name])
        self.log(f"collections gave up on {account.name}'s invoice {unpaid.id}")
        self.settle(f"{account.name} suspended everywhere",
                    lambda: self._standing(account) == ("suspended", "Suspended"))
        self.story.check("suspended_everywhere", self._journey_done("suspension", account),
                         f"{account.name} is suspended in Zendesk and flagged in Salesforce")
        self.billing.pay(unpaid.id)
        self.story.count("invoices_paid")
        self.log(f"{account.name} paid the invoice")
        self.settle(f"{account.name} reinstated everywhere", lambda: self._standing(account) == ("active", None))
        self.story.check("reinstated_everywhere", self._journey_done("reinstatement", account),
                         f"{account.name} is active again in Zendesk, its Salesforce flag cleared")

    def _standing(self, account: Account) -> tuple[str | None, str | None]:
        """The Zendesk subscription status and the Salesforce account status of an account."""
        flag = self.sales.account(self.account_ids[account.name]).get("Account_Status__c")
        return self._organization(account)["organization_fields"].get("subscription_status"), flag

    def _journey_done(self, journey: str, account: Account) -> bool:
        runs = self.store.journeys(name=journey, subject=self.customers[account.name], limit=1)
        return bool(runs) and runs[0].state == "completed"


# -- running it ---------------------------------------------------------------------------------


def demo_settings(sandboxes: SandboxSet, server: ServerThread, store: str, pair: Pair) -> Settings:
    connectors = sandboxes.config(server.url)
    # Read an ERP change once it is a second old (the defaults wait longer, for clock skew).
    connectors[pair.erp]["poll_settle_s"] = 1
    return Settings(
        hub=HubSettings.model_validate({"broker": "memory", "store": store, "min_backoff_ms": 200,
                                        "max_backoff_ms": 4000, "circuit_cooldown_s": 1.0,
                                        "poll_interval_s": POLL_INTERVAL_S}),
        connectors=connectors,
    )


def run_demo(*, customers: int, invoices: int, timeout: float, store: str | None, json_summary: bool,
             console: Console, pair: Pair = DEFAULT_PAIR) -> int:
    """Run the scenario with ``customers`` accounts and ``invoices`` one-off invoices on ``pair``;
    0 when the four systems agree and every step did what it should."""
    if customers < MIN_ACCOUNTS or invoices < MIN_INVOICES:
        raise ValueError(f"the demo needs at least {MIN_ACCOUNTS} customers (a parent and its subsidiary) and "
                         f"{MIN_INVOICES} invoices (to void, credit, refund and pay some)")
    # Failures here are expected and classified (the outage); the audit tells them, not tracebacks.
    logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("crossledger.core.hub.runtime").setLevel(logging.ERROR)  # polls failing while the ERP is down
    plugins = load_plugins()
    sandbox_set = demo_sandboxes(plugins.connectors, pair.systems)
    server = ServerThread(sandbox_set.app).start()
    hub_port = free_port()
    sandbox_set.subscribe(f"http://127.0.0.1:{hub_port}")
    scratch = None if store else tempfile.mkdtemp(prefix="crossledger-demo-")  # removed at the end
    store_url = store or f"sqlite:///{scratch}/hub.db"
    settings = demo_settings(sandbox_set, server, store_url, pair)
    started = time.monotonic()
    try:
        with EmbeddedHub(settings, port=hub_port) as hub:
            console.print(f"{pair.titles}: hub on {hub.url}, sandboxes on {server.url} (store {store_url})")
            with Progress(console=console, transient=json_summary) as progress:
                demo = Demo(hub, Sandboxes(server.url), settings, pair, progress, started + timeout, customers,
                            invoices)
                stalled = _run(demo)
                reconciler = Reconciler(hub.runtime)
                reconciled = reconciler.run()
            elapsed = time.monotonic() - started
            show_timeline(demo, console)
            show_journeys(demo, console)
            not_listed = [system for system in pair.systems if system not in reconciler.listing()]
            summary = summarize(demo, stalled, elapsed, reconciled, not_listed)
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
    subscription = demo.store.xref_find("subscription", demo.pair.billing,
                                        demo.subscriptions.get(demo.protagonist.name, ""))
    subjects = {customer, subscription}
    records = [r for r in timeline(demo.store, customer, related=[s for s in subjects if s]) if r.subject in subjects]
    console.print(timeline_table(records, f"{demo.protagonist.name} across the four systems", console.width))


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


def summarize(demo: Demo, stalled: str | None, elapsed: float, reconciled: RunReport,
              not_listed: list[str]) -> dict[str, Any]:
    """The demo's verdict: what stalled, what the live reconciliation found (every system that
    lists its records, read through its API), what billing and the ERP hold and whether it agrees,
    failed checks and journeys, dead letters and parked work, and what the pair skipped and why."""
    store = demo.store
    systems = demo.pair.systems
    journeys = journey_runs(demo)
    problems = ([stalled] if stalled else []) + [f"{f.cls} in {f.system}: {f.detail}" for f in reconciled.findings]
    problems += demo.problems
    problems += [f"check failed: {name}" for name, passed in demo.story.checks.items() if not passed]
    problems += _journey_problems(journeys)
    dead_letters = store.dlq_count("open")
    parked = sum(store.parked_count(system) for system in systems)
    problems += [f"{dead_letters} dead letters"] if dead_letters else []
    # What went wrong, not only how often: a failed run in CI leaves no store to look into.
    problems += [f"dead letter {letter.actor} to {letter.target}: {letter.category}: {letter.reason}"
                 for letter in store.dlq_list(limit=3)]
    problems += [f"{parked} deliveries still parked"] if parked else []
    return {
        "ok": not problems,
        "billing": demo.pair.billing,
        "erp": demo.pair.erp,
        **demo.counts(),
        **demo.story.counts,
        **demo.story.checks,
        "parked_during_outage": _metric(PARKED, target=demo.pair.erp),
        "polls_failed_during_outage": _metric(POLL_FAILURES, source=demo.pair.erp),
        "duplicates_dropped": sum(_metric("crossledger_events_duplicate_total", source=s) for s in systems),
        "retries": sum(_metric("crossledger_retried_total", category=c)
                       for c in ("transient", "rate_limited", "target_down", "ambiguous")),
        "dead_letters": dead_letters,
        "still_parked": parked,
        "skipped": demo.skipped,
        "reconciliation": {"run": reconciled.run.id, "read": reconciled.run.counts,
                           "findings": reconciled.run.findings, "not_listed": not_listed,
                           "differences": dict(Counter(finding.system for finding in reconciled.findings))},
        "journeys": journeys,
        "journeys_completed": {kind: sum(run["journey"] == kind and run["state"] == "completed" for run in journeys)
                               for kind in JOURNEY_KINDS},
        "problems": problems[:20],
        "seconds": round(elapsed, 1),
    }


SYSTEM_ROWS = (
    ("customers", ("salesforce_accounts", "billing_customers", "erp_customers", "zendesk_organizations")),
    ("subscriptions", (None, "billing_subscriptions", "erp_subscriptions", "zendesk_plan_tiers")),
    ("invoices", (None, "billing_invoices_finalized", "erp_invoices", None)),
    ("invoices posted", ("salesforce_invoices", None, "erp_posted_invoices", None)),
    ("payments", (None, "billing_payments", "erp_payments", None)),
    ("voids (ERP: a credit memo each)", (None, "billing_voids", "erp_void_memos", None)),
    ("credit notes / memos", (None, "billing_credit_notes", "erp_credit_memos", None)),
    ("refunds", (None, "billing_refunds", "erp_refunds", None)),
)
"""The summary table: a row per kind of record, the count keys for the CRM, billing, the ERP, support."""
SKIPPED_CELLS = {"billing_voids": VOID, "erp_void_memos": VOID}
"""Cells shown as skipped when their part of the story is (the ERP's cells are skipped by their own key)."""
HUB_ROWS = ("duplicate_deliveries_sent", "duplicates_dropped", "parked_during_outage", "polls_failed_during_outage",
            "retries", "dead_letters", "still_parked", "seconds")


def live_table(pair: Pair, reconciliation: Mapping[str, Any]) -> Table:
    """What the live reconciliation read of each kind of record in each system, and the differences
    it found there; a system that cannot be listed says so."""
    table = Table(title="Live reconciliation: read through each system's API")
    table.add_column("records")
    for system in pair.systems:
        table.add_column(TITLES[system], justify="right")
    read, unlisted = reconciliation["read"], reconciliation["not_listed"]
    for entity in sorted({name.split(".", 1)[1] for name in read}):
        table.add_row(entity, *("not listed" if system in unlisted else str(read.get(f"{system}.{entity}", ""))
                                for system in pair.systems))
    table.add_row("differences", *("not listed" if system in unlisted
                                   else str(reconciliation["differences"].get(system, 0)) for system in pair.systems))
    return table


def show_summary(demo: Demo, summary: dict[str, Any], console: Console) -> None:
    systems = Table(title="What each system holds")
    systems.add_column("records")
    for system in demo.pair.systems:
        systems.add_column(TITLES[system], justify="right")
    skipped = summary["skipped"]
    for label, keys in SYSTEM_ROWS:
        systems.add_row(label, *("" if key is None else "skipped" if key in skipped or SKIPPED_CELLS.get(key) in skipped
                                 else str(summary.get(key, "")) for key in keys))
    console.print(systems)
    hub = Table(title="The hub")
    hub.add_column("what")
    hub.add_column("count", justify="right")
    for key in HUB_ROWS:
        hub.add_row(key.replace("_", " "), str(summary[key]))
    console.print(hub)
    for note in demo.story.notes:
        console.print(f"- {note}")
    for part, reason in skipped.items():
        console.print(f"- [yellow]skipped[/yellow] {part.replace('_', ' ')}: {reason}")
    reconciliation = summary["reconciliation"]
    console.print(live_table(demo.pair, reconciliation))
    found = ", ".join(f"{n} {cls}" for cls, n in sorted(reconciliation["findings"].items())) or "no differences"
    unlisted = ", ".join(TITLES[system] for system in reconciliation["not_listed"])
    console.print(f"- live reconciliation: {sum(reconciliation['read'].values())} records read through the "
                  f"systems' APIs, {found}" + (f"; {unlisted} cannot be listed (no Capability.LIST), so the "
                                              "counts above are all that compares them" if unlisted else ""))
    for problem in summary["problems"]:
        console.print(f"[red]mismatch:[/red] {problem}")
    verdict = (f"[green]{demo.pair.titles} agree.[/green]" if summary["ok"]
               else "[red]The systems do NOT agree.[/red]")
    console.print(verdict)
