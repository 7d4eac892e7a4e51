"""Reconciliation of billing (Stripe) against the ERP (NetSuite): does every record match once?

It reads both systems' records (their own JSON) and the hub's cross-references, and reports
each mismatch as a sentence. The demo exits 0 only when the report is clean.
"""

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from crossledger.canonical.money import money, to_decimal
from crossledger.core.stores.base import Store

FINALIZED = ("open", "paid", "void", "uncollectible")


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _netsuite_id(store: Store, entity_type: str, stripe_id: str) -> str | None:
    canonical = store.xref_find(entity_type, "stripe", stripe_id)
    return store.xref_get(canonical, "netsuite") if canonical else None


def _amount(record: dict[str, Any], name: str) -> Decimal | None:
    return None if record.get(name) is None else Decimal(str(record[name]))


def reconcile(stripe: dict[str, Any], netsuite: dict[str, Any], store: Store) -> Report:
    report = Report()
    ns = {kind: {r["id"]: r for r in netsuite.get(kind, [])} for kind in ("customer", "invoice", "customerpayment",
                                                                          "creditmemo")}
    for kind, records in ns.items():
        twice = [eid for eid, n in Counter(r.get("externalId") for r in records.values()).items() if eid and n > 1]
        report.problems += [f"NetSuite has {kind} {eid} more than once" for eid in twice]

    customers = [c for c in stripe.get("customers", []) if not c.get("deleted")]
    for customer in customers:
        if _netsuite_id(store, "customer", customer["id"]) not in ns["customer"]:
            report.problems.append(f"Stripe customer {customer['id']} is not in NetSuite")
    finalized = [i for i in stripe.get("invoices", []) if i["status"] in FINALIZED]
    for invoice in finalized:
        ns_id = _netsuite_id(store, "invoice", invoice["id"])
        record = ns["invoice"].get(ns_id or "")
        if record is None:
            report.problems.append(f"Stripe invoice {invoice['id']} is not in NetSuite")
            continue
        expected = to_decimal(money(invoice["total"], invoice["currency"]))
        total = _amount(record, "total")
        if total != expected:
            report.problems.append(f"invoice {invoice['id']}: NetSuite total {total} != Stripe {expected} "
                                   f"{invoice['currency'].upper()}")
        outstanding = _amount(record, "amountRemaining")
        if invoice["status"] in ("paid", "void") and outstanding not in (None, Decimal(0)):
            report.problems.append(f"invoice {invoice['id']} is {invoice['status']} in Stripe but NetSuite still "
                                   f"has {outstanding} outstanding")
    payments = [p for p in stripe.get("invoice_payments", []) if p.get("status") == "paid"]
    for payment in payments:
        if _netsuite_id(store, "payment", payment["id"]) not in ns["customerpayment"]:
            report.problems.append(f"Stripe payment {payment['id']} is not applied in NetSuite")
    report.counts = {
        "stripe_customers": len(customers),
        "netsuite_customers": len(ns["customer"]),
        "stripe_invoices_finalized": len(finalized),
        "netsuite_invoices": len(ns["invoice"]),
        "stripe_payments": len(payments),
        "netsuite_payments": len(ns["customerpayment"]),
        "stripe_voids": sum(1 for i in finalized if i["status"] == "void"),
        "netsuite_credit_memos": len(ns["creditmemo"]),
    }
    return report
