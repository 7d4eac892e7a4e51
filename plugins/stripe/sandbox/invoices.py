"""Invoicing in the Stripe sandbox: invoice items, invoices, and how they are paid.

An invoice's lines are its invoice items (and, for a subscription's invoice, one line per
subscription item: :mod:`.subscriptions`), each taxed by the invoice's default tax rates;
its totals always add up. Finalizing opens a payment intent for the amount due and the
``invoice_payment`` that records it. Paying charges a test payment method: the charge (``ch_...``)
is what refunds later return money from. Paying out of band settles the invoice without a charge.
Credit notes that leave nothing due pay it too (:mod:`.credits`). However an invoice gets paid,
the areas listening on :attr:`Invoicing.on_paid` are told (its subscription is in good standing
again: :mod:`.subscriptions`).

States: draft -> open -> paid | void | uncollectible (an uncollectible invoice can still be paid or
voided), as in Stripe.
"""

import copy
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from crossledger.plugins.stripe.sandbox.account import Account, Listener
from crossledger.plugins.stripe.sandbox.customers import Customers, declines, payment_method
from crossledger.plugins.stripe.sandbox.wire import (
    ACCOUNT,
    DAY,
    Call,
    Endpoint,
    Params,
    Record,
    assign,
    card_declined,
    exclusive,
    invalid,
    new_id,
    reads,
    token,
)

PAYABLE = ("open", "uncollectible")


def item_amount(params: Params) -> tuple[int, int, str]:
    """``(quantity, amount, unit amount)`` of an invoice item: a total, or a quantity at a unit price.

    A fractional ``unit_amount_decimal`` times the quantity is rounded half-to-even to a whole
    minor unit, the way Stripe rounds line amounts.
    """
    exclusive(params, "amount", "unit_amount", "unit_amount_decimal")
    amount = params.integer("amount")
    if amount is not None:
        exclusive(params, "amount", "quantity")
        return 1, amount, str(amount)
    whole = params.integer("unit_amount")
    unit = Decimal(whole) if whole is not None else params.decimal("unit_amount_decimal")
    if unit is None:
        raise invalid("Missing required param: amount.", param="amount", code="parameter_missing")
    quantity = params.integer("quantity")
    quantity = 1 if quantity is None else quantity
    if quantity < 0:
        raise invalid(f"Invalid non-negative integer: {quantity}", param="quantity")
    total = (unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return quantity, int(total), format(unit, "f")


def invoiceitem(customer: Record, currency: str, quantity: int, amount: int, unit: str, at: int) -> Record:
    """A pending invoice item with the field set of Stripe's; a subscription's proration sets
    ``parent``, ``proration``, ``period`` and ``pricing`` on it."""
    return {
        "amount": amount,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "date": at,
        "description": None,
        "discountable": True,
        "discounts": [],
        "id": new_id("ii"),
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "net_amount": amount,
        "object": "invoiceitem",
        "parent": None,
        "period": {"end": at, "start": at},
        "pricing": {"type": "price_details", "unit_amount_decimal": unit},
        "proration": False,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": customer["test_clock"],
    }


def item_line(item: Record) -> Record:
    """The invoice line an invoice item becomes; its id is derived from the item's, so it is stable."""
    subscription = (item["parent"] or {}).get("subscription_details") or {}
    return {
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "id": "il_" + item["id"].removeprefix("ii_"),
        "invoice": item["invoice"],
        "livemode": False,
        "metadata": dict(item["metadata"]),
        "object": "line_item",
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": item["proration"],
                "proration_details": {"credited_items": None},
                "subscription": subscription.get("subscription"),
            },
            "subscription_item_details": None,
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": copy.deepcopy(item["pricing"]),
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subscription": subscription.get("subscription"),
        "subtotal": item["amount"],
        "taxes": [],
    }


