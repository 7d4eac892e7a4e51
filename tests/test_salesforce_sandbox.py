"""The Salesforce sandbox speaks the org's wire format: OAuth, sObject rows, external-id upserts, SOQL
paging, limits, faults and outbound messages, over real HTTP; and simple-salesforce works against it.

One org serves the module (each test uses its own names and keys); tests that change the org's
limits or its outbound endpoint put them back.
"""

import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import requests
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.salesforce import ids, soap
from crossledger.plugins.salesforce.sandbox import soql
from crossledger.plugins.salesforce.sandbox.app import INTEGRATION_USER_ID, ORGANIZATION_ID, SalesforceSandbox
from crossledger.testing.specs.answers import Recorder
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceMalformedRequest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.kits.salesforce import OutboundReceiver, checked, published_describes

V = "/services/data/v62.0"
REST_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
CLOCK = [1_767_225_600.0]  # 2026-01-01T00:00:00Z; tests move it forward


@pytest.fixture(scope="module")
def sandbox() -> SalesforceSandbox:
    return SalesforceSandbox(clock=lambda: CLOCK[0])


@pytest.fixture(scope="module")
def served_app(sandbox: SalesforceSandbox) -> Recorder:
    """The org, every REST answer of which is checked against Salesforce's describes and error shape."""
    return checked(sandbox.app)


def token_for(url: str, sandbox: SalesforceSandbox) -> str:
    answer = httpx.post(f"{url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                        auth=(sandbox.client_id, sandbox.client_secret))
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def api(sandbox: SalesforceSandbox, server: ServerThread) -> Iterator[httpx.Client]:
    """An httpx client for the org's REST API, logged in."""
    headers = {"Authorization": f"Bearer {token_for(server.url, sandbox)}"}
    with httpx.Client(base_url=server.url + V, headers=headers) as client:
        yield client


pytestmark = pytest.mark.usefixtures("no_faults_left", "as_the_vendor_answers")


def unique(prefix: str = "Acme") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def create(api: httpx.Client, sobject: str, **fields: Any) -> str:
    answer = api.post(f"/sobjects/{sobject}", json=fields)
    assert answer.status_code == 201, answer.text
    record_id: str = answer.json()["id"]
    return record_id


def error_of(answer: httpx.Response) -> tuple[int, str, list[str] | None]:
    [error] = answer.json()
    return answer.status_code, error["errorCode"], error.get("fields")


# --- OAuth and sessions ---------------------------------------------------------------------


def test_client_credentials_issue_a_session(sandbox: SalesforceSandbox, server: ServerThread) -> None:
    answer = httpx.post(f"{server.url}/services/oauth2/token",
                        data={"grant_type": "client_credentials", "client_id": sandbox.client_id,
                              "client_secret": sandbox.client_secret})

    body = answer.json()
    assert answer.status_code == 200
    assert body["token_type"] == "Bearer" and body["instance_url"] == server.url
    assert body["access_token"].startswith(ORGANIZATION_ID[:15] + "!")
    assert body["id"].startswith(f"https://login.salesforce.com/id/{ORGANIZATION_ID}/005")


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "client_credentials", "client_secret": "wrong"}, "invalid_client"),
    ({"grant_type": "password"}, "unsupported_grant_type"),
])
def test_token_errors_are_oauth_errors(sandbox: SalesforceSandbox, server: ServerThread, form: dict[str, str],
                                       error: str) -> None:
    answer = httpx.post(f"{server.url}/services/oauth2/token", data={"client_id": sandbox.client_id, **form})

    assert answer.status_code == 400 and answer.json()["error"] == error


def test_api_needs_a_live_session(sandbox: SalesforceSandbox, server: ServerThread) -> None:
    session = {"Authorization": f"Bearer {token_for(server.url, sandbox)}"}
    assert httpx.get(f"{server.url}{V}/limits", headers=session).status_code == 200

    httpx.post(f"{server.url}/_sandbox/sessions/expire").raise_for_status()

    for headers in (session, {}, {"Authorization": "Bearer forged"}):
        answer = httpx.get(f"{server.url}{V}/limits", headers=headers)
        assert (answer.status_code, answer.json()) == (
            401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])


