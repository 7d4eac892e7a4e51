"""A graceful stop on SIGTERM and SIGINT for the hub's long-running commands.

A supervisor (systemd, Kubernetes, a Procfile runner) stops a process with SIGTERM and, after its
own grace period, SIGKILL; an operator presses Ctrl-C. Either way the process should stop taking
work, finish what it holds within ``[hub] shutdown_grace_s``, and exit 0. What it could not finish
in time is not lost: every message stays recorded in flight in the store until it settles, and is
sent again (on the memory broker, when the hub starts again; on Redis, by Dramatiq and the
recovery sweep).
"""

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_requested() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT this process receives from now on (call it from
    the main thread). The signals then no longer end the process: its owner stops it."""
    stopping = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, handle)
    return stopping


def wait_for(stopping: threading.Event) -> None:
    """Block the main thread until ``stopping`` is set (waking each second, so a signal handler
    always gets its turn)."""
    while not stopping.wait(1.0):
        pass
