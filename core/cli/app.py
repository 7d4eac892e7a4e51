"""What every command shares: the typer ``app``, the consoles, ``--config``, and the one way a
command fails (:func:`fail`: one line on stderr and an exit code, never a stack trace).
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from crossledger.core.settings import ConfigError, Settings, load_settings
from rich.console import Console
from rich.markup import escape

app = typer.Typer(no_args_is_help=True, add_completion=False, help="crossledger: the governed integration hub.")


def _print_version(asked: bool) -> None:
    if asked:
        from crossledger.core import __version__

        typer.echo(f"crossledger {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                                   callback=_print_version, is_eager=True)] = False) -> None:
    """crossledger: the governed integration hub."""


# Piped output (scripts, grep) gets wide lines instead of rich's 80-column folding, unless COLUMNS
# says how wide (which rich then reads).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240)
err = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 240)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (or CROSSLEDGER_CONFIG).")]


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
    from crossledger.core.processes.composition import hub_runtime

    return hub_runtime(settings_from(config))[0]


def epoch(moment: datetime | None) -> float | None:
    """A time given on the command line (naive means UTC) as seconds since the epoch."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
