"""The journey engine's own rules, shown with a small journey a plugin contributes.

The ``drill`` journey reserves, charges (a real write of the customer to the NetSuite sandbox, undone
by marking it inactive there), ships and notifies; the test says which step is to fail and how,
through :data:`DRILL`. The ``welcome`` journey starts from a Stripe customer event. Both run on the
embedded hub (memory broker, worker threads) with the Stripe and NetSuite sandboxes on loopback.
"""

import ast
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import System, start_system
from crossledger.canonical import Envelope
from crossledger.canonical.entities import Customer
from crossledger.core.hub.runtime import Runtime
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import ConfigError, HubSettings, Settings
from crossledger.core.store.base import JourneyRecord
from crossledger.core.telemetry import metrics
from crossledger.plugins import CrossledgerPluginManager, hookimpl, journeys
from crossledger.plugins.errors import WITHHELD, Category, ConnectorError
from crossledger.plugins.journey_definition import (
    HubView,
    Journey,
    JourneyRun,
    OnFailure,
    Start,
    Step,
    StepFailed,
    StepFunction,
    Trigger,
    Write,
    golden_as,
)

ERP = "netsuite"
SETTLED_STATES = ("completed", "compensated", "parked", "cancelled")


@dataclass
class Drill:
    """The test's side of the drill journey: what its functions were called for, in order, and
    which step is to raise what (or to take how long)."""

    calls: list[str] = field(default_factory=list)
    broken: dict[str, Callable[[], Exception]] = field(default_factory=dict)
    """A step's call -> the error it raises, made afresh each time (as a real failure would be)."""
    slow: dict[str, float] = field(default_factory=dict)

    def count(self, call: str) -> int:
        return self.calls.count(call)


DRILL = Drill()


def _customer(run: JourneyRun) -> Customer:
    return golden_as(run, Customer, run.subject)


def _step(call: str, event_type: str | None = None) -> StepFunction:
    """A drill function: recorded, slowed or broken as :data:`DRILL` says, then the write it makes."""
    def function(run: JourneyRun) -> list[Write]:
        DRILL.calls.append(call)
        time.sleep(DRILL.slow.get(call, 0.0))
        if call in DRILL.broken:
            raise DRILL.broken[call]()
        return [Write(ERP, event_type, _customer(run))] if event_type else []

    return function


def _start(body: dict[str, Any]) -> Start:
    return Start(subject=body["customer"], key=body["key"], data={})


DRILL_JOURNEY = Journey(
    name="drill", version=1, start=_start, sla_s=60,
    steps=(
        Step("reserve", _step("reserve"), compensate=_step("undo reserve")),
        Step("charge", _step("charge", "customer.upserted"), compensate=_step("undo charge", "customer.deactivated")),
        Step("ship", _step("ship"), compensate=_step("undo ship")),
        Step("notify", _step("notify"), on_failure=OnFailure.PARK),
    ),
)


def _welcome(event: Envelope, hub: HubView) -> bool:
    return isinstance(event.data, Customer) and event.data.name.startswith("Welcome")


WELCOME_JOURNEY = Journey(name="welcome", version=1, steps=(Step("greet", _step("greet")),),
                          triggers=(Trigger("customer.upserted", source="stripe", starts=_welcome),))


class DrillPlugin:
    @hookimpl
    def crossledger_journeys(self) -> list[Journey]:
        return [DRILL_JOURNEY, WELCOME_JOURNEY]


def plugins() -> CrossledgerPluginManager:
    manager = CrossledgerPluginManager()
    manager.register_builtins()
    manager.register(DrillPlugin(), name="drill")
    return manager


# -- a hub with the drill installed -------------------------------------------------------------
Starter = Callable[..., System]


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Starter]:
    """Start the hub with the drill plugin installed (as a third-party package would be) and the
    given ``[journeys.*]`` tables; stopped after the test."""
    monkeypatch.setattr("crossledger.core.hub.runtime.load_plugins", plugins)
    DRILL.calls.clear()
    DRILL.broken.clear()
    DRILL.slow.clear()
    started: list[System] = []

    def starting(journeys: dict[str, Any] | None = None) -> System:
        system = start_system(tmp_path, journeys=journeys)
        started.append(system)
        return system

    yield starting
    for system in started:
        system.stop()


def customer(system: System, name: str = "Drill Supplies Ltd") -> str:
    """A Stripe customer the hub knows and NetSuite has: its canonical id."""
    created = system.customer(name)
    system.settle(lambda: len(system.state(ERP)["customer"]) == 1)
    return f"customer/stripe/{created['id']}"


