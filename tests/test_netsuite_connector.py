"""The NetSuite connector: planning from canonical events, delivery over real HTTP to the
sandbox (one account for the module, like a shared NetSuite sandbox; each test uses its own ids),
and the connector contract suite. Polling is in test_netsuite_polling.py."""

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import httpx
import msgspec
import pytest
from crossledger.canonical.entities import (
    Address,
    CreditMemo,
    Customer,
    Entity,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    Payment,
    PaymentApplication,
    Refund,
    Subscription,
    SubscriptionItem,
)
from crossledger.canonical.events import new_envelope
from crossledger.canonical.money import money, to_decimal
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import Category, ConnectorError, MissingDependency
from crossledger.plugins.netsuite.connector import NetSuiteConnector, NetSuiteSettings
from crossledger.plugins.netsuite.outbound import external_id_for
from crossledger.plugins.netsuite.sandbox import app as sandbox_app
from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox
from crossledger.plugins.types import Capability, Context, Operation, Outcome, SystemKind
from crossledger.testing import ConnectorContract
from pydantic import ValidationError

from tests.kits.netsuite import NetSuiteKit

NETSUITE = NetSuiteConnector()
ISSUED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DUE = datetime(2024, 3, 31, tzinfo=UTC)


class DictRefs:
    """Cross-references held in dicts, the way the hub's store answers them: ``ids`` for NetSuite's,
    ``elsewhere`` for the other systems' (keyed by canonical id and system)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.elsewhere: dict[tuple[str, str], str] = {}

    def external_id(self, canonical_id: str, system: str) -> str | None:
        return self.ids.get(canonical_id) if system == "netsuite" else self.elsewhere.get((canonical_id, system))

    def canonical_id(self, entity_type: str, system: str, external_id: str) -> str:
        known = (cid for cid, eid in self.ids.items() if eid == external_id)
        return next(known, f"{entity_type}/{system}/{external_id}")

    def prefetch(self, lookups: Sequence[tuple[str, str, str]]) -> None:
        pass


# --- canonical records ----------------------------------------------------------------------


def customer(key: str, **fields: Any) -> Customer:
    return Customer(id=f"customer/stripe/cus_{key}", name=f"Acme {key}", **fields)


def invoice(key: str, currency: str = "USD", lines: tuple[int, ...] = (10000,), tax: int = 0,
            discount: int = 0) -> Invoice:
    return Invoice(
        id=f"invoice/stripe/in_{key}",
        customer_id=f"customer/stripe/cus_{key}",
        number=f"INV-{key}",
        currency=currency,
        lines=[InvoiceLine(description=f"Line {n}", amount=money(amount, currency)) for n, amount in enumerate(lines)],
        tax=money(tax, currency),
        discount=money(discount, currency),
        total=money(sum(lines) + tax - discount, currency),
        status="issued",
        issued_at=ISSUED,
        due_at=DUE,
    )


def payment(key: str, amount: int, bill: Invoice) -> Payment:
    return Payment(
        id=f"payment/stripe/inpay_{key}",
        customer_id=bill.customer_id,
        amount=money(amount, bill.currency),
        received_at=DUE,
        applications=[PaymentApplication(invoice_id=bill.id, amount=money(amount, bill.currency))],
    )


def credit_memo(key: str, amount: int, bill: Invoice, applied: int | None = None) -> CreditMemo:
    """A credit of ``amount`` on ``bill``, ``applied`` of it to the bill (None: the source does not say)."""
    return CreditMemo(id=f"creditmemo/stripe/cn_{key}", customer_id=bill.customer_id, invoice_id=bill.id,
                      amount=money(amount, bill.currency), credited_total=bill.total,
                      applied=None if applied is None else money(applied, bill.currency), reason="Goodwill",
                      issued_at=DUE)


def refund(key: str, amount: int, bill: Invoice, *, memo: CreditMemo | None = None, paid: Payment | None = None,
           reason: str | None = None) -> Refund:
    return Refund(id=f"refund/stripe/re_{key}", customer_id=bill.customer_id, amount=money(amount, bill.currency),
                  paid_total=bill.total, payment_id=paid.id if paid else None, invoice_id=bill.id,
                  credit_memo_id=memo.id if memo else None, reason=reason, issued_at=DUE)


def journal(key: str, currency: str, debit: int, credit: int) -> JournalEntry:
    return JournalEntry(id=f"journalentry/stripe/po_{key}", currency=currency, memo="Payout fees", posted_at=DUE,
                        lines=[JournalLine(account="fees", debit=money(debit, currency), memo="Stripe fees"),
                               JournalLine(account="cash", credit=money(credit, currency))])


def subscription(key: str, tier: str, status: Literal["active", "canceled"], unit_amount: int,
                 quantity: int = 1) -> Subscription:
    return Subscription(id=f"subscription/stripe/sub_{key}", customer_id=f"customer/stripe/cus_{key}",
                        currency="JPY", status=status, plan_tier=tier,
                        items=[SubscriptionItem(plan=f"{tier}-monthly", quantity=quantity,
                                                unit_amount=money(unit_amount, "JPY"))],
                        current_period_start=ISSUED, current_period_end=DUE)


def plan(ctx: Context, refs: DictRefs, event_type: str, entity: Entity) -> list[Operation]:
    event = new_envelope(type=event_type, source="stripe", source_event_id=uuid.uuid4().hex, data=entity,
                         occurred_at=ISSUED)
    operations: list[Operation] = NETSUITE.plan(ctx, event, refs)
    return operations


def deliver(ctx: Context, refs: DictRefs, event_type: str, entity: Entity) -> list[Outcome]:
    """Plan and execute like the hub: each outcome becomes a cross-reference."""
    outcomes = []
    for op in plan(ctx, refs, event_type, entity):
        outcome = NETSUITE.execute(ctx, op, f"key-{op.canonical_id}")
        refs.ids[op.canonical_id] = outcome.external_id
        outcomes.append(outcome)
    return outcomes


# --- fixtures (server, http and no_faults_left are in conftest.py) ----------------------------

pytestmark = pytest.mark.usefixtures("no_faults_left")



@pytest.fixture(scope="module")
def sandbox() -> NetSuiteSandbox:
    return NetSuiteSandbox()


def context_for(sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client, **overrides: Any) -> Context:
    settings = NetSuiteSettings(**(sandbox.connector_settings(server.url) | overrides))
    return Context(settings=settings, http=http, clock=time.time)


@pytest.fixture
def ctx(sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client) -> Context:
    return context_for(sandbox, server, http)


@pytest.fixture
def refs() -> DictRefs:
    return DictRefs()


@pytest.fixture
def key() -> str:
    """A fresh suffix for canonical ids, so tests sharing the account never meet."""
    return uuid.uuid4().hex[:10]


def fault(server: ServerThread, **spec: Any) -> None:
    httpx.post(f"{server.url}/_sandbox/faults", json=spec).raise_for_status()


def with_external_id(sandbox: NetSuiteSandbox, record_type: str, canonical_id: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.state()[record_type] if r.get("externalId") == external_id_for(canonical_id)]


# --- declaration and settings ---------------------------------------------------------------


def test_declares_an_erp_that_delivers_probes_polls_and_fetches() -> None:
    assert (NETSUITE.name, NETSUITE.kind) == ("netsuite", SystemKind.ERP)
    assert NETSUITE.capabilities == {Capability.DELIVER, Capability.PROBE, Capability.POLL, Capability.FETCH,
                                     Capability.SANDBOX, Capability.LIST}


def test_settings_refuse_unknown_keys_and_hide_secrets(sandbox: NetSuiteSandbox) -> None:
    settings = NetSuiteSettings(**sandbox.connector_settings("https://1234567.suitetalk.api.netsuite.com"))

    with pytest.raises(ValidationError, match="extra"):
        NetSuiteSettings(**sandbox.connector_settings("https://x"), realm="oops")
    assert sandbox.credentials.token_secret not in repr(settings)
    assert (settings.currencies["JPY"], settings.item_id, settings.timeout_s) == ("5", "1", 10)


# --- planning -------------------------------------------------------------------------------


def test_customer_upsert_body(ctx: Context, refs: DictRefs) -> None:
    acme = customer("1", email="ap@acme.test", currency="GBP", address=Address(line1="1 Main St", country="GB"),
                    dimensions={"terms": "2", "subsidiary": "2", "department": "7"})

    [op] = plan(ctx, refs, "customer.upserted", acme)

    assert (op.name, op.entity_type, op.canonical_id) == ("customer.upsert", "customer", acme.id)
    assert op.payload == {
        "method": "PUT",
        "path": "/record/v1/customer/eid:customer.stripe.cus_1",
        "body": {
            "externalId": "customer.stripe.cus_1",
            "companyName": "Acme 1",
            "email": "ap@acme.test",
            "subsidiary": {"id": "2"},  # the customer's dimension wins over the default
            "currency": {"id": "2"},
            "addressBook": {"items": [{"defaultBilling": True, "defaultShipping": True,
                                       "addressBookAddress": {"addr1": "1 Main St", "country": "GB"}}]},
            "terms": {"id": "2"},
        },
        "params": {"replace": "addressBook"},  # a repeat must not pile up addresses
    }


def test_a_new_customer_lands_in_its_own_subsidiary_with_its_tax_registration(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    acme = customer(key, tax_id="GB123456789", dimensions={"subsidiary": "2"})

    [outcome] = deliver(ctx, refs, "customer.upserted", acme)

    record = NETSUITE.fetch(ctx, "customer", outcome.external_id)
    assert (record["subsidiary"]["id"], record["vatRegNumber"]) == ("2", "GB123456789")
    assert record["creditHoldOverride"]["id"] == "AUTO"  # NetSuite's default: the credit limit decides


def test_a_customer_without_a_tax_registration_sends_none(ctx: Context, refs: DictRefs) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer("3"))

    assert "vatRegNumber" not in op.payload["body"]


def test_an_update_leaves_the_erp_owned_subsidiary_alone(ctx: Context, refs: DictRefs) -> None:
    acme = customer("2")
    [create] = plan(ctx, refs, "customer.upserted", acme)
    refs.ids[acme.id] = "901"  # NetSuite now knows it; an operator may have moved its subsidiary

    [update] = plan(ctx, refs, "customer.upserted", acme)

    assert create.payload["body"]["subsidiary"] == {"id": "1"}
    assert "subsidiary" not in update.payload["body"]


@pytest.mark.parametrize(
    ("currency", "lines", "tax", "discount", "amounts"),
    [
        ("USD", (1999, 1), 200, 100, ["19.99", "0.01", "2.00", "-1.00"]),
        ("JPY", (1500,), 150, 0, ["1500", "150"]),
        ("KWD", (1234, 1000), 0, 234, ["1.234", "1.000", "-0.234"]),
    ],
)
def test_invoice_amounts_leave_as_exact_decimals(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str, currency: str, lines: tuple[int, ...],
    tax: int, discount: int, amounts: list[str],
) -> None:
    bill = invoice(key, currency, lines, tax, discount)
    deliver(ctx, refs, "customer.upserted", customer(key, currency=currency))

    [op] = plan(ctx, refs, "invoice.issued", bill)
    deliver(ctx, refs, "invoice.issued", bill)

    body = op.payload["body"]
    assert [str(line["amount"]) for line in body["item"]["items"]] == amounts
    assert [line["item"]["id"] for line in body["item"]["items"]] == (
        ["1"] * len(lines) + ["2"] * (tax > 0) + ["3"] * (discount > 0))
    assert (body["entity"], body["tranId"], body["tranDate"], body["dueDate"]) == (
        {"id": refs.ids[bill.customer_id]}, f"INV-{key}", "2024-03-01", "2024-03-31")
    record = NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])
    assert record["total"] == to_decimal(bill.total) == record["amountRemaining"]


def test_an_invoice_needs_its_customer_first(ctx: Context, refs: DictRefs) -> None:
    bill = invoice("1")

    with pytest.raises(MissingDependency) as missing:
        plan(ctx, refs, "invoice.issued", bill)

    assert (missing.value.entity_type, missing.value.canonical_id) == ("customer", bill.customer_id)


@pytest.mark.parametrize("event_type", ["invoice.voided", "payment.settled", "credit_memo.issued"])
def test_settling_an_invoice_needs_the_invoice_first(ctx: Context, refs: DictRefs, event_type: str) -> None:
    bill = invoice("1")
    refs.ids[bill.customer_id] = "1"
    entity = {"invoice.voided": bill, "payment.settled": payment("1", 100, bill),
              "credit_memo.issued": credit_memo("1", 100, bill)}[event_type]

    with pytest.raises(MissingDependency) as missing:
        plan(ctx, refs, event_type, entity)

    assert (missing.value.entity_type, missing.value.canonical_id) == ("invoice", bill.id)


def test_an_unmapped_currency_is_a_data_error(ctx: Context, refs: DictRefs) -> None:
    bill = invoice("1", currency="CHF")
    refs.ids[bill.customer_id] = "1"

    with pytest.raises(ConnectorError, match="CHF") as error:
        plan(ctx, refs, "invoice.issued", bill)

    assert error.value.category is Category.DATA


@pytest.mark.parametrize("event_type", ["invoice.posted", "entitlement.changed"])
def test_other_events_plan_nothing(ctx: Context, refs: DictRefs, event_type: str) -> None:
    entity = invoice("1") if event_type.startswith("invoice") else customer("1")

    assert plan(ctx, refs, event_type, entity) == []


# --- delivery -------------------------------------------------------------------------------


def test_executing_the_same_operation_twice_writes_one_record(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str
) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer(key))

    first, second = NETSUITE.execute(ctx, op, "k"), NETSUITE.execute(ctx, op, "k")

    assert first.created and not second.created
    assert first.external_id == second.external_id
    assert [r["id"] for r in with_external_id(sandbox, "customer", op.canonical_id)] == [first.external_id]


def test_repeating_an_invoice_upsert_keeps_one_set_of_lines(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str
) -> None:
    bill = invoice(key, lines=(10000, 2500), tax=500)
    deliver(ctx, refs, "customer.upserted", customer(key, currency="USD"))
    [op] = plan(ctx, refs, "invoice.issued", bill)

    NETSUITE.execute(ctx, op, "k")
    NETSUITE.execute(ctx, op, "k")  # a dependency re-delivery, a resend after a failed probe, a replay

    [record] = with_external_id(sandbox, "invoice", op.canonical_id)
    assert len(record["item"]["items"]) == 3
    assert record["total"] == to_decimal(bill.total)


def test_order_to_cash(ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str) -> None:
    bill = invoice(key, lines=(10000,), tax=800, discount=300)  # 105.00
    deliver(ctx, refs, "customer.upserted", customer(key, currency="USD"))
    deliver(ctx, refs, "invoice.issued", bill)

    deliver(ctx, refs, "payment.settled", payment(f"{key}a", 5000, bill))
    deliver(ctx, refs, "credit_memo.issued", credit_memo(key, 2000, bill))
    half_paid = NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])
    [last] = deliver(ctx, refs, "payment.settled", payment(f"{key}b", 3500, bill))

    assert (half_paid["amountRemaining"], half_paid["status"]["refName"]) == (Decimal("35.00"), "Open")
    paid = NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])
    assert (paid["amountRemaining"], paid["status"]["refName"]) == (0, "Paid In Full")
    received = NETSUITE.fetch(ctx, "payment", last.external_id)
    assert (received["payment"], received["apply"]["items"][0]["doc"]["id"]) == (Decimal("35.00"), paid["id"])


def test_a_document_in_a_currency_its_customer_lacks_adds_the_currency_to_the_customer(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str
) -> None:
    deliver(ctx, refs, "customer.upserted", customer(key, currency="USD"))
    deliver(ctx, refs, "invoice.issued", invoice(key, currency="USD"))
    in_euros = msgspec.structs.replace(invoice(key, currency="EUR"), id=f"invoice/stripe/in_{key}b", number=f"{key}b")

    [outcome] = deliver(ctx, refs, "invoice.issued", in_euros)

    assert NETSUITE.fetch(ctx, "invoice", outcome.external_id)["currency"]["refName"] == "EUR"
    held = NETSUITE.fetch(ctx, "customer", refs.ids[f"customer/stripe/cus_{key}"])
    assert held["currency"]["refName"] == "USD"  # NetSuite refuses to change it once it has transactions
    assert [line["currency"]["refName"] for line in held["currencyList"]["items"]] == ["EUR"]


def test_a_customers_first_document_fixes_its_primary_currency_as_billing_does(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    """Billing's update of the customer's currency may arrive after its first bill: the bill's
    currency becomes the primary one, so NetSuite computes the customer's balance in it."""
    [created] = deliver(ctx, refs, "customer.upserted", customer(key))  # the subsidiary's USD, by default

    deliver(ctx, refs, "invoice.issued", invoice(key, currency="EUR"))
    deliver(ctx, refs, "customer.upserted", customer(key, currency="EUR"))

    held = NETSUITE.fetch(ctx, "customer", created.external_id)
    assert (held["currency"]["refName"], held["balance"]) == ("EUR", Decimal("100.00"))
    assert "currencyList" not in held


