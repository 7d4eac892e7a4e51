"""Operator-facing errors: one clear line and a non-zero exit, or an HTTP status with a JSON body."""

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from conftest import redis_url
from crossledger.core.processes.embedded import EmbeddedHub, wait_until
from crossledger.core.settings import HubSettings, Settings
from crossledger.devtools.bench.run import signed
from crossledger.devtools.demo.run import free_port

CROSSLEDGER = str(Path(sys.executable).with_name("crossledger"))


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CROSSLEDGER, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def test_policy_prints_owners_and_routes(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\nstore = "sqlite:///{tmp_path}/hub.db"\n'
                      '[connectors.stripe]\napi_key = "sk"\nwebhook_secret = "whsec"\n'
                      '[connectors.netsuite]\nbase_url = "http://x"\naccount_id = "1"\nconsumer_key = "k"\n'
                      'consumer_secret = "s"\ntoken_id = "t"\ntoken_secret = "ts"\n'
                      '[ownership]\n"customer.status" = { owners = ["erp"], on_violation = "reject" }\n')
    result = run("policy", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rows = {tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in result.stdout.splitlines() if "│" in line}
    assert ("customer", "financial", "erp", "netsuite", "strip") in rows
    assert ("customer", "profile", "crm > billing", "stripe", "strip") in rows
    assert ("customer", "status", "erp", "netsuite", "reject") in rows
    assert ("invoice.issued", "crm, netsuite") in rows  # by role: NetSuite plays the ERP, no CRM is configured
    assert ("customer", "currency", "billing > crm", "stripe", "strip") in rows


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"crossledger {version('crossledger')}\n")


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[connectors.stripe]\napi_key = "sk"\n')
    result = run("policy", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: invalid [connectors.stripe]: webhook_secret: Field required"
    assert "Traceback" not in result.stderr


def test_unknown_connector_section_names_the_installed_ones(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("[connectors.sap]\nurl = 1\n")
    result = run("policy", "--config", str(config))
    assert result.returncode == 2
    installed = "installed: business_central, netsuite, salesforce, stripe, zendesk, zuora"
    assert f"[connectors.sap]: no such connector is installed ({installed})" in result.stderr


def test_workers_and_serve_refuse_the_memory_broker(tmp_path: Path) -> None:
    worker = run("worker", cwd=tmp_path)
    serve = run("serve", cwd=tmp_path)
    assert worker.returncode == 2 and "workers need a shared broker" in worker.stderr
    assert serve.returncode == 2 and "use `crossledger run`" in serve.stderr


def test_missing_dead_letter_and_bad_store_url(tmp_path: Path) -> None:
    env = {"CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": ""}
    missing = run("dlq", "show", "nope", env=env)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no dead letter 'nope'"
    bad = run("dlq", "list", env={"CROSSLEDGER_STORE": "postgres://x", "PATH": ""})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "[hub] store:" in bad.stderr


def test_webhook_is_503_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    # No reconnect window (redis_retry_s): with one, the answer would wait for it, once per command
    # (and, in this embedded hub, behind its consumers' own first commands).
    settings = Settings(hub=HubSettings(broker=dead_redis, store=f"sqlite:///{tmp_path}/hub.db", redis_retry_s=0),
                        connectors={"stripe": {"api_key": "sk_test", "webhook_secret": "whsec_x"}})
    with EmbeddedHub(settings, threads=1) as hub:
        body = json.dumps({"id": "evt_1", "object": "event", "type": "customer.created", "created": 1,
                           "data": {"object": {"id": "cus_1", "object": "customer"}}}).encode()
        answer = httpx.post(f"{hub.url}/webhooks/stripe", content=body, headers=signed("whsec_x", body))
        ready = httpx.get(f"{hub.url}/readyz")
        entry = hub.runtime.store.inbox_get("stripe", "evt_1")

    assert answer.status_code == 503
    assert answer.json()["error"]["message"].startswith("not accepted, retry later")
    assert ready.status_code == 503
    assert entry is not None and entry.enqueued is False  # the sender's retry enqueues it again


def test_run_serves_web_and_workers_in_one_process(tmp_path: Path) -> None:
    port = free_port()
    env = {"CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": ""}
    process = subprocess.Popen([CROSSLEDGER, "run", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _answers(f"http://127.0.0.1:{port}/readyz"), 30), process.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.redis
def test_stopping_the_worker_command_stops_its_workers(tmp_path: Path) -> None:
    """... and its workers wait at most ``worker_idle_poll_ms`` before they look at an empty queue again."""
    config = tmp_path / "hub.toml"
    config.write_text("[hub]\nworker_idle_poll_ms = 40\n")
    env = {"CROSSLEDGER_BROKER": redis_url(10), "CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": "",
           "CROSSLEDGER_CONFIG": str(config)}
    worker = subprocess.Popen([CROSSLEDGER, "worker", "--processes", "1", "--threads", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    group = worker.pid  # its own session: every process it starts is in this group
    try:
        heartbeats = redis.Redis.from_url(env["CROSSLEDGER_BROKER"])
        assert wait_until(lambda: heartbeats.zcard("crossledger-dramatiq:__heartbeats__") > 0, 30), "no workers"
        assert b"dramatiq_worker_timeout=40" in Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        worker.send_signal(signal.SIGTERM)  # what a supervisor does, to that one process
        worker.wait(30)
        assert wait_until(lambda: not _group_alive(group), 15), "worker processes outlived `crossledger worker`"
    finally:
        if _group_alive(group):
            os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


# -- a body that never arrives --------------------------------------------------------------------
def test_a_client_stalling_mid_body_is_cut_off_while_others_are_served(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nstore = "sqlite:///hub.db"\nbody_timeout_s = 1.0\n')
    port = free_port()
    process = subprocess.Popen([CROSSLEDGER, "run", "--config", str(config), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _answers(f"{url}/readyz"), 30), process.stderr
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"POST /v1/replay HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"source\": ")  # then nothing more
        started = time.monotonic()
        assert httpx.get(f"{url}/healthz").status_code == 200  # others are served meanwhile
        assert httpx.post(f"{url}/v1/replay", json={"source": "stripe"}).status_code == 202

        stalled.settimeout(15)
        answer = b""
        while chunk := stalled.recv(4096):  # until the hub closes the connection
            answer += chunk
        waited = time.monotonic() - started
        stalled.close()
    finally:
        process.terminate()
        process.wait(10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'{"error":{"status":408,"message":"the body did not arrive within 1 s"}}' in answer
    assert 0.9 <= waited < 10


# -- startup and configuration --------------------------------------------------------------------
def _dead_redis() -> str:
    return f"redis://:hunter2@127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize("command", [["serve"], ["worker", "--processes", "1"]])
def test_serve_and_worker_name_an_unreachable_redis_and_exit(tmp_path: Path, command: list[str]) -> None:
    broker = _dead_redis()
    env = {"CROSSLEDGER_BROKER": broker, "CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": ""}
    result = run(*command, env=env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    masked = broker.replace("hunter2", "***")
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the broker at {masked}: ConnectionError")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_redis_database_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    for variable in ("CROSSLEDGER_BROKER", "CROSSLEDGER_STORE"):
        env = {variable: "redis://:hunter2@127.0.0.1:6390/notanumber", "PATH": ""}
        if variable == "CROSSLEDGER_BROKER":
            env["CROSSLEDGER_STORE"] = f"sqlite:///{tmp_path}/hub.db"
        result = run("policy", env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1
        assert "the Redis database in redis://:***@127.0.0.1:6390/notanumber must be a number" in result.stderr
        assert "hunter2" not in result.stderr


def test_serve_without_a_token_warns_and_refuses_a_public_address(tmp_path: Path) -> None:
    env = {"CROSSLEDGER_BROKER": _dead_redis(), "CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": ""}
    public = run("serve", "--host", "0.0.0.0", env=env)
    assert public.returncode == 2
    assert public.stderr.startswith("error: refusing to serve /v1 on 0.0.0.0 without [hub] api_token")
    allowed = run("serve", "--host", "0.0.0.0", "--allow-open", env=env)
    loopback = run("serve", env=env)
    for result, host in ((allowed, "0.0.0.0"), (loopback, "127.0.0.1")):  # past the guard: on to the broker
        assert result.returncode == 1 and "cannot reach the broker" in result.stderr
        assert f"warning: [hub] api_token is not set: /v1 on {host} is open to anyone" in result.stderr
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\napi_token = "s3cret"\n')
    guarded = run("serve", "--host", "0.0.0.0", "--config", str(config), env=env)
    assert guarded.returncode == 1 and "warning" not in guarded.stderr and "cannot reach the broker" in guarded.stderr


def test_readiness_logs_each_change_of_state_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from crossledger.core.hub.runtime import Runtime
    from crossledger.core.ingress.app import create_app
    from crossledger.plugins.emulator import ServerThread
    from crossledger.testing.redis_server import RedisServer, RedisUnavailable

    try:
        server = RedisServer().start()  # our own, to kill
    except RedisUnavailable as missing:
        pytest.skip(str(missing))
    runtime = Runtime(Settings(hub=HubSettings(broker=server.url(0), store=f"sqlite:///{tmp_path}/hub.db")))
    web = ServerThread(create_app(runtime)).start()
    caplog.set_level(logging.INFO, logger="crossledger.core.ingress.app")
    try:
        assert httpx.get(f"{web.url}/readyz").status_code == 200
        server.kill()
        assert [httpx.get(f"{web.url}/readyz").status_code for _ in range(3)] == [503] * 3
        server.start()
        assert [httpx.get(f"{web.url}/readyz").status_code for _ in range(3)] == [200] * 3
    finally:
        web.stop()
        runtime.close()
        server.stop()
    said = [record.getMessage() for record in caplog.records if record.name == "crossledger.core.ingress.app"]
    assert len(said) == 2, said
    assert said[0].startswith("not ready: the broker or the store cannot be reached: ConnectionError")
    assert said[1] == "ready again: the broker and the store answer"
    assert not [record for record in caplog.records if record.exc_info]


def test_sandbox_config_is_written_for_its_owner_only(tmp_path: Path) -> None:
    written = tmp_path / "hub.toml"
    written.write_text("old")
    written.chmod(0o644)  # an existing file is tightened too
    process = subprocess.Popen([CROSSLEDGER, "sandbox", "--port", str(free_port()), "--write-config", str(written)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: "api_key" in written.read_text(), 30)
    finally:
        process.terminate()
        process.wait(10)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_a_relative_sqlite_path_is_the_config_files_neighbour(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "hub.toml").write_text('[hub]\nstore = "sqlite:///data/hub.db"\n')
    (folder / "data").mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    result = run("dlq", "list", "--config", "../etc/hub.toml", cwd=elsewhere, env={"PATH": ""})
    assert result.returncode == 0, result.stderr
    assert (folder / "data" / "hub.db").exists()
    assert list(elsewhere.iterdir()) == []


def test_the_api_token_may_come_from_the_environment(tmp_path: Path) -> None:
    env = {"CROSSLEDGER_BROKER": _dead_redis(), "CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db",
           "CROSSLEDGER_API_TOKEN": "s3cret", "PATH": ""}
    public = run("serve", "--host", "0.0.0.0", env=env)  # as the Procfile runs it
    assert public.returncode == 1 and "cannot reach the broker" in public.stderr and "warning" not in public.stderr


def test_reconcile_since_a_time_that_is_none_is_one_line_and_status_2() -> None:
    result = run("reconcile", "--since", "bogus", env={"COLUMNS": "80", "PATH": ""})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --since takes an ISO time such as 2026-01-31 or 2026-01-31T09:00:00+01:00, not 'bogus'"]
    assert result.stdout == ""


@pytest.mark.parametrize(("options", "said"), [
    (["--billing", "paypal"], "error: --billing must be stripe or zuora, not 'paypal'"),
    (["--erp", "sap"], "error: --erp must be netsuite or business-central, not 'sap'"),
])
def test_sandbox_refuses_a_pair_it_does_not_know_in_one_line(tmp_path: Path, options: list[str], said: str) -> None:
    result = run("sandbox", "--port", str(free_port()), "--write-config", str(tmp_path / "hub.toml"), *options)
    assert (result.returncode, result.stderr.strip()) == (2, said)
    assert not (tmp_path / "hub.toml").exists()
