"""The ERP: one driver per ERP, behind :class:`ErpDriver`.

Finance works in the ERP whichever it is: it approves invoices for posting (where the ERP routes
them for approval), sets a customer's payment terms, reads its open balance and posts the
payments the hub booked (where the ERP keeps them waiting in a journal); the ERP also goes down for
a while in the middle of billing. Each driver does that through its ERP's public API (NetSuite's
signed record service; Business Central's API v2.0 with an Entra ID token and ``If-Match``), and
reads what the ERP holds from its sandbox's ``/_sandbox/state``: counts of each kind for the demo,
the records the hub booked for one canonical id for the journey tests on every pair
(``tests/pairs.py``).

What an ERP cannot do is declared in :attr:`ErpDriver.cannot` (:data:`APPROVAL`, :data:`BALANCE`),
and the demo says so in its summary.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

import httpx
from crossledger.canonical.entities import external_key
from crossledger.devtools.demo.drivers import TIMEOUT_S, Json, NetSuiteFinance, Sandboxes, listed
from crossledger.devtools.demo.reconcile import NOT_POSTING, books_void
from crossledger.plugins.business_central.outbound import HUB_KEY_PREFIX, customer_number, document_number
from crossledger.plugins.business_central.settings import BusinessCentralSettings

APPROVAL, BALANCE = "approval", "balance"
"""The parts of the story an ERP may not be able to play."""


class ErpDriver(Protocol):
    """Finance at work in one ERP. Customer ids are the ERP's; invoices are named by canonical id."""

    system: str
    title: str
    cannot: Mapping[str, str]
    finance_terms: str
    """The payment terms finance sets, as the hub carries them (the ERP's id or code)."""

    def take_down(self) -> None: ...

    def bring_up(self) -> None: ...

    def approve(self, invoice: str) -> None:
        """Finance approves the invoice (canonical id) for posting."""

    def set_terms(self, customer: str) -> None:
        """Finance gives the customer :attr:`finance_terms`."""

    def terms(self, customer: str) -> str | None: ...

    def terms_name(self, customer: str) -> str:
        """The customer's payment terms as the ERP names them to people (``Net 30``)."""

    def balance(self, customer: str) -> Decimal:
        """The customer's open balance, as the ERP computes it."""

    def counts(self, state: Json) -> dict[str, int]:
        """What the ERP holds: ``erp_customers``, ``erp_subscriptions``, ``erp_invoices``,
        ``erp_posted_invoices``, ``erp_payments``, ``erp_void_memos`` (the credit memos it books for
        voided invoices), ``erp_credit_memos`` (the others), ``erp_refunds``."""

    def post_payments(self, sandbox: Any) -> None:
        """What finance does so that the payments the hub booked settle their invoices (``sandbox``:
        the ERP's, in this process, where the API cannot do it)."""

    # The records the hub booked for a canonical id, in ``state`` (the ERP sandbox's).

    def customers(self, state: Json, canonical_id: str) -> list[Json]: ...

    def invoices(self, state: Json, canonical_id: str) -> list[Json]: ...

    def payments_of(self, state: Json, invoice: Json) -> list[Json]:
        """The payments applied to ``invoice`` (one of :meth:`invoices`)."""

    def subscriptions(self, state: Json, canonical_id: str) -> list[Json] | None:
        """The ERP's records of a subscription; None when the ERP keeps no subscriptions."""

    def credit_memos(self, state: Json, canonical_id: str) -> list[Json]: ...

    def refunds(self, state: Json, canonical_id: str) -> list[Json] | None:
        """The ERP's records of a refund; None when the ERP keeps no refunds."""

    def on_hold(self, state: Json, canonical_id: str) -> bool:
        """Whether the customer may not be invoiced (a credit hold, a block)."""


class _Outage:
    """Taking the ERP's sandbox down and up again, through its fault control route."""

    system: str
    sandboxes: Sandboxes

    def take_down(self) -> None:
        self.sandboxes.take_down(self.system)

    def bring_up(self) -> None:
        self.sandboxes.bring_up(self.system)