# --- sObject rows ---------------------------------------------------------------------------


def test_create_then_read_by_either_id_form(api: httpx.Client) -> None:
    name = unique()
    answer = api.post("/sobjects/Account", json={"Name": name, "Phone": "+1 555 0100", "Open_Balance__c": 1.5})

    created = answer.json()
    assert answer.status_code == 201 and created["success"] is True and created["errors"] == []
    record_id = created["id"]
    assert len(record_id) == 18 and record_id.startswith("001") and ids.normalize(record_id[:15]) == record_id
    for form in (record_id, record_id[:15], record_id.lower()[:15] + record_id[15:]):
        record = api.get(f"/sobjects/Account/{form}").json()
        assert record["Id"] == record_id and record["Name"] == name
    assert record["attributes"] == {"type": "Account", "url": f"{V}/sobjects/Account/{record_id}"}
    assert REST_DATETIME.fullmatch(record["CreatedDate"]) and record["CurrencyIsoCode"] == "USD"
    assert api.get(f"/sobjects/Account/{record_id}", params={"fields": "Name,Phone"}).json() == {
        "attributes": record["attributes"], "Name": name, "Phone": "+1 555 0100"}


def test_update_by_id_moves_last_modified(api: httpx.Client) -> None:
    record_id = create(api, "Account", Name=unique())
    before = api.get(f"/sobjects/Account/{record_id}").json()

    CLOCK[0] += 60
    answer = api.patch(f"/sobjects/Account/{record_id}", json={"Website": "https://acme.test"})

    after = api.get(f"/sobjects/Account/{record_id}").json()
    assert answer.status_code == 204 and answer.content == b""
    assert after["Website"] == "https://acme.test" and after["CreatedDate"] == before["CreatedDate"]
    assert after["LastModifiedDate"] > before["LastModifiedDate"]
    assert after["SystemModstamp"] == after["LastModifiedDate"]


def test_delete_takes_the_account_s_contacts(api: httpx.Client) -> None:
    account = create(api, "Account", Name=unique())
    contact = create(api, "Contact", LastName="Black", AccountId=account)
    assert contact.startswith("003")

    assert api.delete(f"/sobjects/Account/{account}").status_code == 204

    for path in (f"/sobjects/Account/{account}", f"/sobjects/Contact/{contact}"):
        assert error_of(api.get(path)) == (404, "NOT_FOUND", None)


@pytest.mark.parametrize(("sobject", "body", "expected"), [
    ("Account", {"Phone": "1"}, (400, "REQUIRED_FIELD_MISSING", ["Name"])),
    ("Account", {"Name": "x", "Colour__c": "red"}, (400, "INVALID_FIELD", ["Colour__c"])),
    ("Account", {"Name": "x", "LastModifiedDate": "2020-01-01T00:00:00Z"},
     (400, "INVALID_FIELD_FOR_INSERT_UPDATE", ["LastModifiedDate"])),
    ("Account", {"Name": "x", "Email__c": "not-an-email"}, (400, "INVALID_EMAIL_ADDRESS", ["Email__c"])),
    ("Account", {"Name": "x", "CurrencyIsoCode": "XYZ"}, (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                                          ["CurrencyIsoCode"])),
    ("Account", {"Name": "x" * 256}, (400, "STRING_TOO_LONG", ["Name"])),
    ("Account", {"Name": "x", "Open_Balance__c": "12.50"}, (400, "JSON_PARSER_ERROR", None)),
    ("Account", {"Name": "x", "ParentId": "nonsense"}, (400, "MALFORMED_ID", ["ParentId"])),
    ("Contact", {"LastName": "x", "AccountId": "0035g00000AbCdEAAV"}, (400, "FIELD_INTEGRITY_EXCEPTION",
                                                                       ["AccountId"])),
    ("Contact", {"LastName": "x", "AccountId": "0015g00000KpQrSAAV"}, (400, "INVALID_CROSS_REFERENCE_KEY",
                                                                       ["AccountId"])),
    ("Invoice__c", {"Name": "INV-1", "Due_Date__c": "31/01/2026"}, (400, "JSON_PARSER_ERROR", None)),
    ("Opportunity", {"Name": "x"}, (404, "NOT_FOUND", None)),
])
def test_writes_are_checked_like_the_api_checks_them(api: httpx.Client, sobject: str, body: dict[str, Any],
                                                     expected: tuple[int, str, list[str] | None]) -> None:
    assert error_of(api.post(f"/sobjects/{sobject}", json=body)) == expected


