"""``crossledger demo``: four sandboxes, the hub, a scripted story across them, and a check that the books agree."""