class NetSuiteErp(_Outage):
    """NetSuite with invoice approval routing on: an invoice posts when finance approves it."""

    system, title = "netsuite", "NetSuite"
    cannot: Mapping[str, str] = {}
    finance_terms = "2"  # "Net 30", by internal id: dimensions travel as NetSuite ids

    def __init__(self, settings: Mapping[str, Any], sandboxes: Sandboxes) -> None:
        self.finance = NetSuiteFinance(settings)
        self.sandboxes = sandboxes

    def approve(self, invoice: str) -> None:
        self.finance.approve_invoice(external_key(invoice))

    def set_terms(self, customer: str) -> None:
        self.finance.set_terms(customer, self.finance_terms)

    def terms(self, customer: str) -> str | None:
        held = (self.finance.customer(customer).get("terms") or {}).get("id")
        return None if held is None else str(held)

    def terms_name(self, customer: str) -> str:
        return self.finance.terms_name(customer)

    def balance(self, customer: str) -> Decimal:
        return self.finance.balance(customer)

    def counts(self, state: Json) -> dict[str, int]:
        invoices, memos = state.get("invoice", []), state.get("creditmemo", [])
        return {"erp_customers": len(state.get("customer", [])),
                "erp_subscriptions": len(state.get("customrecord_cl_subscription", [])),
                "erp_invoices": len(invoices),
                "erp_posted_invoices": sum(1 for i in invoices
                                           if (i.get("approvalStatus") or {}).get("id") not in NOT_POSTING),
                "erp_payments": len(state.get("customerpayment", [])),
                "erp_void_memos": sum(1 for memo in memos if books_void(memo)),
                "erp_credit_memos": sum(1 for memo in memos if not books_void(memo)),
                "erp_refunds": len(state.get("customerRefund", []))}

    def post_payments(self, sandbox: Any) -> None:
        """Nothing: a NetSuite customer payment applies to its invoices as it is created."""

    def customers(self, state: Json, canonical_id: str) -> list[Json]:
        return self._marked(state, "customer", canonical_id)

    def invoices(self, state: Json, canonical_id: str) -> list[Json]:
        return self._marked(state, "invoice", canonical_id)

    def payments_of(self, state: Json, invoice: Json) -> list[Json]:
        return [p for p in listed(state, "customerpayment")
                if any(line["doc"]["id"] == str(invoice["id"]) for line in p["apply"]["items"])]

    def subscriptions(self, state: Json, canonical_id: str) -> list[Json] | None:
        return self._marked(state, "customrecord_cl_subscription", canonical_id)

    def credit_memos(self, state: Json, canonical_id: str) -> list[Json]:
        return self._marked(state, "creditmemo", canonical_id)

    def refunds(self, state: Json, canonical_id: str) -> list[Json] | None:
        return self._marked(state, "customerRefund", canonical_id)

    def on_hold(self, state: Json, canonical_id: str) -> bool:
        [customer] = self.customers(state, canonical_id)
        return bool(customer.get("creditHoldOverride", {}).get("id") == "ON")

    @staticmethod
    def _marked(state: Json, kind: str, canonical_id: str) -> list[Json]:
        """The records of ``kind`` the hub made for ``canonical_id`` (their external id is its key)."""
        return [r for r in listed(state, kind) if r.get("externalId") == external_key(canonical_id)]


