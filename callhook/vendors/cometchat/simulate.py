"""A simulated CometChat: realistic calls, webhook deliveries authenticated with HTTP Basic
as CometChat sends them, and a Calls API server (Get Call, List Calls).

Used by `callhook send-test-event`, by sandbox mode (`callhook up` with no config) and by
the tests. Payload shapes follow CometChat's documented examples, including their habit of
sending some numbers and booleans as strings.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Collection, Mapping
from typing import Any, Literal

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.events import Delivery
from callhook.lenient import boolean, number, timestamp
from callhook.vendors.cometchat.config import CometChatSource
from callhook.vendors.cometchat.payloads import SIMULATED_TYPES, USERS, short_hash, webhook_payload
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.simulator import inject_faults, lookup_call

__all__ = [
    "SIMULATED_TYPES",
    "basic_auth_headers",
    "legacy_shape",
    "signed_headers",
    "simulate_delivery",
    "simulated_call",
    "simulator_app",
]

#: Get Call's answer: `{"data": {call}}` (current) or `{"data": [{call}]}` (older export)
Shape = Literal["object", "array"]


def new_session_id(now: float, region: str = "us") -> str:
    """A session id shaped like CometChat's: `v1.<region>.<app>.<unix><hex>`."""
    return f"v1.{region}.{secrets.token_hex(8)}.{int(now)}{secrets.token_hex(20)}"


# --- calls as Get Call returns them ----------------------------------------------------


def simulated_call(call_id: str | None, now: float) -> SimulatedCall:
    """A finished one-to-one audio call, recorded and transcribed, as Get Call returns it
    (current shape); `extras` are its recordings and transcriptions, as `fetch` returns."""
    session_id = call_id or new_session_id(now)
    initiated = int(now) - 95
    started, ended = initiated + 5, initiated + 65
    call: dict[str, Any] = {
        "sessionId": session_id,
        "type": "audio",
        "mode": "call",
        "receiverType": "user",
        "initiator": "cometchat-uid-1",
        "receiver": "cometchat-uid-5",
        "status": "ended",
        "initiatedAt": initiated,
        "startedAt": started,
        "endedAt": ended,
        "totalAudioMinutes": 2.0,
        "totalVideoMinutes": 0,
        "totalDurationInMinutes": 1.0,
        "totalDuration": "00:01:00",
        "totalParticipants": 2,
        "hasRecording": True,
        "hasTranscription": True,
        "participants": [
            _participant("cometchat-uid-1", started, ended),
            _participant("cometchat-uid-5", started + 1, ended),
        ],
        "recordings": [
            {
                "rid": f"rec-{short_hash(session_id)}",
                "duration": 0.9833,
                "startTime": started + 1,
                "endTime": ended,
                "recording_url": f"https://recordings-us.cometchat.io/{short_hash(session_id)}.mp4",
            }
        ],
        "transcriptions": [
            {
                "tid": f"tr-{short_hash(session_id)}",
                "transcriptUrl": f"https://transcripts-us.cometchat.io/{short_hash(session_id)}.json",
                "startTime": started + 1,
                "endTime": ended,
            }
        ],
    }
    return SimulatedCall(
        session_id,
        call,
        {"recordings": call["recordings"], "transcript": call["transcriptions"]},
    )


def _participant(uid: str, joined: int, left: int) -> dict[str, Any]:
    minutes = round((left - joined) / 60, 4)
    return {
        "uid": uid,
        "deviceId": f"{uid}-web",
        "isJoined": False,
        "state": "ended",
        "joinedAt": joined,
        "leftAt": left,
        "totalAudioMinutes": minutes,
        "totalVideoMinutes": 0,
        "totalDurationInMinutes": minutes,
    }


def legacy_shape(call: Mapping[str, Any]) -> dict[str, Any]:
    """The same call as the older export shows it: participants with `name`/`avatar`, and
    `data.entities.{initiator,receiver}.entity`."""

    def user(uid: Any) -> dict[str, Any]:
        uid = str(uid)
        return {"uid": uid, "name": USERS.get(uid, uid), "avatar": _avatar(uid)}

    return {
        **call,
        "participants": [{**p, **user(p.get("uid"))} for p in call.get("participants", [])],
        "data": {
            "entities": {
                "initiator": {"entity": user(call.get("initiator")), "entityType": "user"},
                "receiver": {"entity": user(call.get("receiver")), "entityType": "user"},
            }
        },
    }


def _avatar(uid: Any) -> str:
    return f"https://assets.cometchat.io/sampleapp/v2/users/{uid}.webp"


# --- webhook deliveries ----------------------------------------------------------------


