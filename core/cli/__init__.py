"""The ``crossledger`` command line, one module per role:

- :mod:`.app`: the typer app, the consoles, ``--config`` and :func:`~.app.fail`;
- :mod:`.operate`: ``run``, ``serve``, ``worker``, ``scheduler``;
- :mod:`.inspect`: ``policy``, ``plugins``, ``trace``, ``replay``, ``dlq ...``, ``journeys ...``;
- :mod:`.develop`: ``sandbox``, ``new-connector``, ``demo``, ``bench`` (the developer tools);
- :mod:`.reconcile`: ``reconcile`` and ``reconcile repair``;
- :mod:`.users`: ``user add`` and ``user list`` (the operator console's users).

Every failure an operator can cause (a bad config, a wrong id, an unreachable Redis) ends as one
line on stderr and a non-zero exit; never a stack trace.
"""

# Each module registers its commands on app as it is imported: in this order, by role, is how
# `crossledger --help` lists them.
from crossledger.core.cli import operate  # isort: split

from crossledger.core.cli import inspect  # isort: split

from crossledger.core.cli import develop  # isort: split

from crossledger.core.cli import reconcile  # isort: split

from crossledger.core.cli import users  # isort: split

from crossledger.core.cli.app import app

__all__ = ["app", "develop", "inspect", "main", "operate", "reconcile", "users"]


def main() -> None:
    app()
