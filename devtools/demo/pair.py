"""The billing × ERP pair ``crossledger demo`` runs with, and whether what each side holds agrees.

The company bills in Stripe or Zuora and keeps its books in NetSuite or Business Central; Salesforce
(CRM) and Zendesk (support) are around either pair. A document kind is compared between billing
and the ERP only when the hub's routes carry it from one to the other (:func:`route_gaps`): where
none does, the comparison is skipped, and the summary says why.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from crossledger.devtools.sandboxes import CRM, SUPPORT, topology

TITLES = {"salesforce": "Salesforce", "stripe": "Stripe", "zuora": "Zuora", "netsuite": "NetSuite",
          "business_central": "Business Central", "zendesk": "Zendesk"}


@dataclass(frozen=True)
class Pair:
    """The billing system and the ERP, by connector name."""

    billing: str
    erp: str

    @classmethod
    def chosen(cls, billing: str, erp: str) -> "Pair":
        """The pair the options name (``--billing zuora --erp business-central``), as ``crossledger
        sandbox`` reads them; ValueError with one readable line for an unknown one."""
        chosen = topology(billing, erp)
        return cls(chosen.billing_system, chosen.erp_system)

    @property
    def systems(self) -> tuple[str, str, str, str]:
        return CRM, self.billing, self.erp, SUPPORT

    @property
    def titles(self) -> str:
        """``Salesforce, Stripe, NetSuite and Zendesk``."""
        *first, last = (TITLES[system] for system in self.systems)
        return f"{', '.join(first)} and {last}"


@dataclass(frozen=True)
class Comparison:
    """A kind of record billing and the ERP should hold as many of: the sum of ``billing`` counts
    against the ``erp`` count, carried by ``event_type``."""

    label: str
    billing: tuple[str, ...]
    erp: str
    event_type: str


COMPARISONS = (
    Comparison("customers", ("billing_customers",), "erp_customers", "customer.upserted"),
    Comparison("subscriptions", ("billing_subscriptions",), "erp_subscriptions", "subscription.created"),
    Comparison("invoices", ("billing_invoices_finalized",), "erp_invoices", "invoice.issued"),
    Comparison("payments", ("billing_payments",), "erp_payments", "payment.settled"),
    # The ERP books a void as a credit memo of its own (NetSuite's, Business Central's corrective one).
    Comparison("voids", ("billing_voids",), "erp_void_memos", "invoice.voided"),
    Comparison("credit memos", ("billing_credit_notes",), "erp_credit_memos", "credit_memo.issued"),
    Comparison("refunds", ("billing_refunds",), "erp_refunds", "refund.issued"),
)


def route_gaps(pair: Pair, targets: Callable[[str, str], list[str]]) -> dict[str, str]:
    """The comparisons no route carries from billing to the ERP (``targets(event_type, source)``
    is the router's), each with the reason; customers come from the CRM, so their route is its."""
    gaps: dict[str, str] = {}
    for comparison in COMPARISONS:
        source = CRM if comparison.label == "customers" else pair.billing
        if pair.erp not in targets(comparison.event_type, source):
            gaps[f"erp_{comparison.label.replace(' ', '_')}"] = (
                f"no route carries {TITLES[source]}'s {comparison.event_type} to {TITLES[pair.erp]} "
                f"(plugins/builtin.py), so {TITLES[pair.erp]} keeps no {comparison.label} from it")
    return gaps


def disagreements(pair: Pair, counts: Mapping[str, int], skipped: Mapping[str, str]) -> list[str]:
    """Where billing and the ERP hold different numbers of a kind of record (skipped ones aside),
    every account is not a customer in each system once, or Salesforce does not show every posted
    invoice."""
    problems: list[str] = []
    for comparison in COMPARISONS:
        if f"erp_{comparison.label.replace(' ', '_')}" in skipped:
            continue
        billed = sum(counts.get(key, 0) for key in comparison.billing)
        if billed != counts.get(comparison.erp, 0):
            problems.append(f"{TITLES[pair.billing]} has {billed} {comparison.label}, {TITLES[pair.erp]} "
                            f"{counts.get(comparison.erp, 0)}")
    accounts = counts.get("salesforce_accounts", 0)
    problems += [f"{TITLES[system]} has {counts.get(key, 0)} customers for {accounts} Salesforce accounts"
                 for system, key in ((pair.billing, "billing_customers"), (pair.erp, "erp_customers"),
                                     (SUPPORT, "zendesk_organizations")) if counts.get(key, 0) != accounts]
    if counts.get("salesforce_invoices", 0) != counts.get("erp_posted_invoices", 0):
        problems.append(f"Salesforce shows {counts.get('salesforce_invoices', 0)} posted invoices, "
                        f"{TITLES[pair.erp]} posted {counts.get('erp_posted_invoices', 0)}")
    return problems
