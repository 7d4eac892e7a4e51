"""The NetSuite sandbox over real HTTP: TBA, the record service's wire format, bookkeeping rules,
concurrency governance and fault injection."""

import dataclasses
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Current
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.netsuite.auth import NetSuiteAuth
from crossledger.plugins.netsuite.sandbox.app import RECORD_ROOT, SUITEQL_PATH, NetSuiteSandbox
from starlette.applications import Starlette
from starlette.routing import Mount

FIXTURES = Path(__file__).parent / "fixtures" / "payloads" / "netsuite"
UTC_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def signer(sandbox: NetSuiteSandbox, **overrides: Any) -> NetSuiteAuth:
    """TBA for the sandbox's account, with any credential (or the clock) replaced."""
    return NetSuiteAuth(**(dataclasses.asdict(sandbox.credentials) | overrides))


@pytest.fixture
def sandbox(host: tuple[ServerThread, Current]) -> NetSuiteSandbox:
    fresh = NetSuiteSandbox()
    host[1].app = fresh.app
    return fresh


@pytest.fixture
def server(host: tuple[ServerThread, Current], sandbox: NetSuiteSandbox) -> ServerThread:
    return host[0]


@pytest.fixture
def api(sandbox: NetSuiteSandbox, server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + RECORD_ROOT, auth=signer(sandbox)) as client:
        yield client


def created(response: httpx.Response) -> str:
    """The id of the record a write created: 204, no body, the id only in Location."""
    assert response.status_code == 204, response.text
    assert response.content == b""
    return response.headers["location"].rsplit("/", 1)[-1]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The single o:errorDetails entry of a NetSuite error response."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    [detail] = body["o:errorDetails"]
    return dict(detail)


def new_customer(api: httpx.Client, **fields: Any) -> str:
    return created(api.post("/customer", json={"companyName": "Acme", **fields}))


def new_invoice(api: httpx.Client, customer: str, *amounts: float, **fields: Any) -> str:
    lines = [{"item": {"id": "1"}, "amount": amount} for amount in amounts]
    return created(api.post("/invoice", json={"entity": {"id": customer}, "item": {"items": lines}, **fields}))


def settle(api: httpx.Client, record_type: str, customer: str, invoice: str, amount: float) -> httpx.Response:
    """A customer payment or credit memo applying ``amount`` to ``invoice``."""
    apply = {"items": [{"doc": {"id": invoice}, "apply": True, "amount": amount}]}
    if record_type == "customerpayment":
        body = {"customer": {"id": customer}, "payment": amount, "apply": apply}
    else:
        body = {"entity": {"id": customer}, "item": {"items": [{"item": {"id": "1"}, "amount": amount}]},
                "apply": apply}
    return api.post(f"/{record_type}", json=body)


# --- token-based authentication ---------------------------------------------------------------


def test_a_signed_request_is_accepted(api: httpx.Client) -> None:
    response = api.get("/customer", params={"limit": 5, "offset": 0})

    assert response.status_code == 200, response.text
    assert response.json()["totalResults"] == 0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"consumer_secret": "0" * 64}, "signature_invalid"),
        ({"token_secret": "0" * 64}, "signature_invalid"),
        ({"consumer_key": "unknown"}, "consumer_key_unknown"),
        ({"token_id": "unknown"}, "token_rejected"),
        ({"account_id": "TSTDRV0000000"}, "realm_invalid"),
        ({"clock": lambda: time.time() - 600}, "timestamp_refused"),
    ],
    ids=["consumer-secret", "token-secret", "consumer-key", "token", "realm", "stale"],
)
def test_bad_credentials_get_netsuites_invalid_login(
    sandbox: NetSuiteSandbox, server: ServerThread, overrides: dict[str, Any], reason: str
) -> None:
    response = httpx.get(f"{server.url}{RECORD_ROOT}/customer", auth=signer(sandbox, **overrides))

    assert response.status_code == 401
    assert response.json() == fixture("error_401_invalid_login.json")
    assert [entry["detail"] for entry in sandbox.login_audit_trail()] == [reason]


def test_a_missing_header_is_refused(sandbox: NetSuiteSandbox, server: ServerThread) -> None:
    response = httpx.get(f"{server.url}{RECORD_ROOT}/customer")

    assert response.json() == fixture("error_401_invalid_login.json")
    assert sandbox.login_audit_trail()[0]["detail"] == "parameter_absent"


def test_a_replayed_nonce_is_refused(sandbox: NetSuiteSandbox, server: ServerThread) -> None:
    url = f"{server.url}{RECORD_ROOT}/customer"
    header = {"Authorization": signer(sandbox).authorization("GET", url)}

    first, replay = httpx.get(url, headers=header), httpx.get(url, headers=header)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert sandbox.login_audit_trail()[0]["detail"] == "nonce_used"


