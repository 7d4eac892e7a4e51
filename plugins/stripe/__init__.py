"""Stripe, the built-in billing connector.

- :mod:`.connector`: :class:`~.connector.StripeConnector` and its settings: webhook verification and
  parsing, the mapping onto the canonical model, reads of single records, error classification.
- :mod:`.signature`: Stripe's webhook signature scheme (``Stripe-Signature``), shared by both sides.
- :mod:`.sandbox`: :class:`~.sandbox.StripeSandbox`, a local emulator of Stripe's API and webhooks.
  Importing it loads Starlette and uvicorn, so only ``StripeConnector.sandbox()`` does.
"""

from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings

__all__ = ["StripeConnector", "StripeSettings"]