def test_a_customers_primary_currency_follows_billing_until_its_first_transaction_and_is_listed_after(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    [created] = deliver(ctx, refs, "customer.upserted", customer(key))
    deliver(ctx, refs, "customer.upserted", customer(key, currency="GBP"))
    deliver(ctx, refs, "invoice.issued", invoice(key, currency="GBP"))

    deliver(ctx, refs, "customer.upserted", customer(key, currency="EUR"))
    deliver(ctx, refs, "customer.upserted", customer(key, currency="EUR"))  # listed once, however often sent

    held = NETSUITE.fetch(ctx, "customer", created.external_id)
    assert held["currency"]["refName"] == "GBP"  # NetSuite refuses to change it once it has transactions
    assert [line["currency"]["refName"] for line in held["currencyList"]["items"]] == ["EUR"]


def test_without_adding_currencies_a_document_in_one_its_customer_lacks_is_a_data_error(
    sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client, refs: DictRefs, key: str
) -> None:
    ctx = context_for(sandbox, server, http, add_customer_currencies=False)
    deliver(ctx, refs, "customer.upserted", customer(key, currency="USD"))

    with pytest.raises(ConnectorError) as refused:
        deliver(ctx, refs, "invoice.issued", invoice(key, currency="EUR"))

    assert refused.value.category is Category.DATA
    assert "currency EUR is not among customer" in refused.value.message
    assert with_external_id(sandbox, "invoice", f"invoice/stripe/in_{key}") == []


def test_a_void_credits_the_whole_invoice(ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str) -> None:
    bill = invoice(key, currency="KWD", lines=(1234,))
    deliver(ctx, refs, "customer.upserted", customer(key))
    deliver(ctx, refs, "invoice.issued", bill)

    [op] = plan(ctx, refs, "invoice.voided", bill)
    deliver(ctx, refs, "invoice.voided", bill)

    assert (op.name, op.entity_type, op.payload["path"]) == (
        "invoice.void", "creditmemo", f"/record/v1/creditmemo/eid:invoice.stripe.in_{key}.void")
    assert op.canonical_id != bill.id  # its cross-reference must not replace the invoice's
    [memo] = with_external_id(sandbox, "creditmemo", f"{bill.id}.void")
    assert (memo["total"], memo["apply"]["items"][0]["amount"]) == (1.234, 1.234)
    assert NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])["amountRemaining"] == 0


