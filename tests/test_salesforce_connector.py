"""The Salesforce connector: outbound messages and relayed CDC events in, writes out, over real HTTP
to the sandbox (one org for the module; each test uses its own ids), plus the contract suite."""

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
from crossledger.canonical.entities import (
    Address,
    Contact,
    Customer,
    Entity,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
    external_key,
)
from crossledger.canonical.events import new_envelope
from crossledger.canonical.money import money
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import (
    Category,
    ConnectorError,
    MissingDependency,
    PayloadError,
    SchemaError,
    SignatureError,
)
from crossledger.plugins.salesforce import ids, mapping, relay, soap
from crossledger.plugins.salesforce.client import ApiUsage
from crossledger.plugins.salesforce.connector import SalesforceConnector
from crossledger.plugins.salesforce.sandbox.app import ORGANIZATION_ID, SalesforceSandbox
from crossledger.plugins.salesforce.settings import SalesforceSettings
from crossledger.plugins.types import Capability, Context, InboundEvent, Operation, Outcome, SystemKind
from crossledger.testing import ConnectorContract, MemoryRefs
from crossledger.testing.specs.answers import Recorder
from pydantic import ValidationError

from tests.kits.salesforce import (
    ACCOUNT_ID,
    FIXTURES,
    OutboundReceiver,
    SalesforceKit,
    cdc_account_create,
    checked,
    outbound_notifications,
)

SALESFORCE = SalesforceConnector()
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sf_id(id15: str) -> str:
    """A made-up record id in its 18-character form (the last three characters encode the case)."""
    return id15 + ids.checksum(id15)


class TestSalesforceContract(ConnectorContract):
    kit = SalesforceKit()


# --- fixtures (server, http, no_faults_left and as_the_vendor_answers are in conftest.py) -----

pytestmark = pytest.mark.usefixtures("no_faults_left", "as_the_vendor_answers")


@pytest.fixture(scope="module")
def sandbox() -> SalesforceSandbox:
    return SalesforceSandbox()


@pytest.fixture(scope="module")
def served_app(sandbox: SalesforceSandbox) -> Recorder:
    """The org, every REST answer of which is checked against Salesforce's describes and error shape."""
    return checked(sandbox.app)


def context_for(sandbox: SalesforceSandbox, url: str, http: httpx.Client, **overrides: Any) -> Context:
    settings = SalesforceSettings(**(sandbox.connector_settings(url) | overrides))
    return Context(settings=settings, http=http, clock=time.time)


@pytest.fixture
def ctx(sandbox: SalesforceSandbox, server: ServerThread, http: httpx.Client) -> Context:
    return context_for(sandbox, server.url, http)


@pytest.fixture
def refs() -> MemoryRefs:
    return MemoryRefs()


@pytest.fixture
def key() -> str:
    """A fresh suffix for canonical ids, so tests sharing the org never meet."""
    return uuid.uuid4().hex[:10]


