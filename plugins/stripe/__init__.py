"""Stripe, the built-in billing connector.

- :mod:`.connector`: :class:`~.connector.StripeConnector`: webhook verification and parsing,
  delivery of customers, reads of single records and of whole lists, error classification.
- :mod:`.client`: the settings (:class:`~.client.StripeSettings`) and the API calls the connector
  makes, with the classification of their failures.
- :mod:`.mapping`: inbound, Stripe's events onto the canonical model; :mod:`.outbound`: canonical
  customer events onto Stripe's writes.
- :mod:`.signature`: Stripe's webhook signature scheme (``Stripe-Signature``), shared by both sides.
- :mod:`.sandbox`: :class:`~.sandbox.StripeSandbox`, a local emulator of Stripe's API and webhooks,
  built from :mod:`.sandbox_wire` (how Stripe speaks) and the account's layers
  :mod:`.sandbox_core`, :mod:`.sandbox_invoices`, :mod:`.sandbox_credits`,
  :mod:`.sandbox_subscriptions` and :mod:`.sandbox_clocks`. Importing it loads Starlette and uvicorn, so only
  ``StripeConnector.sandbox()`` does.
"""

from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings

__all__ = ["StripeConnector", "StripeSettings"]
