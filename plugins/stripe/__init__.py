"""Stripe, the built-in billing connector.

- :mod:`.connector`: :class:`~.connector.StripeConnector`: webhook verification and parsing,
  delivery of customers, reads of single records and of whole lists, error classification.
- :mod:`.client`: the settings (:class:`~.client.StripeSettings`) and the API calls the connector
  makes, with the classification of their failures.
- :mod:`.mapping`: inbound, Stripe's events onto the canonical model; :mod:`.outbound`: canonical
  customer events onto Stripe's writes.
- :mod:`.signature`: Stripe's webhook signature scheme (``Stripe-Signature``), shared by both sides.
- :mod:`.sandbox`: :class:`~.sandbox.app.StripeSandbox`, a local emulator of Stripe's API and webhooks,
  built from :mod:`.sandbox.wire` (how Stripe speaks), an account state (:mod:`.sandbox.account`)
  and one module per area of the API (customers, invoices, credits, subscriptions, clocks, previews,
  search, webhooks). Importing it loads Starlette and uvicorn, so only
  ``StripeConnector.sandbox()`` does.
"""

from crossledger.plugins.stripe.connector import StripeConnector, StripeSettings

__all__ = ["StripeConnector", "StripeSettings"]
