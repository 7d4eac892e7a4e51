"""Run the whole hub in one process: the HTTP app on a thread, Dramatiq worker threads and the poll
scheduler beside it.

This is ``crossledger run`` and the demo's hub. With the ``memory`` broker it needs no service at
all; with Redis it is one node among other workers. On the memory broker the queue dies with the
process, but every message is recorded in flight in the store before it is enqueued (and before a
webhook is answered 2xx): that record is the queue's write-ahead log, and :meth:`EmbeddedHub.start`
sends again whatever it still holds.
"""

import time
from typing import Any

import dramatiq
from crossledger.core.ingress.app import create_app
from crossledger.core.processes.composition import hub_runtime
from crossledger.core.processes.scheduler import Scheduler
from crossledger.core.settings import Settings
from crossledger.plugins.emulator import ServerThread


class EmbeddedHub:
    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0,
                 threads: int | None = None) -> None:
        self.runtime, self.actors = hub_runtime(settings)
        self.worker = dramatiq.Worker(self.runtime.broker, worker_threads=threads or settings.hub.worker_threads,
                                      worker_timeout=100)
        self.server = ServerThread(create_app(self.runtime), host, port)
        self.scheduler = Scheduler(self.runtime)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "EmbeddedHub":
        """Resume what the last run left in flight (memory broker), then take work (the worker's
        boot probes the circuits left open and resumes idle journey runs: the Recovery middleware)."""
        if self.runtime.settings.hub.broker == "memory":
            self.runtime.resume_in_flight()  # before the worker and the web app record anything new
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

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking work (polls, then webhooks), give the worker threads what is left of
        ``grace_s`` to finish their messages, and close. Messages not finished by then stay
        recorded in flight: the next start on the same store sends them again."""
        deadline = time.monotonic() + grace_s
        self.scheduler.stop()
        self.server.stop()
        self.worker.stop(timeout=int(max(0.0, deadline - time.monotonic()) * 1000))
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
