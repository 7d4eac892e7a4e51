"""The ``crossledger`` command line.

Every failure an operator can cause (a bad config, a wrong id, an unreachable Redis) ends as one
line on stderr and a non-zero exit; never a stack trace.
"""

import ipaddress
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import msgspec
import tomli_w
import typer
from crossledger.core.journey_views import (
    JOURNEY_STATES,
    document,
    duration_text,
    elapsed,
    ordered_steps,
    public_data,
    sla_status,
)
from crossledger.core.settings import ConfigError, HubSettings, Settings, load_settings, masked, write_private
from crossledger.core.stores.base import JourneyRecord
from crossledger.core.timeline import timeline, timeline_table, when
from crossledger.plugins.errors import ConnectorError
from crossledger.plugins.journey import Journey, JourneyInputError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="crossledger: the governed integration hub.")
dlq = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, replay, discard.")
app.add_typer(dlq, name="dlq")
journeys = typer.Typer(no_args_is_help=True, help="Journey runs: list, show, start, resume, cancel.")
app.add_typer(journeys, name="journeys")
# Piped output (scripts, grep) gets wide lines instead of rich's 80-column folding.
console = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 240)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (or CROSSLEDGER_CONFIG).")]
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    # escape: messages name config sections like [hub], which rich would take for markup and drop
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as error:
        fail(str(error), 2)
        raise  # unreachable


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn any failure inside a command into one readable line."""
    try:
        yield
    except typer.Exit:
        raise
    except ConfigError as error:
        fail(str(error), 2)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as error:  # an operator gets a sentence, not a traceback
        fail(f"{type(error).__name__}: {error}")


def runtime_for(config: Path | None) -> Any:
    from crossledger.core.runtime import Runtime

    return Runtime(settings_from(config))


def require_reachable(runtime: Any) -> None:
    """One line and exit 1 unless the store and the broker answer: a process that cannot reach them
    cannot work, and must not sit silent."""
    from crossledger.core.edge import UNREACHABLE, describe

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


# -- running -------------------------------------------------------------------------------------
@app.command()
def run(config: ConfigOption = None, host: str = "127.0.0.1", port: int = 8000,
        threads: Annotated[int | None, typer.Option(help="Worker threads.")] = None,
        allow_open: AllowOpen = False) -> None:
    """Run web and workers in one process (the embedded default: memory broker, SQLite store)."""
    from crossledger.core.embedded import EmbeddedHub
    from crossledger.core.safelog import log_to_stderr
    from crossledger.core.shutdown import stop_requested, wait_for

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
    from crossledger.core.http import create_app
    from crossledger.core.safelog import log_to_stderr
    from crossledger.core.shutdown import stop_requested

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
        env = dict(os.environ)
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
    from crossledger.core.safelog import log_to_stderr
    from crossledger.core.scheduler import Scheduler
    from crossledger.core.shutdown import stop_requested, wait_for

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


@app.command()
def sandbox(host: str = "127.0.0.1", port: int = 8100,
            hub_url: Annotated[str | None, typer.Option(help="Register this hub's webhook endpoint.")] = None,
            write_config: Annotated[Path | None, typer.Option(help="Write a hub config here.")] = None) -> None:
    """Serve every sandbox on one port, each under /<system>/."""
    from crossledger.core.sandboxes import SandboxSet
    from crossledger.plugins import load_plugins
    from crossledger.plugins.sandbox import ServerThread

    with operator_errors():
        sandboxes = SandboxSet(load_plugins().connectors)
        server = ServerThread(sandboxes.app, host, port).start()
        if hub_url:
            sandboxes.subscribe(hub_url)
        if write_config:
            write_private(write_config, tomli_w.dumps({"connectors": sandboxes.config(server.url)}))
            console.print(f"wrote {write_config}")
        console.print(f"sandboxes on {server.url}: " + ", ".join(f"/{n}/" for n in sandboxes.sandboxes))
        while True:
            time.sleep(3600)


# -- inspecting ----------------------------------------------------------------------------------
@app.command()
def policy(config: ConfigOption = None) -> None:
    """Print the effective system-of-record policy and routes."""
    with operator_errors():
        runtime = runtime_for(config)
        table = Table(title="ownership (system of record)")
        for column in ("entity", "field group", "owner kinds", "owner now", "non-owner change"):
            table.add_column(column)
        for rule in runtime.policy.effective():
            table.add_row(rule.entity, rule.field_group, " > ".join(rule.owners), rule.owner or "(none)",
                          rule.on_violation)
        console.print(table)
        routes = Table(title="routes")
        routes.add_column("event type")
        routes.add_column("targets")
        for event_type, targets in runtime.router.table().items():
            routes.add_row(event_type, ", ".join(targets))
        console.print(routes)


@app.command()
def plugins() -> None:
    """List plugins, connectors (versions, capabilities) and journeys; report broken plugins."""
    from crossledger.plugins import load_plugins

    manager = load_plugins()
    table = Table(title="connectors")
    for column in ("name", "kind", "version", "capabilities"):
        table.add_column(column)
    for name, connector in sorted(manager.connectors.items()):
        table.add_row(name, str(connector.kind), connector.version,
                      ", ".join(sorted(str(c) for c in connector.capabilities)))
    console.print(table)
    journeys = Table(title="journeys")
    for column in ("name", "version", "steps", "triggers", "SLA"):
        journeys.add_column(column)
    for name, journey in sorted(manager.journeys.items()):
        triggers = [f"{trigger.event_type} from {trigger.source}" for trigger in journey.triggers]
        journeys.add_row(name, str(journey.version), _step_order(journey),
                         "\n".join(triggers + (["by hand"] if journey.start else [])),
                         f"{journey.sla_s:g} s" if journey.sla_s else "-")
    console.print(journeys)
    for info in manager.infos.values():
        console.print(f"plugin {info.name}: {info.distribution or '?'} {info.version or ''}")
    for problem in manager.problems:
        err.print(f"[yellow]problem:[/yellow] {escape(problem)}", highlight=False)


def _step_order(journey: Journey) -> str:
    """``a → b`` when b waits for a, ``a | b`` when they go side by side."""
    order = journey.steps[0].name
    for before, step in zip(journey.steps, journey.steps[1:], strict=False):
        order += (" → " if before.name in journey.needs(step.name) else " | ") + step.name
    return order


@app.command("new-connector")
def new_connector(name: Annotated[str, typer.Argument(help="The connector's name, e.g. acme_crm.")],
                  kind: Annotated[str, typer.Option(help="crm, billing, erp or support.")] = "crm",
                  directory: Annotated[Path, typer.Option("--dir", help="Where to make crossledger-NAME/.")] = Path(".")
                  ) -> None:
    """Scaffold a third-party connector package, crossledger-NAME/, that passes the contract suite."""
    from crossledger.core.scaffold import ScaffoldError, scaffold
    from crossledger.plugins import load_plugins

    with operator_errors():
        try:
            root = scaffold(name, kind=kind, parent=directory, taken=set(load_plugins().connectors))
        except ScaffoldError as error:
            fail(str(error), 2)
        else:
            console.print(f"created {escape(str(root))}: read its README.md, then `pip install -e {escape(str(root))}` "
                          f"and `python -m pytest {escape(str(root / 'tests'))}`", highlight=False, soft_wrap=True)


@app.command()
def trace(key: Annotated[str, typer.Argument(help="A correlation id, a journey run, a canonical id, or any system's "
                                                   "id for a record or event (cus_..., 001..., a NetSuite id).")],
          config: ConfigOption = None) -> None:
    """Show every step of one transaction across the systems."""
    with operator_errors():
        runtime = runtime_for(config)
        records = timeline(runtime.store, key, systems=sorted(runtime.plugins.connectors))
        if not records:
            fail(f"no transaction, entity or system id {key!r} in the audit", 1)
        console.print(timeline_table(records, key))


# -- dead letters --------------------------------------------------------------------------------
@dlq.command("list")
def dlq_list(config: ConfigOption = None, category: str | None = None, target: str | None = None,
             state: Annotated[str, typer.Option(help="open, replayed, discarded or all")] = "open",
             limit: int = 100) -> None:
    """List dead letters, newest first."""
    if state not in ("open", "replayed", "discarded", "all"):
        fail("--state must be open, replayed, discarded or all", 2)
    with operator_errors():
        runtime = runtime_for(config)
        runtime.sweep_broker_dead_letters()
        letters = runtime.store.dlq_list(
            state=None if state == "all" else state, category=category, target=target, limit=limit)
        table = Table(title=f"dead letters ({state})")
        table.add_column("id", no_wrap=True)  # operators copy it into `dlq replay`
        for column in ("when (UTC)", "actor", "target", "category", "attempts", "reason"):
            table.add_column(column, overflow="fold")
        for letter in letters:
            discarded = (f"\ndiscarded {when(letter.discarded_at)}: {letter.discard_reason}"
                         if letter.discarded_at is not None else "")
            table.add_row(letter.id, when(letter.created_at), letter.actor, letter.target or "", letter.category,
                          str(letter.attempts), escape(letter.reason + discarded))
        console.print(table)


@dlq.command("show")
def dlq_show(letter_id: str, config: ConfigOption = None) -> None:
    """Show one dead letter in full, as JSON."""
    with operator_errors():
        letter = runtime_for(config).store.dlq_get(letter_id)
        if letter is None:
            fail(f"no dead letter {letter_id!r}")
        console.print_json(msgspec.json.encode(letter).decode())


@dlq.command("replay")
def dlq_replay(letter_ids: Annotated[list[str] | None, typer.Argument()] = None, config: ConfigOption = None,
               all_open: Annotated[bool, typer.Option("--all", help="Every open letter (with filters).")] = False,
               category: str | None = None, target: str | None = None,
               refresh: Annotated[bool, typer.Option(help="Re-read the object from the source first.")] = False,
               ) -> None:
    """Re-enqueue dead letters (by id, or --all with filters); each is replayed once."""
    if not letter_ids and not all_open:
        fail("name dead letter ids, or pass --all", 2)
    with operator_errors():
        runtime = runtime_for(config)
        if runtime.settings.hub.broker == "memory":
            fail("a replay runs in the workers: use a shared broker, or POST /v1/dead-letters/ID/replay to "
                 "`crossledger run`", 2)
        ids = list(letter_ids or []) or [
            letter.id for letter in runtime.store.dlq_list(category=category, target=target, limit=1000)]
        # One letter that cannot be replayed (gone, replayed meanwhile, its source unreachable for a
        # refresh) must not keep the others from their replay: each is tried, the failures named.
        failed = 0
        for letter_id in ids:
            try:
                runtime.replay_dead_letter(letter_id, refresh=refresh)
            except (KeyError, ValueError, ConnectorError) as error:  # ConnectorError: a refresh's source
                failed += 1
                err.print(f"[red]error:[/red] {escape(str(error.args[0] if error.args else error))}",
                          highlight=False, soft_wrap=True)
                continue
            console.print(f"replayed {letter_id}")
        if failed:
            fail(f"{failed} of {len(ids)} dead letters not replayed")


@dlq.command("discard")
def dlq_discard(letter_ids: Annotated[list[str] | None, typer.Argument()] = None, config: ConfigOption = None,
                reason: Annotated[str, typer.Option(help="Why no delivery is needed (kept in the letter and audit).")
                                  ] = "",
                category: str | None = None, target: str | None = None,
                before: Annotated[datetime | None, typer.Option(help="Only letters older than this ISO time.")] = None,
                yes: Annotated[bool, typer.Option("--yes", help="Apply a filter (without it: count only).")] = False,
                ) -> None:
    """Close open dead letters without delivering them: by id, or by filter (a dry run unless --yes)."""
    filtered = category is not None or target is not None or before is not None
    if bool(letter_ids) == filtered:
        fail("name dead letter ids, or select them with --category, --target or --before (not both)", 2)
    if not reason.strip():
        fail("--reason is required: say why these letters need no delivery", 2)
    with operator_errors():
        runtime = runtime_for(config)
        ids = list(letter_ids or [])
        if filtered:
            cutoff = _epoch(before)
            ids = [letter.id for letter in runtime.store.dlq_list(category=category, target=target, limit=100_000)
                   if cutoff is None or letter.created_at < cutoff]
            if not yes:
                console.print(f"{len(ids)} open dead letters match; nothing discarded (dry run). Pass --yes to "
                              "discard them.", highlight=False)
                return
        refused = 0
        for letter_id in ids:
            try:
                runtime.discard_dead_letter(letter_id, reason.strip())
            except (KeyError, ValueError) as error:
                err.print(f"[red]error:[/red] {escape(str(error.args[0]))}", highlight=False, soft_wrap=True)
                refused += 1
                continue
            console.print(f"discarded {letter_id}", highlight=False)
        if refused:
            raise typer.Exit(1)


@app.command()
def replay(config: ConfigOption = None, source: str | None = None,
           event_type: Annotated[str | None, typer.Option("--type", help="e.g. invoice.issued")] = None,
           since: Annotated[datetime | None, typer.Option(help="ISO time, UTC unless it says otherwise")] = None,
           until: Annotated[datetime | None, typer.Option(help="ISO time")] = None,
           target: Annotated[list[str] | None, typer.Option(help="Only these targets (repeatable).")] = None) -> None:
    """Deliver logged canonical events again; effects already made are skipped by their keys."""
    from crossledger.core.runtime import ReplaySelection

    with operator_errors():
        runtime = runtime_for(config)
        if runtime.settings.hub.broker == "memory":
            fail("a replay runs in the workers: use a shared broker, or POST /v1/replay to `crossledger run`", 2)
        selection = ReplaySelection(source=source, type=event_type, since=_epoch(since), until=_epoch(until),
                                    targets=target or None)
        runtime.request_replay(selection)
        console.print(f"replay enqueued: {msgspec.to_builtins(selection)}")


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# -- journeys ------------------------------------------------------------------------------------
def runtime_with_workers(config: Path | None, endpoint: str) -> Any:
    """A runtime whose messages reach the workers: with the memory broker, the workers are inside
    `crossledger run`, and a message sent from this process would be lost with it."""
    runtime = runtime_for(config)
    if runtime.settings.hub.broker == "memory":
        fail(f"a journey moves in the workers: use a shared broker, or {endpoint} to `crossledger run`", 2)
    return runtime


def journey_run(runtime: Any, run_id: str) -> JourneyRecord:
    record: JourneyRecord | None = runtime.store.journey_get(run_id)
    if record is None:
        fail(f"no journey run {run_id!r}")
    return record


@journeys.command("list")
def journeys_list(config: ConfigOption = None, name: str | None = None,
                  state: Annotated[str | None, typer.Option(help=", ".join(JOURNEY_STATES))] = None,
                  subject: Annotated[str | None, typer.Option(help="A canonical id.")] = None,
                  limit: int = 100) -> None:
    """List journey runs, newest first, with their duration and SLA status."""
    if state is not None and state not in JOURNEY_STATES:
        fail(f"--state must be one of {', '.join(JOURNEY_STATES)}", 2)
    with operator_errors():
        runtime = runtime_for(config)
        records = runtime.store.journeys(name=name, state=state, subject=subject, limit=limit)
        now = time.time()
        table = Table(title="journey runs")
        table.add_column("id", no_wrap=True)  # operators copy it into `journeys show`
        for column in ("journey", "subject", "state", "started (UTC)", "duration", "SLA", "reason"):
            table.add_column(column, overflow="fold")
        for record in records:
            table.add_row(record.id, f"{escape(record.name)} v{record.version}", escape(record.subject), record.state,
                          when(record.started_at), duration_text(elapsed(record, now)),
                          sla_status(record, now) or "-", escape(record.reason or ""))
        console.print(table)


@journeys.command("show")
def journeys_show(run_id: Annotated[str, typer.Argument(help="A run id, as `journeys list` shows it.")],
                  config: ConfigOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="As JSON, as GET /v1/journeys/ID.")] = False,
                  ) -> None:
    """Show one run: where it stands, its steps in order, its data and its audit trail."""
    with operator_errors():
        runtime = runtime_for(config)
        record = journey_run(runtime, run_id)
        journey = runtime.plugins.journeys.get(record.name)
        trail = runtime.store.audit_trail(record.correlation_id)
        now = time.time()
        if as_json:
            console.print_json(json.dumps(document(record, journey, now, trail)))
            return
        status = sla_status(record, now)
        header = Table.grid(padding=(0, 2))
        header.add_column(style="bold")
        header.add_column(overflow="fold")
        for label, value in (
            ("journey", f"{record.name} v{record.version}" + ("" if journey else " (not installed)")),
            ("state", record.state), ("subject", record.subject), ("key", record.key),
            ("trigger", record.trigger or "-"), ("started", when(record.started_at)),
            ("finished", when(record.finished_at) if record.finished_at is not None else "-"),
            ("duration", duration_text(elapsed(record, now))),
            ("SLA", f"{status} (within {duration_text(record.sla_s)})" if record.sla_s is not None else "-"),
            ("reason", record.reason or "-"),
        ):
            header.add_row(label, escape(value))
        console.print(header)
        steps = Table(title="steps")
        for column in ("step", "status", "attempts", "waiting on"):
            steps.add_column(column, no_wrap=True)
        steps.add_column("detail", overflow="fold")
        for step_name, step in ordered_steps(record, journey):
            steps.add_row(escape(step_name), step.status, str(step.attempts), escape(", ".join(step.waiting_on)),
                          escape(step.detail or ""))
        console.print(steps)
        console.print("data", style="bold")
        console.print_json(json.dumps(public_data(record.data)))
        console.print(timeline_table(trail, record.correlation_id))


@journeys.command("start")
def journeys_start(name: Annotated[str, typer.Argument(help="The journey's name.")], config: ConfigOption = None,
                   data: Annotated[str | None, typer.Option(help="The input, a JSON object.")] = None,
                   file: Annotated[Path | None, typer.Option(help="Read the JSON input from this file.")] = None,
                   ) -> None:
    """Start a run by hand (as POST /v1/journeys/NAME); the same input starts one run."""
    if data is not None and file is not None:
        fail("pass --data or --file, not both", 2)
    with operator_errors():
        raw = file.read_text() if file is not None else data or "{}"
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as invalid:
            fail(f"the input is not JSON: {invalid}", 2)
        if not isinstance(body, dict):
            fail("the input must be a JSON object", 2)
        runtime = runtime_with_workers(config, f"POST /v1/journeys/{name}")
        try:
            record, new = runtime.journeys.start_by_hand(name, body)
        except KeyError:
            fail(f"no enabled journey {name!r}")
        except JourneyInputError as refused:
            fail(str(refused))
        console.print(f"{'started' if new else 'already started'} {record.id} ({record.state})", highlight=False)


@journeys.command("resume")
def journeys_resume(run_id: str, config: ConfigOption = None) -> None:
    """Resume a parked run (its failed step is tried again), or nudge an unfinished one."""
    operate(run_id, config, "resume")


@journeys.command("cancel")
def journeys_cancel(run_id: str, config: ConfigOption = None) -> None:
    """Cancel an unfinished run where it stands; what its steps did stays done."""
    operate(run_id, config, "cancel")


def operate(run_id: str, config: Path | None, action: Literal["resume", "cancel"]) -> None:
    """``resume`` or ``cancel`` a run through the engine; one line either way."""
    with operator_errors():
        runtime = runtime_with_workers(config, f"POST /v1/journeys/{run_id}/{action}")
        try:
            record = getattr(runtime.journeys, action)(run_id)
        except (KeyError, ValueError) as refused:
            fail(str(refused.args[0]))
        console.print(f"{record.id} is {record.state}", highlight=False)


@app.command()
def demo(json_summary: Annotated[bool, typer.Option("--json", help="Summary as JSON on the last line.")] = False,
         customers: int = 20, invoices: int = 60, timeout: float = 180.0,
         store: Annotated[str | None, typer.Option(help="Store URL (default: a fresh SQLite file).")] = None) -> None:
    """The whole order-to-cash topology on the sandboxes; exits 0 only when the four systems agree."""
    from crossledger.core.demo import run_demo

    with operator_errors():
        raise typer.Exit(run_demo(customers=customers, invoices=invoices, timeout=timeout, store=store,
                                  json_summary=json_summary, console=console))


@app.command()
def bench(messages: int = 2000, processes: int = 2, threads: int = 8,
          redis_url: str | None = typer.Option(None, help="an existing Redis; default: start a private one")) -> None:
    """Raw Dramatiq no-op messages/s against crossledger events/s, on the same Redis and workers."""
    from crossledger.core.bench import run_bench

    with operator_errors():
        run_bench(messages=messages, processes=processes, threads=threads, redis_url=redis_url, console=console)


def main() -> None:
    app()


