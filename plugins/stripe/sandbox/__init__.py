"""The Stripe sandbox: a local emulator of Stripe's API, faithful on the wire, for tests, the demo and the bench.

``app`` is the emulator; the connector returns it from its ``sandbox`` hook. Nothing of the connector's
runtime path imports this package.
"""
