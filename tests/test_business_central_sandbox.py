"""The Business Central sandbox, driven as Microsoft's documentation drives the API: a generic HTTP
client (httpx), a bearer token from Entra ID's client-credentials flow, JSON bodies, OData query
options. Every JSON answer is held to Microsoft's published description (tests/kits/business_central.py)."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from crossledger.plugins.business_central.sandbox.app import SCOPE, BusinessCentralSandbox
from crossledger.plugins.business_central.sandbox.webhooks import LIFETIME_S
from crossledger.plugins.emulator import ServerThread
from crossledger.testing.specs.answers import Recorder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.kits.business_central import Clock, checked


@dataclass
class Tenant:
    sandbox: BusinessCentralSandbox
    recorder: Recorder
    server: ServerThread
    clock: Clock
    http: httpx.Client

    @property
    def api(self) -> str:
        return f"{self.server.url}{self.sandbox.root}"

    @property
    def company(self) -> str:
        return f"{self.api}/companies({self.sandbox.company_id})"

    def token(self) -> str:
        answer = self.http.post(f"{self.server.url}/{self.sandbox.tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": self.sandbox.client_id,
            "client_secret": self.sandbox.client_secret, "scope": SCOPE})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def authorized(self) -> httpx.Client:
        return httpx.Client(headers={"Authorization": f"Bearer {self.token()}"}, timeout=10)


@pytest.fixture
def tenant() -> Iterator[Tenant]:
    clock = Clock()
    sandbox = BusinessCentralSandbox(clock=clock, notification_delay_s=0.1)
    recorder = checked(sandbox.app)
    server = ServerThread(recorder).start()
    with httpx.Client(timeout=10) as http:
        yield Tenant(sandbox, recorder, server, clock, http)
    server.stop()
    assert recorder.take_departures() == []


@dataclass
class Receiver:
    """A subscriber's endpoint: it answers the validation handshake (or not) and keeps notifications."""

    echo: bool = True
    status: int = 200
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def endpoint(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            return PlainTextResponse(token if self.echo else "no", status_code=200)
        self.bodies.append(await request.json())
        self.arrived.set()
        return JSONResponse({}, status_code=self.status)

    def wait(self, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = ServerThread(Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])).start()
    yield receiver, f"{server.url}/hook"
    server.stop()


def _customer(client: httpx.Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    answer = client.post(f"{tenant.company}/customers", json={"displayName": "Adventure Works", **fields})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


# -- auth -----------------------------------------------------------------------------------------


def test_client_credentials_token_then_bearer(tenant: Tenant) -> None:
    refused = tenant.http.post(f"{tenant.server.url}/{tenant.sandbox.tenant}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": tenant.sandbox.client_id, "client_secret": "wrong",
        "scope": SCOPE})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert tenant.http.get(f"{tenant.api}/companies").status_code == 401
    with tenant.authorized() as client:
        companies = client.get(f"{tenant.api}/companies").json()["value"]
        assert [c["id"] for c in companies] == [tenant.sandbox.company_id]
        tenant.clock.offset = tenant.sandbox.token_lifetime_s + 1  # the token expires
        expired = client.get(f"{tenant.api}/companies")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "Authentication_InvalidCredentials"
    assert "Bearer" in expired.headers["www-authenticate"]


# -- entities, OData, concurrency -----------------------------------------------------------------


def test_guid_properties_compare_with_bare_guid_literals_only(tenant: Tenant) -> None:
    """OData v4 writes GUIDs bare; Business Central refuses a GUID compared with a string."""
    with tenant.authorized() as client:
        created = _customer(client, tenant, email="info@adventure-works.com")
        url = f"{tenant.company}/customers"
        for quoted in ("id gt ''", f"id eq '{created['id']}'"):
            refused = client.get(url, params={"$filter": quoted})
            assert refused.status_code == 400, quoted
            error = refused.json()["error"]
            assert error["code"] == "BadRequest" and error["message"].startswith(
                "A binary operator with incompatible types was detected. Found operand types 'Edm.Guid' and "
                "'Edm.String' for operator kind"), error
        def ids(filter_: str) -> list[str]:
            answer = client.get(url, params={"$filter": filter_})
            assert answer.status_code == 200, filter_
            return [c["id"] for c in answer.json()["value"]]

        every = ids("id ne null")
        assert created["id"] in every and ids("id gt 00000000-0000-0000-0000-000000000000") == every
        assert ids(f"id eq {created['id'].upper()}") == [created["id"]]
        assert ids(f"id gt {max(every)}") == [] and ids(f"id le {min(every)}") == [min(every)]


