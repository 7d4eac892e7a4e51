"""``crossledger demo`` as a user runs it: a subprocess, no services, the verdict on the last line.

Every billing × ERP pair runs end to end: Stripe and NetSuite (the default) at the CLI's default
sizes, the other three smaller to keep the suite's time down. What a pair cannot show is skipped
with its reason, and the checks here skip exactly that.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crossledger.plugins.business_central.sandbox.books import DEMO_CUSTOMERS

CROSSLEDGER = str(Path(sys.executable).with_name("crossledger"))
ACCOUNTS = 20  # the CLI's defaults: 20 customers, 60 one-off invoices
ONE_OFF_INVOICES = 60
JOURNEYS = ("onboarding", "subscription-change", "suspension", "reinstatement", "refund")
SMALL = (6, 12)  # accounts (every named one has a plan or a role in the story but two) and invoices


def _demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    result = subprocess.run([CROSSLEDGER, "demo", *options], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    assert list(scratch.glob("crossledger-demo-*")) == [], "the demo left its temporary database behind"
    return result


PAIRS = [
    pytest.param("stripe", "netsuite", (), id="stripe-netsuite"),
    pytest.param("stripe", "business-central", SMALL, id="stripe-business-central"),
    pytest.param("zuora", "netsuite", SMALL, id="zuora-netsuite"),
    pytest.param("zuora", "business-central", SMALL, id="zuora-business-central"),
]


@pytest.mark.parametrize(("billing", "erp", "size"), PAIRS)
def test_demo_reconciles_the_four_systems(tmp_path: Path, billing: str, erp: str, size: tuple[int, ...]) -> None:
    accounts, invoices = size or (ACCOUNTS, ONE_OFF_INVOICES)
    sized = ("--customers", str(accounts), "--invoices", str(invoices)) if size else ()
    result = _demo(tmp_path, "--json", "--billing", billing, "--erp", erp, *sized)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["problems"] == []
    skipped = summary["skipped"]
    erp_system = erp.replace("-", "_")
    assert (summary["billing"], summary["erp"]) == (billing, erp_system)

    live = summary["reconciliation"]  # every system that lists its records, read through its API
    assert live["findings"] == {} and live["differences"] == {}
    assert "Live reconciliation" in result.stdout
    listed = {"salesforce", billing, erp_system, "zendesk"} - set(live["not_listed"])
    assert {name.split(".")[0] for name in live["read"]} == listed
    if billing == "stripe" and erp == "netsuite":  # the default pair plays the whole story
        assert skipped == {} and live["not_listed"] == []
        assert live["read"]["stripe.invoice"] == live["read"]["netsuite.invoice"] == summary["erp_invoices"]

    # Every Salesforce account became a customer once in each of the other systems; Business
    # Central's own customers (its demo company's) came the other way, into the other three.
    customers = accounts + (len(DEMO_CUSTOMERS) if erp == "business-central" else 0)
    assert summary["salesforce_accounts"] == summary["billing_customers"] == summary["erp_customers"] \
        == summary["zendesk_organizations"] == customers
    # Billing reached the ERP once per document, the outage and the repeated notifications notwithstanding.
    subscriptions = summary["billing_subscriptions"]
    assert subscriptions > 0
    assert summary["billing_invoices_finalized"] == summary["erp_invoices"] == invoices + subscriptions
    voids = 0 if "void" in skipped else 1
    assert summary["billing_voids"] == summary.get("invoices_voided", 0) == voids
    # A void is booked as a credit memo: counted beside the void, never as a credit note the ERP has too many of.
    assert summary["billing_credit_notes"] == summary["erp_credit_memos"] == 2
    assert summary["erp_void_memos"] == voids
    assert summary["billing_refunds"] == summary["partial_refunds"] == 1
    assert summary["billing_payments"] > 0
    for kind in ("subscriptions", "payments", "refunds"):
        if f"erp_{kind}" not in skipped:
            assert summary[f"erp_{kind}"] == summary[f"billing_{kind}"], kind
    # What posted in the ERP is in Salesforce, once; what finance left pending approval is not.
    assert summary["salesforce_invoices"] == summary["erp_posted_invoices"] > 0
    if "approval" in skipped:
        assert summary["erp_posted_invoices"] == summary["erp_invoices"]
    else:
        assert summary["erp_posted_invoices"] == summary["invoices_posted_by_finance"]
        assert summary["invoices_left_pending_approval"] > 0
    assert summary["terms_and_balance_in_salesforce"] is True
    assert summary["salesforce_terms_edit_kept_out_of_erp"] is True
    # The plan upgrade changed the Zendesk organization's tier.
    assert summary["zendesk_tier_before_upgrade"] is True and summary["zendesk_tier_after_upgrade"] is True
    assert summary["zendesk_plan_tiers"] == subscriptions

    assert summary["duplicate_deliveries_sent"] > 0
    assert summary["duplicates_dropped"] >= summary["duplicate_deliveries_sent"]
    assert summary["parked_during_outage"] > 0, "the ERP outage never parked anything"
    assert summary["polls_failed_during_outage"] > 0, "no poll found the ERP down"
    assert summary["dead_letters"] == 0 and summary["still_parked"] == 0
    assert "across the four systems" in result.stdout  # one customer's timeline was printed
    for part, reason in skipped.items():  # each skip is said, with its reason, in the human summary
        assert reason and f"skipped {part.replace('_', ' ')}:" in result.stdout, part

    # Every kind of journey the pair runs ran and completed, each printed on its own line.
    runs = summary["journeys"]
    assert [run for run in runs if run["state"] != "completed"] == []
    assert all(run["steps_done"] == run["steps"] for run in runs)
    assert set(summary["journeys_completed"]) == set(JOURNEYS)
    assert all(summary["journeys_completed"][kind] > 0 for kind in JOURNEYS), summary["journeys_completed"]
    assert summary["journeys_completed"]["onboarding"] == accounts
    assert summary["suspended_everywhere"] is True and summary["reinstated_everywhere"] is True
    lines = result.stdout.splitlines()
    for run in runs:
        assert any(line.split()[:3] == [run["journey"], run["subject"], "completed"] for line in lines), run


@pytest.mark.parametrize(("option", "value", "choices"), [("--billing", "paypal", "stripe or zuora"),
                                                          ("--erp", "sap", "netsuite or business-central")])
def test_an_unknown_system_is_one_line_and_exit_2(tmp_path: Path, option: str, value: str, choices: str) -> None:
    result = _demo(tmp_path, option, value)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {option} must be {choices}, not {value!r}"
    assert result.stdout == ""
