"""Looking into the hub and acting on its records: ``policy``, ``plugins``, ``trace``, ``replay``,
the dead letters (``dlq``) and the journey runs (``journeys``).
"""

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import typer
from crossledger.core.cli.app import ConfigOption, app, console, epoch, err, fail, operator_errors, runtime_for
from crossledger.core.store.base import JourneyRecord
from crossledger.core.views.journeys import (
    JOURNEY_STATES,
    document,
    duration_text,
    elapsed,
    ordered_steps,
    public_data,
    sla_status,
)
from crossledger.core.views.timeline import timeline, timeline_table, when
from crossledger.plugins.errors import ConnectorError
from crossledger.plugins.journey_definition import Journey, JourneyInputError
from rich.markup import escape
from rich.table import Table

dlq = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, replay, discard.")
app.add_typer(dlq, name="dlq")
journeys = typer.Typer(no_args_is_help=True, help="Journey runs: list, show, start, resume, cancel.")
app.add_typer(journeys, name="journeys")


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
        console.print(timeline_table(records, key, console.width))


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
            cutoff = epoch(before)
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
    from crossledger.core.hub.runtime import ReplaySelection

    with operator_errors():
        runtime = runtime_for(config)
        if runtime.settings.hub.broker == "memory":
            fail("a replay runs in the workers: use a shared broker, or POST /v1/replay to `crossledger run`", 2)
        selection = ReplaySelection(source=source, type=event_type, since=epoch(since), until=epoch(until),
                                    targets=target or None)
        runtime.request_replay(selection)
        console.print(f"replay enqueued: {msgspec.to_builtins(selection)}")


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
        console.print(timeline_table(trail, record.correlation_id, console.width))


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
    act_on_run(run_id, config, "resume")


@journeys.command("cancel")
def journeys_cancel(run_id: str, config: ConfigOption = None) -> None:
    """Cancel an unfinished run where it stands; what its steps did stays done."""
    act_on_run(run_id, config, "cancel")


def act_on_run(run_id: str, config: Path | None, action: Literal["resume", "cancel"]) -> None:
    """``resume`` or ``cancel`` a run through the engine; one line either way."""
    with operator_errors():
        runtime = runtime_with_workers(config, f"POST /v1/journeys/{run_id}/{action}")
        try:
            record = getattr(runtime.journeys, action)(run_id)
        except (KeyError, ValueError) as refused:
            fail(str(refused.args[0]))
        console.print(f"{record.id} is {record.state}", highlight=False)