def test_customers_carry_etags_and_updates_need_if_match(tenant: Tenant) -> None:
    with tenant.authorized() as client:
        created = _customer(client, tenant, email="info@adventure-works.com")
        url = f"{tenant.company}/customers({created['id']})"
        assert created["@odata.etag"].startswith('W/"') and created["number"]
        found = client.get(f"{tenant.company}/customers", params={"$filter": f"number eq '{created['number']}'"})
        assert [c["id"] for c in found.json()["value"]] == [created["id"]]

        without = client.patch(url, json={"displayName": "AW"})
        assert without.status_code == 400 and without.json()["error"]["code"] == "BadRequest_InvalidToken"
        updated = client.patch(url, json={"displayName": "AW"}, headers={"If-Match": created["@odata.etag"]})
        assert updated.status_code == 200 and updated.headers["etag"] != created["@odata.etag"]
        stale = client.patch(url, json={"displayName": "AW2"}, headers={"If-Match": created["@odata.etag"]})
        assert stale.status_code == 412 and stale.json()["error"]["code"] == "Request_EntityChanged"
        assert client.get(url).json()["displayName"] == "AW"


def test_invoice_deep_insert_post_action_and_lines(tenant: Tenant) -> None:
    with tenant.authorized() as client:
        customer = _customer(client, tenant)
        draft = client.post(f"{tenant.company}/salesInvoices", json={
            "customerId": customer["id"], "externalDocumentNumber": "EXT-1", "invoiceDate": "2026-01-15",
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "SERVICES", "quantity": 2,
                                   "unitPrice": 12.5}]})
        assert draft.status_code == 201, draft.text
        invoice = draft.json()
        assert invoice["status"] == "Draft" and invoice["totalAmountIncludingTax"] == 25
        url = f"{tenant.company}/salesInvoices({invoice['id']})"
        assert client.post(f"{url}/Microsoft.NAV.post").status_code == 204
        posted = client.get(url, params={"$expand": "salesInvoiceLines"}).json()
        assert posted["status"] == "Open" and posted["remainingAmount"] == 25 and posted["number"] != invoice["number"]
        assert [line["amountIncludingTax"] for line in posted["salesInvoiceLines"]] == [25]
        again = client.post(f"{url}/Microsoft.NAV.post")
        assert again.status_code == 400 and again.json()["error"]["code"].startswith("Application_")
        line = client.post(f"{url}/salesInvoiceLines", json={"lineObjectNumber": "SERVICES", "unitPrice": 1})
        assert line.status_code == 400  # a posted document takes no new lines


def test_paging_follows_next_links(tenant: Tenant) -> None:
    with tenant.authorized() as client:
        for n in range(5):
            _customer(client, tenant, displayName=f"Customer {n}")
        url: str | None = f"{tenant.company}/customers"
        seen: list[str] = []
        while url is not None:
            page = client.get(url, headers={"Prefer": "odata.maxpagesize=2"}).json()
            assert len(page["value"]) <= 2
            seen += [c["id"] for c in page["value"]]
            url = page.get("@odata.nextLink")
        assert len(seen) == len(set(seen)) == 3 + 5  # the demo company's three, and ours


