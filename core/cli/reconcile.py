"""``crossledger reconcile``: do the systems agree? And ``crossledger reconcile repair``.

``crossledger reconcile [--since WHEN] [--full] [--format table|json|csv]`` runs a reconciliation
(:mod:`crossledger.core.reconcile`) with the configuration alone: the systems are read through their
connectors. Without ``--since`` or ``--full`` it is incremental: each system whose API filters by
"changed since" is read since the last finished run (less a safety overlap), the rest in full, and
the whole compared; a record deleted in a system read incrementally is found by a full run, which
the default makes once the last full run is a day old. The JSON form is
``{"run": {...}, "findings": [...]}``. Exit status: 0 when the systems agree, 3 when there are
findings (scripts tell them from a failure, which is 1, or 2 for a usage error).

``crossledger reconcile repair [--dry-run | --apply] [FILTER...]`` repairs the latest run's findings
(``--run`` another's). A FILTER is ``class=missing``, ``system=netsuite`` or ``id=<finding id>``
(repeatable). ``--dry-run``, the default, prints the count and a preview; ``--apply`` enqueues the
repairs for the workers, so it needs a shared broker (with the embedded default, POST
``/v1/reconciliations/latest/repair`` to ``crossledger run`` instead).
"""

import csv
import json
import sys
from datetime import datetime
from typing import Annotated, Any, Literal

import typer
from crossledger.core.cli.app import ConfigOption, console, epoch, fail, operator_errors, runtime_for
from crossledger.core.cli.app import app as hub_app
from rich.markup import escape
from rich.table import Table

FINDINGS_EXIT = 3
"""The exit status of a run that found differences."""

commands = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                       help="Reconcile the systems through their APIs; `reconcile repair` fixes what the hub may. "
                            "Incremental by default: a system whose API filters by \"changed since\" is read "
                            "since the last finished run (less a safety overlap), the rest in full; a deletion "
                            "there is found by --full, which the default becomes once the last full run is a "
                            "day old. A stopped run resumes at the page after the last it read.")
hub_app.add_typer(commands, name="reconcile")

Format = Literal["table", "json", "csv"]


