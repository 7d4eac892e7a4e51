"""``crossledger user``: the people who may sign in to the operator console.

``user add NAME --role viewer|operator`` reads the password from standard input (its first line),
so it never appears in a shell's history or a process list; adding a name that exists replaces its
password and role. ``user list`` shows names and roles, never hashes.
"""

import sys
from typing import Annotated

import typer
from crossledger.core.cli.app import ConfigOption, app, console, fail, operator_errors, runtime_for

users = typer.Typer(no_args_is_help=True, help="Console users: add, list.")
app.add_typer(users, name="user")


@users.command("add")
def add(name: Annotated[str, typer.Argument(help="The name to sign in with.")],
        role: Annotated[str, typer.Option("--role", help="viewer (looks) or operator (acts).")] = "viewer",
        config: ConfigOption = None) -> None:
    """Add a console user (or replace one's password and role); the password is read from stdin."""
    from crossledger.core.console.users import UserError, new_user

    with operator_errors():
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            user = new_user(name, role, password)
        except UserError as refused:
            fail(str(refused), 2)
        store = runtime_for(config).store
        replaced = store.user_get(name) is not None
        store.user_put(user)
        console.print(f"{'replaced' if replaced else 'added'} {user.name} ({user.role})", highlight=False)


@users.command("list")
def listed(config: ConfigOption = None) -> None:
    """The console's users and their roles."""
    with operator_errors():
        for user in runtime_for(config).store.users():
            console.print(f"{user.name}\t{user.role}", highlight=False)