def basic_auth_headers(username: str, password: str) -> dict[str, str]:
    """The headers CometChat sends with a webhook that has Basic authentication on."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}", "content-type": "application/json"}


def signed_headers(config: CometChatSource) -> dict[str, str]:
    """`basic_auth_headers` with the source's configured credentials."""
    return basic_auth_headers(
        config.basic_auth_username, config.basic_auth_password.get_secret_value()
    )


def simulate_delivery(
    config: CometChatSource, vendor_type: str, call: SimulatedCall, now: float
) -> Delivery:
    """A delivery of `vendor_type` about `call`, as CometChat posts it."""
    payload = webhook_payload(
        vendor_type, call.call, now, app_id=config.app_id, region=config.region
    )
    return Delivery(body=orjson.dumps(payload), headers=signed_headers(config))


# --- the Calls API ---------------------------------------------------------------------

_ERROR_CODES = {
    401: "AUTH_ERR_APIKEY_NOT_FOUND",
    403: "AUTH_ERR_NO_ACCESS",
    404: "ERR_CALL_SESSION_NOT_FOUND",
    429: "ERR_TOO_MANY_REQUESTS",
    500: "ERR_INTERNAL_SERVER_ERROR",
}


def error_body(status: int) -> dict[str, Any]:
    """CometChat's error shape: `{"error": {"code", "message"}}`."""
    code = _ERROR_CODES.get(status, "ERR_UNKNOWN")
    return {"error": {"code": code, "message": code.replace("_", " ").lower()}}


def simulator_app(
    state: VendorSimulatorState,
    *,
    shape: Shape = "object",
    array_shape_calls: Collection[str] = (),
) -> Starlette:
    """The Calls API: `GET /calls/{sessionId}` and `GET /calls`, `apikey` header checked.

    Get Call answers `{"data": {call}}`, or the older `{"data": [{call}]}` when `shape` is
    "array" or the call's id is in `array_shape_calls`. Faults come from `state.faults`.
    """

    def authorized(request: Request) -> bool:
        given = request.headers.get("apikey", "")
        return hmac.compare_digest(given.encode(), state.api_key.encode())

    def make(call_id: str) -> SimulatedCall:
        return simulated_call(call_id, time.time())

    async def get_call(request: Request) -> Response:
        failure = await inject_faults(
            state, request, error_body=error_body, authorized=authorized(request)
        )
        if failure is not None:
            return failure
        session_id = request.path_params["session_id"]
        found = lookup_call(state, session_id, make)
        if found is None:
            return JSONResponse(error_body(404), status_code=404)
        if shape == "array" or session_id in array_shape_calls:
            return JSONResponse({"data": [found.call]})
        return JSONResponse({"data": found.call})

    async def list_calls(request: Request) -> Response:
        failure = await inject_faults(
            state, request, error_body=error_body, authorized=authorized(request)
        )
        if failure is not None:
            return failure
        query = request.query_params
        page = _positive_int(query.get("page"), 1)
        per_page = min(_positive_int(query.get("perPage"), 25), 100)
        matching = sorted(
            (call for call in state.calls.values() if _matches(call, query)),
            key=lambda call: timestamp(call.get("initiatedAt")) or 0.0,
            reverse=True,
        )
        total_pages = max(1, -(-len(matching) // per_page))
        chunk = matching[(page - 1) * per_page : page * per_page]
        pagination = {
            "total": len(matching),
            "count": len(chunk),
            "per_page": per_page,
            "current_page": page,
            "total_pages": total_pages,
        }
        return JSONResponse({"data": chunk, "meta": {"pagination": pagination}})

    return Starlette(
        routes=[
            Route("/calls", list_calls, methods=["GET"]),
            Route("/calls/{session_id}", get_call, methods=["GET"]),
        ]
    )


def _positive_int(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else default


def _matches(call: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """List Calls filters. `startedAt`/`endedAt` bound the call's initiation time (the
    simulator's reading of "date range queries"; the docs do not say more)."""
    for key in ("type", "mode", "status", "receiverType"):
        if key in query and str(call.get(key)) != query[key]:
            return False
    if "hasRecording" in query and boolean(call.get("hasRecording")) != boolean(
        query["hasRecording"]
    ):
        return False
    if "uid" in query:
        uids = {call.get("initiator"), call.get("receiver")}
        uids.update(p.get("uid") for p in call.get("participants", []) if isinstance(p, dict))
        if query["uid"] not in uids:
            return False
    moment = timestamp(call.get("initiatedAt")) or 0.0
    lower, upper = number(query.get("startedAt")), number(query.get("endedAt"))
    if lower is not None and moment < lower:
        return False
    return not (upper is not None and moment > upper)