def rest_api(sandbox: SalesforceSandbox, url: str) -> httpx.Client:
    """The org's REST API, logged in as another integration: changes made behind the connector's back."""
    token = httpx.post(f"{url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(sandbox.client_id, sandbox.client_secret)).json()["access_token"]
    return httpx.Client(base_url=f"{url}/services/data/v62.0", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def rest(sandbox: SalesforceSandbox, server: ServerThread) -> Iterator[httpx.Client]:
    with rest_api(sandbox, server.url) as client:
        yield client


def fault(server: ServerThread, **spec: Any) -> None:
    httpx.post(f"{server.url}/_sandbox/faults", json=spec).raise_for_status()


def plan(ctx: Context, refs: MemoryRefs, event_type: str, entity: Entity) -> list[Operation]:
    event = new_envelope(type=event_type, source="netsuite", source_event_id=uuid.uuid4().hex, data=entity,
                         occurred_at=AT)
    operations: list[Operation] = SALESFORCE.plan(ctx, event, refs)
    return operations


def deliver(ctx: Context, refs: MemoryRefs, event_type: str, entity: Entity) -> list[Outcome]:
    """Plan and execute like the hub: each outcome becomes a cross-reference."""
    outcomes = []
    for op in plan(ctx, refs, event_type, entity):
        outcome = SALESFORCE.execute(ctx, op, f"key-{op.canonical_id}")
        refs.put(op.canonical_id, op.entity_type, "salesforce", outcome.external_id)
        outcomes.append(outcome)
    return outcomes


def account(sandbox: SalesforceSandbox, record_id: str) -> dict[str, Any]:
    return next(record for record in sandbox.state()["accounts"] if record["Id"] == record_id)


def customer(key: str, **fields: Any) -> Customer:
    return Customer(id=f"customer/stripe/cus_{key}", name=f"Acme {key}", **fields)


def offline(organization_id: str = "012345678901234", **secrets: str) -> Context:
    """A context for the checks that make no request (webhooks of the real fixtures)."""
    settings = SalesforceSettings.model_validate({"base_url": "https://acme.my.salesforce.com", "client_id": "key",
                                                  "client_secret": "secret", "organization_id": organization_id,
                                                  **secrets})
    return Context(settings=settings, http=httpx.Client(), clock=time.time)


# --- declaration and settings ---------------------------------------------------------------


def test_declares_a_crm_with_webhooks_delivery_probe_and_reads() -> None:
    assert (SALESFORCE.name, SALESFORCE.kind) == ("salesforce", SystemKind.CRM)
    assert SALESFORCE.capabilities == {Capability.WEBHOOKS, Capability.DELIVER, Capability.PROBE, Capability.FETCH,
                                       Capability.SANDBOX, Capability.LIST}


def test_settings(sandbox: SalesforceSandbox) -> None:
    settings = SalesforceSettings(**sandbox.connector_settings("https://acme.my.salesforce.com"))

    assert (settings.api_version, settings.external_id_field) == ("v62.0", "CrossLedger_Id__c")
    assert sandbox.client_secret not in repr(settings) and sandbox.relay_secret not in repr(settings)
    assert SalesforceSettings(**{**sandbox.connector_settings("x"), "organization_id": "00D5g000004SbXA"}
                              ).organization_id == ORGANIZATION_ID
    for wrong in ({"realm": "x"}, {"organization_id": "not an id"}, {"api_version": "62"}):
        with pytest.raises(ValidationError):
            SalesforceSettings(**{**sandbox.connector_settings("x"), **wrong})


# --- outbound messages in -------------------------------------------------------------------


def test_the_real_outbound_message_parses_and_is_acknowledged() -> None:
    ctx, body = offline(), (FIXTURES / "outbound_message_notifications.xml").read_bytes()

    SALESFORCE.verify_webhook(ctx, {"content-type": "text/xml; charset=utf-8"}, body)
    events = SALESFORCE.parse_webhook(ctx, {}, body)

    assert [(e.source_event_id, e.type) for e in events] == [("04l1I000000fztEQAQ", "Contact.outbound_message"),
                                                             ("04l1I000000fzt9QAA", "Contact.outbound_message")]
    assert events[1].occurred_at == datetime(2017, 12, 11, 21, 44, 55, tzinfo=UTC)
    assert events[1].payload == {"attributes": {"type": "Contact"}, "Id": "0031I0000081tb0QAA",
                                 "CreatedDate": "2017-12-11T21:44:55.000Z", "Email": "drb24@cornell.edu",
                                 "FirstName": "Doug", "LastName": "Bunting", "Title": "Supreme Being"}
    # How the record maps (to_canonical maps the record as the API returns it: see below).
    assert mapping.contact(events[1].payload, MemoryRefs(), "CrossLedger_Id__c") == Contact(
        id="contact/salesforce/0031I0000081tb0QAA", first_name="Doug", last_name="Bunting", email="drb24@cornell.edu",
        title="Supreme Being")
    assert SALESFORCE.webhook_reply(events) == (200, "text/xml; charset=utf-8",
                                                (FIXTURES / "outbound_message_ack.xml").read_bytes())


@pytest.mark.parametrize("body", [
    outbound_notifications("00D000000000001"),
    outbound_notifications("").replace(b"<OrganizationId></OrganizationId>", b""),
])
def test_an_outbound_message_of_another_org_is_refused_with_a_soap_fault(body: bytes) -> None:
    with pytest.raises(SignatureError):
        SALESFORCE.verify_webhook(offline(ORGANIZATION_ID), {}, body)

    status, content_type, reply = SALESFORCE.webhook_error(401, "Invalid OrganizationId") or (0, "", b"")
    assert (status, content_type) == (401, "text/xml; charset=utf-8")
    assert reply == (FIXTURES / "outbound_message_fault.xml").read_bytes()


def test_xml_that_cannot_be_verified_is_malformed_not_forged() -> None:
    """Nothing could be verified, so nothing was forged: 400 for unreadable XML, 422 for XML that is
    not an outbound message (the hub's answers to PayloadError and SchemaError)."""
    with pytest.raises(PayloadError, match="not well-formed XML") as unreadable:
        SALESFORCE.verify_webhook(offline(ORGANIZATION_ID), {}, b"<soapenv:Envelope")
    with pytest.raises(SchemaError, match="not a SOAP 1") as foreign:
        SALESFORCE.verify_webhook(offline(ORGANIZATION_ID), {}, b"<invoice/>")
    assert not isinstance(unreadable.value, SchemaError) and isinstance(foreign.value, PayloadError)


def test_org_ids_match_in_either_form() -> None:
    body = outbound_notifications(ORGANIZATION_ID)

    SALESFORCE.verify_webhook(offline(ORGANIZATION_ID[:15]), {}, body)
    SALESFORCE.verify_webhook(offline(ORGANIZATION_ID.lower()[:15] + ORGANIZATION_ID[15:]), {}, body)


def message(count: int, sobject: str = "Account", **fields: str) -> bytes:
    notifications = [soap.Notification(f"04l5g{n:010d}", sobject, {"Id": f"0015g{n:010d}", "Name": f"Acme {n}",
                                                                   **fields})
                     for n in range(count)]
    return soap.render(soap.OutboundMessage(ORGANIZATION_ID, "04k5g0000000001AAA", None, "", "", notifications))


def test_a_message_holds_1_to_100_notifications() -> None:
    ctx = offline(ORGANIZATION_ID)

    assert len(SALESFORCE.parse_webhook(ctx, {}, message(100))) == 100
    for wrong in (message(101), message(0)):
        with pytest.raises(PayloadError, match="1 to 100 notifications"):
            SALESFORCE.parse_webhook(ctx, {}, wrong)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><soapenv:Envelope xmlns:soapenv='
    b'"http://schemas.xmlsoap.org/soap/envelope/">&a;</soapenv:Envelope>',
    b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body/></soapenv:Envelope>",
    b"<not-closed>",
    # A DTD in UTF-16 would slip past a check of the raw bytes.
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "aaaa">]><soapenv:Envelope xmlns:soapenv='
    '"http://schemas.xmlsoap.org/soap/envelope/">&a;</soapenv:Envelope>'.encode("utf-16"),
])
def test_unsafe_or_foreign_xml_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        SALESFORCE.parse_webhook(offline(), {}, body)


def test_an_account_notification_maps_onto_a_customer() -> None:
    refs = MemoryRefs()
    parent = refs.canonical_id("customer", "stripe", "cus_parent")
    refs.put(parent, "customer", "salesforce", sf_id("0015g0000PaRenT"))
    body = message(1, BillingStreet="1 Main St\nFloor 2", BillingCity="Leeds", BillingCountry="GB",
                   ParentId="0015g0000PaRenT", CurrencyIsoCode="gbp", Payment_Terms__c="Net 30",
                   Email__c="ap@acme.test", Tax_Id__c="GB123", LastModifiedDate="2026-02-03T04:05:06.000Z",
                   CrossLedger_Id__c="customer.stripe.cus_42")

    [event] = SALESFORCE.parse_webhook(offline(ORGANIZATION_ID), {}, body)

    assert event.occurred_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert mapping.customer(event.payload, refs, "CrossLedger_Id__c") == Customer(
        id="customer/stripe/cus_42",  # the hub's own record, by its external key
        name="Acme 0", email="ap@acme.test", tax_id="GB123", currency="GBP", parent_id=parent,
        address=Address(line1="1 Main St", line2="Floor 2", city="Leeds", country="GB"),
        dimensions={"terms": "Net 30"},
    )


def test_an_outbound_message_is_a_signal_the_record_is_read_back(ctx: Context, rest: httpx.Client) -> None:
    """An org id is no secret: whoever knows it can post a message, so its field values are not
    believed. The record is read over the authenticated API; an id Salesforce does not hold, or one
    that is not a Salesforce id at all, maps to nothing."""
    created = rest.post("/sobjects/Account", json={"Name": "Genuine Ltd"})
    created.raise_for_status()
    account_id = created.json()["id"]
    forged = soap.render(soap.OutboundMessage(ORGANIZATION_ID, "04k5g0000000001AAA", None, "", "", [
        soap.Notification("04l5g0000000001AAA", "Account", {"Id": account_id, "Name": "Forged Name",
                                                            "CrossLedger_Id__c": "customer.stripe.cus_victim"}),
        soap.Notification("04l5g0000000002AAA", "Account", {"Id": sf_id("0015g00000NoSuC"), "Name": "Ghost"}),
        soap.Notification("04l5g0000000003AAA", "Account", {"Id": "../../query?q=x", "Name": "Probe"}),
    ]))

    events = SALESFORCE.parse_webhook(ctx, {}, forged)
    changes = [change for event in events for change in SALESFORCE.to_canonical(ctx, event, MemoryRefs())]

    assert [(c.entity.id, getattr(c.entity, "name", None)) for c in changes] == [
        (f"customer/salesforce/{account_id}", "Genuine Ltd")]


# --- CDC through the relay ------------------------------------------------------------------


def relayed(secret: str, body: bytes, at: float | None = None) -> dict[str, str]:
    return {relay.HEADER: relay.header_value(secret, int(time.time() if at is None else at), body)}


