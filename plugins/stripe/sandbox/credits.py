"""Money going back in the Stripe sandbox: refunds and credit notes.

**Refunds** return part or all of a successful charge (named directly, or through its payment
intent). Together they never exceed the charge: the one that would is refused with Stripe's
``amount_too_large``, and a charge refunded in full with ``charge_already_refunded``. Each emits
``refund.created`` and ``charge.refunded``.

**Credit notes** reduce what an invoice is worth, up to what is still creditable (its total less
the credit notes already issued on it). On an open invoice the credit first lowers the amount due
(``pre_payment_amount``; an invoice credited to zero becomes paid). What is credited beyond what
is still due (``post_payment_amount``) must be accounted for exactly by ``refund_amount`` (a
refund of the charge that paid the invoice), ``credit_amount`` (the customer's balance) and
``out_of_band_amount``; given none of them, it all goes to the customer's balance, as in Stripe.
The sandbox credits amounts as given: credit note lines carry no tax, and the balance is kept on
the customer but not applied to later invoices.
"""

import copy
from decimal import ROUND_HALF_EVEN, Decimal

from crossledger.canonical.money import money, to_decimal
from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.invoices import Invoicing
from crossledger.plugins.stripe.sandbox.wire import (
    ACCOUNT,
    Call,
    Endpoint,
    Params,
    Record,
    exclusive,
    invalid,
    new_id,
    reads,
    token,
)

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
CREDIT_REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")
CREDITABLE = ("open", "paid", "uncollectible")
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def shown(amount: int, currency: str) -> str:
    """An amount as Stripe's messages show it: ``$25.00``, ``¥1000``, ``1.250 KWD``."""
    value = to_decimal(money(amount, currency))
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def _pdf_link() -> str:
    """Where Stripe serves a credit note's PDF."""
    return f"https://pay.stripe.com/credit_notes/{ACCOUNT}/cnst_{token(24)}/pdf?s=ap"


def _refund(charge: Record, amount: int, reason: str | None, metadata: dict[str, str], at: int) -> Record:
    return {
        "amount": amount, "balance_transaction": new_id("txn"), "charge": charge["id"], "created": at,
        "currency": charge["currency"], "customer": charge["customer"], "customer_account": None,
        "destination_details": {"card": {"reference": None, "reference_status": "pending",
                                         "reference_type": "acquirer_reference_number", "type": "refund"},
                                "type": "card"},
        "id": new_id("re"), "metadata": metadata, "object": "refund", "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"], "reason": reason, "receipt_number": None,
        "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None,
    }


def _credit_line(kind: str, amount: int, quantity: int, unit: int | None, params: Params) -> Record:
    line: Record = {
        "amount": amount, "description": params.text("description"), "discount_amount": 0, "discount_amounts": [],
        "id": new_id("cnli"), "livemode": False, "metadata": params.mapping("metadata"),
        "object": "credit_note_line_item", "pretax_credit_amounts": [], "quantity": quantity, "tax_rates": [],
        "taxes": [], "type": kind, "unit_amount": unit, "unit_amount_decimal": None if unit is None else str(unit),
    }
    if kind == "invoice_line_item":
        line["invoice_line_item"] = params.text("invoice_line_item")
    return line


