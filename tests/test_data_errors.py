"""Data errors end at once: a document the hub must refuse (two currencies, totals that do not add up,
a time, amount or text no system can hold, a currency the ERP's customer does not take) is one
``data`` dead letter naming the field, after one attempt, with nothing written to NetSuite.

Every event is a signed Stripe webhook posted to an embedded hub running on the sandboxes.
"""

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import System, start_system
from crossledger.canonical.entities import Customer
from crossledger.core.hub.pipeline import Bound, Pipeline
from crossledger.core.hub.policy import OwnershipPolicy
from crossledger.core.hub.router import Router
from crossledger.core.store import open_store
from crossledger.core.store.base import DeadLetter
from crossledger.devtools.bench.run import signed
from crossledger.plugins import BaseConnector, SystemKind
from crossledger.plugins.errors import Category, ConnectorError, translation_error
from crossledger.plugins.manager import CrossledgerPluginManager
from crossledger.plugins.types import Change, Context, InboundEvent, Refs
from pydantic import BaseModel

Event = tuple[str, dict[str, Any]]
"""A Stripe event type and the object it carries."""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = start_system(tmp_path_factory.mktemp("data-errors"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def delivered(system: System) -> dict[str, Any]:
    """A customer and its USD invoice of two lines, both delivered to NetSuite."""
    customer = system.customer("Secretive Ltd")
    invoice = system.invoice(customer["id"], [5_000, 2_500])
    system.settle(lambda: len(system.state("netsuite")["invoice"]) == 1)
    return invoice


def post(system: System, event_type: str, obj: dict[str, Any], **envelope: Any) -> tuple[str, httpx.Response]:
    """Post ``obj`` as a signed Stripe event; its event id and the hub's answer."""
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    body = json.dumps({"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
                       "data": {"object": obj}, **envelope}).encode()
    secret = system.hub.runtime.settings.connectors["stripe"]["webhook_secret"]
    return event_id, httpx.post(f"{system.hub.url}/webhooks/stripe", content=body, headers=signed(secret, body))


def letters_for(system: System, event_id: str) -> list[DeadLetter]:
    """The dead letters of the source event ``event_id`` (ingested, or delivered after it)."""
    return [letter for letter in system.hub.runtime.store.dlq_list(state=None, limit=1000)
            if letter.message["args"][1].get("source_event_id") == event_id]


def netsuite_records(system: System, external_id_part: str) -> list[dict[str, Any]]:
    return [record for records in system.state("netsuite").values() for record in records
            if external_id_part in str(record.get("externalId"))]


def assert_one_data_letter(system: System, event: Event, field: str, problem: str) -> DeadLetter:
    """Post ``event``; it must end as exactly one data dead letter naming ``field`` and ``problem``,
    after a single attempt, with no record of its object in NetSuite."""
    event_type, obj = event
    event_id, answer = post(system, event_type, obj)
    assert answer.status_code == 200, answer.text
    system.settle(lambda: bool(letters_for(system, event_id)))
    [letter] = letters_for(system, event_id)
    assert letter.category == "data", letter
    assert field in letter.reason and problem in letter.reason, letter.reason
    assert letter.attempts == 1, letter
    trail = system.hub.runtime.store.audit_trail(letter.correlation_id or "")
    assert not [record for record in trail if record.status == "retry"], trail
    assert "Secretive" not in letter.reason
    assert netsuite_records(system, obj["id"]) == []
    return letter


def invoice_like(delivered: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> Event:
    """``invoice.finalized`` of a new invoice like the delivered one, changed by ``change``."""
    invoice = json.loads(json.dumps(delivered))
    invoice["id"] = f"in_{uuid.uuid4().hex[:14]}"
    change(invoice)
    return "invoice.finalized", invoice


def line(index: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda invoice: invoice["lines"]["data"][index].update(fields)


def test_an_invoice_with_a_line_in_another_currency(system: System, delivered: dict[str, Any]) -> None:
    assert_one_data_letter(system, invoice_like(delivered, line(1, currency="eur")),
                           "lines[1].amount", "is in EUR but the document is in USD")


def test_an_invoice_whose_total_does_not_add_up(system: System, delivered: dict[str, Any]) -> None:
    def overstated(invoice: dict[str, Any]) -> None:
        invoice["total"] += 1

    assert_one_data_letter(system, invoice_like(delivered, overstated), "total 75.01 USD", "!= lines 75.00 USD")


def test_a_due_date_no_system_can_hold(system: System, delivered: dict[str, Any]) -> None:
    def far(invoice: dict[str, Any]) -> None:
        invoice["due_date"] = 10**18

    assert_one_data_letter(system, invoice_like(delivered, far), "due_date", "epoch seconds is outside")


def test_an_amount_beyond_64_bits(system: System, delivered: dict[str, Any]) -> None:
    assert_one_data_letter(system, invoice_like(delivered, line(0, amount=2**63)),
                           "lines[0].amount", "outside signed 64-bit minor units")


def test_a_credit_note_created_before_any_date_a_system_holds(system: System, delivered: dict[str, Any]) -> None:
    note = {"id": f"cn_{uuid.uuid4().hex[:14]}", "object": "credit_note", "invoice": delivered["id"],
            "customer": delivered["customer"], "currency": "usd", "total": 1_000, "created": -(10**15)}
    assert_one_data_letter(system, ("credit_note.created", note), "created", "epoch seconds is outside")


def test_a_name_longer_than_netsuite_takes(system: System, delivered: dict[str, Any]) -> None:
    name = ("Secretive Ltd " * 8_000)[:100 * 1024]  # 100 KB
    customer = {"id": f"cus_{uuid.uuid4().hex[:14]}", "object": "customer", "name": name,
                "email": "ceo@secretive.example", "currency": "usd", "metadata": {}}
    letter = assert_one_data_letter(system, ("customer.created", customer), "companyName",
                                    f"is {len(name)} characters long; netsuite takes at most 83")
    assert letter.target == "netsuite"


def test_an_event_created_at_no_time_is_refused_with_its_reason(system: System) -> None:
    event_id, answer = post(system, "customer.created", {"id": "cus_never", "object": "customer"},
                            created=-(10**15))
    assert answer.status_code == 400
    assert "created: " in answer.json()["error"]["message"]
    assert system.hub.runtime.store.inbox_get("stripe", event_id) is None


def test_an_invoice_in_a_currency_the_netsuite_customer_does_not_take(tmp_path: Path) -> None:
    system = start_system(tmp_path, netsuite={"add_customer_currencies": False})
    try:
        customer = system.stripe.post("/v1/customers", name="Secretive Ltd", email="ceo@secretive.example")
        invoice = system.invoice(customer["id"], [5_000])
        system.settle(lambda: len(system.state("netsuite")["invoice"]) == 1)

        def in_pounds(changed: dict[str, Any]) -> None:
            changed["currency"] = "gbp"
            for item in changed["lines"]["data"]:
                item["currency"] = "gbp"

        letter = assert_one_data_letter(system, invoice_like(invoice, in_pounds), "currency GBP",
                                        "is not among customer")
        assert letter.target == "netsuite"
    finally:
        system.stop()


@pytest.mark.parametrize(("error", "data"), [
    (OverflowError("timestamp out of range for platform time_t"), True),
    (OSError(75, "Value too large for defined data type"), True),
    (KeyError("data"), True),
    (TypeError("unsupported operand"), True),
    (ValueError("invalid literal for int(): 'Jane Doe'"), True),
    (ConnectionResetError(104, "Connection reset by peer"), False),
    (json.JSONDecodeError("Expecting value", "<html>", 0), False),
    (RuntimeError("a defect"), False),
])
def test_translation_failures_on_odd_values_are_data_errors(error: Exception, data: bool) -> None:
    refused = translation_error(error, "stripe invoice.finalized evt_1")
    assert (refused is not None) is data
    if refused is not None:
        assert refused.category is Category.DATA
        assert refused.message.startswith(f"stripe invoice.finalized evt_1: {type(error).__name__}")
        assert "Jane" not in refused.message


def test_a_record_read_back_to_break_a_tie_is_judged_too(system: System) -> None:
    """Two events of one second: the hub re-reads the record, and judges what it read, not the event."""
    created = system.customer("Tied Ltd")
    stored = system.hub.runtime.store
    subject = f"customer/stripe/{created['id']}"
    system.settle(lambda: stored.golden_get(subject) is not None)
    first = stored.golden_get(subject)
    assert first is not None
    system.stripe.post(f"/v1/customers/{created['id']}", name="Secretive Ltd " * 10_000)  # too long for any system
    system.settle()
    same_second = {**created, "name": "Tied Ltd", "object": "customer"}
    event_id, answer = post(system, "customer.updated", same_second, created=first.version // 1_000_000)
    assert answer.status_code == 200, answer.text
    system.settle(lambda: bool(letters_for(system, event_id)))

    [letter] = letters_for(system, event_id)
    assert (letter.category, letter.target, letter.attempts) == ("data", None, 1)
    assert "name is 140000 characters long; no target takes more than 131072" in letter.reason
    golden = stored.golden_get(subject)
    assert golden is not None and golden.data["name"] == "Tied Ltd"


class _NoSettings(BaseModel):
    pass


class _UnknownTypes(BaseConnector):
    """A third party's connector whose translation names an event type no hub knows."""

    name = "unknown-types"
    kind = SystemKind.BILLING
    settings_model = _NoSettings

    def to_canonical(self, ctx: Context, event: InboundEvent, refs: Refs) -> list[Change]:
        return [Change(type="customer.teleported", entity=Customer(id="customer/x/1", name="Jane Doe"))]


def test_a_change_no_hub_can_carry_is_the_translations_data_error() -> None:
    """Not an outage to retry: the connector's output cannot change, so the message ends at once."""
    connector = _UnknownTypes()
    store = open_store("sqlite:///:memory:")
    with httpx.Client() as http:
        pipeline = Pipeline(store=store, plugins=CrossledgerPluginManager(),
                            connectors={connector.name: Bound(connector, Context(_NoSettings(), http, time.time))},
                            policy=OwnershipPolicy([], {connector.name: connector.kind}),
                            router=Router([], {}, set()), lease_ttl_s=30)
        event = {"source_event_id": "evt_1", "type": "customer.moved", "occurred_at": "2026-12-07T10:00:00Z",
                 "payload": {}}
        with pytest.raises(ConnectorError) as raised:
            pipeline.ingest(connector.name, event, "corr-1", time.time())
    store.close()
    assert raised.value.category is Category.DATA
    assert raised.value.message.startswith("unknown-types customer.moved evt_1: VersionError")
    assert "Jane" not in raised.value.message
