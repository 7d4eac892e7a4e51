"""Running the hub: ``run`` (everything in one process), and the Procfile's processes ``serve``,
``worker`` and ``scheduler``. Each checks its configuration, and that it can reach the store and
the broker, before it starts.
"""

import ipaddress
import os
import sys
from typing import Annotated, Any

import typer
from crossledger.core.cli.app import ConfigOption, app, console, err, fail, operator_errors, runtime_for, settings_from
from crossledger.core.settings import HubSettings, masked
from rich.markup import escape


def require_reachable(runtime: Any) -> None:
    """One line and exit 1 unless the store and the broker answer: a process that cannot reach them
    cannot work, and must not sit silent."""
    from crossledger.core.ingress.refusals import UNREACHABLE, describe

    hub = runtime.settings.hub
    checks = [("store", hub.store, runtime.store.ping)]
    client = getattr(runtime.broker, "client", None)
    if client is not None:
        checks.append(("broker", hub.broker, client.ping))
    for what, url, ping in checks:
        try:
            ping()
        except UNREACHABLE as error:
            fail(f"cannot reach the {what} at {masked(url)}: {describe(error)}")


def guard_exposure(hub: HubSettings, host: str, allow_open: bool) -> None:
    """Without an ``api_token`` anyone who reaches ``/v1`` can replay, discard and start journeys:
    warn on loopback, refuse any other address unless told it is meant."""
    if hub.api_token is not None:
        return
    if not _loopback(host) and not (allow_open or hub.allow_open):
        fail(f"refusing to serve /v1 on {host} without [hub] api_token: anyone who can reach it could replay and "
             "discard dead letters; set api_token, bind 127.0.0.1, or pass --allow-open", 2)
    err.print(f"[yellow]warning:[/yellow] {escape('[hub] api_token')} is not set: /v1 on {escape(host)} is open "
              "to anyone who can reach it", highlight=False, soft_wrap=True)


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


AllowOpen = Annotated[bool, typer.Option("--allow-open", help="Serve /v1 without api_token on a non-loopback address.")]


@app.command()
def run(config: ConfigOption = None, host: str = "127.0.0.1", port: int = 8000,
        threads: Annotated[int | None, typer.Option(help="Worker threads.")] = None,
        allow_open: AllowOpen = False) -> None:
    """Run web and workers in one process (the embedded default: memory broker, SQLite store)."""
    from crossledger.core.processes.embedded import EmbeddedHub
    from crossledger.core.processes.shutdown import stop_requested, wait_for
    from crossledger.core.telemetry.safelog import log_to_stderr

    log_to_stderr()
    with operator_errors():
        settings = settings_from(config)
        guard_exposure(settings.hub, host, allow_open)
        hub = EmbeddedHub(settings, host=host, port=port, threads=threads)
        require_reachable(hub.runtime)
        stopping = stop_requested()
        hub.start()
        console.print(f"crossledger listening on {hub.url} (broker {hub.runtime.settings.hub.broker})")
        try:
            wait_for(stopping)
            console.print(f"stopping (up to {settings.hub.shutdown_grace_s:g} s)")
        finally:
            hub.stop(settings.hub.shutdown_grace_s)


@app.command()
def serve(config: ConfigOption = None, host: str = "127.0.0.1", port: int = 8000,
          allow_open: AllowOpen = False) -> None:
    """Run the HTTP app only; workers run elsewhere (`crossledger worker`, Redis broker)."""
    import uvicorn
    from crossledger.core.ingress.app import create_app
    from crossledger.core.processes.shutdown import stop_requested
    from crossledger.core.telemetry.safelog import log_to_stderr

    log_to_stderr()
    with operator_errors():
        runtime = runtime_for(config)
        if runtime.settings.hub.broker == "memory":
            fail("`serve` alone cannot reach workers with the memory broker; use `crossledger run`, "
                 "or set CROSSLEDGER_BROKER to a redis:// URL", 2)
        guard_exposure(runtime.settings.hub, host, allow_open)
        require_reachable(runtime)
        # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again under the
        # handlers it found: these, so the process exits 0 rather than dying of the signal.
        stop_requested()
        uvicorn.run(create_app(runtime), host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=max(1, round(runtime.settings.hub.shutdown_grace_s)))
        runtime.close()


WORKER_STOP_OVERHEAD_S = 2.0


@app.command()
def worker(config: ConfigOption = None,
           processes: Annotated[int, typer.Option("--processes", "-p", min=1)] = 2,
           threads: Annotated[int, typer.Option("--threads", "-t", min=1)] = 8) -> None:
    """Run Dramatiq worker processes for the hub's actors (Redis broker)."""
    with operator_errors():
        runtime = runtime_for(config)  # the whole configuration is checked here, not in each worker
        if runtime.settings.hub.broker == "memory":
            fail("workers need a shared broker: set CROSSLEDGER_BROKER (or [hub] broker) to a redis:// URL", 2)
        require_reachable(runtime)
        runtime.close()
        # Dramatiq reads its consumers' longest idle wait from the environment (it has no option).
        env = {**os.environ, "dramatiq_worker_timeout": str(runtime.settings.hub.worker_idle_poll_ms)}
        if config is not None:
            env["CROSSLEDGER_CONFIG"] = str(config.resolve())
        # Dramatiq stops gracefully on SIGTERM and SIGINT: its workers finish their messages within
        # the grace period and hand the rest back to Redis. Stopping its consumers and its main
        # process takes up to WORKER_STOP_OVERHEAD_S more, kept out of the workers' share.
        grace_s = max(1.0, runtime.settings.hub.shutdown_grace_s - WORKER_STOP_OVERHEAD_S)
        grace_ms = int(grace_s * 1000)
        command = [sys.executable, "-m", "dramatiq", "crossledger.actors.worker",
                   "--processes", str(processes), "--threads", str(threads),
                   "--worker-shutdown-timeout", str(grace_ms)]
        # Become Dramatiq (exec, not a child): a supervisor's SIGTERM or SIGINT must reach the workers
        # themselves, or stopping `crossledger worker` would leave them running.
        sys.stdout.flush()
        os.execve(sys.executable, command, env)


@app.command()
def scheduler(config: ConfigOption = None) -> None:
    """Enqueue a poll of every pull system (NetSuite) every [hub] poll_interval_s; workers poll."""
    from crossledger.core.processes.scheduler import Scheduler
    from crossledger.core.processes.shutdown import stop_requested, wait_for
    from crossledger.core.telemetry.safelog import log_to_stderr

    log_to_stderr()
    with operator_errors():
        runtime = runtime_for(config)
        if runtime.settings.hub.broker == "memory":
            fail("the scheduler needs a shared broker: set CROSSLEDGER_BROKER to a redis:// URL", 2)
        require_reachable(runtime)
        pollable = runtime.pollable()
        if not pollable:
            fail("no configured connector polls; nothing to schedule", 2)
        stopping = stop_requested()
        console.print(f"polling {', '.join(pollable)} every {runtime.settings.hub.poll_interval_s:g} s")
        ticking = Scheduler(runtime).start()
        wait_for(stopping)
        ticking.stop()
        runtime.close()
