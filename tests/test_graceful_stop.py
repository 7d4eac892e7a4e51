"""Every Procfile process stops gracefully: on SIGTERM (a supervisor's stop) or SIGINT (Ctrl-C),
``serve``, ``worker`` and ``scheduler`` stop taking work and exit 0 within ``[hub] shutdown_grace_s``,
the worker even while NetSuite holds a delivery longer than that (the message goes back to Redis).
``crossledger run`` is covered by test_embedded_crash.py."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import Processes, redis_url, sandbox_config
from crossledger.core.processes.embedded import wait_until
from crossledger.core.settings import load_settings
from crossledger.devtools.demo.run import StripeDriver, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]
GRACE_S = 4
EXIT_S = 1.5
"""Past the grace period, what the interpreter's own exit may take on a loaded machine (NetSuite holds
the delivery for 20 s: a process that ignored the grace period would take that long)."""


def _stopped_in_grace(name: str, process: subprocess.Popen[bytes], stop: signal.Signals) -> int:
    """Send ``stop`` to the process's group, as a supervisor or a terminal does; its exit code,
    once it has exited within the grace period (and :data:`EXIT_S` for the interpreter's exit)."""
    started = time.monotonic()
    os.killpg(process.pid, stop)
    code = process.wait(GRACE_S + 10)
    assert time.monotonic() - started < GRACE_S + EXIT_S, f"{name} took {time.monotonic() - started:.1f} s"
    return code


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serve_worker_and_scheduler_exit_0_within_the_grace_period(
        tmp_path: Path, processes: Processes, stop: signal.Signals) -> None:
    sandbox_port, hub_port = free_port(), free_port()
    config = sandbox_config(tmp_path, processes, sandbox_port, hub_port,
                            f"\n[hub]\nshutdown_grace_s = {GRACE_S}\ntime_limit_s = 30\nlease_ttl_s = 60\n"
                            "redrive_after_s = 60\n")
    env = {**os.environ, "CROSSLEDGER_CONFIG": str(config), "CROSSLEDGER_BROKER": redis_url(13),
           "CROSSLEDGER_STORE": redis_url(14)}
    serve = processes.start("serve", "--port", str(hub_port), env=env, name="serve")
    worker = processes.start("worker", "--processes", "1", "--threads", "2", env=env, name="worker")
    scheduler = processes.start("scheduler", env=env, name="scheduler")
    sandboxes = f"http://127.0.0.1:{sandbox_port}"

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{hub_port}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def netsuite_hits() -> int:
        return int(httpx.get(f"{sandboxes}/netsuite/_sandbox/faults").json()["hits"])

    assert wait_until(ready, 30), (tmp_path / "serve.log").read_text()
    assert wait_until(lambda: "polling" in (tmp_path / "scheduler.log").read_text(), 30)

    # NetSuite holds the worker's delivery (and polls) far longer than the grace period.
    httpx.post(f"{sandboxes}/netsuite/_sandbox/faults", json={"mode": "latency", "latency_ms": 20_000})
    settings = load_settings(config, environ={})
    stripe = StripeDriver(settings.connectors["stripe"]["base_url"], settings.connectors["stripe"]["api_key"])
    before = netsuite_hits()
    stripe.post("/v1/customers", name="Graceful", email="graceful@example.com")
    assert wait_until(lambda: netsuite_hits() > before, 30), (tmp_path / "worker.log").read_text()

    for name, process in (("serve", serve), ("scheduler", scheduler), ("worker", worker)):
        assert _stopped_in_grace(name, process, stop) == 0, (tmp_path / f"{name}.log").read_text()
