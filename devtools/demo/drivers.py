"""The people at work in ``crossledger demo``, each through their system's own API, and the sandboxes
they work in.

Sales keeps accounts in Salesforce (the REST API, after the OAuth client credentials login); the
Stripe API client (form-encoded requests, the secret key) and the NetSuite finance user (the signed
record service, as :class:`~crossledger.plugins.netsuite.sandbox.user.NetSuiteUser`) are what the
billing and ERP drivers (:mod:`.billing`, :mod:`.erp`) and the tests build on. Nobody works in
Zendesk here: it only receives. The chosen pair's sandboxes, with Salesforce's and Zendesk's, are
served on one port, each under ``/<system>/``; NetSuite's routes invoices for approval, so an
invoice posts when finance approves it, as in an account with approval routing on.
"""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx
from crossledger.devtools.sandboxes import SandboxSet
from crossledger.plugins.connector import Connector
from crossledger.plugins.netsuite.sandbox.app import NetSuiteSandbox
from crossledger.plugins.netsuite.sandbox.user import NetSuiteUser
from crossledger.plugins.netsuite.settings import NetSuiteSettings
from crossledger.plugins.salesforce.client import TOKEN_PATH
from crossledger.plugins.salesforce.settings import API_VERSION

TIMEOUT_S = 30.0
Json = dict[str, Any]


def demo_sandboxes(connectors: Mapping[str, Connector], systems: Sequence[str]) -> SandboxSet:
    """The ``systems``' sandboxes on one app; NetSuite's with invoice approval routing, which the
    connector's default sandbox does not turn on, so it is mounted beside the others."""
    sandboxes = SandboxSet(dict(connectors), [name for name in systems if name != "netsuite"])
    if "netsuite" not in systems:
        return sandboxes
    netsuite = NetSuiteSandbox(approval_routing=True)
    sandboxes.sandboxes["netsuite"] = netsuite
    sandboxes.app.mount("/netsuite", netsuite.app)
    return sandboxes


class Sandboxes:
    """The sandboxes' control routes over HTTP: each system's records (``/_sandbox/state``), faults,
    and the re-deliveries real systems make now and then."""

    def __init__(self, url: str) -> None:
        """``url``: where the sandboxes are served, each under ``/<system>/``."""
        self.http = httpx.Client(base_url=url, timeout=TIMEOUT_S)

    def state(self, system: str) -> Json:
        return self._call("GET", f"/{system}/_sandbox/state")

    def states(self, systems: Sequence[str]) -> dict[str, Json]:
        return {system: self.state(system) for system in systems}

    def control(self, system: str, path: str, command: Json) -> Json:
        """A command to one of ``system``'s control routes (``/_sandbox/...``)."""
        return self._call("POST", f"/{system}{path}", json=command)

    def take_down(self, system: str) -> None:
        self._call("POST", f"/{system}/_sandbox/faults", json={"mode": "down"})

    def bring_up(self, system: str) -> None:
        self._call("DELETE", f"/{system}/_sandbox/faults")

    def resend_stripe_event(self, event_id: str) -> None:
        """Stripe delivers an event again, as it sometimes does."""
        self._call("POST", f"/stripe/_sandbox/events/{event_id}/resend")

    def resend_salesforce_outbound(self) -> None:
        """Salesforce sends its last outbound message again (same notification ids)."""
        self._call("POST", "/salesforce/_sandbox/outbound/resend")

    def _call(self, method: str, path: str, **options: Any) -> Json:
        response = self.http.request(method, path, **options)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def listed(state: Mapping[str, Any], kind: str) -> list[Json]:
    """The records of ``kind`` in a sandbox's state: a list over HTTP, a dict by id in some sandboxes'
    own ``state()``."""
    found = state.get(kind, [])
    return list(found.values()) if isinstance(found, dict) else list(found)


def in_flight(states: Mapping[str, Json]) -> int:
    """Webhooks, callouts and outbound messages the sandboxes in ``states`` have yet to deliver (or
    give up on). Business Central's notifications are not counted: the hub also polls it."""
    outbound = states["salesforce"]["outbound"]
    return (int(outbound["pending"]) + int(outbound["queued"])
            + sum(int(state["webhooks"]["pending"]) for state in states.values() if "webhooks" in state)
            + sum(int(state["callouts"]["retrying_pending"]) for state in states.values() if "callouts" in state))


class SalesforceUser:
    """A sales rep at work: logs in with the connected app's client credentials, then uses the REST API."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        login = httpx.post(settings["base_url"] + TOKEN_PATH, timeout=TIMEOUT_S, data={
            "grant_type": "client_credentials", "client_id": settings["client_id"],
            "client_secret": settings["client_secret"]})
        login.raise_for_status()
        session = login.json()
        self.http = httpx.Client(base_url=f"{session['instance_url']}/services/data/{API_VERSION}", timeout=TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {session['access_token']}"})

    def create_account(self, fields: Json) -> str:
        """A new Account; its 18-character id."""
        response = self.http.post("/sobjects/Account", json=fields)
        response.raise_for_status()
        return str(response.json()["id"])

    def update_account(self, account_id: str, fields: Json) -> None:
        self.http.patch(f"/sobjects/Account/{account_id}", json=fields).raise_for_status()

    def account(self, account_id: str) -> Json:
        response = self.http.get(f"/sobjects/Account/{account_id}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


class StripeDriver:
    """Calls the Stripe API the way the official client does: form-encoded POSTs, Bearer key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=TIMEOUT_S)

    def post(self, path: str, **params: Any) -> Json:
        response = self.http.post(path, data=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def get(self, path: str, **params: Any) -> Json:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def customer_for(self, crossledger_id: str) -> str | None:
        """The Stripe customer the hub made for a canonical customer, found by its metadata."""
        found = self.get("/v1/customers/search", query=f"metadata['crossledger_id']:'{crossledger_id}'")["data"]
        return str(found[0]["id"]) if found else None


class NetSuiteFinance:
    """A finance user in NetSuite: looks records up by external id, approves invoices (they post),
    changes a customer's terms. Every request is signed with the account's TBA credentials."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = NetSuiteSettings(**settings)
        self.user = NetSuiteUser(self.settings)
        self.http = httpx.Client(base_url=self.settings.base_url.rstrip("/") + "/services/rest/record/v1",
                                 auth=self.settings.auth(), timeout=TIMEOUT_S)

    def record(self, record_type: str, external_id: str) -> Json:
        response = self.http.get(f"/{record_type}/eid:{external_id}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def approve_invoice(self, external_id: str) -> None:
        self.user.approve_invoice(str(self.record("invoice", external_id)["id"]))

    def set_terms(self, customer_id: str, terms_id: str) -> None:
        self.user.set_terms(customer_id, terms_id)

    def customer(self, customer_id: str) -> Json:
        response = self.http.get(f"/customer/{customer_id}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def terms_name(self, customer_id: str) -> str:
        """The customer's payment terms as NetSuite names them (``Net 30``), or ``no terms``."""
        return str((self.customer(customer_id).get("terms") or {}).get("refName") or "no terms")

    def balance(self, customer_id: str) -> Decimal:
        return Decimal(str(self.customer(customer_id)["balance"]))
