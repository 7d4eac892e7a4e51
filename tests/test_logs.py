"""Logs carry ids, types and reasons, never customer data; a planned retry is one WARNING line.

A whole system on loopback with customers whose names and e-mails are distinctive, through a
NetSuite rate limit and outage, a data error that is dead-lettered and a defect, with every log
record of the process captured at DEBUG.
"""

import json
import logging
import time
from pathlib import Path
from typing import Literal

import httpx
import msgspec
import pydantic
import pytest
from conftest import start_system
from crossledger.core.processes.embedded import wait_until
from crossledger.core.telemetry import metrics, safelog
from crossledger.devtools.bench.run import signed
from crossledger.plugins.errors import WITHHELD

NAMES = ["Zephyrine Quillfeather", "Octavian Marchbanks-Oyelaran"]
EMAILS = ["zephyrine.quillfeather@privacy-probe.example", "octavian.mo@privacy-probe.example"]


def test_no_customer_data_reaches_the_log_and_a_planned_retry_is_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    system = start_system(tmp_path)
    try:
        runtime = system.hub.runtime
        first, second = (system.stripe.post("/v1/customers", name=name, email=email)
                         for name, email in zip(NAMES, EMAILS, strict=True))
        system.settle(lambda: len(system.state("netsuite")["customer"]) == 2)

        # NetSuite answers 429s, then 500s: the deliveries are retried, and land once it recovers.
        def retries(category: str) -> float:
            return metrics.registry.get_sample_value("crossledger_retried_total", {"category": category}) or 0

        for mode, category, customer in (("http_429", "rate_limited", first), ("http_500", "transient", second)):
            system.fault("netsuite", mode=mode, retry_after=0)
            before = retries(category)
            invoice = system.invoice(customer["id"], [4_200])
            assert wait_until(lambda: retries(category) > before, 30), f"no {category} retry"  # noqa: B023
            system.clear_fault("netsuite")
        system.settle(lambda: len(system.state("netsuite")["invoice"]) == 2)

        # A snapshot whose total is not its lines: a data error, dead-lettered at once.
        broken = {**invoice, "id": "in_broken", "total": invoice["total"] + 1}
        body = json.dumps({"id": "evt_broken", "object": "event", "type": "invoice.finalized",
                           "created": int(time.time()), "data": {"object": broken}}).encode()
        secret = runtime.settings.connectors["stripe"]["webhook_secret"]
        httpx.post(f"{system.hub.url}/webhooks/stripe", content=body, headers=signed(secret, body))
        # A refused webhook whose parser quotes the body (an e-mail where the event's kind goes): the
        # sender reads its own words back, the log keeps the refusal without them.
        odd = json.dumps({"id": "evt_odd", "object": EMAILS[1], "type": "customer.created",
                          "created": int(time.time()), "data": {"object": {}}}).encode()
        refused = httpx.post(f"{system.hub.url}/webhooks/stripe", content=odd, headers=signed(secret, odd))
        assert refused.status_code == 422 and EMAILS[1] in refused.json()["error"]["message"]
        # A defect: an event the pipeline cannot even read (its time is not one), retried, then dead-lettered.
        runtime.outbox.ingest("stripe", {"source_event_id": "evt_defect", "type": "customer.created",
                                        "occurred_at": "not a time", "payload": {"email": EMAILS[0]}},
                     "corr-defect", time.time())
        system.settle(lambda: runtime.store.dlq_count() == 2)
    finally:
        system.stop()

    text = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    for secret_value in [*NAMES, *EMAILS, *(name.split()[0] for name in NAMES)]:
        assert secret_value not in text, f"{secret_value!r} reached the log"

    retries = [r for r in caplog.records if r.getMessage().startswith("retrying message")]
    assert {"rate_limited", "transient"} <= {r.getMessage().rsplit("(", 1)[1].rstrip(")") for r in retries}
    planned = [r for r in retries if "(rate_limited)" in r.getMessage() or "(transient)" in r.getMessage()]
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in planned)
    planned_ids = {r.getMessage().split()[2] for r in planned}
    # Nothing else at INFO or above names a planned retry's message (Dramatiq's own "Failed to
    # process message ... with expected exception" line included): one line each, no traceback.
    others = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r not in planned
              and any(message_id in r.getMessage() for message_id in planned_ids)]
    assert others == []

    defects = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert defects, "the defect left no traceback"
    assert all("(ingest)" in r.getMessage() for r in defects)
    assert all("msgspec.ValidationError" in (r.exc_text or "") for r in defects)
    assert any("webhook for stripe refused: 422 not an event this endpoint takes (SchemaError" in r.getMessage()
               for r in caplog.records)
    dead = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead-lettered message")]
    assert len(dead) == 2 and any(": data (dead letter" in line for line in dead)


def test_a_traceback_keeps_where_and_what_failed_but_not_the_values(caplog: pytest.LogCaptureFixture) -> None:
    safelog.install()  # as every runtime does

    class Customer(pydantic.BaseModel):
        age: int

    class Status(msgspec.Struct):
        status: Literal["open", "paid"]

    def parse(raw: dict[str, str]) -> None:
        try:
            msgspec.convert(raw, Status)
        except msgspec.ValidationError as error:
            try:
                Customer.model_validate({"age": raw["status"]})
            except pydantic.ValidationError:
                raise KeyError(raw["status"]) from error

    with caplog.at_level(logging.DEBUG):
        try:
            parse({"status": EMAILS[0]})
        except KeyError as error:
            logging.getLogger("crossledger.test").exception("parsing %s failed: %s", {"status": EMAILS[0]}, error)

    assert EMAILS[0] not in caplog.text
    [record] = caplog.records
    assert record.getMessage() == f"parsing <dict> failed: KeyError: {WITHHELD}"
    assert "msgspec.ValidationError: Invalid enum value '…' - at `$.status`" in caplog.text
    assert "The above exception was the direct cause of the following exception:" in caplog.text
    assert "pydantic_core._pydantic_core.ValidationError" not in caplog.text  # a context a cause hides
    assert f"KeyError: {WITHHELD}" in caplog.text and 'raise KeyError(raw["status"])' in caplog.text