def test_a_relayed_cdc_create_maps_without_a_read() -> None:
    ctx, body = offline(cdc_secret="s3cret"), cdc_account_create()

    SALESFORCE.verify_webhook(ctx, relayed("s3cret", body), body)
    [event] = SALESFORCE.parse_webhook(ctx, {}, body)
    [change] = SALESFORCE.to_canonical(ctx, event, MemoryRefs())  # a context with no org behind it: no request

    assert event.source_event_id == f"001b7375-0086-250e-e6ca-b99bc3a8b69f:1:{ACCOUNT_ID}"
    assert (event.type, event.occurred_at) == ("Account.CREATE", datetime.fromtimestamp(1501010206.653, UTC))
    assert change.type == "customer.upserted"
    assert change.entity == Customer(id=f"customer/salesforce/{ACCOUNT_ID}", name="Acme")
    assert SALESFORCE.webhook_reply([event]) == (200, "application/json", b'{"received": true}')


@pytest.mark.parametrize(("secrets", "signed_with", "age"), [
    ({"cdc_secret": "new"}, "old", 0),
    ({"cdc_secret": "new"}, "new", relay.TOLERANCE_S + 5),
    ({"cdc_secret": "new"}, "new", -relay.TOLERANCE_S - 5),  # a relay clock far ahead is refused too
    ({}, "new", 0),  # no secret configured: nothing can be verified
])
def test_relay_signatures_refused(secrets: dict[str, str], signed_with: str, age: float) -> None:
    body = cdc_account_create()
    with pytest.raises(SignatureError):
        SALESFORCE.verify_webhook(offline(**secrets), relayed(signed_with, body, time.time() - age), body)




def cdc_change(change_type: str, record_ids: list[str], entity: str = "Account", **fields: Any) -> bytes:
    """A CDC event in the CometD envelope, as the relay forwards it."""
    header = {"entityName": entity, "recordIds": record_ids, "changeType": change_type, "changeOrigin": "",
              "transactionKey": "0002f3c1-5a2b-4c7e-9d3e-7b1f2a3c4d5e", "sequenceNumber": 3,
              "commitTimestamp": 1767225600000, "commitNumber": 1, "commitUser": "0055g00000IntUsAAJ"}
    envelope = {"data": {"schema": "IeRuaY6cbI_HsV8Rv1Mc5g", "payload": {"ChangeEventHeader": header, **fields},
                         "event": {"replayId": 9}}, "channel": f"/data/{entity}ChangeEvent"}
    return json.dumps(envelope).encode()


def test_a_relayed_event_committed_at_no_time_is_a_payload_error_naming_the_field() -> None:
    body = json.loads(cdc_change("UPDATE", ["001000000000001AAA"]))
    body["data"]["payload"]["ChangeEventHeader"]["commitTimestamp"] = 10**21
    with pytest.raises(PayloadError, match=r"ChangeEventHeader\.commitTimestamp: "):
        SALESFORCE.parse_webhook(offline(), {}, json.dumps(body).encode())


def test_a_relayed_update_reads_the_whole_record(ctx: Context, rest: httpx.Client, refs: MemoryRefs,
                                                 key: str) -> None:
    [outcome] = deliver(ctx, refs, "customer.upserted", customer(key, phone="+1 555 0100", currency="USD"))
    rest.patch(f"/sobjects/Account/{outcome.external_id}", json={"Phone": "+1 555 0199"}).raise_for_status()

    [event] = SALESFORCE.parse_webhook(ctx, {}, cdc_change("UPDATE", [outcome.external_id], Phone="+1 555 0199"))
    [change] = SALESFORCE.to_canonical(ctx, event, refs)

    # every field, not only the changed one; the id from the External ID the hub stamped
    assert change.entity == customer(key, phone="+1 555 0199", currency="USD")


def test_one_event_per_record_and_deletes_are_partial(ctx: Context) -> None:
    gone = [sf_id("0015g00000DeLeT"), sf_id("0015g00000DeLeU")]

    events = SALESFORCE.parse_webhook(ctx, {}, cdc_change("DELETE", gone))
    changes = [change for event in events for change in SALESFORCE.to_canonical(ctx, event, MemoryRefs())]

    assert [event.source_event_id.rsplit(":", 1)[1] for event in events] == gone
    assert [(c.type, c.entity.id, c.groups) for c in changes] == [
        ("customer.deleted", f"customer/salesforce/{record_id}", ("status",)) for record_id in gone]
    assert all(isinstance(c.entity, Customer) and c.entity.status == "deleted" for c in changes)


def test_an_undelete_restores_the_record_rather_than_deleting_it(ctx: Context, rest: httpx.Client) -> None:
    created = rest.post("/sobjects/Account", json={"Name": "Lazarus Ltd"})
    created.raise_for_status()
    account_id = created.json()["id"]

    [event] = SALESFORCE.parse_webhook(ctx, {}, cdc_change("UNDELETE", [account_id]))
    [change] = SALESFORCE.to_canonical(ctx, event, MemoryRefs())

    assert change.type == "customer.upserted" and change.entity.status == "active"


def test_an_update_of_a_record_gone_since_maps_to_nothing(ctx: Context) -> None:
    [event] = SALESFORCE.parse_webhook(ctx, {}, cdc_change("UPDATE", [sf_id("0015g00000GoNeX")], Name="x"))

    assert SALESFORCE.to_canonical(ctx, event, MemoryRefs()) == []


def test_compound_fields_flatten(ctx: Context) -> None:
    account = cdc_change("CREATE", [ACCOUNT_ID], Name="Acme", BillingAddress={"Street": "1 Main St", "City": "Leeds",
                                                                               "Country": "GB"})
    person = cdc_change("CREATE", ["0035g00000AbCdEAAV"], "Contact", AccountId=ACCOUNT_ID,
                        Name={"FirstName": "Ada", "LastName": "Lovelace"})
    refs = MemoryRefs()

    [[customer_change], [contact_change]] = [SALESFORCE.to_canonical(ctx, event, refs)
                                             for body in (account, person)
                                             for event in SALESFORCE.parse_webhook(ctx, {}, body)]

    assert isinstance(customer_change.entity, Customer) and isinstance(contact_change.entity, Contact)
    assert customer_change.entity.address == Address(line1="1 Main St", city="Leeds", country="GB")
    assert (contact_change.entity.first_name, contact_change.entity.last_name) == ("Ada", "Lovelace")
    assert contact_change.entity.customer_id == customer_change.entity.id


def test_platform_events_parse_and_are_ignored(ctx: Context) -> None:
    [event] = SALESFORCE.parse_webhook(ctx, {}, (FIXTURES / "platform_event_cometd.json").read_bytes())

    assert (event.source_event_id, event.type) == ("2ec0e371-1395-457f-9275-be1b527a72f7", "Low_Ink__e")
    assert SALESFORCE.to_canonical(ctx, event, MemoryRefs()) == []


# --- planning -------------------------------------------------------------------------------


