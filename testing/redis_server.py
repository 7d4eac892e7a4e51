"""A private ``redis-server`` for tests, benchmarks and demos: started on a free loopback port in a
temporary folder, stopped and removed afterwards.

Nothing the project runs for itself may touch a Redis it did not start (a user's server holds their
data, and ``FLUSHDB`` on it would lose it), so every test and the benchmark start one of these::

    with RedisServer() as server:
        url = server.url(db=3)          # redis://127.0.0.1:<port>/3
        server.kill(); server.start()   # a crash and a restart on the same data (with ``appendonly``)

The binary comes from the distribution's package (``apt-get install redis-server``); ``.ci/run``
installs it when missing.
"""

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` binary on this machine, or it did not answer after starting."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process owned by the caller, its data in a temporary folder.

    ``appendonly=True`` runs it with AOF and ``fsync always``, so :meth:`kill` followed by
    :meth:`start` is a crash that loses nothing acknowledged (what a production Redis promises).
    """

    def __init__(self, *, appendonly: bool = False, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise RedisUnavailable(f"{binary} is not installed (apt-get install redis-server)")
        self.binary = found
        self.appendonly = appendonly
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="crossledger-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start the server (again, after :meth:`kill`, on the same port and data) and wait until it answers."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--daemonize", "no", "--protected-mode", "yes", *persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self.process.returncode} on port {self.port}")
            if self.answers():
                return self
            time.sleep(0.02)
        self.kill()
        raise RedisUnavailable(f"redis-server did not answer on port {self.port} within {timeout:.0f} s")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server: a crash, not a shutdown (no final save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