def drill(system: System, subject: str, key: str = "order-1") -> str:
    run, new = system.hub.runtime.journeys.start_by_hand("drill", {"customer": subject, "key": key})
    assert new
    return run.id


def run_of(system: System, run_id: str) -> JourneyRecord:
    found = system.hub.runtime.store.journey_get(run_id)
    assert found is not None
    return found


def settled_run(system: System, run_id: str, timeout: float = 20) -> JourneyRecord:
    """The run once it has stopped moving (finished or parked) and the hub is idle."""
    wait_until(lambda: run_of(system, run_id).state in SETTLED_STATES and system.hub.idle(), timeout)
    return run_of(system, run_id)


def statuses(run: JourneyRecord) -> dict[str, str]:
    return {name: step.status for name, step in run.steps.items()}


def netsuite_customer(system: System) -> dict[str, Any]:
    [found] = system.state(ERP)["customer"]
    return found  # type: ignore[no-any-return]


def dead_letters(system: System) -> list[tuple[str, str]]:
    return [(letter.category, letter.reason) for letter in system.hub.runtime.store.dlq_list()]


# -- failure policies ---------------------------------------------------------------------------
def test_a_failed_step_compensates_the_done_steps_last_first(start: Starter) -> None:
    system = start()
    subject = customer(system)
    DRILL.broken["ship"] = lambda: StepFailed("the warehouse has no stock")

    run = settled_run(system, drill(system, subject))

    assert (run.state, run.reason) == ("compensated", "step ship failed: the warehouse has no stock")
    assert statuses(run) == {"reserve": "compensated", "charge": "compensated", "ship": "failed",
                             "notify": "pending"}
    assert DRILL.calls == ["reserve", "charge", "ship", "undo charge", "undo reserve"]
    assert netsuite_customer(system)["isInactive"] is True  # the charge's write, undone in NetSuite
    assert dead_letters(system) == []


def test_a_parked_run_resumes_the_failed_step_once_the_cause_is_fixed(start: Starter) -> None:
    system = start()
    subject = customer(system)
    DRILL.broken["notify"] = lambda: StepFailed("the mail relay refuses the sender")

    run = settled_run(system, drill(system, subject))
    assert (run.state, run.reason) == ("parked", "step notify failed: the mail relay refuses the sender")
    assert statuses(run) == {"reserve": "done", "charge": "done", "ship": "done", "notify": "failed"}

    del DRILL.broken["notify"]
    system.hub.runtime.journeys.resume(run.id)
    run = settled_run(system, run.id)

    assert (run.state, run.reason) == ("completed", None)
    assert set(statuses(run).values()) == {"done"}
    assert DRILL.calls == ["reserve", "charge", "ship", "notify", "notify"]  # only the failed step again
    assert netsuite_customer(system).get("isInactive") is not True


def test_configured_order_and_policy_override_the_declared_ones(start: Starter) -> None:
    system = start({"drill": {"after": {"ship": ["reserve"]}, "on_failure": {"charge": "park"}}})
    subject = customer(system)
    DRILL.broken["charge"] = lambda: StepFailed("the card is declined")

    run = settled_run(system, drill(system, subject))

    # Shipping waits for the reservation only, so it goes ahead; the charge parks instead of compensating.
    assert (run.state, run.reason) == ("parked", "step charge failed: the card is declined")
    assert statuses(run) == {"reserve": "done", "charge": "failed", "ship": "done", "notify": "pending"}
    assert not [call for call in DRILL.calls if call.startswith("undo")]


@pytest.mark.parametrize(("journeys", "says"), [
    ({"shipping": {"sla_s": 5}}, "[journeys.shipping]: no such journey is installed (installed: "),
    ({"drill": {"sla_s": -1}}, "[journeys.drill] sla_s must be a positive number of seconds"),
    ({"drill": {"sla_s": "soon"}}, "[journeys.drill] sla_s must be a positive number of seconds"),
    ({"drill": {"after": {"ship": ["pack"]}}}, "[journeys.drill] after.ship must be a step's list of other steps"),
])
def test_an_invalid_journeys_table_is_a_one_line_config_error(tmp_path: Path, journeys: dict[str, Any],
                                                              says: str) -> None:
    settings = Settings(hub=HubSettings(broker="memory", store=f"sqlite:///{tmp_path}/hub.db"), journeys=journeys)
    with pytest.raises(ConfigError) as raised:
        Runtime(settings, plugins=plugins())
    assert str(raised.value).startswith(says) and "\n" not in str(raised.value)


# -- SLA, dedupe, retries -----------------------------------------------------------------------
def breaches() -> float:
    return metrics.registry.get_sample_value("crossledger_journeys_sla_breached_total", {"journey": "drill"}) or 0.0


