"""A NetSuite user at work, through the real REST API: the changes made in the ERP itself that the
hub must hear of by polling. For tests and demos against the sandbox (or a NetSuite test account)::

    with NetSuiteUser(settings) as user:
        invoice_id = user.enter_invoice(customer_id="4", item_id="1", amount=Decimal("120.00"))
        user.approve_invoice("17")
        payment_id = user.enter_payment(customer_id="4", amount=Decimal("50.00"), applied={"17": Decimal("50.00")})
        user.set_terms("4", terms_id="2")

Each call is one signed request, as the NetSuite UI would make one save; nothing here carries an
``externalId``, which is what tells the hub's poller that a person, not the hub, made the record.
"""

from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx
import msgspec
from crossledger.plugins.netsuite.settings import NetSuiteSettings

APPROVED = "2"
"""``approvalStatus`` of an approved invoice (1 is Pending Approval, 3 Rejected)."""

_JSON = msgspec.json.Encoder(decimal_format="number")


class NetSuiteUser:
    """Signed requests to one account's record service, as its users make them."""

    def __init__(self, settings: NetSuiteSettings) -> None:
        root = settings.base_url.rstrip("/") + "/services/rest/record/v1"
        self._client = httpx.Client(base_url=root, auth=settings.auth(), timeout=settings.timeout_s)

    def __enter__(self) -> "NetSuiteUser":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def enter_invoice(self, customer_id: str, item_id: str, amount: Decimal, description: str = "Services") -> str:
        """Bill the customer ``amount`` on one line of item ``item_id``, in its currency; the new id."""
        line = {"item": {"id": item_id}, "description": description, "quantity": 1, "amount": amount}
        body = {"entity": {"id": customer_id}, "item": {"items": [line]}}
        return self._created(self._write("POST", "/invoice", body))

    def approve_invoice(self, invoice_id: str) -> None:
        """Approve an invoice waiting in Pending Approval: from now on it posts and can be paid."""
        self._write("PATCH", f"/invoice/{invoice_id}", {"approvalStatus": {"id": APPROVED}})

    def enter_payment(self, customer_id: str, amount: Decimal, applied: dict[str, Decimal] | None = None,
                      currency_id: str | None = None) -> str:
        """Record a customer payment of ``amount``, applied to invoices (id -> amount); its new id."""
        lines = [{"doc": {"id": invoice_id}, "apply": True, "amount": part}
                 for invoice_id, part in (applied or {}).items()]
        body: dict[str, Any] = {"customer": {"id": customer_id}, "payment": amount, "apply": {"items": lines}}
        if currency_id is not None:
            body["currency"] = {"id": currency_id}
        return self._created(self._write("POST", "/customerpayment", body))

    def set_terms(self, customer_id: str, terms_id: str) -> None:
        """Change a customer's payment terms (a financial dimension the ERP owns)."""
        self._write("PATCH", f"/customer/{customer_id}", {"terms": {"id": terms_id}})

    @staticmethod
    def _created(response: httpx.Response) -> str:
        """The id of the record a POST made: NetSuite answers 204, naming it only in ``Location``."""
        return response.headers["location"].rstrip("/").rsplit("/", 1)[-1]

    def _write(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        response = self._client.request(method, path, content=_JSON.encode(body),
                                        headers={"Content-Type": "application/json"})
        response.raise_for_status()
        return response
