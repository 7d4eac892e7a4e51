"""The operator surface of journeys: ``crossledger journeys`` and ``/v1/journeys``.

A small journey, contributed by a plugin object, gives the runs; no worker runs, so a run stays
where a test puts it (records are written straight to the store when a test needs a state the
engine would take time to reach).
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import redis_url
from crossledger.actors import declare
from crossledger.core.cli import app
from crossledger.core.hub.runtime import Runtime
from crossledger.core.ingress.app import MAX_BODY, create_app
from crossledger.core.journeys.engine import journey_id
from crossledger.core.settings import HubSettings, Settings
from crossledger.core.store.base import AuditRecord, JourneyRecord, JourneyState, StepRecord
from crossledger.plugins import CrossledgerPluginManager, hookimpl
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.journey_definition import Journey, JourneyInputError, Start, Step
from typer.testing import CliRunner

TOKEN = "ops-token"
STEPS = ("account", "billing", "support")


def provision_start(body: dict[str, Any]) -> Start:
    customer = body.get("customer")
    if not isinstance(customer, str):
        raise JourneyInputError("customer: a canonical customer id is required")
    return Start(subject=customer, key=customer, data={"customer": customer, "plan": body.get("plan", "basic")})


PROVISIONING = Journey(name="provisioning", version=2, steps=tuple(Step(name, lambda run: None) for name in STEPS),
                       sla_s=60, description="Accounts for a new customer.", start=provision_start)


class ProvisioningPlugin:
    @hookimpl
    def crossledger_journeys(self) -> list[Journey]:
        return [PROVISIONING]


def plugins() -> CrossledgerPluginManager:
    manager = CrossledgerPluginManager()
    manager.register_builtins()
    manager.register(ProvisioningPlugin(), name="provisioning")
    return manager


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/hub.db"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(hub=HubSettings(broker="memory", store=store_url(tmp_path), api_token=TOKEN))
    built = Runtime(settings, plugins=plugins())
    declare(built)  # the memory broker accepts messages only for declared actors
    yield built
    built.close()


@pytest.fixture
def hub_url(runtime: Runtime) -> Iterator[str]:
    server = ServerThread(create_app(runtime)).start()
    yield server.url
    server.stop()


@pytest.fixture
def client(hub_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {TOKEN}"}) as operator:
        yield operator


def stored(runtime: Runtime, key: str, *, state: JourneyState = "running", started_ago: float = 1.0,
           took: float | None = None, sla_s: float | None = 60, sla_breached: bool = False,
           name: str = "provisioning", steps: dict[str, StepRecord] | None = None,
           data: dict[str, Any] | None = None) -> JourneyRecord:
    """A run written straight to the store, in whatever state a test needs."""
    started = time.time() - started_ago
    record = JourneyRecord(
        id=journey_id(name, key), name=name, version=2, key=key, subject=f"cus_{key}", state=state,
        correlation_id=f"corr-{key}", started_at=started, updated_at=started,
        steps=steps if steps is not None else {step: StepRecord() for step in STEPS}, data=data or {},
        trigger="api", finished_at=None if took is None else started + took, sla_s=sla_s, sla_breached=sla_breached)
    assert runtime.store.journey_start(record)
    return record


def assert_json_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["status"] == status
    message: str = body["error"]["message"]
    return message


# -- HTTP -----------------------------------------------------------------------------------------
def test_start_by_hand_is_201_then_200_for_the_same_key(client: httpx.Client, runtime: Runtime) -> None:
    first = client.post("/v1/journeys/provisioning", json={"customer": "cus_1", "plan": "pro"})
    assert first.status_code == 201, first.text
    run = first.json()
    assert (run["name"], run["subject"], run["state"], run["trigger"]) == ("provisioning", "cus_1", "running", "api")
    assert [step["name"] for step in run["steps"]] == list(STEPS)
    assert run["data"] == {"customer": "cus_1", "plan": "pro"}

    again = client.post("/v1/journeys/provisioning", json={"customer": "cus_1", "plan": "other"})
    assert again.status_code == 200 and again.json()["id"] == run["id"]
    assert [record.id for record in runtime.store.journeys()] == [run["id"]]

    shown = client.get(f"/v1/journeys/{run['id']}").json()
    assert shown["sla"] == {"seconds": 60, "status": "ok"}
    assert [(record["status"], record["correlation_id"]) for record in shown["trail"]] == [
        ("started", run["correlation_id"])]


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/v1/journeys/provisioning", b"{not json", 400, "not JSON"),
    ("/v1/journeys/provisioning", b"", 400, "not JSON"),
    ("/v1/journeys/provisioning", b'["cus_1"]', 422, "Expected `object`, got `array`"),
    ("/v1/journeys/provisioning", b'{"plan": "pro"}', 422, "customer: a canonical customer id is required"),
    ("/v1/journeys/onboarding-of-aliens", b'{"customer": "cus_1"}', 404, "no enabled journey 'onboarding-of-aliens'"),
    ("/v1/journeys/provisioning", b"{}" + b" " * MAX_BODY, 413, "body larger than"),
])
def test_start_refusals_are_json_errors(client: httpx.Client, runtime: Runtime, path: str, body: bytes, status: int,
                                        says: str) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert says in assert_json_error(response, status)
    assert runtime.store.journeys() == []


def test_list_filters_and_sla(client: httpx.Client, runtime: Runtime) -> None:
    late = stored(runtime, "late", started_ago=120)
    on_time = stored(runtime, "on-time", state="completed", started_ago=100, took=10)
    breached = stored(runtime, "breached", state="completed", started_ago=90, took=80, sla_breached=True)
    parked = stored(runtime, "parked", state="parked", started_ago=5, sla_s=None, name="refund")

    listed = client.get("/v1/journeys").json()["journeys"]
    assert [(run["id"], run["sla"]["status"]) for run in listed] == [
        (parked.id, None), (breached.id, "breached"), (on_time.id, "ok"), (late.id, "overdue")]
    assert listed[2]["duration_s"] == 10

    def ids(query: str) -> list[str]:
        return [run["id"] for run in client.get(f"/v1/journeys?{query}").json()["journeys"]]

    assert ids("state=parked") == [parked.id]
    assert ids("name=provisioning&state=completed") == [breached.id, on_time.id]
    assert ids("subject=cus_late") == [late.id]
    assert ids("limit=1") == [parked.id]
    assert "state must be one of running, waiting" in assert_json_error(client.get("/v1/journeys?state=lost"), 400)


def test_show_orders_steps_by_definition_and_hides_private_data(client: httpx.Client, runtime: Runtime) -> None:
    steps = {name: StepRecord(status="done", attempts=1) for name in reversed(STEPS)}
    steps["retired"] = StepRecord(status="done")  # a step the installed version no longer has
    run = stored(runtime, "ordered", steps=steps, data={"plan": "pro", "_compensating": True})

    shown = client.get(f"/v1/journeys/{run.id}").json()
    assert [step["name"] for step in shown["steps"]] == [*STEPS, "retired"]
    assert shown["steps"][0] == {"name": "account", "status": "done", "waiting_on": [], "attempts": 1,
                                 "detail": None, "started_at": None, "finished_at": None}
    assert shown["data"] == {"plan": "pro"}
    assert shown["trail"] == []
    assert assert_json_error(client.get("/v1/journeys/provisioning-nope"), 404) == "no such journey run"


def test_resume_and_cancel(client: httpx.Client, runtime: Runtime) -> None:
    failed = {**{name: StepRecord(status="done") for name in STEPS[:2]}, "support": StepRecord(status="failed")}
    run = stored(runtime, "stuck", state="parked", steps=failed)

    resumed = client.post(f"/v1/journeys/{run.id}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    assert resumed.json()["steps"][2]["status"] == "pending"  # the failed step goes again
    cancelled = client.post(f"/v1/journeys/{run.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert runtime.store.journey_get(run.id).state == "cancelled"  # type: ignore[union-attr]

    assert "already cancelled" in assert_json_error(client.post(f"/v1/journeys/{run.id}/cancel"), 409)
    assert "nothing to resume" in assert_json_error(client.post(f"/v1/journeys/{run.id}/resume"), 409)
    for action in ("resume", "cancel"):
        assert "no journey 'provisioning-nope'" in assert_json_error(
            client.post(f"/v1/journeys/provisioning-nope/{action}"), 404)


def test_journey_routes_need_the_token(runtime: Runtime, hub_url: str) -> None:
    with httpx.Client(base_url=hub_url) as anonymous:
        for response in (anonymous.get("/v1/journeys"), anonymous.post("/v1/journeys/provisioning", json={}),
                         anonymous.post("/v1/journeys/x/cancel")):
            assert_json_error(response, 401)
    assert runtime.store.journeys() == []


# -- CLI ------------------------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The real command line, with the test journey installed as a third-party plugin would be."""
    monkeypatch.setattr("crossledger.core.hub.runtime.load_plugins", plugins)
    return CliRunner()


