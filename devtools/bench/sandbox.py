"""The bench's Stripe and NetSuite sandboxes, in a process of their own, with a clock on every write.

``python -m crossledger.devtools.bench.sandbox --port P --write-config FILE`` serves the Stripe and
NetSuite emulators under ``/stripe/`` and ``/netsuite/`` (as ``crossledger sandbox`` does) and writes
their ``[connectors.*]`` settings to FILE. Two things differ, both so that the bench measures the
pipelines and nothing else:

- every upsert by external id the NetSuite sandbox answers 2xx is recorded with the time its answer
  left (``time.time()``): ``GET /_bench/effects?since=K`` returns the records from the K-th on as
  ``[[record type, external id, unix seconds], ...]``. The hub and the baseline are timed by the
  same clock, at the same point (the effect acknowledged), and the bench learns that a run is
  complete without reading either side's store;
- NetSuite's concurrency governance allows :data:`CONCURRENCY_LIMIT` requests in flight instead of
  10: 2 × 8 worker threads would otherwise meet 429s, and then the two sides' retry back-offs, not
  their pipelines, would decide the figures.
"""

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import tomli_w
from crossledger.core.settings import write_private
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.netsuite.sandbox.app import RECORD_ROOT, NetSuiteSandbox
from crossledger.plugins.stripe.sandbox.app import StripeSandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONCURRENCY_LIMIT = 256
EFFECTS_PATH = "/_bench/effects"


class EffectClock:
    """ASGI middleware around the NetSuite sandbox: notes each ``PUT .../{type}/eid:{id}`` answered 2xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.effects: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "PUT" or "/eid:" not in path:
            await self.app(scope, receive, send)
            return
        record_type, _, external_id = path.rpartition(RECORD_ROOT + "/")[2].partition("/eid:")

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                with self._lock:
                    self.effects.append((record_type, external_id, time.time()))
            await send(message)

        await self.app(scope, receive, noting)

    def since(self, request: Request) -> JSONResponse:
        start = int(request.query_params.get("since", "0"))
        with self._lock:
            return JSONResponse(self.effects[start:])


def serve(port: int) -> tuple[ServerThread, dict[str, dict[str, Any]]]:
    """Start the sandboxes on ``port`` (0: any free one); their connector settings."""
    stripe = StripeSandbox()
    netsuite = NetSuiteSandbox(concurrency_limit=CONCURRENCY_LIMIT)
    clock = EffectClock(netsuite.app)
    app = Starlette(routes=[Route(EFFECTS_PATH, clock.since), Mount("/stripe", app=stripe.app),
                            Mount("/netsuite", app=clock)])
    server = ServerThread(app, port=port).start()
    return server, {"stripe": stripe.connector_settings(f"{server.url}/stripe"),
                    "netsuite": netsuite.connector_settings(f"{server.url}/netsuite")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--write-config", required=True)
    args = parser.parse_args()
    server, connectors = serve(args.port)
    write_private(Path(args.write_config), tomli_w.dumps({"url": server.url, "connectors": connectors}))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