def test_customer_upsert_body(ctx: Context, refs: MemoryRefs) -> None:
    acme = customer("1", email="ap@acme.test", phone="+44 113", website="https://acme.test", tax_id="GB1",
                    currency="KWD", address=Address(line1="1 Main St", line2="Floor 2", city="Leeds", country="GB"),
                    dimensions={"terms": "Net 30", "subsidiary": "2"}, open_balance=money(1234, "KWD"))
    refs.put(acme.id, "customer", "netsuite", "812")
    refs.put(acme.id, "customer", "stripe", "cus_1")

    [op] = plan(ctx, refs, "customer.upserted", acme)

    assert (op.name, op.entity_type, op.canonical_id) == ("customer.upsert", "customer", acme.id)
    assert op.payload == {
        "method": "PATCH",
        "path": "/sobjects/Account/CrossLedger_Id__c/customer.stripe.cus_1",
        "body": {"Name": "Acme 1", "Phone": "+44 113", "Website": "https://acme.test", "Email__c": "ap@acme.test",
                 "BillingStreet": "1 Main St\nFloor 2", "BillingCity": "Leeds", "BillingCountry": "GB",
                 "Tax_Id__c": "GB1", "CurrencyIsoCode": "KWD", "Payment_Terms__c": "Net 30",
                 "Open_Balance__c": Decimal("1.234"), "Stripe_Customer_Id__c": "cus_1", "NetSuite_Id__c": "812"},
    }


def test_a_balance_in_another_currency_than_the_accounts_is_cleared_and_withheld(ctx: Context,
                                                                                refs: MemoryRefs) -> None:
    billed_in_euros = customer("1", currency="EUR", open_balance=money(5000, "USD"))

    [op] = plan(ctx, refs, "customer.upserted", billed_in_euros)

    assert (op.payload["body"]["CurrencyIsoCode"], op.payload["body"]["Open_Balance__c"]) == ("EUR", None)
    assert op.withheld == (f"open balance not synced to {billed_in_euros.id}: the ERP keeps it in USD, the account "
                           "is in EUR; Open_Balance__c is cleared rather than show it in another currency")
    not_billed_yet = msgspec.structs.replace(billed_in_euros, currency=None)
    [op] = plan(ctx, refs, "customer.upserted", not_billed_yet)
    assert op.payload["body"]["Open_Balance__c"] is None
    assert op.withheld is not None and "the ERP keeps it in USD, billing has not fixed a currency yet" in op.withheld


def test_an_erp_update_of_a_crm_born_account_writes_only_what_it_carries(ctx: Context, refs: MemoryRefs) -> None:
    # what the hub hands over after resetting the fields Salesforce owns
    crm_id = sf_id("0015g00000CrMbO")
    reset = Customer(id=f"customer/salesforce/{crm_id}", name="", currency="USD", open_balance=money(5000, "USD"))

    [op] = plan(ctx, refs, "customer.upserted", reset)

    assert op.payload == {"method": "PATCH", "path": f"/sobjects/Account/{crm_id}", "id": crm_id,
                          "body": {"CurrencyIsoCode": "USD", "Open_Balance__c": Decimal("50.00"),
                                   "CrossLedger_Id__c": f"customer.salesforce.{crm_id}"}}


def test_dependencies_must_reach_salesforce_first(ctx: Context, refs: MemoryRefs) -> None:
    cases: list[tuple[str, Entity]] = [
        ("customer.upserted", customer("child", parent_id="customer/stripe/cus_parent")),
        ("contact.upserted", Contact(id="contact/zendesk/7", customer_id="customer/stripe/cus_x", last_name="Black")),
        ("invoice.posted", invoice("missing")),
    ]
    for event_type, entity in cases:
        with pytest.raises(MissingDependency) as missing:
            plan(ctx, refs, event_type, entity)
        assert missing.value.entity_type == "customer"


def test_linked_writes_only_the_other_systems_ids(sandbox: SalesforceSandbox, ctx: Context, refs: MemoryRefs,
                                                 key: str) -> None:
    acme = customer(key, phone="+1 555 0100")
    assert plan(ctx, refs, "customer.linked", acme) == []  # no other id known: nothing to write
    refs.put(acme.id, "customer", "zendesk", "9001")
    with pytest.raises(MissingDependency):
        plan(ctx, refs, "customer.linked", acme)
    [created] = deliver(ctx, refs, "customer.upserted", acme)
    refs.put(acme.id, "customer", "netsuite", "812")

    renamed = Customer(id=acme.id, name="Not Written", phone="+1 555 0199")
    [op] = plan(ctx, refs, "customer.linked", renamed)
    outcome = SALESFORCE.execute(ctx, op, "key-linked")

    assert op.payload == {"method": "PATCH", "path": f"/sobjects/Account/{created.external_id}",
                          "id": created.external_id,
                          "body": {"NetSuite_Id__c": "812", "Zendesk_Organization_Id__c": "9001"}}
    assert (outcome.external_id, outcome.created) == (created.external_id, False)
    record = account(sandbox, created.external_id)
    assert (record["Name"], record["Phone"], record["NetSuite_Id__c"], record["Zendesk_Organization_Id__c"]) == (
        f"Acme {key}", "+1 555 0100", "812", "9001")


def invoice(key: str, currency: str = "KWD") -> Invoice:
    return Invoice(id=f"invoice/stripe/in_{key}", customer_id=f"customer/stripe/cus_{key}", number=f"INV-{key}",
                   currency=currency, lines=[InvoiceLine(description="Plan", amount=money(1234, currency))],
                   tax=money(0, currency), discount=money(0, currency), total=money(1234, currency), status="issued",
                   posting_status="posted", issued_at=AT, due_at=datetime(2026, 3, 31, tzinfo=UTC))


def test_contacts_invoices_and_payments_land_on_their_account(ctx: Context, refs: MemoryRefs, key: str) -> None:
    bill = invoice(key)
    [acme] = deliver(ctx, refs, "customer.upserted", customer(key, currency="KWD"))
    person = Contact(id=f"contact/zendesk/{key}", customer_id=bill.customer_id, first_name="Ada", last_name="Lovelace",
                     email="ada@acme.test")
    paid = Payment(id=f"payment/stripe/inpay_{key}", customer_id=bill.customer_id, amount=money(1234, "KWD"),
                   received_at=AT, method="card", applications=[PaymentApplication(invoice_id=bill.id,
                                                                                   amount=money(1234, "KWD"))])

    [contact] = deliver(ctx, refs, "contact.upserted", person)
    [posted] = deliver(ctx, refs, "invoice.posted", bill)
    [settled] = deliver(ctx, refs, "payment.settled", paid)

    assert (contact.external_id[:3], posted.external_id[:3], settled.external_id[:3]) == ("003", "a0B", "a0C")
    assert SALESFORCE.fetch(ctx, "contact", contact.external_id)["AccountId"] == acme.external_id
    record = SALESFORCE.fetch(ctx, "invoice", posted.external_id)
    assert (record["Name"], record["Account__c"], record["Total__c"], record["CurrencyIsoCode"]) == (
        f"INV-{key}", acme.external_id, Decimal("1.234"), "KWD")
    assert (record["Status__c"], record["Posting_Status__c"], record["Due_Date__c"]) == ("issued", "posted",
                                                                                        "2026-03-31")
    payment = SALESFORCE.fetch(ctx, "payment", settled.external_id)
    assert (payment["Invoice__c"], payment["Amount__c"], payment["Method__c"]) == (posted.external_id,
                                                                                  Decimal("1.234"), "card")