def test_query_parameters_are_signed(sandbox: NetSuiteSandbox, server: ServerThread) -> None:
    url = f"{server.url}{RECORD_ROOT}/customer"
    header = {"Authorization": signer(sandbox).authorization("GET", f"{url}?limit=1")}

    response = httpx.get(f"{url}?limit=2", headers=header)

    assert response.status_code == 401
    assert sandbox.login_audit_trail()[0]["detail"] == "signature_invalid"


def test_signatures_verify_under_a_mount_prefix(sandbox: NetSuiteSandbox) -> None:
    """The hub serves the sandbox at /netsuite: the signed URL includes the prefix."""
    thread = ServerThread(Starlette(routes=[Mount("/netsuite", app=sandbox.app)])).start()
    root = f"{thread.url}/netsuite{RECORD_ROOT}"
    try:
        with httpx.Client(auth=signer(sandbox)) as client:
            location = client.post(f"{root}/customer", json={"companyName": "Mounted"}).headers["location"]
            record = client.get(location)
            page = client.get(f"{root}/customer", params={"limit": 1})
    finally:
        thread.stop()

    assert location == f"{root}/customer/1"
    assert record.status_code == 200 and record.json()["links"] == [{"rel": "self", "href": location}]
    assert page.status_code == 200 and page.json()["items"][0]["id"] == "1"
    assert sandbox.login_audit_trail() == []


# --- records --------------------------------------------------------------------------------


def test_create_answers_204_with_the_id_only_in_location(api: httpx.Client, server: ServerThread) -> None:
    response = api.post("/customer", json=fixture("customer_create_request.json"))

    customer_id = created(response)
    assert response.headers["location"] == f"{server.url}{RECORD_ROOT}/customer/{customer_id}"
    record = api.get(f"/customer/{customer_id}").json()
    assert record["companyName"] == "My Company" and record["entityId"] == "New Customer"  # names match any case
    assert record["subsidiary"] == {"id": "1", "refName": "Parent Company"}
    assert record["links"] == [{"rel": "self", "href": response.headers["location"]}]
    assert UTC_DATETIME.fullmatch(record["createdDate"]) and UTC_DATETIME.fullmatch(record["lastModifiedDate"])


def test_upsert_by_external_id_creates_then_updates_the_same_record(api: httpx.Client) -> None:
    first = api.put("/customer/eid:crm-42", json=fixture("customer_upsert_by_external_id_request.json"))
    again = api.put("/customer/eid:crm-42", json={"lastName": "Smyth"})

    customer_id = created(first)
    assert again.status_code == 204 and "location" not in again.headers
    by_eid = api.get("/customer/eid:crm-42").json()
    assert by_eid == api.get(f"/customer/{customer_id}").json()
    assert (by_eid["id"], by_eid["externalId"], by_eid["firstName"], by_eid["lastName"]) == (
        customer_id, "crm-42", "John", "Smyth")
    assert api.get("/customer").json()["totalResults"] == 1


def test_an_update_adds_sublist_lines_unless_told_to_replace_them(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 10, 20)

    api.patch(f"/invoice/{invoice}", json={"item": {"items": [{"item": {"id": "1"}, "amount": 5}]}})
    added = api.get(f"/invoice/{invoice}", params={"expandSubResources": "true"}).json()
    api.patch(f"/invoice/{invoice}", params={"replace": "item"},
              json={"item": {"items": [{"item": {"id": "1"}, "amount": 7}]}})
    replaced = api.get(f"/invoice/{invoice}", params={"expandSubResources": "true"}).json()

    assert [line["amount"] for line in added["item"]["items"]] == [10, 20, 5]
    assert added["total"] == 35
    assert [line["amount"] for line in replaced["item"]["items"]] == [7]
    assert replaced["total"] == 7


def test_a_keyed_sublist_updates_the_matching_line(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 100)
    payment = created(settle(api, "customerpayment", customer, invoice, 30))

    api.patch(f"/customerpayment/{payment}",
              json={"payment": 50, "apply": {"items": [{"doc": {"id": invoice}, "apply": True, "amount": 50}]}})

    record = api.get(f"/customerpayment/{payment}", params={"expandSubResources": "true"}).json()
    assert [line["amount"] for line in record["apply"]["items"]] == [50]
    assert api.get(f"/invoice/{invoice}").json()["amountRemaining"] == 50


def test_ids_are_sequential_per_family(api: httpx.Client) -> None:
    customers = [new_customer(api), new_customer(api)]
    invoice = new_invoice(api, customers[0], 10)
    payment = created(settle(api, "customerpayment", customers[0], invoice, 10))

    assert customers == ["1", "2"]
    assert (invoice, payment) == ("1", "2")  # transactions share one sequence


