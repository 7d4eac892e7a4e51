"""Where a hub process is put together: a runtime with the actors declared on its broker and their
outbox bound to it (:func:`crossledger.actors.declare`).

Imports point one way (``canonical <- plugins <- core <- actors``), so core does not import the
actors: it loads them by module name, as Dramatiq's own CLI loads the module a worker runs
(``dramatiq crossledger.actors.worker``). Every process that sends messages (the web app, the
scheduler, the operator's commands, the embedded hub) is built here; a worker process is built by
:mod:`crossledger.actors.worker`.
"""

import importlib
from typing import Any

import dramatiq
from crossledger.core.hub.runtime import Runtime
from crossledger.core.settings import Settings

ACTORS_MODULE = "crossledger.actors"


def hub_runtime(settings: Settings) -> tuple[Runtime, dict[str, dramatiq.Actor[Any, Any]]]:
    """A runtime for ``settings`` that can send, and its actors by name."""
    runtime = Runtime(settings)
    actors: dict[str, dramatiq.Actor[Any, Any]] = importlib.import_module(ACTORS_MODULE).declare(runtime)
    return runtime, actors