@pytest.mark.parametrize("event_type", ["customer.deleted", "customer.deactivated"])
def test_a_deleted_or_deactivated_customer_is_made_inactive(
    ctx: Context, refs: DictRefs, key: str, event_type: str
) -> None:
    gone = customer(key, status="deleted")
    assert plan(ctx, refs, event_type, gone) == []  # never sent: nothing to do
    deliver(ctx, refs, "customer.upserted", customer(key))

    [op] = plan(ctx, refs, event_type, gone)
    [outcome] = deliver(ctx, refs, event_type, gone)

    assert (op.name, op.payload) == ("customer.deactivate", {
        "method": "PATCH", "path": f"/record/v1/customer/{refs.ids[gone.id]}", "body": {"isInactive": True}})
    assert outcome == Outcome(external_id=refs.ids[gone.id], created=False)
    assert NETSUITE.fetch(ctx, "customer", outcome.external_id)["isInactive"] is True


def test_a_suspension_puts_the_customer_on_credit_hold_and_reinstating_releases_it(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    acme = customer(key)
    with pytest.raises(MissingDependency) as missing:  # NetSuite does not have the customer yet
        plan(ctx, refs, "customer.suspended", acme)
    [made] = deliver(ctx, refs, "customer.upserted", acme)
    path = f"/record/v1/customer/{made.external_id}"

    [hold] = plan(ctx, refs, "customer.suspended", acme)
    deliver(ctx, refs, "customer.suspended", acme)
    held = NETSUITE.fetch(ctx, "customer", made.external_id)
    [release] = plan(ctx, refs, "customer.reinstated", acme)
    [released] = deliver(ctx, refs, "customer.reinstated", acme)

    assert (missing.value.entity_type, missing.value.canonical_id) == ("customer", acme.id)
    assert (hold.name, hold.payload) == ("customer.credit_hold", {
        "method": "PATCH", "path": path, "body": {"creditHoldOverride": {"id": "ON"}}})
    assert (release.name, release.payload) == ("customer.release_hold", {
        "method": "PATCH", "path": path, "body": {"creditHoldOverride": {"id": "AUTO"}}})
    assert held["creditHoldOverride"]["id"] == "ON"
    assert NETSUITE.fetch(ctx, "customer", released.external_id)["creditHoldOverride"]["id"] == "AUTO"


def test_a_credit_memo_applies_to_its_own_invoice_exactly_what_the_source_says(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    bill = invoice(key, lines=(10000,))
    other = msgspec.structs.replace(bill, id=f"{bill.id}b", number=f"INV-{key}b")  # the same customer's
    deliver(ctx, refs, "customer.upserted", customer(key, currency="USD"))
    deliver(ctx, refs, "invoice.issued", bill)
    deliver(ctx, refs, "invoice.issued", other)
    [op] = plan(ctx, refs, "credit_memo.issued", credit_memo(key, 5000, other, applied=3000))

    first = NETSUITE.execute(ctx, op, "k")
    again = NETSUITE.execute(ctx, op, "k")  # a repeat must land the same, not see its own application as taken

    memo = NETSUITE.fetch(ctx, "creditmemo", first.external_id)
    assert again.external_id == first.external_id
    assert [(line["doc"]["id"], line["amount"]) for line in memo["apply"]["items"]] == [
        (refs.ids[other.id], Decimal("30.00"))]
    assert (memo["total"], memo["unapplied"]) == (Decimal("50.00"), Decimal("20.00"))
    assert NETSUITE.fetch(ctx, "invoice", refs.ids[other.id])["amountRemaining"] == Decimal("70.00")
    assert NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])["amountRemaining"] == Decimal("100.00")


