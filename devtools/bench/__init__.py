"""``crossledger bench``: the hub against a plain Dramatiq pipeline doing the same work, in the same run."""