def test_custom_objects_keep_exact_amounts(api: httpx.Client) -> None:
    account = create(api, "Account", Name=unique())
    invoice = create(api, "Invoice__c", Name="INV-9", Account__c=account, Total__c=1.23456, CurrencyIsoCode="KWD",
                     Due_Date__c="2026-01-31")
    payment = create(api, "Payment__c", Name="PAY-9", Account__c=account, Invoice__c=invoice, Amount__c=1500,
                     CurrencyIsoCode="JPY")

    raw = api.get(f"/sobjects/Invoice__c/{invoice}").text
    assert invoice.startswith("a0B") and payment.startswith("a0C")
    assert '"Total__c":1.235' in raw  # rounded half-up to the field's scale, sent as a JSON number
    assert '"Due_Date__c":"2026-01-31"' in raw
    assert api.get(f"/sobjects/Payment__c/{payment}").json()["Amount__c"] == 1500


def test_a_null_clears_a_field_unless_it_is_required(api: httpx.Client) -> None:
    record_id = create(api, "Account", Name=unique(), Account_Status__c="Suspended", Type="Prospect",
                       Contract_Term_Months__c=12)

    cleared = api.patch(f"/sobjects/Account/{record_id}", json={"Account_Status__c": None, "Type": None,
                                                                 "Contract_Term_Months__c": None})

    record = api.get(f"/sobjects/Account/{record_id}").json()
    assert cleared.status_code == 204
    assert (record["Account_Status__c"], record["Type"], record["Contract_Term_Months__c"]) == (None, None, None)
    for required in ("Name", "OwnerId"):
        assert error_of(api.patch(f"/sobjects/Account/{record_id}", json={required: None})) == (
            400, "REQUIRED_FIELD_MISSING", [required])


def test_an_account_is_owned_by_a_user(api: httpx.Client) -> None:
    owner = "0055g00000OwNeR" + ids.checksum("0055g00000OwNeR")
    mine = create(api, "Account", Name=unique())
    theirs = create(api, "Account", Name=unique(), OwnerId=owner[:15], Contract_Term_Months__c=23.6)

    assert api.get(f"/sobjects/Account/{mine}").json()["OwnerId"] == INTEGRATION_USER_ID  # whoever made it
    raw = api.get(f"/sobjects/Account/{theirs}").text
    assert f'"OwnerId":"{owner}"' in raw and '"Contract_Term_Months__c":24' in raw  # scale 0, half-up
    assert error_of(api.patch(f"/sobjects/Account/{mine}", json={"OwnerId": mine})) == (
        400, "FIELD_INTEGRITY_EXCEPTION", ["OwnerId"])
    assert error_of(api.patch(f"/sobjects/Account/{mine}", json={"Contract_Term_Months__c": "12"}))[:2] == (
        400, "JSON_PARSER_ERROR")


# --- upsert by external id ------------------------------------------------------------------


def test_upsert_creates_then_updates(api: httpx.Client) -> None:
    key = f"customer.test.{uuid.uuid4().hex[:8]}"

    first = api.patch(f"/sobjects/Account/CrossLedger_Id__c/{key}", json={"Name": "First"})
    second = api.patch(f"/sobjects/Account/CrossLedger_Id__c/{key.upper()}", json={"Name": "Second"})

    record_id = first.json()["id"]
    assert (first.status_code, first.json()) == (201, {"id": record_id, "success": True, "errors": [],
                                                       "created": True})
    assert (second.status_code, second.json()) == (200, {"id": record_id, "success": True, "errors": [],
                                                         "created": False})
    record = api.get(f"/sobjects/Account/CrossLedger_Id__c/{key}").json()
    assert (record["Id"], record["Name"], record["CrossLedger_Id__c"]) == (record_id, "Second", key)


