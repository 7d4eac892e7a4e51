"""The built-in order-to-cash journeys, registered through ``crossledger_journeys`` like any plugin's.

=====================  ==========================================================================
onboarding             a closed-won account (or ``POST /v1/journeys/onboarding``) becomes a customer
                       in billing, the ERP and support, with the ids written back to the CRM
subscription-change    a subscription created, changed or renewed in billing, enriched from the CRM,
                       booked in the ERP, the support entitlement refreshed
suspension             non-payment: entitlement suspended, CRM account flagged, ERP credit hold
reinstatement          paid again: each of those reversed
refund                 a refund or credit note booked in the ERP against its invoice, and a journal
                       entry where the policy asks for one
=====================  ==========================================================================
"""

from crossledger.plugins.journey_definition import Journey
from crossledger.plugins.journeys.onboarding import ONBOARDING
from crossledger.plugins.journeys.refunds import REFUND
from crossledger.plugins.journeys.subscriptions import SUBSCRIPTION_CHANGE
from crossledger.plugins.journeys.suspension import REINSTATEMENT_JOURNEY, SUSPENSION_JOURNEY

BUILTIN_JOURNEYS: tuple[Journey, ...] = (ONBOARDING, SUBSCRIPTION_CHANGE, SUSPENSION_JOURNEY, REINSTATEMENT_JOURNEY,
                                         REFUND)
