"""The Zuora sandbox against Zuora's own description of its v1 API (tests/fixtures/specs/zuora):
every answer the tests provoke is checked as it is given (Zuora's official client drives it in
tests/test_zuora_sdk.py), and each documented behaviour has its test (Idempotency-Key replay, reuse 422,
concurrent 409, expiry after 24 h; ``success: false`` on HTTP 200; 401 without a valid token;
``RateLimit-*`` headers and 429 with ``Retry-After``, past the rate or the concurrent-request limit;
callouts with their auth, retries and repeats)."""

import json
import threading

import httpx
import pytest
from crossledger.plugins.zuora import callout
from crossledger.plugins.zuora.sandbox.app import HMAC_HEADER
from crossledger.plugins.zuora.sandbox.catalog import catalog_id
from crossledger.testing.specs import zuora as zuora_spec
from crossledger.testing.specs.answers import Exchange

from tests.kits.zuora import (
    SUSPEND,
    UPGRADE_AND_RENEWAL,
    CalloutReceiver,
    Checked,
    fixture,
    order,
    plan,
    published,
    seed,
    served_and_checked,
)

zuora = pytest.fixture(served_and_checked, name="zuora")


def test_the_checks_can_fail() -> None:
    """The description catches a departure (a number where Zuora answers a string, a refusal in
    another shape), so a clean run means something."""
    [_, accounts, *_] = published()
    pointer = accounts.response_pointer("GET", "/v1/accounts/A00000001", 200)
    assert pointer is not None
    assert accounts.check_at(pointer, {"success": True, "basicInfo": {"id": 42}})
    check = zuora_spec.checker(published())
    refusal = Exchange("GET", "/v1/accounts/x", "", 200, "application/json", b'{"success": false, "error": "x"}')
    assert check(refusal)
    assert not check(Exchange("GET", "/v1/accounts/x", "", 200, "application/json",
                              json.dumps(fixture("error_response_v1")).encode()))


def test_invoices_payments_and_definitions_answer_as_described(zuora: Checked) -> None:
    seeded = seed(zuora.sandbox)
    invoice = zuora.http.get(f"/v1/invoices/{seeded['invoice']}").json()
    assert (invoice["amount"], invoice["taxAmount"], invoice["balance"], invoice["status"]) == (
        "108.25", "8.25", "0.00", "Posted")
    [item] = zuora.http.get(f"/v1/invoices/{invoice['invoiceNumber']}/items").json()["invoiceItems"]
    assert (item["chargeAmount"], item["taxAmount"]) == ("100.00", "8.25")
    payment = zuora.http.get(f"/v1/payments/{seeded['payment']}").json()
    assert (payment["amount"], payment["appliedAmount"], payment["type"]) == (108.25, 108.25, "External")
    [part] = zuora.http.get(f"/v1/payments/{seeded['payment']}/parts").json()["parts"]
    assert (part["invoiceId"], part["amount"]) == (seeded["invoice"], 108.25)
    defined = zuora.http.post("/notifications/notification-definitions", json={
        "name": "Invoice posted", "eventTypeName": "InvoicePosted",
        "callout": {"name": "hub", "calloutBaseurl": "https://hub.example/webhooks/zuora", "httpMethod": "POST"}})
    assert defined.status_code == 200 and defined.json()["eventTypeName"] == "InvoicePosted"
    assert zuora.http.get("/notifications/notification-definitions").json()["data"][0]["id"] == defined.json()["id"]


def test_an_overpaid_invoice_is_refused_with_success_false_on_http_200(zuora: Checked) -> None:
    seeded = seed(zuora.sandbox)
    answer = zuora.http.post("/v1/payments", json={
        "accountId": seeded["account"], "amount": 1, "currency": "USD", "type": "External",
        "invoices": [{"invoiceId": seeded["invoice"], "amount": 1}]})
    assert answer.status_code == 200
    assert answer.json()["success"] is False and str(answer.json()["reasons"][0]["code"]).endswith("20")


