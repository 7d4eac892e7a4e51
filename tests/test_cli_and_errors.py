"""Operator-facing errors: one clear line and a non-zero exit, or an HTTP status with a JSON body."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from conftest import redis_url
from crossledger.core.bench import signed
from crossledger.core.demo import free_port
from crossledger.core.embedded import EmbeddedHub, wait_until
from crossledger.core.settings import HubSettings, Settings

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
    assert ("invoice.issued", "netsuite") in rows


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
    installed = "installed: netsuite, salesforce, stripe, zendesk"
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
    env = {"CROSSLEDGER_BROKER": redis_url(10), "CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": ""}
    worker = subprocess.Popen([CROSSLEDGER, "worker", "--processes", "1", "--threads", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    group = worker.pid  # its own session: every process it starts is in this group
    try:
        heartbeats = redis.Redis.from_url(env["CROSSLEDGER_BROKER"])
        assert wait_until(lambda: heartbeats.zcard("crossledger-dramatiq:__heartbeats__") > 0, 30), "no workers"
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
