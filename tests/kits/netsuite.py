"""The NetSuite connector's contract kit. NetSuite sends no webhooks (the hub polls it), so the
webhook parts keep their defaults; the sample ``customer.upserted`` events become ``customer``
records, which the sandbox's state lists under ``customer`` with the name as ``companyName``."""

from typing import Any

from crossledger.plugins.netsuite.connector import NetSuiteConnector
from crossledger.testing.kit import ContractKit


class NetSuiteKit(ContractKit):
    connector = NetSuiteConnector()
    record_state_key = "customer"

    def shows(self, record: dict[str, Any], name: str) -> bool:
        return record.get("companyName") == name
