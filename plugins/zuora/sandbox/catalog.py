"""The product catalog every sandbox tenant starts with, as a company sets one up in Zuora.

One product, *Support* (SKU ``SKU-SUPPORT``), sold in three rate plans, graded for upgrades and each
with the custom field ``Tier__c`` that says which support tier it buys (the field a tenant adds to
the ProductRatePlan object for what its other systems key on):

============  ==========  =====  ==================
rate plan     number      grade  ``Tier__c``
============  ==========  =====  ==================
Basic         PRP-BASIC   1      ``basic``
Pro           PRP-PRO     2      ``pro``
Enterprise    PRP-ENT     3      ``enterprise``
============  ==========  =====  ==================

Read through ``GET /v1/products/{product-key}/product-rate-plans`` (the v1 list, custom fields
included) and ``GET /v1/object/product-rate-plan/{id}`` (the CRUD object, ``Id``, ``Name``,
``ProductId``..., custom fields included). An order subscribes to a rate plan by its id or number;
the rate plans carry no charges, so an order prices each by ``chargeOverrides``. Ids are stable
(:func:`catalog_id`), so a test can name a rate plan without reading the catalog first.
"""

import uuid
from typing import Any, Final

from crossledger.plugins.zuora.sandbox.wire import NOT_FOUND, SUBSCRIPTIONS, ZuoraError

Record = dict[str, Any]

TIER_FIELD: Final = "Tier__c"
"""The ProductRatePlan custom field holding the support tier a rate plan buys."""

EFFECTIVE = ("2020-01-01", "2099-12-31")


def catalog_id(name: str) -> str:
    """The stable id of the catalog's product or rate plan called ``name`` (32 hexadecimal characters)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"zuora-sandbox/catalog/{name.lower()}").hex


PRODUCT: Final[Record] = {"id": catalog_id("Support"), "sku": "SKU-SUPPORT", "name": "Support"}

RATE_PLANS: Final[dict[str, Record]] = {
    catalog_id(name): {"id": catalog_id(name), "name": name, "productRatePlanNumber": number, "grade": grade,
                       "description": f"Support, {tier} tier", TIER_FIELD: tier}
    for name, number, grade, tier in (("Basic", "PRP-BASIC", 1, "basic"), ("Pro", "PRP-PRO", 2, "pro"),
                                      ("Enterprise", "PRP-ENT", 3, "enterprise"))
}
"""The rate plans by id."""


def rate_plan(key: str) -> Record:
    """A rate plan by its id or number; Zuora's not-found error otherwise."""
    found = RATE_PLANS.get(key) or next((plan for plan in RATE_PLANS.values()
                                         if plan["productRatePlanNumber"] == key), None)
    if found is None:
        raise ZuoraError(SUBSCRIPTIONS, NOT_FOUND, f"Cannot find product rate plan: '{key}'.")
    return found


def product(key: str) -> Record:
    """The product by its id or SKU."""
    if key not in (PRODUCT["id"], PRODUCT["sku"]):
        raise ZuoraError(SUBSCRIPTIONS, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
    return PRODUCT


def rate_plan_view(key: str) -> Record:
    """A rate plan as ``GET /v1/products/{product-key}/product-rate-plans`` lists it."""
    plan = rate_plan(key)
    return {**plan, "status": "Active", "effectiveStartDate": EFFECTIVE[0], "effectiveEndDate": EFFECTIVE[1],
            "productRatePlanCharges": []}


def rate_plan_object(key: str) -> Record:
    """``GET /v1/object/product-rate-plan/{id}``: the CRUD object's capitalised fields."""
    plan = rate_plan(key)
    return {"Id": plan["id"], "Name": plan["name"], "ProductId": PRODUCT["id"], "Description": plan["description"],
            "Grade": plan["grade"], "EffectiveStartDate": EFFECTIVE[0], "EffectiveEndDate": EFFECTIVE[1],
            TIER_FIELD: plan[TIER_FIELD]}
