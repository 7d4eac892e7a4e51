"""``[connectors.business_central]``: the tenant, environment and company, the Entra ID app, the
setup records documents are booked against, webhooks and polling."""

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr

MAX_PAGE_SIZE = 20000
"""Business Central's largest page online."""


class BusinessCentralSettings(BaseModel):
    """``[connectors.business_central]``.

    ``base_url`` is the API host (``https://api.businesscentral.dynamics.com``), ``login_url`` Entra
    ID's (``https://login.microsoftonline.com``); ``tenant`` the tenant id or domain, ``environment``
    the environment's name and ``company_id`` the company's GUID. ``client_id`` and
    ``client_secret`` are the Entra app's, registered in Business Central ("Microsoft Entra
    Applications") with permission to the API.

    Documents are booked to the item ``item_number``, their tax to ``tax_item_number`` and
    discounts to ``discount_item_number`` (service items set up once); payments go to the
    customer payment journal ``payment_journal``. ``local_currency`` is the company's LCY.

    Webhooks: with ``notification_url`` set (the hub's ``/webhooks/business_central``), each poll
    makes sure a subscription for every entity set in ``subscribe_to`` exists, created with
    ``client_state`` (the secret Business Central echoes in every notification; during a roll,
    ``previous_client_state`` is accepted too) and renewed ``renew_before_s`` before it expires.

    Polling: ``poll_since`` is where the first poll starts; ``poll_page_size`` records are read per
    request; a change is read once it is ``poll_settle_s`` old, so a write later in the same
    millisecond, or a small clock difference, cannot slip behind the cursor.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.businesscentral.dynamics.com"
    login_url: str = "https://login.microsoftonline.com"
    tenant: str
    environment: str
    company_id: str
    client_id: str
    client_secret: SecretStr
    scope: str = "https://api.businesscentral.dynamics.com/.default"
    timeout_s: float = 10
    item_number: str = "SERVICES"
    tax_item_number: str = "TAX"
    discount_item_number: str = "DISCOUNT"
    payment_journal: str = "CASHRCPT"
    local_currency: str = "USD"
    notification_url: str | None = None
    client_state: SecretStr | None = None
    previous_client_state: SecretStr | None = None
    subscribe_to: tuple[str, ...] = ("customers", "salesInvoices", "customerPaymentJournals")
    renew_before_s: float = Field(default=24 * 3600, gt=0)
    max_conflict_retries: int = Field(default=3, ge=1)
    poll_since: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    poll_page_size: int = Field(default=1000, ge=1, le=MAX_PAGE_SIZE)
    poll_settle_s: float = Field(default=2.0, ge=0)

    @property
    def api_root(self) -> str:
        """``{base_url}/v2.0/{tenant}/{environment}/api/v2.0``."""
        return f"{self.base_url.rstrip('/')}/v2.0/{self.tenant}/{self.environment}/api/v2.0"

    @property
    def company_path(self) -> str:
        """``/companies({company_id})``: where the company's entity sets are, under the API root."""
        return f"/companies({self.company_id})"

    def client_states(self) -> list[str]:
        """The client states a notification may carry: the current one, and the previous during a roll."""
        return [state.get_secret_value() for state in (self.client_state, self.previous_client_state)
                if state is not None]
