"""Stripe and NetSuite sandboxes holding N invoices in step, with a few drifts: what the
reconciliation bench (:mod:`.reconcile`) reads through the APIs.

Run as a process of its own (``python -m crossledger.devtools.bench.ledgers --invoices N --ready
FILE``), so the reconciler's memory is measured without the sandboxes'. It serves both sandboxes on
loopback, seeds them, writes ``FILE`` (their URL, the connector settings and the findings the drifts
must produce) and serves until it is stopped.

Seeding writes the sandboxes' state directly (a million API calls would take longer than the
reconciliation being measured): one customer, invoice and payment are made through Stripe's API,
and every Stripe record is a copy of those with its own ids, amounts and times; NetSuite's records
are written into its books with the bodies the hub's NetSuite connector sends, validated as its API
validates them. One customer per :data:`INVOICES_PER_CUSTOMER` invoices; every invoice but each
:data:`UNPAID_EVERY`-th is paid in full; the documents are spread over the twelve months of a year.

Then, behind the hub's back, NetSuite's books drift: a customer renamed, an unpaid invoice's amount
changed, an unpaid invoice and a payment deleted, an invoice keyed in again and one invented. Each
is one or two findings of a known class (and a balance in its month), listed in ``FILE`` as
``expected``.
"""

import argparse
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
from crossledger.canonical.entities import canonical_id
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.netsuite.outbound import external_id_for
from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox, record_type
from crossledger.plugins.stripe.sandbox.app import StripeSandbox
from starlette.applications import Starlette
from starlette.routing import Mount

INVOICES_PER_CUSTOMER = 10
UNPAID_EVERY = 10
YEAR = 2026
QUERY_TIMEOUT_S = 60.0
"""The connector's NetSuite timeout: the first page of a SuiteQL query over 200,000 transactions is
computed in one request (10 s, the default, is for single records)."""
USD = {"id": "1"}
_COPY = msgspec.json.Encoder()
_PASTE = msgspec.json.Decoder(dict[str, Any])


def _clone(record: dict[str, Any]) -> dict[str, Any]:
    return _PASTE.decode(_COPY.encode(record))


def _moment(number: int) -> int:
    """When document ``number`` was billed (and paid): mid-month, the months in turn."""
    return int(datetime(YEAR, number % 12 + 1, 15, 12, tzinfo=UTC).timestamp())


def _day(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).date().isoformat()


def _amount(number: int) -> int:
    """An invoice's total in cents: different from its neighbours', so a drift shows in a balance."""
    return 1000 + (number * 37) % 90_000


