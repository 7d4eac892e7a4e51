"""The HTTP app (Starlette): webhooks in, operations out.

=================================  ===========================================================
POST /webhooks/{connector}         2xx only once the event is durably enqueued; 400 malformed,
                                   401 bad or stale signature, 404 unknown connector, 413 above
                                   1 MiB, 503 when the broker or store cannot be reached
GET  /v1/transactions/{id}         the audit timeline of one correlation id (or entity)
GET  /v1/dead-letters[/{id}]       dead letters; POST .../{id}/replay re-enqueues one
POST /v1/replay                    deliver logged events again ({"source", "type", "since", "until",
                                   "targets"}); effects already made are skipped
GET  /v1/journeys                  journey runs, newest first (``name``, ``state``, ``subject``,
                                   ``limit``)
GET  /v1/journeys/{id}             one run: its steps in definition order, ``sla`` (``seconds``,
                                   ``status``) and its audit ``trail``
POST /v1/journeys/{name}           start a run by hand (body: a JSON object, the journey's input):
                                   201 new, 200 when its key already has a run; 400 input refused
POST /v1/journeys/{id}/resume      resume a parked run (or nudge an unfinished one); ``/cancel``
                                   stops it; 409 when its state does not allow it
GET  /healthz, /readyz, /metrics   liveness, readiness (store and broker), Prometheus text
=================================  ===========================================================

Every error is JSON ``{"error": {"status", "message"}}``; no stack trace reaches a caller. The
``/v1`` routes require ``Authorization: Bearer <[hub] api_token>`` when a token is configured.
"""

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from crossledger.core import metrics
from crossledger.core.journey_views import JOURNEY_STATES, document
from crossledger.core.runtime import ReplaySelection, Runtime, WebhookRejected
from crossledger.core.stores.base import JourneyRecord
from crossledger.core.timeline import timeline
from crossledger.plugins.journey import JourneyInputError
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


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(runtime: Runtime) -> Starlette:
    token = runtime.settings.hub.api_token

    def protected(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if token is not None:
                given = request.headers.get("authorization", "")
                expected = f"Bearer {token.get_secret_value()}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    return error(401, "missing or wrong bearer token")
            return await handler(request)

        return guarded

    async def webhook(request: Request) -> Response:
        name = request.path_params["connector"]
        try:
            body = await read_body(request)
        except BodyTooLarge:
            return error(413, f"body larger than {MAX_BODY} bytes")
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            status, content_type, reply = await run_in_threadpool(runtime.accept_webhook, name, headers, body)
        except WebhookRejected as rejected:
            shaped = await run_in_threadpool(runtime.webhook_error, name, rejected)
            if shaped is None:
                return error(rejected.status, rejected.message)
            status, content_type, reply = shaped  # the refusal in the sender's own format (a SOAP fault)
            return Response(reply, status_code=status, media_type=content_type)
        except Exception:  # store or broker unreachable: the sender must retry (details go to the log only)
            log.exception("webhook for %s not accepted", name)
            return error(503, "not accepted, retry later: the hub cannot reach its broker or store")
        return Response(reply, status_code=status, media_type=content_type)

    async def transaction(request: Request) -> Response:
        key = request.path_params["correlation_id"]
        records = await run_in_threadpool(timeline, runtime.store, key)
        if not records:
            return error(404, f"no transaction or entity {key!r}")
        return JSONResponse({"id": key, "steps": msgspec.to_builtins(records)})

    async def dead_letters(request: Request) -> Response:
        query = request.query_params
        state = query.get("state", "open")
        if state not in ("open", "replayed", "discarded", "all"):
            return error(400, "state must be open, replayed, discarded or all")
        await run_in_threadpool(runtime.sweep_broker_dead_letters)
        letters = await run_in_threadpool(
            lambda: runtime.store.dlq_list(state=None if state == "all" else state,  # type: ignore[arg-type]
                                           category=query.get("category"), target=query.get("target"),
                                           limit=_limit(query.get("limit"))))
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

    async def replay_log(request: Request) -> Response:
        try:
            selection = msgspec.json.decode(await read_body(request) or b"{}", type=ReplaySelection)
        except (msgspec.DecodeError, BodyTooLarge) as invalid:
            return error(400, f"invalid replay selection: {invalid}")
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
                                             subject=query.get("subject"), limit=_limit(query.get("limit")))
            return [run_document(record) for record in records]

        return JSONResponse({"journeys": await run_in_threadpool(listed)})

    async def journey_run(request: Request) -> Response:
        record = await run_in_threadpool(runtime.store.journey_get, request.path_params["run_id"])
        if record is None:
            return error(404, "no such journey run")
        return JSONResponse(await run_in_threadpool(run_document, record, with_trail=True))

    async def journey_start(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            body = msgspec.json.decode(await read_body(request))
        except BodyTooLarge:
            return error(413, f"body larger than {MAX_BODY} bytes")
        except msgspec.DecodeError as invalid:
            return error(400, f"the body is not JSON: {invalid}")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        try:
            record, new = await run_in_threadpool(runtime.journeys.start_by_hand, name, body)
        except KeyError:
            return error(404, f"no enabled journey {name!r}")
        except JourneyInputError as refused:
            return error(400, str(refused))
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

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(runtime.store.ping)
            client = getattr(runtime.broker, "client", None)
            if client is not None:
                await run_in_threadpool(client.ping)
        except Exception:
            log.exception("not ready")
            return error(503, "not ready: the broker or the store cannot be reached")
        return JSONResponse({"status": "ready", "connectors": sorted(runtime.connectors)})

    async def prometheus(request: Request) -> Response:
        await run_in_threadpool(runtime.refresh_gauges)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error(status, str(detail))

    routes = [
        Route("/webhooks/{connector}", webhook, methods=["POST"]),
        Route("/v1/transactions/{correlation_id:path}", protected(transaction), methods=["GET"]),
        Route("/v1/dead-letters", protected(dead_letters), methods=["GET"]),
        Route("/v1/dead-letters/{letter_id}", protected(dead_letter), methods=["GET"]),
        Route("/v1/dead-letters/{letter_id}/replay", protected(replay), methods=["POST"]),
        Route("/v1/replay", protected(replay_log), methods=["POST"]),
        Route("/v1/journeys", protected(journey_runs), methods=["GET"]),
        Route("/v1/journeys/{run_id}", protected(journey_run), methods=["GET"]),
        Route("/v1/journeys/{name}", protected(journey_start), methods=["POST"]),
        Route("/v1/journeys/{run_id}/resume", protected(journey_operation(runtime.journeys.resume)), methods=["POST"]),
        Route("/v1/journeys/{run_id}/cancel", protected(journey_operation(runtime.journeys.cancel)), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: http_error})


def _limit(raw: str | None) -> int:
    try:
        return max(1, min(1000, int(raw))) if raw else 100
    except ValueError:
        return 100