def test_upsert_before_api_46_answers_204_on_update(api: httpx.Client, server: ServerThread) -> None:
    key = f"customer.test.{uuid.uuid4().hex[:8]}"
    old = f"{server.url}/services/data/v45.0/sobjects/Account/CrossLedger_Id__c/{key}"

    created = api.patch(old, json={"Name": "Old API"})
    updated = api.patch(old, json={"Name": "Old API again"})

    assert created.status_code == 201 and "created" not in created.json()
    assert (updated.status_code, updated.content) == (204, b"")


def test_upsert_refusals(api: httpx.Client) -> None:
    key = f"customer.test.{uuid.uuid4().hex[:8]}"
    path = f"/sobjects/Account/CrossLedger_Id__c/{key}"

    assert error_of(api.patch(path, json={"Name": "x", "CrossLedger_Id__c": key})) == (
        400, "INVALID_FIELD", ["CrossLedger_Id__c"])
    assert error_of(api.patch(path, params={"updateOnly": "true"}, json={"Name": "x"})) == (404, "NOT_FOUND", None)
    assert error_of(api.patch(f"/sobjects/Account/Name/{key}", json={"Phone": "1"}))[:2] == (404, "NOT_FOUND")
    assert error_of(api.put(path, json={"Name": "x"}))[:2] == (405, "METHOD_NOT_ALLOWED")


def test_an_external_id_on_several_records_answers_300(api: httpx.Client) -> None:
    key = f"customer.dup.{uuid.uuid4().hex[:8]}"
    twins = [create(api, "Account", Name=unique(), CrossLedger_Id__c=key) for _ in range(2)]
    urls = [f"{V}/sobjects/Account/{twin}" for twin in twins]

    upsert = api.patch(f"/sobjects/Account/CrossLedger_Id__c/{key}", json={"Name": "Which one?"})
    read = api.get(f"/sobjects/Account/CrossLedger_Id__c/{key}")

    assert (upsert.status_code, upsert.json()) == (300, urls)
    assert (read.status_code, read.json()) == (300, urls)
    assert {api.get(f"/sobjects/Account/{twin}").json()["Name"] for twin in twins} != {"Which one?"}


# --- SOQL -----------------------------------------------------------------------------------


def test_query_filters_orders_and_types_its_literals(api: httpx.Client) -> None:
    city = unique("Town")
    CLOCK[0] += 3600
    cutoff = "2030-01-01T00:00:00Z"
    names = [f"{city} {n}" for n in "BAC"]
    for name in names:
        create(api, "Account", Name=name, BillingCity=city)

    def query(soql: str) -> httpx.Response:
        return api.get("/query", params={"q": soql})

    found = query(f"SELECT Id, Name FROM Account WHERE BillingCity = '{city.upper()}' AND LastModifiedDate < "
                  f"{cutoff} ORDER BY Name DESC LIMIT 2").json()
    assert found["totalSize"] == 2 and found["done"] is True
    assert [row["Name"] for row in found["records"]] == sorted(names, reverse=True)[:2]
    assert set(found["records"][0]) == {"attributes", "Id", "Name"}
    like = query(f"SELECT Name FROM Account WHERE Name LIKE '{city}%' AND (Name = '{names[0]}' OR "
                 f"Name = '{names[1]}')").json()
    assert sorted(row["Name"] for row in like["records"]) == sorted(names[:2])
    assert error_of(query(f"SELECT Id FROM Account WHERE LastModifiedDate > '{cutoff}'"))[:2] == (400, "INVALID_FIELD")
    assert error_of(query("SELECT Colour__c FROM Account"))[:2] == (400, "INVALID_FIELD")
    assert error_of(query("SELECT Id FROM Opportunity"))[:2] == (400, "INVALID_TYPE")
    assert error_of(query("SELECT Id FROM Account WHERE"))[:2] == (400, "MALFORMED_QUERY")


