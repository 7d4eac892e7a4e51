"""Zuora's official Python client, zuora-sdk, drives the Zuora sandbox unchanged, every answer held
to Zuora's description (apart from tests/test_zuora_sandbox.py: importing the SDK takes seconds)."""


import pytest
import zuora_sdk
from zuora_sdk.zuora_client import ZuoraClient

from tests.kits.zuora import Checked, fixture, served_and_checked

# The SDK calls pydantic APIs deprecated since 2.0 (raised from pydantic itself): its warnings, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

zuora = pytest.fixture(served_and_checked, name="zuora")


def test_zuora_sdk_drives_the_sandbox_unchanged(zuora: Checked) -> None:
    """Zuora's Python client fetches a token, creates an account with a custom field, reads it,
    updates it, and pays an invoice, with every answer in Zuora's documented shape."""
    configuration = zuora_sdk.Configuration(host=zuora.url)
    client = ZuoraClient(zuora.sandbox.client_id, zuora.sandbox.client_secret, None, configuration)  # type: ignore[arg-type]
    client.initialize()
    try:
        accounts = client.accounts_api()
        request = zuora_sdk.CreateAccountRequest.from_dict({**fixture("create_account_request"),
                                                            "crmId": "0015g00000KpQrSAAV"})
        assert request is not None
        created = accounts.create_account(request, idempotency_key="sdk-create-1", zuora_track_id="sdk-test")
        assert created.success and created.account_number == "A00000001"
        fetched = accounts.get_account(created.account_id)
        assert (fetched.basic_info.name, fetched.basic_info.crm_id) == ("Amy Lawrence account", "0015g00000KpQrSAAV")
        assert fetched.billing_and_payment.currency == "USD"
        update = zuora_sdk.UpdateAccountRequest.from_dict({"name": "Amy Lawrence (renamed)"})
        assert update is not None
        assert accounts.update_account(created.account_id, update).success
        assert accounts.get_account(created.account_number).basic_info.name == "Amy Lawrence (renamed)"
        invoice = zuora.http.post("/v1/invoices", json={
            "accountId": created.account_id, "invoiceDate": "2026-01-05", "status": "Posted",
            "invoiceItems": [{"amount": 40, "serviceStartDate": "2026-01-05"}]}).json()
        payment = client.payments_api().create_payment(zuora_sdk.CreatePaymentRequest.from_dict({
            "accountId": created.account_id, "amount": 40, "currency": "USD", "type": "External",
            "invoices": [{"invoiceId": invoice["id"], "amount": 40}]}))
        assert (payment.status, payment.applied_amount, payment.unapplied_amount) == ("Processed", 40, 0)
    finally:
        client.stop_auto_auth()
