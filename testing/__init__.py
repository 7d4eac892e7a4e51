"""crossledger.testing: the pytest plugin and the connector contract suite."""
