"""The connector contract suite, applied to the Zuora connector and its sandbox."""

from crossledger.testing import ConnectorContract

from tests.kits.zuora import ZuoraKit


class TestZuoraContract(ConnectorContract):
    kit = ZuoraKit()