def test_a_credit_memo_delivered_before_the_payment_leaves_the_payment_room_to_apply_in_full(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    """A credit note issued after the invoice was paid reaches NetSuite first (deliveries of two
    events are not ordered): its memo must not take the open balance the payment settles."""
    bill = invoice(key, "JPY", (5000,))
    deliver(ctx, refs, "customer.upserted", customer(key, currency="JPY"))
    deliver(ctx, refs, "invoice.issued", bill)

    [credited] = deliver(ctx, refs, "credit_memo.issued", credit_memo(key, 1234, bill, applied=0))
    [paid] = deliver(ctx, refs, "payment.settled", payment(key, 5000, bill))

    memo = NETSUITE.fetch(ctx, "creditmemo", credited.external_id)
    assert (memo["apply"]["items"], memo["unapplied"]) == ([], Decimal(1234))
    assert NETSUITE.fetch(ctx, "payment", paid.external_id)["apply"]["items"][0]["amount"] == Decimal(5000)
    assert NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])["amountRemaining"] == 0


def test_a_credit_memo_the_invoice_has_no_room_for_is_refused_not_cut_down(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    bill = invoice(key, "JPY", (5000,))
    deliver(ctx, refs, "customer.upserted", customer(key, currency="JPY"))
    deliver(ctx, refs, "invoice.issued", bill)
    deliver(ctx, refs, "payment.settled", payment(key, 4000, bill))

    no_room = r"HTTP 400 Bad Request: USER_ERROR at apply\.items\[0\]\.amount"  # NetSuite's words stay out
    with pytest.raises(ConnectorError, match=no_room) as refused:
        deliver(ctx, refs, "credit_memo.issued", credit_memo(key, 1234, bill))  # the source does not say: all

    assert refused.value.category is Category.DATA
    assert NETSUITE.fetch(ctx, "invoice", refs.ids[bill.id])["amountRemaining"] == Decimal(1000)


def test_linking_writes_only_the_other_systems_ids(ctx: Context, refs: DictRefs, key: str) -> None:
    acme = customer(key, email="ap@acme.test")
    assert plan(ctx, refs, "customer.linked", acme) == []  # no other system has an id for it yet
    refs.elsewhere[(acme.id, "salesforce")] = "001Dn00000AbCdE"
    with pytest.raises(MissingDependency) as missing:  # NetSuite does not have the customer yet
        plan(ctx, refs, "customer.linked", acme)
    deliver(ctx, refs, "customer.upserted", acme)
    refs.elsewhere[(acme.id, "zendesk")] = "36112871231"

    renamed = msgspec.structs.replace(acme, name="Not this event's to write", email="other@acme.test")
    [op] = plan(ctx, refs, "customer.linked", renamed)
    [outcome] = deliver(ctx, refs, "customer.linked", renamed)

    assert missing.value.canonical_id == acme.id
    assert op.payload == {"method": "PATCH", "path": f"/record/v1/customer/{refs.ids[acme.id]}",
                          "body": {"custentity_cl_salesforce_id": "001Dn00000AbCdE",
                                   "custentity_cl_zendesk_id": "36112871231"}}
    record = NETSUITE.fetch(ctx, "customer", outcome.external_id)
    assert (record["custentity_cl_salesforce_id"], record["custentity_cl_zendesk_id"]) == (
        "001Dn00000AbCdE", "36112871231")
    assert (record["companyName"], record["email"]) == (acme.name, "ap@acme.test")
    assert "custentity_cl_stripe_id" not in record


def test_records_pages_through_suiteql_by_id_never_past_its_result_limit(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of ``page_size`` rows, each a query after the last id read: no result set is paged as
    far as NetSuite's limit (100,000, here 4), however many records there are."""
    monkeypatch.setattr(sandbox_app, "MAX_RESULTS", 4)
    made = [deliver(ctx, refs, "customer.upserted", customer(f"{key}{n}"))[0].external_id for n in range(5)]
    bill = invoice(key, "USD", (1050,))
    deliver(ctx, refs, "customer.upserted", customer(key))
    deliver(ctx, refs, "invoice.issued", bill)

    listed = list(NETSUITE.records(ctx, "customer", page_size=2))

    ids = [record["id"] for record in listed]
    assert ids == sorted({str(record["id"]) for record in sandbox.state()["customer"]}, key=int)
    assert set(made) <= set(ids)
    mine = next(record for record in listed if record["id"] == made[0])
    assert mine["companyName"] and mine["currency"] == {"id": "1", "refName": "USD"}
    assert mine["lastModifiedDate"].endswith("Z")
    [booked] = [record for record in NETSUITE.records(ctx, "invoice", page_size=2)
                if record["externalId"] == external_id_for(bill.id)]
    assert (booked["total"], booked["amountRemaining"]) == ("10.5", "10.5")
    assert NETSUITE.project("invoice", booked).values["total"] == 1050
    with pytest.raises(ConnectorError, match="not 'journalentry'"):
        list(NETSUITE.records(ctx, "journalentry"))


def test_a_page_lists_what_changed_since_by_lastmodifieddate_and_resumes_at_its_cursor(
    ctx: Context, refs: DictRefs, key: str
) -> None:
    """``since`` is NetSuite's own filter (``lastmodifieddate``): a record made or edited at or
    after it is listed, one untouched since is not; a page's cursor is the next page's start."""
    before = [deliver(ctx, refs, "customer.upserted", customer(f"{key}{n}"))[0].external_id for n in range(3)]
    time.sleep(1.1)  # NetSuite stamps whole seconds
    since = datetime.now(UTC)
    made = deliver(ctx, refs, "customer.upserted", customer(f"{key}new"))[0].external_id
    deliver(ctx, refs, "customer.upserted", customer(f"{key}0", email="renamed@acme.test"))

    changed = list(NETSUITE.records_page(ctx, "customer", since=since).records)
    first = NETSUITE.records_page(ctx, "customer", since=since, page_size=1)
    second = NETSUITE.records_page(ctx, "customer", since=since, page_size=1, cursor=first.next)

    assert {record["id"] for record in changed} == {made, before[0]}
    assert [first.records[0]["id"], second.records[0]["id"]] == sorted([made, before[0]], key=int)
    assert first.next == first.records[0]["id"] and second.next is None
    assert "customer" in NETSUITE.lists_since


# --- refunds --------------------------------------------------------------------------------

EXACT = [("USD", 10500, 4000, "40.00"), ("JPY", 15000, 4000, "4000"), ("KWD", 10500, 4001, "4.001")]


@pytest.mark.parametrize(("currency", "total", "refunded", "exact"), EXACT)
def test_a_refund_pays_out_a_credit_memo(
    ctx: Context, refs: DictRefs, key: str, currency: str, total: int, refunded: int, exact: str
) -> None:
    """A Stripe credit note that refunds a paid invoice: the credit memo cannot apply to the paid
    invoice, so it stays on the customer's account and the customer refund pays it out."""
    bill = invoice(key, currency, (total,))
    deliver(ctx, refs, "customer.upserted", customer(key, currency=currency))
    deliver(ctx, refs, "invoice.issued", bill)
    deliver(ctx, refs, "payment.settled", payment(key, total, bill))
    note = credit_memo(key, refunded, bill, applied=0)
    deliver(ctx, refs, "credit_memo.issued", note)
    given_back = refund(key, refunded, bill, memo=note, reason="requested_by_customer")

    [op] = plan(ctx, refs, "refund.issued", given_back)
    [outcome] = deliver(ctx, refs, "refund.issued", given_back)

    assert (op.name, op.entity_type, op.payload["path"]) == (
        "refund.upsert", "refund", f"/record/v1/customerrefund/eid:refund.stripe.re_{key}")
    body = op.payload["body"]
    [line] = body["apply"]["items"]
    assert (line["doc"], str(line["amount"])) == ({"id": refs.ids[note.id]}, exact)
    assert (body["customer"], body["account"]) == ({"id": refs.ids[bill.customer_id]}, {"id": "10"})
    assert body["memo"] == f"Refund for invoice {bill.id}: requested_by_customer"
    assert NETSUITE.fetch(ctx, "refund", outcome.external_id)["total"] == Decimal(exact)
    assert NETSUITE.fetch(ctx, "creditmemo", refs.ids[note.id])["unapplied"] == 0
    with pytest.raises(ConnectorError, match="USER_ERROR") as over:  # nothing left on the credit memo
        deliver(ctx, refs, "refund.issued", refund(f"{key}x", 1, bill, memo=note))
    assert over.value.category is Category.DATA


@pytest.mark.parametrize(("currency", "total", "refunded", "exact"), EXACT)
def test_a_refund_returns_what_a_payment_left_unapplied(
    ctx: Context, refs: DictRefs, key: str, currency: str, total: int, refunded: int, exact: str
) -> None:
    bill = invoice(key, currency, (total,))
    deliver(ctx, refs, "customer.upserted", customer(key, currency=currency))
    deliver(ctx, refs, "invoice.issued", bill)
    overpaid = msgspec.structs.replace(payment(key, total, bill), amount=money(total + refunded, currency))
    deliver(ctx, refs, "payment.settled", overpaid)
    given_back = refund(key, refunded, bill, paid=overpaid)

    [outcome] = deliver(ctx, refs, "refund.issued", given_back)
    [again] = deliver(ctx, refs, "refund.issued", given_back)

    assert again.external_id == outcome.external_id and not again.created
    record = NETSUITE.fetch(ctx, "refund", outcome.external_id)
    assert [(line["doc"]["id"], str(line["amount"])) for line in record["apply"]["items"]] == [
        (refs.ids[overpaid.id], exact)]
    assert NETSUITE.fetch(ctx, "payment", refs.ids[overpaid.id])["unapplied"] == 0
    with pytest.raises(ConnectorError, match="USER_ERROR") as over:
        deliver(ctx, refs, "refund.issued", refund(f"{key}x", 1, bill, paid=overpaid))
    assert over.value.category is Category.DATA


def test_only_a_refund_that_succeeded_is_booked(ctx: Context, refs: DictRefs, key: str) -> None:
    """A pending refund is booked when it succeeds, under the same record; one that failed or was
    canceled moved no money, so it is never booked (and needs none of the records it names)."""
    bill = invoice(key, "USD", (5000,))
    for status in ("failed", "canceled"):
        assert plan(ctx, refs, "refund.issued", msgspec.structs.replace(refund(f"{key}{status}", 100, bill),
                                                                        status=status)) == []
    deliver(ctx, refs, "customer.upserted", customer(key))
    deliver(ctx, refs, "invoice.issued", bill)
    overpaid = msgspec.structs.replace(payment(key, 5000, bill), amount=money(5700, "USD"))
    deliver(ctx, refs, "payment.settled", overpaid)
    pending = msgspec.structs.replace(refund(key, 700, bill, paid=overpaid), status="pending")

    assert plan(ctx, refs, "refund.issued", pending) == []
    [booked] = deliver(ctx, refs, "refund.issued", msgspec.structs.replace(pending, status="succeeded"))

    assert booked.created and refs.ids[pending.id] == booked.external_id
    assert NETSUITE.fetch(ctx, "refund", booked.external_id)["total"] == Decimal("7.00")
    assert NETSUITE.fetch(ctx, "payment", refs.ids[overpaid.id])["unapplied"] == 0


def test_a_refund_needs_the_document_it_pays_out(ctx: Context, refs: DictRefs, key: str) -> None:
    bill = invoice(key)
    refs.ids[bill.customer_id] = "1"
    memo, paid = credit_memo(key, 100, bill), payment(key, 100, bill)

    with pytest.raises(MissingDependency) as no_memo:
        plan(ctx, refs, "refund.issued", refund(key, 100, bill, memo=memo, paid=paid))
    with pytest.raises(MissingDependency) as no_payment:
        plan(ctx, refs, "refund.issued", refund(key, 100, bill, paid=paid))
    with pytest.raises(ConnectorError, match="neither") as neither:
        plan(ctx, refs, "refund.issued", refund(key, 100, bill))

    assert (no_memo.value.entity_type, no_memo.value.canonical_id) == ("creditmemo", memo.id)
    assert (no_payment.value.entity_type, no_payment.value.canonical_id) == ("payment", paid.id)
    assert neither.value.category is Category.DATA


# --- the ledger and subscriptions -----------------------------------------------------------


@pytest.fixture
def ledger_ctx(sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client) -> Context:
    """An account whose ledger accounts ``fees`` and ``cash`` are mapped (to Sales and Checking)."""
    return context_for(sandbox, server, http, accounts={"fees": "14", "cash": "10"})


def test_a_balanced_journal_entry_posts_its_lines_exactly(ledger_ctx: Context, refs: DictRefs, key: str) -> None:
    entry = journal(key, "KWD", 1234, 1234)

    [op] = plan(ledger_ctx, refs, "journal_entry.posted", entry)
    [outcome] = deliver(ledger_ctx, refs, "journal_entry.posted", entry)
    [again] = deliver(ledger_ctx, refs, "journal_entry.posted", entry)

    assert op.payload == {
        "method": "PUT",
        "path": f"/record/v1/journalentry/eid:journalentry.stripe.po_{key}",
        "body": {"externalId": f"journalentry.stripe.po_{key}", "subsidiary": {"id": "1"}, "currency": {"id": "6"},
                 "tranDate": "2024-03-31", "memo": "Payout fees",
                 "line": {"items": [{"account": {"id": "14"}, "debit": Decimal("1.234"), "memo": "Stripe fees"},
                                    {"account": {"id": "10"}, "credit": Decimal("1.234")}]}},
        "params": {"replace": "line"},
    }
    record = NETSUITE.fetch(ledger_ctx, "journalentry", outcome.external_id)
    assert again.external_id == outcome.external_id
    lines = record["line"]["items"]
    assert [(line["account"]["refName"], line.get("debit"), line.get("credit")) for line in lines] == [
        ("Sales", Decimal("1.234"), None), ("Checking", None, Decimal("1.234"))]


def test_an_unbalanced_journal_entry_is_refused_as_data(
    ledger_ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str
) -> None:
    entry = journal(key, "USD", 1000, 999)  # the hub's invariants catch this first; NetSuite is the backstop
    [op] = plan(ledger_ctx, refs, "journal_entry.posted", entry)

    with pytest.raises(ConnectorError, match=r"HTTP 400 Bad Request: USER_ERROR at line$") as error:
        NETSUITE.execute(ledger_ctx, op, "k")

    assert (error.value.category, error.value.status) == (Category.DATA, 400)
    assert with_external_id(sandbox, "journalentry", entry.id) == []


def test_a_journal_line_on_an_unmapped_account_is_a_data_error(ctx: Context, refs: DictRefs, key: str) -> None:
    with pytest.raises(ConnectorError, match="ledger account fees") as error:
        plan(ctx, refs, "journal_entry.posted", journal(key, "USD", 100, 100))

    assert error.value.category is Category.DATA


def test_a_subscription_is_one_custom_record_however_often_it_changes(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str
) -> None:
    deliver(ctx, refs, "customer.upserted", customer(key, currency="JPY"))
    created = subscription(key, "pro", "active", 5000, quantity=2)

    [op] = plan(ctx, refs, "subscription.created", created)
    [first] = deliver(ctx, refs, "subscription.created", created)
    [again] = deliver(ctx, refs, "subscription.created", created)
    deliver(ctx, refs, "subscription.amended", subscription(key, "enterprise", "active", 20000))
    [last] = deliver(ctx, refs, "subscription.cancelled", subscription(key, "enterprise", "canceled", 20000))

    assert op.payload == {
        "method": "PUT",
        "path": f"/record/v1/customrecord_cl_subscription/eid:subscription.stripe.sub_{key}",
        "body": {"externalId": f"subscription.stripe.sub_{key}", "name": created.id,
                 "custrecord_cl_customer": {"id": refs.ids[created.customer_id]}, "custrecord_cl_plan_tier": "pro",
                 "custrecord_cl_status": "active", "custrecord_cl_recurring_amount": Decimal(10000),
                 "custrecord_cl_currency": {"id": "5"}, "custrecord_cl_period_start": "2024-03-01",
                 "custrecord_cl_period_end": "2024-03-31"},
    }
    assert first.created and not again.created and not last.created
    [record] = with_external_id(sandbox, "customrecord_cl_subscription", created.id)
    assert first.external_id == again.external_id == last.external_id == record["id"]
    assert (record["custrecord_cl_plan_tier"], record["custrecord_cl_status"],
            record["custrecord_cl_recurring_amount"]) == ("enterprise", "canceled", 20000)


def test_a_subscription_record_carries_its_contract(
    ctx: Context, refs: DictRefs, sandbox: NetSuiteSandbox, key: str
) -> None:
    deliver(ctx, refs, "customer.upserted", customer(key, currency="JPY"))
    signed = msgspec.structs.replace(subscription(key, "pro", "active", 5000), contract_term_months=12,
                                     contract_owner="jane@acme.test", legal_entity="Acme KK")
    unsigned = subscription(key, "pro", "active", 5000)  # the contract group unset: left as it is

    [op] = plan(ctx, refs, "subscription.created", signed)
    deliver(ctx, refs, "subscription.created", signed)
    [rewrite] = plan(ctx, refs, "subscription.amended", unsigned)
    deliver(ctx, refs, "subscription.amended", unsigned)

    contract = {"custrecord_cl_contract_term": 12, "custrecord_cl_contract_owner": "jane@acme.test",
                "custrecord_cl_legal_entity": "Acme KK"}
    assert op.payload["body"].items() >= contract.items()
    assert not rewrite.payload["body"].keys() & contract.keys()
    [record] = with_external_id(sandbox, "customrecord_cl_subscription", signed.id)
    assert {name: record[name] for name in contract} == contract


# --- ambiguity and probing ------------------------------------------------------------------


def test_probe_finds_a_write_whose_answer_was_lost(
    sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client, refs: DictRefs, key: str
) -> None:
    ctx = context_for(sandbox, server, http, timeout_s=0.5)
    [op] = plan(ctx, refs, "customer.upserted", customer(key))
    fault(server, mode="timeout_after_commit", count=1, latency_ms=1500)

    with pytest.raises(ConnectorError) as error:
        NETSUITE.execute(ctx, op, "k")
    found = NETSUITE.probe(ctx, op, "k")

    assert error.value.category is Category.AMBIGUOUS
    [record] = with_external_id(sandbox, "customer", op.canonical_id)
    assert found is not None and found.external_id == record["id"]


def test_probe_finds_a_credit_hold_whose_answer_was_lost(
    sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client, refs: DictRefs, key: str
) -> None:
    ctx = context_for(sandbox, server, http, timeout_s=0.5)
    acme = customer(key)
    deliver(ctx, refs, "customer.upserted", acme)
    [hold] = plan(ctx, refs, "customer.suspended", acme)
    assert NETSUITE.probe(ctx, hold, "k") is None  # the customer is there, not on hold yet
    fault(server, mode="timeout_after_commit", count=1, latency_ms=1500)

    with pytest.raises(ConnectorError) as error:
        NETSUITE.execute(ctx, hold, "k")
    found = NETSUITE.probe(ctx, hold, "k")

    assert error.value.category is Category.AMBIGUOUS
    assert found is not None and found.external_id == refs.ids[acme.id]


def test_probe_answers_none_when_the_write_did_not_land(ctx: Context, refs: DictRefs, key: str) -> None:
    [created] = plan(ctx, refs, "customer.upserted", customer(key))
    assert NETSUITE.probe(ctx, created, "k") is None
    NETSUITE.execute(ctx, created, "k")

    [update] = plan(ctx, refs, "customer.upserted", customer(key, email="new@acme.test"))

    assert NETSUITE.probe(ctx, update, "k") is None  # the record exists, the update is not in it
    assert NETSUITE.probe(ctx, created, "k") is not None


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "category", "status"),
    [("http_429", Category.RATE_LIMITED, 429), ("http_500", Category.TRANSIENT, 500),
     ("down", Category.TARGET_DOWN, 503)],
)
def test_injected_faults_are_classified(
    ctx: Context, refs: DictRefs, server: ServerThread, mode: str, category: Category, status: int
) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer("faulted"))
    fault(server, mode=mode, count=1, retry_after=3)

    with pytest.raises(ConnectorError) as error:
        NETSUITE.execute(ctx, op, "k")

    assert (error.value.category, error.value.status) == (category, status)
    assert error.value.retry_after == (3 if status == 429 else None)


