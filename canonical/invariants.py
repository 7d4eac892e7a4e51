"""Accounting invariants checked at the boundary, before anything is written anywhere.

A violation is data, not an exception: :func:`violations` returns readable reasons, and the
runtime dead-letters the event with category ``data`` so an operator can fix the source and replay.
"""

from crossledger.canonical.entities import CreditMemo, Entity, Invoice, JournalEntry, Payment, Refund, Subscription
from crossledger.canonical.money import Money


def violations(entity: Entity) -> list[str]:
    """Every invariant the entity breaks, as one sentence each; empty when it is sound."""
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


def _currencies(amounts: list[Money]) -> set[str]:
    return {amount.currency for amount in amounts}


def _invoice(invoice: Invoice) -> list[str]:
    amounts = [line.amount for line in invoice.lines] + [invoice.tax, invoice.discount, invoice.total]
    found = _currencies(amounts) | {invoice.currency}
    if len(found) > 1:
        return [f"invoice {invoice.id} mixes currencies {sorted(found)}; one currency per document"]
    lines = sum(line.amount.amount for line in invoice.lines)
    expected = lines + invoice.tax.amount - invoice.discount.amount
    problems = []
    if expected != invoice.total.amount:
        problems.append(
            f"invoice {invoice.id} total {invoice.total.amount} != lines {lines} + tax {invoice.tax.amount}"
            f" - discounts {invoice.discount.amount} = {expected} (minor units of {invoice.currency})"
        )
    if invoice.total.amount < 0:
        problems.append(f"invoice {invoice.id} has a negative total {invoice.total.amount}")
    return problems


def _payment(payment: Payment) -> list[str]:
    amounts = [payment.amount] + [app.amount for app in payment.applications]
    if len(_currencies(amounts)) > 1:
        return [f"payment {payment.id} mixes currencies {sorted(_currencies(amounts))}"]
    applied = sum(app.amount.amount for app in payment.applications)
    if applied > payment.amount.amount:
        return [f"payment {payment.id} applies {applied} but only {payment.amount.amount} was received"]
    return []


def _credit_memo(memo: CreditMemo) -> list[str]:
    if memo.amount.currency != memo.credited_total.currency:
        return [f"credit memo {memo.id} is in {memo.amount.currency} but credits a "
                f"{memo.credited_total.currency} document"]
    if memo.amount.amount > memo.credited_total.amount:
        return [f"credit memo {memo.id} credits {memo.amount.amount}, more than the "
                f"{memo.credited_total.amount} of invoice {memo.invoice_id}"]
    if memo.amount.amount <= 0:
        return [f"credit memo {memo.id} has a non-positive amount {memo.amount.amount}"]
    if memo.applied is not None and (memo.applied.currency != memo.amount.currency
                                     or not 0 <= memo.applied.amount <= memo.amount.amount):
        return [f"credit memo {memo.id} applies {memo.applied.amount} {memo.applied.currency} to invoice "
                f"{memo.invoice_id}; it must be between 0 and its own {memo.amount.amount} {memo.amount.currency}"]
    return []


def _refund(refund: Refund) -> list[str]:
    if refund.amount.currency != refund.paid_total.currency:
        return [f"refund {refund.id} is in {refund.amount.currency} but refunds a {refund.paid_total.currency} payment"]
    if refund.amount.amount <= 0:
        return [f"refund {refund.id} has a non-positive amount {refund.amount.amount}"]
    if refund.amount.amount > refund.paid_total.amount:
        return [f"refund {refund.id} returns {refund.amount.amount}, more than the {refund.paid_total.amount} paid"]
    return []


def _journal_entry(entry: JournalEntry) -> list[str]:
    amounts = [m for line in entry.lines for m in (line.debit, line.credit) if m is not None]
    found = _currencies(amounts) | {entry.currency}
    if len(found) > 1:
        return [f"journal entry {entry.id} mixes currencies {sorted(found)}"]
    problems = [f"journal entry {entry.id} line {n} ({line.account}) needs exactly one positive debit or credit"
                for n, line in enumerate(entry.lines, 1)
                if (line.debit is None) == (line.credit is None)
                or any(m is not None and m.amount <= 0 for m in (line.debit, line.credit))]
    debits = sum(line.debit.amount for line in entry.lines if line.debit is not None)
    credits = sum(line.credit.amount for line in entry.lines if line.credit is not None)
    if debits != credits:
        problems.append(f"journal entry {entry.id} does not balance: debits {debits} != credits {credits} "
                        f"(minor units of {entry.currency})")
    if len(entry.lines) < 2:
        problems.append(f"journal entry {entry.id} needs at least two lines")
    return problems


def _subscription(subscription: Subscription) -> list[str]:
    found = _currencies([item.unit_amount for item in subscription.items]) | {subscription.currency}
    if len(found) > 1:
        return [f"subscription {subscription.id} mixes currencies {sorted(found)}"]
    if any(item.quantity < 0 or item.unit_amount.amount < 0 for item in subscription.items):
        return [f"subscription {subscription.id} has a negative quantity or price"]
    return []
