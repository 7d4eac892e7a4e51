"""Accounting invariants checked at the boundary, before anything is written anywhere.

A violation is data, not an exception: :func:`violations` returns readable reasons, and the
runtime dead-letters the event with category ``data`` so an operator can fix the source and replay.

Every reason names the field at fault and what is wrong with it, never the field's text (it may be
personal data). A value out of :mod:`~crossledger.canonical.bounds` is reported alone: sums over an
amount no system can hold mean nothing.
"""

from crossledger.canonical.bounds import out_of_range
from crossledger.canonical.entities import CreditMemo, Entity, Invoice, JournalEntry, Payment, Refund, Subscription
from crossledger.canonical.money import Money, format_money, money


def violations(entity: Entity) -> list[str]:
    """Every invariant the entity breaks, as one sentence each; empty when it is sound."""
    unbounded = out_of_range(entity)
    if unbounded:
        return [f"{entity.kind()} {entity.id} {problem}" for problem in unbounded]
    if isinstance(entity, Invoice):
        return _invoice(entity)
    if isinstance(entity, Payment):
        return _payment(entity)
    if isinstance(entity, CreditMemo):
        return _credit_memo(entity)
    if isinstance(entity, Refund):
        return _refund(entity)
    if isinstance(entity, JournalEntry):
        return _journal_entry(entity)
    if isinstance(entity, Subscription):
        return _subscription(entity)
    return []


def _foreign(document: str, currency: str, amounts: list[tuple[str, Money]]) -> list[str]:
    """One sentence for each amount (by field path) not in the document's ``currency``."""
    return [f"{document} {path} is in {amount.currency} but the document is in {currency}; one currency per "
            "document" for path, amount in amounts if amount.currency != currency]


def _shown(minor_units: int, currency: str) -> str:
    """A sum of minor units as people read it (``2,807.00 USD``)."""
    return format_money(money(minor_units, currency))


def _invoice(invoice: Invoice) -> list[str]:
    named = f"invoice {invoice.id}"
    amounts = [(f"lines[{n}].amount", line.amount) for n, line in enumerate(invoice.lines)]
    mixed = _foreign(named, invoice.currency,
                     [*amounts, ("tax", invoice.tax), ("discount", invoice.discount), ("total", invoice.total)])
    if mixed:
        return mixed
    lines = sum(line.amount.amount for line in invoice.lines)
    expected = lines + invoice.tax.amount - invoice.discount.amount
    problems = [f"{named} lines[{n}].quantity is negative ({line.quantity})"
                for n, line in enumerate(invoice.lines) if line.quantity < 0]
    problems += [f"{named} {name} is negative ({format_money(amount)})"
                 for name, amount in (("tax", invoice.tax), ("discount", invoice.discount)) if amount.amount < 0]
    if expected != invoice.total.amount:
        problems.append(
            f"{named} total {format_money(invoice.total)} != lines {_shown(lines, invoice.currency)} + tax "
            f"{format_money(invoice.tax)} - discounts {format_money(invoice.discount)} = "
            f"{_shown(expected, invoice.currency)}"
        )
    if invoice.total.amount < 0:
        problems.append(f"{named} has a negative total {format_money(invoice.total)}")
    return problems


def _payment(payment: Payment) -> list[str]:
    named = f"payment {payment.id}"
    mixed = _foreign(named, payment.amount.currency,
                     [(f"applications[{n}].amount", app.amount) for n, app in enumerate(payment.applications)])
    if mixed:
        return mixed
    problems = [f"{named} applications[{n}].amount is negative ({format_money(app.amount)})"
                for n, app in enumerate(payment.applications) if app.amount.amount < 0]
    if payment.amount.amount < 0:
        problems.append(f"{named} amount is negative ({format_money(payment.amount)})")
    applied = sum(app.amount.amount for app in payment.applications)
    if applied > payment.amount.amount:
        problems.append(f"{named} applications apply {_shown(applied, payment.amount.currency)} but only "
                        f"{format_money(payment.amount)} was received (amount)")
    return problems


def _credit_memo(memo: CreditMemo) -> list[str]:
    named = f"credit memo {memo.id}"
    if memo.amount.currency != memo.credited_total.currency:
        return [f"{named} amount is in {memo.amount.currency} but credits a {memo.credited_total.currency} "
                "document (credited_total)"]
    if memo.amount.amount <= 0:
        return [f"{named} amount is not positive ({format_money(memo.amount)})"]
    if memo.amount.amount > memo.credited_total.amount:
        return [f"{named} amount {format_money(memo.amount)} is more than the {format_money(memo.credited_total)} "
                f"of invoice {memo.invoice_id} (credited_total)"]
    if memo.applied is not None and (memo.applied.currency != memo.amount.currency
                                     or not 0 <= memo.applied.amount <= memo.amount.amount):
        return [f"{named} applied {format_money(memo.applied)} must be between 0 and its "
                f"amount {format_money(memo.amount)} (applied)"]
    return []


def _refund(refund: Refund) -> list[str]:
    named = f"refund {refund.id}"
    if refund.amount.currency != refund.paid_total.currency:
        return [f"{named} amount is in {refund.amount.currency} but refunds a {refund.paid_total.currency} "
                "payment (paid_total)"]
    if refund.amount.amount <= 0:
        return [f"{named} amount is not positive ({format_money(refund.amount)})"]
    if refund.amount.amount > refund.paid_total.amount:
        return [f"{named} amount {format_money(refund.amount)} is more than the {format_money(refund.paid_total)} "
                "paid (paid_total)"]
    return []


def _journal_entry(entry: JournalEntry) -> list[str]:
    named = f"journal entry {entry.id}"
    mixed = _foreign(named, entry.currency, [(f"lines[{n}].{side}", amount) for n, line in enumerate(entry.lines)
                                             for side, amount in (("debit", line.debit), ("credit", line.credit))
                                             if amount is not None])
    if mixed:
        return mixed
    problems = [f"{named} lines[{n}] ({line.account}) needs exactly one positive debit or credit"
                for n, line in enumerate(entry.lines)
                if (line.debit is None) == (line.credit is None)
                or any(m is not None and m.amount <= 0 for m in (line.debit, line.credit))]
    debits = sum(line.debit.amount for line in entry.lines if line.debit is not None)
    credits = sum(line.credit.amount for line in entry.lines if line.credit is not None)
    if debits != credits:
        problems.append(f"{named} lines do not balance: debits {_shown(debits, entry.currency)} != credits "
                        f"{_shown(credits, entry.currency)}")
    if len(entry.lines) < 2:
        problems.append(f"{named} lines: needs at least two")
    return problems


def _subscription(subscription: Subscription) -> list[str]:
    named = f"subscription {subscription.id}"
    mixed = _foreign(named, subscription.currency,
                     [(f"items[{n}].unit_amount", item.unit_amount) for n, item in enumerate(subscription.items)])
    if mixed:
        return mixed
    return [f"{named} items[{n}].{name} is negative ({value})" for n, item in enumerate(subscription.items)
            for name, value in (("quantity", item.quantity), ("unit_amount", item.unit_amount.amount)) if value < 0]
