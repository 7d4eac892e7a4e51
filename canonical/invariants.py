"""Accounting invariants checked at the boundary, before anything is written anywhere.

A violation is data, not an exception: :func:`violations` returns readable reasons, and the
runtime dead-letters the event with category ``data`` so an operator can fix the source and replay.
"""

from crossledger.canonical.entities import CreditMemo, Entity, Invoice, Payment
from crossledger.canonical.money import Money


def violations(entity: Entity) -> list[str]:
    """Every invariant the entity breaks, as one sentence each; empty when it is sound."""
    if isinstance(entity, Invoice):
        return _invoice(entity)
    if isinstance(entity, Payment):
        return _payment(entity)
    if isinstance(entity, CreditMemo):
        return _credit_memo(entity)
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
    return []
