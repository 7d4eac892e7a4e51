"""The Zendesk sandbox over real HTTP: auth, resource shapes, create_or_update, ticket idempotency,
pagination, rate limiting, faults and signed webhooks; and Zendesk's official Python client, zenpy,
against it."""

import base64
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from conftest import Current
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import SignatureError
from crossledger.plugins.zendesk.sandbox.app import API_ROOT, ZendeskSandbox
from crossledger.plugins.zendesk.signature import verify
from crossledger.testing.specs import zendesk as zendesk_spec
from crossledger.testing.specs.answers import Exchange
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.kits.zendesk import WebhookReceiver, checked, support_api

UTC_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(host: tuple[ServerThread, Current], clock: Clock) -> Iterator[ZendeskSandbox]:
    """A fresh account, every JSON answer of which must be what Zendesk's published description of
    its Support API says (statuses it does not document: Zendesk's error shape)."""
    fresh = ZendeskSandbox(clock=clock)
    app = checked(fresh.app)
    host[1].app = Starlette(routes=[Mount("/zendesk", app=app)])
    host[1].requests.clear()
    yield fresh
    assert app.departures == [], "\n".join(app.departures)


@pytest.fixture
def base(host: tuple[ServerThread, Current], sandbox: ZendeskSandbox) -> str:
    return f"{host[0].url}/zendesk"


@pytest.fixture
def api(sandbox: ZendeskSandbox, base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base + API_ROOT, auth=(f"{sandbox.email}/token", sandbox.api_token)) as client:
        yield client


