"""Reconciliation: does every record match, once, in every system that should have it?

Two checks, each reading the systems' own records (their JSON, as their APIs show them) and the
hub's cross-references, and reporting each mismatch as a sentence:

- :func:`reconcile`: billing (Stripe) against the ERP (NetSuite). Every Stripe customer, finalized
  invoice, payment, credit note and refund is in NetSuite once, with the same amounts, and an
  invoice owes in NetSuite what it owes in Stripe.
- :func:`reconcile_topology`: the reference topology, with the CRM (Salesforce) as the source of
  customers and support (Zendesk) beside billing and the ERP. Every Salesforce account is a
  customer exactly once in Stripe, NetSuite and Zendesk, and each of the four holds the others' ids
  (as does the hub's cross-reference store); the money as above; every invoice that posted in
  NetSuite is in Salesforce once, as posted, with the status Stripe gives it, and no other; every
  account shows the open balance NetSuite computes; every subscription is in NetSuite, and its plan
  tier is the tier of its customer's Zendesk organization (docs/field-sync.md).

These are Stripe's and NetSuite's records: the demo checks them while it runs on that pair (its
default). Every pair's counts come from the demo's drivers (:mod:`.billing`, :mod:`.erp`), and every
system that lists its records is read by the live reconciliation at the end.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crossledger.canonical.entities import external_key, from_external_key
from crossledger.canonical.money import format_money, from_decimal, money, to_decimal
from crossledger.core.store.base import Store
from crossledger.plugins.stripe.mapping import INVOICE_STATUSES

FINALIZED = ("open", "paid", "void", "uncollectible")
SETTLED = ("paid", "void")
ENDED_SUBSCRIPTIONS = ("canceled", "incomplete_expired")
NETSUITE_KINDS = ("customer", "invoice", "customerpayment", "creditmemo", "customerRefund",
                  "customrecord_cl_subscription")
NOT_POSTING = ("1", "3")
"""NetSuite ``approvalStatus`` ids of invoices outside the ledger: Pending Approval and Rejected."""
SYSTEMS = ("salesforce", "stripe", "netsuite", "zendesk")
NAMES = {"salesforce": "Salesforce", "stripe": "Stripe", "netsuite": "NetSuite", "zendesk": "Zendesk"}

Record = dict[str, Any]
State = Mapping[str, Any]


@dataclass(frozen=True)
class CustomerShape:
    """Where a system keeps its customers in its state, and the hub's fields on them
    (docs/connectors/*.md): its mark (an external key; in Stripe the canonical id itself, in the
    metadata) and the other systems' ids (Account fields, Stripe metadata, NetSuite custom entity
    fields, Zendesk organization fields)."""

    collection: str
    id_field: str
    mark: tuple[str, ...]
    links: dict[str, str]
    links_in: str | None = None
    mark_is_key: bool = True

    def id(self, record: Record) -> str:
        return str(record[self.id_field])

    def canonical(self, record: Record) -> str | None:
        """The canonical id the record is marked with, if the hub made it."""
        value: Any = record
        for name in self.mark:
            value = value.get(name) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            return None
        return from_external_key(value) if self.mark_is_key else value

    def link(self, record: Record, system: str) -> Any:
        """The id of ``system`` the record holds."""
        held = record.get(self.links_in) if self.links_in else record
        return (held or {}).get(self.links[system])


CUSTOMER_SHAPES = {
    "salesforce": CustomerShape("accounts", "Id", ("CrossLedger_Id__c",), {
        "stripe": "Stripe_Customer_Id__c", "netsuite": "NetSuite_Id__c", "zendesk": "Zendesk_Organization_Id__c"}),
    "stripe": CustomerShape("customers", "id", ("metadata", "crossledger_id"), {
        "salesforce": "salesforce_id", "netsuite": "netsuite_id", "zendesk": "zendesk_id"},
        links_in="metadata", mark_is_key=False),
    "netsuite": CustomerShape("customer", "id", ("externalId",), {
        "salesforce": "custentity_cl_salesforce_id", "stripe": "custentity_cl_stripe_id",
        "zendesk": "custentity_cl_zendesk_id"}),
    "zendesk": CustomerShape("organizations", "id", ("external_id",), {
        "salesforce": "salesforce_id", "stripe": "stripe_customer_id", "netsuite": "netsuite_id"},
        links_in="organization_fields"),
}


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, other: "Report") -> "Report":
        """This report with ``other``'s counts and problems added."""
        self.counts.update(other.counts)
        self.problems += other.problems
        return self


def _netsuite_id(store: Store, entity_type: str, stripe_id: str) -> str | None:
    canonical = store.xref_find(entity_type, "stripe", stripe_id)
    return store.xref_get(canonical, "netsuite") if canonical else None


def _amount(record: Record, name: str) -> Decimal | None:
    return None if record.get(name) is None else Decimal(str(record[name]))


def _stripe_amount(amount: int, currency: str) -> Decimal:
    return to_decimal(money(amount, currency))


def as_money(amount: Decimal | None, currency: str) -> str:
    """An amount as people read it (``2,807.00 USD``); ``nothing`` for a record without it."""
    return "nothing" if amount is None else format_money(from_decimal(amount, currency))


def _currency_of(record: Record) -> str:
    """A NetSuite record's currency code (its reference's name)."""
    return str((record.get("currency") or {}).get("refName") or "USD")


def books_void(memo: Record) -> bool:
    """Whether a NetSuite credit memo is the one the hub books for a voided invoice (keyed by the
    invoice's canonical id), not a credit note's."""
    return (from_external_key(str(memo.get("externalId") or "")) or "").startswith("invoice/")


def _twice(values: Iterable[str | None]) -> list[str]:
    """The values that occur more than once (None ignored)."""
    return [value for value, n in Counter(v for v in values if v).items() if n > 1]


# --- billing against the ERP ------------------------------------------------------------------


def reconcile(stripe: State, netsuite: State, store: Store) -> Report:
    """Stripe against NetSuite: customers, invoices (total and what is still owed), payments,
    credit notes (and voids, which NetSuite books as credit memos) and refunds."""
    report = Report()
    ns = {kind: {r["id"]: r for r in netsuite.get(kind, [])} for kind in NETSUITE_KINDS}
    for kind, records in ns.items():
        report.problems += [f"NetSuite has {kind} {eid} more than once"
                            for eid in _twice(r.get("externalId") for r in records.values())]

    customers = [c for c in stripe.get("customers", []) if not c.get("deleted")]
    for customer in customers:
        if _netsuite_id(store, "customer", customer["id"]) not in ns["customer"]:
            report.problems.append(f"Stripe customer {customer['id']} is not in NetSuite")
    finalized = [i for i in stripe.get("invoices", []) if i["status"] in FINALIZED]
    for invoice in finalized:
        _check_invoice(report, invoice, ns["invoice"].get(_netsuite_id(store, "invoice", invoice["id"]) or ""))
    payments = [p for p in stripe.get("invoice_payments", []) if p.get("status") == "paid"]
    notes = [n for n in stripe.get("credit_notes", []) if n["status"] == "issued"]
    refunds = [r for r in stripe.get("refunds", []) if r["status"] in ("succeeded", "pending")]
    for document, documents in zip(DOCUMENTS, (payments, notes, refunds), strict=True):
        report.problems += [problem for record in documents
                            for problem in _check_document(document, record, ns[document.netsuite_kind], store)]
    voids = sum(1 for i in finalized if i["status"] == "void")
    void_memos = sum(1 for memo in ns["creditmemo"].values() if books_void(memo))
    if void_memos != voids:
        report.problems.append(f"NetSuite has {void_memos} credit memos for Stripe's {voids} voided invoices")
    if len(ns["creditmemo"]) - void_memos != len(notes):
        report.problems.append(f"NetSuite has {len(ns['creditmemo']) - void_memos} credit memos for Stripe's "
                               f"{len(notes)} credit notes")
    report.counts.update({
        "stripe_customers": len(customers),
        "netsuite_customers": len(ns["customer"]),
        "stripe_invoices_finalized": len(finalized),
        "netsuite_invoices": len(ns["invoice"]),
        "stripe_payments": len(payments),
        "netsuite_payments": len(ns["customerpayment"]),
        "stripe_voids": voids,
        "netsuite_void_memos": void_memos,
        "stripe_credit_notes": len(notes),
        "netsuite_credit_memos": len(ns["creditmemo"]) - void_memos,
        "stripe_refunds": len(refunds),
        "netsuite_refunds": len(ns["customerRefund"]),
    })
    return report


@dataclass(frozen=True)
class Document:
    """A kind of Stripe document NetSuite books, and where each keeps its amount."""

    label: str
    entity_type: str
    netsuite_kind: str
    stripe_amount: str


DOCUMENTS = (Document("payment", "payment", "customerpayment", "amount_paid"),
             Document("credit note", "creditmemo", "creditmemo", "total"),
             Document("refund", "refund", "customerRefund", "amount"))


def _check_document(document: Document, record: Record, booked: Mapping[str, Record], store: Store) -> list[str]:
    """The Stripe ``record`` is in NetSuite (among ``booked``) with the same amount."""
    found = booked.get(_netsuite_id(store, document.entity_type, record["id"]) or "")
    if found is None:
        return [f"Stripe {document.label} {record['id']} is not in NetSuite"]
    expected = _stripe_amount(record[document.stripe_amount], record["currency"])
    if _amount(found, "total") != expected:
        currency = record["currency"].upper()
        return [f"{document.label} {record['id']}: NetSuite {as_money(_amount(found, 'total'), currency)}, Stripe "
                f"{as_money(expected, currency)}"]
    return []


def _check_invoice(report: Report, invoice: Record, booked: Record | None) -> None:
    """The invoice is in NetSuite with Stripe's total, and owes there what it owes in Stripe
    (nothing once paid or void; what credit notes left of it while open)."""
    if booked is None:
        report.problems.append(f"Stripe invoice {invoice['id']} is not in NetSuite")
        return
    currency = invoice["currency"].upper()
    expected = _stripe_amount(invoice["total"], currency)
    total = _amount(booked, "total")
    if total != expected:
        report.problems.append(f"invoice {invoice['id']}: NetSuite total {as_money(total, currency)}, Stripe "
                               f"{as_money(expected, currency)}")
    owed = Decimal(0) if invoice["status"] in SETTLED else _stripe_amount(invoice["amount_remaining"], currency)
    outstanding = _amount(booked, "amountRemaining")
    if outstanding is not None and outstanding != owed:
        report.problems.append(f"invoice {invoice['id']} is {invoice['status']} in Stripe, owing "
                               f"{as_money(owed, currency)}, but NetSuite has {as_money(outstanding, currency)} "
                               "outstanding")


# --- the reference topology -------------------------------------------------------------------


def reconcile_topology(states: Mapping[str, State], store: Store) -> Report:
    """The four systems (``states``: each one's records by type) against each other; see the module doc."""
    customers = Customers(states, store)
    report = customers.check()
    report.add(reconcile(states["stripe"], states["netsuite"], store))
    report.add(_postings(states["netsuite"], states["salesforce"], customers))
    report.add(_invoice_statuses(states["stripe"], states["salesforce"]))
    report.add(_balances(customers))
    report.add(_subscriptions(states, store, customers))
    return report


class Customers:
    """Each system's customers by canonical id: Salesforce accounts, Stripe customers, NetSuite
    customers and Zendesk organizations. A record the hub made is known by its mark; any other by
    the hub's cross-reference of its id."""

    def __init__(self, states: Mapping[str, State], store: Store) -> None:
        self.store = store
        self.records: dict[str, list[tuple[str | None, Record]]] = {
            system: [(self._canonical(system, record), record) for record in states[system].get(shape.collection, [])
                     if not record.get("deleted")]
            for system, shape in CUSTOMER_SHAPES.items()
        }
        self.accounts = {canonical for canonical, _ in self.records["salesforce"] if canonical}

    def _canonical(self, system: str, record: Record) -> str | None:
        shape = CUSTOMER_SHAPES[system]
        return shape.canonical(record) or self.store.xref_find("customer", system, shape.id(record))

    def canonical_of(self, system: str, system_id: str) -> str | None:
        """The canonical id of ``system``'s customer ``system_id``."""
        shape = CUSTOMER_SHAPES[system]
        return next((name for name, record in self.records[system] if shape.id(record) == system_id), None)

    def find(self, canonical: str) -> dict[str, Record]:
        """The customer's record in each system that has it exactly once."""
        found: dict[str, Record] = {}
        for system, records in self.records.items():
            matches = [record for name, record in records if name == canonical]
            if len(matches) == 1:
                found[system] = matches[0]
        return found

    def ids(self, canonical: str) -> dict[str, str]:
        """The customer's id in each system that has it exactly once."""
        return {system: CUSTOMER_SHAPES[system].id(record) for system, record in self.find(canonical).items()}

    def check(self) -> Report:
        report = Report()
        for system, records in self.records.items():
            shape = CUSTOMER_SHAPES[system]
            if system == "salesforce":
                report.problems += [f"Salesforce account {shape.id(record)} is unknown to the hub"
                                    for canonical, record in records if not canonical]
                continue
            counted = Counter(canonical for canonical, _ in records)
            report.problems += [f"{NAMES[system]} has customer {canonical} {counted[canonical]} times"
                                for canonical in self.accounts if counted[canonical] != 1]
            report.problems += [f"{NAMES[system]} customer {shape.id(record)} is no Salesforce account's"
                                for canonical, record in records if canonical not in self.accounts]
        for canonical in self.accounts:
            report.problems += self._links(canonical)
        report.counts.update({"salesforce_accounts": len(self.records["salesforce"]),
                              "zendesk_organizations": len(self.records["zendesk"])})
        return report

    def _links(self, canonical: str) -> list[str]:
        """Each system (and the hub) holds the customer's id in the others."""
        found = self.find(canonical)
        if set(found) != set(CUSTOMER_SHAPES):
            return []  # reported as missing or duplicated already
        ids = self.ids(canonical)
        problems = [f"the hub has {system} id {self.store.xref_get(canonical, system)} for {canonical}, "
                    f"not {ids[system]}" for system in SYSTEMS if self.store.xref_get(canonical, system) != ids[system]]
        for system, record in found.items():
            shape = CUSTOMER_SHAPES[system]
            problems += [f"{NAMES[system]} {ids[system]} holds {other} id {shape.link(record, other)!r}, "
                         f"not {ids[other]!r}" for other in shape.links if shape.link(record, other) != ids[other]]
        return problems


def _posts(invoice: Record) -> bool:
    return (invoice.get("approvalStatus") or {}).get("id") not in NOT_POSTING


def _postings(netsuite: State, salesforce: State, customers: Customers) -> Report:
    """Every invoice that posted in NetSuite is in Salesforce once, as posted, on the right account
    and with NetSuite's total; Salesforce shows no invoice that has not posted."""
    report = Report()
    for key, n in Counter(i.get("CrossLedger_Id__c") for i in salesforce.get("invoices", [])).items():
        if n > 1:
            report.problems.append(f"Salesforce has invoice {key} {n} times")
    shown = {i.get("CrossLedger_Id__c"): i for i in salesforce.get("invoices", [])}
    posted = [i for i in netsuite.get("invoice", []) if _posts(i)]
    for invoice in posted:
        key = invoice.get("externalId")
        record = shown.pop(key, None)
        if record is None:
            report.problems.append(f"invoice {key} posted in NetSuite but is not in Salesforce")
            continue
        if record.get("Posting_Status__c") != "posted":
            report.problems.append(f"Salesforce shows invoice {key} as {record.get('Posting_Status__c')!r}")
        if _amount(record, "Total__c") != _amount(invoice, "total"):
            currency = _currency_of(invoice)
            report.problems.append(f"invoice {key}: Salesforce total "
                                   f"{as_money(_amount(record, 'Total__c'), currency)}, "
                                   f"NetSuite {as_money(_amount(invoice, 'total'), currency)}")
        customer = customers.canonical_of("netsuite", str((invoice.get("entity") or {}).get("id")))
        if record.get("Account__c") != customers.ids(customer or "").get("salesforce"):
            report.problems.append(f"invoice {key} is on Salesforce account {record.get('Account__c')}, "
                                   "not its customer's")
    report.problems += [f"Salesforce shows invoice {key}, which has not posted in NetSuite" for key in shown]
    report.counts.update({"netsuite_posted_invoices": len(posted),
                          "salesforce_invoices": len(salesforce.get("invoices", []))})
    return report


def _invoice_statuses(stripe: State, salesforce: State) -> Report:
    """Every invoice Salesforce shows has the status Stripe, its system of record, gives it."""
    report = Report()
    statuses = {external_key(f"invoice/stripe/{i['id']}"): INVOICE_STATUSES.get(i["status"], i["status"])
                for i in stripe.get("invoices", [])}
    for record in salesforce.get("invoices", []):
        key = record.get("CrossLedger_Id__c")
        expected = statuses.get(key or "")
        if expected is not None and record.get("Status__c") != expected:
            report.problems.append(f"Salesforce shows invoice {key} as {record.get('Status__c')!r}, Stripe as "
                                   f"{expected!r}")
    return report


def _balances(customers: Customers) -> Report:
    """Every account shows the open balance its customer has in NetSuite, the system of record."""
    report = Report()
    for canonical in sorted(customers.accounts):
        found = customers.find(canonical)
        if "salesforce" not in found or "netsuite" not in found:
            continue  # reported as missing or duplicated already
        shown, owed = _amount(found["salesforce"], "Open_Balance__c"), _amount(found["netsuite"], "balance")
        if shown != owed:
            currency = _currency_of(found["netsuite"])
            report.problems.append(f"Salesforce shows an open balance of {as_money(shown, currency)} for {canonical}, "
                                   f"NetSuite {as_money(owed, currency)}")
    return report


def plan_tier(subscription: Record, products: Mapping[str, Record]) -> str | None:
    """A subscription's tier as the Stripe account says it: ``metadata[tier]`` of its first price,
    else of that price's product, else the price's lookup key."""
    price = subscription["items"]["data"][0]["price"]
    product = products.get(price["product"] if isinstance(price["product"], str) else price["product"]["id"], {})
    tier: str | None = ((price.get("metadata") or {}).get("tier") or (product.get("metadata") or {}).get("tier")
                        or price.get("lookup_key"))
    return tier


def _subscriptions(states: Mapping[str, State], store: Store, customers: Customers) -> Report:
    """Every live Stripe subscription is in NetSuite once with its tier, and its customer's Zendesk
    organization has that tier."""
    report = Report()
    products = {p["id"]: p for p in states["stripe"].get("products", [])}
    records = states["netsuite"].get("customrecord_cl_subscription", [])
    booked = Counter(r.get("externalId") for r in records)
    tiers = {r.get("externalId"): r.get("custrecord_cl_plan_tier") for r in records}
    organizations = states["zendesk"].get("organizations", [])
    live = [s for s in states["stripe"].get("subscriptions", []) if s["status"] not in ENDED_SUBSCRIPTIONS]
    for subscription in live:
        tier = plan_tier(subscription, products)
        canonical = store.xref_find("subscription", "stripe", subscription["id"]) or ""
        key = external_key(canonical)
        if booked[key] != 1:
            report.problems.append(f"NetSuite has subscription {subscription['id']} {booked[key]} times")
        elif tiers[key] != tier:
            report.problems.append(f"NetSuite has subscription {subscription['id']} at tier {tiers[key]!r}, "
                                   f"Stripe at {tier!r}")
        customer = customers.canonical_of("stripe", subscription["customer"])
        organization = customers.find(customer).get("zendesk", {}) if customer else {}
        held = (organization.get("organization_fields") or {}).get("plan_tier")
        if held != tier:
            report.problems.append(f"Zendesk has plan tier {held!r} for {customer or subscription['customer']}, "
                                   f"Stripe's subscription {subscription['id']} is {tier!r}")
    report.counts.update({"stripe_subscriptions": len(live), "netsuite_subscriptions": len(records),
                          "zendesk_plan_tiers": sum(1 for o in organizations
                                                    if (o.get("organization_fields") or {}).get("plan_tier"))})
    return report