def test_batch_with_snapshot_isolation_is_all_or_nothing(tenant: Tenant) -> None:
    with tenant.authorized() as client:
        company = f"companies({tenant.sandbox.company_id})"
        requests = [{"id": "1", "method": "POST", "url": f"{company}/customers", "headers": {
                        "Content-Type": "application/json"}, "body": {"displayName": "Batched"}},
                    {"id": "2", "method": "POST", "url": f"{company}/customers", "headers": {
                        "Content-Type": "application/json"}, "body": {"displayName": "Bad", "type": 7,
                                                                      "notAField": True}}]
        atomic = client.post(f"{tenant.api}/$batch", json={"requests": requests}, headers={"Isolation": "snapshot"})
        statuses = [r["status"] for r in atomic.json()["responses"]]
        assert atomic.status_code == 200 and statuses[1] == 400 and statuses[0] >= 400
        names = [c["displayName"] for c in client.get(f"{tenant.company}/customers").json()["value"]]
        assert "Batched" not in names  # rolled back with the failed one
        loose = client.post(f"{tenant.api}/$batch", json={"requests": requests})
        assert [r["status"] for r in loose.json()["responses"]] == [201, 400]
        too_many = client.post(f"{tenant.api}/$batch", json={"requests": [
            {"id": str(n), "method": "GET", "url": f"{company}/items"} for n in range(101)]})
        assert too_many.status_code == 400


def test_throttling_answers_429_with_retry_after(tenant: Tenant) -> None:
    with tenant.authorized() as client:
        tenant.http.post(f"{tenant.server.url}/_sandbox/faults", json={"mode": "http_429", "retry_after": 7,
                                                                       "count": 1})
        throttled = client.get(f"{tenant.company}/customers")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert throttled.json()["error"]["code"] == "Application_TooManyRequests"


def test_a_user_past_the_requests_of_the_window_gets_429_until_the_oldest_leaves_it(tenant: Tenant) -> None:
    tenant.http.post(f"{tenant.server.url}/_sandbox/business_central/limits", json={"per_window": 3, "window_s": 60})
    with tenant.authorized() as client:
        assert [client.get(f"{tenant.company}/items").status_code for _ in range(3)] == [200, 200, 200]
        tenant.clock.offset += 20
        throttled = client.get(f"{tenant.company}/items")
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "Application_TooManyRequests"
        assert 39 <= int(throttled.headers["retry-after"]) <= 41  # when the first three leave the window
        tenant.clock.offset += 41
        assert client.get(f"{tenant.company}/items").status_code == 200


# -- webhook subscriptions ------------------------------------------------------------------------


def _subscribe(client: httpx.Client, tenant: Tenant, url: str, entity_set: str = "customers") -> httpx.Response:
    return client.post(f"{tenant.api}/subscriptions", json={
        "notificationUrl": url, "resource": f"/api/v2.0/companies({tenant.sandbox.company_id})/{entity_set}",
        "clientState": "secret-state"})