def test_billings_invoice_status_reaches_a_posted_invoice_only(ctx: Context, refs: MemoryRefs, key: str) -> None:
    """Salesforce shows posted invoices only: a status change before the posting plans nothing (the
    posting brings the status with it); after it, or once Salesforce has the invoice, it is written."""
    deliver(ctx, refs, "customer.upserted", customer(key, currency="KWD"))
    unposted = msgspec.structs.replace(invoice(key), status="paid", posting_status="unposted")
    assert plan(ctx, refs, "invoice.paid", unposted) == []

    posted = msgspec.structs.replace(unposted, posting_status="posted")
    [paid] = deliver(ctx, refs, "invoice.paid", posted)
    [voided] = deliver(ctx, refs, "invoice.voided", msgspec.structs.replace(posted, status="void"))

    assert voided.external_id == paid.external_id
    record = SALESFORCE.fetch(ctx, "invoice", paid.external_id)
    assert (record["Status__c"], record["Posting_Status__c"], record["Total__c"]) == ("void", "posted",
                                                                                      Decimal("1.234"))


# --- execution ------------------------------------------------------------------------------


def test_upsert_answers_201_then_200_then_updates_by_id(ctx: Context, refs: MemoryRefs, key: str) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer(key))

    first = SALESFORCE.execute(ctx, op, "k")
    again = SALESFORCE.execute(ctx, op, "k")
    refs.put(op.canonical_id, "customer", "salesforce", first.external_id)
    [by_id] = plan(ctx, refs, "customer.upserted", customer(key, phone="+1 555 0100"))
    updated = SALESFORCE.execute(ctx, by_id, "k2")

    assert (first.created, again.created, updated.created) == (True, False, False)
    assert first.external_id == again.external_id == updated.external_id
    assert by_id.payload["path"] == f"/sobjects/Account/{first.external_id}"


def test_an_older_api_version_reads_the_id_back(sandbox: SalesforceSandbox, server: ServerThread,
                                                http: httpx.Client, refs: MemoryRefs, key: str) -> None:
    old = context_for(sandbox, server.url, http, api_version="v45.0")
    [op] = plan(old, refs, "customer.upserted", customer(key))

    first, second = SALESFORCE.execute(old, op, "k"), SALESFORCE.execute(old, op, "k")  # 201, then 204 no body

    assert second == Outcome(external_id=first.external_id)


def test_an_external_id_on_several_records_is_a_data_error(ctx: Context, rest: httpx.Client, refs: MemoryRefs,
                                                           key: str) -> None:
    twin = customer(key)
    twins = [rest.post("/sobjects/Account", json={"Name": f"Twin {n}", "CrossLedger_Id__c": external_key(twin.id)}
                       ).json()["id"] for n in range(2)]
    [op] = plan(ctx, refs, "customer.upserted", twin)

    with pytest.raises(ConnectorError) as failure:
        SALESFORCE.execute(ctx, op, "k")

    assert (failure.value.category, failure.value.status) == (Category.DATA, 300)
    assert all(record_id in failure.value.message for record_id in twins)
    with pytest.raises(ConnectorError, match="several"):
        SALESFORCE.probe(ctx, op, "k")


def test_an_expired_session_is_renewed_once(sandbox: SalesforceSandbox, ctx: Context, refs: MemoryRefs,
                                            key: str) -> None:
    deliver(ctx, refs, "customer.upserted", customer(key))
    issued = sandbox.tokens_issued

    sandbox.expire_sessions()
    [outcome] = deliver(ctx, refs, "customer.upserted", customer(key, phone="+1 555 0100"))

    assert sandbox.tokens_issued == issued + 1 and outcome.external_id.startswith("001")


def test_wrong_credentials_are_an_auth_failure(sandbox: SalesforceSandbox, server: ServerThread, http: httpx.Client,
                                               refs: MemoryRefs) -> None:
    wrong = context_for(sandbox, server.url, http, client_secret="not-the-secret")
    [op] = plan(wrong, refs, "customer.upserted", customer("auth"))

    with pytest.raises(ConnectorError) as failure:
        SalesforceConnector().execute(wrong, op, "k")  # a fresh connector: no session cached

    assert failure.value.category is Category.AUTH and "invalid_client" in failure.value.message


# --- classification and probing -------------------------------------------------------------


def failure_of(ctx: Context, op: Operation) -> ConnectorError:
    try:
        SALESFORCE.execute(ctx, op, "k")
    except ConnectorError as error:
        return SALESFORCE.classify(error)
    raise AssertionError("execute succeeded")


def test_the_daily_limit_is_a_rate_limit(ctx: Context, server: ServerThread, refs: MemoryRefs, key: str) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer(key))
    limits = httpx.post(f"{server.url}/_sandbox/limits", json={}).json()
    httpx.post(f"{server.url}/_sandbox/limits", json={"daily_limit": limits["used"]}).raise_for_status()
    try:
        failure = failure_of(ctx, op)
    finally:
        httpx.post(f"{server.url}/_sandbox/limits", json={"daily_limit": limits["daily_limit"]}).raise_for_status()

    assert (failure.category, failure.status, failure.retry_after) == (Category.RATE_LIMITED, 403, None)
    assert "REQUEST_LIMIT_EXCEEDED" in failure.message


@pytest.mark.parametrize(("mode", "category"), [
    ("http_429", Category.RATE_LIMITED),
    ("http_500", Category.TRANSIENT),
    ("down", Category.TARGET_DOWN),
])
def test_faults_are_classified(ctx: Context, server: ServerThread, refs: MemoryRefs, key: str, mode: str,
                               category: Category) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer(key))
    SALESFORCE.execute(ctx, op, "k")  # a session first, so the fault meets the write

    fault(server, mode=mode, count=1)

    assert failure_of(ctx, op).category is category


def test_a_refused_value_is_a_data_error_naming_the_field(ctx: Context, refs: MemoryRefs, key: str) -> None:
    [op] = plan(ctx, refs, "customer.upserted", customer(key, email="not-an-email"))

    failure = failure_of(ctx, op)

    assert failure.category is Category.DATA
    # The code and the field; not Salesforce's message, which may quote the value refused.
    assert failure.message.endswith("HTTP 400 Bad Request: INVALID_EMAIL_ADDRESS ['Email__c']")


