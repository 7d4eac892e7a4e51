"""The connector contract suite, applied to the Business Central connector."""

from crossledger.testing import ConnectorContract

from tests.kits.business_central import BusinessCentralKit


class TestBusinessCentralContract(ConnectorContract):
    kit = BusinessCentralKit()
