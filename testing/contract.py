"""The connector contract suite: what every connector, built-in or third-party, must do.

Subclass :class:`ConnectorContract` in a test module and hand it your connector's kit
(:class:`~crossledger.testing.kit.ContractKit`)::

    from crossledger.testing import ConnectorContract

    class TestAcmeContract(ConnectorContract):
        kit = AcmeKit()

The suite starts the connector's own sandbox once for the class, on loopback, builds a
:class:`~crossledger.plugins.types.Context` the way the hub does (settings from
``sandbox.connector_settings(url)`` validated by ``settings_model``; an ``httpx.Client`` with a
1 s timeout, and ``timeout_s`` set to 1 s when the settings model has one; ``time.time``), and
drives the connector over real HTTP through the hub's own delivery pipeline, over a store in memory
(:mod:`crossledger.testing.delivery`). Faults are cleared after every test, and each test uses its
own record numbers, so tests do not interfere.

=================  =============================================================================
always             name, kind, version, capabilities and settings model are declared properly;
                   every declared capability's methods are implemented; the sandbox serves
                   ``/_sandbox/state`` and ``/_sandbox/faults``; its settings validate
webhooks           a correct signature passes; a tampered body, a wrong secret or no signature
                   fail with SignatureError; a stale one too; during a secret roll both secrets
                   pass; the documented vectors hold; the samples parse into events with stable
                   ids and valid canonical changes; garbage is a PayloadError
deliver            one key twice makes one record; an update changes the same record; a key
                   reused with another payload never makes a second record; 429 is rate_limited
                   (with Retry-After); 500 and 503 are retryable; a timeout after the write
                   committed is ambiguous, and probe finds the write (still one record)
poll               ``poll`` follows its cursor to the end, and its events make valid changes
fetch              ``records`` pages through every record; ``fetch`` reads a listed record
list               ``project`` gives every listed record a Projection under its own id; a
                   :class:`~crossledger.plugins.connector.ListsPages` connector's pages chain by
                   their cursors to what ``records`` lists, and (for a type in ``lists_since``)
                   ``records_page(since=...)`` lists a record updated after that moment and not
                   one left untouched since before it
=================  =============================================================================

A test whose capability the connector does not declare is skipped, with the reason. A failure says
what the connector did and what the hub needs instead.
"""

import contextlib
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest
from crossledger.canonical import Envelope, violations
from crossledger.canonical.versions import CURRENT_VERSIONS
from crossledger.core.store import Store, open_store
from crossledger.plugins.connector import BaseConnector, Connector, ListsPages
from crossledger.plugins.errors import Category, PayloadError, SignatureError
from crossledger.plugins.types import (
    Capability,
    Change,
    Context,
    Headers,
    InboundEvent,
    Operation,
    PollResult,
    Projection,
    SystemKind,
)
from crossledger.testing.delivery import Delivery
from crossledger.testing.kit import ContractKit
from crossledger.testing.sandboxes import RunningSandbox, serve_sandbox
from pydantic import BaseModel, ValidationError

CLIENT_TIMEOUT_S = 15.0
"""The connector's HTTP timeout in the suite: patient, so a loaded machine's slow answer is no failure."""

IMPATIENT_TIMEOUT_S = 2.0
"""The timeout in the one test that holds an answer back: short, so the held answer times out quickly."""

HELD_ANSWER_MS = int((IMPATIENT_TIMEOUT_S + 1.0) * 1000)
"""How long ``timeout_after_commit`` holds an answer back: well past the impatient timeout."""

UPDATED_AT = datetime(2026, 1, 2, tzinfo=UTC)
"""When the sample events' updates happen: after the kit's default ``at``."""

NAME = re.compile(r"[a-z][a-z0-9_]*")

IMPLEMENTED_BY: dict[Capability, tuple[str, ...]] = {
    Capability.WEBHOOKS: ("verify_webhook", "parse_webhook", "to_canonical"),
    Capability.DELIVER: ("plan", "execute"),
    Capability.PROBE: ("probe",),
    Capability.POLL: ("poll", "to_canonical"),
    Capability.FETCH: ("fetch", "records"),
    Capability.SANDBOX: ("sandbox",),
    Capability.LIST: ("records", "project"),
    Capability.RECOVER: ("recover",),
}
"""The methods each capability promises, which must not be :class:`BaseConnector`'s "not supported"."""

RETRYABLE_FAULTS = {"http_500": 500, "down": 503}

# Each test's own record numbers (``kit.sample_event(n)``), so no test sees another's records.
IDEMPOTENT, UPDATED, KEY_REUSED, RATE_LIMITED, TIMED_OUT, FETCHED = 1, 2, 3, 4, 5, 6
SERVER_ERROR = {"http_500": 7, "down": 8}
LISTED, POLLED = range(10, 15), range(20, 23)
SINCE_UNTOUCHED, SINCE_UPDATED = 30, 31

SINCE_ROUNDING_S = 2
"""Whole seconds between the last change of the untouched record and ``since`` in the "changed since"
test: systems stamp changes in whole seconds, and a connector may step its filter back a second
(an exclusive ``updatedDate.GT:`` made inclusive), so a record older than that is never listed."""

