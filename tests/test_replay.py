"""Replaying the event log reaches targets that never got an event, and never repeats an effect."""

from pathlib import Path

import httpx
from conftest import start_system


def test_replay_delivers_to_a_newly_routed_target_once(tmp_path: Path) -> None:
    # The first hub routes customers nowhere ([routes] "customer.upserted" = []): they are only logged.
    unrouted = start_system(tmp_path, routes={"customer.upserted": []}, store=f"sqlite:///{tmp_path}/shared.db")
    for name in ("Alpha Ltd", "Beta Ltd", "Gamma Ltd"):
        unrouted.customer(name)
    unrouted.settle(lambda: len(unrouted.hub.runtime.store.events(type="customer.upserted")) == 3)
    assert unrouted.state("netsuite")["customer"] == []
    unrouted.stop()

    routed = start_system(tmp_path, store=f"sqlite:///{tmp_path}/shared.db")
    try:
        bad = httpx.post(f"{routed.hub.url}/v1/replay", json={"type": "customer.upserted", "color": "red"})
        answer = httpx.post(f"{routed.hub.url}/v1/replay", json={"type": "customer.upserted"})
        routed.settle(lambda: len(routed.state("netsuite")["customer"]) == 3)
        again = httpx.post(f"{routed.hub.url}/v1/replay", json={"source": "stripe"})
        routed.settle()

        assert bad.status_code == 422 and "color" in bad.json()["error"]["message"]
        assert answer.status_code == 202
        assert again.status_code == 202
        assert sorted(c["companyName"] for c in routed.state("netsuite")["customer"]) == [
            "Alpha Ltd", "Beta Ltd", "Gamma Ltd"]
        statuses = [r.status for r in routed.hub.runtime.store.audit_trail(
            routed.hub.runtime.store.events(type="customer.upserted")[0].correlation_id)
            if r.step == "customer.upsert"]
        assert statuses == ["delivered", "already done"]
    finally:
        routed.stop()