def test_subscribing_needs_the_validation_token_back(tenant: Tenant, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.echo = False
    with tenant.authorized() as client:
        refused = _subscribe(client, tenant, url)
        assert refused.status_code == 400 and client.get(f"{tenant.api}/subscriptions").json()["value"] == []
        hook.echo = True
        made = _subscribe(client, tenant, url)
    assert made.status_code == 201, made.text
    subscription = made.json()
    assert subscription["clientState"] == "secret-state" and tenant.sandbox.subscriptions.handshakes == 2


def test_notifications_are_batched_thin_and_carry_the_client_state(tenant: Tenant,
                                                                   receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    with tenant.authorized() as client:
        assert _subscribe(client, tenant, url).status_code == 201
        first, second = _customer(client, tenant), _customer(client, tenant, displayName="Second")
        [body] = hook.wait(1)
    notifications = body["value"]
    assert {n["resource"].rsplit("(", 1)[1].rstrip(")") for n in notifications} == {first["id"], second["id"]}
    assert {n["changeType"] for n in notifications} == {"created"}
    assert all(n["clientState"] == "secret-state" and "displayName" not in n for n in notifications)


def test_collection_notification_names_a_filter_since_the_window(tenant: Tenant,
                                                                 receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    tenant.sandbox.subscriptions.delay_s = 60  # gather until flushed by hand
    with tenant.authorized() as client:
        assert _subscribe(client, tenant, url).status_code == 201
        _customer(client, tenant)
        _customer(client, tenant)
    tenant.http.post(f"{tenant.server.url}/_sandbox/business_central/notify", json={"collection": True})
    [body] = hook.wait(1)
    [notification] = body["value"]
    assert notification["changeType"] == "collection"
    assert "/customers?$filter=lastDateTimeModified%20gt%20" in notification["resource"]


def test_subscriptions_expire_after_three_days_unless_renewed(tenant: Tenant, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    with tenant.authorized() as client:
        kept = _subscribe(client, tenant, url).json()
        lapsed = _subscribe(client, tenant, url, "salesInvoices").json()
        renew_url = f"{tenant.api}/subscriptions('{kept['subscriptionId']}')"
        assert client.patch(renew_url, json={}).status_code == 400  # If-Match is required
    tenant.clock.offset = LIFETIME_S - 60
    with tenant.authorized() as client:
        renewed = client.patch(renew_url, json={}, headers={"If-Match": kept["@odata.etag"]})
        assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] > kept["expirationDateTime"]
    tenant.clock.offset = LIFETIME_S + 60
    with tenant.authorized() as client:
        left = [s["subscriptionId"] for s in client.get(f"{tenant.api}/subscriptions").json()["value"]]
    assert left == [kept["subscriptionId"]] and lapsed["subscriptionId"] not in left
    assert tenant.sandbox.subscriptions.handshakes == 3  # renewal repeats the handshake


def test_a_refusal_other_than_408_429_5xx_deletes_the_subscription(tenant: Tenant,
                                                                   receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.status = 404
    with tenant.authorized() as client:
        assert _subscribe(client, tenant, url).status_code == 201
        _customer(client, tenant)
        hook.wait(1)
        deadline = time.monotonic() + 5
        while client.get(f"{tenant.api}/subscriptions").json()["value"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get(f"{tenant.api}/subscriptions").json()["value"] == []


def test_a_503_is_retried(tenant: Tenant, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.status = 503
    with tenant.authorized() as client:
        assert _subscribe(client, tenant, url).status_code == 201
        _customer(client, tenant)
        hook.wait(1)
        hook.status = 200
        assert len(hook.wait(2)) >= 2  # sent again
        assert len(client.get(f"{tenant.api}/subscriptions").json()["value"]) == 1


def test_next_links_point_under_the_mount_crossledger_sandbox_serves_it_at() -> None:
    from crossledger.plugins.business_central.connector import BusinessCentralConnector
    from crossledger.plugins.types import Context
    from starlette.routing import Mount

    connector, sandbox = BusinessCentralConnector(), BusinessCentralSandbox()
    server = ServerThread(Starlette(routes=[Mount("/business_central", app=sandbox.app)])).start()
    try:
        settings = connector.settings_model.model_validate(sandbox.connector_settings(f"{server.url}/business_central"))
        with httpx.Client(timeout=10) as http:
            listed = list(connector.records(Context(settings=settings, http=http, clock=time.time), "customer",
                                            page_size=1))
        assert len(listed) == 3  # the demo company's customers, one page each
    finally:
        server.stop()


def test_the_description_check_finds_departures() -> None:
    from crossledger.testing.specs import business_central as bc_spec
    from crossledger.testing.specs.answers import Exchange

    from tests.kits.business_central import api_spec

    check = bc_spec.checker(api_spec())
    root = "/v2.0/tenant/production/api/v2.0/companies(5106c77d-af37-4e2d-bb88-45d87aba1033)"

    def exchange(method: str, path: str, status: int, body: str) -> Exchange:
        return Exchange(method, root + path, "", status, "application/json", body.encode())

    assert check(exchange("GET", "/customers(5106c77d-af37-4e2d-bb88-45d87aba1033)", 200,
                          '{"id": "5106c77d-af37-4e2d-bb88-45d87aba1033", "displayName": "Fine"}')) == []
    assert check(exchange("GET", "/customers(5106c77d-af37-4e2d-bb88-45d87aba1033)", 200,
                          '{"id": "5106c77d-af37-4e2d-bb88-45d87aba1033", "displayName": 7}'))
    assert check(exchange("GET", "/salesInvoices", 200, '{"value": [{"invoiceDate": "2026-01-15T00:00:00Z"}]}'))
    assert check(exchange("GET", "/customers", 404, '{"error": "not found"}'))
    assert check(exchange("GET", "/nowhere", 200, "{}"))
