"""Recurring billing in the Stripe sandbox: products, prices and subscriptions.

**Subscriptions** bill their items' prices every period, the way Stripe Billing does:

- Creating one bills the first period at once (``billing_reason=subscription_create``). With
  ``charge_automatically`` the invoice is charged to the subscription's or the customer's default
  payment method: paid, the subscription is ``active``; not paid (no method, or a declining test
  card), it is ``incomplete``. With ``send_invoice`` the invoice is left open with its due date and
  the subscription is ``active``. ``trial_period_days`` makes it ``trialing`` with a zero invoice.
- Changing an item's price or quantity prorates by the second: a credit for the unused time of
  the old line and a charge for the rest of the period on the new one, as pending invoice items
  that the next invoice picks up (``proration_behavior=create_prorations``, the default), invoiced
  at once (``always_invoice``, ``billing_reason=subscription_update``), or not at all (``none``).
  Items keep one billing interval: moving between intervals is refused.
- ``cancel_at_period_end`` ends it when its period does; ``DELETE`` ends it now. Either way it
  ends ``canceled`` with ``customer.subscription.deleted``.

Time passes for a subscription only when its customer's test clock is advanced
(:mod:`.clocks`): then its periods end, it renews, and unpaid renewals are retried.

Two things done elsewhere move a subscription too, and it hears of them through the notifications
it subscribes to: deleting its customer ends it (:attr:`.Customers.on_deleted`), and paying its
latest invoice when the subscription is ``incomplete``, ``past_due`` or ``unpaid`` makes it
``active`` again (:attr:`.Invoicing.on_paid`).

Every change emits what Stripe emits: ``customer.subscription.created`` / ``.updated`` (with
``previous_attributes``) / ``.deleted``, the invoice and payment events, ``invoiceitem.created``
for prorations.
"""

import calendar
import copy
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial

from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.credits import shown
from crossledger.plugins.stripe.sandbox.customers import Customers, payment_method
from crossledger.plugins.stripe.sandbox.invoices import Invoicing, invoiceitem, new_invoice, set_lines
from crossledger.plugins.stripe.sandbox.wire import (
    DAY,
    Call,
    Endpoint,
    Params,
    Record,
    assign,
    invalid,
    new_id,
    now,
    reads,
    retrieve,
)

