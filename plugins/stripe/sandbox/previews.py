"""Invoice previews in the Stripe sandbox: ``POST /v1/invoices/create_preview``.

A preview is the invoice Stripe would make next, computed and answered but never stored: no
record, no event, and an id prefixed ``upcoming_in_`` that no other call accepts. As in Stripe
since API version 2025-03-31.basil, a preview needs something to bill besides the customer:

- ``subscription``: its next renewal, a line per item for the period after the current one, plus
  the customer's pending invoice items in its currency (which the renewal will pick up), dated
  when the current period ends; a subscription set to cancel at the period end has none
  (``invoice_upcoming_none``);
- ``invoice_items[i]`` (``amount``, or ``unit_amount``/``unit_amount_decimal`` with ``quantity``;
  ``currency``, ``description``, ``metadata``): extra lines, on top of the pending items.

Either way ``billing_reason`` is ``upcoming``. Not emulated: ``subscription_details`` (previewing
a change of items and its prorations), schedules, ``customer_details`` and discounts.
"""

from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.invoices import (
    Invoicing,
    invoiceitem,
    item_amount,
    item_line,
    new_invoice,
    set_lines,
)
from crossledger.plugins.stripe.sandbox.subscriptions import ENDED, Subscriptions, items_of, next_boundary, period_end
from crossledger.plugins.stripe.sandbox.wire import Call, Endpoint, Params, Record, invalid, token


class Previews:
    """Invoice previews (see the module doc)."""

    def __init__(self, account: Account, invoicing: Invoicing, subscriptions: Subscriptions) -> None:
        self._account = account
        self._invoicing = invoicing
        self._subscriptions = subscriptions

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("POST", "/v1/invoices/create_preview", self.create_preview)]

    def create_preview(self, call: Call) -> Record:
        params = call.params.accept("currency", "customer", "invoice_items", "subscription")
        subscription = self._previewed_subscription(params)
        customer_id = params.text("customer") or (subscription or {}).get("customer")
        if not customer_id:
            raise invalid("Missing required param: customer.", param="customer", code="parameter_missing")
        customer = self._account.customers.get(customer_id, param="customer")
        if subscription is not None and subscription["customer"] != customer["id"]:
            raise invalid(f"Subscription {subscription['id']} does not belong to customer {customer['id']}.",
                          param="subscription")
        extra = params.hashes("invoice_items")
        if subscription is None and not extra:
            raise invalid("Pass subscription or invoice_items along with customer: a preview needs something to "
                          "bill.", param="subscription", code="parameter_missing")
        currency = self._preview_currency(params, subscription, customer, extra)
        if subscription is not None:
            invoice = self._subscriptions.subscription_invoice(subscription, "upcoming", period_end(subscription))
            lines = [self._subscriptions.line(subscription, renewed, invoice, trial=False)
                     for renewed in _renewed(subscription)]
        else:
            invoice = new_invoice(customer, currency, self._account.now_for(customer))
            invoice["billing_reason"] = "upcoming"
            lines = []
        preview_id = f"upcoming_in_{token(24)}"
        invoice.update(id=preview_id, auto_advance=False)
        invoice["lines"]["url"] = f"/v1/invoices/{preview_id}/lines"
        added = [self._preview_item(customer, currency, item) for item in extra]
        lines += [item_line(item) for item in [*self._invoicing.pending_items(customer, currency), *added]]
        for line in lines:
            line["invoice"] = preview_id
        set_lines(invoice, lines)
        return invoice

    def _previewed_subscription(self, params: Params) -> Record | None:
        if "subscription" not in params:
            return None
        subscription = self._account.subscriptions.get(params.required("subscription"), param="subscription")
        if subscription["status"] in ENDED or subscription["cancel_at_period_end"]:
            raise invalid(f"No upcoming invoices for subscription {subscription['id']}: it ends with its current "
                          "period.", param="subscription", code="invoice_upcoming_none")
        return subscription

    @staticmethod
    def _preview_currency(params: Params, subscription: Record | None, customer: Record, extra: list[Params]) -> str:
        """The subscription's currency, else the one asked for, the customer's, the first item's, or usd."""
        asked = params.currency("currency")
        if subscription is not None:
            if asked not in (None, subscription["currency"]):
                raise invalid(f"Subscription {subscription['id']} bills in {subscription['currency']}, not {asked}.",
                              param="currency")
            return str(subscription["currency"])
        given = next((item.currency("currency") for item in extra if "currency" in item), None)
        return asked or customer["currency"] or given or "usd"

    def _preview_item(self, customer: Record, currency: str, params: Params) -> Record:
        """An invoice item of the preview (``invoice_items[i]``), made for it and not kept."""
        params.accept("amount", "currency", "description", "metadata", "quantity", "unit_amount",
                      "unit_amount_decimal")
        if params.currency("currency") not in (None, currency):
            raise invalid(f"The invoice items of a preview must all be in {currency}.", param=params.name("currency"))
        quantity, amount, unit = item_amount(params)
        item = invoiceitem(customer, currency, quantity, amount, unit, self._account.now_for(customer))
        item.update(description=params.text("description"), metadata=params.mapping("metadata"))
        return item


def _renewed(subscription: Record) -> list[Record]:
    """The subscription's items as they will be in the period after the current one."""
    start = period_end(subscription)
    return [{**item, "current_period_start": start,
             "current_period_end": next_boundary(subscription["billing_cycle_anchor"], item["price"]["recurring"],
                                                 start)}
            for item in items_of(subscription)]
