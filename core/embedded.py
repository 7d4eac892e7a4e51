"""Run the whole hub in one process: the HTTP app on a thread, Dramatiq worker threads and the poll
scheduler beside it.

This is ``crossledger run`` and the demo's hub. With the ``memory`` broker it needs no service at
all; with Redis it is one node among other workers.
"""

import importlib
import time
from typing import Any

import dramatiq
from crossledger.core.http import create_app
from crossledger.core.runtime import Runtime
from crossledger.core.scheduler import Scheduler
from crossledger.core.settings import Settings
from crossledger.plugins.sandbox import ServerThread

# The actors are loaded by module name, as Dramatiq's own CLI does: core does not import them.
ACTORS_MODULE = "crossledger.actors"


class EmbeddedHub:
    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0,
                 threads: int | None = None) -> None:
        self.runtime = Runtime(settings)
        self.actors: dict[str, Any] = importlib.import_module(ACTORS_MODULE).declare(self.runtime)
        self.worker = dramatiq.Worker(self.runtime.broker, worker_threads=threads or settings.hub.worker_threads,
                                      worker_timeout=100)
        self.server = ServerThread(create_app(self.runtime), host, port)
        self.scheduler = Scheduler(self.runtime)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "EmbeddedHub":
        self.runtime.recover_circuits()
        self.worker.start()
        self.server.start()
        if self.runtime.pollable():
            self.scheduler.start()
        return self

    def idle(self) -> bool:
        """No message waiting, delayed or in progress (memory broker only)."""
        broker = self.runtime.broker
        queues = getattr(broker, "queues", {})
        waiting = sum(q.qsize() + q.unfinished_tasks for q in queues.values())
        return waiting == 0 and not self.worker.work_queue.unfinished_tasks

    def stop(self) -> None:
        self.scheduler.stop()
        self.server.stop()
        self.worker.stop(timeout=5000)
        self.runtime.close()

    def __enter__(self) -> "EmbeddedHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(condition: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