MAX_PAGES = 50
"""Pages the suite follows ``Page.next`` for before it calls the cursor endless."""

MAX_POLLS = 50
"""Polls the suite follows ``has_more`` for before it calls the cursor endless."""


@dataclass(repr=False)
class ContractRun:
    """What one contract test works with: the kit, the running sandbox, and the connector bound to it
    in the hub's delivery pipeline (``delivery``: ``plan``, ``deliver``, ``execute``, ``failure``,
    ``probe``, ``classify``, ``key``, ``refs``)."""

    kit: ContractKit
    sandbox: RunningSandbox
    settings: dict[str, Any]
    http: httpx.Client
    delivery: Delivery

    def __repr__(self) -> str:  # short, since pytest prints it with every failure
        return f"ContractRun({self.connector.name} against {self.sandbox.url})"

    @property
    def connector(self) -> Connector:
        return self.kit.connector

    @property
    def ctx(self) -> Context:
        return self.delivery.ctx

    def context(self, settings: dict[str, Any], clock: Callable[[], float] = time.time) -> Context:
        """A context with other ``settings`` (and ``clock``), on the same client."""
        return Context(settings=_validated(self.connector, settings), http=self.http, clock=clock)

    def records(self) -> list[dict[str, Any]]:
        """The kit's records in the sandbox's state, now."""
        return self.kit.records_in(self.sandbox.state())

    def record_ids(self) -> list[str]:
        return [self.kit.record_id(record) for record in self.records()]

    def new_records(self, before: list[str]) -> list[str]:
        """The records that appeared since ``before`` (``record_ids()`` taken earlier)."""
        return sorted((Counter(self.record_ids()) - Counter(before)).elements())

    # -- webhooks ------------------------------------------------------------------------------------
    def secured(self, current: str, previous: str | None = None) -> Context:
        """A context whose settings hold the ``current`` (and ``previous``) webhook secret."""
        return self.context(self.kit.with_secrets(dict(self.settings), current, previous))

    def signed(self, body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
        return dict(self.kit.sign(self.kit.carry_secret(body, secret), secret, time.time() if at is None else at))

    def sent(self, body: bytes, secret: str, at: float | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and body of ``body`` delivered by the system configured with ``secret``."""
        return self.signed(body, secret, at), self.kit.carry_secret(body, secret)

    def accepts(self, ctx: Context, headers: Headers, body: bytes, what: str) -> None:
        verdict = _verdict(self.connector, ctx, headers, body)
        assert verdict is None, f"verify_webhook refused {what}: {verdict!r}"

    def refuses(self, ctx: Context, headers: Headers, body: bytes, what: str) -> None:
        verdict = _verdict(self.connector, ctx, headers, body)
        assert verdict is not None, (
            f"verify_webhook accepted {what}: anyone could then post events to the hub. Compare the signature "
            "over the raw body bytes with the configured secret(s) (hmac.compare_digest), and check the "
            "timestamp's age when the scheme signs one")
        assert isinstance(verdict, SignatureError), (
            f"verify_webhook raised {verdict!r} for {what}, not SignatureError: the hub answers 401 only for "
            "SignatureError; anything else is a 500, which the sender retries")


class ConnectorContract:
    """Subclass with ``kit = YourKit()``; pytest collects the subclass when its name starts with ``Test``."""

    kit: ClassVar[ContractKit]

    # -- fixtures ------------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def contract_sandbox(cls) -> Iterator[RunningSandbox]:
        """The connector's sandbox, served once for the whole class."""
        _needs(cls.kit, Capability.SANDBOX, "the suite drives the connector over HTTP against its sandbox")
        running = serve_sandbox(cls.kit.connector.sandbox())
        yield running
        running.stop()

    @pytest.fixture(scope="class")
    @classmethod
    def contract_store(cls) -> Iterator[Store]:
        """The hub's store for the whole class, as the sandbox is: every record the hub wrote there
        has its cross-reference, as in a hub with one store (a poll then reads no write of the hub's
        that the hub does not know)."""
        store = open_store("sqlite:///:memory:")
        yield store
        store.close()

    @pytest.fixture
    def contract(self, contract_sandbox: RunningSandbox, contract_store: Store) -> Iterator[ContractRun]:
        """The connector bound to the sandbox in a pipeline of its own over the class's store; faults
        cleared afterwards."""
        with _bound(self.kit, contract_sandbox, contract_store, CLIENT_TIMEOUT_S) as run:
            yield run

    @pytest.fixture
    def impatient_contract(self, contract_sandbox: RunningSandbox, contract_store: Store) -> Iterator[ContractRun]:
        """As ``contract``, with a short HTTP timeout: for the test that holds an answer back."""
        with _bound(self.kit, contract_sandbox, contract_store, IMPATIENT_TIMEOUT_S) as run:
            yield run

    # -- declaration ---------------------------------------------------------------------------------
    def test_name_is_a_plain_lowercase_word(self) -> None:
        name = getattr(self.kit.connector, "name", None)
        assert isinstance(name, str) and NAME.fullmatch(name), (
            f"connector name {name!r} must be lowercase letters, digits and '_', starting with a letter: "
            "it appears in canonical ids (customer/<name>/<id>), external keys (customer.<name>.<id>), "
            "webhook URLs (/webhooks/<name>) and config sections ([connectors.<name>])")

    def test_declares_kind_version_and_capabilities(self) -> None:
        connector = self.kit.connector
        kind, version = getattr(connector, "kind", None), getattr(connector, "version", None)
        capabilities = getattr(connector, "capabilities", None)
        assert isinstance(kind, SystemKind), (
            f"kind is {kind!r}: declare one of SystemKind ({', '.join(k.name for k in SystemKind)}); the "
            "system-of-record rules name owners by kind")
        assert isinstance(version, str) and version.strip(), f"version is {version!r}: declare e.g. '1.0.0'"
        assert isinstance(capabilities, frozenset) and all(isinstance(c, Capability) for c in capabilities), (
            f"capabilities is {capabilities!r}: declare a frozenset of Capability members")

    def test_settings_model_is_a_pydantic_model(self) -> None:
        model = getattr(self.kit.connector, "settings_model", None)
        assert isinstance(model, type) and issubclass(model, BaseModel), (
            f"settings_model is {model!r}: declare a pydantic BaseModel subclass; the hub validates "
            "[connectors.<name>] with it and reports errors by field")

    def test_declared_capabilities_are_implemented(self) -> None:
        connector_type = type(self.kit.connector)
        missing = [f"Capability.{capability.name} needs {method}()"
                   for capability in sorted(self.kit.connector.capabilities)
                   for method in IMPLEMENTED_BY.get(capability, ())
                   if getattr(connector_type, method, None) is getattr(BaseConnector, method)]
        assert not missing, ("declared capabilities rely on BaseConnector's 'not supported' defaults: "
                             + "; ".join(missing) + ". Implement them or drop the capability")

    def test_sandbox_settings_validate(self, contract_sandbox: RunningSandbox) -> None:
        model = self.kit.connector.settings_model
        try:
            model.model_validate(contract_sandbox.settings())
        except ValidationError as error:
            raise AssertionError(f"sandbox.connector_settings(url) does not validate against "
                                 f"{model.__name__}: {error}") from None

    def test_sandbox_serves_state_and_faults(self, contract_sandbox: RunningSandbox) -> None:
        assert isinstance(contract_sandbox.state(), dict)
        contract_sandbox.fault(mode="http_500", count=1)
        answer = contract_sandbox.control.get(f"{contract_sandbox.url}/contract-fault-check")
        assert answer.status_code == 500, (
            f"after POST /_sandbox/faults {{'mode': 'http_500'}} a request answered {answer.status_code}: "
            "build the sandbox app with crossledger.plugins.emulator.build_app, which applies the faults")
        contract_sandbox.clear_faults()

    # -- webhooks ------------------------------------------------------------------------------------
    def test_webhook_signed_correctly_is_accepted(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook signatures")
        secret, body = self.kit.new_secret(), self.kit.signed_sample()
        contract.accepts(contract.secured(secret), *contract.sent(body, secret),
                         "a sample signed just now with the configured secret")

    def test_webhook_tampering_is_refused(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook signatures")
        secret, body = self.kit.new_secret(), self.kit.signed_sample()
        ctx = contract.secured(secret)
        contract.refuses(ctx, {}, body, "a body with no signature headers")
        contract.refuses(ctx, *contract.sent(body, self.kit.new_secret()), "a body signed with another secret")
        if self.kit.signs_body:
            headers, sent = contract.sent(body, secret)
            contract.refuses(ctx, headers, _altered(sent), "a body changed after signing (one character)")
            contract.refuses(ctx, headers, sent + b" ", "a body changed after signing (a byte appended)")

    def test_webhook_stale_signature_is_refused(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook signatures")
        max_age = self.kit.max_signature_age_s
        if max_age is None:
            pytest.skip("the kit says the scheme signs no timestamp (max_signature_age_s is None)")
        secret, body = self.kit.new_secret(), self.kit.signed_sample()
        stale = contract.sent(body, secret, at=time.time() - max_age - 60)
        contract.refuses(contract.secured(secret), *stale,
                         f"a signature made {max_age + 60:.0f} s ago (older than the {max_age:.0f} s allowed): a "
                         "captured delivery could be replayed")

    def test_webhook_previous_secret_works_during_a_roll(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook signatures")
        old, new, body = self.kit.new_secret(), self.kit.new_secret(), self.kit.signed_sample()
        rolling = contract.secured(new, old)
        contract.accepts(rolling, *contract.sent(body, new), "the new secret while the old one is still set")
        contract.accepts(rolling, *contract.sent(body, old),
                         "the previous secret during a roll (deliveries signed before the roll are still in flight)")
        contract.refuses(rolling, *contract.sent(body, self.kit.new_secret()), "a third secret during a roll")
        contract.refuses(contract.secured(new), *contract.sent(body, old),
                         "the old secret once the roll is over (previous secret removed)")

    def test_webhook_documented_vectors(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook signatures")
        if not self.kit.signature_vectors:
            pytest.skip("the kit lists no documented signature vectors")
        for vector in self.kit.signature_vectors:
            ctx = contract.context(self.kit.with_secrets(dict(contract.settings), vector.secret, None),
                                   clock=_stopped_clock(vector.now))
            what = f"the documented vector {vector.source or vector.headers}"
            if vector.valid:
                contract.accepts(ctx, vector.headers, vector.body, what)
            else:
                contract.refuses(ctx, vector.headers, vector.body, what)

    def test_webhook_samples_become_valid_canonical_changes(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook parsing")
        samples = self.kit.webhook_samples()
        assert samples, "the kit's webhook_samples() is empty: give real webhook bodies from the system's docs"
        secret = self.kit.new_secret()
        ctx, changes = contract.secured(secret), 0
        for index, sample in enumerate(samples):
            headers, body = contract.sent(sample, secret)
            contract.accepts(ctx, headers, body, f"webhook sample {index}")
            events = _parsed(contract.connector, ctx, headers, body, index)
            reply = contract.connector.webhook_reply(events)
            assert isinstance(reply, tuple) and len(reply) == 3 and 200 <= reply[0] < 300, (
                f"webhook_reply for sample {index} is {reply!r}: it must be (2xx status, content type, body bytes)")
            for event in events:
                changes += len(_canonical(contract, ctx, event, f"sample {index}"))
        assert changes, ("no webhook sample produced a canonical change: give samples of the events the "
                         "connector translates (to_canonical returned [] for all of them)")

    def test_webhook_garbage_is_a_payload_error(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.WEBHOOKS, "webhook parsing")
        # The headers of a real delivery (parsers may read them), on bodies that are not one.
        headers = contract.signed(self.kit.signed_sample(), self.kit.new_secret())
        for garbage in (b"this is not a webhook", b"\xff\xfe\x00<{["):
            try:
                events = contract.connector.parse_webhook(contract.ctx, headers, garbage)
            except PayloadError:
                continue
            except Exception as error:
                raise AssertionError(
                    f"parse_webhook({garbage!r}) raised {error!r}, not PayloadError: the hub answers 400 for a "
                    "PayloadError; anything else is a 500, which the sender retries forever") from error
            raise AssertionError(f"parse_webhook({garbage!r}) returned {events!r}: a body that is not the "
                                 "system's format must raise PayloadError")

    # -- delivery ------------------------------------------------------------------------------------
    def test_delivering_twice_with_one_key_makes_one_record(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.DELIVER, "delivery")
        delivery, event = contract.delivery, self.kit.sample_event(IDEMPOTENT)
        ops = delivery.plan(event)
        _planned(ops, event)
        again = delivery.plan(event)
        assert [(op.name, op.canonical_id) for op in again] == [(op.name, op.canonical_id) for op in ops], (
            "planning one event twice gave other operation names or canonical ids: both are part of the "
            "idempotency key, so they must be stable for one effect")
        before = contract.record_ids()
        first = [delivery.execute(op, delivery.key(event, op)) for op in ops]
        made = contract.new_records(before)
        assert len(made) == 1, _made_message(self.kit, event, made)
        second = [delivery.execute(op, delivery.key(event, op)) for op in ops]
        assert contract.new_records(before) == made, (
            f"executing the same operations again with the same idempotency keys made another record "
            f"({contract.new_records(before)} where there was {made}): a redelivery after a lost answer "
            "must not duplicate. Use the system's idempotency mechanism (an Idempotency-Key header, an "
            "upsert by external id) with the key")
        assert [o.external_id for o in second] == [o.external_id for o in first], (
            f"the repeat answered other ids ({[o.external_id for o in second]}) than the first execute "
            f"({[o.external_id for o in first]}): it must report the record it wrote the first time")

    def test_update_changes_the_same_record(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.DELIVER, "delivery")
        delivery = contract.delivery
        first = delivery.deliver(self.kit.sample_event(UPDATED))
        before = contract.record_ids()
        renamed = f"Renamed Contract {UPDATED}"
        update = self.kit.sample_event(UPDATED, name=renamed, at=UPDATED_AT)
        second = delivery.deliver(update)
        assert [o.external_id for o in second] == [o.external_id for o in first], (
            f"an update of {update.subject} was written to {[o.external_id for o in second]}, not to the record "
            f"made first ({[o.external_id for o in first]}): plan must update the record refs.external_id "
            "names, or upsert by the external key")
        assert contract.new_records(before) == [], f"the update made new records {contract.new_records(before)}"
        assert any(self.kit.shows(record, renamed) for record in contract.records()), (
            f"after delivering the update no record in state[{self.kit.record_state_key!r}] shows {renamed!r}: "
            "the update did not reach the system")

    def test_reused_key_with_another_payload_never_duplicates(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.DELIVER, "delivery")
        delivery, event = contract.delivery, self.kit.sample_event(KEY_REUSED)
        ops = delivery.plan(event)
        keys = [delivery.key(event, op) for op in ops]
        outcomes = [delivery.execute(op, key) for op, key in zip(ops, keys, strict=True)]
        before = contract.record_ids()
        # Planned without the cross-reference the first write stored (as when the hub lost it), the other
        # payload is a create again, unless the connector finds the record by its external key itself:
        # either way the reused key is all that stands between it and a second record.
        other_event = self.kit.sample_event(KEY_REUSED, name=f"Other Contract {KEY_REUSED}", at=UPDATED_AT)
        with Delivery(self.kit, contract.ctx) as forgetful:
            other = _planned(forgetful.plan(other_event), other_event)
        for op, key, outcome in zip(other, keys, outcomes, strict=False):
            try:
                again = self.kit.connector.execute(contract.ctx, op, key)
            except Exception as error:
                failure = delivery.classify(error)
                assert not failure.category.retryable, (
                    f"an idempotency key reused with another payload failed as {failure.category} ({failure}): "
                    "the same key will never succeed with another payload, so it must be a non-retryable "
                    "category (data), or the hub retries it until it dead-letters")
                continue
            assert again.external_id == outcome.external_id, (
                f"an idempotency key reused with another payload wrote {again.external_id}, not the record the "
                f"key first wrote ({outcome.external_id})")
        assert contract.new_records(before) == [], (
            f"an idempotency key reused with another payload made new records {contract.new_records(before)}")

    # -- faults --------------------------------------------------------------------------------------
    def test_rate_limit_is_classified_with_retry_after(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.DELIVER, "delivery under faults")
        delivery, event = contract.delivery, self.kit.sample_event(RATE_LIMITED)
        [op, *_] = _planned(delivery.plan(event), event)
        before = contract.record_ids()
        contract.sandbox.fault(mode="http_429", retry_after=2, count=1)
        failure = delivery.failure(op, delivery.key(event, op), "the system answered 429 Too Many Requests")
        assert failure.category is Category.RATE_LIMITED, (
            f"a 429 was classified {failure.category} ({failure}): it must be rate_limited, so the hub waits "
            "as told and spends no retry (crossledger.plugins.http.classify_http does this)")
        if self.kit.retry_after_on_429:
            assert failure.retry_after is not None and abs(failure.retry_after - 2) <= 1, (
                f"the 429 said Retry-After: 2, the error says retry_after={failure.retry_after}: pass it on "
                "(crossledger.plugins.http.retry_after_seconds reads the header)")
        delivery.deliver(event)
        assert len(contract.new_records(before)) == 1, _made_message(self.kit, event, contract.new_records(before))

    @pytest.mark.parametrize("mode", sorted(RETRYABLE_FAULTS))
    def test_server_errors_are_retryable(self, contract: ContractRun, mode: str) -> None:
        _needs(self.kit, Capability.DELIVER, "delivery under faults")
        delivery, event = contract.delivery, self.kit.sample_event(SERVER_ERROR[mode])
        _planned(delivery.plan(event), event)  # its dependencies delivered: the fault meets its own write
        before = contract.record_ids()
        status = RETRYABLE_FAULTS[mode]
        # Through the hub, which keeps the failure on record: its retry sends the next key, as it must
        # where the system stores a 500 under the key it came for (Stripe, Zuora) and replays it.
        failure = delivery.failing(event, lambda: contract.sandbox.fault(mode=mode, count=1),
                                   f"the system answered HTTP {status}")
        assert failure.category.retryable, (
            f"HTTP {status} was classified {failure.category} ({failure}): a server error passes, so it must "
            "be retryable (transient, or target_down for 502-504), not dead-lettered")
        delivery.deliver(event)
        assert len(contract.new_records(before)) == 1, _made_message(self.kit, event, contract.new_records(before))

    def test_timeout_after_commit_is_ambiguous_and_probe_finds_the_write(
            self, impatient_contract: ContractRun) -> None:
        _needs(self.kit, Capability.DELIVER, "delivery under faults")
        contract = impatient_contract
        delivery, event = contract.delivery, self.kit.sample_event(TIMED_OUT)
        [op, *_] = _planned(delivery.plan(event), event)
        key = delivery.key(event, op)
        before = contract.record_ids()
        contract.sandbox.fault(mode="timeout_after_commit", latency_ms=HELD_ANSWER_MS, count=1)
        failure = delivery.failure(op, key, f"the system held its answer past the {IMPATIENT_TIMEOUT_S} s timeout")
        assert failure.category is Category.AMBIGUOUS, (
            f"a timeout after the request was sent was classified {failure.category} ({failure}): the write "
            "may have landed, so it must be ambiguous (the hub then probes before sending again); "
            "crossledger.plugins.http.classify_http does this for httpx timeouts")
        made = contract.new_records(before)
        assert len(made) == 1, f"the sandbox committed the write before holding its answer, yet shows {made}"
        if Capability.PROBE in self.kit.connector.capabilities:
            found = delivery.probe(op, key)
            assert found is not None, (
                f"probe({op.name}) said the write did not land, but the sandbox holds it ({made}): the hub "
                "would send it again and, unless the system dedupes it, make a duplicate. Read the record back "
                "(by its external key or the idempotency key) and return its Outcome")
        else:
            delivery.execute(op, key)  # without probe, the hub sends again with the same key at once
        assert contract.new_records(before) == made, (
            f"the retry after a timeout made another record ({contract.new_records(before)} where there was "
            f"{made}): the repeat with the same idempotency key must find the first write")

    # -- listing -------------------------------------------------------------------------------------
    def test_records_pages_through_everything(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.FETCH, "listing records")
        _make_records(contract, LISTED)
        expected = set(contract.record_ids())
        listed = _listed(contract, page_size=2)
        ids = [self.kit.record_id(record) for record in listed]
        duplicated = sorted(i for i, count in Counter(ids).items() if count > 1)
        assert not duplicated, (f"records(page_size=2) yielded {duplicated} more than once: the next page must "
                                "start after the last record of this one")
        missing = sorted(expected - set(ids))
        assert not missing, (
            f"records({self.kit.list_entity_type!r}, page_size=2) yielded {len(ids)} of the {len(expected)} records "
            f"in the sandbox, missing {missing[:10]}: follow the system's pagination (next cursor, offset, "
            "has_more) until the last page")
        if isinstance(contract.connector, ListsPages):
            _pages_chain(contract, set(ids))

    def test_listed_records_project_for_reconciliation(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.LIST, "reconciliation")
        entity_type, lists = self.kit.list_entity_type, self.kit.connector.lists
        assert entity_type in lists, (
            f"Capability.LIST declares lists={sorted(lists)!r}, without the kit's list_entity_type {entity_type!r}: "
            "name in `lists` every entity type records() and project() reconcile")
        _make_records(contract, range(FETCHED, FETCHED + 1))
        for record in _listed(contract, page_size=None):
            projection = self.kit.connector.project(entity_type, record)
            if projection is None:
                continue  # outside the books (a draft, a deleted record still listed)
            assert isinstance(projection, Projection) and projection.id == self.kit.record_id(record), (
                f"project({entity_type!r}, record {self.kit.record_id(record)!r}) returned {projection!r}: it must "
                "return a Projection with the record's own id (or None for a record outside the books)")
            odd = {name: value for name, value in projection.values.items()
                   if value is not None and not isinstance(value, str | int)}
            assert not odd, (f"projection values {odd!r} are neither text nor whole numbers: money goes in minor "
                             "units beside its currency, so two systems' values compare exactly")

    def test_records_page_since_lists_what_changed(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.LIST, "reconciliation")
        connector, entity_type = self.kit.connector, self.kit.list_entity_type
        if not isinstance(connector, ListsPages) or entity_type not in connector.lists_since:
            pytest.skip(f"{connector.name} does not list {entity_type!r} by what changed since "
                        "(ListsPages.lists_since): reconciliation reads it in full every time")
        _needs(self.kit, Capability.DELIVER, "the 'changed since' listing (the suite updates a record by delivering)")
        if self.kit.changed_since_lag_s:
            pytest.skip(f"the kit says {connector.name} lists a change only {self.kit.changed_since_lag_s:.0f} s "
                        "after it (changed_since_lag_s): the suite does not wait that long")
        untouched = _made_one(contract, SINCE_UNTOUCHED)
        updated = _made_one(contract, SINCE_UPDATED)
        time.sleep(math.floor(time.time()) + SINCE_ROUNDING_S + 0.05 - time.time())
        moment = datetime.now(UTC)
        renamed = f"Changed Contract {SINCE_UPDATED}"
        contract.delivery.deliver(self.kit.sample_event(SINCE_UPDATED, name=renamed, at=UPDATED_AT))
        listed = _paged_since(contract, moment)
        assert updated in listed, (
            f"records_page({entity_type!r}, since={moment.isoformat()}) left out {updated}, updated after that "
            f"moment: reconciliation would never see the change. Ask the system for what changed (its "
            "last-modified time) at or after since, rounded down to the system's resolution; a filter by "
            "creation time misses every edit")
        assert untouched not in listed, (
            f"records_page({entity_type!r}, since={moment.isoformat()}) listed {untouched}, untouched for "
            f"{SINCE_ROUNDING_S} s before that moment: pass since on to the system's own \"changed since\" "
            "filter, or leave the type out of lists_since (then reconciliation reads it in full)")

    # -- polling -------------------------------------------------------------------------------------
    def test_poll_follows_its_cursor_to_the_end(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.POLL, "polling")
        _make_records(contract, POLLED)
        cursor: str | None = None
        for _ in range(MAX_POLLS):
            try:
                result = self.kit.connector.poll(contract.ctx, cursor)
            except Exception as error:
                raise AssertionError(f"poll(cursor={cursor!r}) failed: {contract.delivery.classify(error)}") from error
            assert isinstance(result, PollResult) and all(isinstance(e, InboundEvent) for e in result.events), (
                f"poll(cursor={cursor!r}) returned {result!r}: it must return a PollResult of InboundEvents")
            for event in result.events:
                _canonical(contract, contract.ctx, event, f"polled with cursor {cursor!r}")
            if not result.has_more:
                return
            assert result.cursor not in (None, cursor), (
                f"poll(cursor={cursor!r}) said has_more but returned the cursor {result.cursor!r}: with more to "
                "read the cursor must move on, or the hub polls the same page forever")
            cursor = result.cursor
        raise AssertionError(f"poll still had more after {MAX_POLLS} calls: has_more must turn False at the end")

    def test_fetch_reads_a_listed_record(self, contract: ContractRun) -> None:
        _needs(self.kit, Capability.FETCH, "fetching records")
        _make_records(contract, range(FETCHED, FETCHED + 1))
        record = _listed(contract, page_size=None)[0]
        wanted = self.kit.record_id(record)
        try:
            fetched = self.kit.connector.fetch(contract.ctx, self.kit.list_entity_type, wanted)
        except Exception as error:
            raise AssertionError(f"fetch({self.kit.list_entity_type!r}, {wanted!r}) failed: "
                                 f"{contract.delivery.classify(error)}") from error
        assert isinstance(fetched, dict) and self.kit.record_id(fetched) == wanted, (
            f"fetch({self.kit.list_entity_type!r}, {wanted!r}) returned {fetched!r}: it must return that record "
            "in the system's JSON form")


# -- helpers ---------------------------------------------------------------------------------------------


def _needs(kit: ContractKit, capability: Capability, what: str) -> None:
    if capability not in kit.connector.capabilities:
        pytest.skip(f"{kit.connector.name} does not declare Capability.{capability.name}: {what} not checked")


def _validated(connector: Connector, settings: dict[str, Any]) -> BaseModel:
    try:
        return connector.settings_model.model_validate(settings)
    except ValidationError as error:
        raise AssertionError(f"the settings do not validate against {connector.settings_model.__name__}: "
                             f"{error}") from None


def _stopped_clock(now: float) -> Callable[[], float]:
    """A clock that always says ``now`` (a documented vector's moment)."""
    return lambda: now


def _verdict(connector: Connector, ctx: Context, headers: Headers, body: bytes) -> Exception | None:
    """What ``verify_webhook`` made of a delivery: None when it accepted it, else what it raised."""
    try:
        connector.verify_webhook(ctx, headers, body)
    except Exception as error:
        return error
    return None


def _altered(body: bytes) -> bytes:
    """``body`` with its middle-most letter or digit changed to another of its kind: the same length,
    still valid UTF-8, most likely still well-formed, and no longer what was signed."""
    middle = len(body) // 2
    for index in sorted(range(len(body)), key=lambda i: abs(i - middle)):
        char = chr(body[index])
        if char.isascii() and char.isalnum():
            replacement = {"9": "0", "z": "a", "Z": "A"}.get(char, chr(body[index] + 1))
            return body[:index] + replacement.encode() + body[index + 1:]
    return body + b"x"


def _parsed(connector: Connector, ctx: Context, headers: Headers, body: bytes, index: int) -> list[InboundEvent]:
    """Parse sample ``index`` twice: the events, whose ids must be stable (the hub dedupes by them)."""
    try:
        events = connector.parse_webhook(ctx, headers, body)
        again = connector.parse_webhook(ctx, headers, body)
    except Exception as error:
        raise AssertionError(f"parse_webhook could not parse webhook sample {index}: {error!r}") from error
    assert isinstance(events, list) and all(isinstance(e, InboundEvent) for e in events), (
        f"parse_webhook returned {events!r} for sample {index}: it must return a list of InboundEvent")
    ids = [event.source_event_id for event in events]
    assert all(isinstance(i, str) and i for i in ids), f"sample {index} parsed into events without ids: {ids}"
    assert ids == [event.source_event_id for event in again], (
        f"parsing sample {index} twice gave other source_event_ids ({ids} then "
        f"{[e.source_event_id for e in again]}): the hub dedupes redeliveries by them, so derive them from the "
        "system's event id, never from a clock or a random number")
    return events


@contextlib.contextmanager
def _bound(kit: ContractKit, sandbox: RunningSandbox, store: Store, timeout_s: float) -> Iterator[ContractRun]:
    """The connector bound to the sandbox over ``store`` with ``timeout_s`` on its HTTP calls; faults
    cleared after."""
    settings = sandbox.settings()
    if "timeout_s" in kit.connector.settings_model.model_fields:
        settings["timeout_s"] = timeout_s
    try:
        with httpx.Client(timeout=timeout_s) as http:
            ctx = Context(settings=_validated(kit.connector, settings), http=http, clock=time.time)
            with Delivery(kit, ctx, store) as delivery:
                yield ContractRun(kit, sandbox, settings, http, delivery)
    finally:
        sandbox.clear_faults()


def _canonical(contract: ContractRun, ctx: Context, event: InboundEvent, origin: str) -> list[Change]:
    """``to_canonical`` of one inbound event, checked the way the hub's ingest checks it."""
    where = f"{event.type} {event.source_event_id} ({origin})"
    try:
        changes = contract.connector.to_canonical(ctx, event, contract.delivery.refs)
    except Exception as error:
        raise AssertionError(f"to_canonical({where}) failed: {contract.delivery.classify(error)}") from error
    assert isinstance(changes, list) and all(isinstance(c, Change) for c in changes), (
        f"to_canonical({where}) returned {changes!r}: it must return a list of crossledger.plugins.Change")
    for change in changes:
        assert change.type in CURRENT_VERSIONS, (
            f"to_canonical({where}) made a change of type {change.type!r}, which is no canonical event type "
            f"({', '.join(sorted(CURRENT_VERSIONS))})")
        kind = change.entity.kind()
        parts = change.entity.id.split("/")
        assert len(parts) >= 3 and parts[0] == kind and all(parts), (
            f"to_canonical({where}) gave a {kind} the id {change.entity.id!r}: canonical ids are "
            f"'{kind}/<system>/<id>' (refs.canonical_id({kind!r}, <system>, <id>))")
        problems = violations(change.entity)
        assert not problems, f"to_canonical({where}) made a {kind} that breaks the invariants: {'; '.join(problems)}"
    again = contract.connector.to_canonical(ctx, event, contract.delivery.refs)
    assert [c.entity.id for c in again] == [c.entity.id for c in changes], (
        f"to_canonical({where}) named other records the second time ({[c.entity.id for c in changes]} then "
        f"{[c.entity.id for c in again]}): ids must come from refs.canonical_id or the record's external key")
    return changes


def _planned(ops: list[Operation], event: Envelope) -> list[Operation]:
    assert ops, (f"plan({event.type} {event.subject}) returned no operations for the kit's sample event: the "
                 "sample must be an event the connector writes (override ContractKit.sample_event)")
    return ops


def _made_message(kit: ContractKit, event: Envelope, made: list[str]) -> str:
    if not made:
        return (f"delivering {event.type} {event.subject} made no new record in the sandbox's "
                f"state[{kit.record_state_key!r}]: either the write did not happen, or the kit's "
                "record_state_key / records_in() look in the wrong place")
    return (f"delivering {event.type} {event.subject} once made {len(made)} records ({made}) in "
            f"state[{kit.record_state_key!r}]; one event must make one record")


def _make_records(contract: ContractRun, numbers: range) -> None:
    """One record per number: delivered as sample events, or made by the kit for a non-delivering connector."""
    if Capability.DELIVER in contract.connector.capabilities:
        for n in numbers:
            contract.delivery.deliver(contract.kit.sample_event(n))
        return
    try:
        contract.kit.create_records(dict(contract.settings), numbers)
    except NotImplementedError as reason:
        pytest.skip(str(reason))


def _pages_chain(contract: ContractRun, expected: set[str]) -> None:
    """A :class:`ListsPages` connector's pages, chained by ``Page.next`` (each cursor plain text that
    moves), list what ``records`` does. (``since`` is checked by ``test_records_page_since_lists_what_changed``;
    how a system filters by it is its own, which a connector's tests check against its sandbox.)"""
    connector, entity_type = contract.connector, contract.kit.list_entity_type
    assert isinstance(connector, ListsPages)
    cursor: str | None = None
    paged: list[str] = []
    for _ in range(len(expected) + 2):
        page = connector.records_page(contract.ctx, entity_type, cursor=cursor, page_size=2)
        assert page.next is None or (isinstance(page.next, str) and page.next != cursor), (
            f"records_page answered the cursor {page.next!r} after {cursor!r}: the next page's cursor must be "
            "text, and move")
        paged += [contract.kit.record_id(record) for record in page.records]
        cursor = page.next
        if cursor is None:
            break
    missing = sorted(expected - set(paged))
    assert cursor is None and not missing, (
        f"records_page(page_size=2) left out {missing[:10]} of what records() lists: follow each page's cursor "
        "to the last page")


def _made_one(contract: ContractRun, n: int) -> str:
    """Deliver the kit's ``n``-th sample event: the id of the one record it made."""
    before, event = contract.record_ids(), contract.kit.sample_event(n)
    contract.delivery.deliver(event)
    made = contract.new_records(before)
    assert len(made) == 1, _made_message(contract.kit, event, made)
    return made[0]


def _paged_since(contract: ContractRun, since: datetime) -> list[str]:
    """The ids ``records_page(since=since)`` lists, page after page."""
    connector, entity_type = contract.connector, contract.kit.list_entity_type
    assert isinstance(connector, ListsPages)
    cursor: str | None = None
    listed: list[str] = []
    for _ in range(MAX_PAGES):
        try:
            page = connector.records_page(contract.ctx, entity_type, cursor=cursor, since=since)
        except Exception as error:
            raise AssertionError(f"records_page({entity_type!r}, cursor={cursor!r}, since={since.isoformat()}) "
                                 f"failed: {contract.delivery.classify(error)}") from error
        listed += [contract.kit.record_id(record) for record in page.records]
        if page.next is None:
            return listed
        cursor = page.next
    raise AssertionError(f"records_page(since=...) still had a next page after {MAX_PAGES}: the cursor must end")


def _listed(contract: ContractRun, *, page_size: int | None) -> list[dict[str, Any]]:
    entity_type = contract.kit.list_entity_type
    try:
        listed = list(contract.connector.records(contract.ctx, entity_type, page_size=page_size))
    except Exception as error:
        raise AssertionError(f"records({entity_type!r}, page_size={page_size}) failed: "
                             f"{contract.delivery.classify(error)}") from error
    assert listed and all(isinstance(record, dict) for record in listed), (
        f"records({entity_type!r}) yielded {listed[:3]!r}...: it must yield every record as a dict "
        "(the system's JSON form)")
    return listed