@dataclass
class Ledgers:
    """The two sandboxes, seeded; ``expected``: (class, subject) of every finding the drifts make."""

    stripe: StripeSandbox = field(default_factory=StripeSandbox)
    netsuite: NetSuiteSandbox = field(default_factory=NetSuiteSandbox)
    expected: set[tuple[str, str]] = field(default_factory=set)
    customers: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    payments: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Stripe's payments by the number of the invoice they pay."""
    _netsuite_ids: dict[str, str] = field(default_factory=dict)
    """NetSuite's internal id of each Stripe record's counterpart, by Stripe id."""

    def app(self) -> Starlette:
        return Starlette(routes=[Mount("/stripe", app=self.stripe.app), Mount("/netsuite", app=self.netsuite.app)])

    def seed(self, invoices: int, base_url: str) -> None:
        """``invoices`` invoices with their customers and payments, in step in both systems."""
        template = _templates(self.stripe, f"{base_url}/stripe")
        account = self.stripe.account
        for number in range(max(1, invoices // INVOICES_PER_CUSTOMER)):
            customer = self._stripe_customer(template["customer"], number)
            account.customers.add(customer)
            self.customers.append(customer)
            self._netsuite_ids[customer["id"]] = self._book_customer(customer)
        for number in range(invoices):
            customer = self.customers[number % len(self.customers)]
            invoice = self._stripe_invoice(template["invoice"], customer, number)
            account.invoices.add(invoice)
            self.invoices.append(invoice)
            self._netsuite_ids[invoice["id"]] = self._book_invoice(invoice)
            if invoice["status"] == "paid":
                payment = self._stripe_payment(template["payment"], invoice, number)
                account.invoice_payments.add(payment)
                self.payments[number] = payment
                self._netsuite_ids[payment["id"]] = self._book_payment(payment, invoice)

    # -- Stripe: copies of records its API made ---------------------------------------------------
    @staticmethod
    def _stripe_customer(template: dict[str, Any], number: int) -> dict[str, Any]:
        customer = _clone(template)
        customer.update(id=f"cus_bench{number:019d}", name=f"Customer {number}",
                        email=f"billing{number}@customer.example", created=_moment(0), currency="usd",
                        invoice_prefix=f"B{number:07X}")
        return customer

    @staticmethod
    def _stripe_invoice(template: dict[str, Any], customer: dict[str, Any], number: int) -> dict[str, Any]:
        invoice, at, total = _clone(template), _moment(number), _amount(number)
        invoice_id = f"in_bench{number:020d}"
        paid = number % UNPAID_EVERY != UNPAID_EVERY - 1
        [line] = invoice["lines"]["data"]
        line.update(id=f"il_bench{number:020d}", invoice=invoice_id, amount=total, subtotal=total,
                    period={"start": at, "end": at})
        line["pricing"]["unit_amount_decimal"] = str(total)
        invoice["lines"]["url"] = f"/v1/invoices/{invoice_id}/lines"
        invoice.update(
            id=invoice_id, customer=customer["id"], customer_name=customer["name"], customer_email=customer["email"],
            number=f"BENCH-{number:07d}", created=at, period_start=at, period_end=at, effective_at=at,
            subtotal=total, subtotal_excluding_tax=total, total=total, total_excluding_tax=total, amount_due=total,
            amount_paid=total if paid else 0, amount_remaining=0 if paid else total, status="paid" if paid else "open",
            status_transitions={"finalized_at": at, "marked_uncollectible_at": None,
                                "paid_at": at if paid else None, "voided_at": None})
        return invoice

    @staticmethod
    def _stripe_payment(template: dict[str, Any], invoice: dict[str, Any], number: int) -> dict[str, Any]:
        payment, at = _clone(template), invoice["created"]
        payment.update(id=f"inpay_bench{number:017d}", invoice=invoice["id"], amount_paid=invoice["total"],
                       amount_requested=invoice["total"], created=at,
                       status_transitions={"canceled_at": None, "paid_at": at})
        payment["payment"]["payment_intent"] = f"pi_bench{number:020d}"
        return payment

    # -- NetSuite: what the hub's connector would have written ------------------------------------
    def _upsert(self, type_name: str, entity: str, stripe_id: str, body: dict[str, Any]) -> str:
        external_id = external_id_for(canonical_id(entity, "stripe", stripe_id))
        record, _ = self.netsuite.books.upsert(record_type(type_name), external_id, body)
        return record.id

    def _book_customer(self, customer: dict[str, Any]) -> str:
        return self._upsert("customer", "customer", customer["id"], {
            "companyName": customer["name"], "email": customer["email"], "subsidiary": {"id": "1"}, "currency": USD})

    def _book_invoice(self, invoice: dict[str, Any]) -> str:
        return self._upsert("invoice", "invoice", invoice["id"], self._invoice_body(invoice, invoice["total"]))

    def _invoice_body(self, invoice: dict[str, Any], total: int) -> dict[str, Any]:
        return {"entity": {"id": self._netsuite_ids[invoice["customer"]]}, "tranId": invoice["number"],
                "tranDate": _day(invoice["created"]), "currency": USD,
                "item": {"items": [{"item": {"id": "1"}, "description": "Service", "quantity": 1,
                                    "amount": _dollars(total)}]}}

    def _book_payment(self, payment: dict[str, Any], invoice: dict[str, Any]) -> str:
        amount = _dollars(payment["amount_paid"])
        return self._upsert("customerpayment", "payment", payment["id"], {
            "customer": {"id": self._netsuite_ids[invoice["customer"]]}, "currency": USD, "account": {"id": "1"},
            "payment": amount, "tranDate": _day(payment["created"]),
            "apply": {"items": [{"doc": {"id": self._netsuite_ids[invoice["id"]]}, "apply": True,
                                 "amount": amount}]}})

    # -- drift, behind the hub's back -------------------------------------------------------------
    def drift(self) -> None:
        """Change NetSuite's books as people do, and note the findings each change must make."""
        books = self.netsuite.books
        unpaid = [number for number in range(len(self.invoices)) if number not in self.payments]
        renamed = self.customers[len(self.customers) // 2]
        books.update(books.get(record_type("customer"), self._netsuite_ids[renamed["id"]]),
                     {"companyName": f"{renamed['name']} (edited by hand)"})
        self._expect(_subject("customer", renamed), "field_drift")

        edited = self.invoices[unpaid[len(unpaid) // 3]]
        invoice = books.get(record_type("invoice"), self._netsuite_ids[edited["id"]])
        books.update(invoice, {"item": self._invoice_body(edited, edited["total"] + 500)["item"]},
                     frozenset({"item"}))
        self._expect(_subject("invoice", edited), "amount_mismatch", "status_mismatch")
        self._balance("invoice", edited)

        deleted = self.invoices[unpaid[2 * len(unpaid) // 3]]
        books.delete(books.get(record_type("invoice"), self._netsuite_ids[deleted["id"]]))
        self._expect(_subject("invoice", deleted), "missing")
        self._balance("invoice", deleted)

        number = sorted(self.payments)[len(self.payments) // 4]
        payment, paid = self.payments[number], self.invoices[number]
        books.delete(books.get(record_type("customerpayment"), self._netsuite_ids[payment["id"]]))
        self._expect(_subject("payment", payment), "missing")
        self._expect(_subject("invoice", paid), "status_mismatch")  # owing again, without its payment
        self._balance("payment", paid)

        copied = self.invoices[len(self.invoices) // 2]
        books.create(record_type("invoice"), self._invoice_body(copied, copied["total"]))  # keyed in again
        self._expect(_subject("invoice", copied), "duplicate")
        self._balance("invoice", copied)

        invented = books.create(record_type("invoice"), {**self._invoice_body(copied, 4200), "tranId": "HAND-1"})
        self._expect(canonical_id("invoice", "netsuite", invented.id), "orphan")
        self._balance("invoice", copied)

    def _expect(self, subject: str, *classes: str) -> None:
        self.expected |= {(cls, subject) for cls in classes}

    def _balance(self, entity: str, document: dict[str, Any]) -> None:
        month = datetime.fromtimestamp(document["created"], UTC).strftime("%Y-%m")
        self.expected.add(("balance", f"balance/{entity}/USD/{month}"))

    def counts(self) -> dict[str, int]:
        return {"customers": len(self.customers), "invoices": len(self.invoices), "payments": len(self.payments)}


def _subject(entity: str, record: dict[str, Any]) -> str:
    """The canonical id reconciliation gives a Stripe record the hub has no cross-reference for."""
    return canonical_id(entity, "stripe", record["id"])


def _dollars(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _templates(stripe: StripeSandbox, url: str) -> dict[str, dict[str, Any]]:
    """One customer, a finalized invoice of one line and its payment, made through Stripe's API."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {stripe.api_key}"}, timeout=30) as http:
        def post(path: str, **form: str) -> dict[str, Any]:
            response = http.post(path, data=form)
            response.raise_for_status()
            answered: dict[str, Any] = response.json()
            return answered

        customer = post("/v1/customers", name="Template", email="template@customer.example")
        post("/v1/invoiceitems", customer=customer["id"], amount="1000", currency="usd")
        invoice = post("/v1/invoices", customer=customer["id"], pending_invoice_items_behavior="include")
        post(f"/v1/invoices/{invoice['id']}/finalize")
        invoice = post(f"/v1/invoices/{invoice['id']}/pay", paid_out_of_band="true")
        [payment] = http.get("/v1/invoice_payments", params={"invoice": invoice["id"]}).json()["data"]
    account = stripe.account
    for collection, record_id in ((account.invoice_payments, payment["id"]), (account.invoices, invoice["id"]),
                                  (account.customers, customer["id"])):
        collection.remove(record_id)  # templates, not records of the bench
    return {"customer": customer, "invoice": invoice, "payment": payment}


def main() -> None:
    """Seed, drift, write the ready file, then serve until stopped (see the module doc)."""
    parser = argparse.ArgumentParser(description="Stripe and NetSuite sandboxes seeded for the reconciliation bench.")
    parser.add_argument("--invoices", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    arguments = parser.parse_args()
    ledgers = Ledgers()
    server = ServerThread(ledgers.app()).start()
    started = time.monotonic()
    ledgers.seed(arguments.invoices, server.url)
    ledgers.drift()
    arguments.ready.write_text(json.dumps({
        "url": server.url, "seeded": ledgers.counts(), "seed_s": round(time.monotonic() - started, 1),
        "connectors": {"stripe": ledgers.stripe.connector_settings(f"{server.url}/stripe"),
                       "netsuite": {**ledgers.netsuite.connector_settings(f"{server.url}/netsuite"),
                                    "timeout_s": QUERY_TIMEOUT_S}},
        "expected": sorted(ledgers.expected)}))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