def test_credits_and_refunds_never_exceed_what_they_return(zuora: Checked) -> None:
    seeded = seed(zuora.sandbox)
    memo = zuora.http.get(f"/v1/creditmemos/{seeded['memo']}").json()
    assert (memo["amount"], memo["appliedAmount"], memo["refundAmount"], memo["status"]) == (20, 0, 20, "Posted")
    refund = zuora.http.get(f"/v1/refunds/{seeded['refund']}").json()
    assert (refund["amount"], refund["creditMemoId"], refund["status"]) == (20, seeded["memo"], "Processed")
    too_much = zuora.http.post(f"/v1/invoices/{seeded['invoice']}/creditmemos", json={"autoPost": True})
    assert too_much.status_code == 200 and str(too_much.json()["reasons"][0]["code"]).endswith("30")
    applied = zuora.http.post(f"/v1/payments/{seeded['payment']}/refunds", json={"totalAmount": 1, "type": "External"})
    assert applied.status_code == 200 and str(applied.json()["reasons"][0]["code"]).endswith("30")  # all applied
    rest = zuora.http.post(f"/v1/invoices/{seeded['invoice']}/creditmemos", json={
        "autoPost": True, "items": [{"invoiceItemId": "nope", "amount": 1, "skuName": "SKU-1"}]})
    assert str(rest.json()["reasons"][0]["code"]).endswith("20")


def test_credit_memos_answer_on_the_newer_paths_too(zuora: Checked) -> None:
    """zuora-sdk 3.21 and Zuora's later reference say ``/v1/credit-memos``; the 2023 one ``/v1/creditmemos``."""
    seeded = seed(zuora.sandbox)
    [item] = zuora.http.get(f"/v1/invoices/{seeded['invoice']}/items").json()["invoiceItems"]
    memo = zuora.http.post(f"/v1/credit-memos/invoice/{seeded['invoice']}", json={
        "autoPost": True, "items": [{"invoiceItemId": item["id"], "amount": 0.01, "skuName": "SKU-1"}]})
    assert memo.json()["success"] is True, memo.json()
    assert zuora.http.get(f"/v1/credit-memos/{memo.json()['id']}").json()["amount"] == 0.01
    assert zuora_spec.described_path("/v1/credit-memos/invoice/INV1") == "/v1/invoices/INV1/creditmemos"
    assert zuora_spec.described_path("/v1/credit-memos/CM1/refunds") == "/v1/creditmemos/CM1/refunds"


def test_a_subscription_is_created_upgraded_renewed_and_cancelled_by_orders(zuora: Checked) -> None:
    account_id = zuora.account()
    number = zuora.sandbox.state()["accounts"][0]["accountNumber"]
    created = zuora.http.post("/v1/orders", json=order(number, UPGRADE_AND_RENEWAL[0])).json()
    assert created["success"] and created["status"] == "Completed"
    [subscription_number] = created["subscriptionNumbers"]
    first = zuora.http.get(f"/v1/subscriptions/{subscription_number}").json()
    assert (first["accountId"], first["termStartDate"], first["termEndDate"]) == (
        account_id, "2026-01-05", "2027-01-05")
    for action in UPGRADE_AND_RENEWAL[1:]:
        assert zuora.http.post("/v1/orders", json=order(number, action, subscription_number)).json()["success"]
    last = zuora.http.get(f"/v1/subscriptions/{subscription_number}").json()
    assert (last["version"], last["status"], last["termStartDate"], last["termEndDate"]) == (
        4, "Cancelled", "2027-01-05", "2028-01-05")
    assert last["id"] != first["id"]  # every order action makes a new version under the same number
    assert [(p["productRatePlanId"], p["ratePlanCharges"][0]["price"]) for p in last["ratePlans"]] == [
        (catalog_id("enterprise"), 250)]
    refused = zuora.http.post("/v1/orders", json=order(number, UPGRADE_AND_RENEWAL[2], subscription_number))
    assert refused.status_code == 200 and str(refused.json()["reasons"][0]["code"]).endswith("30")


