"""Refunds and credit notes: from billing to the ERP (roles: whichever connectors play them),
against the right invoice, with a journal entry where the policy asks for one.

=============  ===========================================================================  =========
step           what it does                                                                 if it fails
=============  ===========================================================================  =========
validate       the document names an invoice (or payment) the hub knows, of the same        park
               customer and currency, for no more than was invoiced or paid (one the
               hub has not received yet is waited for, under the hub's retry policy)
erp            a credit memo applied to its invoice, or a customer refund paying out the    park
               payment or credit it returns
ledger         a journal entry for a refund, when ``journal_entry = true``: debit           park
               ``debit_account``, credit ``credit_account`` (canonical ledger accounts,
               which ``[connectors.netsuite] accounts`` maps), for the refund's amount
=============  ===========================================================================  =========

Amounts stay integers of the currency's minor unit end to end (a JPY refund has no decimals, a
KWD one three), so a partial refund books exactly what was returned. Only a refund that succeeded
moved money: a pending one starts the journey when billing reports it succeeded.
"""

from typing import TypeVar

from crossledger.canonical.entities import CreditMemo, Invoice, JournalEntry, JournalLine, Payment, Refund
from crossledger.canonical.events import Envelope
from crossledger.canonical.money import format_money
from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.journey_definition import (
    BILLING,
    ERP,
    HubView,
    Journey,
    JourneyRun,
    OnFailure,
    Step,
    StepFailed,
    Trigger,
    Write,
)

NAME = "refund"
Known = TypeVar("Known", Invoice, Payment)


def _succeeded(event: Envelope, hub: HubView) -> bool:
    return not isinstance(event.data, Refund) or event.data.status == "succeeded"


def _inputs(event: Envelope) -> dict[str, str]:
    return {"event_type": event.type}


def _document(run: JourneyRun) -> Refund | CreditMemo:
    found = run.golden(run.subject)
    if not isinstance(found, Refund | CreditMemo):
        raise StepFailed(f"the hub has no refund or credit memo {run.subject}")
    return found


def validate(run: JourneyRun) -> list[Write]:
    document = _document(run)
    if isinstance(document, CreditMemo):
        invoice = _known(run, Invoice, document.invoice_id, document.customer_id)
        if document.amount.currency != invoice.currency or document.amount.amount > invoice.total.amount:
            raise StepFailed(f"the credit of {format_money(document.amount)} exceeds invoice {invoice.id} "
                             f"({format_money(invoice.total)})")
        return []
    if document.invoice_id is None and document.payment_id is None:
        raise StepFailed(f"the refund {document.id} names neither the invoice nor the payment it returns")
    if document.invoice_id is not None:
        invoice = _known(run, Invoice, document.invoice_id, document.customer_id)
        if invoice.currency != document.amount.currency:
            raise StepFailed(f"the refund is in {document.amount.currency}, invoice {invoice.id} in {invoice.currency}")
    if document.payment_id is not None:
        _known(run, Payment, document.payment_id, document.customer_id)
    if document.amount.amount > document.paid_total.amount:
        raise StepFailed(f"the refund of {format_money(document.amount)} exceeds what was paid "
                         f"({format_money(document.paid_total)})")
    return []


def _known(run: JourneyRun, kind: type[Known], canonical_id: str, customer_id: str) -> Known:
    """The invoice or payment the document names, of its customer. One the hub has not received may
    be on its way (billing does not promise to report a payment before its refund): the lookup is
    retried under the hub's retry policy, and the run parks only once retries run out."""
    found = run.golden(canonical_id)
    if found is None:
        raise ConnectorError(Category.TRANSIENT, f"{canonical_id} is not known to the hub (yet)")
    if not isinstance(found, kind):
        raise StepFailed(f"{canonical_id} is not a {kind.kind()}")
    if found.customer_id != customer_id:
        raise StepFailed(f"{canonical_id} belongs to {found.customer_id}, not to {customer_id}")
    return found


def book(run: JourneyRun) -> list[Write]:
    return [Write(ERP, run.data["event_type"], _document(run))] if run.configured(ERP) else []


def ledger(run: JourneyRun) -> list[Write]:
    """The journal entry the policy asks for (refunds only: a credit memo posts itself)."""
    document = _document(run)
    settings = run.settings()
    if not isinstance(document, Refund) or not settings.get("journal_entry") or not run.configured(ERP):
        return []
    debit, credit = settings.get("debit_account"), settings.get("credit_account")
    if not isinstance(debit, str) or not isinstance(credit, str):
        raise StepFailed("journal_entry = true needs debit_account and credit_account in [journeys.refund]")
    memo = f"Refund {document.id}" + (f" of invoice {document.invoice_id}" if document.invoice_id else "")
    entry = JournalEntry(
        id=f"journalentry/crossledger/{run.id}", currency=document.amount.currency, memo=memo,
        reference_id=document.id, posted_at=document.issued_at,
        lines=[JournalLine(account=debit, debit=document.amount, memo=memo),
               JournalLine(account=credit, credit=document.amount, memo=memo)],
    )
    run.save(entry)
    return [Write(ERP, "journal_entry.posted", entry)]


REFUND = Journey(
    name=NAME,
    version=1,
    description="A refund or credit note in billing is booked in the ERP against its invoice.",
    steps=(
        Step("validate", validate, on_failure=OnFailure.PARK),
        Step("erp", book, on_failure=OnFailure.PARK),
        Step("ledger", ledger, on_failure=OnFailure.PARK),
    ),
    triggers=(Trigger("refund.issued", source=BILLING, starts=_succeeded, inputs=_inputs),
              Trigger("credit_memo.issued", source=BILLING, inputs=_inputs)),
    covers=(ERP,),
    sla_s=120.0,
)