def test_collections_page_with_limit_offset_and_links(api: httpx.Client) -> None:
    ids = [new_customer(api, companyName=f"C{n}") for n in range(7)]
    pages = [api.get("/customer", params={"limit": 3}).json()]
    while pages[-1]["hasMore"]:
        next_href = {link["rel"]: link["href"] for link in pages[-1]["links"]}["next"]
        pages.append(api.get(next_href).json())

    assert [item["id"] for page in pages for item in page["items"]] == ids
    assert [(p["offset"], p["count"], p["hasMore"], p["totalResults"]) for p in pages] == [
        (0, 3, True, 7), (3, 3, True, 7), (6, 1, False, 7)]
    assert [sorted(link["rel"] for link in p["links"]) for p in pages] == [
        ["first", "last", "next", "self"], ["first", "last", "next", "previous", "self"],
        ["first", "last", "previous", "self"]]
    assert pages[0]["links"][-1]["href"].endswith("/customer?limit=3&offset=6")
    assert pages[0]["items"][0]["links"][0]["href"].endswith(f"/customer/{ids[0]}")


def test_limit_above_1000_is_refused(api: httpx.Client) -> None:
    detail = error_of(api.get("/customer", params={"limit": 1001}), 400)

    assert (detail["o:errorCode"], detail["o:errorQueryParam"]) == ("INVALID_PARAMETER", "limit")


def test_sublists_are_links_unless_expanded(api: httpx.Client) -> None:
    invoice = new_invoice(api, new_customer(api), 10, 2.5)

    collapsed = api.get(f"/invoice/{invoice}").json()
    expanded = api.get(f"/invoice/{invoice}", params={"expandSubResources": "true"}).json()
    sublist = api.get(collapsed["item"]["links"][0]["href"]).json()

    assert "items" not in collapsed["item"]
    assert [line["amount"] for line in expanded["item"]["items"]] == [10, 2.5]
    assert expanded["item"]["items"][0]["item"] == {"id": "1", "refName": "Services"}
    assert sublist["items"] == expanded["item"]["items"] and sublist["totalResults"] == 2


def test_missing_records_are_404_nonexistent_id(api: httpx.Client) -> None:
    assert error_of(api.get("/invoice/eid:nope"), 404)["o:errorCode"] == "NONEXISTENT_ID"
    assert error_of(api.get("/invoice/77"), 404)["o:errorCode"] == "NONEXISTENT_ID"


def test_patch_and_delete(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 10)

    patched = api.patch(f"/customer/{customer}", json={"isInactive": True})
    refused = api.delete(f"/customer/{customer}")  # its invoice depends on it
    deleted = api.delete(f"/invoice/{invoice}")

    assert patched.status_code == 204 and api.get(f"/customer/{customer}").json()["isInactive"] is True
    assert error_of(refused, 400)["o:errorCode"] == "USER_ERROR"
    assert deleted.status_code == 204 and api.get(f"/invoice/{invoice}").status_code == 404


# --- validation -----------------------------------------------------------------------------


def test_an_invalid_item_gets_netsuites_documented_error(api: httpx.Client) -> None:
    """The documented request (a sales order there) with its documented answer, verbatim."""
    body = fixture("sales_order_create_invalid_item_request.json") | {"entity": {"id": new_customer(api)}}
    body.pop("location")

    response = api.post("/invoice", json=body)

    assert response.status_code == 400
    assert response.json() == fixture("error_400_invalid_content.json")


def _line(amount: Any) -> dict[str, Any]:
    return {"item": {"items": [{"item": {"id": "1"}, "amount": amount}]}}


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({"entity": {"id": "999"}, **_line(10)}, "INVALID_CONTENT", "entity"),
        ({"currency": {"id": "99"}, **_line(10)}, "INVALID_CONTENT", "currency"),
        ({"currency": {"id": "2"}, **_line(10)}, "USER_ERROR", "currency"),  # the customer's is USD
        (_line("10.00"), "INVALID_CONTENT", "item.items[0].amount"),
        (_line(10.005), "INVALID_CONTENT", "item.items[0].amount"),
        ({"tranDate": "01/31/2024", **_line(10)}, "INVALID_CONTENT", "tranDate"),
        ({"total": 11, **_line(10)}, "INVALID_CONTENT", "total"),
        ({"item": {"items": []}}, "USER_ERROR", "item"),
    ],
    ids=["unknown-customer", "unknown-currency", "not-the-customers-currency", "string-amount",
         "too-many-decimals", "date-format", "wrong-total", "no-lines"],
)
def test_invalid_invoices_are_refused(api: httpx.Client, body: dict[str, Any], code: str, path: str) -> None:
    customer = new_customer(api, currency={"id": "1"})

    detail = error_of(api.post("/invoice", json={"entity": {"id": customer}} | body), 400)

    assert (detail["o:errorCode"], detail["o:errorPath"]) == (code, path)