def error_of(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    return body


def organization(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/organizations.json", json={"organization": {"name": "Acme", **fields}})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["organization"]
    return created


def ticket(api: httpx.Client, key: str | None = None, **fields: Any) -> httpx.Response:
    body = {"ticket": {"subject": "Help", "comment": {"body": "It broke"}, **fields}}
    return api.post("/tickets.json", json=body, headers={"Idempotency-Key": key} if key else None)


# -- auth -------------------------------------------------------------------------------------------------


def test_api_token_basic_auth_is_required(sandbox: ZendeskSandbox, base: str, api: httpx.Client) -> None:
    assert api.get("/organizations.json").status_code == 200
    for auth in (None, (f"{sandbox.email}/token", "wrong"), (sandbox.email, sandbox.api_token)):
        response = httpx.get(f"{base}{API_ROOT}/organizations.json", auth=auth)
        assert error_of(response, 401, "Couldn't authenticate you") == {"error": "Couldn't authenticate you"}
        assert response.headers["www-authenticate"].startswith("Basic")
    encoded = base64.b64encode(f"{sandbox.email}/token:{sandbox.api_token}".encode()).decode()
    assert httpx.get(f"{base}{API_ROOT}/users.json", headers={"Authorization": f"Basic {encoded}"}).status_code == 200


# -- organizations and users ----------------------------------------------------------------------------------


def test_an_organization_has_zendesks_shape(api: httpx.Client, base: str) -> None:
    created = organization(api, external_id="ext-1", organization_fields={"plan_tier": "pro"}, unknown="ignored")
    assert isinstance(created["id"], int) and created["id"] > 10**12
    assert created["url"] == f"{base}{API_ROOT}/organizations/{created['id']}.json"
    assert UTC_SECOND.fullmatch(created["created_at"]) and created["updated_at"] == created["created_at"]
    assert (created["name"], created["external_id"], created["organization_fields"]) == ("Acme", "ext-1",
                                                                                          {"plan_tier": "pro"})
    assert "unknown" not in created
    assert api.get(f"/organizations/{created['id']}").json() == {"organization": created}  # .json is optional


def test_create_or_update_matches_the_external_id_in_any_case(api: httpx.Client) -> None:
    first = api.post("/organizations/create_or_update.json",
                     json={"organization": {"name": "Acme", "external_id": "Customer.X.1",
                                            "organization_fields": {"plan_tier": "pro", "sla": "4h"}}})
    again = api.post("/organizations/create_or_update",
                     json={"organization": {"name": "Acme Ltd", "external_id": "customer.x.1",
                                            "organization_fields": {"sla": "1h"}}})
    assert (first.status_code, again.status_code) == (201, 200)
    updated = again.json()["organization"]
    assert updated["id"] == first.json()["organization"]["id"] and updated["name"] == "Acme Ltd"
    assert updated["organization_fields"] == {"plan_tier": "pro", "sla": "1h"}  # merged, stored as given
    by_id = api.post("/organizations/create_or_update.json", json={"organization": {"id": updated["id"], "notes": "n"}})
    assert by_id.status_code == 200 and by_id.json()["organization"]["notes"] == "n"
    assert error_of(api.post("/organizations/create_or_update.json", json={"organization": {"id": 1}}), 404,
                    "RecordNotFound")["description"] == "Not found"


def test_organization_validation_errors(api: httpx.Client) -> None:
    organization(api, external_id="taken")
    clash = error_of(api.post("/organizations.json", json={"organization": {"name": "ACME"}}), 422, "RecordInvalid")
    assert clash == {"error": "RecordInvalid", "description": "Record validation errors", "details": {
        "name": [{"description": "Name: has already been taken", "error": "DuplicateValue"}]}}
    external = error_of(api.post("/organizations.json", json={"organization": {"name": "B", "external_id": "TAKEN"}}),
                        422, "RecordInvalid")
    assert external["details"]["external_id"][0]["error"] == "DuplicateValue"
    blank = error_of(api.post("/organizations.json", json={"organization": {"name": " "}}), 422, "RecordInvalid")
    assert blank["details"]["name"][0]["error"] == "BlankValue"
    error_of(api.post("/organizations.json", json={"name": "no root key"}), 400, "ParameterMissing")
    error_of(api.post("/organizations.json", content=b"{nope"), 400, "InvalidJSON")
    error_of(api.get("/organizations/123.json"), 404, "RecordNotFound")


def test_update_merges_custom_fields_and_moves_updated_at(api: httpx.Client, clock: Clock) -> None:
    created = organization(api, organization_fields={"a": 1, "b": 2})
    clock.now += 5
    response = api.put(f"/organizations/{created['id']}.json",
                       json={"organization": {"organization_fields": {"b": None, "c": 3}}})
    updated = response.json()["organization"]
    assert updated["organization_fields"] == {"a": 1, "b": None, "c": 3}
    assert updated["updated_at"] > created["updated_at"]


def test_search_by_external_id_or_name(api: httpx.Client) -> None:
    created = organization(api, external_id="ext-9")
    found = api.get("/organizations/search.json", params={"external_id": "EXT-9"}).json()
    assert found == {"organizations": [created], "next_page": None, "previous_page": None, "count": 1}
    assert api.get("/organizations/search.json", params={"name": "acme"}).json()["count"] == 1
    assert api.get("/organizations/search.json", params={"external_id": "none"}).json()["organizations"] == []
    error_of(api.get("/organizations/search.json"), 400, "ParameterMissing")


def test_users_create_or_update_by_external_id_or_email(api: httpx.Client) -> None:
    org = organization(api)
    first = api.post("/users/create_or_update.json",
                     json={"user": {"name": "Ada", "email": "ada@example.com", "organization_id": org["id"]}})
    assert first.status_code == 201
    user = first.json()["user"]
    assert (user["role"], user["active"], user["organization_id"]) == ("end-user", True, org["id"])
    by_email = api.post("/users/create_or_update.json",
                        json={"user": {"email": "ADA@example.com", "external_id": "contact.x.1", "phone": "+1"}})
    assert by_email.status_code == 200 and by_email.json()["user"]["id"] == user["id"]
    by_external = api.post("/users/create_or_update.json", json={"user": {"external_id": "contact.x.1",
                                                                          "name": "Ada Lovelace"}})
    assert (by_external.json()["user"]["id"], by_external.json()["user"]["name"]) == (user["id"], "Ada Lovelace")
    assert api.get("/users/search.json", params={"external_id": "contact.x.1"}).json()["count"] == 1
    assert api.get("/users/search.json", params={"query": "lovelace"}).json()["users"][0]["id"] == user["id"]
    invalid = error_of(api.post("/users.json", json={"user": {"name": "B", "organization_id": 1}}), 422,
                       "RecordInvalid")
    assert invalid["details"] == {"organization_id": [{"description": "Organization: is invalid",
                                                       "error": "InvalidValue"}]}
    duplicate = error_of(api.post("/users.json", json={"user": {"name": "C", "email": "ada@EXAMPLE.com"}}), 422,
                         "RecordInvalid")
    assert duplicate["details"]["email"][0]["error"] == "DuplicateValue"


# -- tickets ----------------------------------------------------------------------------------------------


def test_a_ticket_is_created_with_its_audit(api: httpx.Client, base: str, sandbox: ZendeskSandbox) -> None:
    org = organization(api)
    response = ticket(api, organization_id=org["id"], priority="high", external_id="case-1")
    assert response.status_code == 201
    body = response.json()
    created = body["ticket"]
    assert response.headers["location"] == created["url"] == f"{base}{API_ROOT}/tickets/{created['id']}.json"
    assert (created["id"], created["status"], created["description"], created["priority"]) == (1, "new", "It broke",
                                                                                              "high")
    assert created["requester_id"] == created["submitter_id"] == sandbox.state()["users"][0]["id"]  # the caller
    assert body["audit"]["ticket_id"] == created["id"]
    comment = body["audit"]["events"][0]
    assert (comment["type"], comment["body"], comment["public"]) == ("Comment", "It broke", True)
    requested = ticket(api, requester={"email": "new@example.com", "name": "New Person"}).json()["ticket"]
    assert [u["id"] for u in sandbox.state()["users"] if u["email"] == "new@example.com"] == [requested["requester_id"]]


def test_ticket_idempotency_key_hit_miss_and_mismatch(api: httpx.Client, sandbox: ZendeskSandbox) -> None:
    first = ticket(api, "key-1")
    again = ticket(api, "key-1")
    assert (first.headers["x-idempotency-lookup"], again.headers["x-idempotency-lookup"]) == ("miss", "hit")
    assert again.status_code == 201 and again.json() == first.json()
    other = error_of(ticket(api, "key-1", subject="Other"), 400, "IdempotentRequestError")
    assert "Idempotency-Key" in other["description"]
    assert "x-idempotency-lookup" not in ticket(api).headers
    assert len(sandbox.state()["tickets"]) == 2


def test_idempotency_keys_expire_after_two_hours(api: httpx.Client, sandbox: ZendeskSandbox, clock: Clock) -> None:
    first = ticket(api, "key-2").json()["ticket"]["id"]
    clock.now += 2 * 3600 - 1
    assert ticket(api, "key-2").json()["ticket"]["id"] == first
    clock.now += 2
    assert ticket(api, "key-2").json()["ticket"]["id"] != first


def test_ticket_validation(api: httpx.Client) -> None:
    blank = error_of(api.post("/tickets.json", json={"ticket": {"subject": "No comment"}}), 422, "RecordInvalid")
    assert blank["details"]["description"][0]["error"] == "BlankValue"
    error_of(ticket(api, requester_id=424242), 422, "RecordInvalid")
    error_of(ticket(api, priority="blocker"), 422, "RecordInvalid")


def test_tickets_are_found_by_external_id_which_is_not_unique(api: httpx.Client) -> None:
    ids = [ticket(api, external_id="shared").json()["ticket"]["id"] for _ in range(2)]
    found = api.get("/tickets.json", params={"external_id": "shared"}).json()
    assert [t["id"] for t in found["tickets"]] == ids and found["count"] == 2


def test_ticket_updates_safe_update_and_closed_tickets(api: httpx.Client, clock: Clock) -> None:
    created = ticket(api).json()["ticket"]
    clock.now += 10
    updated = api.put(f"/tickets/{created['id']}.json", json={"ticket": {
        "status": "pending", "comment": {"body": "Any news?", "public": False}}}).json()
    assert updated["ticket"]["status"] == "pending" and updated["ticket"]["updated_at"] > created["updated_at"]
    assert [event["type"] for event in updated["audit"]["events"]] == ["Comment", "Change"]
    stale = {"ticket": {"status": "open", "safe_update": True, "updated_stamp": created["updated_at"]}}
    error_of(api.put(f"/tickets/{created['id']}.json", json=stale), 409, "UpdateConflict")
    fresh = {"ticket": {"status": "closed", "safe_update": True, "updated_stamp": updated["ticket"]["updated_at"]}}
    assert api.put(f"/tickets/{created['id']}.json", json=fresh).status_code == 200
    error_of(api.put(f"/tickets/{created['id']}.json", json={"ticket": {"status": "open"}}), 422, "RecordInvalid")


# -- pagination ----------------------------------------------------------------------------------------------


def test_cursor_pagination_follows_links_next(api: httpx.Client) -> None:
    made = [organization(api, name=f"Org {n}")["id"] for n in range(5)]
    seen: list[int] = []
    page = api.get("/organizations.json", params={"page[size]": 2}).json()
    pages = 1
    while True:
        seen += [org["id"] for org in page["organizations"]]
        assert set(page["meta"]) == {"has_more", "after_cursor", "before_cursor"}
        if not page["meta"]["has_more"]:
            assert page["links"]["next"] is None
            break
        page = api.get(page["links"]["next"]).json()  # an absolute URL, mount prefix included
        pages += 1
    assert seen == made and pages == 3
    back = api.get(page["links"]["prev"]).json()
    assert [org["id"] for org in back["organizations"]] == made[2:4] and back["meta"]["has_more"] is True


def test_offset_pagination_and_its_limits(api: httpx.Client) -> None:
    made = [organization(api, name=f"Org {n}")["id"] for n in range(3)]
    first = api.get("/organizations.json", params={"per_page": 2}).json()
    assert [o["id"] for o in first["organizations"]] == made[:2] and first["count"] == 3
    assert first["previous_page"] is None
    second = api.get(first["next_page"]).json()
    assert [o["id"] for o in second["organizations"]] == made[2:] and second["next_page"] is None
    error_of(api.get("/organizations.json", params={"page": 101, "per_page": 100}), 400, "InvalidPaginationParameter")
    error_of(api.get("/organizations.json", params={"page[size]": 101}), 400, "InvalidPaginationParameter")
    error_of(api.get("/organizations.json", params={"page[after]": "garbage!"}), 400, "InvalidPaginationParameter")


# -- rate limit and faults -------------------------------------------------------------------------------------


def test_the_per_minute_budget_answers_429_with_retry_after(host: tuple[ServerThread, Current],
                                                            clock: Clock) -> None:
    limited = ZendeskSandbox(requests_per_minute=2, clock=clock)
    host[1].app = limited.app
    auth = (f"{limited.email}/token", limited.api_token)
    first = httpx.get(f"{host[0].url}{API_ROOT}/users.json", auth=auth)
    assert (first.headers["x-rate-limit"], first.headers["x-rate-limit-remaining"]) == ("2", "1")
    clock.now += 20
    assert httpx.get(f"{host[0].url}{API_ROOT}/users.json", auth=auth).headers["x-rate-limit-remaining"] == "0"
    refused = httpx.get(f"{host[0].url}{API_ROOT}/users.json", auth=auth)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "40"
    assert refused.headers["content-type"].startswith("text/plain")
    clock.now += 40
    assert httpx.get(f"{host[0].url}{API_ROOT}/users.json", auth=auth).status_code == 200


@pytest.mark.parametrize(("mode", "status", "error"), [("http_500", 500, "InternalServerError"),
                                                       ("down", 503, "ServiceUnavailable")])
def test_injected_server_faults_have_zendesks_error_shape(api: httpx.Client, base: str, mode: str, status: int,
                                                          error: str) -> None:
    httpx.post(f"{base}/_sandbox/faults", json={"mode": mode, "count": 1})
    error_of(api.get("/users.json"), status, error)
    assert api.get("/users.json").status_code == 200


def test_an_injected_429_says_when_to_retry(api: httpx.Client, base: str) -> None:
    httpx.post(f"{base}/_sandbox/faults", json={"mode": "http_429", "retry_after": 7, "count": 1})
    response = api.get("/users.json")
    assert (response.status_code, response.headers["retry-after"]) == (429, "7")


# -- webhooks -----------------------------------------------------------------------------------------------


def test_webhooks_api_creates_a_webhook_with_its_own_signing_secret(api: httpx.Client,
                                                                    sandbox: ZendeskSandbox) -> None:
    created = api.post("/webhooks", json={"webhook": {"name": "hub", "endpoint": "http://127.0.0.1:9/hook",
                                                      "subscriptions": ["zen:event-type:user.created"]}})
    assert created.status_code == 201
    webhook = created.json()["webhook"]
    assert re.fullmatch(r"01[0-9A-Z]{24}", webhook["id"]) and webhook["status"] == "active"
    secret = api.get(f"/webhooks/{webhook['id']}/signing_secret").json()["signing_secret"]
    assert secret["algorithm"] == "SHA256" and secret["secret"] not in (sandbox.signing_secret,
                                                                       sandbox.ticket_signing_secret)
    both = {"webhook": {"name": "x", "endpoint": "http://e", "subscriptions": ["conditional_ticket_events",
                                                                               "zen:event-type:user.created"]}}
    error_of(api.post("/webhooks", json=both), 422, "RecordInvalid")
    error_of(api.get("/webhooks/nope/signing_secret"), 404, "RecordNotFound")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.stop()


def test_organization_and_user_changes_send_signed_events(api: httpx.Client, sandbox: ZendeskSandbox,
                                                         receiver: WebhookReceiver, clock: Clock) -> None:
    sandbox.subscribe(receiver.url)
    org = organization(api, external_id="ext-1")
    api.put(f"/organizations/{org['id']}.json", json={"organization": {"name": "Acme 2",
                                                                       "organization_fields": {"sla": "4h"}}})
    api.post("/users.json", json={"user": {"name": "Ada", "email": "ada@example.com", "organization_id": org["id"]}})
    api.put(f"/organizations/{org['id']}.json", json={"organization": {"name": "Acme 2"}})  # no change, no event
    assert sandbox.wait_for_webhooks(10)
    for headers, body in receiver.delivered():
        assert headers["user-agent"] == "Zendesk Webhook" and headers["x-zendesk-webhook-id"].startswith("01")
        verify(headers, body, [sandbox.signing_secret], now=clock.now, tolerance=300)
        with pytest.raises(SignatureError):
            verify(headers, body, [sandbox.ticket_signing_secret], now=clock.now, tolerance=300)
    created, renamed, field, user = receiver.bodies()
    assert created["type"] == "zen:event-type:organization.created" and created["event"] == {}
    assert created["subject"] == f"zen:organization:{org['id']}" and created["zendesk_event_version"] == "2022-06-20"
    assert created["detail"] == {"created_at": org["created_at"], "external_id": "ext-1", "group_id": None,
                                 "id": str(org["id"]), "name": "Acme", "shared_comments": False,
                                 "shared_tickets": False, "updated_at": org["updated_at"]}
    assert (renamed["type"], renamed["event"]) == ("zen:event-type:organization.name_changed",
                                                   {"current": "Acme 2", "previous": "Acme"})
    assert field["type"] == "zen:event-type:organization.custom_field_changed"
    assert field["event"]["current"] == "4h" and field["event"]["custom_field"]["title"] == "sla"
    assert user["type"] == "zen:event-type:user.created"
    assert user["detail"]["organization_id"] == str(org["id"]) and user["detail"]["default_group_id"] == "0"
    assert user["detail"]["external_id"] == "" and "name" not in user["detail"]  # as Zendesk sends it
    assert len({body["id"] for body in receiver.bodies()}) == 4


def test_ticket_changes_send_the_trigger_body(api: httpx.Client, sandbox: ZendeskSandbox,
                                              receiver: WebhookReceiver, clock: Clock) -> None:
    sandbox.subscribe(receiver.url)
    created = ticket(api, external_id="case-1", status="hold").json()["ticket"]
    api.put(f"/tickets/{created['id']}.json", json={"ticket": {"priority": "urgent"}})
    assert sandbox.wait_for_webhooks(10)
    for headers, body in receiver.delivered():
        verify(headers, body, [sandbox.ticket_signing_secret], now=clock.now, tolerance=300)
    opened, updated = receiver.bodies()
    assert opened == {"event": "ticket.created", "ticket": {
        "id": str(created["id"]), "external_id": "case-1", "subject": "Help", "description": "It broke",
        "status": "On-hold", "priority": "-", "organization_id": "", "requester_id": str(created["requester_id"]),
        "created_at": created["created_at"], "updated_at": created["updated_at"]}}
    assert updated["event"] == "ticket.updated" and updated["ticket"]["priority"] == "Urgent"


# -- zenpy, Zendesk's Python client ---------------------------------------------------------------------------


def test_zenpy_works_against_the_sandbox(sandbox: ZendeskSandbox, host: tuple[ServerThread, Current],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """zenpy builds ``https://{subdomain}.{domain}/api/v2/...``; its ``ZENPY_FORCE_SCHEME`` and
    ``ZENPY_FORCE_NETLOC`` overrides point it at the sandbox (the netloc may carry the mount prefix:
    ``urlunsplit`` keeps it in front of the path)."""
    from zenpy import Zenpy
    from zenpy.lib.api_objects import Organization, Ticket, User

    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", f"{host[0].host}:{host[0].port}/zendesk")
    zenpy = Zenpy(subdomain="sandbox", email=sandbox.email, token=sandbox.api_token, disable_cache=True)
    requests = host[1].requests

    org = zenpy.organizations.create_or_update(Organization(name="Acme", external_id="customer.x.1",
                                                            organization_fields={"plan_tier": "pro"}))
    again = zenpy.organizations.create_or_update(Organization(name="Acme Ltd", external_id="customer.x.1"))
    assert again.id == org.id and again.organization_fields == {"plan_tier": "pro"}
    assert requests[-1][:2] == ("POST", f"/zendesk{API_ROOT}/organizations/create_or_update.json")
    assert zenpy.organizations(id=org.id).name == "Acme Ltd"
    for n in range(4):
        zenpy.organizations.create_or_update(Organization(name=f"Org {n}", external_id=f"customer.x.{n + 2}"))
    requests.clear()
    names = [o.name for o in zenpy.organizations(cursor_pagination=2)]
    assert names == ["Acme Ltd", "Org 0", "Org 1", "Org 2", "Org 3"]
    asked = [parse_qs(query) for _, _, query in requests]
    assert [q["page[size]"] for q in asked] == [["2"]] * 3
    assert ["page[after]" in q for q in asked] == [False, True, True]  # zenpy followed links.next twice

    user = zenpy.users.create_or_update(User(name="Ada Lovelace", email="ada@example.com", organization_id=org.id,
                                             external_id="contact.x.1"))
    assert (user.organization_id, user.role) == (org.id, "end-user")
    audit = zenpy.tickets.create(Ticket(subject="Help", description="It broke", requester_id=user.id,
                                        organization_id=org.id))
    assert (audit.ticket.subject, audit.ticket.status, audit.ticket.requester_id) == ("Help", "new", user.id)
    [stored] = sandbox.state()["tickets"]
    assert (stored["description"], stored["organization_id"]) == ("It broke", org.id)


def test_a_ticket_without_a_subject_has_text_where_zendesk_documents_text(api: httpx.Client) -> None:
    created = api.post("/tickets.json", json={"ticket": {"comment": {"body": "It broke"}}}).json()["ticket"]
    assert (created["subject"], created["raw_subject"], created["priority"], created["type"]) == (None, "", None, None)


# -- the description the sandbox is held to ---------------------------------------------------------------


def test_the_published_description_catches_answers_zendesk_does_not_give() -> None:
    """The check is real: nulls where Zendesk documents text, unknown operations, error bodies in
    another API's shape."""
    check = zendesk_spec.checker(support_api())

    def violations(method: str, path: str, status: int, body: Any) -> list[str]:
        return check(Exchange(method, path, "", status, "application/json", json.dumps(body).encode()))

    organization = {"id": 1, "name": None, "url": "u", "tags": [], "created_at": "2024-04-17T17:18:10Z"}
    assert violations("GET", f"{API_ROOT}/organizations/1.json", 200, {"organization": organization})
    user = {"id": 2, "name": "Ada", "details": None, "organization_id": None}  # neither an admin nor an end user
    assert violations("GET", f"{API_ROOT}/users/2.json", 200, {"user": user})
    ticket = {"id": 3, "status": "open", "priority": None, "type": None, "subject": None}
    assert violations("GET", f"{API_ROOT}/tickets/3.json", 200, {"ticket": ticket}) == []
    assert violations("GET", f"{API_ROOT}/tickets/3.json", 200, {"ticket": {**ticket, "status": None}})
    assert violations("GET", f"{API_ROOT}/nowhere", 200, {})
    assert violations("GET", f"{API_ROOT}/users/2.json", 202, {"error": "Accepted"})  # a success not documented
    assert violations("GET", f"{API_ROOT}/users/2.json", 404, {"error": {"title": "x", "message": "y"}})
    assert violations("GET", f"{API_ROOT}/users/2.json", 404, {"error": "RecordNotFound",
                                                              "description": "Not found"}) == []
    assert violations("PUT", f"{API_ROOT}/organizations/1.json", 422, {
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"name": [{"description": "Name: has already been taken", "error": "DuplicateValue"}]}}) == []