def config_file(tmp_path: Path, broker: str = "memory") -> str:
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\nbroker = "{broker}"\nstore = "{store_url(tmp_path)}"\napi_token = "{TOKEN}"\n')
    return str(config)


def rows(output: str) -> list[tuple[str, ...]]:
    return [tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in output.splitlines() if "│" in line]


def test_cli_list_shows_duration_and_sla(cli: CliRunner, runtime: Runtime, tmp_path: Path) -> None:
    late = stored(runtime, "late", started_ago=150)
    done = stored(runtime, "done", state="completed", started_ago=100, took=12.5)
    parked = stored(runtime, "parked", state="parked", started_ago=5, sla_s=None, name="refund")
    config = config_file(tmp_path)

    result = cli.invoke(app, ["journeys", "list", "--config", config])
    assert result.exit_code == 0, result.output
    table = {row[0]: row[1:] for row in rows(result.stdout)}
    assert table[late.id][:3] == ("provisioning v2", "cus_late", "running")
    assert table[late.id][4:6] == ("2 min 30 s", "overdue")
    assert table[done.id][4:6] == ("12 s", "ok")
    assert table[parked.id][5] == "-"
    assert list(table) == [parked.id, done.id, late.id]  # newest first

    only_parked = cli.invoke(app, ["journeys", "list", "--state", "parked", "--config", config])
    assert [row[0] for row in rows(only_parked.stdout)] == [parked.id]
    by_subject = cli.invoke(app, ["journeys", "list", "--subject", "cus_done", "--config", config])
    assert [row[0] for row in rows(by_subject.stdout)] == [done.id]

    wrong = cli.invoke(app, ["journeys", "list", "--state", "lost", "--config", config])
    assert wrong.exit_code == 2
    assert wrong.stderr.startswith("error: --state must be one of running, waiting") and wrong.stderr.count("\n") == 1