def test_a_customer_transacts_in_its_primary_currency_and_those_on_its_currency_list(api: httpx.Client) -> None:
    uk = new_customer(api, subsidiary={"id": "2"})  # no currency given: the subsidiary's base, GBP
    assert api.get(f"/customer/{uk}").json()["currency"] == {"id": "2", "refName": "GBP"}
    detail = error_of(api.post("/invoice", json={"entity": {"id": uk}, "currency": {"id": "4"}, **_line(10)}), 400)
    assert detail == {"o:errorCode": "USER_ERROR", "o:errorPath": "currency",
                      "detail": f"Invalid currency reference key 4 for entity {uk}."}

    for _ in range(2):  # adding a currency twice keeps one line
        listed = api.patch(f"/customer/{uk}", json={"currencyList": {"items": [{"currency": {"id": "4"}}]}})
        assert listed.status_code == 204, listed.text
    lines = api.get(f"/customer/{uk}", params={"expandSubResources": "true"}).json()["currencyList"]["items"]
    assert lines == [{"currency": {"id": "4", "refName": "EUR"}}]
    euro = new_invoice(api, uk, 10, currency={"id": "4"})
    pound = new_invoice(api, uk, 10)  # none named: the primary currency
    assert [api.get(f"/invoice/{doc}").json()["currency"]["refName"] for doc in (euro, pound)] == ["EUR", "GBP"]


def test_a_customers_primary_currency_is_fixed_once_it_has_transactions(api: httpx.Client) -> None:
    customer = new_customer(api)
    assert api.patch(f"/customer/{customer}", json={"currency": {"id": "2"}}).status_code == 204
    new_invoice(api, customer, 10)

    detail = error_of(api.patch(f"/customer/{customer}", json={"currency": {"id": "4"}}), 400)

    assert (detail["o:errorCode"], detail["o:errorPath"]) == ("USER_ERROR", "currency")
    assert api.get(f"/customer/{customer}").json()["currency"]["refName"] == "GBP"


def test_decimal_places_follow_the_currency(api: httpx.Client) -> None:
    customer = new_customer(api, currencyList={"items": [{"currency": {"id": "5"}}, {"currency": {"id": "6"}}]})

    jpy_fraction = api.post("/invoice", json={"entity": {"id": customer}, "currency": {"id": "5"}, **_line(10.5)})
    kwd_mills = api.post("/invoice", json={"entity": {"id": customer}, "currency": {"id": "6"}, **_line(1.234)})

    assert error_of(jpy_fraction, 400)["o:errorPath"] == "item.items[0].amount"
    assert api.get(f"/invoice/{created(kwd_mills)}").json()["total"] == 1.234


def test_unknown_fields_are_dropped_or_refused_on_request(api: httpx.Client) -> None:
    lenient = api.post("/customer", json={"companyName": "Acme", "favouriteColour": "teal"})
    strict = api.post("/customer", json={"companyName": "Acme", "favouriteColour": "teal"},
                      headers={"X-NetSuite-PropertyNameValidation": "error"})

    assert "favouriteColour" not in api.get(f"/customer/{created(lenient)}").json()
    assert error_of(strict, 400)["o:errorPath"] == "favouriteColour"


# --- bookkeeping ----------------------------------------------------------------------------


def test_payments_and_credit_memos_reduce_the_amount_remaining(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 90, 10)

    def balance() -> tuple[float, str]:
        record = api.get(f"/invoice/{invoice}").json()
        return record["amountRemaining"], record["status"]["refName"]

    payment = created(settle(api, "customerpayment", customer, invoice, 40))
    assert balance() == (60, "Open")
    created(settle(api, "creditmemo", customer, invoice, 25))
    assert balance() == (35, "Open")
    created(settle(api, "customerpayment", customer, invoice, 35))
    assert balance() == (0, "Paid In Full")
    assert api.get(f"/customerpayment/{payment}").json()["unapplied"] == 0

    overpaid = settle(api, "customerpayment", customer, invoice, 1)
    assert (error_of(overpaid, 400)["o:errorCode"], balance()) == ("USER_ERROR", (0, "Paid In Full"))


def test_rewriting_a_payment_rebalances_its_invoice(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 100)
    apply = {"items": [{"doc": {"id": invoice}, "apply": True, "amount": 100}]}
    api.put("/customerpayment/eid:pay-1", json={"customer": {"id": customer}, "payment": 100, "apply": apply})

    apply["items"][0]["amount"] = 30
    rewritten = api.put("/customerpayment/eid:pay-1", json={"payment": 30, "apply": apply})

    assert rewritten.status_code == 204, rewritten.text
    assert api.get(f"/invoice/{invoice}").json()["amountRemaining"] == 70


