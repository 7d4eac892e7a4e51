"""Record what a served app answers, and check each answer as it is given.

:class:`Recorder` is ASGI middleware: put it around a sandbox's app and drive the sandbox with any
client (an official SDK, the connectors, raw HTTP). Every HTTP exchange is kept as an
:class:`Exchange` and handed to a vendor's :data:`Check` the moment its answer is complete; what the
check finds collects in :attr:`Recorder.departures` for the test to assert on.
"""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Exchange:
    """One request an app answered: what was asked and what came back."""

    method: str
    path: str
    """The path within the app (a mount's prefix is left out), without the query string."""
    query: str
    status: int
    content_type: str
    body: bytes

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"

    @property
    def is_json(self) -> bool:
        """Whether the answer is a JSON document (a ``204`` or a plain-text refusal is not)."""
        return "json" in self.content_type and bool(self.body)

    def json(self) -> Any:
        return json.loads(self.body)


Check = Callable[[Exchange], list[str]]
"""How one exchange departs from what the vendor would answer, one line a departure (an empty list:
faithful). Each line starts with the exchange (``GET /v1/customers 200: ...``)."""


def unchecked(exchange: Exchange) -> list[str]:
    return []


@dataclass
class Recorder:
    """ASGI middleware that keeps every HTTP exchange of the app it wraps in :attr:`exchanges`, and
    collects in :attr:`departures` what ``check`` finds wrong with each (a check that raises is a
    departure too: a broken check must fail the test, not the answer)."""

    app: ASGIApp
    check: Check = unchecked
    exchanges: list[Exchange] = field(default_factory=list)
    departures: list[str] = field(default_factory=list)

    def take_departures(self) -> list[str]:
        """The departures found so far, forgotten here (so the next test starts clean)."""
        found, self.departures = self.departures, []
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: Message = {}
        chunks: list[bytes] = []

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._record(scope, started, b"".join(chunks))
            await send(message)

        await self.app(scope, receive, recording_send)

    def _record(self, scope: Scope, started: Message, body: bytes) -> None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in started.get("headers", [])}
        exchange = Exchange(
            method=scope["method"],
            # Under a Mount the path still starts with the mount's prefix, which root_path names.
            path=str(scope["path"]).removeprefix(str(scope.get("root_path", ""))),
            query=scope.get("query_string", b"").decode("latin-1"),
            status=int(started["status"]),
            content_type=headers.get("content-type", ""),
            body=body,
        )
        self.exchanges.append(exchange)
        try:
            self.departures += self.check(exchange)
        except Exception as error:
            self.departures.append(f"{exchange}: the check itself failed: {error!r}")