def new_invoice(customer: Record, currency: str, at: int) -> Record:
    """A new, empty draft invoice with the field set of Stripe's invoice object."""
    invoice_id = new_id("in")
    invoice: Record = {
        "account_country": "US",
        "account_name": "crossledger sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": False,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": "charge_automatically",
        "created": at,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_shipping": None,
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "id": invoice_id,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"data": [], "has_more": False, "object": "list", "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "object": "invoice",
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": at,
        "period_start": at,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": None,
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": customer["test_clock"],
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }
    _copy_customer(invoice, customer)
    return invoice


def _copy_customer(invoice: Record, customer: Record) -> None:
    """Invoices carry a copy of the customer's details, refreshed until finalization freezes them."""
    invoice.update(
        customer_address=copy.deepcopy(customer["address"]),
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_phone=customer["phone"],
        customer_tax_exempt=customer["tax_exempt"],
    )


def _line_tax(line: Record, rate: Record) -> Record:
    """One exclusive tax rate on one line, rounded half up to the minor unit per line, as Stripe does."""
    amount = int((Decimal(line["amount"]) * Decimal(str(rate["percentage"])) / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP))
    return {"amount": amount, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": rate["id"]},
            "taxability_reason": "standard_rated", "taxable_amount": line["amount"], "type": "tax_rate_details"}


def set_lines(invoice: Record, lines: list[Record]) -> None:
    """Give a draft these lines, with the invoice's default tax rates on each; the totals follow (no
    discounts in this sandbox). A negative total (a downgrade's credit) is due as zero."""
    totals: dict[str, Record] = {}
    for line in lines:
        line["taxes"] = [_line_tax(line, rate) for rate in invoice["default_tax_rates"]]
        for tax in line["taxes"]:
            total = totals.setdefault(tax["tax_rate_details"]["tax_rate"], {**tax, "amount": 0, "taxable_amount": 0})
            total["amount"] += tax["amount"]
            total["taxable_amount"] += tax["taxable_amount"]
    invoice["lines"]["data"] = lines
    invoice["total_taxes"] = list(totals.values())
    subtotal = sum(line["amount"] for line in lines)
    tax = sum(total["amount"] for total in totals.values())
    for name in ("subtotal", "subtotal_excluding_tax", "total_excluding_tax"):
        invoice[name] = subtotal
    invoice["total"] = subtotal + tax
    invoice["amount_due"] = max(0, invoice["total"])
    invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]


def apply_terms(invoice: Record, params: Params, at: int) -> None:
    """Set how an invoice is collected, checked as a whole the way Stripe checks it.

    ``send_invoice`` needs a due date (``due_date``, or ``days_until_due`` from now);
    ``charge_automatically`` must not have one.
    """
    exclusive(params, "days_until_due", "due_date")
    method = params.choice("collection_method", ("charge_automatically", "send_invoice"))
    method = method or invoice["collection_method"]
    days, due = params.integer("days_until_due"), params.integer("due_date")
    if method == "charge_automatically" and (days is not None or due is not None):
        raise invalid(
            "days_until_due and due_date can only be set when collection_method is send_invoice.",
            param="days_until_due" if days is not None else "due_date",
        )
    if days is not None:
        due = at + days * DAY
    if method == "send_invoice" and due is None and invoice["due_date"] is None:
        raise invalid(
            "Invoices with collection_method=send_invoice need days_until_due or due_date.",
            param="days_until_due",
            code="parameter_missing",
        )
    invoice["collection_method"] = method
    invoice["due_date"] = None if method == "charge_automatically" else due or invoice["due_date"]


def require(invoice: Record, action: str, allowed: tuple[str, ...]) -> None:
    """Refuse a transition that Stripe's invoice state machine does not allow."""
    if invoice["status"] not in allowed:
        raise invalid(
            f"You can only {action} an invoice whose status is {' or '.join(allowed)}; "
            f"invoice {invoice['id']} is {invoice['status']}."
        )