def test_a_payment_only_applies_to_its_own_customers_invoices(api: httpx.Client) -> None:
    invoice = new_invoice(api, new_customer(api), 100)

    detail = error_of(settle(api, "customerpayment", new_customer(api), invoice, 10), 400)

    assert (detail["o:errorCode"], detail["o:errorPath"]) == ("INVALID_CONTENT", "apply.items[0].doc")


def test_journal_entries_must_balance(api: httpx.Client) -> None:
    balanced = fixture("journal_entry_create_request.json")
    unbalanced = json.loads(json.dumps(balanced))
    unbalanced["line"]["items"][1]["credit"] = 200

    assert created(api.post("/journalentry", json=balanced))
    assert error_of(api.post("/journalentry", json=unbalanced), 400)["o:errorPath"] == "line"


def test_state_lists_every_record_type(api: httpx.Client, sandbox: NetSuiteSandbox) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 12.5)
    created(settle(api, "customerpayment", customer, invoice, 12.5))

    state = sandbox.state()

    assert set(state) == {"customer", "invoice", "customerpayment", "creditmemo", "customerRefund", "journalentry",
                          "customrecord_cl_subscription"}
    [record] = state["invoice"]
    assert (record["total"], record["amountRemaining"], record["item"]["items"][0]["amount"]) == (12.5, 0, 12.5)


def refund(api: httpx.Client, customer: str, doc: str, amount: float) -> httpx.Response:
    apply = {"items": [{"doc": {"id": doc}, "apply": True, "amount": amount}]}
    return api.post("/customerRefund", json={"customer": {"id": customer}, "account": {"id": "10"}, "apply": apply})


def test_a_refund_pays_out_no_more_than_the_credit_or_payment_has_left(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 100)
    payment = created(api.post("/customerpayment", json={
        "customer": {"id": customer}, "payment": 40,
        "apply": {"items": [{"doc": {"id": invoice}, "apply": True, "amount": 30}]}}))  # 10 left unapplied
    memo = created(api.post("/creditmemo", json={"entity": {"id": customer}, **_line(20)}))  # all 20 on account

    too_much = [refund(api, customer, memo, 20.01), refund(api, customer, payment, 10.01)]
    paid_out = [created(refund(api, customer, memo, 20)), created(refund(api, customer, payment, 10))]

    assert [error_of(r, 400)["o:errorPath"] for r in too_much] == ["apply.items[0].amount"] * 2
    assert [api.get(f"/customerRefund/{id_}").json()["total"] for id_ in paid_out] == [20, 10]
    assert api.get(f"/creditmemo/{memo}").json()["unapplied"] == 0
    assert api.get(f"/customerpayment/{payment}").json()["unapplied"] == 0
    refused = refund(api, customer, invoice, 1)  # an invoice is not something a refund pays out
    assert error_of(refused, 400)["o:errorPath"] == "apply.items[0].doc"


def test_a_customers_balance_is_what_its_transactions_leave_owing(api: httpx.Client) -> None:
    customer = new_customer(api)
    invoice = new_invoice(api, customer, 100)
    new_invoice(api, customer, 50)
    created(settle(api, "customerpayment", customer, invoice, 40))
    memo = created(api.post("/creditmemo", json={"entity": {"id": customer}, **_line(20)}))
    created(refund(api, customer, memo, 5))

    record = api.get(f"/customer/{customer}").json()

    assert record["balance"] == 150 - 40 - 20 + 5
    assert api.get(f"/customer/{new_customer(api)}").json()["balance"] == 0


# --- approval, customizations -----------------------------------------------------------------