def test_the_catalogs_rate_plans_say_their_tier_and_an_order_names_one_of_them(zuora: Checked) -> None:
    listed = zuora.http.get("/v1/products/SKU-SUPPORT/product-rate-plans", params={"pageSize": 2}).json()
    assert [plan["name"] for plan in listed["productRatePlans"]] == ["Basic", "Pro"] and listed["nextPage"]
    assert listed["productRatePlans"][1]["Tier__c"] == "pro"
    pro = zuora.http.get(f"/v1/object/product-rate-plan/{catalog_id('pro')}").json()
    assert (pro["Name"], pro["Tier__c"]) == ("Pro", "pro")
    assert zuora.http.get("/v1/object/product-rate-plan/PRP-ENT").json()["Id"] == catalog_id("enterprise")
    assert zuora.http.get("/v1/products/NO-SUCH-SKU/product-rate-plans").json()["success"] is False
    zuora.account()
    number = zuora.sandbox.state()["accounts"][0]["accountNumber"]
    unknown = {"type": "CreateSubscription", "createSubscription": {"subscribeToRatePlans": [plan("gold", 10)]}}
    refused = zuora.http.post("/v1/orders", json=order(number, unknown)).json()
    assert refused["success"] is False and "product rate plan" in refused["reasons"][0]["message"]
    [subscription] = zuora.http.post("/v1/orders", json=order(number, UPGRADE_AND_RENEWAL[0])).json()[
        "subscriptionNumbers"]
    [rate_plan] = zuora.http.get(f"/v1/subscriptions/{subscription}").json()["ratePlans"]
    assert (rate_plan["productName"], rate_plan["ratePlanName"], rate_plan["productRatePlanId"]) == (
        "Support", "Pro", catalog_id("pro"))


def test_collections_suspend_a_subscription_and_resume_it_extending_its_term(zuora: Checked) -> None:
    zuora.account()
    number = zuora.sandbox.state()["accounts"][0]["accountNumber"]
    [subscription] = zuora.http.post("/v1/orders", json=order(number, UPGRADE_AND_RENEWAL[0])).json()[
        "subscriptionNumbers"]
    resume = {"type": "Resume", "resume": {"resumePolicy": "Today", "extendsTerm": True}}
    refused = zuora.http.post("/v1/orders", json=order(number, resume, subscription)).json()
    assert refused["success"] is False and refused["reasons"][0]["message"] == "Subscription status must be Suspended."
    later = zuora.http.post("/v1/orders", json=order(number, {"type": "Suspend", "suspend": {
        "suspendPolicy": "SpecificDate", "suspendSpecificDate": "2026-02-01"}}, subscription)).json()
    assert later["success"] is False and "Today" in later["reasons"][0]["message"]
    suspended = zuora.http.post("/v1/orders", json=order(number, SUSPEND, subscription)).json()
    assert suspended["subscriptions"] == [{"subscriptionNumber": subscription, "status": "Suspended"}]
    assert zuora.http.get(f"/v1/subscriptions/{subscription}").json()["status"] == "Suspended"
    ten_days_on = {**order(number, resume, subscription), "orderDate": "2026-01-15"}
    assert zuora.http.post("/v1/orders", json=ten_days_on).json()["success"]
    resumed = zuora.http.get(f"/v1/subscriptions/{subscription}").json()
    assert (resumed["status"], resumed["version"], resumed["termEndDate"]) == ("Active", 3, "2027-01-15")
    assert "suspendDate" not in resumed


def test_a_missing_required_field_is_http_200_with_success_false(zuora: Checked) -> None:
    answer = zuora.http.post("/v1/accounts", json={"name": "No currency", "billToContact": {"lastName": "X"}})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is False and body["processId"]
    assert [str(reason["code"])[-2:] for reason in body["reasons"]] == ["22"]  # missing required field
    assert zuora.sandbox.state()["accounts"] == []
    missing = zuora.http.get("/v1/accounts/A99999999")
    assert missing.status_code == 200 and str(missing.json()["reasons"][0]["code"]).endswith("40")