@pytest.mark.parametrize(("status", "body", "category"), [
    (400, [{"message": "unable to obtain exclusive access to this record", "errorCode": "UNABLE_TO_LOCK_ROW"}],
     Category.TRANSIENT),
    (403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
     Category.RATE_LIMITED),
    (403, [{"message": "insufficient access rights", "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY"}], Category.AUTH),
    (404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}], Category.DATA),
    (503, b"<html>maintenance</html>", Category.TARGET_DOWN),
])
def test_error_codes_decide_over_statuses(status: int, body: Any, category: Category) -> None:
    request = httpx.Request("PATCH", "https://acme.my.salesforce.com/services/data/v62.0/sobjects/Account/x")
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.Response(status, content=content, request=request)

    error = httpx.HTTPStatusError("refused", request=request, response=response)

    assert SALESFORCE.classify(error).category is category


def test_a_timeout_after_commit_is_ambiguous_and_probe_finds_the_write(sandbox: SalesforceSandbox,
                                                                       server: ServerThread, http: httpx.Client,
                                                                       refs: MemoryRefs, key: str) -> None:
    quick = context_for(sandbox, server.url, http, timeout_s=0.5)
    [op] = plan(quick, refs, "customer.upserted", customer(key))

    fault(server, mode="timeout_after_commit", latency_ms=1500, count=1)
    failure = failure_of(quick, op)
    found = SALESFORCE.probe(quick, op, "k")
    [lost] = plan(quick, refs, "customer.upserted", customer(key, phone="+1 555 0100"))

    assert failure.category is Category.AMBIGUOUS
    assert found is not None and found.external_id.startswith("001")
    assert SALESFORCE.probe(quick, lost, "k") is None  # the record exists, but not with what that write set


# --- API usage ------------------------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_sforce_limit_info_is_kept_per_org_and_warns_past_90_percent(ctx: Context, server: ServerThread,
                                                                      refs: MemoryRefs, key: str) -> None:
    deliver(ctx, refs, "customer.upserted", customer(key))
    state = httpx.post(f"{server.url}/_sandbox/limits", json={}).json()
    assert SALESFORCE.last_limit_info[server.url] == ApiUsage(used=state["used"], limit=state["daily_limit"])
    captured, logger = Captured(), logging.getLogger("crossledger.plugins.salesforce.client")
    logger.addHandler(captured)
    httpx.post(f"{server.url}/_sandbox/limits", json={"daily_limit": 1000, "used": 949}).raise_for_status()
    try:
        deliver(ctx, refs, "customer.upserted", customer(key, phone="+1 555 0100"))
        deliver(ctx, refs, "customer.upserted", customer(key, phone="+1 555 0101"))  # still 95%: no new warning
    finally:
        logger.removeHandler(captured)
        httpx.post(f"{server.url}/_sandbox/limits", json=state).raise_for_status()

    assert SALESFORCE.last_limit_info[server.url].limit == 1000
    assert len(captured.messages) == 1 and "950 of its 1000 daily API calls (95%)" in captured.messages[0]


# --- reads ----------------------------------------------------------------------------------


def test_refetch_reads_the_record_as_it_is_now(ctx: Context, rest: httpx.Client, refs: MemoryRefs, key: str) -> None:
    [outcome] = deliver(ctx, refs, "customer.upserted", customer(key))
    [event] = SALESFORCE.parse_webhook(ctx, {}, message(1))
    stale = InboundEvent(source_event_id=event.source_event_id, type=event.type, occurred_at=event.occurred_at,
                         payload={**event.payload, "Id": outcome.external_id})
    rest.patch(f"/sobjects/Account/{outcome.external_id}", json={"Name": "Fixed At Source"}).raise_for_status()

    fresh = SALESFORCE.refetch(ctx, stale)
    [change] = SALESFORCE.to_canonical(ctx, fresh, refs)

    assert fresh.source_event_id == stale.source_event_id and fresh.payload["Name"] == "Fixed At Source"
    assert change.entity.id == f"customer/stripe/cus_{key}"


def test_records_lists_contacts_and_refuses_unknown_types(ctx: Context, refs: MemoryRefs, key: str) -> None:
    deliver(ctx, refs, "customer.upserted", customer(key))
    person = Contact(id=f"contact/zendesk/{key}", customer_id=f"customer/stripe/cus_{key}", last_name=f"Person {key}")
    deliver(ctx, refs, "contact.upserted", person)

    listed = list(SALESFORCE.records(ctx, "contact", page_size=1))

    assert f"Person {key}" in {record["LastName"] for record in listed}
    with pytest.raises(ConnectorError, match="not 'ticket'"):
        list(SALESFORCE.records(ctx, "ticket"))


def test_a_page_lists_what_changed_since_by_systemmodstamp_and_resumes_after_its_last_id(
    ctx: Context, rest: httpx.Client, key: str
) -> None:
    """``since`` is ``SystemModstamp >= ...`` in the SOQL: an account made or edited at or after it
    is listed, one untouched since is not; a page's cursor is the last Id read, and the page after
    it starts there (keyset paging by Id, which no query locator's expiry can break)."""
    old = [rest.post("/sobjects/Account", json={"Name": f"Old {key} {n}"}).json()["id"] for n in range(3)]
    time.sleep(1.1)  # the sandbox stamps whole seconds, as the literal does
    since = datetime.now(UTC)
    made = rest.post("/sobjects/Account", json={"Name": f"New {key}"}).json()["id"]
    rest.patch(f"/sobjects/Account/{old[1]}", json={"Name": f"Edited {key}"}).raise_for_status()

    changed = SALESFORCE.records_page(ctx, "customer", since=since).records
    first = SALESFORCE.records_page(ctx, "customer", since=since, page_size=1)
    second = SALESFORCE.records_page(ctx, "customer", since=since, page_size=1, cursor=first.next)
    everything = list(SALESFORCE.records(ctx, "customer", page_size=2))

    assert {r["Id"] for r in changed} == {made, old[1]}
    assert [first.records[0]["Id"], second.records[0]["Id"]] == sorted([made, old[1]])
    assert first.next == first.records[0]["Id"]
    assert set(old) <= {r["Id"] for r in everything} and len({r["Id"] for r in everything}) == len(everything)


# --- outbound messages from the sandbox to a receiver ---------------------------------------


def hub_answer(ctx: Context) -> Any:
    """What the hub's webhook endpoint does with an outbound message: verify, parse, Ack or fault."""
    def answer(body: bytes) -> tuple[int, bytes]:
        try:
            SALESFORCE.verify_webhook(ctx, {"content-type": soap.CONTENT_TYPE}, body)
            events = SALESFORCE.parse_webhook(ctx, {}, body)
        except SignatureError as error:
            status, _, reply = SALESFORCE.webhook_error(401, str(error)) or (401, "", b"")
            return status, reply
        status, _, reply = SALESFORCE.webhook_reply(events)
        return status, reply

    return answer


@pytest.fixture
def org(http: httpx.Client) -> Iterator[tuple[SalesforceSandbox, Context]]:
    """An org of its own, so the outbound messages of other tests stay out of the way."""
    own = SalesforceSandbox()
    thread = ServerThread(own.app).start()
    yield own, context_for(own, thread.url, http)
    own.unsubscribe()
    thread.stop()