def test_ids_sort_and_compare_in_the_order_they_were_made_across_the_letter_case() -> None:
    """Keyset paging (``Id > 'last' ORDER BY Id``) needs ids to keep their case: ``…Z`` was made
    before ``…a``, which a comparison that ignored case would put the other way round."""
    minted = ids.IdFactory(start=33)  # the next ids end in Y, Z, a, b
    made = [{"Id": minted.new("001"), "Name": "Same"} for _ in range(4)]
    shuffled = [made[2], made[0], made[3], made[1]]

    in_order = soql.parse("SELECT Id FROM Account ORDER BY Id").run(shuffled)
    after = soql.parse(f"SELECT Id FROM Account WHERE Id > '{made[1]['Id'][:15]}' ORDER BY Id").run(shuffled)

    assert [record["Id"][14] for record in made] == ["Y", "Z", "a", "b"]
    assert in_order == made and after == made[2:]


def test_query_pages_follow_next_records_url(api: httpx.Client, server: ServerThread) -> None:
    city = unique("Pagetown")
    made = {create(api, "Account", Name=f"{city} {n}", BillingCity=city) for n in range(5)}
    batch = {"Sforce-Query-Options": "batchSize=2"}

    page = api.get("/query", params={"q": f"SELECT Id FROM Account WHERE BillingCity = '{city}'"}, headers=batch).json()
    seen, pages = [row["Id"] for row in page["records"]], 1
    while not page["done"]:
        assert re.fullmatch(rf"{V}/query/01g\w{{15}}-{2 * pages}", page["nextRecordsUrl"])
        page = httpx.get(server.url + page["nextRecordsUrl"], headers={**api.headers, **batch}).json()
        seen += [row["Id"] for row in page["records"]]
        pages += 1

    assert (pages, page["totalSize"], sorted(seen)) == (3, 5, sorted(made))
    assert error_of(api.get("/query/01g5g0000000000AAA-2")) == (400, "INVALID_QUERY_LOCATOR", None)


# --- limits and faults ----------------------------------------------------------------------


def test_every_answer_reports_usage_and_the_limit_answers_403(api: httpx.Client, server: ServerThread) -> None:
    first = api.get("/limits")
    used, limit = map(int, first.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/"))
    assert first.json()["DailyApiRequests"] == {"Max": limit, "Remaining": limit - used}
    assert api.get("/limits").headers["Sforce-Limit-Info"] == f"api-usage={used + 1}/{limit}"

    httpx.post(f"{server.url}/_sandbox/limits", json={"daily_limit": used + 1}).raise_for_status()
    try:
        refused = api.get("/limits")
    finally:
        httpx.post(f"{server.url}/_sandbox/limits", json={"daily_limit": limit}).raise_for_status()

    assert (refused.status_code, refused.json()) == (
        403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    assert refused.headers["Sforce-Limit-Info"] == f"api-usage={used + 1}/{used + 1}"


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("http_429", 403, "REQUEST_LIMIT_EXCEEDED"),  # Salesforce has no 429 on its REST API
    ("http_500", 500, "UNKNOWN_EXCEPTION"),
    ("down", 503, "SERVER_UNAVAILABLE"),
])
def test_faults_look_like_salesforce(sandbox: SalesforceSandbox, api: httpx.Client, server: ServerThread, mode: str,
                                     status: int, code: str) -> None:
    httpx.post(f"{server.url}/_sandbox/faults", json={"mode": mode, "retry_after": 3}).raise_for_status()

    answer = api.get("/limits")
    token = token_for(server.url, sandbox)  # the login service is not part of the fault

    assert error_of(answer)[:2] == (status, code) and "retry-after" not in answer.headers
    assert token


# --- the app mounted under a prefix, and simple-salesforce ----------------------------------


INSTANCE_HOST = "acme.my.salesforce.com"