def test_bad_credentials_are_an_auth_error(
    sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client, refs: DictRefs
) -> None:
    ctx = context_for(sandbox, server, http, token_secret="0" * 64)
    [op] = plan(ctx, refs, "customer.upserted", customer("denied"))

    with pytest.raises(ConnectorError, match="INVALID_LOGIN") as error:
        NETSUITE.execute(ctx, op, "k")

    assert error.value.category is Category.AUTH


def test_a_refused_record_is_a_data_error_naming_the_field(ctx: Context, refs: DictRefs, key: str) -> None:
    bill = invoice(key)
    refs.ids[bill.customer_id] = "999999"  # a cross-reference to a customer NetSuite does not have
    [op] = plan(ctx, refs, "invoice.issued", bill)

    with pytest.raises(ConnectorError, match="INVALID_CONTENT at entity") as error:
        NETSUITE.execute(ctx, op, "k")

    assert (error.value.category, error.value.status) == (Category.DATA, 400)


def test_an_unknown_subsidiary_is_a_data_error_not_a_retry(ctx: Context, refs: DictRefs, key: str) -> None:
    """NetSuite refuses the reference with a 400: sending it again cannot help, so no retry."""
    [op] = plan(ctx, refs, "customer.upserted", customer(key, dimensions={"subsidiary": "99"}))

    with pytest.raises(ConnectorError, match="INVALID_CONTENT at subsidiary") as error:
        NETSUITE.execute(ctx, op, "k")

    assert (error.value.category, error.value.status) == (Category.DATA, 400)
    assert not error.value.category.retryable