def test_an_sla_breach_is_counted_once_and_recorded_on_the_run(start: Starter) -> None:
    system = start({"drill": {"sla_s": 0.3}})
    subject = customer(system)
    DRILL.slow["reserve"] = 0.5  # late before the charge's write, checked again on every later advance
    counted = breaches()

    run = settled_run(system, drill(system, subject))

    assert (run.state, run.sla_s, run.sla_breached) == ("completed", 0.3, True)
    assert breaches() == counted + 1
    trail = system.hub.runtime.store.audit_for_subject(subject)
    assert [record.detail for record in trail if record.status == "sla breached"] == [
        f"{run.id}: not completed within 0.3 s"]


def test_the_same_trigger_seen_twice_starts_one_run(start: Starter) -> None:
    system = start()
    created = system.customer("Welcome Wagon Inc")
    subject = f"customer/stripe/{created['id']}"
    system.settle(lambda: len(system.hub.runtime.store.journeys(name="welcome")) == 1)
    [event] = system.stripe.get("/v1/events", type="customer.created")["data"]
    system.stripe.post(f"/_sandbox/events/{event['id']}/resend")  # Stripe delivers it again
    system.stripe.post(f"/v1/customers/{created['id']}", phone="+1 555 0101")  # and the same key again
    system.settle(lambda: system.hub.runtime.store.golden_get(subject).data["phone"] == "+1 555 0101")  # type: ignore[union-attr]

    [run] = system.hub.runtime.store.journeys(name="welcome")
    assert (run.subject, run.state) == (subject, "completed")
    assert DRILL.count("greet") == 1


def test_a_retryable_lookup_is_retried_then_fails_the_step_not_a_dead_letter(start: Starter) -> None:
    system = start()
    subject = customer(system)
    DRILL.broken["charge"] = lambda: ConnectorError(Category.TRANSIENT, "the payment service timed out")
    retries = system.hub.runtime.settings.hub.max_retries

    run = settled_run(system, drill(system, subject), timeout=15)

    assert DRILL.count("charge") == 1 + retries
    assert run.state == "compensated", statuses(run)
    assert run.reason == "step charge failed: gave up retrying: the payment service timed out"
    assert statuses(run)["charge"] == "failed"
    assert DRILL.calls[-1:] == ["undo reserve"]
    assert dead_letters(system) == []


@pytest.mark.parametrize(("key", "says"), [
    ("warehouse", "KeyError: 'warehouse'"),  # a field's name: where the step's code went wrong
    ("ops@warehouse.example", f"KeyError: {WITHHELD}"),  # a value looked up: it stays in the hub
])
def test_a_defect_in_a_step_fails_the_step_with_its_reason_not_a_dead_letter(start: Starter, key: str,
                                                                             says: str) -> None:
    system = start()
    subject = customer(system)
    DRILL.broken["ship"] = lambda: KeyError(key)

    run = settled_run(system, drill(system, subject))

    assert (run.state, run.reason) == ("compensated", f"step ship failed: {says}")
    assert DRILL.count("ship") == 1  # no retry: a defect is not transient
    assert dead_letters(system) == []


def test_a_compensated_run_is_started_anew_when_its_trigger_comes_again(start: Starter) -> None:
    system = start()
    subject = customer(system)
    DRILL.broken["ship"] = lambda: StepFailed("the warehouse has no stock")
    first = settled_run(system, drill(system, subject))
    assert first.state == "compensated"

    DRILL.broken.clear()  # the cause fixed at the source, the same order asked for again
    again, new = system.hub.runtime.journeys.start_by_hand("drill", {"customer": subject, "key": "order-1"})

    assert new and again.id != first.id
    assert settled_run(system, again.id).state == "completed"
    assert run_of(system, first.id).state == "compensated"  # the first run stays as it ended
    again_twice, new_twice = system.hub.runtime.journeys.start_by_hand("drill", {"customer": subject, "key": "order-1"})
    assert (again_twice.id, new_twice) == (again.id, False)


def test_built_in_journeys_reach_connectors_only_through_their_run() -> None:
    """A journey speaks to systems by name through its :class:`JourneyRun`; importing one connector's
    package would tie a built-in journey to that connector's internals."""
    connectors = {"stripe", "netsuite", "salesforce", "zendesk"}
    tied = sorted(
        f"{path.name} imports {node.module}"
        for path in Path(journeys.__file__).parent.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
        and node.module.split(".")[:3] in [["crossledger", "plugins", name] for name in connectors]
    )
    assert tied == []