@commands.callback()
def reconcile(ctx: typer.Context, config: ConfigOption = None,
              since: Annotated[str | None, typer.Option(help="Read what changed since this ISO time (UTC "
                                                              "unless it says otherwise), or since the last read "
                                                              "if earlier; report amounts and fields that differ "
                                                              "in records changed since then.")] = None,
              full: Annotated[bool, typer.Option("--full", help="Read every record of every system and report "
                                                               "every difference. Only a full run finds a record "
                                                               "deleted in a system read incrementally (the "
                                                               "default is full once the last full run is a day "
                                                               "old).")] = False,
              output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table") -> None:
    """Compare every system with its system of record, record by record and in total.

    By default incremental: each system whose API tells what changed since (NetSuite, Salesforce,
    Business Central, Zendesk, Zuora's accounts and invoices, Stripe's events) is read since the
    last finished run, less a safety overlap; the rest (Zuora's v1 lists) in full. Edits and copies
    made since are found; deletions in a system read incrementally by --full (or the default's daily
    full run). A run that stopped resumes at the page after the last it read."""
    if ctx.invoked_subcommand is not None:
        return
    if output not in ("table", "json", "csv"):
        fail("--format must be table, json or csv", 2)
    if since is not None and full:
        fail("--since and --full contradict each other: give one", 2)
    moment = None if since is None else _moment(since)
    from crossledger.core.reconcile import Reconciler, report_json
    from crossledger.core.reconcile.engine import default_since

    with operator_errors():
        runtime = runtime_for(config)
        start = None if full else epoch(moment) if moment is not None else default_since(runtime.store)
        report = Reconciler(runtime).run(since=start)
        shown = report_json(report)
        if output == "json":
            sys.stdout.write(json.dumps(shown, indent=2) + "\n")
        elif output == "csv":
            _csv(shown["findings"])
        else:
            _table(shown)
    if report.findings:
        raise typer.Exit(FINDINGS_EXIT)


@commands.command("repair")
def repair(filters: Annotated[list[str] | None, typer.Argument(help="class=..., system=..., id=... (id= repeatable)")]
           = None, config: ConfigOption = None,
           apply: Annotated[bool, typer.Option("--apply/--dry-run", help="Enqueue the repairs, or (the default) "
                                                                       "show the count and a preview.")] = False,
           run: Annotated[str | None, typer.Option("--run", help="A run id (default: the latest run).")] = None,
           output: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Repair a run's findings through the hub's own deliveries: dry run first, then --apply."""
    from crossledger.core.reconcile import FINDING_CLASSES, Repairs

    if output not in ("table", "json"):
        fail("--format must be table or json", 2)
    wanted = _filters(filters or [])
    if len(wanted.get("class", [])) > 1 or len(wanted.get("system", [])) > 1:
        fail("give class= and system= at most once each (id= may repeat)", 2)
    cls = wanted.get("class", [None])[-1]
    if cls is not None and cls not in FINDING_CLASSES:
        fail(f"class must be one of {', '.join(FINDING_CLASSES)}", 2)
    with operator_errors():
        runtime = runtime_for(config)
        if apply and runtime.settings.hub.broker == "memory":
            fail("repairs run in the workers: use a shared broker, or POST /v1/reconciliations/latest/repair "
                 "to `crossledger run`", 2)
        repairs = Repairs(runtime)
        try:
            chosen, findings = repairs.select(run, cls=cls,
                                              system=wanted.get("system", [None])[-1], ids=wanted.get("id"))
        except KeyError as missing:
            fail(str(missing.args[0]))
        except ValueError as wrong:
            fail(str(wrong), 2)
        summary = repairs.run(chosen, findings, apply=apply)
        if output == "json":
            sys.stdout.write(json.dumps(summary.as_json(), indent=2) + "\n")
        else:
            _repairs_table(summary.as_json())
    if summary.failed:
        raise typer.Exit(1)


def _moment(text: str) -> datetime:
    """``--since`` as a time; a usage error in one line when it is none (typer's own would be a box)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since takes an ISO time such as 2026-01-31 or 2026-01-31T09:00:00+01:00, not {text!r}", 2)


def _filters(tokens: list[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` tokens by key (``class``, ``system``, ``id``)."""
    wanted: dict[str, list[str]] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in ("class", "system", "id") or not value:
            fail(f"a filter is class=..., system=... or id=..., not {token!r}", 2)
        wanted.setdefault(key, []).append(value)
    return wanted


def _table(shown: dict[str, Any]) -> None:
    run, findings = shown["run"], shown["findings"]
    read = ", ".join(f"{name} {count}" for name, count in sorted(run["counts"].items()))
    console.print(f"reconciliation {run['id']} ({run['started']} UTC): read {read or 'nothing'}")
    if not findings:
        console.print("[green]the systems agree[/green]")
        return
    table = Table(title=f"{len(findings)} findings")
    for column in ("class", "system", "subject", "age", "what differs", "repair"):
        table.add_column(column, overflow="fold")
    table.add_column("id", no_wrap=True)  # operators copy it into `reconcile repair id=...`
    for finding in findings:
        repair = finding["repair"]
        table.add_row(finding["class"], finding["system"], finding["subject"], _age(finding["age"]),
                      escape(finding["detail"]), repair["action"] if repair else "-", finding["id"])
    console.print(table)


def _repairs_table(summary: dict[str, Any]) -> None:
    if summary["applied"]:
        done = f"{summary['enqueued']} repairs enqueued ({len(summary['failed'])} failed)"
    else:
        done = f"{summary['count']} repairs would be enqueued (dry run; --apply to do it)"
    console.print(f"run {summary['run']}: {done} for {summary['findings']} findings; "
                  f"{summary['without_repair']} need a person")
    table = Table()
    for column in ("action", "system", "subject", "findings"):
        table.add_column(column, overflow="fold")
    for repair in summary["preview"]:
        table.add_row(repair["action"], repair.get("target") or repair.get("source", ""), repair["subject"],
                      ", ".join(repair["findings"]))
    console.print(table)
    for failure in summary["failed"]:
        console.print(f"[red]failed:[/red] {escape(failure)}")


def _csv(findings: list[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(["id", "class", "entity", "subject", "system", "age_s", "rule", "repair", "detail", "records"])
    for f in findings:
        writer.writerow([f["id"], f["class"], f["entity"], f["subject"], f["system"], f["age"], f["rule"],
                         json.dumps(f["repair"]) if f["repair"] else "", f["detail"], json.dumps(f["records"])])


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
