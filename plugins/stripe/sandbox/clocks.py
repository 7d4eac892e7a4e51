"""Time in the Stripe sandbox: test clocks, and what falls due when one is advanced.

As in Stripe, time only passes for customers on a **test clock** (``POST
/v1/test_helpers/test_clocks``, then ``test_clock`` on the customer): everything about them is
stamped with the clock's frozen time. Advancing the clock (``POST .../{id}/advance``) walks its
subscriptions through every moment due on the way, in order:

- a period end renews the subscription (new item periods, an invoice with
  ``billing_reason=subscription_cycle``, collected as at creation; a trial's end is its first
  renewal), or ends it when it was to cancel at the period end;
- a failed renewal charge makes the subscription ``past_due`` and is retried 3, 5 and 7 days
  after each failure (Stripe's Smart Retries, made predictable); when the last retry fails the
  subscription becomes ``unpaid`` (the sandbox account's "mark the subscription as unpaid"
  setting), and its later invoices are left open without being charged. Paying the invoice (a
  retry, or ``POST /v1/invoices/{id}/pay``) makes it ``active`` again;
- a ``send_invoice`` invoice past its due date makes its subscription ``past_due``.

To make a renewal fail, give the customer (or the subscription) the test payment method
``pm_card_chargeCustomerFail`` before advancing: it is accepted, and declined when charged.

Stripe advances a clock in the background (``advancing``, then ``ready``, with the events
``test_helpers.test_clock.advancing`` and ``.ready``); the sandbox does the work before it answers,
so the answer says ``advancing`` and the next read says ``ready``. Stripe's limit on how far one
advance may go (two billing intervals) is not enforced, and clocks cannot be deleted.
"""

import copy
from collections.abc import Callable
from functools import partial

from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.subscriptions import Subscriptions, items_of, next_boundary, period_end
from crossledger.plugins.stripe.sandbox.wire import AUTOMATIC, DAY, Call, Endpoint, Record, invalid, new_id, now, reads

BILLING = ("trialing", "active", "past_due", "unpaid")
"""Statuses in which a subscription's periods run (an incomplete one waits for its first payment)."""

Due = tuple[int, Callable[[], None]]
"""Something that falls due: when, and the work to do then."""


class Clocks:
    """Test clocks, and the renewals, retries and due dates they bring on (see the module doc)."""

    def __init__(self, account: Account, subscriptions: Subscriptions) -> None:
        self._account = account
        self._subscriptions = subscriptions

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/v1/test_helpers/test_clocks", self.create_test_clock),
            *reads(self._account.test_clocks),
            Endpoint("POST", "/v1/test_helpers/test_clocks/{id}/advance", self.advance_test_clock),
        ]

    def create_test_clock(self, call: Call) -> Record:
        params = call.params.accept("frozen_time", "name")
        frozen = params.integer("frozen_time")
        if frozen is None:
            raise invalid("Missing required param: frozen_time.", param="frozen_time", code="parameter_missing")
        created = now()
        return self._account.test_clocks.add({
            "created": created, "deletes_after": created + 30 * DAY, "frozen_time": frozen, "id": new_id("clock"),
            "livemode": False, "name": params.text("name"), "object": "test_helpers.test_clock", "status": "ready",
            "status_details": {},
        })

    def advance_test_clock(self, call: Call) -> Record:
        """Move the clock to ``frozen_time``, doing on the way all that falls due, in order."""
        params = call.params.accept("frozen_time")
        clock = self._account.test_clocks.get(call.id)
        target = params.integer("frozen_time")
        if target is None:
            raise invalid("Missing required param: frozen_time.", param="frozen_time", code="parameter_missing")
        if target <= clock["frozen_time"]:
            raise invalid(f"The frozen_time must be after the test clock's current frozen_time "
                          f"({clock['frozen_time']}).", param="frozen_time")
        advancing = {**clock, "status": "advancing", "status_details": {"advancing": {"target_frozen_time": target}}}
        self._account.emit("test_helpers.test_clock.advancing", advancing, call)
        while (due := self._next_due(clock["id"], target)) is not None:
            clock["frozen_time"], work = due
            work()
        clock["frozen_time"] = target
        self._account.emit("test_helpers.test_clock.ready", clock, call)
        return advancing

    def _next_due(self, clock_id: str, until: int) -> Due | None:
        """The earliest thing due on this clock's subscriptions by ``until``.

        Each piece of work moves its own moment on (a renewal to the next period end, a retry to the
        next retry, an overdue invoice makes its subscription past_due), so the walk always ends.
        """
        due: list[Due] = []
        for subscription in self._account.subscriptions.where(test_clock=clock_id):
            if subscription["status"] in BILLING:
                due.append((period_end(subscription), partial(self._period_ends, subscription)))
            invoice = self._account.invoices.records.get(subscription["latest_invoice"] or "")
            if invoice is None or invoice["status"] != "open":
                continue
            if subscription["status"] == "past_due" and invoice["next_payment_attempt"]:
                due.append((invoice["next_payment_attempt"], partial(self._retry, subscription, invoice)))
            if subscription["status"] == "active" and invoice["due_date"]:
                due.append((invoice["due_date"], partial(self._overdue, subscription)))
        due = [(moment, work) for moment, work in due if moment <= until]
        return min(due, key=lambda entry: entry[0]) if due else None

    def _period_ends(self, subscription: Record) -> None:
        """End the subscription (``cancel_at_period_end``) or renew it for the next period."""
        if subscription["cancel_at_period_end"]:
            self._subscriptions.end(subscription, AUTOMATIC)
            return
        before = copy.deepcopy(subscription)
        start = period_end(subscription)
        for item in items_of(subscription):
            end = next_boundary(subscription["billing_cycle_anchor"], item["price"]["recurring"], start)
            item.update(current_period_start=start, current_period_end=end)
        invoice = self._subscriptions.bill(subscription, "subscription_cycle", AUTOMATIC)
        subscription["latest_invoice"] = invoice["id"]
        subscription["status"] = self._subscriptions.standing(subscription, invoice)
        self._subscriptions.schedule_retry(subscription, invoice)
        self._account.emit_update("customer.subscription.updated", before, subscription, AUTOMATIC)

    def _retry(self, subscription: Record, invoice: Record) -> None:
        """Try a failed renewal's charge again; after the last failure the subscription is unpaid."""
        if self._subscriptions.collect(invoice, AUTOMATIC):
            return  # paid: Invoicing.on_paid made the subscription active again
        before = copy.deepcopy(subscription)
        self._subscriptions.schedule_retry(subscription, invoice)
        self._account.emit_update("customer.subscription.updated", before, subscription, AUTOMATIC)

    def _overdue(self, subscription: Record) -> None:
        before = copy.deepcopy(subscription)
        subscription["status"] = "past_due"
        self._account.emit_update("customer.subscription.updated", before, subscription, AUTOMATIC)
