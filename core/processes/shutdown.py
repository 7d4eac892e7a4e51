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
import time
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


def absorb_echoed_sigterm(window_s: float = 1.0) -> None:
    """In a Dramatiq worker process: ignore a SIGTERM arriving within ``window_s`` of the first.

    A supervisor stops a process group (foreman, honcho) or a whole control group (systemd) with
    one SIGTERM to every process in it, so a worker process gets it twice: directly, and forwarded
    by Dramatiq's main process. Dramatiq takes a second SIGTERM as "kill now" and exits 1 at once,
    dropping the grace period. The echo is ignored; a second stop asked for later still kills.
    Call it from the main thread, after Dramatiq installed its handler (at the worker's import)."""
    dramatiq_handler = signal.getsignal(signal.SIGTERM)
    if not callable(dramatiq_handler):
        return
    first: list[float] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if first and now - first[0] < window_s:
            return
        first.append(now)
        dramatiq_handler(signum, frame)

    signal.signal(signal.SIGTERM, handle)