class LoopbackAdapter(requests.adapters.HTTPAdapter):
    """simple-salesforce always speaks https to a bare host name; this sends what it addresses to
    ``https://{INSTANCE_HOST}`` to the sandbox on loopback instead (plain HTTP, under a prefix)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        request.url = self.target + str(request.url).removeprefix(f"https://{INSTANCE_HOST}")
        return super().send(request, **kwargs)


@pytest.fixture(scope="module")
def mounted() -> Iterator[tuple[SalesforceSandbox, str]]:
    """A second org, served under ``/salesforce`` as ``crossledger sandbox`` serves it."""
    org = SalesforceSandbox()
    app = checked(org.app)
    thread = ServerThread(Starlette(routes=[Mount("/salesforce", app=app)])).start()
    yield org, f"{thread.url}/salesforce"
    thread.stop()
    assert app.departures == [], "\n".join(app.departures)


@pytest.fixture(scope="module")
def sf(mounted: tuple[SalesforceSandbox, str]) -> Salesforce:
    org, url = mounted
    session = requests.Session()
    session.mount(f"https://{INSTANCE_HOST}", LoopbackAdapter(url))
    return Salesforce(instance_url=f"https://{INSTANCE_HOST}", session_id=token_for(url, org), session=session,
                      version="62.0")


def test_the_token_names_the_mounted_instance(mounted: tuple[SalesforceSandbox, str]) -> None:
    org, url = mounted
    answer = httpx.post(f"{url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                        auth=(org.client_id, org.client_secret))

    assert answer.json()["instance_url"] == url


def test_simple_salesforce_creates_reads_and_upserts(sf: Salesforce) -> None:
    accounts = cast(SFType, sf.Account)  # each access makes a new SFType, with its own api_usage
    created = accounts.create({"Name": "Simple Co", "BillingCity": "Leeds"})
    key = f"customer.simple.{uuid.uuid4().hex[:8]}"

    status_created = accounts.upsert(f"CrossLedger_Id__c/{key}", {"Name": "Upserted Co"})
    status_updated = accounts.upsert(f"CrossLedger_Id__c/{key}", {"Phone": "+44 113 496 0000"})

    assert created["success"] is True
    assert accounts.get(created["id"])["BillingCity"] == "Leeds"
    assert (status_created, status_updated) == (201, 200)
    by_key = accounts.get_by_custom_id("CrossLedger_Id__c", key)
    assert (by_key["Name"], by_key["Phone"]) == ("Upserted Co", "+44 113 496 0000")
    assert accounts.api_usage["api-usage"].used >= 5
    with pytest.raises(SalesforceMalformedRequest, match="REQUIRED_FIELD_MISSING"):
        accounts.create({"Phone": "no name"})


def test_simple_salesforce_query_all_pages(sf: Salesforce) -> None:
    city = unique("Querytown")
    contacts = cast(SFType, sf.Contact)
    made = {contacts.create({"LastName": f"Person {n}", "Title": city})["id"] for n in range(5)}

    everything = sf.query_all(f"SELECT Id, LastName FROM Contact WHERE Title = '{city}'",
                              headers={"Sforce-Query-Options": "batchSize=2"})

    assert {row["Id"] for row in everything["records"]} == made and everything["totalSize"] == 5


# --- outbound messages ----------------------------------------------------------------------


@pytest.fixture
def receiver(sandbox: SalesforceSandbox) -> Iterator[OutboundReceiver]:
    endpoint = OutboundReceiver()
    sandbox.subscribe(endpoint.url)
    yield endpoint
    sandbox.unsubscribe()
    endpoint.stop()


def test_outbound_message_for_a_change(sandbox: SalesforceSandbox, api: httpx.Client,
                                       receiver: OutboundReceiver) -> None:
    record_id = create(api, "Account", Name="Outbound & Co", Open_Balance__c=12.5)
    assert sandbox.wait_for_outbound(10)

    [body] = receiver.acknowledged()
    message = soap.parse(body)
    [notification] = message.notifications
    assert message.organization_id == ORGANIZATION_ID and message.session_id is None
    assert message.action_id.startswith("04k") and notification.id.startswith("04l")
    assert message.enterprise_url.endswith(f"/services/Soap/c/62.0/{ORGANIZATION_ID[:15]}")
    assert notification.sobject == "Account" and b'xsi:type="sf:Account"' in body
    assert notification.fields["Id"] == record_id and notification.fields["Name"] == "Outbound & Co"
    assert notification.fields["Open_Balance__c"] == "12.500"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", notification.fields["LastModifiedDate"] or "")
    assert b"<sf:Name>Outbound &amp; Co</sf:Name>" in body


def test_held_changes_leave_in_batches_of_100_per_action(sandbox: SalesforceSandbox, api: httpx.Client,
                                                         server: ServerThread, receiver: OutboundReceiver) -> None:
    httpx.post(f"{server.url}/_sandbox/outbound", json={"hold": True}).raise_for_status()
    account = create(api, "Account", Name=unique())
    for n in range(150):
        api.patch(f"/sobjects/Account/{account}", json={"Phone": str(n)}).raise_for_status()
    create(api, "Contact", LastName="Held", AccountId=account)

    released = httpx.post(f"{server.url}/_sandbox/outbound", json={"hold": False}).json()
    assert sandbox.wait_for_outbound(10)

    messages = [soap.parse(body) for body in receiver.acknowledged()]
    assert released == {"messages": 3}
    assert [len(m.notifications) for m in messages] == [100, 51, 1]
    assert [m.notifications[0].sobject for m in messages] == ["Account", "Account", "Contact"]
    assert messages[0].action_id != messages[2].action_id
    # a notification carries the record as it is when sent: every one shows the last phone
    assert {n.fields["Phone"] for m in messages[:2] for n in m.notifications} == {"149"}


def test_resend_delivers_the_same_message_again(sandbox: SalesforceSandbox, api: httpx.Client,
                                                server: ServerThread, receiver: OutboundReceiver) -> None:
    create(api, "Contact", LastName=unique("Twice"))
    assert sandbox.wait_for_outbound(10)

    assert httpx.post(f"{server.url}/_sandbox/outbound/resend").json() == {"resent": True}
    assert sandbox.wait_for_outbound(10)

    first, second = receiver.acknowledged()
    assert first == second


def test_state_lists_records_by_type(sandbox: SalesforceSandbox, api: httpx.Client, server: ServerThread) -> None:
    record_id = create(api, "Account", Name=unique())

    state = httpx.get(f"{server.url}/_sandbox/state").json()

    assert {"accounts", "contacts", "invoices", "payments", "outbound", "api"} <= set(state)
    assert record_id in {record["Id"] for record in state["accounts"]}
    assert state["api"]["used"] == sandbox.api_used


# --- held to Salesforce's describe ------------------------------------------------------------


@pytest.mark.parametrize("sobject", ["Account", "Contact"])
def test_describe_lists_every_standard_field_as_salesforce_does(api: httpx.Client, sobject: str) -> None:
    served = api.get(f"/sobjects/{sobject}/describe")

    assert served.status_code == 200, served.text
    body = served.json()
    assert published_describes()[sobject].describe_violations(body) == []
    assert (body["name"], body["urls"]["describe"]) == (sobject, f"{V}/sobjects/{sobject}/describe")
    names = [field["name"] for field in body["fields"]]
    assert {"CurrencyIsoCode", "CrossLedger_Id__c"} <= set(names) and len(names) == len(set(names))


def test_custom_objects_and_the_org_are_described(api: httpx.Client) -> None:
    invoice = api.get("/sobjects/Invoice__c/describe").json()
    assert (invoice["custom"], invoice["keyPrefix"]) == (True, "a0B")
    by_name = {field["name"]: field for field in invoice["fields"]}
    assert (by_name["Total__c"]["type"], by_name["Total__c"]["scale"], by_name["Name"]["nillable"]) == \
        ("currency", 3, False)
    assert {entry["name"] for entry in api.get("/sobjects").json()["sobjects"]} == \
        {"Account", "Contact", "Invoice__c", "Payment__c"}
    assert api.get("/sobjects/Contact").json()["objectDescribe"]["keyPrefix"] == "003"
    assert error_of(api.get("/sobjects/Opportunity/describe"))[:2] == (404, "NOT_FOUND")


def test_records_carry_every_standard_field_with_its_type(api: httpx.Client) -> None:
    account = create(api, "Account", Name=unique(), BillingCity="Leeds", BillingCountry="GB", NumberOfEmployees=12,
                     AnnualRevenue=1_500_000, Industry="Banking")
    contact = create(api, "Contact", AccountId=account, FirstName="Ada", LastName="Lovelace", Birthdate="1815-12-10")

    shown = api.get(f"/sobjects/Account/{account}").json()
    person = api.get(f"/sobjects/Contact/{contact}").json()

    assert published_describes()["Account"].violations(shown, whole=True) == []
    assert published_describes()["Contact"].violations(person, whole=True) == []
    assert (shown["IsDeleted"], shown["CreatedById"], shown["NumberOfEmployees"]) == (False, INTEGRATION_USER_ID, 12)
    assert shown["BillingAddress"] == {"street": None, "city": "Leeds", "state": None, "postalCode": None,
                                       "country": "GB", "latitude": None, "longitude": None, "geocodeAccuracy": None}
    assert shown["ShippingAddress"] is None
    assert (person["Name"], person["IsEmailBounced"], person["MailingAddress"]) == ("Ada Lovelace", False, None)


def soql_literal(field: dict[str, Any]) -> str:
    """A literal of the field's type, as SOQL writes it."""
    return {"boolean": "false", "int": "1", "double": "1.5", "currency": "1.5", "percent": "1.5",
            "date": "2026-01-31", "datetime": "2026-01-31T00:00:00Z", "id": "'000000000000000AAA'",
            "reference": "'000000000000000AAA'"}.get(field["type"], "'x'")