def test_cli_show_table_and_json(cli: CliRunner, runtime: Runtime, tmp_path: Path) -> None:
    run, _ = runtime.journeys.start_by_hand("provisioning", {"customer": "cus_7", "plan": "pro"})
    runtime.store.journey_put(JourneyRecord(**{
        **{field: getattr(run, field) for field in run.__struct_fields__},
        "data": {**run.data, "_compensating": True},
        "steps": {"support": StepRecord(status="queued", waiting_on=["0:zendesk"], detail="zendesk is down"),
                  "billing": StepRecord(status="done", attempts=2), "account": StepRecord(status="done")}}))
    runtime.store.audit(AuditRecord(at=time.time(), correlation_id=run.correlation_id, step="journey provisioning",
                                    status="queued", system="zendesk", detail="support: zendesk is down"))
    config = config_file(tmp_path)

    shown = cli.invoke(app, ["journeys", "show", run.id, "--config", config])
    assert shown.exit_code == 0, shown.output
    table = rows(shown.stdout)
    steps = [row for row in table if row and row[0] in STEPS]
    assert steps == [("account", "done", "0", "", ""), ("billing", "done", "2", "", ""),
                     ("support", "queued", "0", "0:zendesk", "zendesk is down")]
    trail = [line.split("journey provisioning")[1].split()[0] for line in shown.stdout.splitlines()
             if "journey provisioning" in line]
    assert trail == ["started", "queued"]
    header = dict(line.strip().split(None, 1) for line in shown.stdout.splitlines()[:10] if line.strip())
    assert header["journey"] == "provisioning v2" and header["SLA"] == "ok (within 1 min 00 s)"
    assert header["key"] == "cus_7" and header["trigger"] == "api"
    assert '"plan": "pro"' in shown.stdout and "_compensating" not in shown.stdout

    as_json = cli.invoke(app, ["journeys", "show", run.id, "--json", "--config", config])
    document = json.loads(as_json.stdout)
    assert [step["name"] for step in document["steps"]] == list(STEPS)
    assert document["data"] == {"customer": "cus_7", "plan": "pro"}
    assert [record["status"] for record in document["trail"]] == ["started", "queued"]

    missing = cli.invoke(app, ["journeys", "show", "provisioning-nope", "--config", config])
    assert missing.exit_code == 1 and missing.stderr == "error: no journey run 'provisioning-nope'\n"


