"""What a connector's author hands the contract suite: a :class:`ContractKit`.

The suite (:mod:`crossledger.testing.contract`) is generic: it starts the connector's own sandbox on
loopback, builds a :class:`~crossledger.plugins.types.Context` from the sandbox's settings, and
drives the connector over real HTTP. The kit supplies only what the suite cannot know: how the
system signs its webhooks, which real payloads to parse, and where records show in the sandbox's
``/_sandbox/state``. Example, for a system that signs like Zendesk::

    class AcmeKit(ContractKit):
        connector = AcmeConnector()
        record_state_key = "organizations"

        def sign(self, body, secret, timestamp):
            return acme_signature_headers(body, secret, timestamp)

        def with_secrets(self, settings, current, previous):
            return {**settings, "webhook_secret": current, "previous_webhook_secret": previous}

        def webhook_samples(self):
            return [path.read_bytes() for path in FIXTURES.glob("webhook_*.json")]

    class TestAcmeContract(ConnectorContract):
        kit = AcmeKit()

Every hook has a default that fits a customer-syncing system with a timestamped HMAC scheme; a kit
overrides only what differs. The suite reads nothing else, so this class is the whole interface.
"""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from crossledger.canonical import Customer, Entity, Envelope, new_envelope
from crossledger.plugins.connector import Connector

Headers = dict[str, str]


@dataclass(frozen=True)
class SignatureVector:
    """A documented signing example: these headers on this body, with this secret, at ``now`` (Unix
    seconds), are ``valid`` or not."""

    secret: str
    headers: Headers
    body: bytes
    now: float
    valid: bool
    source: str = ""


class ContractKit:
    """Override what your connector's capabilities need; the defaults fit a customer-syncing system."""

    connector: ClassVar[Connector]

    # -- webhooks (Capability.WEBHOOKS) ------------------------------------------------------------
    max_signature_age_s: ClassVar[float | None] = 300.0
    """How old a signed timestamp may be; None when the scheme signs no timestamp (no stale test)."""

    signature_vectors: ClassVar[list[SignatureVector]] = []
    """The system's documented test vectors, checked against ``verify_webhook`` as they are."""

    signs_body: ClassVar[bool] = True
    """False when the scheme authenticates the sender without signing the body (the suite then does
    not expect an altered body to be refused; a wrong secret still must be)."""

    def sign(self, body: bytes, secret: str, timestamp: float) -> Headers:
        """The headers with which the system would deliver ``body`` signed with ``secret`` at ``timestamp``."""
        raise NotImplementedError("override ContractKit.sign: the connector takes webhooks")

    def with_secrets(self, settings: dict[str, Any], current: str, previous: str | None) -> dict[str, Any]:
        """``settings`` configured with the ``current`` webhook secret and, during a roll, the ``previous`` one."""
        raise NotImplementedError("override ContractKit.with_secrets: the connector takes webhooks")

    def carry_secret(self, body: bytes, secret: str) -> bytes:
        """``body`` as the system sends it when configured with ``secret``, for a scheme that carries
        the secret in the body rather than signing it (Business Central echoes its subscription's
        ``clientState`` in every notification; ``sign`` then adds no header). Unchanged by default.
        The suite applies it before ``sign``, to every body it delivers with a secret."""
        return body

    def webhook_samples(self) -> list[bytes]:
        """Webhook bodies made from the system's real example payloads; each must parse, and together
        they must yield canonical changes that keep the accounting invariants."""
        return []

    def signed_sample(self) -> bytes:
        """The body the signature checks sign and tamper with (default: the first webhook sample)."""
        samples = self.webhook_samples()
        if not samples:
            raise NotImplementedError("the kit's webhook_samples() is empty: give at least one real webhook body")
        return samples[0]

    def new_secret(self) -> str:
        """A fresh webhook secret in the form the system issues them (override for a prefix such as
        Stripe's ``whsec_``, or an encoding the scheme needs)."""
        return f"contract-{secrets.token_hex(16)}"

    # -- delivery (Capability.DELIVER) -------------------------------------------------------------
    record_state_key: ClassVar[str] = "customers"
    """Where the records the sample events create show in the sandbox's ``/_sandbox/state``."""

    def sample_event(self, n: int, *, name: str | None = None, at: datetime | None = None) -> Envelope:
        """A canonical event this connector delivers, creating the ``n``-th distinct record; the same
        ``n`` with another ``name`` (and a later ``at``) is an update of that record. The default is a
        ``customer.upserted`` from a system called ``origin``."""
        subject = f"customer/origin/contract-{n}"
        return new_envelope(
            type="customer.upserted",
            source="origin",
            source_event_id=f"evt-{n}-{name or 'first'}",
            data=Customer(id=subject, name=name or f"Contract Customer {n}", email=f"c{n}@example.com",
                          currency="USD"),
            occurred_at=at or datetime(2026, 1, 1, tzinfo=UTC),
        )

    def records_in(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The sample events' records in the sandbox's state (default: ``state[record_state_key]``,
        a list or a dict keyed by id)."""
        found = state.get(self.record_state_key, [])
        return list(found.values()) if isinstance(found, dict) else list(found)

    def shows(self, record: dict[str, Any], name: str) -> bool:
        """Whether a record in the state carries the sample's ``name`` (to see an update land)."""
        return name in record.values()

    def record_id(self, record: dict[str, Any]) -> str:
        """A record's id, the same whether it comes from ``/_sandbox/state`` or ``Connector.records``
        (default: ``str(record["id"])``)."""
        return str(record["id"])

    def dependency(self, entity_type: str, canonical_id: str) -> Entity | None:
        """The hub's golden record of something a sample event depends on, when ``plan`` raises
        ``MissingDependency(entity_type, canonical_id)``; the suite delivers it first, as the hub does.
        The default makes a Customer for a missing customer and knows nothing else."""
        if entity_type != "customer":
            return None
        return Customer(id=canonical_id, name=f"Customer {canonical_id.rsplit('/', 1)[-1]}", currency="USD")

    # -- faults ------------------------------------------------------------------------------------
    retry_after_on_429: ClassVar[bool] = True
    """Whether the system's 429 carries ``Retry-After`` (Stripe's does not): then ``classify`` must
    report it as the error's ``retry_after``."""

    # -- listing (Capability.FETCH) ----------------------------------------------------------------
    list_entity_type: ClassVar[str] = "customer"
    """The canonical type ``Connector.records`` is asked for after the sample events made some."""

    changed_since_lag_s: ClassVar[float] = 0.0
    """How long after a change the system's "changed since" filter first lists it (Zendesk's
    incremental export shows nothing of its last minute); the suite checks ``records_page(since=...)``
    only when it is 0, as it waits for no system."""

    def create_records(self, settings: dict[str, Any], numbers: range) -> None:
        """For a connector that lists but does not deliver: create one record per number in the
        sandbox through the system's own API (``settings`` are the sandbox's connector settings), so
        there is something to page through. Connectors that deliver need not override it."""
        raise NotImplementedError("override ContractKit.create_records: the connector lists records but does not "
                                  "deliver, so the suite cannot make any")
