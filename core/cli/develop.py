"""Developer tools behind the command line: ``sandbox``, ``new-connector``, ``demo`` and ``bench``.

The only module of the CLI that uses :mod:`crossledger.devtools`, imported inside each command: an
operator's commands never load them.
"""

import time
from pathlib import Path
from typing import Annotated

import tomli_w
import typer
from crossledger.core.cli.app import app, console, fail, operator_errors
from crossledger.core.settings import write_private
from rich.markup import escape


@app.command()
def sandbox(host: str = "127.0.0.1", port: int = 8100,
            hub_url: Annotated[str | None, typer.Option(help="Register this hub's webhook endpoint.")] = None,
            write_config: Annotated[Path | None, typer.Option(help="Write a hub config here.")] = None,
            billing: Annotated[str, typer.Option(help="The billing system: stripe or zuora.")] = "stripe",
            erp: Annotated[str, typer.Option(help="The ERP: netsuite or business-central.")] = "netsuite") -> None:
    """Serve every sandbox on one port, each under /<system>/; the hub is pointed at one billing × ERP
    pair, with Salesforce and Zendesk."""
    from crossledger.devtools.sandboxes import SandboxSet, topology
    from crossledger.plugins import load_plugins
    from crossledger.plugins.emulator import ServerThread

    with operator_errors():
        try:
            pair = topology(billing, erp)
        except ValueError as error:
            fail(str(error), 2)
        sandboxes = SandboxSet(load_plugins().connectors)
        server = ServerThread(sandboxes.app, host, port).start()
        if hub_url:
            sandboxes.subscribe(hub_url, pair.systems)
        if write_config:
            config = {"connectors": {name: section for name, section in sandboxes.config(server.url).items()
                                     if name in pair.systems},
                      "topology": pair.roles()}
            write_private(write_config, tomli_w.dumps(config))
            console.print(f"wrote {write_config} for {pair}")
        console.print(f"sandboxes on {server.url}: " + ", ".join(f"/{n}/" for n in sandboxes.sandboxes))
        while True:
            time.sleep(3600)


@app.command("new-connector")
def new_connector(name: Annotated[str, typer.Argument(help="The connector's name, e.g. acme_crm.")],
                  kind: Annotated[str, typer.Option(help="crm, billing, erp or support.")] = "crm",
                  directory: Annotated[Path, typer.Option("--dir", help="Where to make crossledger-NAME/.")] = Path(".")
                  ) -> None:
    """Scaffold a third-party connector package, crossledger-NAME/, that passes the contract suite."""
    from crossledger.devtools.scaffold.make import ScaffoldError, scaffold
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
def demo(json_summary: Annotated[bool, typer.Option("--json", help="Summary as JSON on the last line.")] = False,
         billing: Annotated[str, typer.Option(help="The billing system: stripe or zuora.")] = "stripe",
         erp: Annotated[str, typer.Option(help="The ERP: netsuite or business-central.")] = "netsuite",
         customers: int = 20, invoices: int = 60, timeout: float = 180.0,
         store: Annotated[str | None, typer.Option(help="Store URL (default: a fresh SQLite file).")] = None) -> None:
    """The whole order-to-cash topology on the sandboxes; exits 0 only when the four systems agree."""
    from crossledger.devtools.demo.pair import Pair
    from crossledger.devtools.demo.run import run_demo

    try:
        pair = Pair.chosen(billing, erp)
    except ValueError as error:
        fail(str(error), 2)
    with operator_errors():
        raise typer.Exit(run_demo(customers=customers, invoices=invoices, timeout=timeout, store=store,
                                  json_summary=json_summary, console=console, pair=pair))


bench_commands = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                             help="crossledger against a hand-written pipeline; `bench reconcile`: reconciliation "
                                  "at scale.")
app.add_typer(bench_commands, name="bench")


@bench_commands.callback()
def bench(ctx: typer.Context,
          messages: Annotated[int, typer.Option(help="Events a round, sent at once.", min=10)] = 2000,
          processes: int = 2, threads: int = 8,
          rounds: Annotated[int, typer.Option(help="Hub and baseline run alternately this often.", min=1)] = 3,
          mode: Annotated[str, typer.Option(help="redis, embedded or both.")] = "both",
          redis_url: str | None = typer.Option(None, help="an existing Redis; default: start private ones"),
          soak: Annotated[int | None, typer.Option(help="Instead: this many events through the hub alone, "
                                                        "sampling each process's memory.", min=20)] = None,
          rate: Annotated[float, typer.Option(help="The soak's steady events/s (below what the hub sustains).",
                                              min=1)] = 50.0) -> None:
    """crossledger against a hand-written Dramatiq pipeline doing the same Stripe -> NetSuite work."""
    if ctx.invoked_subcommand is not None:
        return
    from crossledger.devtools.bench.run import MODES, run_bench
    from crossledger.devtools.bench.run import soak as run_soak

    modes = MODES if mode == "both" else tuple(m for m in MODES if m == mode)
    if not modes:
        fail(f"--mode must be redis, embedded or both, not {mode!r}", 2)
    with operator_errors():
        if soak is not None:
            run_soak(events=soak, rate=rate, mode=modes[-1] if mode == "both" else modes[0], processes=processes,
                     threads=threads, redis_url=redis_url, console=console)
        else:
            run_bench(messages=messages, processes=processes, threads=threads, redis_url=redis_url, rounds=rounds,
                      modes=modes, console=console)


@bench_commands.command("reconcile")
def bench_reconcile(invoices: Annotated[int, typer.Option(help="Invoices to seed (with a customer per ten, "
                                                                "and payments).", min=100)] = 100_000,
                    page_size: Annotated[int | None, typer.Option(help="Records a request (default: each "
                                                                         "system's largest page).", min=1)] = None,
                    traced: Annotated[bool, typer.Option("--tracemalloc", help="Also trace Python's allocations "
                                                                              "(slower).")] = False) -> None:
    """Reconcile N invoices with their customers and payments through the APIs: time, rate, peak memory;
    exits 1 unless exactly the injected drifts are found."""
    from crossledger.devtools.bench.reconcile import run_reconcile_bench

    with operator_errors():
        raise typer.Exit(run_reconcile_bench(invoices=invoices, page_size=page_size, traced=traced, console=console))
