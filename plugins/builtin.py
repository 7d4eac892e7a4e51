"""The built-in connectors, registered through the same hook as any third-party plugin."""

from collections.abc import Iterable

from crossledger.plugins.connector import Connector
from crossledger.plugins.hookspecs import hookimpl
from crossledger.plugins.types import OwnershipRule, Route


@hookimpl
def crossledger_connectors() -> Iterable[Connector]:
    from crossledger.plugins.netsuite.connector import NetSuiteConnector
    from crossledger.plugins.stripe.connector import StripeConnector

    return [StripeConnector(), NetSuiteConnector()]


@hookimpl
def crossledger_ownership_rules() -> Iterable[OwnershipRule]:
    """The design's defaults: CRM owns the profile (billing stands in when no CRM is configured),
    billing owns subscriptions and invoice documents, ERP owns dimensions, receivables and posting."""
    return [
        OwnershipRule("customer", "profile", ("crm", "billing")),
        OwnershipRule("customer", "hierarchy", ("crm", "billing")),
        OwnershipRule("customer", "financial", ("erp",)),
        OwnershipRule("customer", "status", ("billing", "crm")),
        OwnershipRule("invoice", "document", ("billing",), on_violation="reject"),
        OwnershipRule("invoice", "status", ("billing",)),
        OwnershipRule("invoice", "posting", ("erp",)),
        OwnershipRule("payment", "document", ("billing", "erp"), on_violation="reject"),
        OwnershipRule("creditmemo", "document", ("billing",), on_violation="reject"),
    ]


@hookimpl
def crossledger_routes() -> Iterable[Route]:
    return [
        Route("customer.upserted", ("netsuite",)),
        Route("invoice.issued", ("netsuite",)),
        Route("invoice.voided", ("netsuite",)),
        Route("payment.settled", ("netsuite",)),
        Route("credit_memo.issued", ("netsuite",)),
    ]
