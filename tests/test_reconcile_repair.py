"""Repairs of a run's findings as they are applied and reported, with the hub's runtime stood in for:
what the summary (and so ``crossledger reconcile repair --apply`` and the API) says of each."""

from types import SimpleNamespace
from typing import Any, cast

from crossledger.core.reconcile.repair import Repairs
from crossledger.core.store.base import FindingRecord, ReconciliationRun


class Admitting:
    """A runtime whose source recovers a record and admits it as ``admitted`` says: False, the
    recovered event's id is one the hub has seen (the record is unchanged since)."""

    def __init__(self, admitted: bool) -> None:
        self.admitted = admitted
        self.admits: list[str] = []
        connector = SimpleNamespace(recover=lambda ctx, entity, record_id: f"event of {entity} {record_id}")
        self.connectors = {"stripe": SimpleNamespace(connector=connector, ctx=None)}
        self.store = None

    def admit(self, name: str, event: Any, via: str) -> bool:
        self.admits.append(f"{name}: {event}")
        return self.admitted


def recover_finding() -> FindingRecord:
    return FindingRecord(id="f1", run_id="run", cls="amount_mismatch", entity="invoice", subject="invoice/stripe/in_1",
                         system="netsuite", records={}, rule="invoice.document: stripe is the system of record",
                         detail="", first_seen=0.0, repair={"action": "recover", "source": "stripe",
                                                            "entity": "invoice", "id": "in_1",
                                                            "subject": "invoice/stripe/in_1"})


def test_a_recover_the_hub_admits_as_a_duplicate_is_a_failed_repair_that_says_why() -> None:
    run = ReconciliationRun(id="run", started_at=0.0, state="done")
    runtime = Admitting(admitted=False)
    summary = Repairs(cast(Any, runtime)).run(run, [recover_finding()], apply=True)
    assert runtime.admits == ["stripe: event of invoice in_1"]
    [failure] = summary.failed
    assert failure.startswith("recover invoice/stripe/in_1: AlreadyAdmitted: stripe's invoice in_1 is unchanged")
    assert summary.as_json()["failed"] == [failure] and summary.count == 1


def test_a_recover_the_hub_admits_is_applied() -> None:
    run = ReconciliationRun(id="run", started_at=0.0, state="done")
    summary = Repairs(cast(Any, Admitting(admitted=True))).run(run, [recover_finding()], apply=True)
    assert summary.failed == [] and summary.count == 1
