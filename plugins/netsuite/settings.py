"""``[connectors.netsuite]``: the account, its credentials, the records to book against, and polling."""

from datetime import UTC, datetime

from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.netsuite.auth import NetSuiteAuth
from pydantic import BaseModel, ConfigDict, Field, SecretStr

MAX_PAGE_SIZE = 1000
"""NetSuite's largest page, for collections and SuiteQL alike."""


class NetSuiteSettings(BaseModel):
    """``[connectors.netsuite]``: the account, its TBA credentials and the records to book against.

    ``base_url`` is the account's REST domain, e.g. ``https://1234567.suitetalk.api.netsuite.com``
    (account id lower-cased, ``_`` as ``-``). The ``*_id`` settings are internal ids of records
    set up once in the account: the service item invoice lines are booked to, the items for tax
    and discounts, the account payments are posted to, the bank account refunds are paid from, the
    default subsidiary. ``currencies`` maps ISO codes to the account's currency records, and
    ``accounts`` the ledger accounts journal entries name to the account's account records.

    A NetSuite customer transacts only in its primary currency and those on its currency list. With
    ``add_customer_currencies`` (the default), a document NetSuite refuses for its currency makes it
    its customer's primary currency (a customer without transactions yet) or adds it to the
    customer's list, and is sent again; without it, the refusal is a ``data`` error naming the
    customer's ``currency``, for a person to decide.

    Polling: ``poll_since`` is where the first poll starts (older changes are history, not news);
    ``poll_page_size`` rows are read per SuiteQL request; and a change is only read once the second
    it happened in is ``poll_settle_s`` seconds over, so a write later in that same second (NetSuite
    stamps changes to the second) or a small clock difference cannot slip behind the cursor.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    account_id: str
    consumer_key: str
    consumer_secret: SecretStr
    token_id: str
    token_secret: SecretStr
    timeout_s: float = 10
    subsidiary_id: str = "1"
    item_id: str = "1"
    tax_item_id: str = "2"
    discount_item_id: str = "3"
    ar_account_id: str = "1"
    refund_account_id: str = "10"
    currencies: dict[str, str] = {"USD": "1", "GBP": "2", "CAD": "3", "EUR": "4", "JPY": "5", "KWD": "6"}
    accounts: dict[str, str] = {}
    add_customer_currencies: bool = True
    poll_since: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    poll_page_size: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    poll_settle_s: float = Field(default=5.0, ge=0)

    def auth(self) -> NetSuiteAuth:
        """The request signer for this account's TBA credentials."""
        return NetSuiteAuth(self.account_id, self.consumer_key, self.consumer_secret.get_secret_value(),
                            self.token_id, self.token_secret.get_secret_value())

    def currency(self, code: str) -> dict[str, str]:
        """The reference to the currency record for ISO ``code``; a data error if unmapped."""
        return {"id": _lookup(self.currencies, code, "currency", "currencies")}

    def currency_code(self, internal_id: str) -> str:
        """The ISO code of the account's currency record ``internal_id``; a data error if unmapped."""
        codes = {value: code for code, value in self.currencies.items()}
        return _lookup(codes, internal_id, "currency record", "currencies")

    def account(self, name: str) -> dict[str, str]:
        """The reference to the account record for the canonical ledger account ``name``."""
        return {"id": _lookup(self.accounts, name, "ledger account", "accounts")}


def _lookup(table: dict[str, str], key: str, what: str, setting: str) -> str:
    if key not in table:
        raise ConnectorError(Category.DATA, f"{what} {key} has no NetSuite counterpart; add it to "
                                            f"[connectors.netsuite] {setting} (known: {sorted(table)})")
    return table[key]