@pytest.mark.parametrize("sobject", ["Account", "Contact"])
def test_soql_selects_and_filters_on_any_standard_field(api: httpx.Client, sobject: str) -> None:
    fields = list(published_describes()[sobject].fields.values())
    create(api, sobject, **({"Name": unique()} if sobject == "Account" else {"LastName": unique("Person")}))

    every = api.get("/query", params={"q": f"SELECT {', '.join(f['name'] for f in fields)} FROM {sobject}"})
    assert every.status_code == 200, every.text
    assert every.json()["totalSize"] >= 1

    for field in fields:
        soql = f"SELECT Id FROM {sobject} WHERE {field['name']} != {soql_literal(field)}"
        answer = api.get("/query", params={"q": soql})
        if field["filterable"] and field["type"] != "address":  # compound fields: DISTANCE() only
            assert answer.status_code == 200, (soql, answer.text)
        else:
            assert error_of(answer)[:2] == (400, "INVALID_FIELD"), soql


def too_long(field: dict[str, Any]) -> str:
    """A value one character longer than ``field`` takes, well-formed otherwise."""
    if field["type"] == "email":
        return "a" * (field["length"] - len("@example.com") + 1) + "@example.com"
    return "x" * (field["length"] + 1)


@pytest.mark.parametrize(("sobject", "field"), [
    (sobject, field) for sobject in ("Account", "Contact")
    for field in published_describes()[sobject].fields.values()
    if field["createable"] and field["length"] and field["type"] not in ("reference", "id")
    and not field["restrictedPicklist"]
], ids=lambda value: value if isinstance(value, str) else value["name"])
def test_text_longer_than_the_field_is_refused_as_salesforce_refuses_it(api: httpx.Client, sobject: str,
                                                                       field: dict[str, Any]) -> None:
    required = {"Name": unique()} if sobject == "Account" else {"LastName": unique("Person")}
    answer = api.post(f"/sobjects/{sobject}", json={**required, field["name"]: too_long(field)})

    assert error_of(answer) == (400, "STRING_TOO_LONG", [field["name"]])
    [error] = answer.json()
    assert error["message"].startswith(f"{field['label']}: data value too large: ")
    assert error["message"].endswith(f"(max length={field['length']})")
    fits = too_long(field)[1:]  # the longest value the field takes
    assert api.post(f"/sobjects/{sobject}", json={**required, field["name"]: fits}).status_code == 201


def test_simple_salesforce_describes(sf: Salesforce) -> None:
    described = cast(SFType, sf.Account).describe()
    assert published_describes()["Account"].describe_violations(described) == []
    assert cast(SFType, sf.Contact).metadata()["objectDescribe"]["name"] == "Contact"
    assert "Invoice__c" in {entry["name"] for entry in sf.describe()["sobjects"]}
