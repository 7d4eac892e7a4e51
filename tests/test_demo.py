"""``crossledger demo`` as a user runs it: a subprocess, no services, the verdict on the last line."""

import json
import subprocess
import sys
from pathlib import Path

CROSSLEDGER = str(Path(sys.executable).with_name("crossledger"))


def test_demo_reconciles_netsuite_with_stripe(tmp_path: Path) -> None:
    result = subprocess.run([CROSSLEDGER, "demo", "--json"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["problems"] == []
    assert summary["stripe_customers"] == summary["netsuite_customers"] == 20
    assert summary["stripe_invoices_finalized"] == summary["netsuite_invoices"] == 60
    assert summary["stripe_payments"] == summary["netsuite_payments"] > 0
    assert summary["stripe_voids"] == summary["netsuite_credit_memos"] == 1
    assert summary["duplicate_deliveries_sent"] > 0
    assert summary["parked_during_outage"] > 0, "the NetSuite outage never parked anything"
    assert summary["dead_letters"] == 0 and summary["still_parked"] == 0
    assert "and its payment" in result.stdout  # the timeline of one transaction was printed
