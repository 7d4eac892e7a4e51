"""Configuration loading, the system-of-record policy and routes."""

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from crossledger.canonical import Customer, new_envelope
from crossledger.core.hub.policy import OwnershipPolicy, PolicyViolation
from crossledger.core.hub.roles import Roles
from crossledger.core.hub.router import Router
from crossledger.core.settings import ConfigError, load_settings
from crossledger.plugins import load_plugins
from crossledger.plugins.builtin import crossledger_ownership_rules, crossledger_routes
from crossledger.plugins.connector import TakesSomeEvents
from crossledger.plugins.types import OwnershipRule


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_file_env_references_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, """
[hub]
broker = "memory"
store = "sqlite:///x.db"
[connectors.stripe]
api_key = "${STRIPE_KEY}"
[routes]
"invoice.issued" = ["netsuite"]
[ownership]
"customer.financial" = ["erp"]
"customer.profile" = { owners = ["crm"], on_violation = "reject" }
""")
    settings = load_settings(path, environ={"STRIPE_KEY": "sk_test_1", "CROSSLEDGER_STORE": "redis://h:1/2"})
    assert settings.connectors["stripe"]["api_key"] == "sk_test_1"
    assert settings.hub.store == "redis://h:1/2"
    assert settings.hub.broker == "memory"
    assert settings.ownership["customer.profile"].on_violation == "reject"
    assert settings.ownership["customer.financial"].owners == ["erp"]


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[hub]\nbroker = "redis://127.0.0.1:1/3"\n')
    assert load_settings(environ={"CROSSLEDGER_CONFIG": str(path)}).hub.broker.endswith("/3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hub\nbroker=1", "not valid TOML"),
        ('[hub]\nbrokr = "memory"', "hub.brokr: Extra inputs are not permitted"),
        ('[connectors.stripe]\napi_key = "${MISSING_VAR}"', "references ${MISSING_VAR}, which is not set"),
        ('[hub]\nmax_retries = -1', "hub.max_retries"),
        ('[ownership]\n"customer.profile" = { owners = ["crm"], on_violation = "shout" }', "on_violation"),
    ],
)
def test_bad_configuration_gives_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as raised:
        load_settings(write(tmp_path, text), environ={})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("/nonexistent/hub.toml", environ={})


def customer(**fields: object) -> Customer:
    return Customer(id="customer/stripe/cus_1", name=str(fields.pop("name", "Acme")), **fields)  # type: ignore[arg-type]


def envelope(source: str, entity: Customer):  # type: ignore[no-untyped-def]
    return new_envelope(type="customer.upserted", source=source, source_event_id="e1", data=entity,
                        occurred_at=datetime.now(UTC))


RULES = list(crossledger_ownership_rules())


def test_billing_stands_in_for_the_crm_until_one_is_configured() -> None:
    without_crm = OwnershipPolicy(RULES, {"stripe": "billing", "netsuite": "erp"})
    with_crm = OwnershipPolicy(RULES, {"salesforce": "crm", "stripe": "billing", "netsuite": "erp"})
    owner = {(r.entity, r.field_group): r.owner for r in without_crm.effective()}
    assert owner[("customer", "profile")] == "stripe"
    assert owner[("customer", "financial")] == "netsuite"
    assert {(r.entity, r.field_group): r.owner for r in with_crm.effective()}[("customer", "profile")] == "salesforce"


def test_non_owner_changes_are_stripped_and_reported() -> None:
    policy = OwnershipPolicy(RULES, {"salesforce": "crm", "stripe": "billing", "netsuite": "erp"})
    golden = customer(name="Acme", email="a@x.com", dimensions={"terms": "net30"})
    change = customer(name="ACME from Stripe", email="a@x.com", dimensions={"terms": "net30"})
    decision = policy.check_source(envelope("stripe", change), golden)
    assert decision.envelope.data.name == "Acme"  # type: ignore[union-attr]
    assert decision.stripped == ("profile (name) owned by salesforce",)
    # the owner may change it
    assert policy.check_source(envelope("salesforce", change), golden).stripped == ()


def test_a_non_owner_may_seed_a_new_record() -> None:
    policy = OwnershipPolicy(RULES, {"salesforce": "crm", "stripe": "billing"})
    decision = policy.check_source(envelope("stripe", customer(name="New")), None)
    assert decision.envelope.data.name == "New"  # type: ignore[union-attr]


def test_billing_owns_the_currency_and_not_knowing_it_yet_clears_nothing() -> None:
    """Stripe fixes a customer's currency at its first bill: until then its changes leave it unset,
    which keeps the currency the CRM gave; once it has one, it is the customer's, whatever the CRM says."""
    policy = OwnershipPolicy(RULES, {"salesforce": "crm", "stripe": "billing", "netsuite": "erp"})
    golden = customer(currency="EUR")
    unbilled = policy.check_source(envelope("stripe", customer(currency=None)), golden)
    assert (unbilled.envelope.data.currency, unbilled.stripped) == ("EUR", ())  # type: ignore[union-attr]
    billed = policy.check_source(envelope("stripe", customer(currency="USD")), golden)
    assert billed.envelope.data.currency == "USD"  # type: ignore[union-attr]
    edited = policy.check_source(envelope("salesforce", customer(currency="GBP")), golden)
    assert (edited.envelope.data.currency, edited.stripped) == ("EUR", ("currency (currency) owned by stripe",))  # type: ignore[union-attr]


