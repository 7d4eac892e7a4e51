"""Subscriptions through Zuora's Orders API: ``POST /v1/orders`` and ``GET /v1/subscriptions/{key}``.

An order names an existing account (``existingAccountNumber``) and, per subscription, its order
actions, applied in turn:

==================== =========================================================================
order action         effect
==================== =========================================================================
CreateSubscription   a new subscription (``A-S00000001``) of ``subscribeToRatePlans``, each rate
                     plan's flat recurring charge priced by its ``chargeOverrides`` (``pricing.
                     recurringFlatFee.listPrice``, ``billing.billingPeriod`` ``Month`` or
                     ``Annual``); terms from ``terms.initialTerm`` (``period`` months, ``TERMED``)
ChangePlan           ``changePlan``: the rate plan ``productRatePlanId`` is replaced by
                     ``newProductRatePlan`` (an upgrade or a downgrade)
RenewSubscription    the term moves on by the renewal term (the initial one by default)
CancelSubscription   ``cancelSubscription``: ``EndOfCurrentTerm`` or ``SpecificDate``
                     (``cancellationEffectiveDate``); the subscription is ``Cancelled``
Suspend              ``suspend``: ``suspendPolicy`` ``Today`` (the only one the sandbox
                     emulates: a later date would need a clock that wakes it); the
                     subscription is ``Suspended``, as a tenant's collections do to a customer
                     who stopped paying
Resume               ``resume``: ``resumePolicy`` ``Today``, of a ``Suspended`` subscription;
                     ``extendsTerm`` moves the term's end by the days it was suspended
==================== =========================================================================

Every action makes a new *version* of the subscription, as in Zuora: a new ``id`` and ``version``
under the same ``subscriptionNumber`` (the number is the subscription's stable key), and raises the
order-action event of its name for the callouts. A rate plan is one of the catalog's
(:mod:`.catalog`), named by its ``productRatePlanId`` (or its number); the subscription keeps its
name and product, and each is priced by the order's ``chargeOverrides`` (the catalog's rate plans
carry no charges).
"""

from datetime import date, timedelta
from decimal import Decimal

from crossledger.plugins.zuora.sandbox import catalog
from crossledger.plugins.zuora.sandbox.tenant import Record, Tenant
from crossledger.plugins.zuora.sandbox.wire import (
    INVALID_VALUE,
    MISSING_FIELD,
    NOT_FOUND,
    ORDERS,
    RULE,
    SUBSCRIPTIONS,
    ZuoraError,
    decimal,
    new_id,
    rounded,
)

PERIODS = {"Month": 1, "Annual": 12}
"""The billing periods the sandbox prices (months each)."""

KEPT_BACK = ("updatedDate", "suspendDate")
"""What the sandbox keeps of a subscription that its answer does not show."""


def place_order(tenant: Tenant, body: Record) -> Record:
    """``POST /v1/orders``: apply every order action, in order; the order's answer."""
    number = body.get("existingAccountNumber")
    if not number or not body.get("orderDate"):
        raise ZuoraError(ORDERS, MISSING_FIELD, "'existingAccountNumber' and 'orderDate' may not be null")
    account = tenant.account(str(number))
    touched: list[Record] = []
    for entry in body.get("subscriptions") or []:
        current = tenant.subscription(str(entry["subscriptionNumber"])) if entry.get("subscriptionNumber") else None
        for action in entry.get("orderActions") or []:
            current = _apply(tenant, account, current, action, str(body["orderDate"]))
        if current is not None:
            touched.append(current)
    if not touched:
        raise ZuoraError(ORDERS, MISSING_FIELD, "An order needs at least one order action.")
    order_number = f"O-{len(tenant.orders) + 1:08d}"
    tenant.orders.append(order_number)
    return {"success": True, "orderNumber": order_number, "accountNumber": account["accountNumber"],
            "status": "Completed", "subscriptionNumbers": [s["subscriptionNumber"] for s in touched],
            "subscriptions": [{"subscriptionNumber": s["subscriptionNumber"], "status": s["status"]}
                              for s in touched]}


