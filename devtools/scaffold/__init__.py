"""``crossledger scaffold``: a new connector package, from template files, that passes the contract suite."""
