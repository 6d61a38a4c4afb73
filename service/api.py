"""The JSON API under /api/v1 (on when `[console] token` is set; docs/api.md).

Every request needs `Authorization: Bearer <token>`: without it, or with another token,
the answer is 401 and nothing is read or changed. Actions go through the normal queues
(callhook/actions.py), so the sinks' idempotency holds.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callhook.actions import ActionRefused, UnknownCall
from callhook.dead_letters import DeadLetter
from callhook.journal.reader import BadCursor, CallFilter
from callhook.record import CallStatus
from service.access import Access
from service.insight import Insight

#: largest request body the API reads
MAX_BODY_BYTES = 65_536
MAX_LIMIT = 200

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(ValueError):
    """A query or body the API cannot use; the message is the answer's detail."""


def error(status_code: int, detail: str, **headers: str) -> Response:
    return JSONResponse({"status": "error", "detail": detail}, status_code, headers=headers)


def guarded(handler: Handler) -> Handler:
    """`handler` behind the Bearer token; a `BadRequest` it raises becomes a 400."""

    async def run(request: Request) -> Response:
        access: Access = request.app.state.console_access
        if not access.bearer_matches(request):
            return error(401, "missing or wrong token", **{"www-authenticate": "Bearer"})
        try:
            return await handler(request)
        except BadRequest as exc:
            return error(400, str(exc))

    return run


def insight(request: Request) -> Insight:
    found: Insight = request.app.state.insight
    return found


CALL_PARAMETERS = frozenset(
    {"source", "status", "failed", "since", "until", "cursor", "limit", "q"}
)
DEAD_LETTER_PARAMETERS = frozenset({"stage", "sink", "source"})


_NAMES = {
    "source": re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
    "sink": re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
}