def _apply(tenant: Tenant, account: Record, current: Record | None, action: Record, order_date: str) -> Record:
    kind = action.get("type")
    if kind == "CreateSubscription":
        return _create(tenant, account, action.get("createSubscription") or {}, order_date)
    if current is None:
        raise ZuoraError(ORDERS, MISSING_FIELD, f"'{kind}' needs the subscriptionNumber it changes.")
    if current["status"] == "Cancelled":
        raise ZuoraError(SUBSCRIPTIONS, RULE, "The subscription is cancelled.")
    changed = {**current, "ratePlans": [dict(plan) for plan in current["ratePlans"]]}
    if kind == "ChangePlan":
        change = action.get("changePlan") or {}
        old = change.get("productRatePlanId")
        kept = [plan for plan in changed["ratePlans"] if plan["productRatePlanId"] != old]
        if len(kept) == len(changed["ratePlans"]):
            raise ZuoraError(SUBSCRIPTIONS, NOT_FOUND, f"The subscription has no rate plan '{old}'.")
        changed["ratePlans"] = [*kept, _rate_plan(change.get("newProductRatePlan") or {}, account["currency"])]
        event = "ChangePlan"
    elif kind == "RenewSubscription":
        months = changed["renewalTerm"] or changed["initialTerm"]
        changed["termStartDate"] = changed["termEndDate"]
        changed["termEndDate"] = _add_months(changed["termEndDate"], months)
        changed["currentTerm"] = months
        event = "RenewSubscription"
    elif kind == "CancelSubscription":
        cancel = action.get("cancelSubscription") or {}
        policy = cancel.get("cancellationPolicy")
        if policy not in ("EndOfCurrentTerm", "SpecificDate"):
            raise ZuoraError(SUBSCRIPTIONS, INVALID_VALUE,
                             "'cancellationPolicy' value should be one of: EndOfCurrentTerm, SpecificDate")
        end = changed["termEndDate"] if policy == "EndOfCurrentTerm" else str(cancel.get("cancellationEffectiveDate"))
        changed.update(status="Cancelled", subscriptionEndDate=end, termEndDate=end)
        event = "CancelSubscription"
    elif kind == "Suspend":
        _only_today("suspendPolicy", (action.get("suspend") or {}).get("suspendPolicy"))
        if changed["status"] != "Active":
            raise ZuoraError(SUBSCRIPTIONS, RULE, "Only an active subscription can be suspended.")
        changed.update(status="Suspended", suspendDate=order_date)
        event = "Suspend"
    elif kind == "Resume":
        resume = action.get("resume") or {}
        _only_today("resumePolicy", resume.get("resumePolicy"))
        if changed["status"] != "Suspended":
            raise ZuoraError(SUBSCRIPTIONS, RULE, "Subscription status must be Suspended.")
        suspended_days = (date.fromisoformat(order_date) - date.fromisoformat(changed.pop("suspendDate"))).days
        if resume.get("extendsTerm"):
            changed["termEndDate"] = (date.fromisoformat(changed["termEndDate"])
                                      + timedelta(days=suspended_days)).isoformat()
        changed["status"] = "Active"
        event = "Resume"
    else:
        raise ZuoraError(ORDERS, INVALID_VALUE, f"Unsupported order action type: '{kind}'.")
    return _store(tenant, changed, event)


def _only_today(field: str, policy: object) -> None:
    if policy is None:
        raise ZuoraError(ORDERS, MISSING_FIELD, f"'{field}' may not be null")
    if policy != "Today":
        raise ZuoraError(ORDERS, INVALID_VALUE, f"The sandbox emulates '{field}' Today only.")


