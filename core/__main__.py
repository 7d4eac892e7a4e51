"""``python -m crossledger.core``: the same CLI as the ``crossledger`` command."""

from crossledger.core.cli import main

main()
