"""The built-in connectors, registered through the same hook as any third-party plugin."""

from collections.abc import Iterable

from crossledger.plugins.connector import Connector
from crossledger.plugins.hookspecs import hookimpl
from crossledger.plugins.journey_definition import BILLING, CRM, ERP, SUPPORT, Journey
from crossledger.plugins.types import OwnershipRule, Route


@hookimpl
def crossledger_connectors() -> Iterable[Connector]:
    from crossledger.plugins.business_central.connector import BusinessCentralConnector
    from crossledger.plugins.netsuite.connector import NetSuiteConnector
    from crossledger.plugins.salesforce.connector import SalesforceConnector
    from crossledger.plugins.stripe.connector import StripeConnector
    from crossledger.plugins.zendesk.connector import ZendeskConnector
    from crossledger.plugins.zuora.connector import ZuoraConnector

    return [SalesforceConnector(), StripeConnector(), NetSuiteConnector(), ZendeskConnector(),
            ZuoraConnector(), BusinessCentralConnector()]


@hookimpl
def crossledger_journeys() -> Iterable[Journey]:
    from crossledger.plugins.journeys import BUILTIN_JOURNEYS

    return BUILTIN_JOURNEYS


@hookimpl
def crossledger_ownership_rules() -> Iterable[OwnershipRule]:
    """The design's defaults: CRM owns the profile (billing stands in when no CRM is configured),
    billing a customer's currency (Stripe fixes it at the first bill) and owns subscriptions and
    invoice documents, ERP owns dimensions, receivables, posting and
    the ledger, support owns cases."""
    return [
        OwnershipRule("customer", "profile", ("crm", "billing")),
        OwnershipRule("customer", "currency", ("billing", "crm")),
        OwnershipRule("customer", "hierarchy", ("crm", "billing")),
        OwnershipRule("customer", "financial", ("erp",)),
        OwnershipRule("customer", "status", ("billing", "crm")),
        OwnershipRule("contact", "profile", ("crm", "support")),
        OwnershipRule("contact", "status", ("crm", "support")),
        OwnershipRule("subscription", "document", ("billing",), on_violation="reject"),
        OwnershipRule("subscription", "status", ("billing",)),
        OwnershipRule("subscription", "contract", ("crm",)),
        OwnershipRule("invoice", "document", ("billing",), on_violation="reject"),
        OwnershipRule("invoice", "status", ("billing",)),
        OwnershipRule("invoice", "posting", ("erp",)),
        OwnershipRule("payment", "document", ("billing", "erp"), on_violation="reject"),
        OwnershipRule("creditmemo", "document", ("billing",), on_violation="reject"),
        OwnershipRule("refund", "document", ("billing", "erp"), on_violation="reject"),
        OwnershipRule("refund", "status", ("billing", "erp")),
        OwnershipRule("journalentry", "document", ("erp",), on_violation="reject"),
        OwnershipRule("entitlement", "document", ("billing",)),
        OwnershipRule("entitlement", "status", ("billing",)),
        OwnershipRule("supportcase", "document", ("support",)),
        OwnershipRule("supportcase", "status", ("support",)),
    ]


@hookimpl
def crossledger_routes() -> Iterable[Route]:
    """The reference topology, by role (``crm``, ``billing``, ``erp``, ``support``: whichever connector
    plays each, so the same routes serve Stripe or Zuora, NetSuite or Business Central). Targets that
    are not configured are left out, an event never goes back to its source, and each hop is still
    checked against the ownership rules. A target that keeps only some records says which
    (``TakesSomeEvents``: Business Central has no refunds, journal entries or subscriptions), and the
    routes leave it out of the rest."""
    subscription = (ERP, SUPPORT)
    return [
        # The CRM's accounts become customers everywhere; billing-born customers, and the currency
        # billing fixes, reach the CRM, ERP and support.
        Route("customer.upserted", (BILLING, ERP, SUPPORT), source=CRM),
        Route("customer.upserted", (CRM, ERP, SUPPORT), source=BILLING),
        # ERP-owned changes (financial dimensions, open balance) flow back to the CRM and billing.
        Route("customer.upserted", (CRM, BILLING), source=ERP),
        Route("customer.deleted", (ERP, SUPPORT)),
        Route("customer.linked", (CRM, BILLING, ERP, SUPPORT)),
        Route("contact.upserted", (SUPPORT,)),
        # An invoice's status is billing's: the CRM's copy of a posted invoice follows it (issued,
        # uncollectible, paid or credited in full, void).
        Route("invoice.issued", (ERP, CRM)),
        Route("invoice.voided", (ERP, CRM)),
        Route("invoice.paid", (CRM,), source=BILLING),
        Route("invoice.posted", (CRM,), source=ERP),
        Route("payment.settled", (ERP,), source=BILLING),
        Route("payment.settled", (CRM,), source=ERP),
        Route("credit_memo.issued", (ERP,)),
        Route("refund.issued", (ERP,)),
        Route("journal_entry.posted", (ERP,)),
        Route("subscription.created", subscription),
        Route("subscription.amended", subscription),
        Route("subscription.renewed", subscription),
        Route("subscription.cancelled", subscription),
        Route("entitlement.changed", (SUPPORT,)),
    ]
