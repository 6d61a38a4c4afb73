"""A simulated Quo REST API: the calls endpoints, phone numbers and conversations, answered
from a `VendorSimulatorState` like the real API (paths, `Authorization` header without
`Bearer`, `{"data": ...}` bodies, token paging, `{message, code, status, docs, title}`
errors). The tests and sandbox mode serve it; faults come from `state.faults`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.lenient import timestamp
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.openphone.calls import (
    DEFAULT_PARTICIPANT,
    conversation_id,
    quo_number,
    simulated_call,
)
from callhook.vendors.simulator import inject_faults, lookup_call

_TITLES = {
    400: ("Bad Request", "The input was invalid"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "User is forbidden to perform this action"),
    404: ("Not Found", "Not found"),
    429: ("Too Many Requests", "Rate limit exceeded"),
    500: ("Unknown", "We have encountered an unknown error"),
}

#: Quo's error codes start with a two-digit resource family
_FAMILIES = {
    "calls": "01",
    "summaries": "05",
    "transcripts": "06",
    "recordings": "09",
    "voicemails": "12",
    "phone-numbers": "03",
    "conversations": "13",
}


def error_body(status: int, family: str = "calls", message: str | None = None) -> dict[str, Any]:
    """Quo's error shape: `{"message", "code", "status", "docs", "title"}`."""
    title, default = _TITLES.get(status, ("Unknown", "We have encountered an unknown error"))
    return {
        "message": message or default,
        "code": f"{_FAMILIES.get(family, '00')}00{status}",
        "status": status,
        "docs": "https://quo.com/docs",
        "title": title,
    }