def test_no_answer_in_time_is_ambiguous(
    sandbox: NetSuiteSandbox, server: ServerThread, http: httpx.Client, refs: DictRefs
) -> None:
    ctx = context_for(sandbox, server, http, timeout_s=0.3)
    [op] = plan(ctx, refs, "customer.upserted", customer("slow"))
    fault(server, mode="latency", count=1, latency_ms=1000)

    with pytest.raises(ConnectorError) as error:
        NETSUITE.execute(ctx, op, "k")

    assert error.value.category is Category.AMBIGUOUS


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (httpx.ConnectError("connection refused"), Category.TARGET_DOWN),
        (httpx.ReadTimeout("timed out"), Category.AMBIGUOUS),
        (httpx.HTTPStatusError("limit", request=httpx.Request("POST", "https://ns.test/x"),
                               response=httpx.Response(400, json={"o:errorDetails": [
                                   {"detail": "busy", "o:errorCode": "SSS_REQUEST_LIMIT_EXCEEDED"}]})),
         Category.RATE_LIMITED),
    ],
    ids=["connect", "read-timeout", "restlet-limit"],
)
def test_classify_transport_failures_and_limit_codes(error: Exception, category: Category) -> None:
    assert NETSUITE.classify(error).category is category


class TestNetSuiteContract(ConnectorContract):
    kit = NetSuiteKit()