class Clock:
    """The account's clock, moved by the test; it starts at the real time, which TBA checks."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_invoices_routed_for_approval_post_once_a_user_approves_them(
    host: tuple[ServerThread, Current]
) -> None:
    clock = Clock()
    sandbox = NetSuiteSandbox(clock=clock, approval_routing=True)
    host[1].app = sandbox.app
    with httpx.Client(base_url=host[0].url + RECORD_ROOT, auth=signer(sandbox)) as api:
        customer = new_customer(api)
        invoice = new_invoice(api, customer, 100)
        pending = api.get(f"/invoice/{invoice}").json()
        unpayable = settle(api, "customerpayment", customer, invoice, 10)
        balance_before = api.get(f"/customer/{customer}").json()["balance"]
        clock.now += 61

        approved = api.patch(f"/invoice/{invoice}", json={"approvalStatus": {"id": "2"}})
        posted = api.get(f"/invoice/{invoice}").json()
        payable = settle(api, "customerpayment", customer, invoice, 10)

    assert (pending["status"]["id"], pending["approvalStatus"]) == (
        "pendingApproval", {"id": "1", "refName": "Pending Approval"})
    assert error_of(unpayable, 400)["o:errorPath"] == "apply.items[0].doc"
    assert balance_before == 0  # not in the ledger yet
    assert approved.status_code == 204
    assert (posted["status"]["id"], posted["approvalStatus"]["refName"]) == ("open", "Approved")
    assert posted["lastModifiedDate"] > pending["lastModifiedDate"]
    assert created(payable)


def test_the_subscription_custom_record(api: httpx.Client) -> None:
    customer = new_customer(api)
    fields = {"name": "sub_1", "custrecord_cl_customer": {"id": customer}, "custrecord_cl_plan_tier": "pro",
              "custrecord_cl_recurring_amount": 1500, "custrecord_cl_currency": {"id": "5"},
              "custrecord_cl_period_start": "2024-03-01"}
    strict = {"X-NetSuite-PropertyNameValidation": "error"}

    first = api.put("/customrecord_cl_subscription/eid:sub.1", json=fields, headers=strict)
    again = api.put("/customrecord_cl_subscription/eid:sub.1", json={"custrecord_cl_status": "canceled"})
    nameless = api.post("/customrecord_cl_subscription", json={"custrecord_cl_customer": {"id": customer}})
    yen_fraction = api.post("/customrecord_cl_subscription", json=fields | {"custrecord_cl_recurring_amount": 1.5})
    nobody = api.post("/customrecord_cl_subscription", json=fields | {"custrecord_cl_customer": {"id": "999"}})

    assert created(first) == "1"  # its own id sequence
    assert again.status_code == 204 and "location" not in again.headers
    record = api.get("/customrecord_cl_subscription/eid:sub.1").json()
    assert (record["custrecord_cl_customer"]["refName"], record["custrecord_cl_status"],
            record["custrecord_cl_recurring_amount"]) == ("Acme", "canceled", 1500)
    assert error_of(nameless, 400)["o:errorPath"] == "name"
    assert error_of(yen_fraction, 400)["o:errorPath"] == "custrecord_cl_recurring_amount"
    assert error_of(nobody, 400)["o:errorPath"] == "custrecord_cl_customer"


def test_customers_carry_the_cross_reference_fields(api: httpx.Client) -> None:
    customer = new_customer(api)

    patched = api.patch(f"/customer/{customer}", json={"custentity_cl_stripe_id": "cus_123"},
                        headers={"X-NetSuite-PropertyNameValidation": "error"})

    assert patched.status_code == 204, patched.text
    assert api.get(f"/customer/{customer}").json()["custentity_cl_stripe_id"] == "cus_123"


def test_a_customers_credit_hold_is_auto_until_set(api: httpx.Client) -> None:
    customer = new_customer(api)
    strict = {"X-NetSuite-PropertyNameValidation": "error"}

    fresh = api.get(f"/customer/{customer}").json()
    held = api.patch(f"/customer/{customer}", json={"creditHoldOverride": {"id": "ON"}}, headers=strict)
    shown = api.get(f"/customer/{customer}").json()
    unknown = api.patch(f"/customer/{customer}", json={"creditHoldOverride": {"id": "MAYBE"}})
    bare = api.patch(f"/customer/{customer}", json={"creditHoldOverride": "OFF"})  # a select, not text

    assert fresh["creditHoldOverride"] == {"id": "AUTO", "refName": "Auto"}
    assert held.status_code == 204, held.text
    assert shown["creditHoldOverride"] == {"id": "ON", "refName": "On"}
    assert (error_of(unknown, 400)["o:errorCode"], error_of(unknown, 400)["o:errorPath"]) == (
        "INVALID_CONTENT", "creditHoldOverride")
    assert error_of(bare, 400)["o:errorPath"] == "creditHoldOverride"
    assert api.get(f"/customer/{customer}").json()["creditHoldOverride"]["id"] == "ON"  # refusals change nothing
    assert created(api.post("/customer", json={"companyName": "Held", "creditHoldOverride": {"id": "OFF"}}))


def test_customers_carry_a_tax_registration_and_only_known_subsidiaries(api: httpx.Client) -> None:
    customer = new_customer(api, vatRegNumber="GB123456789", subsidiary={"id": "2"})

    elsewhere = api.post("/customer", json={"companyName": "Nowhere", "subsidiary": {"id": "99"}})

    record = api.get(f"/customer/{customer}").json()
    assert (record["vatRegNumber"], record["subsidiary"]) == ("GB123456789", {"id": "2", "refName": "UK"})
    detail = error_of(elsewhere, 400)
    assert (detail["o:errorCode"], detail["o:errorPath"]) == ("INVALID_CONTENT", "subsidiary")
    assert "Invalid Field Value 99" in detail["detail"]


def test_the_subscription_record_holds_its_contract(api: httpx.Client) -> None:
    customer = new_customer(api)
    contract = {"custrecord_cl_contract_term": 24, "custrecord_cl_contract_owner": "jane@acme.test",
                "custrecord_cl_legal_entity": "Acme Holdings Ltd"}

    written = api.put("/customrecord_cl_subscription/eid:sub.contract",
                      json={"name": "sub_c", "custrecord_cl_customer": {"id": customer}, **contract},
                      headers={"X-NetSuite-PropertyNameValidation": "error"})

    assert created(written)
    record = api.get("/customrecord_cl_subscription/eid:sub.contract").json()
    assert {name: record[name] for name in contract} == contract


# --- SuiteQL --------------------------------------------------------------------------------


def suiteql(api: httpx.Client, server: ServerThread, query: str, *, transient: bool = True,
            **params: Any) -> httpx.Response:
    headers = {"Prefer": "transient"} if transient else {}
    return api.post(f"{server.url}{SUITEQL_PATH}", params=params, json={"q": query}, headers=headers)


def rows(api: httpx.Client, server: ServerThread, query: str) -> list[dict[str, Any]]:
    response = suiteql(api, server, query)
    assert response.status_code == 200, response.text
    return [{name: value for name, value in row.items() if name != "links"} for row in response.json()["items"]]


def test_suiteql_pages_like_a_collection(api: httpx.Client, server: ServerThread) -> None:
    ids = [new_customer(api, companyName=f"C{n}") for n in range(5)]
    query = "SELECT id, companyname FROM customer ORDER BY id DESC"

    pages = [suiteql(api, server, query, limit=2).json()]
    while pages[-1]["hasMore"]:
        next_href = {link["rel"]: link["href"] for link in pages[-1]["links"]}["next"]
        pages.append(api.post(next_href, json={"q": query}, headers={"Prefer": "transient"}).json())

    assert [item["id"] for page in pages for item in page["items"]] == ids[::-1]
    assert [(p["offset"], p["count"], p["hasMore"], p["totalResults"]) for p in pages] == [
        (0, 2, True, 5), (2, 2, True, 5), (4, 1, False, 5)]
    assert pages[0]["items"][0] == {"links": [], "id": ids[-1], "companyname": "C4"}
    assert pages[0]["links"][0]["href"].endswith(f"{SUITEQL_PATH}?limit=2&offset=0")


def test_suiteql_answers_text_leaves_out_nulls_and_shows_dates_as_the_user_does(
    api: httpx.Client, server: ServerThread
) -> None:
    customer = new_customer(api, email="ap@acme.test")
    new_customer(api)
    invoice = new_invoice(api, customer, 12.5, tranDate="2024-03-01")

    [row] = rows(api, server, "SELECT id, type, entity, foreigntotal, posting, trandate, TO_CHAR(lastmodifieddate, "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS modified FROM transaction")
    people = rows(api, server, "SELECT id, email FROM customer ORDER BY id")

    modified = api.get(f"/invoice/{invoice}").json()["lastModifiedDate"]
    assert row == {"id": invoice, "type": "CustInvc", "entity": customer, "foreigntotal": "12.5", "posting": "T",
                   "trandate": "3/1/2024", "modified": modified}
    assert people == [{"id": customer, "email": "ap@acme.test"}, {"id": str(int(customer) + 1)}]


def test_suiteql_filters_with_three_valued_logic(api: httpx.Client, server: ServerThread) -> None:
    first = new_customer(api, email="a@x.test", terms={"id": "2"})
    second = new_customer(api, terms={"id": "1"})
    third = new_customer(api, email="c@x.test")

    def ids(where: str) -> list[str]:
        return [row["id"] for row in rows(api, server, f"SELECT id FROM customer WHERE {where} ORDER BY id")]

    assert ids("terms IN (1, 2)") == [first, second]
    assert ids("NOT terms IN (1)") == [first]  # third's terms are NULL: neither in nor not in
    assert ids("terms IS NULL OR (email = 'a@x.test' AND terms <> 1)") == [first, third]
    assert ids(f"id > {first} AND NOT id = {third}") == [second]
    assert ids("lastmodifieddate < TO_TIMESTAMP('2000-01-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS')") == []


def test_suiteql_keyset_pages_answer_the_rows_after_the_bound(api: httpx.Client, server: ServerThread) -> None:
    ids = [int(new_customer(api, email=f"{'odd' if n % 2 else 'even'}@x.test")) for n in range(6)]
    assert api.delete(f"/customer/{ids[2]}").status_code == 204  # a gap: a bound between two ids
    kept = [id_ for id_ in ids if id_ != ids[2]]
    odd = [id_ for id_ in kept if ids.index(id_) % 2]
    bounds = [0, ids[0], ids[2], Decimal(ids[3]) + Decimal("0.5"), ids[-1], ids[-1] + 100]

    def after(bound: object, where: str = "", then: str = "") -> list[int]:
        query = f"SELECT id FROM customer WHERE {where}id > {bound}{then} ORDER BY id"
        return [int(row["id"]) for row in rows(api, server, query)]

    assert [after(bound) for bound in bounds] == [[id_ for id_ in kept if id_ > bound] for bound in bounds]
    assert [after(bound, where="email = 'odd@x.test' AND ") for bound in bounds] == [
        [id_ for id_ in odd if id_ > bound] for bound in bounds]
    assert after(ids[0], then=" AND email = 'odd@x.test'") == odd
    assert after(ids[1], where="(email = 'even@x.test' OR email IS NULL) AND ") == [ids[4]]
    page = suiteql(api, server, f"SELECT id FROM customer WHERE id > {ids[0]} ORDER BY id", limit=2).json()
    assert ([int(item["id"]) for item in page["items"]], page["totalResults"], page["hasMore"]) == (kept[1:3], 4, True)
    late = int(new_customer(api, email="odd@x.test"))  # a write: the next page sees it
    assert after(ids[-1], where="email = 'odd@x.test' AND ") == [late]


@pytest.mark.parametrize(
    ("query", "params", "code", "detail"),
    [
        ("SELECT nosuchfield FROM customer", {}, "INVALID_PARAMETER", "Field 'nosuchfield' for record 'customer'"),
        ("SELECT id FROM nosuchrecord", {}, "INVALID_PARAMETER", "Record 'nosuchrecord' was not found"),
        ("SELECT id customer", {}, "INVALID_PARAMETER", "Invalid search query"),
        ("SELECT id FROM customer", {"limit": 1001}, "INVALID_PARAMETER", "limit"),
    ],
    ids=["field", "record", "syntax", "limit"],
)
def test_suiteql_refuses_what_netsuite_refuses(
    api: httpx.Client, server: ServerThread, query: str, params: dict[str, Any], code: str, detail: str
) -> None:
    refused = error_of(suiteql(api, server, query, **params), 400)

    assert refused["o:errorCode"] == code and detail in refused["detail"]
    assert refused["o:errorQueryParam"] == ("limit" if params else "q")


def test_suiteql_needs_prefer_transient(api: httpx.Client, server: ServerThread) -> None:
    assert error_of(suiteql(api, server, "SELECT id FROM customer", transient=False), 400)["detail"].endswith(
        "Prefer: transient.")


# --- governance and faults ------------------------------------------------------------------


def _post_fault(server: ServerThread, spec: dict[str, Any]) -> None:
    httpx.post(f"{server.url}/_sandbox/faults", json=spec).raise_for_status()


def test_requests_beyond_the_concurrency_limit_get_429() -> None:
    sandbox = NetSuiteSandbox(concurrency_limit=2)
    thread = ServerThread(sandbox.app).start()
    _post_fault(thread, {"mode": "latency", "latency_ms": 600})
    start = threading.Barrier(6)

    def call(client: httpx.Client) -> httpx.Response:
        start.wait()
        return client.get("/customer")

    try:
        with httpx.Client(base_url=thread.url + RECORD_ROOT, auth=signer(sandbox)) as client, \
                ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(call, [client] * 6))
            httpx.delete(f"{thread.url}/_sandbox/faults")
            after = client.get("/customer")
    finally:
        thread.stop()

    assert Counter(r.status_code for r in responses) == {200: 2, 429: 4}
    refused = next(r for r in responses if r.status_code == 429)
    assert error_of(refused, 429)["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert after.status_code == 200  # the slots were given back


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("http_500", 500, "UNEXPECTED_ERROR"), ("down", 503, "SERVICE_UNAVAILABLE"),
     ("http_429", 429, "CONCURRENCY_LIMIT_EXCEEDED")],
)
def test_faults_answer_in_netsuites_error_shape(
    api: httpx.Client, server: ServerThread, mode: str, status: int, code: str
) -> None:
    _post_fault(server, {"mode": mode, "count": 1, "retry_after": 7})

    faulted, recovered = api.get("/customer"), api.get("/customer")

    assert error_of(faulted, status)["o:errorCode"] == code
    assert faulted.headers.get("retry-after") == ("7" if status == 429 else None)
    assert recovered.status_code == 200


def test_timeout_after_commit_writes_then_withholds_the_answer(
    api: httpx.Client, server: ServerThread, sandbox: NetSuiteSandbox
) -> None:
    _post_fault(server, {"mode": "timeout_after_commit", "count": 1, "latency_ms": 1000})

    with pytest.raises(httpx.ReadTimeout):
        api.post("/customer", json={"companyName": "Committed"}, timeout=0.3)

    assert [c["companyName"] for c in sandbox.state()["customer"]] == ["Committed"]