class Credits:
    """Refunds and credit notes (see the module doc)."""

    def __init__(self, account: Account, invoicing: Invoicing) -> None:
        self._account = account
        self._invoicing = invoicing

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/v1/refunds", self.create_refund),
            *reads(self._account.refunds),
            Endpoint("POST", "/v1/credit_notes", self.create_credit_note),
            *reads(self._account.credit_notes),
            Endpoint("POST", "/v1/credit_notes/{id}/void", self.void_credit_note),
        ]

    # Refunds

    def create_refund(self, call: Call) -> Record:
        params = call.params.accept("amount", "charge", "metadata", "payment_intent", "reason")
        exclusive(params, "charge", "payment_intent")
        return self.refund(self._refundable(params), params.positive("amount"),
                           params.choice("reason", REFUND_REASONS), params.mapping("metadata"), call)

    def _refundable(self, params: Params) -> Record:
        """The successful charge a refund request names, directly or through its payment intent."""
        if "payment_intent" in params:
            intent = self._account.payment_intents.get(params.required("payment_intent"), param="payment_intent")
            if intent["status"] != "succeeded":
                raise invalid(f"PaymentIntent {intent['id']} does not have a successful charge to refund.",
                              param="payment_intent")
            charge: Record = self._account.charges.get(intent["latest_charge"], param="payment_intent")
            return charge
        charge = self._account.charges.get(params.required("charge"), param="charge")
        if charge["status"] != "succeeded":
            raise invalid(f"Charge {charge['id']} has not succeeded, so it cannot be refunded.", param="charge")
        return charge

    def refund(self, charge: Record, amount: int | None, reason: str | None, metadata: dict[str, str],
               call: Call) -> Record:
        """Refund ``amount`` of ``charge`` (all that is left when None), never more than is left."""
        left = charge["amount"] - charge["amount_refunded"]
        if left == 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.", param="charge",
                          code="charge_already_refunded")
        amount = left if amount is None else amount
        if amount > left:
            raise invalid(f"Refund amount ({shown(amount, charge['currency'])}) is greater than unrefunded amount "
                          f"on charge ({shown(left, charge['currency'])})", param="amount", code="amount_too_large")
        refund = self._account.refunds.add(_refund(charge, amount, reason, metadata, self._account.now_for(charge)))
        before = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
        self._account.emit("refund.created", refund, call)
        self._account.emit_update("charge.refunded", before, charge, call)
        return refund

    # Credit notes

    def create_credit_note(self, call: Call) -> Record:
        params = call.params.accept("amount", "credit_amount", "invoice", "lines", "memo", "metadata",
                                    "out_of_band_amount", "reason", "refund_amount")
        invoice = self._account.invoices.get(params.required("invoice"), param="invoice")
        if invoice["status"] not in CREDITABLE:
            raise invalid(f"You can only credit an invoice whose status is {', '.join(CREDITABLE)}; invoice "
                          f"{invoice['id']} is {invoice['status']}.", param="invoice")
        exclusive(params, "amount", "lines")
        lines = [self._credit_line(invoice, line) for line in params.hashes("lines")]
        total = params.positive("amount") if "amount" in params else sum(line["amount"] for line in lines)
        if not total:
            raise invalid("Missing required param: amount or lines.", param="amount", code="parameter_missing")
        currency = invoice["currency"]
        creditable = invoice["total"] - sum(note["total"] for note in self._notes_on(invoice))
        if total > creditable:
            raise invalid(f"The credit note total ({shown(total, currency)}) is greater than what can still be "
                          f"credited on invoice {invoice['id']} ({shown(creditable, currency)}).", param="amount")
        pre = min(total, invoice["amount_remaining"]) if invoice["status"] != "paid" else 0
        post = total - pre
        refund_amount, credit_amount, outside = self._post_payment(params, post, currency)
        charge = self._invoicing.charge_of(invoice) if refund_amount else None
        if refund_amount and charge is None:
            raise invalid(f"Invoice {invoice['id']} was not paid by a charge, so there is nothing to refund; "
                          "credit it with out_of_band_amount instead.", param="refund_amount")
        note = self._credit_note(invoice, params, lines, total, pre, post)
        note["out_of_band_amount"] = outside or None
        if charge is not None:
            refund = self.refund(charge, refund_amount, None, {}, call)
            note["refunds"] = [{"amount_refunded": refund_amount, "payment_record_refund": None,
                                "refund": refund["id"], "type": "refund"}]
        customer = self._account.customers.get(invoice["customer"], param="customer")
        if credit_amount:
            customer["balance"] -= credit_amount
            note["customer_balance_transaction"] = new_id("cbtxn")
        self._account.credit_notes.add(note)
        self._apply_credit(invoice, pre, post, call)
        self._account.emit("credit_note.created", note, call)
        return note

    def _credit_line(self, invoice: Record, params: Params) -> Record:
        """One ``lines[i]``: part of an invoice line (never more than it), or a custom amount."""
        kind = params.choice("type", ("invoice_line_item", "custom_line_item"))
        if kind == "custom_line_item":
            params.accept("type", "description", "metadata", "quantity", "unit_amount")
            unit = params.positive("unit_amount")
            if unit is None:
                raise invalid(f"Missing required param: {params.name('unit_amount')}.",
                              param=params.name("unit_amount"), code="parameter_missing")
            quantity = params.positive("quantity") or 1
            return _credit_line(kind, unit * quantity, quantity, unit, params)
        if kind is None:
            raise invalid(f"Missing required param: {params.name('type')}.", param=params.name("type"),
                          code="parameter_missing")
        params.accept("type", "amount", "description", "invoice_line_item", "metadata", "quantity")
        line_id = params.required("invoice_line_item")
        line = next((line for line in invoice["lines"]["data"] if line["id"] == line_id), None)
        if line is None:
            raise invalid(f"No such invoice line item: '{line_id}'", param=params.name("invoice_line_item"),
                          code="resource_missing")
        quantity = params.positive("quantity") or line["quantity"]
        prorated = Decimal(line["amount"] * quantity) / max(line["quantity"], 1)
        amount = params.positive("amount") or int(prorated.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        if amount > line["amount"] or quantity > line["quantity"]:
            raise invalid(f"The credit for line {line_id} ({shown(amount, line['currency'])}) is greater than the "
                          f"line ({shown(line['amount'], line['currency'])}).", param=params.name("amount"))
        return _credit_line(kind, amount, quantity, None, params)

    def _notes_on(self, invoice: Record) -> list[Record]:
        return [note for note in self._account.credit_notes.where(invoice=invoice["id"]) if note["status"] == "issued"]

    @staticmethod
    def _post_payment(params: Params, post: int, currency: str) -> tuple[int, int, int]:
        """``(refund, credit, out of band)`` amounts accounting for the post-payment part exactly."""
        names = ("refund_amount", "credit_amount", "out_of_band_amount")
        if not any(name in params for name in names):
            return 0, post, 0
        refund, credit, outside = (params.integer(name) or 0 for name in names)
        if min(refund, credit, outside) < 0 or refund + credit + outside != post:
            raise invalid(f"The sum of refund_amount, credit_amount and out_of_band_amount "
                          f"({shown(refund + credit + outside, currency)}) must equal the part of the credit note "
                          f"beyond what is still due on the invoice ({shown(post, currency)}).",
                          param="refund_amount")
        return refund, credit, outside

    def _credit_note(self, invoice: Record, params: Params, lines: list[Record], total: int, pre: int,
                     post: int) -> Record:
        note_id = new_id("cn")
        at = self._account.now_for(invoice)
        kind = "mixed" if pre and post else "pre_payment" if pre else "post_payment"
        return {
            "amount": total, "amount_shipping": 0, "created": at, "currency": invoice["currency"],
            "customer": invoice["customer"], "customer_account": None, "customer_balance_transaction": None,
            "discount_amount": 0, "discount_amounts": [], "effective_at": at, "id": note_id,
            "invoice": invoice["id"],
            "lines": {"data": lines, "has_more": False, "object": "list", "url": f"/v1/credit_notes/{note_id}/lines"},
            "livemode": False, "memo": params.text("memo"), "metadata": params.mapping("metadata"),
            "number": f"{invoice['number']}-CN-{len(self._account.credit_notes.where(invoice=invoice['id'])) + 1:02d}",
            "object": "credit_note", "out_of_band_amount": None, "pdf": _pdf_link(), "post_payment_amount": post,
            "pre_payment_amount": pre, "pretax_credit_amounts": [],
            "reason": params.choice("reason", CREDIT_REASONS), "refunds": [], "shipping_cost": None,
            "status": "issued", "subtotal": total, "subtotal_excluding_tax": total, "total": total,
            "total_excluding_tax": total, "total_taxes": [], "type": kind, "voided_at": None,
        }

    def _apply_credit(self, invoice: Record, pre: int, post: int, call: Call, sign: int = 1) -> None:
        """Lower (or, voiding, raise back) what the invoice asks for; credited to zero, it is paid."""
        before = copy.deepcopy(invoice)
        invoice["pre_payment_credit_notes_amount"] += sign * pre
        invoice["post_payment_credit_notes_amount"] += sign * post
        invoice["amount_due"] -= sign * pre
        invoice["amount_remaining"] -= sign * pre
        payment = self._invoicing.open_payment(invoice)
        if payment is not None:
            payment["amount_requested"] = invoice["amount_due"]
            self._invoicing.intent_of(payment)["amount"] = invoice["amount_due"]
        self._account.emit_update("invoice.updated", before, invoice, call)
        if pre and invoice["status"] != "paid" and invoice["amount_remaining"] == 0:
            self._invoicing.paid_by_credit(invoice, call)

    def void_credit_note(self, call: Call) -> Record:
        """issued -> void, undoing what the note did; a refund cannot be undone, so a note that
        refunded money cannot be voided, nor one that paid its invoice off."""
        call.params.accept()
        note = self._account.credit_notes.get(call.id)
        invoice = self._account.invoices.get(note["invoice"], param="invoice")
        if note["status"] != "issued":
            raise invalid(f"Credit note {note['id']} is already void.")
        if note["refunds"]:
            raise invalid(f"Credit note {note['id']} refunded money, so it cannot be voided.")
        if note["pre_payment_amount"] and invoice["status"] == "paid":
            raise invalid(f"Credit note {note['id']} paid invoice {invoice['id']} off, so it cannot be voided.")
        if note["customer_balance_transaction"]:
            customer = self._account.customers.get(note["customer"], param="customer")
            customer["balance"] += note["post_payment_amount"] - (note["out_of_band_amount"] or 0)
        note.update(status="void", voided_at=self._account.now_for(invoice))
        self._apply_credit(invoice, note["pre_payment_amount"], note["post_payment_amount"], call, sign=-1)
        self._account.emit("credit_note.voided", note, call)
        return note