def test_reject_rules_raise_a_policy_violation() -> None:
    rules = [*RULES, OwnershipRule("customer", "profile", ("crm",), on_violation="reject")]
    policy = OwnershipPolicy(rules, {"salesforce": "crm", "stripe": "billing"})
    with pytest.raises(PolicyViolation, match="salesforce is the system of record"):
        policy.check_source(envelope("stripe", customer(name="Changed")), customer(name="Acme"))


def test_fields_owned_by_the_target_are_not_sent_to_it() -> None:
    policy = OwnershipPolicy(RULES, {"stripe": "billing", "netsuite": "erp"})
    event = envelope("stripe", customer(dimensions={"terms": "net15"}))
    assert policy.for_target(event, "netsuite").data.dimensions == {}  # type: ignore[union-attr]
    assert policy.for_target(event, "stripe").data.dimensions == {"terms": "net15"}  # type: ignore[union-attr]


def test_a_target_without_the_record_is_seeded_with_what_its_birth_system_could_own() -> None:
    """Salesforce owns the profile, but a customer born in Stripe (billing stands in for the CRM)
    reaches it whole when Salesforce has nothing yet; terms typed into a CRM never reach the ERP."""
    policy = OwnershipPolicy(RULES, {"salesforce": "crm", "stripe": "billing", "netsuite": "erp"})
    born_in_stripe = envelope("stripe", customer(phone="+1 555 0100", dimensions={"terms": "net15"}))
    assert policy.for_target(born_in_stripe, "salesforce").data.phone is None  # type: ignore[union-attr]
    seeded = policy.for_target(born_in_stripe, "salesforce", held=False).data
    assert seeded.phone == "+1 555 0100"  # type: ignore[union-attr]
    assert policy.for_target(born_in_stripe, "netsuite", held=False).data.dimensions == {}  # type: ignore[union-attr]
    born_in_salesforce = envelope("salesforce", msgspec.structs.replace(
        customer(dimensions={"terms": "Net 30"}), id="customer/salesforce/001A"))
    assert policy.for_target(born_in_salesforce, "netsuite", held=False).data.dimensions == {}  # type: ignore[union-attr]


def test_routes_skip_the_source_and_undeliverable_targets() -> None:
    router = Router(list(crossledger_routes()), {"payment.settled": ["netsuite", "stripe"]}, {"netsuite", "stripe"},
                    Roles({"stripe": "billing", "netsuite": "erp"}))
    assert router.targets("invoice.issued", "stripe") == ["netsuite"]
    assert router.targets("payment.settled", "stripe") == ["netsuite"]
    assert router.targets("invoice.issued", "netsuite") == []
    assert Router(list(crossledger_routes()), {}, set()).targets("invoice.issued", "stripe") == []


@pytest.mark.parametrize(("billing", "erp"), [("stripe", "netsuite"), ("stripe", "business_central"),
                                              ("zuora", "netsuite"), ("zuora", "business_central")])
def test_the_routes_name_roles_so_every_billing_and_erp_pair_is_routed_alike(billing: str, erp: str) -> None:
    configured = {"salesforce": "crm", billing: "billing", erp: "erp", "zendesk": "support"}
    takes = {name: connector.takes for name, connector in load_plugins().connectors.items()
             if isinstance(connector, TakesSomeEvents)}
    router = Router(list(crossledger_routes()), {}, set(configured), Roles(configured), takes)
    assert router.targets("invoice.issued", billing) == [erp, "salesforce"]
    assert router.targets("payment.settled", billing) == [erp]
    assert router.targets("customer.upserted", "salesforce") == [billing, erp, "zendesk"]
    assert router.targets("customer.upserted", erp) == ["salesforce", billing]
    # Business Central keeps no refunds or subscriptions: routes to the ERP leave it out of those.
    keeps = erp == "netsuite"
    assert router.targets("refund.issued", billing) == ([erp] if keeps else [])
    assert router.targets("subscription.created", billing) == ([erp, "zendesk"] if keeps else ["zendesk"])


def test_topology_chooses_among_connectors_of_one_kind_and_only_among_them() -> None:
    kinds = {"stripe": "billing", "zuora": "billing", "netsuite": "erp"}
    assert Roles(kinds).system("billing") == "stripe"  # the first configured, without a choice
    roles = Roles(kinds, {"billing": "zuora"})
    assert (roles.system("billing"), roles.role_of("zuora"), roles.role_of("stripe")) == ("zuora", "billing", None)
    router = Router(list(crossledger_routes()), {}, set(kinds), roles)
    assert router.targets("payment.settled", "zuora") == ["netsuite"]
    assert router.targets("payment.settled", "stripe") == []  # not the billing system of this topology
    assert router.targets("customer.upserted", "netsuite") == ["zuora"]
    with pytest.raises(ConfigError, match=r"\[topology\] billing = 'netsuite': not a configured billing connector"):
        Roles(kinds, {"billing": "netsuite"})
    with pytest.raises(ConfigError, match=r"\[topology\] ledger: not a system kind"):
        Roles(kinds, {"ledger": "netsuite"})
