"""Customers and tax rates in the Stripe sandbox, and the test payment methods customers pay with.

**Customers** are created, read, updated and deleted as in Stripe: a deleted customer still
answers ``GET`` with ``{"id", "object", "deleted": true}``, and whatever must end with it (its
subscriptions) hears of the deletion through :attr:`Customers.on_deleted`. A customer can live on
a test clock (``test_clock``: :mod:`.clocks`), takes the currency of the first thing billed to it,
and has one invoice setting the sandbox knows: ``invoice_settings[default_payment_method]``.

**Payment methods** have no API here: Stripe's test tokens (``pm_card_visa``) stand for attached
ones, and the ones named after Stripe's declining test cards fail when charged (:func:`declines`).

**Tax rates** are exclusive percentages (``inclusive=false``); invoices apply them line by line
(:mod:`.invoices`).
"""

import copy
import re
import secrets
from functools import partial

from crossledger.plugins.stripe.sandbox.account import Account, Listener
from crossledger.plugins.stripe.sandbox.wire import (
    Call,
    Endpoint,
    Params,
    Record,
    assign,
    deleted,
    invalid,
    new_id,
    now,
    page,
    reads,
)

TEST_PAYMENT_METHOD = re.compile(r"pm_\w+")
"""What the sandbox takes for a payment method id: Stripe's test tokens (``pm_card_visa``), since
it has no payment methods API to attach real ones. See :func:`declines`."""

DECLINING_SUFFIXES = ("chargeDeclined", "chargeCustomerFail")


def declines(payment_method: str) -> bool:
    """Whether charging this test payment method fails, as Stripe's test cards of these names do
    (``pm_card_chargeCustomerFail`` attaches fine and fails when charged: the card for renewals)."""
    return payment_method.endswith(DECLINING_SUFFIXES)


def payment_method(params: Params, name: str) -> str | None:
    """A payment method parameter: a test token (see :data:`TEST_PAYMENT_METHOD`), or ``""`` to unset."""
    value = params.text(name)
    if not value:
        return None
    if not TEST_PAYMENT_METHOD.fullmatch(value):
        raise invalid(f"No such PaymentMethod: '{value}'", param=params.name(name), code="resource_missing")
    return value


def _customer(created: int, test_clock: str | None) -> Record:
    """A new customer with the field set of Stripe's customer object."""
    return {
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "id": new_id("cus"),
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "object": "customer",
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": test_clock,
    }


class Customers:
    """Customers and tax rates (see the module doc)."""

    CUSTOMER_FIELDS = (
        "address", "description", "email", "invoice_settings", "metadata", "name", "phone", "preferred_locales",
        "tax_exempt",
    )

    def __init__(self, account: Account) -> None:
        self._account = account
        self.on_deleted: list[Listener] = []
        """Told of a customer being deleted, while it is still there (subscriptions end with it)."""

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("POST", "/v1/customers", self.create_customer),
            Endpoint("GET", "/v1/customers", partial(page, self._account.customers)),
            Endpoint("GET", "/v1/customers/{id}", self.retrieve_customer),
            Endpoint("POST", "/v1/customers/{id}", self.update_customer),
            Endpoint("DELETE", "/v1/customers/{id}", self.delete_customer),
            Endpoint("POST", "/v1/tax_rates", self.create_tax_rate),
            *reads(self._account.tax_rates),
        ]

    # Customers

    def create_customer(self, call: Call) -> Record:
        params = call.params.accept(*self.CUSTOMER_FIELDS, "test_clock")
        clock = params.text("test_clock")
        if clock is not None:
            self._account.test_clocks.get(clock, param="test_clock")
        customer = _customer(self._account.now_for({"test_clock": clock}), clock)
        self._assign_customer(customer, call)
        self._account.customers.add(customer)
        self._account.emit("customer.created", customer, call)
        return customer

    def retrieve_customer(self, call: Call) -> Record:
        call.params.accept()
        gone = self._account.deleted_customers.get(call.id)
        return deleted(gone) if gone else self._account.customers.get(call.id)

    def update_customer(self, call: Call) -> Record:
        call.params.accept(*self.CUSTOMER_FIELDS)
        customer = self._account.customers.get(call.id)
        before = copy.deepcopy(customer)
        self._assign_customer(customer, call)
        self._account.emit_update("customer.updated", before, customer, call)
        return customer

    def _assign_customer(self, customer: Record, call: Call) -> None:
        """The plain fields, and the one invoice setting the sandbox knows: the default payment method."""
        settings = call.params.hash("invoice_settings")
        if settings is not None:
            settings.accept("default_payment_method")
            method = payment_method(settings, "default_payment_method")
            customer["invoice_settings"]["default_payment_method"] = method
        assign(customer, call.params, [name for name in self.CUSTOMER_FIELDS if name != "invoice_settings"])

    def delete_customer(self, call: Call) -> Record:
        """Delete the customer; as in Stripe, its subscriptions end with it (:attr:`on_deleted`)."""
        call.params.accept()
        customer = self._account.customers.get(call.id)
        for listener in self.on_deleted:
            listener(customer, call)
        self._account.customers.remove(customer["id"])
        self._account.deleted_customers[customer["id"]] = customer
        self._account.emit("customer.deleted", customer, call)
        return deleted(customer)

    def adopt_currency(self, customer: Record, currency: str, call: Call) -> None:
        """A customer takes the currency of the first thing billed to it."""
        if customer["currency"] is None:
            before = copy.deepcopy(customer)
            customer["currency"] = currency
            self._account.emit_update("customer.updated", before, customer, call)

    # Tax rates

    def create_tax_rate(self, call: Call) -> Record:
        params = call.params.accept("active", "country", "description", "display_name", "inclusive", "jurisdiction",
                                    "metadata", "percentage", "state", "tax_type")
        percentage = params.decimal("percentage")
        if percentage is None:
            raise invalid("Missing required param: percentage.", param="percentage", code="parameter_missing")
        if not 0 <= percentage <= 100:
            raise invalid("percentage must be between 0 and 100.", param="percentage")
        inclusive = params.flag("inclusive")
        if inclusive is None:
            raise invalid("Missing required param: inclusive.", param="inclusive", code="parameter_missing")
        if inclusive:
            raise invalid("This sandbox emulates exclusive tax rates only (inclusive=false).", param="inclusive")
        rate = {
            "active": params.flag("active") is not False, "country": params.text("country"), "created": now(),
            "description": params.text("description"), "display_name": params.required("display_name"),
            "effective_percentage": float(percentage), "flat_amount": None, "id": new_id("txr"), "inclusive": False,
            "jurisdiction": params.text("jurisdiction"), "jurisdiction_level": None, "livemode": False,
            "metadata": params.mapping("metadata"), "object": "tax_rate", "percentage": float(percentage),
            "rate_type": "percentage", "state": params.text("state"), "tax_type": params.text("tax_type"),
        }
        self._account.tax_rates.add(rate)
        self._account.emit("tax_rate.created", rate, call)
        return rate
