"""``[connectors.salesforce]``: the org, the integration's credentials, and the relay's secrets."""

import re

from crossledger.plugins.salesforce import ids
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

API_VERSION = "v62.0"
"""The REST API version the mapping is written against (Winter '25). Upserts answer ``200`` with
``created: false`` on update from v46.0 on; older versions answer ``204``, which the connector
also handles."""


class SalesforceSettings(BaseModel):
    """Where the org is and how the hub proves itself to it, and how events prove themselves to the hub.

    - ``base_url``: the org's My Domain URL (``https://acme.my.salesforce.com``). The client
      credentials flow must use it, not ``login.salesforce.com``, and the hub calls the REST API
      there too.
    - ``client_id`` / ``client_secret``: the consumer key and secret of the connected app, with the
      client credentials flow enabled and a run-as integration user.
    - ``organization_id``: the org's id (``00D...``, 15 or 18 characters). Outbound messages that
      name another org are refused.
    - ``external_id_field``: the External ID field the hub upserts by, on every object it writes.
    - ``cdc_secret`` / ``previous_cdc_secret``: the secret shared with the CDC relay (see
      :mod:`~crossledger.plugins.salesforce.relay`), and the old one while it is being rolled.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    client_id: str
    client_secret: SecretStr
    organization_id: str
    api_version: str = API_VERSION
    external_id_field: str = "CrossLedger_Id__c"
    cdc_secret: SecretStr | None = None
    previous_cdc_secret: SecretStr | None = None
    timeout_s: float = 10.0

    @field_validator("organization_id")
    @classmethod
    def _an_id(cls, value: str) -> str:
        normalized = ids.normalize(value)
        if normalized is None:
            raise ValueError("must be a Salesforce id: 15 or 18 letters and digits (Setup > Company Information)")
        return normalized

    @field_validator("api_version")
    @classmethod
    def _a_version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d{2,3}\.0", value):
            raise ValueError("must look like v62.0")
        return value