class BusinessCentralErp(_Outage):
    """Business Central: the hub books each invoice and posts it (``Microsoft.NAV.post``); payments
    wait as lines of the customer payment journal; terms change with ``If-Match``."""

    system, title = "business_central", "Business Central"
    cannot: Mapping[str, str] = {
        APPROVAL: "Business Central routes no invoice for approval here: the hub posts each invoice as it books "
                  "it (Microsoft.NAV.post), so finance has nothing to approve",
        BALANCE: "the Business Central connector carries no open balance to Salesforce (the v2.0 customer entity "
                 "has none), so there is none to compare",
    }
    finance_terms = "NET15"  # terms travel as Business Central's payment terms codes

    def __init__(self, settings: Mapping[str, Any], sandboxes: Sandboxes) -> None:
        bc = BusinessCentralSettings(**settings)
        login = httpx.post(f"{bc.login_url.rstrip('/')}/{bc.tenant}/oauth2/v2.0/token", timeout=TIMEOUT_S,
                           data={"grant_type": "client_credentials", "client_id": bc.client_id,
                                 "client_secret": bc.client_secret.get_secret_value(), "scope": bc.scope})
        login.raise_for_status()
        self.http = httpx.Client(base_url=bc.api_root + bc.company_path, timeout=TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        self.sandboxes = sandboxes

    def _get(self, path: str, **params: str) -> Json:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def approve(self, invoice: str) -> None:
        raise NotImplementedError(self.cannot[APPROVAL])

    def set_terms(self, customer: str) -> None:
        [terms] = self._get("/paymentTerms", **{"$filter": f"code eq '{self.finance_terms}'"})["value"]
        current = self._get(f"/customers({customer})")
        self.http.patch(f"/customers({customer})", json={"paymentTermsId": terms["id"]},
                        headers={"If-Match": current["@odata.etag"]}).raise_for_status()

    def terms(self, customer: str) -> str | None:
        held = self._terms_of(customer)
        return None if held is None else str(held["code"])

    def terms_name(self, customer: str) -> str:
        held = self._terms_of(customer)
        return "no terms" if held is None else str(held["displayName"])

    def _terms_of(self, customer: str) -> Json | None:
        """The customer's payment terms record (``code``, ``displayName``), if it has terms."""
        held = self._get(f"/customers({customer})").get("paymentTermsId")
        return next((t for t in self._get("/paymentTerms")["value"] if t["id"] == held), None)

    def balance(self, customer: str) -> Decimal:
        raise NotImplementedError(self.cannot[BALANCE])

    def counts(self, state: Json) -> dict[str, int]:
        invoices = [i for i in state.get("salesInvoices", []) if i["status"] != "Draft"]
        # The company's own customers (CRONUS's three) count too: the hub brings them into the others.
        return {"erp_customers": len(state.get("customers", [])),
                "erp_subscriptions": 0,
                "erp_invoices": len(invoices),
                "erp_posted_invoices": len(invoices),
                "erp_payments": sum(1 for p in state.get("customerPayments", [])
                                    if str(p.get("externalDocumentNumber", "")).startswith(HUB_KEY_PREFIX)),
                # Microsoft.NAV.cancel's corrective credit memo is the void's; the others are credit notes'.
                "erp_void_memos": sum(1 for m in state.get("salesCreditMemos", []) if m["status"] == "Corrective"),
                "erp_credit_memos": sum(1 for m in state.get("salesCreditMemos", [])
                                        if m["status"] not in ("Draft", "Corrective")),
                "erp_refunds": 0}

    def post_payments(self, sandbox: Any) -> None:
        """A user posts the payment journal: its lines settle their invoices (the API cannot post it)."""
        sandbox.post_payment_journal()

    def customers(self, state: Json, canonical_id: str) -> list[Json]:
        return [c for c in listed(state, "customers") if c.get("number") == customer_number(canonical_id)]

    def invoices(self, state: Json, canonical_id: str) -> list[Json]:
        return self._documents(state, "salesInvoices", canonical_id)

    def payments_of(self, state: Json, invoice: Json) -> list[Json]:
        return [p for p in listed(state, "customerPayments") if p.get("appliesToInvoiceId") == invoice["id"]]

    def subscriptions(self, state: Json, canonical_id: str) -> list[Json] | None:
        """None: the standard API has no place for a subscription."""
        return None

    def credit_memos(self, state: Json, canonical_id: str) -> list[Json]:
        return self._documents(state, "salesCreditMemos", canonical_id)

    def refunds(self, state: Json, canonical_id: str) -> list[Json] | None:
        """None: the standard API has no customer refunds."""
        return None

    def on_hold(self, state: Json, canonical_id: str) -> bool:
        [customer] = self.customers(state, canonical_id)
        return bool(customer.get("blocked") == "Invoice")

    @staticmethod
    def _documents(state: Json, kind: str, canonical_id: str) -> list[Json]:
        """The documents of ``kind`` the hub booked for ``canonical_id`` (its external document number)."""
        key = document_number(canonical_id)
        return [d for d in listed(state, kind) if d.get("externalDocumentNumber") == key]


ERPS: dict[str, type[NetSuiteErp] | type[BusinessCentralErp]] = {"netsuite": NetSuiteErp,
                                                                  "business_central": BusinessCentralErp}
"""The ERPs the demo can play, by connector name."""
