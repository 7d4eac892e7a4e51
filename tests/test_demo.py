"""``crossledger demo`` as a user runs it: a subprocess, no services, the verdict on the last line."""

import json
import os
import subprocess
import sys
from pathlib import Path

CROSSLEDGER = str(Path(sys.executable).with_name("crossledger"))
ACCOUNTS = 20  # the CLI's defaults: 20 customers, 60 one-off invoices
ONE_OFF_INVOICES = 60
JOURNEYS = ("onboarding", "subscription-change", "suspension", "reinstatement", "refund")


def test_demo_reconciles_the_four_systems(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([CROSSLEDGER, "demo", "--json"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert list(scratch.glob("crossledger-demo-*")) == [], "the demo left its temporary database behind"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["problems"] == []

    # Every Salesforce account became a customer once in each of the other systems.
    assert summary["salesforce_accounts"] == summary["stripe_customers"] == summary["netsuite_customers"] \
        == summary["zendesk_organizations"] == ACCOUNTS
    # Billing reached NetSuite once per document, the outage and the repeated webhooks notwithstanding.
    subscriptions = summary["stripe_subscriptions"]
    assert subscriptions == summary["netsuite_subscriptions"] > 0
    assert summary["stripe_invoices_finalized"] == summary["netsuite_invoices"] == ONE_OFF_INVOICES + subscriptions
    assert summary["stripe_payments"] == summary["netsuite_payments"] > 0
    assert summary["stripe_voids"] == summary["invoices_voided"] == 1
    assert summary["stripe_credit_notes"] == 2 and summary["netsuite_credit_memos"] == 3  # two notes and the void
    assert summary["stripe_refunds"] == summary["netsuite_refunds"] == summary["partial_refunds"] == 1
    # What finance posted is in Salesforce, once; what it left pending approval is not.
    assert summary["salesforce_invoices"] == summary["netsuite_posted_invoices"] \
        == summary["invoices_posted_by_finance"] > 0
    assert summary["invoices_left_pending_approval"] > 0
    assert summary["terms_and_balance_in_salesforce"] is True
    assert summary["salesforce_terms_edit_kept_out_of_netsuite"] is True
    # The plan upgrade changed the Zendesk organization's tier.
    assert summary["zendesk_tier_before_upgrade"] is True and summary["zendesk_tier_after_upgrade"] is True
    assert summary["zendesk_plan_tiers"] == subscriptions

    assert summary["duplicate_deliveries_sent"] > 0
    assert summary["duplicates_dropped"] >= summary["duplicate_deliveries_sent"]
    assert summary["parked_during_outage"] > 0, "the NetSuite outage never parked anything"
    assert summary["polls_failed_during_outage"] > 0, "no poll found NetSuite down"
    assert summary["dead_letters"] == 0 and summary["still_parked"] == 0
    assert "across the four systems" in result.stdout  # one customer's timeline was printed

    # Every kind of journey ran and completed, each printed on its own line; none was left unfinished.
    runs = summary["journeys"]
    assert [run for run in runs if run["state"] != "completed"] == []
    assert all(run["steps_done"] == run["steps"] for run in runs)
    assert summary["journeys_completed"] == {kind: sum(run["journey"] == kind for run in runs) for kind in JOURNEYS}
    assert all(summary["journeys_completed"][kind] > 0 for kind in JOURNEYS), summary["journeys_completed"]
    assert summary["journeys_completed"]["onboarding"] == ACCOUNTS
    assert summary["suspended_everywhere"] is True and summary["reinstated_everywhere"] is True
    lines = result.stdout.splitlines()
    for run in runs:
        assert any(line.split()[:3] == [run["journey"], run["subject"], "completed"] for line in lines), run
