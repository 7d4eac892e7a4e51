"""The emulated Zuora tenant: accounts, invoices, payments and the notifications they raise.

Records are kept in the flat form Zuora's Object Query answers (``/object-query/accounts``), and
rendered in the nested form of the v1 API where it has one (``GET /v1/accounts/{key}`` gives
``basicInfo``, ``billingAndPayment``, ``billToContact``...). Amounts are Decimals in major units,
rounded to the account's currency. Keys name an object by id or by number (``A00000001``).

Each change records the notification Zuora would raise (``AccountCreated``, ``AccountUpdated``,
``InvoicePosted``, ``PaymentProcessed``, ``CreditMemoPosted``, ``RefundProcessed``); the app sends them
as callouts.

- **Accounts** (``POST``/``GET``/``PUT /v1/accounts``): ``name``, ``currency`` and ``billToContact``
  are required (a missing one is answered HTTP 200 ``success: false``, category 22); custom fields
  (``*__c``) are kept and answered in ``basicInfo``; the currency cannot change.
- **Invoices** (``POST /v1/invoices``, standalone, with ``invoiceItems``): each item's ``amount``,
  its ``taxItems`` adding to the invoice's ``taxAmount``; ``status`` ``Posted`` raises
  ``InvoicePosted``. ``GET /v1/invoices/{key}`` and ``/items``.
- **Payments** (``POST /v1/payments``, ``External`` or ``Electronic``) applied to ``invoices[]``:
  each application lowers the invoice's ``balance``, and may not exceed it nor the payment;
  ``GET /v1/payments/{key}`` and ``/parts``.
- **Credit memos** from an invoice (``POST /v1/invoices/{key}/creditmemos``, its ``items`` credit
  invoice items; without items the invoice's whole amount): the credits of an invoice never exceed
  its amount. ``autoPost`` posts the memo (raising ``CreditMemoPosted``), and
  ``autoApplyToInvoiceUponPosting`` applies what the invoice still owes (``appliedAmount``; the
  rest stays ``unappliedAmount``, to refund). ``GET /v1/creditmemos/{key}``.
- **Refunds** of a payment's unapplied amount (``POST /v1/payments/{key}/refunds``) or of a posted
  memo's (``POST /v1/creditmemos/{key}/refunds``), ``totalAmount`` at most what is unapplied (else a
  business-rule refusal, category 30), raising ``RefundProcessed``. ``GET /v1/refunds/{key}``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from crossledger.plugins.zuora.sandbox.wire import (
    ACCOUNTS,
    CREDIT_MEMOS,
    INVALID_VALUE,
    INVOICES,
    MISSING_FIELD,
    NOT_FOUND,
    PAYMENTS,
    REFUNDS,
    RULE,
    SUBSCRIPTIONS,
    ZuoraError,
    decimal,
    new_id,
    rounded,
)

Record = dict[str, Any]

CONTACT_FIELDS = ("firstName", "lastName", "workEmail", "workPhone", "address1", "address2", "city", "state",
                  "zipCode", "country")


@dataclass(frozen=True)
class Notification:
    """A change Zuora raises an event for: what a callout names."""

    event_type: str
    object_type: str
    object_id: str
    updated: str


@dataclass
class Tenant:
    """Every record of the emulated tenant; callers hold the sandbox's lock."""

    clock: Callable[[], float]
    accounts: dict[str, Record] = field(default_factory=dict)
    contacts: dict[str, Record] = field(default_factory=dict)
    invoices: dict[str, Record] = field(default_factory=dict)
    invoice_items: dict[str, list[Record]] = field(default_factory=dict)
    payments: dict[str, Record] = field(default_factory=dict)
    payment_parts: dict[str, list[Record]] = field(default_factory=dict)
    credit_memos: dict[str, Record] = field(default_factory=dict)
    refunds: dict[str, Record] = field(default_factory=dict)
    subscription_numbers: dict[str, Record] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)
    raised: list[Notification] = field(default_factory=list)
    _last_stamp: dict[str, str] = field(default_factory=dict)

    # -- accounts ----------------------------------------------------------------------------------

    def create_account(self, body: Record) -> Record:
        for required in ("name", "currency", "billToContact"):
            if not body.get(required):
                raise ZuoraError(ACCOUNTS, MISSING_FIELD, f"'{required}' may not be null")
        contact = body["billToContact"]
        if not isinstance(contact, dict) or not contact.get("lastName"):
            raise ZuoraError(ACCOUNTS, MISSING_FIELD, "'billToContact.lastName' may not be null")
        currency = str(body["currency"]).upper()
        account_id, number = new_id(), body.get("accountNumber") or f"A{len(self.accounts) + 1:08d}"
        if any(account["accountNumber"] == number for account in self.accounts.values()):
            raise ZuoraError(ACCOUNTS, INVALID_VALUE, "The account number is already in use.")
        bill_to = self._contact(account_id, contact)
        sold_to = self._contact(account_id, body.get("soldToContact") or contact)
        now = self._now()
        account = {
            "id": account_id, "accountNumber": number, "name": str(body["name"]), "status": "Active",
            "currency": currency, "billCycleDay": int(body.get("billCycleDay") or 1),
            "autoPay": bool(body.get("autoPay", False)), "paymentTerm": body.get("paymentTerm") or "Due Upon Receipt",
            "balance": Decimal(0), "creditBalance": Decimal(0), "billToId": bill_to, "soldToId": sold_to,
            "createdDate": now, "updatedDate": now,
            **({"crmId": str(body["crmId"])} if body.get("crmId") else {}),
            **_custom_fields(body),
        }
        self.accounts[account_id] = account
        self._raise("AccountCreated", "Account", account)
        return {"success": True, "accountId": account_id, "accountNumber": number, "billToContactId": bill_to,
                "soldToContactId": sold_to}

    def update_account(self, key: str, body: Record) -> Record:
        account = self.account(key)
        if "currency" in body and str(body["currency"]).upper() != account["currency"]:
            raise ZuoraError(ACCOUNTS, INVALID_VALUE, "The currency of an account cannot be changed.")
        for name in ("name", "crmId", "paymentTerm", "autoPay", "billCycleDay"):
            if name in body:
                account[name] = body[name]
        account.update(_custom_fields(body))
        if isinstance(body.get("billToContact"), dict):
            self.contacts[account["billToId"]].update({k: v for k, v in body["billToContact"].items()
                                                       if k in CONTACT_FIELDS})
        account["updatedDate"] = self._now()
        self._raise("AccountUpdated", "Account", account)
        return {"success": True}

    def account(self, key: str) -> Record:
        found = self.accounts.get(key) or next((a for a in self.accounts.values() if a["accountNumber"] == key), None)
        if found is None:
            raise ZuoraError(ACCOUNTS, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return found

    def account_view(self, key: str) -> Record:
        """``GET /v1/accounts/{key}``: the account in the v1 API's nested form."""
        account = self.account(key)
        custom = {name: value for name, value in account.items() if name.endswith("__c")}
        basic = {"id": account["id"], "accountNumber": account["accountNumber"], "name": account["name"],
                 "status": account["status"], **({"crmId": account["crmId"]} if "crmId" in account else {}),
                 **custom}
        return {
            "success": True,
            "basicInfo": basic,
            "billingAndPayment": {"billCycleDay": str(account["billCycleDay"]), "currency": account["currency"],
                                  "paymentTerm": account["paymentTerm"], "autoPay": account["autoPay"]},
            "metrics": {"balance": _text(account["balance"]), "creditBalance": _text(account["creditBalance"]),
                        "totalInvoiceBalance": _text(account["balance"])},
            "billToContact": self._contact_view(account["billToId"]),
            "soldToContact": self._contact_view(account["soldToId"]),
        }

    def _contact(self, account_id: str, given: Record) -> str:
        contact_id = new_id()
        self.contacts[contact_id] = {"id": contact_id, "accountId": account_id,
                                     **{k: str(v) for k, v in given.items() if k in CONTACT_FIELDS and v is not None}}
        return contact_id

    def _contact_view(self, contact_id: str) -> Record:
        return {k: v for k, v in self.contacts[contact_id].items() if k != "accountId"}

    # -- invoices ----------------------------------------------------------------------------------

    def create_invoice(self, body: Record) -> Record:
        key = body.get("accountId") or body.get("accountNumber")
        if not key:
            raise ZuoraError(INVOICES, MISSING_FIELD, "'accountId' may not be null")
        if not body.get("invoiceDate"):
            raise ZuoraError(INVOICES, MISSING_FIELD, "'invoiceDate' may not be null")
        account = self.account(str(key))
        currency = account["currency"]
        items = body.get("invoiceItems") or []
        if not items:
            raise ZuoraError(INVOICES, MISSING_FIELD, "'invoiceItems' may not be empty")
        invoice_id = new_id()
        lines: list[Record] = []
        for index, item in enumerate(items):
            charge = rounded(decimal(item.get("amount"), f"invoiceItems[{index}].amount", INVOICES), currency)
            tax = sum((rounded(decimal(tax.get("taxAmount"), f"invoiceItems[{index}].taxItems.taxAmount", INVOICES),
                               currency) for tax in item.get("taxItems") or []), Decimal(0))
            quantity = decimal(item.get("quantity", 1), f"invoiceItems[{index}].quantity", INVOICES)
            lines.append({"id": new_id(), "chargeName": str(item.get("chargeName") or item.get("description") or ""),
                          "description": str(item.get("description") or ""), "chargeAmount": charge,
                          "taxAmount": tax, "quantity": quantity, "balance": charge + tax,
                          "serviceStartDate": str(item.get("serviceStartDate") or body["invoiceDate"]),
                          "processingType": "Charge"})
        without_tax = sum((line["chargeAmount"] for line in lines), Decimal(0))
        tax_total = sum((line["taxAmount"] for line in lines), Decimal(0))
        status = str(body.get("status") or "Draft")
        if status not in ("Draft", "Posted"):
            raise ZuoraError(INVOICES, INVALID_VALUE, "'status' value should be one of: Draft, Posted")
        now = self._now()
        invoice = {
            "id": invoice_id, "invoiceNumber": f"INV{len(self.invoices) + 1:08d}", "accountId": account["id"],
            "currency": currency, "invoiceDate": str(body["invoiceDate"]),
            "dueDate": str(body.get("dueDate") or body["invoiceDate"]), "status": status,
            "amountWithoutTax": without_tax, "taxAmount": tax_total, "amount": without_tax + tax_total,
            "balance": without_tax + tax_total, "paymentAmount": Decimal(0), "source": "API",
            "sourceType": "Standalone", "createdDate": now, "updatedDate": now,
            **({"postedDate": now[:10]} if status == "Posted" else {}),
        }
        self.invoices[invoice_id] = invoice
        self.invoice_items[invoice_id] = lines
        if status == "Posted":
            account["balance"] += invoice["amount"]
            self._raise("InvoicePosted", "Invoice", invoice)
        return self.invoice_view(invoice_id)

    def invoice(self, key: str) -> Record:
        found = self.invoices.get(key) or next((i for i in self.invoices.values() if i["invoiceNumber"] == key), None)
        if found is None:
            raise ZuoraError(INVOICES, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return found

    def invoice_view(self, key: str) -> Record:
        """``GET /v1/invoices/{key}``: amounts are strings there, as Zuora's description says."""
        invoice = self.invoice(key)
        return {"success": True, **{k: _text(v) for k, v in invoice.items()}}

    def invoice_items_view(self, key: str) -> Record:
        items = self.invoice_items[self.invoice(key)["id"]]
        return {"success": True, "invoiceItems": [{k: _text(v) for k, v in item.items()} for item in items]}

    # -- payments ----------------------------------------------------------------------------------

    def create_payment(self, body: Record) -> Record:
        for required in ("amount", "currency", "type"):
            if body.get(required) in (None, ""):
                raise ZuoraError(PAYMENTS, MISSING_FIELD, f"'{required}' may not be null")
        if body["type"] not in ("External", "Electronic"):
            raise ZuoraError(PAYMENTS, INVALID_VALUE, "'type' value should be one of: External, Electronic")
        key = body.get("accountId") or body.get("accountNumber")
        if not key:
            raise ZuoraError(PAYMENTS, MISSING_FIELD, "'accountId' may not be null")
        account = self.account(str(key))
        currency = account["currency"]
        if str(body["currency"]).upper() != currency:
            raise ZuoraError(PAYMENTS, INVALID_VALUE, "The payment currency must be the account's currency.")
        total = rounded(decimal(body["amount"], "amount", PAYMENTS), currency)
        applications = []
        for index, applied in enumerate(body.get("invoices") or []):
            invoice = self.invoice(str(applied.get("invoiceId")))
            part = rounded(decimal(applied.get("amount"), f"invoices[{index}].amount", PAYMENTS), currency)
            if invoice["accountId"] != account["id"] or invoice["status"] != "Posted":
                raise ZuoraError(PAYMENTS, INVALID_VALUE, "A payment applies only to posted invoices of its account.")
            if part <= 0 or part > invoice["balance"]:
                raise ZuoraError(PAYMENTS, INVALID_VALUE, "The applied amount exceeds the invoice balance.")
            applications.append((invoice, part))
        applied_total = sum((part for _, part in applications), Decimal(0))
        if applied_total > total:
            raise ZuoraError(PAYMENTS, INVALID_VALUE, "The applied amounts exceed the payment amount.")
        payment_id, now = new_id(), self._now()
        for invoice, part in applications:
            invoice["balance"] -= part
            invoice["paymentAmount"] += part
            invoice["updatedDate"] = now
        account["balance"] -= applied_total
        account["creditBalance"] += total - applied_total
        payment = {
            "id": payment_id, "number": f"P-{len(self.payments) + 1:08d}", "accountId": account["id"],
            "accountNumber": account["accountNumber"], "currency": currency, "amount": total,
            "appliedAmount": applied_total, "unappliedAmount": total - applied_total, "refundAmount": Decimal(0),
            "creditBalanceAmount": Decimal(0), "type": body["type"], "status": "Processed",
            "effectiveDate": f"{body.get('effectiveDate') or now[:10]}T00:00:00Z",
            "createdDate": now, "updatedDate": now,
            **({"referenceId": str(body["referenceId"])} if body.get("referenceId") else {}),
        }
        self.payments[payment_id] = payment
        self.payment_parts[payment_id] = [
            {"id": new_id(), "invoiceId": invoice["id"], "amount": part, "createdDate": now, "updatedDate": now}
            for invoice, part in applications]
        self._raise("PaymentProcessed", "Payment", payment)
        return self.payment_view(payment_id)

    def payment(self, key: str) -> Record:
        found = self.payments.get(key) or next((p for p in self.payments.values() if p["number"] == key), None)
        if found is None:
            raise ZuoraError(PAYMENTS, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return found

    def payment_view(self, key: str) -> Record:
        """``GET /v1/payments/{key}``: amounts are numbers there."""
        return {"success": True, **{k: _number(v) for k, v in self.payment(key).items()}}

    def payment_parts_view(self, key: str) -> Record:
        parts = self.payment_parts[self.payment(key)["id"]]
        return {"success": True, "parts": [{k: _number(v) for k, v in part.items()} for part in parts]}

    # -- credit memos and refunds ----------------------------------------------------------------

    def credit_invoice(self, invoice_key: str, body: Record) -> Record:
        invoice = self.invoice(invoice_key)
        if invoice["status"] != "Posted":
            raise ZuoraError(CREDIT_MEMOS, RULE, "Only a posted invoice can be credited.")
        currency = invoice["currency"]
        items = body.get("items")
        if items:
            known = {item["id"] for item in self.invoice_items[invoice["id"]]}
            if any(item.get("invoiceItemId") not in known for item in items):
                raise ZuoraError(CREDIT_MEMOS, INVALID_VALUE, "'invoiceItemId' names no item of the invoice.")
            amount = sum((rounded(decimal(item.get("amount"), "items.amount", CREDIT_MEMOS), currency)
                          for item in items), Decimal(0))
        else:
            amount = invoice["amount"]
        credited = sum((memo["amount"] for memo in self.credit_memos.values()
                        if memo["referredInvoiceId"] == invoice["id"] and memo["status"] != "Canceled"), Decimal(0))
        if amount <= 0 or credited + amount > invoice["amount"]:
            raise ZuoraError(CREDIT_MEMOS, RULE, "The credit memo exceeds the invoice amount not yet credited.")
        posted = bool(body.get("autoPost"))
        applying = posted and body.get("autoApplyToInvoiceUponPosting")
        applied = min(amount, invoice["balance"]) if applying else Decimal(0)
        memo_id, now = new_id(), self._now()
        account = self.accounts[invoice["accountId"]]
        memo = {
            "id": memo_id, "number": f"CM{len(self.credit_memos) + 1:08d}", "accountId": account["id"],
            "accountNumber": account["accountNumber"], "referredInvoiceId": invoice["id"], "currency": currency,
            "amount": amount, "taxAmount": Decimal(0), "appliedAmount": applied, "unappliedAmount": amount - applied,
            "refundAmount": Decimal(0), "status": "Posted" if posted else "Draft", "sourceType": "Invoice",
            "creditMemoDate": str(body.get("effectiveDate") or now[:10]), "createdDate": now, "updatedDate": now,
            **({"reasonCode": str(body["reasonCode"])} if body.get("reasonCode") else {}),
            **({"postedOn": now} if posted else {}),
        }
        self.credit_memos[memo_id] = memo
        if posted:
            invoice["balance"] -= applied
            invoice["creditMemoAmount"] = invoice.get("creditMemoAmount", Decimal(0)) + amount
            invoice["updatedDate"] = now
            account["balance"] -= applied
            account["creditBalance"] += amount - applied
            self._raise("CreditMemoPosted", "CreditMemo", memo)
        return self.credit_memo_view(memo_id)

    def credit_memo(self, key: str) -> Record:
        found = self.credit_memos.get(key) or next((m for m in self.credit_memos.values() if m["number"] == key), None)
        if found is None:
            raise ZuoraError(CREDIT_MEMOS, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return found

    def credit_memo_view(self, key: str) -> Record:
        return {"success": True, **{k: _number(v) for k, v in self.credit_memo(key).items()}}

    def refund_payment(self, payment_key: str, body: Record) -> Record:
        return self._refund(self.payment(payment_key), "paymentId", body)

    def refund_credit_memo(self, memo_key: str, body: Record) -> Record:
        memo = self.credit_memo(memo_key)
        if memo["status"] != "Posted":
            raise ZuoraError(CREDIT_MEMOS, RULE, "Only a posted credit memo can be refunded.")
        return self._refund(memo, "creditMemoId", body)

    def _refund(self, source: Record, kind: str, body: Record) -> Record:
        """Refund ``totalAmount`` of what ``source`` (a payment or a credit memo) has unapplied."""
        currency = source["currency"]
        for required in ("totalAmount", "type"):
            if body.get(required) in (None, ""):
                raise ZuoraError(REFUNDS, MISSING_FIELD, f"'{required}' may not be null")
        if body["type"] not in ("External", "Electronic"):
            raise ZuoraError(REFUNDS, INVALID_VALUE, "'type' value should be one of: External, Electronic")
        amount = rounded(decimal(body["totalAmount"], "totalAmount", REFUNDS), currency)
        if amount <= 0 or amount > source["unappliedAmount"]:
            raise ZuoraError(REFUNDS, RULE, "The refund amount cannot exceed the unapplied amount.")
        source["unappliedAmount"] -= amount
        source["refundAmount"] += amount
        refund_id, now = new_id(), self._now()
        self.accounts[source["accountId"]]["creditBalance"] -= amount
        refund = {
            "id": refund_id, "number": f"R-{len(self.refunds) + 1:08d}", "accountId": source["accountId"],
            kind: source["id"], "amount": amount, "currency": currency, "type": body["type"],
            "methodType": str(body.get("methodType") or "Other"), "status": "Processed",
            "refundDate": str(body.get("refundDate") or now[:10]), "createdDate": now, "updatedDate": now,
            **({"reasonCode": str(body["reasonCode"])} if body.get("reasonCode") else {}),
            **({"referenceId": str(body["referenceId"])} if body.get("referenceId") else {}),
        }
        self.refunds[refund_id] = refund
        self._raise("RefundProcessed", "Refund", refund)
        return self.refund_view(refund_id)

    def refund(self, key: str) -> Record:
        found = self.refunds.get(key) or next((r for r in self.refunds.values() if r["number"] == key), None)
        if found is None:
            raise ZuoraError(REFUNDS, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return found

    def refund_view(self, key: str) -> Record:
        """``GET /v1/refunds/{key}`` (the currency is the account's: Zuora's refund does not restate it)."""
        return {"success": True, **{k: _number(v) for k, v in self.refund(key).items() if k != "currency"}}

    # -- shared ------------------------------------------------------------------------------------

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def subscription(self, key: str) -> Record:
        """The latest version of a subscription, by number or by the id of any of its versions."""
        found = self.subscription_numbers.get(key) or next(
            (s for s in self.subscription_numbers.values() if s["id"] == key), None)
        if found is None:
            raise ZuoraError(SUBSCRIPTIONS, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return found

    def raise_event(self, event_type: str, object_type: str, record: Record, *, object_id: str | None = None) -> None:
        """Record the notification for a change of ``record`` (named by ``object_id``, its id by default)."""
        self._raise(event_type, object_type, record, object_id=object_id)

    def _raise(self, event_type: str, object_type: str, record: Record, *, object_id: str | None = None) -> None:
        """Record the notification for a change. The sandbox never stamps two versions of one object in
        the same second (Zuora's ``updatedDate`` has whole seconds, so Zuora can), keeping every
        version's callout distinct."""
        stamp = record["updatedDate"]
        key = object_id or record["id"]
        last = self._last_stamp.get(key)
        if last is not None and stamp <= last:
            stamp = datetime.fromtimestamp(datetime.fromisoformat(last).timestamp() + 1, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            record["updatedDate"] = stamp
        self._last_stamp[key] = stamp
        self.raised.append(Notification(event_type, object_type, key, stamp))

    def state(self) -> dict[str, list[Record]]:
        """The records as Object Query answers them (flat, amounts as numbers)."""
        return {
            "accounts": [self.flat_account(a) for a in self.accounts.values()],
            "invoices": [{k: _number(v) for k, v in i.items()} for i in self.invoices.values()],
            "payments": [{k: _number(v) for k, v in p.items()} for p in self.payments.values()],
            "creditmemos": [{k: _number(v) for k, v in m.items()} for m in self.credit_memos.values()],
            "refunds": [{k: _number(v) for k, v in r.items()} for r in self.refunds.values()],
            "subscriptions": [{k: v for k, v in s.items() if k != "ratePlans"}
                              for s in self.subscription_numbers.values()],
        }

    def flat_account(self, account: Record) -> Record:
        return {k: _number(v) for k, v in account.items()}


def _custom_fields(body: Record) -> Record:
    return {name: value for name, value in body.items() if name.endswith("__c")}


def _number(value: object) -> object:
    """A Decimal as the JSON number Zuora sends; anything else as it is."""
    return float(value) if isinstance(value, Decimal) else value


def _text(value: object) -> object:
    """A Decimal as the decimal string Zuora's description gives (``"100.00"``); anything else as it is."""
    return str(value) if isinstance(value, Decimal) else value
