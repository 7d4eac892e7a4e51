"""Contract kits for the built-in connectors (crossledger.testing.ContractKit subclasses)."""