def _create(tenant: Tenant, account: Record, create: Record, order_date: str) -> Record:
    plans = create.get("subscribeToRatePlans") or []
    if not plans:
        raise ZuoraError(SUBSCRIPTIONS, MISSING_FIELD, "'subscribeToRatePlans' may not be empty")
    term = (create.get("terms") or {}).get("initialTerm") or {}
    months = int(term.get("period") or 12)
    if term.get("periodType", "Month") != "Month":
        raise ZuoraError(SUBSCRIPTIONS, INVALID_VALUE, "The sandbox takes terms in months ('periodType': 'Month').")
    start = str(term.get("startDate") or order_date)
    number = str(create.get("subscriptionNumber") or f"A-S{len(tenant.subscription_numbers) + 1:08d}")
    subscription = {
        "subscriptionNumber": number, "accountId": account["id"], "accountNumber": account["accountNumber"],
        "accountName": account["name"], "currency": account["currency"], "status": "Active", "version": 0,
        "termType": "TERMED", "initialTerm": months, "currentTerm": months, "renewalTerm": months,
        "initialTermPeriodType": "Month", "autoRenew": bool((create.get("terms") or {}).get("autoRenew", True)),
        "contractEffectiveDate": start, "subscriptionStartDate": start, "termStartDate": start,
        "termEndDate": _add_months(start, months),
        "ratePlans": [_rate_plan(plan, account["currency"]) for plan in plans],
    }
    return _store(tenant, subscription, "CreateSubscription")


def _rate_plan(plan: Record, currency: str) -> Record:
    """A subscribed rate plan of the catalog with one flat recurring charge, priced by the order's override."""
    plan_key = plan.get("productRatePlanId") or plan.get("productRatePlanNumber")
    if not plan_key:
        raise ZuoraError(SUBSCRIPTIONS, MISSING_FIELD, "'productRatePlanId' may not be null")
    sold = catalog.rate_plan(str(plan_key))
    [override, *_] = plan.get("chargeOverrides") or [{}]
    price = (override.get("pricing") or {}).get("recurringFlatFee", {}).get("listPrice")
    if price is None:
        raise ZuoraError(SUBSCRIPTIONS, MISSING_FIELD, "'chargeOverrides.pricing.recurringFlatFee.listPrice' "
                         "may not be null (the sandbox has no catalog to price from)")
    period = (override.get("billing") or {}).get("billingPeriod", "Month")
    if period not in PERIODS:
        raise ZuoraError(SUBSCRIPTIONS, INVALID_VALUE, "'billingPeriod' value should be one of: Month, Annual")
    charge = {"id": new_id(), "number": f"C-{new_id()[-8:].upper()}", "name": sold["name"], "type": "Recurring",
              "model": "FlatFee", "price": rounded(decimal(price, "listPrice", SUBSCRIPTIONS), currency),
              "quantity": Decimal(1), "billingPeriod": period, "currency": currency,
              "productRatePlanChargeId": str(override.get("productRatePlanChargeId") or new_id())}
    return {"id": new_id(), "productId": catalog.PRODUCT["id"], "productName": catalog.PRODUCT["name"],
            "productSku": catalog.PRODUCT["sku"], "productRatePlanId": sold["id"], "ratePlanName": sold["name"],
            "ratePlanCharges": [charge]}


def _store(tenant: Tenant, subscription: Record, event: str) -> Record:
    """Keep ``subscription`` as its next version (a new id) and raise ``event`` about its number."""
    version = {**subscription, "id": new_id(), "version": int(subscription["version"]) + 1,
               "updatedDate": tenant._now()}
    tenant.subscription_numbers[version["subscriptionNumber"]] = version
    tenant.raise_event(event, "Subscription", version, object_id=version["subscriptionNumber"])
    return version


def subscription_view(tenant: Tenant, key: str) -> Record:
    """``GET /v1/subscriptions/{key}``: the latest version, amounts as numbers."""
    found = dict(tenant.subscription(key))
    found["ratePlans"] = [{**plan, "ratePlanCharges": [{k: float(v) if isinstance(v, Decimal) else v
                                                        for k, v in charge.items()}
                                                       for charge in plan["ratePlanCharges"]]}
                          for plan in found["ratePlans"]]
    return {"success": True, **{k: v for k, v in found.items() if k not in KEPT_BACK}, "isLatestVersion": True}


def _add_months(day: str, months: int) -> str:
    start = date.fromisoformat(day)
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31,
            30, 31][month - 1]
    return date(year, month, min(start.day, last)).isoformat()