def known_parameters(request: Request, known: frozenset[str]) -> Mapping[str, str]:
    """The query parameters; one this route does not know is refused, not ignored (a
    misspelt filter would otherwise list everything), and so is a name no source or sink
    could have."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r} ({', '.join(sorted(known))})")
    for key in _NAMES:
        check_name(params.get(key), key)
    return params


def check_name(value: object, key: str) -> None:
    """`value` is None or could name a `key` (source or sink), else 400."""
    if value is not None and (not isinstance(value, str) or not _NAMES[key].match(value)):
        raise BadRequest(f"{key}: not a {key} name")


async def list_calls(request: Request) -> Response:
    params = known_parameters(request, CALL_PARAMETERS)
    try:
        result = await insight(request).calls(
            call_filter(params),
            cursor=params.get("cursor") or None,
            limit=bounded_int(params.get("limit"), default=50, low=1, high=MAX_LIMIT),
            query=(params.get("q") or "").strip() or None,
        )
    except BadCursor as exc:
        raise BadRequest(f"cursor: {exc}") from None
    return JSONResponse(result)


def call_filter(params: Mapping[str, str]) -> CallFilter:
    """The filters of GET /calls (and the console's list) from query parameters; a filter
    given empty is refused like any other bad value."""
    status = params.get("status")
    if status is not None and status not in CallStatus.__members__.values():
        raise BadRequest(f"status: one of {', '.join(s.value for s in CallStatus)}")
    failed = params.get("failed")
    if failed not in (None, "true", "false"):
        raise BadRequest("failed: true or false")
    return CallFilter(
        source=params.get("source") or None,
        status=status,
        failed=None if failed is None else failed == "true",
        since_ms=moment_ms(params.get("since"), "since"),
        until_ms=moment_ms(params.get("until"), "until"),
    )


def moment_ms(value: str | None, name: str) -> int | None:
    """An ISO-8601 time (UTC when it has no offset) as milliseconds since the epoch."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: an ISO-8601 time, e.g. 2026-12-07T14:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def bounded_int(value: str | None, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"limit: a number from {low} to {high}")
    return int(value)


async def get_call(request: Request) -> Response:
    found = await insight(request).call(
        request.path_params["source"], request.path_params["call_id"]
    )
    if found is None:
        return error(404, "no such call in the journal or the record store")
    return JSONResponse(found)


async def redeliver(request: Request) -> Response:
    body = await json_body(request, allowed={"sinks"})
    sinks = body.get("sinks")
    if sinks is not None and (
        not isinstance(sinks, list) or not all(isinstance(s, str) for s in sinks)
    ):
        raise BadRequest("sinks: a list of sink names")
    try:
        chosen = await insight(request).actions.redeliver(
            request.path_params["source"], request.path_params["call_id"], sinks, by="api"
        )
    except UnknownCall as exc:
        return error(404, str(exc))
    except ActionRefused as exc:
        raise BadRequest(str(exc)) from None
    return JSONResponse({"status": "enqueued", "sinks": chosen}, status_code=202)


async def re_enrich(request: Request) -> Response:
    await json_body(request, allowed=set())
    try:
        await insight(request).actions.re_enrich(
            request.path_params["source"], request.path_params["call_id"], by="api"
        )
    except UnknownCall as exc:
        return error(404, str(exc))
    return JSONResponse({"status": "enqueued"}, status_code=202)


async def list_dead_letters(request: Request) -> Response:
    params = known_parameters(request, DEAD_LETTER_PARAMETERS)
    stage = params.get("stage")
    if stage not in (None, "enrich", "deliver"):
        raise BadRequest("stage: enrich or deliver")
    return JSONResponse(
        await insight(request).dead_letters(
            stage=stage, sink=params.get("sink") or None, source=params.get("source") or None
        )
    )


async def chosen_dead_letters(request: Request) -> tuple[list[DeadLetter], bool]:
    """The entries a replay or purge body names (`ids`, or a filter of `stage`, `sink`,
    `source`, `reason_class`, or `all`), and its `dry_run` flag."""
    body = await json_body(request, allowed={"ids", *SELECTION_FILTERS, "all", "dry_run"})
    ids = body.get("ids")
    filters = {key: body.get(key) for key in SELECTION_FILTERS}
    for flag in ("all", "dry_run"):
        if body.get(flag) is not None and not isinstance(body.get(flag), bool):
            raise BadRequest(f"{flag}: true or false")
    if ids is None and not any(filters.values()) and body.get("all") is not True:
        raise BadRequest("say which: ids, a filter (stage, sink, source, reason_class) or all")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise BadRequest("ids: a list of dead-letter ids")
    for key, value in filters.items():
        if value is not None and (not isinstance(value, str) or not value):
            raise BadRequest(f"{key}: a non-empty string")
    check_name(filters["source"], "source")
    check_name(filters["sink"], "sink")
    if filters["stage"] not in (None, "enrich", "deliver"):
        raise BadRequest("stage: enrich or deliver")
    entries = await insight(request).select_dead_letters(ids=ids, **filters)
    return entries, body.get("dry_run") is True


async def replay_dead_letters(request: Request) -> Response:
    entries, dry_run = await chosen_dead_letters(request)
    if dry_run:
        return JSONResponse({"matched": len(entries), "replayed": 0, "dry_run": True})
    replayed = await insight(request).actions.replay(entries, by="api")
    return JSONResponse({"matched": len(entries), "replayed": len(replayed)})


async def purge_dead_letters(request: Request) -> Response:
    entries, dry_run = await chosen_dead_letters(request)
    if dry_run:
        return JSONResponse({"matched": len(entries), "purged": 0, "dry_run": True})
    purged = await insight(request).actions.purge(entries, by="api")
    return JSONResponse({"matched": len(entries), "purged": purged})


async def overview(request: Request) -> Response:
    return JSONResponse(await insight(request).overview())


async def health(request: Request) -> Response:
    return JSONResponse(await insight(request).health())


async def rejections(request: Request) -> Response:
    return JSONResponse(await insight(request).rejections())


SELECTION_FILTERS = ("stage", "sink", "source", "reason_class")


async def json_body(request: Request, *, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 when it is anything else or has
    a key not `allowed`."""
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks).strip()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body is not a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    return body


def routes() -> list[BaseRoute]:
    calls = "/calls/{source}/{call_id}"
    return [
        Route("/calls", guarded(list_calls), methods=["GET"]),
        Route(f"{calls}/redeliver", guarded(redeliver), methods=["POST"]),
        Route(f"{calls}/re-enrich", guarded(re_enrich), methods=["POST"]),
        Route(calls, guarded(get_call), methods=["GET"]),
        Route("/dead-letters", guarded(list_dead_letters), methods=["GET"]),
        Route("/dead-letters/replay", guarded(replay_dead_letters), methods=["POST"]),
        Route("/dead-letters/purge", guarded(purge_dead_letters), methods=["POST"]),
        Route("/overview", guarded(overview), methods=["GET"]),
        Route("/health", guarded(health), methods=["GET"]),
        Route("/rejections", guarded(rejections), methods=["GET"]),
    ]