INTERVALS = ("day", "week", "month", "year")
MAX_INTERVALS = {"day": 365, "week": 52, "month": 12, "year": 1}
"""The most intervals one billing period may span: Stripe's limit is one year."""
RETRY_DAYS = (3, 5, 7)
"""Days after the 1st, 2nd and 3rd failed charge of a renewal before the next try."""
ENDED = ("canceled", "incomplete_expired")
PRORATIONS = ("create_prorations", "none", "always_invoice")


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` moved ``count`` intervals on. Months are calendar months from the anchor's day,
    clamped to short months (an anchor on the 31st bills on Feb 28, then Mar 31), as Stripe does."""
    if interval in ("day", "week"):
        return anchor + count * DAY * (7 if interval == "week" else 1)
    moment = datetime.fromtimestamp(anchor, UTC)
    year, month = divmod(moment.month - 1 + count * (12 if interval == "year" else 1), 12)
    year, month = moment.year + year, month + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def next_boundary(anchor: int, recurring: Record, after: int) -> int:
    """The first period boundary of a billing cycle anchored at ``anchor`` that is later than ``after``."""
    periods = 1
    while (boundary := add_interval(anchor, recurring["interval"], recurring["interval_count"] * periods)) <= after:
        periods += 1
    return boundary


def _product(product_id: str, name: str, at: int) -> Record:
    return {
        "active": True, "created": at, "default_price": None, "description": None, "id": product_id, "images": [],
        "livemode": False, "marketing_features": [], "metadata": {}, "name": name, "object": "product",
        "package_dimensions": None, "shippable": None, "statement_descriptor": None, "tax_code": None,
        "type": "service", "unit_label": None, "updated": at, "url": None,
    }


def _price(product: str, currency: str, unit_amount: int, recurring: Record | None, at: int) -> Record:
    return {
        "active": True, "billing_scheme": "per_unit", "created": at, "currency": currency,
        "custom_unit_amount": None, "id": new_id("price"), "livemode": False, "lookup_key": None, "metadata": {},
        "nickname": None, "object": "price", "product": product,
        "recurring": None if recurring is None else {**recurring, "meter": None, "trial_period_days": None,
                                                     "usage_type": "licensed"},
        "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
        "type": "one_time" if recurring is None else "recurring", "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def _plan(price: Record) -> Record:
    """The legacy ``plan`` view of a recurring price that subscription items still carry."""
    return {
        "active": price["active"], "amount": price["unit_amount"], "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit", "created": price["created"], "currency": price["currency"], "id": price["id"],
        "interval": price["recurring"]["interval"], "interval_count": price["recurring"]["interval_count"],
        "livemode": False, "metadata": dict(price["metadata"]), "meter": None, "nickname": price["nickname"],
        "object": "plan", "product": price["product"], "tiers_mode": None, "transform_usage": None,
        "trial_period_days": None, "usage_type": "licensed",
    }


def _subscription(customer: Record, currency: str, collection_method: str, days_until_due: int | None,
                  at: int) -> Record:
    subscription_id = new_id("sub")
    return {
        "application": None, "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": at, "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"}, "billing_schedules": [], "billing_thresholds": None,
        "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection_method, "created": at, "currency": currency, "customer": customer["id"],
        "customer_account": None, "days_until_due": days_until_due, "default_payment_method": None,
        "default_source": None, "default_tax_rates": [], "description": None, "discounts": [], "ended_at": None,
        "id": subscription_id,
        "invoice_settings": {"account_tax_ids": None, "custom_fields": None, "description": None, "footer": None,
                             "issuer": {"type": "self"}},
        "items": {"data": [], "has_more": False, "object": "list",
                  "url": f"/v1/subscription_items?subscription={subscription_id}"},
        "latest_invoice": None, "livemode": False, "managed_payments": None, "metadata": {},
        "next_pending_invoice_item_invoice": None, "object": "subscription", "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None, "schedule": None,
        "start_date": at, "status": "incomplete", "test_clock": customer["test_clock"], "transfer_data": None,
        "trial_end": None, "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def _item(subscription: Record, price: Record, quantity: int, metadata: dict[str, str], start: int,
          end: int) -> Record:
    return {
        "billing_thresholds": None, "created": start, "current_period_end": end, "current_period_start": start,
        "discounts": [], "id": new_id("si"), "metadata": metadata, "object": "subscription_item",
        "plan": _plan(price), "price": copy.deepcopy(price), "quantity": quantity,
        "subscription": subscription["id"], "tax_rates": [],
    }


def items_of(subscription: Record) -> list[Record]:
    items: list[Record] = subscription["items"]["data"]
    return items


def period_end(subscription: Record) -> int:
    return int(items_of(subscription)[0]["current_period_end"])


class Subscriptions:
    """Products, prices and subscriptions (see the module doc)."""

    def __init__(self, account: Account, customers: Customers, invoicing: Invoicing) -> None:
        self._account = account
        self._customers = customers
        self._invoicing = invoicing
        customers.on_deleted.append(self._end_with_customer)
        invoicing.on_paid.append(self._invoice_paid)

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/v1/products", self.create_product),
            *reads(self._account.products),
            Endpoint("POST", "/v1/products/{id}", self.update_product),
            Endpoint("POST", "/v1/prices", self.create_price),
            *reads(self._account.prices),
            Endpoint("POST", "/v1/prices/{id}", self.update_price),
            Endpoint("POST", "/v1/subscriptions", self.create_subscription),
            Endpoint("GET", "/v1/subscriptions", self.list_subscriptions),
            Endpoint("GET", "/v1/subscriptions/{id}", partial(retrieve, self._account.subscriptions)),
            Endpoint("POST", "/v1/subscriptions/{id}", self.update_subscription),
            Endpoint("DELETE", "/v1/subscriptions/{id}", self.cancel_subscription),
        ]

    # Products and prices

    def create_product(self, call: Call) -> Record:
        params = call.params.accept("active", "description", "id", "metadata", "name")
        product_id = params.text("id") or new_id("prod")
        if product_id in self._account.products.records:
            raise invalid("Product already exists.", param="id", code="resource_already_exists")
        product = _product(product_id, params.required("name"), now())
        assign(product, params, ("active", "description", "metadata"))
        self._account.products.add(product)
        self._account.emit("product.created", product, call)
        return product

    def update_product(self, call: Call) -> Record:
        params = call.params.accept("active", "description", "metadata", "name")
        product = self._account.products.get(call.id)
        if "name" in params:
            params.required("name")
        before = copy.deepcopy(product)
        assign(product, params, ("active", "description", "metadata", "name"))
        product["updated"] = now()
        self._account.emit_update("product.updated", before, product, call)
        return product

    def create_price(self, call: Call) -> Record:
        params = call.params.accept("active", "currency", "lookup_key", "metadata", "nickname", "product",
                                    "product_data", "recurring", "transfer_lookup_key", "unit_amount")
        currency = params.currency("currency")
        if currency is None:
            raise invalid("Missing required param: currency.", param="currency", code="parameter_missing")
        unit_amount = params.integer("unit_amount")
        if unit_amount is None or unit_amount < 0:
            raise invalid("Missing required param: unit_amount (a non-negative integer).", param="unit_amount",
                          code="parameter_missing")
        price = _price(self._product_for(params, call), currency, unit_amount, self._recurring(params), now())
        assign(price, params, ("active", "metadata", "nickname"))
        self._take_lookup_key(price, params, call)
        self._account.prices.add(price)
        self._account.emit("price.created", price, call)
        return price

    def _product_for(self, params: Params, call: Call) -> str:
        """The product a new price belongs to: an existing one, or one made from ``product_data``."""
        data = params.hash("product_data")
        if data is None:
            return str(self._account.products.get(params.required("product"), param="product")["id"])
        if "product" in params:
            raise invalid("You may only specify one of these parameters: product, product_data.",
                          param="product_data", code="parameters_exclusive")
        data.accept("metadata", "name")
        product = self._account.products.add(_product(new_id("prod"), data.required("name"), now()))
        product["metadata"] = data.mapping("metadata")
        self._account.emit("product.created", product, call)
        return str(product["id"])

    @staticmethod
    def _recurring(params: Params) -> Record | None:
        recurring = params.hash("recurring")
        if recurring is None:
            return None
        recurring.accept("interval", "interval_count")
        interval = recurring.choice("interval", INTERVALS)
        if interval is None:
            raise invalid("Missing required param: recurring[interval].", param="recurring[interval]",
                          code="parameter_missing")
        count = recurring.positive("interval_count") or 1
        if count > MAX_INTERVALS[interval]:
            raise invalid("The maximum billing period is one year (1 year, 12 months, or 52 weeks).",
                          param="recurring[interval_count]")
        return {"interval": interval, "interval_count": count}

    def _take_lookup_key(self, price: Record, params: Params, call: Call) -> None:
        """Lookup keys are unique: taking one from another price needs ``transfer_lookup_key=true``."""
        if "lookup_key" not in params:
            return
        key = params.text("lookup_key") or None
        holder = next((p for p in self._account.prices.records.values()
                       if key and p["lookup_key"] == key and p is not price), None)
        if holder is not None:
            if not params.flag("transfer_lookup_key"):
                raise invalid(f"A price ({holder['id']}) already uses the lookup key `{key}`; pass "
                              "transfer_lookup_key=true to move it.", param="lookup_key")
            before = copy.deepcopy(holder)
            holder["lookup_key"] = None
            self._account.emit_update("price.updated", before, holder, call)
        price["lookup_key"] = key

    def update_price(self, call: Call) -> Record:
        params = call.params.accept("active", "lookup_key", "metadata", "nickname", "transfer_lookup_key")
        price = self._account.prices.get(call.id)
        before = copy.deepcopy(price)
        assign(price, params, ("active", "metadata", "nickname"))
        self._take_lookup_key(price, params, call)
        self._account.emit_update("price.updated", before, price, call)
        return price

    def _recurring_price(self, params: Params) -> Record:
        price = self._account.prices.get(params.required("price"), param=params.name("price"))
        if price["recurring"] is None or not price["active"]:
            raise invalid(f"The price {price['id']} is not an active recurring price.", param=params.name("price"))
        return price

    # Subscriptions

    def create_subscription(self, call: Call) -> Record:
        params = call.params.accept(
            "cancel_at_period_end", "collection_method", "customer", "days_until_due", "default_payment_method",
            "description", "items", "metadata", "proration_behavior", "trial_period_days",
        )
        params.choice("proration_behavior", PRORATIONS)
        customer = self._account.customers.get(params.required("customer"), param="customer")
        wanted = params.hashes("items")
        if not wanted:
            raise invalid("Missing required param: items.", param="items", code="parameter_missing")
        lines = []
        for item in wanted:
            item.accept("metadata", "price", "quantity")
            lines.append((self._recurring_price(item), item.positive("quantity") or 1, item.mapping("metadata")))
        currency = lines[0][0]["currency"]
        self._check_prices(currency, [price for price, _, _ in lines], customer)
        at = self._account.now_for(customer)
        method, days = self._collection(params)
        subscription = _subscription(customer, currency, method, days, at)
        subscription["default_payment_method"] = payment_method(params, "default_payment_method")
        assign(subscription, params, ("description", "metadata"))
        trial_days = params.positive("trial_period_days")
        anchor = at + trial_days * DAY if trial_days else at
        end = anchor if trial_days else next_boundary(anchor, lines[0][0]["recurring"], anchor)
        subscription.update(billing_cycle_anchor=anchor, trial_start=at if trial_days else None,
                            trial_end=anchor if trial_days else None)
        subscription["items"]["data"] = [_item(subscription, price, quantity, metadata, at, end)
                                         for price, quantity, metadata in lines]
        if params.flag("cancel_at_period_end"):
            subscription.update(cancel_at_period_end=True, cancel_at=end, canceled_at=at)
        self._account.subscriptions.add(subscription)
        self._customers.adopt_currency(customer, currency, call)
        invoice = self.bill(subscription, "subscription_create", call, trial=bool(trial_days))
        subscription["latest_invoice"] = invoice["id"]
        subscription["status"] = "trialing" if trial_days else self.standing(subscription, invoice)
        self._account.emit("customer.subscription.created", subscription, call)
        return subscription

    @staticmethod
    def _collection(params: Params) -> tuple[str, int | None]:
        """``collection_method`` and ``days_until_due``, which only ``send_invoice`` has (and needs)."""
        method = params.choice("collection_method", ("charge_automatically", "send_invoice")) or "charge_automatically"
        days = params.integer("days_until_due")
        if method == "send_invoice" and days is None:
            raise invalid("days_until_due is required when collection_method is send_invoice.",
                          param="days_until_due", code="parameter_missing")
        if method == "charge_automatically" and days is not None:
            raise invalid("days_until_due can only be set when collection_method is send_invoice.",
                          param="days_until_due")
        if days is not None and days < 0:
            raise invalid(f"Invalid non-negative integer: {days}", param="days_until_due")
        return method, days

    @staticmethod
    def _check_prices(currency: str, prices: list[Record], customer: Record) -> None:
        """One currency per customer, one billing cycle per subscription, as Stripe requires."""
        if customer["currency"] not in (None, currency):
            raise invalid("You cannot combine currencies on a single customer. This customer has an active "
                          f"subscription, subscription schedule, discount, quote, or invoice item with currency "
                          f"{customer['currency']}.", param="currency")
        cycles = {(p["currency"], p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
        if len(cycles) > 1:
            raise invalid("All prices on a subscription must have the same currency and recurring interval "
                          "(this sandbox does not move a subscription to another interval).", param="items")

    def list_subscriptions(self, call: Call) -> Record:
        """Stripe's list leaves canceled subscriptions out unless ``status`` asks for them (or ``all``)."""
        params = call.params
        status = params.choice("status", ("active", "all", "canceled", "ended", "incomplete", "incomplete_expired",
                                          "past_due", "paused", "trialing", "unpaid"))
        price = params.text("price")

        def keep(subscription: Record) -> bool:
            if price is not None and all(item["price"]["id"] != price for item in items_of(subscription)):
                return False
            if status is None:
                return subscription["status"] not in ENDED
            if status == "ended":
                return subscription["status"] in ENDED
            return status in ("all", subscription["status"])

        return self._account.subscriptions.page(params, "price", "status", keep=keep)

    def update_subscription(self, call: Call) -> Record:
        params = call.params.accept("cancel_at_period_end", "default_payment_method", "description", "items",
                                    "metadata", "proration_behavior")
        subscription = self._account.subscriptions.get(call.id)
        if subscription["status"] in ENDED:
            raise invalid(f"Subscription {subscription['id']} is {subscription['status']}; a canceled subscription "
                          "cannot be updated.")
        behavior = params.choice("proration_behavior", PRORATIONS) or "create_prorations"
        before = copy.deepcopy(subscription)
        at = self._account.now_for(subscription)
        changes = self._change_items(subscription, params.hashes("items"), at)
        if "cancel_at_period_end" in params:
            ending = params.flag("cancel_at_period_end")
            subscription.update(cancel_at_period_end=ending, cancel_at=period_end(subscription) if ending else None,
                                canceled_at=at if ending else None)
        if "default_payment_method" in params:
            subscription["default_payment_method"] = payment_method(params, "default_payment_method")
        assign(subscription, params, ("description", "metadata"))
        if behavior != "none" and subscription["status"] != "trialing":
            for change in changes:
                self._prorate(subscription, *change, at=at, call=call)
        if behavior == "always_invoice" and changes and subscription["status"] != "trialing":
            invoice = self.bill(subscription, "subscription_update", call)
            subscription["latest_invoice"] = invoice["id"]
            subscription["status"] = self.standing(subscription, invoice)
            self.schedule_retry(subscription, invoice)
        self._account.emit_update("customer.subscription.updated", before, subscription, call)
        return subscription

    def _change_items(self, subscription: Record, wanted: list[Params],
                      at: int) -> list[tuple[Record | None, int, Record | None, int]]:
        """Apply ``items[i]`` (``id`` with a new ``price``/``quantity``, ``id`` with ``deleted``, or a
        new ``price``); the changes as ``(old price, old quantity, new price, new quantity)``."""
        changes: list[tuple[Record | None, int, Record | None, int]] = []
        items = items_of(subscription)
        start, end = items[0]["current_period_start"], items[0]["current_period_end"]
        for params in wanted:
            params.accept("deleted", "id", "metadata", "price", "quantity")
            item_id = params.text("id")
            item = next((i for i in items if i["id"] == item_id), None) if item_id else None
            if item_id and item is None:
                raise invalid(f"No such subscription item: '{item_id}'", param=params.name("id"),
                              code="resource_missing")
            if item is None:
                price = self._recurring_price(params)
                quantity = params.positive("quantity") or 1
                items.append(_item(subscription, price, quantity, params.mapping("metadata"), start, end))
                changes.append((None, 0, price, quantity))
                continue
            old_price, old_quantity = item["price"], item["quantity"]
            if params.flag("deleted"):
                items.remove(item)
                changes.append((old_price, old_quantity, None, 0))
                continue
            price = self._recurring_price(params) if "price" in params else old_price
            quantity = params.positive("quantity") or old_quantity
            item.update(price=copy.deepcopy(price), plan=_plan(price), quantity=quantity)
            assign(item, params, ("metadata",))
            if (price["id"], quantity) != (old_price["id"], old_quantity):
                changes.append((old_price, old_quantity, price, quantity))
        if not items:
            raise invalid("A subscription needs at least one item.", param="items")
        customer = self._account.customers.get(subscription["customer"], param="customer")
        self._check_prices(subscription["currency"], [item["price"] for item in items], customer)
        return changes

    def _prorate(self, subscription: Record, old: Record | None, old_quantity: int, new: Record | None,
                 new_quantity: int, *, at: int, call: Call) -> None:
        """Pending invoice items for the rest of the period: a credit for the old line, a charge for
        the new one, each prorated by the second and rounded half to even."""
        item = items_of(subscription)[0]
        start, end = item["current_period_start"], item["current_period_end"]
        if not start <= at < end:
            return
        left = Decimal(end - at) / Decimal(end - start)
        customer = self._account.customers.get(subscription["customer"], param="customer")
        stamp = datetime.fromtimestamp(at, UTC).strftime("%d %b %Y")
        for price, quantity, sign, what in ((old, old_quantity, -1, "Unused"), (new, new_quantity, 1, "Remaining")):
            if price is None:
                continue
            amount = sign * int((price["unit_amount"] * quantity * left).quantize(Decimal(1), ROUND_HALF_EVEN))
            proration = invoiceitem(customer, subscription["currency"], quantity, amount,
                                    price["unit_amount_decimal"], at)
            proration.update(
                description=f"{what} time on {quantity} × {self._product_name(price)} after {stamp}",
                parent={"subscription_details": {"subscription": subscription["id"]}, "type": "subscription_details"},
                period={"end": end, "start": at}, proration=True,
                pricing={"price_details": {"price": price["id"], "product": price["product"]}, "type": "price_details",
                         "unit_amount_decimal": price["unit_amount_decimal"]},
            )
            self._account.invoiceitems.add(proration)
            self._account.emit("invoiceitem.created", proration, call)

    def _product_name(self, price: Record) -> str:
        product = self._account.products.records.get(price["product"])
        return str(product["name"]) if product else str(price["product"])

    def cancel_subscription(self, call: Call) -> Record:
        params = call.params.accept("cancellation_details")
        details = params.hash("cancellation_details")
        subscription = self._account.subscriptions.get(call.id)
        if subscription["status"] in ENDED:
            raise invalid(f"Subscription {subscription['id']} has already ended.")
        if details is not None:
            details.accept("comment", "feedback")
            subscription["cancellation_details"].update(comment=details.text("comment"),
                                                        feedback=details.text("feedback"))
        self.end(subscription, call)
        return subscription

    def end(self, subscription: Record, call: Call) -> None:
        at = self._account.now_for(subscription)
        subscription.update(status="canceled", ended_at=at, canceled_at=subscription["canceled_at"] or at,
                            cancel_at=None)
        subscription["cancellation_details"]["reason"] = "cancellation_requested"
        self._account.emit("customer.subscription.deleted", subscription, call)

    def _end_with_customer(self, customer: Record, call: Call) -> None:
        """A deleted customer's subscriptions end with it (told by :attr:`.Customers.on_deleted`)."""
        for subscription in self._account.subscriptions.where(customer=customer["id"]):
            if subscription["status"] not in ENDED:
                self.end(subscription, call)

    # Billing a subscription

    def bill(self, subscription: Record, reason: str, call: Call, *, trial: bool = False) -> Record:
        """The subscription's invoice: a line per item for the period (none for an update, which bills
        only its prorations), the customer's pending items, finalized and collected."""
        customer = self._account.customers.get(subscription["customer"], param="customer")
        at = self._account.now_for(subscription)
        invoice = self._account.invoices.add(self.subscription_invoice(subscription, reason, at))
        if reason != "subscription_update":
            set_lines(invoice, [self.line(subscription, item, invoice, trial) for item in items_of(subscription)])
        self._invoicing.attach(self._invoicing.pending_items(customer, subscription["currency"]), invoice)
        self._account.emit("invoice.created", invoice, call)
        self._invoicing.finalize(invoice, call)
        if invoice["status"] != "paid" and subscription["status"] != "unpaid":
            self.collect(invoice, call)
        return invoice

    def subscription_invoice(self, subscription: Record, reason: str, at: int) -> Record:
        """A new draft invoice of the subscription, made at ``at``, with no lines yet."""
        customer = self._account.customers.get(subscription["customer"], param="customer")
        invoice = new_invoice(customer, subscription["currency"], at)
        invoice.update(
            auto_advance=True, billing_reason=reason, collection_method=subscription["collection_method"],
            default_payment_method=subscription["default_payment_method"], subscription=subscription["id"],
            parent={"quote_details": None, "type": "subscription_details",
                    "subscription_details": {"metadata": dict(subscription["metadata"]),
                                             "subscription": subscription["id"]}},
        )
        if subscription["collection_method"] == "send_invoice":
            invoice["due_date"] = at + subscription["days_until_due"] * DAY
        return invoice

    def line(self, subscription: Record, item: Record, invoice: Record, trial: bool) -> Record:
        """The invoice line of one subscription item for its current period."""
        price, quantity = item["price"], item["quantity"]
        amount = 0 if trial else price["unit_amount"] * quantity
        name = self._product_name(price)
        recurring = price["recurring"]
        every = recurring["interval"] if recurring["interval_count"] == 1 else \
            f"every {recurring['interval_count']} {recurring['interval']}s"
        return {
            "amount": amount, "currency": price["currency"],
            "description": f"Trial period for {name}" if trial else
            f"{quantity} × {name} (at {shown(price['unit_amount'], price['currency'])} / {every})",
            "discount_amounts": [], "discountable": True, "discounts": [], "id": new_id("il"),
            "invoice": invoice["id"], "livemode": False, "metadata": dict(item["metadata"]), "object": "line_item",
            "parent": {"invoice_item_details": None, "type": "subscription_item_details",
                       "subscription_item_details": {"invoice_item": None, "proration": False,
                                                     "proration_details": {"credited_items": None},
                                                     "subscription": subscription["id"],
                                                     "subscription_item": item["id"]}},
            "period": {"end": item["current_period_end"], "start": item["current_period_start"]},
            "pretax_credit_amounts": [],
            "pricing": {"price_details": {"price": price["id"], "product": price["product"]}, "type": "price_details",
                        "unit_amount_decimal": price["unit_amount_decimal"]},
            "quantity": quantity, "quantity_decimal": str(quantity), "subscription": subscription["id"],
            "subtotal": amount, "taxes": [],
        }

    def collect(self, invoice: Record, call: Call) -> bool:
        """Charge a ``charge_automatically`` invoice to its default payment method; with none, the
        attempt fails as Stripe's does. A ``send_invoice`` invoice waits for the customer."""
        if invoice["collection_method"] == "send_invoice":
            return False
        method = self._invoicing.default_payment_method(invoice)
        if method is not None:
            return self._invoicing.attempt_payment(invoice, method, call)
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        self._account.emit("invoice.payment_failed", invoice, call)
        return False

    @staticmethod
    def standing(subscription: Record, invoice: Record) -> str:
        """A subscription's status once its latest invoice was collected (or not)."""
        status = str(subscription["status"])
        if invoice["status"] == "paid":
            return "active"
        if invoice["collection_method"] == "send_invoice":
            return "active" if status in ("incomplete", "trialing") else status
        if status == "incomplete":
            return status
        return "unpaid" if status == "unpaid" else "past_due"

    def schedule_retry(self, subscription: Record, invoice: Record) -> None:
        """After a failed automatic charge, when to try again (:data:`RETRY_DAYS`); after the last, never."""
        if invoice["status"] == "paid" or invoice["collection_method"] == "send_invoice" or \
                subscription["status"] in ("unpaid", "incomplete"):
            return
        attempts = invoice["attempt_count"]
        retry = attempts <= len(RETRY_DAYS)
        invoice["next_payment_attempt"] = (self._account.now_for(invoice) + RETRY_DAYS[attempts - 1] * DAY
                                           if retry else None)
        if not retry:
            subscription["status"] = "unpaid"

    def _invoice_paid(self, invoice: Record, call: Call) -> None:
        """A subscription whose latest invoice gets paid is in good standing again (told by
        :attr:`.Invoicing.on_paid`)."""
        subscription = self._account.subscriptions.records.get(invoice["subscription"] or "")
        if subscription is None or subscription["latest_invoice"] != invoice["id"] or \
                subscription["status"] not in ("incomplete", "past_due", "unpaid"):
            return
        before = copy.deepcopy(subscription)
        subscription["status"] = "active"
        self._account.emit_update("customer.subscription.updated", before, subscription, call)