def _payment_intent(invoice: Record, at: int) -> Record:
    """The payment intent Stripe opens for a finalized invoice's amount due."""
    intent_id = new_id("pi")
    return {
        "amount": invoice["amount_due"], "amount_capturable": 0, "amount_details": {"tip": {}}, "amount_received": 0,
        "application": None, "application_fee_amount": None, "automatic_payment_methods": None,
        "canceled_at": None, "cancellation_reason": None, "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{token(24)}", "confirmation_method": "automatic", "created": at,
        "currency": invoice["currency"], "customer": invoice["customer"], "customer_account": None,
        "description": f"Invoice {invoice['number']}", "excluded_payment_method_types": None, "id": intent_id,
        "last_payment_error": None, "latest_charge": None, "livemode": False, "managed_payments": None,
        "metadata": {}, "next_action": None, "object": "payment_intent", "on_behalf_of": None,
        "payment_method": None, "payment_method_configuration_details": None, "payment_method_options": {},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
        "setup_future_usage": None, "shipping": None, "source": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "requires_payment_method", "transfer_data": None,
        "transfer_group": None,
    }


def _invoice_payment(invoice: Record, intent: Record, at: int) -> Record:
    """The payment Stripe opens for a finalized invoice, and settles when the invoice is paid."""
    return {
        "amount_paid": None,
        "amount_requested": invoice["amount_due"],
        "created": at,
        "currency": invoice["currency"],
        "id": new_id("inpay"),
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "object": "invoice_payment",
        "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def _charge(intent: Record, payment_method: str, customer: Record, at: int) -> Record:
    """The charge of one payment attempt: succeeded, or failed for a declining test card."""
    failed = declines(payment_method)
    charge_id = new_id("ch")
    outcome = ({"network_status": "declined_by_network", "reason": "generic_decline", "type": "issuer_declined",
                "seller_message": "The bank did not return any further details with this decline."}
               if failed else {"network_status": "approved_by_network", "reason": None, "type": "authorized",
                               "seller_message": "Payment complete."})
    return {
        "amount": intent["amount"], "amount_captured": 0 if failed else intent["amount"], "amount_refunded": 0,
        "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": None if failed else new_id("txn"),
        "billing_details": {"address": dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state")),
                            "email": customer["email"], "name": customer["name"], "phone": customer["phone"],
                            "tax_id": None},
        "calculated_statement_descriptor": "CROSSLEDGER", "captured": not failed, "created": at,
        "currency": intent["currency"], "customer": intent["customer"], "description": intent["description"],
        "disputed": False, "failure_balance_transaction": None,
        "failure_code": "card_declined" if failed else None,
        "failure_message": "Your card was declined." if failed else None, "fraud_details": {}, "id": charge_id,
        "livemode": False, "metadata": {}, "object": "charge", "on_behalf_of": None,
        "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None, **outcome},
        "paid": not failed, "payment_intent": intent["id"], "payment_method": payment_method,
        "payment_method_details": {"card": {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034,
                                            "funding": "credit", "last4": "0002" if failed else "4242",
                                            "network": "visa"}, "type": "card"},
        "receipt_email": None, "receipt_number": None, "receipt_url": None, "refunded": False,
        "refunds": {"data": [], "has_more": False, "object": "list", "url": f"/v1/charges/{charge_id}/refunds"},
        "review": None, "shipping": None, "source": None, "source_transfer": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "failed" if failed else "succeeded", "transfer_data": None,
        "transfer_group": None,
    }


class Invoicing:
    """Invoice items, invoices, payment intents and charges (see the module doc)."""

    def __init__(self, account: Account, customers: Customers) -> None:
        self._account = account
        self._customers = customers
        self.on_paid: list[Listener] = []
        """Told of an invoice becoming paid, after its own events (subscriptions listen)."""

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/v1/invoiceitems", self.create_invoiceitem),
            *reads(self._account.invoiceitems),
            Endpoint("POST", "/v1/invoices", self.create_invoice),
            *reads(self._account.invoices),
            Endpoint("POST", "/v1/invoices/{id}", self.update_invoice),
            Endpoint("POST", "/v1/invoices/{id}/finalize", self.finalize_invoice),
            Endpoint("POST", "/v1/invoices/{id}/pay", self.pay_invoice),
            Endpoint("POST", "/v1/invoices/{id}/void", self.void_invoice),
            Endpoint("POST", "/v1/invoices/{id}/mark_uncollectible", self.mark_uncollectible),
            *reads(self._account.invoice_payments),
            *reads(self._account.payment_intents),
            *reads(self._account.charges),
        ]

    # Invoice items

    def create_invoiceitem(self, call: Call) -> Record:
        params = call.params.accept(
            "amount", "currency", "customer", "description", "invoice", "metadata", "quantity", "unit_amount",
            "unit_amount_decimal",
        )
        customer = self._account.customers.get(params.required("customer"), param="customer")
        currency = params.currency("currency") or customer["currency"]
        if currency is None:
            raise invalid("Missing required param: currency.", param="currency", code="parameter_missing")
        quantity, amount, unit = item_amount(params)
        invoice = self._draft_for(params.text("invoice"), customer, currency)
        at = self._account.now_for(customer)
        item = self._account.invoiceitems.add(invoiceitem(customer, currency, quantity, amount, unit, at))
        assign(item, params, ("description", "metadata"))
        self._customers.adopt_currency(customer, currency, call)
        if invoice is not None:
            self.attach([item], invoice)
        self._account.emit("invoiceitem.created", item, call)
        return item

    def _draft_for(self, invoice_id: str | None, customer: Record, currency: str) -> Record | None:
        """The draft invoice an item is added to directly, checked to be able to take it."""
        if invoice_id is None:
            return None
        invoice = self._account.invoices.get(invoice_id, param="invoice")
        if invoice["status"] != "draft":
            raise invalid(
                f"You can only add invoice items to draft invoices; invoice {invoice_id} is {invoice['status']}.",
                param="invoice",
                code="invoice_not_editable",
            )
        if invoice["customer"] != customer["id"] or invoice["currency"] != currency:
            raise invalid(
                f"The invoice item must have the customer and currency of invoice {invoice_id} "
                f"({invoice['customer']}, {invoice['currency']}).",
                param="invoice",
            )
        return invoice

    def pending_items(self, customer: Record, currency: str) -> list[Record]:
        """The customer's invoice items no invoice has taken yet, in ``currency``."""
        return [item for item in self._account.invoiceitems.where(customer=customer["id"], invoice=None)
                if item["currency"] == currency]

    def attach(self, items: list[Record], invoice: Record) -> None:
        """Put invoice items on a draft: its lines are rebuilt from them (a subscription's own lines,
        which are no invoice items, stay first)."""
        for item in items:
            item["invoice"] = invoice["id"]
        own = [line for line in invoice["lines"]["data"] if line["parent"]["type"] == "subscription_item_details"]
        attached = self._account.invoiceitems.where(invoice=invoice["id"])
        set_lines(invoice, own + [item_line(item) for item in attached])

    # Invoices

    def create_invoice(self, call: Call) -> Record:
        params = call.params.accept(
            "auto_advance", "collection_method", "currency", "customer", "days_until_due", "default_tax_rates",
            "description", "due_date", "metadata", "pending_invoice_items_behavior",
        )
        customer = self._account.customers.get(params.required("customer"), param="customer")
        behavior = params.choice("pending_invoice_items_behavior", ("include", "exclude")) or "include"
        pending = self._account.invoiceitems.where(customer=customer["id"], invoice=None)
        currency = params.currency("currency") or customer["currency"] or next((i["currency"] for i in pending), "usd")
        at = self._account.now_for(customer)
        invoice = new_invoice(customer, currency, at)
        invoice["default_tax_rates"] = [self._account.tax_rates.get(rate_id, param="default_tax_rates")
                                        for rate_id in params.strings("default_tax_rates")]
        apply_terms(invoice, params, at)
        assign(invoice, params, ("auto_advance", "description", "metadata"))
        self._account.invoices.add(invoice)
        if behavior == "include":
            self.attach(self.pending_items(customer, currency), invoice)
        self._account.emit("invoice.created", invoice, call)
        return invoice

    def update_invoice(self, call: Call) -> Record:
        params = call.params.accept(
            "auto_advance", "collection_method", "days_until_due", "description", "due_date", "metadata"
        )
        invoice = self._account.invoices.get(call.id)
        before = copy.deepcopy(invoice)
        if any(name in params for name in ("collection_method", "days_until_due", "due_date")):
            require(invoice, "change the collection terms of", ("draft",))
            apply_terms(invoice, params, self._account.now_for(invoice))
        assign(invoice, params, ("auto_advance", "description", "metadata"))
        self._account.emit_update("invoice.updated", before, invoice, call)
        return invoice

    def finalize_invoice(self, call: Call) -> Record:
        params = call.params.accept("auto_advance")
        invoice = self._account.invoices.get(call.id)
        require(invoice, "finalize", ("draft",))
        assign(invoice, params, ("auto_advance",))
        self.finalize(invoice, call)
        return invoice

    def finalize(self, invoice: Record, call: Call) -> None:
        """draft -> open: numbered, its customer details frozen, its hosted page and PDF linked, and a
        payment intent opened for the amount due. An invoice with nothing to pay is marked paid at
        once, as Stripe does; a negative one (a credit) goes to the customer's balance."""
        customer = self._account.customers.get(invoice["customer"], param="customer")
        at = self._account.now_for(invoice)
        _copy_customer(invoice, customer)
        hosted = f"test_{token(40)}"
        invoice.update(
            status="open",
            number=f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}",
            effective_at=at,
            ending_balance=0,
            hosted_invoice_url=f"https://invoice.stripe.com/i/{ACCOUNT}/{hosted}?s=ap",
            invoice_pdf=f"https://pay.stripe.com/invoice/{ACCOUNT}/{hosted}/pdf?s=ap",
        )
        invoice["status_transitions"]["finalized_at"] = at
        customer["next_invoice_sequence"] += 1
        if invoice["total"] < 0:
            customer["balance"] += invoice["total"]
            invoice["ending_balance"] = customer["balance"]
        self._account.emit("invoice.finalized", invoice, call)
        if invoice["amount_due"] > 0:
            intent = self._account.payment_intents.add(_payment_intent(invoice, at))
            self._account.invoice_payments.add(_invoice_payment(invoice, intent, at))
        else:
            self.settle(invoice, call)

    def pay_invoice(self, call: Call) -> Record:
        """open | uncollectible -> paid, out of band or by charging a payment method: the one given,
        else the invoice's or the customer's default."""
        params = call.params.accept("paid_out_of_band", "payment_method")
        invoice = self._account.invoices.get(call.id)
        require(invoice, "pay", PAYABLE)
        if params.flag("paid_out_of_band"):
            self.settle(invoice, call)
            return invoice
        method = payment_method(params, "payment_method") or self.default_payment_method(invoice)
        if method is None:
            raise invalid(
                "This customer has no attached payment source or default payment method. Pass payment_method, "
                "or paid_out_of_band=true for a payment received outside Stripe.",
                param="payment_method",
            )
        if not self.attempt_payment(invoice, method, call):
            raise card_declined()
        return invoice

    def default_payment_method(self, invoice: Record) -> str | None:
        customer = self._account.customers.get(invoice["customer"], param="customer")
        found: str | None = invoice["default_payment_method"] or customer["invoice_settings"]["default_payment_method"]
        return found

    def void_invoice(self, call: Call) -> Record:
        call.params.accept()
        invoice = self.move(call.id, "void", PAYABLE, "void", "voided_at")
        payment = self.open_payment(invoice)
        if payment is not None:
            voided_at = invoice["status_transitions"]["voided_at"]
            payment["status"] = "canceled"
            payment["status_transitions"]["canceled_at"] = voided_at
            intent = self.intent_of(payment)
            intent.update(status="canceled", canceled_at=voided_at, cancellation_reason="void_invoice")
        self._account.emit("invoice.voided", invoice, call)
        return invoice

    def mark_uncollectible(self, call: Call) -> Record:
        call.params.accept()
        invoice = self.move(call.id, "mark uncollectible", ("open",), "uncollectible", "marked_uncollectible_at")
        self._account.emit("invoice.marked_uncollectible", invoice, call)
        return invoice

    def move(self, invoice_id: str, action: str, allowed: tuple[str, ...], status: str, stamp: str) -> Record:
        invoice = self._account.invoices.get(invoice_id)
        require(invoice, action, allowed)
        invoice["status"] = status
        invoice["status_transitions"][stamp] = self._account.now_for(invoice)
        return invoice

    # Payments

    def attempt_payment(self, invoice: Record, payment_method: str, call: Call) -> bool:
        """Charge the invoice's amount due to ``payment_method``; whether it was paid.

        Success settles the invoice (charge.succeeded, payment_intent.succeeded, then the invoice's
        events); a declining test card leaves it open and says so (charge.failed,
        payment_intent.payment_failed, invoice.payment_failed).
        """
        payment = self.open_payment(invoice)
        if payment is None:
            raise invalid(f"Invoice {invoice['id']} has nothing to pay.")
        intent = self.intent_of(payment)
        customer = self._account.customers.get(invoice["customer"], param="customer")
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        charge = self._account.charges.add(_charge(intent, payment_method, customer, self._account.now_for(invoice)))
        intent.update(latest_charge=charge["id"], payment_method=payment_method)
        if charge["status"] == "failed":
            intent["last_payment_error"] = {"charge": charge["id"], "code": "card_declined",
                                            "decline_code": "generic_decline", "message": charge["failure_message"],
                                            "type": "card_error"}
            self._account.emit("charge.failed", charge, call)
            self._account.emit("payment_intent.payment_failed", intent, call)
            self._account.emit("invoice.payment_failed", invoice, call)
            return False
        intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
        self._account.emit("charge.succeeded", charge, call)
        self._account.emit("payment_intent.succeeded", intent, call)
        self.settle(invoice, call)
        return True

    def open_payment(self, invoice: Record) -> Record | None:
        return next(iter(self._account.invoice_payments.where(invoice=invoice["id"], status="open")), None)

    def intent_of(self, payment: Record) -> Record:
        return self._account.payment_intents.get(payment["payment"]["payment_intent"])

    def charge_of(self, invoice: Record) -> Record | None:
        """The successful charge that paid ``invoice``, if a card paid it (not out of band)."""
        for payment in self._account.invoice_payments.where(invoice=invoice["id"], status="paid"):
            intent = self.intent_of(payment)
            if intent["status"] == "succeeded" and intent["latest_charge"]:
                charge: Record = self._account.charges.get(intent["latest_charge"])
                return charge
        return None

    def settle(self, invoice: Record, call: Call) -> None:
        """Mark the invoice paid in full, settling its open payment (none for a zero invoice)."""
        invoice = self.move(invoice["id"], "pay", PAYABLE, "paid", "paid_at")
        paid_at = invoice["status_transitions"]["paid_at"]
        payment = self.open_payment(invoice)
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        if payment is not None:
            payment.update(status="paid", amount_paid=payment["amount_requested"])
            payment["status_transitions"]["paid_at"] = paid_at
            self._account.emit("invoice_payment.paid", payment, call)
        self._account.emit("invoice.paid", invoice, call)
        if payment is not None:
            self._account.emit("invoice.payment_succeeded", invoice, call)
        self._tell_paid(invoice, call)

    def paid_by_credit(self, invoice: Record, call: Call) -> None:
        """An invoice that credit notes left nothing to pay is paid; its payment intent is no longer needed."""
        payment = self.open_payment(invoice)
        invoice = self.move(invoice["id"], "pay", PAYABLE, "paid", "paid_at")
        if payment is not None:
            paid_at = invoice["status_transitions"]["paid_at"]
            payment["status"] = "canceled"
            payment["status_transitions"]["canceled_at"] = paid_at
            self.intent_of(payment).update(status="canceled", canceled_at=paid_at, cancellation_reason="automatic")
        self._account.emit("invoice.paid", invoice, call)
        self._tell_paid(invoice, call)

    def _tell_paid(self, invoice: Record, call: Call) -> None:
        for listener in self.on_paid:
            listener(invoice, call)