def test_cli_moving_a_run_refuses_the_memory_broker(cli: CliRunner, runtime: Runtime, tmp_path: Path) -> None:
    run = stored(runtime, "waiting")
    config = config_file(tmp_path)
    for command, endpoint in ((["resume", run.id], f"POST /v1/journeys/{run.id}/resume"),
                              (["cancel", run.id], f"POST /v1/journeys/{run.id}/cancel"),
                              (["start", "provisioning", "--data", '{"customer": "cus_2"}'],
                               "POST /v1/journeys/provisioning")):
        result = cli.invoke(app, ["journeys", *command, "--config", config])
        assert result.exit_code == 2 and endpoint in result.stderr and result.stderr.count("\n") == 1
    assert runtime.store.journey_get(run.id).state == "running"  # type: ignore[union-attr]
    assert [record.id for record in runtime.store.journeys()] == [run.id]


def test_cli_start_resume_cancel_with_a_shared_broker(cli: CliRunner, runtime: Runtime, tmp_path: Path) -> None:
    config = config_file(tmp_path, broker=redis_url(7))
    input_file = tmp_path / "input.json"
    input_file.write_text('{"customer": "cus_3"}')

    def journeys(*args: str) -> Any:
        return cli.invoke(app, ["journeys", *args, "--config", config])

    started = journeys("start", "provisioning", "--file", str(input_file))
    run_id = journey_id("provisioning", "cus_3")
    assert started.exit_code == 0 and started.stdout == f"started {run_id} (running)\n", started.output
    again = journeys("start", "provisioning", "--data", '{"customer": "cus_3"}')
    assert again.stdout == f"already started {run_id} (running)\n"

    assert journeys("resume", run_id).stdout == f"{run_id} is running\n"
    assert journeys("cancel", run_id).stdout == f"{run_id} is cancelled\n"
    for result, code, message in (
        (journeys("cancel", run_id), 1, f"journey {run_id} is already cancelled"),
        (journeys("resume", "provisioning-nope"), 1, "no journey 'provisioning-nope'"),
        (journeys("start", "provisioning", "--data", '{"plan": "pro"}'), 1, "customer: a canonical customer id"),
        (journeys("start", "nothing-like-it"), 1, "no enabled journey 'nothing-like-it'"),
        (journeys("start", "provisioning", "--data", "{oops"), 2, "the input is not JSON"),
        (journeys("start", "provisioning", "--data", "[]"), 2, "the input must be a JSON object"),
    ):
        assert result.exit_code == code and message in result.stderr and result.stderr.count("\n") == 1, result.output
    assert [record.id for record in runtime.store.journeys()] == [run_id]


def test_cli_help_lists_the_journey_commands(cli: CliRunner) -> None:
    result = cli.invoke(app, ["journeys", "--help"])
    assert result.exit_code == 0
    for command, says in (("list", "newest first"), ("show", "where it stands"), ("start", "by hand"),
                          ("resume", "parked run"), ("cancel", "stays")):
        assert any(command in line and says in line for line in result.stdout.splitlines()), command


def test_trace_takes_a_run_id_and_shows_its_correlation(cli: CliRunner, runtime: Runtime, tmp_path: Path) -> None:
    run = stored(runtime, "traced")
    runtime.store.audit(AuditRecord(at=time.time(), correlation_id=run.correlation_id, step="customer.upsert",
                                    status="delivered", system="netsuite", detail="netsuite id 7"))

    traced = cli.invoke(app, ["trace", run.id, "--config", config_file(tmp_path)])

    assert traced.exit_code == 0, traced.output
    assert [line.split()[1:4] for line in traced.stdout.splitlines() if "customer.upsert" in line] == [
        ["netsuite", "customer.upsert", "delivered"]]


def test_plugins_lists_the_journeys_with_their_step_order(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("crossledger.plugins.load_plugins", plugins)
    listed = cli.invoke(app, ["plugins"])

    assert listed.exit_code == 0, listed.output
    table = {row[0]: row for row in rows(listed.stdout) if len(row) == 5 and row[0]}
    assert table["onboarding"][2] == "identify → billing → erp → support → link"
    assert table["suspension"][2] == "support | crm | erp"  # side by side: none waits for another
    assert table["provisioning"][1] == "2"  # a plugin's journey, as installed


def test_metrics_show_the_runs_past_their_sla_now(client: httpx.Client, runtime: Runtime) -> None:
    stored(runtime, "late", started_ago=150)  # 60 s SLA, unfinished
    stored(runtime, "parked-late", state="parked", started_ago=90)
    stored(runtime, "in-time", started_ago=5)
    stored(runtime, "done-late", state="completed", started_ago=300, took=200)  # counted when it ended

    exposed = client.get("/metrics").text

    assert 'crossledger_journeys_overdue{journey="provisioning"} 2.0' in exposed
    assert 'crossledger_journeys_overdue{journey="onboarding"} 0.0' in exposed
