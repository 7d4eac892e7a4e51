"""The HTTP app (Starlette): webhooks in, operations out.

=================================  ===========================================================
POST /webhooks/{connector}         2xx only once the event is durably enqueued; refusals as in
                                   :mod:`crossledger.core.ingress.refusals` (400, 401, 404, 408, 413, 415, 422),
                                   503 only when the broker or store cannot be reached
GET  /v1/transactions/{id}         the audit timeline of one correlation id, journey run, canonical
                                   id, or any system's id for a record (``cus_...``, ``001...``)
GET  /v1/dead-letters[/{id}]       dead letters; POST .../{id}/replay re-enqueues one,
                                   POST .../{id}/discard closes one (body: ``{"reason": "..."}``)
POST /v1/replay                    deliver logged events again ({"source", "type", "since", "until",
                                   "targets"}); effects already made are skipped
GET  /v1/journeys                  journey runs, newest first (``name``, ``state``, ``subject``,
                                   ``limit``)
GET  /v1/journeys/{id}             one run: its steps in definition order, ``sla`` (``seconds``,
                                   ``status``) and its audit ``trail``
POST /v1/journeys/{name}           start a run by hand (body: a JSON object, the journey's input):
                                   201 new, 200 when its key already has a run; 422 input refused
POST /v1/journeys/{id}/resume      resume a parked run (or nudge an unfinished one); ``/cancel``
                                   stops it; 409 when its state does not allow it
GET  /healthz, /readyz, /metrics   liveness, readiness (store and broker), Prometheus text
/ (and /login, /transactions, ...) the operator console (:mod:`crossledger.core.console`): HTML
                                   pages behind a signed-in session, not the bearer token
=================================  ===========================================================

Every error is JSON ``{"error": {"status", "message"}}`` (a webhook's in its sender's own shape
when its connector has one, a SOAP fault for Salesforce); no stack trace reaches a caller, and an
unexpected failure is a 500 logged once with the request's method, path and id. A body must arrive
within ``[hub] body_timeout_s`` (408, and the connection is closed). The ``/v1`` routes require
``Authorization: Bearer <[hub] api_token>`` when a token is configured.
"""

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from crossledger.core import console
from crossledger.core.hub.runtime import ReplaySelection, Runtime
from crossledger.core.ingress import reconciliations
from crossledger.core.ingress.refusals import MAX_DEPTH, UNREACHABLE, Refused, check_portable, describe
from crossledger.core.store.base import JourneyRecord
from crossledger.core.telemetry import metrics
from crossledger.core.views.journeys import JOURNEY_STATES, document
from crossledger.core.views.timeline import timeline
from crossledger.plugins.journey_definition import JourneyInputError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


def error(status: int, message: str) -> JSONResponse:
    # A refusal may leave part of the body unread (too large, too slow): the connection cannot be
    # reused, so say so and let the server close it.
    headers = {"connection": "close"} if status in (408, 413) else None
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


async def read_body(request: Request, timeout_s: float, limit: int = MAX_BODY) -> bytes:
    """The whole body, or :class:`Refused`: 413 above ``limit`` bytes, 408 when it has not arrived
    within ``timeout_s`` (a client that stalls mid-body must not hold a connection forever)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


async def read_json(request: Request, timeout_s: float, into: type[T], *, empty: bytes | None = b"{}") -> T:
    """A JSON body converted to ``into``: 415 for another declared media type, 400 for a body that
    is not JSON (or nests too deep, or holds an integer past 64 bits), 422 for JSON of the wrong shape.
    An empty body reads as ``empty``, or is refused (400) when that is None."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json":
        raise Refused(415, f"content type {media_type!r} is not application/json")
    raw = await read_body(request, timeout_s) or empty
    if raw is None:
        raise Refused(400, "the body is not JSON: it is empty")
    try:
        decoded = msgspec.json.decode(raw)
    except RecursionError:
        raise Refused(400, f"the body is nested more than {MAX_DEPTH} levels deep") from None
    except msgspec.DecodeError as invalid:
        raise Refused(400, f"the body is not JSON: {invalid}") from None
    try:
        check_portable(decoded)
    except ValueError as unfit:
        raise Refused(400, str(unfit)) from None
    try:
        return msgspec.convert(decoded, into)
    except msgspec.ValidationError as invalid:
        raise Refused(422, f"the body is not what this endpoint takes: {invalid}") from None


class DiscardRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/dead-letters/{id}/discard``: why the letter needs no delivery."""

    reason: str


def edge(handler: Handler) -> Handler:
    """Every route's outer layer: a :class:`Refused` is its status, an unreachable broker or store a
    503 the sender retries, and anything else a 500 logged once with the request's ids; no
    traceback reaches the caller."""
    async def answered(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as refused:
            return error(refused.status, refused.message)
        except UNREACHABLE as down:
            log.warning("%s %s: the broker or store cannot be reached: %s", request.method, request.url.path,
                        describe(down))
            return error(503, "not available, retry later: the hub cannot reach its broker or store")
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("%s %s failed unexpectedly (request %s)", request.method, request.url.path, request_id)
            return error(500, f"internal error (request {request_id}; the hub's log has the details)")

    return answered


def create_app(runtime: Runtime) -> Starlette:
    hub = runtime.settings.hub
    token = hub.api_token
    body_timeout_s = hub.body_timeout_s

    def protected(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if token is not None:
                given = request.headers.get("authorization", "")
                expected = f"Bearer {token.get_secret_value()}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    return error(401, "missing or wrong bearer token")
            return await handler(request)

        return edge(guarded)

    async def webhook(request: Request) -> Response:
        name = request.path_params["connector"]
        try:
            body = await read_body(request, body_timeout_s)
            headers = {key.lower(): value for key, value in request.headers.items()}
            status, content_type, reply = await run_in_threadpool(runtime.accept_webhook, name, headers, body,
                                                                  dict(request.query_params))
        except Refused as refused:
            return await refusal(name, refused)
        except UNREACHABLE as down:  # the sender must retry (details go to the log only)
            log.warning("webhook for %s not accepted: the broker or store cannot be reached: %s", name,
                        describe(down))
            return await refusal(name, Refused(503, "not accepted, retry later: the hub cannot reach its broker "
                                                    "or store"))
        return Response(reply, status_code=status, media_type=content_type)

    async def refusal(name: str, refused: Refused) -> Response:
        """Count and log the refusal; answer it in the sender's own shape when its connector has one
        (a SOAP fault), else as the hub's JSON error."""
        known = name if name in runtime.connectors else "unknown"  # a path must not mint metric labels
        metrics.webhooks_rejected.labels(known, refused.reason).inc()
        log.info("webhook for %s refused: %d %s", known, refused.status, refused.logged)
        shaped = await run_in_threadpool(runtime.webhook_error, name, refused)
        if shaped is None:
            return error(refused.status, refused.message)
        status, content_type, reply = shaped
        headers = {"connection": "close"} if status in (408, 413) else None
        return Response(reply, status_code=status, media_type=content_type, headers=headers)

    async def transaction(request: Request) -> Response:
        key = request.path_params["correlation_id"]
        records = await run_in_threadpool(timeline, runtime.store, key, systems=sorted(runtime.plugins.connectors))
        if not records:
            return error(404, f"no transaction, entity or system id {key!r}")
        return JSONResponse({"id": key, "steps": msgspec.to_builtins(records)})

    async def dead_letters(request: Request) -> Response:
        query = request.query_params
        state = query.get("state", "open")
        if state not in ("open", "replayed", "discarded", "all"):
            return error(400, "state must be open, replayed, discarded or all")
        letters = await run_in_threadpool(
            lambda: runtime.store.dlq_list(state=None if state == "all" else state,  # type: ignore[arg-type]
                                           category=query.get("category"), target=query.get("target"),
                                           limit=query_limit(query.get("limit"))))
        return JSONResponse({"dead_letters": msgspec.to_builtins(letters)})

    async def dead_letter(request: Request) -> Response:
        letter = await run_in_threadpool(runtime.store.dlq_get, request.path_params["letter_id"])
        if letter is None:
            return error(404, "no such dead letter")
        return JSONResponse(msgspec.to_builtins(letter))

    async def replay(request: Request) -> Response:
        refresh = request.query_params.get("refresh") in ("1", "true", "yes")
        try:
            letter = await run_in_threadpool(runtime.replay_dead_letter, request.path_params["letter_id"],
                                             refresh=refresh)
        except KeyError as missing:
            return error(404, str(missing.args[0]))
        except ValueError as conflict:
            return error(409, str(conflict))
        return JSONResponse({"replayed": letter.id})

    async def discard(request: Request) -> Response:
        wanted = await read_json(request, body_timeout_s, DiscardRequest)
        if not wanted.reason.strip():
            return error(422, "the reason must say why the letter needs no delivery")
        try:
            letter = await run_in_threadpool(runtime.discard_dead_letter, request.path_params["letter_id"],
                                             wanted.reason.strip())
        except KeyError as missing:
            return error(404, str(missing.args[0]))
        except ValueError as conflict:
            return error(409, str(conflict))
        return JSONResponse(msgspec.to_builtins(letter))

    async def replay_log(request: Request) -> Response:
        selection = await read_json(request, body_timeout_s, ReplaySelection)
        await run_in_threadpool(runtime.request_replay, selection)
        return JSONResponse({"replay": msgspec.to_builtins(selection), "status": "enqueued"}, status_code=202)

    def run_document(record: JourneyRecord, *, with_trail: bool = False) -> dict[str, Any]:
        trail = runtime.store.audit_trail(record.correlation_id) if with_trail else None
        return document(record, runtime.plugins.journeys.get(record.name), time.time(), trail)

    async def journey_runs(request: Request) -> Response:
        query = request.query_params
        state = query.get("state")
        if state is not None and state not in JOURNEY_STATES:
            return error(400, f"state must be one of {', '.join(JOURNEY_STATES)}")

        def listed() -> list[dict[str, Any]]:
            records = runtime.store.journeys(name=query.get("name"), state=state,  # type: ignore[arg-type]
                                             subject=query.get("subject"), limit=query_limit(query.get("limit")))
            return [run_document(record) for record in records]

        return JSONResponse({"journeys": await run_in_threadpool(listed)})

    async def journey_run(request: Request) -> Response:
        record = await run_in_threadpool(runtime.store.journey_get, request.path_params["run_id"])
        if record is None:
            return error(404, "no such journey run")
        return JSONResponse(await run_in_threadpool(run_document, record, with_trail=True))

    async def journey_start(request: Request) -> Response:
        name = request.path_params["name"]
        body = await read_json(request, body_timeout_s, dict[str, Any], empty=None)
        try:
            record, new = await run_in_threadpool(runtime.journeys.start_by_hand, name, body)
        except KeyError:
            return error(404, f"no enabled journey {name!r}")
        except JourneyInputError as refused:
            return error(422, str(refused))
        return JSONResponse(await run_in_threadpool(run_document, record), status_code=201 if new else 200)

    def journey_operation(operation: Callable[[str], JourneyRecord]) -> Handler:
        """``resume`` or ``cancel``: 404 for an unknown run, 409 when its state does not allow it."""
        async def operate(request: Request) -> Response:
            try:
                record = await run_in_threadpool(operation, request.path_params["run_id"])
            except KeyError as missing:
                return error(404, str(missing.args[0]))
            except ValueError as conflict:
                return error(409, str(conflict))
            return JSONResponse(await run_in_threadpool(run_document, record))

        return operate

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    readiness = {"down": False}

    async def readyz(request: Request) -> Response:
        """Ready when the store and the broker answer. A change of state is logged once (not every
        probe): ``not ready: <why>``, then ``ready again``."""
        try:
            await run_in_threadpool(runtime.store.ping)
            client = getattr(runtime.broker, "client", None)
            if client is not None:
                await run_in_threadpool(client.ping)
        except Exception as down:  # any failure to answer means not ready; the reason is logged below
            if not readiness["down"]:
                log.warning("not ready: the broker or the store cannot be reached: %s", describe(down))
            readiness["down"] = True
            return error(503, "not ready: the broker or the store cannot be reached")
        if readiness["down"]:
            log.warning("ready again: the broker and the store answer")
        readiness["down"] = False
        return JSONResponse({"status": "ready", "connectors": sorted(runtime.connectors)})

    async def prometheus(request: Request) -> Response:
        await run_in_threadpool(runtime.refresh_gauges)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error(status, str(detail))

    routes = [
        Route("/webhooks/{connector}", edge(webhook), methods=["POST"]),
        Route("/v1/transactions/{correlation_id:path}", protected(transaction), methods=["GET"]),
        Route("/v1/dead-letters", protected(dead_letters), methods=["GET"]),
        Route("/v1/dead-letters/{letter_id}", protected(dead_letter), methods=["GET"]),
        Route("/v1/dead-letters/{letter_id}/replay", protected(replay), methods=["POST"]),
        Route("/v1/dead-letters/{letter_id}/discard", protected(discard), methods=["POST"]),
        Route("/v1/replay", protected(replay_log), methods=["POST"]),
        Route("/v1/journeys", protected(journey_runs), methods=["GET"]),
        Route("/v1/journeys/{run_id}", protected(journey_run), methods=["GET"]),
        Route("/v1/journeys/{name}", protected(journey_start), methods=["POST"]),
        Route("/v1/journeys/{run_id}/resume", protected(journey_operation(runtime.journeys.resume)), methods=["POST"]),
        Route("/v1/journeys/{run_id}/cancel", protected(journey_operation(runtime.journeys.cancel)), methods=["POST"]),
        Route("/healthz", edge(healthz), methods=["GET"]),
        Route("/readyz", edge(readyz), methods=["GET"]),
        Route("/metrics", edge(prometheus), methods=["GET"]),
        *reconciliations.routes(runtime, protected),
        *console.routes(runtime),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: http_error})


def query_limit(raw: str | None, *, default: int = 100) -> int:
    """``?limit=``: ``default`` when absent, at most 1000; anything but a positive whole number is a 400."""
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise Refused(400, f"limit must be a whole number from 1 to 1000, not {raw[:20]!r}")
    return min(1000, int(raw))