def simulator_app(state: VendorSimulatorState, *, ai_features: bool = True) -> Starlette:
    """The API for `state`. With `ai_features=False` the summaries and transcripts
    endpoints answer 403, like a plan without them."""

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), state.api_key.encode())

    def make(call_id: str) -> SimulatedCall:
        return simulated_call(call_id, time.time())

    async def guarded(request: Request, family: str) -> Response | None:
        return await inject_faults(
            state,
            request,
            error_body=lambda status: error_body(status, family),
            authorized=authorized(request),
        )

    def per_call(family: str, answer: Callable[[SimulatedCall], Response]) -> Any:
        async def endpoint(request: Request) -> Response:
            failure = await guarded(request, family)
            if failure is not None:
                return failure
            found = lookup_call(state, request.path_params["call_id"], make)
            if found is None:
                return _error(404, family, "Call not found")
            return answer(found)

        return endpoint

    def get_call(found: SimulatedCall) -> Response:
        return JSONResponse({"data": found.call})

    def recordings(found: SimulatedCall) -> Response:
        return JSONResponse({"data": found.extras.get("recordings", [])})

    def ai_extra(kind: str, family: str) -> Callable[[SimulatedCall], Response]:
        def answer(found: SimulatedCall) -> Response:
            if not ai_features:
                return _error(403, family, f"Call {kind}s are not available on this plan")
            data = found.extras.get(kind) or {
                "callId": found.call_id,
                "status": "absent",
                **({"summary": None, "nextSteps": None} if kind == "summary" else {}),
                **({"dialogue": None, "duration": 0} if kind == "transcript" else {}),
            }
            return JSONResponse({"data": data})

        return answer

    def voicemail(found: SimulatedCall) -> Response:
        data = found.extras.get("voicemail")
        if not data:
            return _error(404, "voicemails", "Voicemail not found")
        return JSONResponse({"data": data})

    async def list_calls(request: Request) -> Response:
        failure = await guarded(request, "calls")
        if failure is not None:
            return failure
        query = request.query_params
        number_id = query.get("phoneNumberId")
        people = query.getlist("participants") + query.getlist("participants[]")
        if not number_id or not people:
            return _error(400, "calls", "phoneNumberId and participants are required")
        if len(people) > 1:
            return _error(400, "calls", "Too Many Participants")
        lower = timestamp(query.get("createdAfter"))
        upper = timestamp(query.get("createdBefore"))
        matching = [
            call
            for call in state.calls.values()
            if call.get("phoneNumberId") == number_id
            and people[0] in _people(call)
            and _between(timestamp(call.get("createdAt")), lower, upper)
        ]
        matching.sort(key=lambda call: timestamp(call.get("createdAt")) or 0.0, reverse=True)
        return _page(matching, query, "calls")

    async def phone_numbers(request: Request) -> Response:
        failure = await guarded(request, "phone-numbers")
        if failure is not None:
            return failure
        ids = sorted({str(call.get("phoneNumberId")) for call in state.calls.values()})
        return JSONResponse({"data": [_phone_number(number_id) for number_id in ids]})

    async def conversations(request: Request) -> Response:
        failure = await guarded(request, "conversations")
        if failure is not None:
            return failure
        query = request.query_params
        wanted = set(query.getlist("phoneNumbers") + query.getlist("phoneNumbers[]"))
        since = timestamp(query.get("updatedAfter"))
        found = [
            conversation
            for conversation in _conversations(state.calls.values())
            if (not wanted or wanted & {conversation["phoneNumberId"], conversation["_number"]})
            and _between(timestamp(conversation["updatedAt"]), since, None)
        ]
        return _page([_public(c) for c in found], query, "conversations")

    routes = [
        Route("/v1/calls", list_calls, methods=["GET"]),
        Route("/v1/calls/{call_id}", per_call("calls", get_call), methods=["GET"]),
        Route("/v1/call-recordings/{call_id}", per_call("recordings", recordings), methods=["GET"]),
        Route(
            "/v1/call-summaries/{call_id}",
            per_call("summaries", ai_extra("summary", "summaries")),
            methods=["GET"],
        ),
        Route(
            "/v1/call-transcripts/{call_id}",
            per_call("transcripts", ai_extra("transcript", "transcripts")),
            methods=["GET"],
        ),
        Route("/v1/call-voicemails/{call_id}", per_call("voicemails", voicemail), methods=["GET"]),
        Route("/v1/phone-numbers", phone_numbers, methods=["GET"]),
        Route("/v1/conversations", conversations, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _error(status: int, family: str, message: str) -> Response:
    return JSONResponse(error_body(status, family, message), status_code=status)


def _people(call: Mapping[str, Any]) -> set[str]:
    values = call.get("participants") or []
    found = {str(v) for v in values} if isinstance(values, list) else set()
    found.update(str(call[key]) for key in ("from", "to") if call.get(key))
    return found


def _between(moment: float | None, lower: float | None, upper: float | None) -> bool:
    if moment is None:
        return lower is None and upper is None
    return (lower is None or moment > lower) and (upper is None or moment < upper)


def _page(items: list[dict[str, Any]], query: Mapping[str, str], family: str) -> Response:
    """One page of `items`: `maxResults` (1-100, required) from `pageToken`'s offset."""
    size = query.get("maxResults", "")
    if not size.isdigit() or not 1 <= int(size) <= 100:
        return _error(400, family, "maxResults must be between 1 and 100")
    offset = _offset(query.get("pageToken"))
    if offset is None:
        return _error(400, family, "Invalid pageToken")
    chunk = items[offset : offset + int(size)]
    after = offset + len(chunk)
    following = _token(after) if after < len(items) else None
    return JSONResponse({"data": chunk, "totalItems": len(items), "nextPageToken": following})


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int | None:
    if not token:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, value = decoded.partition(":")
    return int(value) if prefix == "offset" and value.isdigit() else None


def _phone_number(number_id: str) -> dict[str, Any]:
    return {
        "id": number_id,
        "groupId": "PG" + number_id[2:],
        "number": quo_number(number_id),
        "formattedNumber": quo_number(number_id),
        "name": "Main line",
        "symbol": "📞",
        "users": [],
        "createdAt": "2024-01-02T15:04:05.000Z",
        "updatedAt": "2024-01-02T15:04:05.000Z",
    }


def _conversations(calls: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One conversation per (workspace number, counterparty), most recently updated first."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for call in calls:
        number_id = str(call.get("phoneNumberId"))
        for person in sorted(_people(call) - {quo_number(number_id)}) or [DEFAULT_PARTICIPANT]:
            grouped.setdefault((number_id, person), []).append(str(call.get("createdAt")))
    found = [
        {
            "id": conversation_id(number_id, person),
            "phoneNumberId": number_id,
            "_number": quo_number(number_id),
            "participants": [person],
            "name": None,
            "createdAt": min(times, key=lambda t: timestamp(t) or 0.0),
            "updatedAt": max(times, key=lambda t: timestamp(t) or 0.0),
            "lastActivityAt": max(times, key=lambda t: timestamp(t) or 0.0),
        }
        for (number_id, person), times in grouped.items()
    ]
    found.sort(key=lambda c: timestamp(c["updatedAt"]) or 0.0, reverse=True)
    return found


def _public(conversation: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conversation.items() if not k.startswith("_")}