def test_an_idempotency_key_replays_its_first_answer_and_refuses_another_request(zuora: Checked) -> None:
    body = {**fixture("create_account_request"), "name": "Keyed"}
    first = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-1"})
    again = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.json() == again.json() and len(zuora.sandbox.state()["accounts"]) == 1
    other = zuora.http.post("/v1/accounts", json={**body, "name": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and other.json()["success"] is False
    assert len(zuora.sandbox.state()["accounts"]) == 1


def test_an_idempotency_key_is_forgotten_after_24_hours(zuora: Checked) -> None:
    body = {**fixture("create_account_request"), "name": "Kept a day"}
    first = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-day"}).json()
    zuora.control("clock", advance_s=24 * 3600 - 60)
    zuora.http.headers["Authorization"] = "Bearer " + httpx.post(f"{zuora.url}/oauth/token", data={
        "client_id": zuora.sandbox.client_id, "client_secret": zuora.sandbox.client_secret,
        "grant_type": "client_credentials"}).json()["access_token"]
    assert zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-day"}).json() == first
    zuora.control("clock", advance_s=120)
    later = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-day"}).json()
    assert later["accountId"] != first["accountId"] and len(zuora.sandbox.state()["accounts"]) == 2


def test_a_server_error_and_a_refusal_are_kept_under_the_key_and_replayed(zuora: Checked) -> None:
    """Zuora keeps the first answer to a key whether it succeeded or failed: an injected 500 (it
    fails as the request runs), and a ``success: false``, come back for the key until it expires;
    another key runs the request anew."""
    body = {**fixture("create_account_request"), "name": "After a 500"}
    zuora.control("faults", mode="http_500", count=1)
    first = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-500"})
    again = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-500"})
    assert (first.status_code, again.status_code) == (500, 500) and first.json() == again.json()
    assert zuora.sandbox.state()["accounts"] == []
    assert zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-500-1"}).json()["success"]
    refused = {"name": "No currency", "billToContact": {"lastName": "X"}}
    failed = zuora.http.post("/v1/accounts", json=refused, headers={"Idempotency-Key": "k-refused"}).json()
    assert failed["success"] is False
    replayed = zuora.http.post("/v1/accounts", json=refused, headers={"Idempotency-Key": "k-refused"}).json()
    assert replayed == failed and len(zuora.sandbox.state()["accounts"]) == 1  # the same processId: a replay


@pytest.mark.parametrize("mode", ["http_429", "down"])
def test_a_refusal_before_the_request_runs_is_not_kept(zuora: Checked, mode: str) -> None:
    body = {**fixture("create_account_request"), "name": f"After {mode}"}
    zuora.control("faults", mode=mode, count=1)
    refused = zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": f"k-{mode}"})
    assert refused.status_code in (429, 503)
    assert zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": f"k-{mode}"}).json()["success"]
    assert len(zuora.sandbox.state()["accounts"]) == 1


def test_a_concurrent_request_with_the_same_key_is_a_409(zuora: Checked) -> None:
    zuora.control("slow-writes", seconds=1.0)
    body = {**fixture("create_account_request"), "name": "Slow"}
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(
        zuora.http.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-slow"})))
    first.start()
    threading.Event().wait(0.3)
    with httpx.Client(base_url=zuora.url, headers=dict(zuora.http.headers)) as second:
        concurrent = second.post("/v1/accounts", json=body, headers={"Idempotency-Key": "k-slow"})
    first.join()
    assert concurrent.status_code == 409 and concurrent.json()["success"] is False
    assert answers[0].status_code == 200 and len(zuora.sandbox.state()["accounts"]) == 1


def test_a_request_past_the_tenants_concurrent_limit_is_a_429_with_retry_after(zuora: Checked) -> None:
    zuora.control("limits", concurrent=1, retry_after_s=7)
    zuora.control("slow-writes", seconds=1.5)
    answers: list[httpx.Response] = []
    writing = threading.Thread(target=lambda: answers.append(
        zuora.http.post("/v1/accounts", json={**fixture("create_account_request"), "name": "Slow"})))
    writing.start()
    threading.Event().wait(0.5)
    with httpx.Client(base_url=zuora.url, headers=dict(zuora.http.headers)) as second:
        refused = second.get("/v1/accounts/A00000001")
    writing.join()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
    assert refused.json()["success"] is False and str(refused.json()["reasons"][0]["code"]).endswith("70")
    assert answers[0].status_code == 200 and answers[0].json()["success"] is True
    assert zuora.http.get(f"/v1/accounts/{answers[0].json()['accountId']}").status_code == 200  # its place freed


def test_calls_without_a_valid_token_are_401(zuora: Checked) -> None:
    answer = httpx.get(f"{zuora.url}/v1/accounts/A00000001", headers={"Authorization": "Bearer not-a-token"})
    assert answer.status_code == 401 and answer.json()["reasons"][0]["code"] == 90000011
    refused = httpx.post(f"{zuora.url}/oauth/token", data={"client_id": zuora.sandbox.client_id,
                                                          "client_secret": "wrong", "grant_type": "client_credentials"})
    assert refused.status_code == 401


def test_every_answer_has_rate_limit_headers_and_the_limit_is_a_429_with_retry_after(zuora: Checked) -> None:
    zuora.control("limits", per_minute=2)
    first = zuora.http.get("/v1/accounts/A00000001")
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("2", "1")
    assert 1 <= int(first.headers["RateLimit-Reset"]) <= 60
    zuora.http.get("/v1/accounts/A00000001")
    limited = zuora.http.get("/v1/accounts/A00000001", headers={"Zuora-Track-Id": "track-1"})
    assert limited.status_code == 429 and limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) == int(limited.headers["RateLimit-Reset"]) >= 1
    assert limited.headers["Zuora-Track-Id"] == "track-1"
    assert str(limited.json()["reasons"][0]["code"]).endswith("70")


def test_callouts_carry_basic_auth_and_the_body_hmac_and_are_retried_with_new_request_ids(zuora: Checked) -> None:
    receiver = CalloutReceiver(failures=2)
    try:
        zuora.sandbox.subscribe(receiver.url)
        account_id = zuora.account(name="Called out")
        assert zuora.sandbox.wait_for_callouts(30)
    finally:
        receiver.stop()
    assert len(receiver.attempts) == 3  # two refused, the third accepted
    bodies = {body for _, body in receiver.attempts}
    assert len(bodies) == 1
    [body] = bodies
    sent = json.loads(body)
    assert (sent["eventType"], sent["objectType"], sent["objectId"]) == ("AccountCreated", "Account", account_id)
    for headers, _ in receiver.attempts:
        callout.verify_basic(headers, zuora.sandbox.callout_username, zuora.sandbox.callout_password)
        callout.verify_hmac(headers, body, HMAC_HEADER, [zuora.sandbox.hmac_key])
    assert len({headers["zuora-request-id"] for headers, _ in receiver.attempts}) == 3


def test_callouts_can_be_sent_twice_and_out_of_order(zuora: Checked) -> None:
    receiver = CalloutReceiver()
    try:
        zuora.sandbox.subscribe(receiver.url)
        zuora.control("callouts", hold=True)
        account_id = zuora.account(name="First")
        zuora.http.put(f"/v1/accounts/{account_id}", json={"name": "Second"})
        zuora.control("callouts", release="reverse")
        assert zuora.sandbox.wait_for_callouts(30)
        zuora.control("callouts", resend="all")
        assert zuora.sandbox.wait_for_callouts(30)
    finally:
        receiver.stop()
    events = [json.loads(body)["eventType"] for _, body in receiver.attempts]
    assert events == ["AccountUpdated", "AccountCreated", "AccountCreated", "AccountUpdated"]


def test_v1_lists_page_with_page_and_page_size_and_link_the_next_page(zuora: Checked) -> None:
    for _ in range(3):
        seed(zuora.sandbox)
    for collection, count in (("payments", 3), ("creditmemos", 3), ("refunds", 3)):
        listed, url = [], f"/v1/{collection}?pageSize=2"
        while url:
            page = zuora.http.get(url).json()
            assert page["success"] is True and len(page[collection]) <= 2, page
            listed += [record["id"] for record in page[collection]]
            url = page.get("nextPage", "")
            assert not url or url.startswith(f"{zuora.url}/v1/{collection}?"), url
        assert len(listed) == len(set(listed)) == count, (collection, listed)
    for size in (0, 41):
        refused = zuora.http.get(f"/v1/payments?pageSize={size}")
        assert refused.status_code == 400 and refused.json()["success"] is False