def test_outbound_messages_are_retried_until_the_ack(org: tuple[SalesforceSandbox, Context], key: str) -> None:
    sandbox, ctx = org
    receiver = OutboundReceiver(hub_answer(ctx), script=((503, b"busy"), (200, b"<ok/>"), (500, soap.fault("x"))))
    sandbox.subscribe(receiver.url)
    refs = MemoryRefs()
    try:
        [outcome] = deliver(ctx, refs, "customer.upserted", customer(key))
        assert sandbox.wait_for_outbound(15)
    finally:
        receiver.stop()

    [body] = receiver.acknowledged()
    assert [status for _, status, _ in receiver.attempts] == [503, 200, 500, 200]
    assert {attempt for attempt, _, _ in receiver.attempts} == {body}  # the same message every time
    [event] = SALESFORCE.parse_webhook(ctx, {}, body)
    [change] = SALESFORCE.to_canonical(ctx, event, MemoryRefs())
    assert event.payload["Id"] == outcome.external_id
    assert change.entity.id == f"customer/stripe/cus_{key}"  # the hub's own write, recognised by its external key


def test_a_hub_of_another_org_faults_and_salesforce_keeps_trying(org: tuple[SalesforceSandbox, Context],
                                                                 sandbox: SalesforceSandbox, server: ServerThread,
                                                                 http: httpx.Client, key: str) -> None:
    own, ctx = org
    elsewhere = context_for(sandbox, server.url, http, organization_id="00D5g000000OtHr")
    receiver = OutboundReceiver(hub_answer(elsewhere))
    own.subscribe(receiver.url)
    try:
        deliver(ctx, MemoryRefs(), "customer.upserted", customer(key))
        deadline = time.monotonic() + 5
        while len(receiver.attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        receiver.stop()

    assert len(receiver.attempts) >= 2 and receiver.acknowledged() == []
    _, status, reply = receiver.attempts[0]
    assert status == 401 and b"<faultcode>soapenv:Client</faultcode>" in reply and b"Invalid OrganizationId" in reply


# --- lifecycle (Account Type), contract terms, suspension -----------------------------------


def account_record(**fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Account"}, "Id": sf_id("0015g00000LiFeC"), "Name": "Acme", **fields}


@pytest.mark.parametrize(("account_type", "lifecycle"), [
    ("Prospect", "prospect"),
    ("Customer - Direct", "customer"),
    ("Customer - Channel", "customer"),
    ("Channel Partner / Reseller", None),
    ("Installation Partner", None),
    ("Technology Partner", None),
    ("Other", None),
    ("", None),
    (None, None),
])
def test_account_type_gives_the_lifecycle(account_type: str | None, lifecycle: str | None) -> None:
    mapped = mapping.customer(account_record(Type=account_type), MemoryRefs(), "CrossLedger_Id__c")

    assert mapped.lifecycle == lifecycle


OWNER_15 = "0055g00000OwNeR"


@pytest.mark.parametrize("fields", [
    {"Contract_Term_Months__c": 24, "OwnerId": sf_id(OWNER_15), "Legal_Entity__c": "Acme GmbH"},  # REST
    {"Contract_Term_Months__c": Decimal("24.0"), "OwnerId": sf_id(OWNER_15), "Legal_Entity__c": "Acme GmbH"},
    {"Contract_Term_Months__c": "24", "OwnerId": OWNER_15, "Legal_Entity__c": "Acme GmbH "},  # outbound message
])
def test_contract_of_reads_the_account_s_contract_terms(fields: dict[str, Any]) -> None:
    assert mapping.contract_of(account_record(**fields)) == {
        "contract_term_months": 24, "contract_owner": sf_id(OWNER_15), "legal_entity": "Acme GmbH"}


def test_contract_of_an_account_without_terms_is_all_none() -> None:
    unset = {"contract_term_months": None, "contract_owner": None, "legal_entity": None}

    assert mapping.contract_of(account_record()) == unset
    assert mapping.contract_of(account_record(Contract_Term_Months__c=None, Legal_Entity__c=" ")) == unset


@pytest.mark.parametrize("term", ["12.5", "twelve", Decimal("Infinity")])
def test_a_contract_term_that_is_not_whole_months_is_a_data_error(term: Any) -> None:
    with pytest.raises(ConnectorError, match="Contract_Term_Months__c") as failure:
        mapping.contract_of(account_record(Contract_Term_Months__c=term))

    assert failure.value.category is Category.DATA


def test_fetch_returns_the_account_with_its_contract_fields(ctx: Context, rest: httpx.Client,
                                                           key: str) -> None:
    created = rest.post("/sobjects/Account", json={"Name": f"Contract {key}", "OwnerId": sf_id(OWNER_15),
                                                   "Contract_Term_Months__c": 36, "Legal_Entity__c": "Acme Ltd (UK)"})
    created.raise_for_status()
    account_id = created.json()["id"]

    fetched = SALESFORCE.fetch(ctx, "customer", account_id)
    listed = next(record for record in SALESFORCE.records(ctx, "customer") if record["Id"] == account_id)

    assert (fetched["OwnerId"], fetched["Contract_Term_Months__c"], fetched["Legal_Entity__c"]) == (
        sf_id(OWNER_15), 36, "Acme Ltd (UK)")
    assert mapping.contract_of(fetched) == mapping.contract_of(listed) == {
        "contract_term_months": 36, "contract_owner": sf_id(OWNER_15), "legal_entity": "Acme Ltd (UK)"}


def test_the_hub_sets_type_only_on_an_account_it_creates(sandbox: SalesforceSandbox, ctx: Context,
                                                        refs: MemoryRefs, key: str) -> None:
    onboarded = Customer(id=f"customer/api/onb-{key}", name=f"Onboarded {key}", lifecycle="customer")
    prospect = Customer(id=f"customer/api/pro-{key}", name=f"Prospect {key}", lifecycle="prospect")

    [create] = plan(ctx, refs, "customer.upserted", onboarded)
    [created] = deliver(ctx, refs, "customer.upserted", onboarded)
    [created_prospect] = deliver(ctx, refs, "customer.upserted", prospect)
    [update] = plan(ctx, refs, "customer.upserted", Customer(id=onboarded.id, name="Renamed", lifecycle="prospect"))
    SALESFORCE.execute(ctx, update, "k")

    assert create.payload["path"] == f"/sobjects/Account/CrossLedger_Id__c/customer.api.onb-{key}"
    assert create.payload["body"] == {"Name": f"Onboarded {key}", "Type": "Customer - Direct"}
    assert update.payload["body"] == {"Name": "Renamed", "CrossLedger_Id__c": f"customer.api.onb-{key}"}
    record = account(sandbox, created.external_id)
    assert (record["Name"], record["Type"]) == ("Renamed", "Customer - Direct")  # the CRM's from then on
    assert account(sandbox, created_prospect.external_id)["Type"] == "Prospect"


def test_an_onboarded_account_takes_the_other_systems_ids_when_linked(sandbox: SalesforceSandbox, ctx: Context,
                                                                      refs: MemoryRefs, key: str) -> None:
    """The onboarding journey: the account is created by external id, the billing and ERP records
    follow, and their ids go back onto the account."""
    onboarded = Customer(id=f"customer/api/{key}", name=f"Onboarded {key}", lifecycle="customer")
    [created] = deliver(ctx, refs, "customer.upserted", onboarded)
    refs.put(onboarded.id, "customer", "stripe", f"cus_{key}")
    refs.put(onboarded.id, "customer", "netsuite", "4711")

    [linked] = deliver(ctx, refs, "customer.linked", onboarded)

    record = account(sandbox, created.external_id)
    assert created.created and linked.external_id == created.external_id
    assert (record["Stripe_Customer_Id__c"], record["NetSuite_Id__c"], record["Type"]) == (
        f"cus_{key}", "4711", "Customer - Direct")


def test_suspend_then_reinstate_leaves_the_account_as_it_was(ctx: Context, refs: MemoryRefs, key: str) -> None:
    acme = customer(key, phone="+1 555 0100", currency="EUR", lifecycle="customer", tax_id="DE1",
                    address=Address(line1="1 Main St", city="Berlin", country="DE"))
    [created] = deliver(ctx, refs, "customer.upserted", acme)
    before = SALESFORCE.fetch(ctx, "customer", created.external_id)

    [suspend] = plan(ctx, refs, "customer.suspended", acme)
    SALESFORCE.execute(ctx, suspend, "k-suspend")
    suspended = SALESFORCE.fetch(ctx, "customer", created.external_id)
    [reinstate] = plan(ctx, refs, "customer.reinstated", acme)
    outcome = SALESFORCE.execute(ctx, reinstate, "k-reinstate")
    after = SALESFORCE.fetch(ctx, "customer", created.external_id)

    path = f"/sobjects/Account/{created.external_id}"
    assert (suspend.name, suspend.payload) == ("account.suspend", {
        "method": "PATCH", "path": path, "id": created.external_id, "body": {"Account_Status__c": "Suspended"}})
    assert (reinstate.name, reinstate.payload["body"]) == ("account.reinstate", {"Account_Status__c": None})
    assert suspended["Account_Status__c"] == "Suspended" and outcome.external_id == created.external_id
    stamps = ("LastModifiedDate", "SystemModstamp")
    assert {k: v for k, v in after.items() if k not in stamps} == {k: v for k, v in before.items() if k not in stamps}


def test_suspension_needs_the_account_and_deactivation_asks_nothing(ctx: Context, refs: MemoryRefs,
                                                                    key: str) -> None:
    unknown = customer(key)
    for event_type in ("customer.suspended", "customer.reinstated"):
        with pytest.raises(MissingDependency):
            plan(ctx, refs, event_type, unknown)
    refs.put(unknown.id, "customer", "salesforce", sf_id("0015g00000KnOwN"))

    assert plan(ctx, refs, "customer.deactivated", unknown) == []


def test_ordinary_upserts_never_touch_the_suspension_flag(ctx: Context, refs: MemoryRefs, key: str) -> None:
    acme = customer(key)
    [created] = deliver(ctx, refs, "customer.upserted", acme)
    deliver(ctx, refs, "customer.suspended", acme)

    [update] = plan(ctx, refs, "customer.upserted", Customer(id=acme.id, name="Renamed", status="active"))
    SALESFORCE.execute(ctx, update, "k")

    assert "Account_Status__c" not in update.payload["body"]
    assert SALESFORCE.fetch(ctx, "customer", created.external_id)["Account_Status__c"] == "Suspended"


@pytest.mark.parametrize("event_type", ["customer.suspended", "customer.reinstated"])
def test_probe_finds_a_suspension_lost_in_a_timeout(sandbox: SalesforceSandbox, server: ServerThread,
                                                    http: httpx.Client, refs: MemoryRefs, key: str,
                                                    event_type: str) -> None:
    quick = context_for(sandbox, server.url, http, timeout_s=0.5)
    acme = customer(key)
    deliver(quick, refs, "customer.upserted", acme)
    if event_type == "customer.reinstated":
        deliver(quick, refs, "customer.suspended", acme)
    [op] = plan(quick, refs, event_type, acme)
    assert SALESFORCE.probe(quick, op, "k") is None  # not written yet

    fault(server, mode="timeout_after_commit", latency_ms=1500, count=1)
    failure = failure_of(quick, op)
    found = SALESFORCE.probe(quick, op, "k")

    assert failure.category is Category.AMBIGUOUS
    assert found is not None and found.external_id == refs.external_id(acme.id, "salesforce")


def test_type_arrives_with_a_cdc_create_and_is_read_back_for_an_update(ctx: Context, rest: httpx.Client,
                                                                        key: str) -> None:
    [prospect_event] = SALESFORCE.parse_webhook(ctx, {}, cdc_change("CREATE", [ACCOUNT_ID], Name="Acme",
                                                                    Type="Prospect"))
    created = rest.post("/sobjects/Account", json={"Name": f"Won {key}", "Type": "Prospect"})
    created.raise_for_status()
    account_id = created.json()["id"]
    # the org's flow on the opportunity closed won
    rest.patch(f"/sobjects/Account/{account_id}", json={"Type": "Customer - Direct"}).raise_for_status()

    [won_event] = SALESFORCE.parse_webhook(ctx, {}, cdc_change("UPDATE", [account_id], Type="Customer - Direct"))
    [[prospect], [won]] = [SALESFORCE.to_canonical(ctx, event, MemoryRefs()) for event in (prospect_event, won_event)]

    assert isinstance(prospect.entity, Customer) and prospect.entity.lifecycle == "prospect"
    assert isinstance(won.entity, Customer) and (won.entity.name, won.entity.lifecycle) == (f"Won {key}", "customer")


def test_type_arrives_with_outbound_messages(org: tuple[SalesforceSandbox, Context], key: str) -> None:
    sandbox, ctx = org
    receiver = OutboundReceiver(hub_answer(ctx))
    sandbox.subscribe(receiver.url)
    lifecycles = []
    try:
        with rest_api(sandbox, ctx.settings_as(SalesforceSettings).base_url) as client:
            created = client.post("/sobjects/Account", json={"Name": f"Lead {key}", "Type": "Prospect"})
            created.raise_for_status()
            for change in ({}, {"Type": "Customer - Direct"}):  # created; then closed won
                if change:
                    client.patch(f"/sobjects/Account/{created.json()['id']}", json=change).raise_for_status()
                assert sandbox.wait_for_outbound(15)
                body = receiver.acknowledged()[-1]
                [event] = SALESFORCE.parse_webhook(ctx, {}, body)
                [mapped] = SALESFORCE.to_canonical(ctx, event, MemoryRefs())
                assert isinstance(mapped.entity, Customer)
                lifecycles.append((event.payload["Type"], mapped.entity.lifecycle))
    finally:
        receiver.stop()

    assert lifecycles == [("Prospect", "prospect"), ("Customer - Direct", "customer")]
