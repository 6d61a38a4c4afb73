"""A simulated Diga: realistic calls and their messages, "Call Finished" deliveries with the
workflow's Bearer token, and an API server (Get Call, the call's messages, List Calls).

Used by `callhook send-test-event`, by sandbox mode (`callhook up` with no config) and by
the tests. Shapes follow Diga's API reference: unwrapped call objects, cursor-paged
listings `{data, has_more, first_id, last_id, current_page, total_pages}`, and errors
`{"status": "error", "error_code", "message"}`.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.events import Delivery
from callhook.lenient import dig
from callhook.vendors.diga.config import DigaSource, reveal
from callhook.vendors.diga.listing import Invalid, call_filter, page, sort_key
from callhook.vendors.diga.mapping import CALL_FINISHED
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.simulator import inject_faults, lookup_call

__all__ = [
    "SIMULATED_TYPES",
    "bearer_headers",
    "error_body",
    "finished_body",
    "signed_headers",
    "simulate_delivery",
    "simulated_call",
    "simulator_app",
]

SIMULATED_TYPES: tuple[str, ...] = (CALL_FINISHED,)

#: one company's agent, its published version and its phone line (stable across calls)
AGENT_ID = "6f1d2c3b-8a4e-4c5d-9e0f-1a2b3c4d5e6f"
AGENT_VERSION_ID = "0b7e9c1d-2f3a-4b5c-8d6e-7f8091a2b3c4"
PHONE_REGISTER_ID = "d3c2b1a0-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
_IDS = uuid.UUID("9a1c5e2f-3b4d-4e6f-8a0b-1c2d3e4f5a6b")

_CONVERSATION: tuple[tuple[str, str | None, dict[str, Any] | None], ...] = (
    (
        "assistant",
        "Hola, le atiende Lucía de Clínica Dental Sonrisa. ¿En qué puedo ayudarle?",
        None,
    ),
    ("user", "Hola, quería pedir cita para una limpieza la semana que viene.", None),
    (
        "assistant",
        None,
        {"name": "check_availability", "arguments": {"service": "limpieza", "week": "next"}},
    ),
    ("assistant", "Tengo hueco el martes a las 10:30. ¿Le va bien?", None),
    ("user", "Perfecto, el martes a las 10:30.", None),
    ("assistant", "Hecho, queda reservada. ¡Hasta el martes!", None),
)


def iso(moment: float) -> str:
    """A time as Diga writes it: `2023-11-07T05:31:56Z`."""
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _derived(call_id: str, what: str) -> str:
    return str(uuid.uuid5(_IDS, f"{call_id}:{what}"))


# --- calls and messages as the API returns them ---------------------------------------------


def simulated_call(call_id: str | None, now: float) -> SimulatedCall:
    """A finished inbound phone call to the agent, recorded, as Get Call returns it;
    `extras["transcript"]` is its messages as `GET /v1/call/{id}/message` lists them."""
    call_id = call_id or str(uuid.uuid4())
    created = int(now) - 120
    started, ended = created + 4, created + 100
    call: dict[str, Any] = {
        "id": call_id,
        "agent_id": AGENT_ID,
        "agent_version_id": AGENT_VERSION_ID,
        "status": "completed",
        "type": "inbound",
        "contact": {
            "id": _derived(call_id, "contact"),
            "created_date": iso(created - 86400 * 30),
            "identifier": "+34612345678",
            "contact_type": "call",
        },
        "phone_register_id": PHONE_REGISTER_ID,
        "created_date": iso(created),
        "recording_url": f"https://storage.diga.io/recordings/{call_id}.wav",
        "start_time": iso(started),
        "end_time": iso(ended),
        "duration": ended - started,
        "end_reason": "user_hangup",
        "dynamic_variables": {"customer_name": "Marta García", "clinic": "Sonrisa Centro"},
    }
    step = (ended - started) // len(_CONVERSATION)
    messages = [
        {
            "message_id": _derived(call_id, f"message-{index}"),
            "created_date": iso(started + 1 + index * step),
            "role": role,
            "content": content,
            "tool_call": tool_call,
        }
        for index, (role, content, tool_call) in enumerate(_CONVERSATION)
    ]
    return SimulatedCall(call_id, call, {"transcript": messages})


# --- "Call Finished" deliveries -------------------------------------------------------------


def bearer_headers(token: str) -> dict[str, str]:
    """The headers Callhook's documented workflow setup sends."""
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


def signed_headers(config: DigaSource) -> dict[str, str]:
    """`bearer_headers` with the source's configured webhook token."""
    return bearer_headers(reveal(config.webhook_token))


def finished_body(call: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The body the "Call Finished" workflow posts about `call` (a Get Call object): the
    trigger's fields, with each message as the trigger gives it (role, content, created_date)."""
    return {
        "call_id": call["id"],
        "status": call.get("status"),
        "duration": call.get("duration"),
        "type": call.get("type"),
        "end_reason": call.get("end_reason"),
        "phone_number": dig(call, "contact", "identifier"),
        "contact_id": dig(call, "contact", "id"),
        "agent_id": call.get("agent_id"),
        "start_time": call.get("start_time"),
        "end_time": call.get("end_time"),
        "dynamic_variables": call.get("dynamic_variables") or {},
        "messages": [
            {
                "role": message.get("role"),
                "content": message.get("content"),
                "created_date": message.get("created_date"),
            }
            for message in messages
            if message.get("content") is not None  # tool calls are not part of it
        ],
    }


def simulate_delivery(
    config: DigaSource, vendor_type: str, call: SimulatedCall, now: float
) -> Delivery:
    """A delivery of `vendor_type` about `call`, as the documented workflow posts it."""
    if vendor_type not in SIMULATED_TYPES:
        raise ValueError(f"Diga has no simulated event {vendor_type!r}")
    body = finished_body(call.call, call.extras.get("transcript") or [])
    return Delivery(body=orjson.dumps(body), headers=signed_headers(config))


# --- the API --------------------------------------------------------------------------------

_ERROR_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "CALL_NOT_FOUND",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_SERVER_ERROR",
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Diga's error shape: `{"status": "error", "error_code", "message"}`."""
    code = _ERROR_CODES.get(status, "ERROR")
    return {"status": "error", "error_code": code, "message": message or code.lower()}


def simulator_app(state: VendorSimulatorState) -> Starlette:
    """`GET /v1/call/{id}`, `GET /v1/call/{id}/message` and `GET /v1/call/`, with
    `Authorization: Bearer <state.api_key>` checked and `state.faults` injected."""

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, state.api_key.encode())

    def make(call_id: str) -> SimulatedCall:
        return simulated_call(call_id, time.time())

    async def guarded(request: Request, answer: Callable[[], Response]) -> Response:
        failure = await inject_faults(
            state, request, error_body=error_body, authorized=authorized(request)
        )
        if failure is not None:
            return failure
        try:
            return answer()
        except Invalid as exc:
            return JSONResponse(error_body(422, str(exc)), status_code=422)

    def found(request: Request) -> SimulatedCall | Response:
        call_id = request.path_params["call_id"]
        try:
            uuid.UUID(call_id)
        except ValueError:
            raise Invalid(f"call id {call_id!r} is not a valid UUID") from None
        call = lookup_call(state, call_id, make)
        if call is None:
            return JSONResponse(error_body(404, f"Call {call_id} not found"), status_code=404)
        return call

    async def get_call(request: Request) -> Response:
        def answer() -> Response:
            call = found(request)
            return call if isinstance(call, Response) else JSONResponse(call.call)

        return await guarded(request, answer)

    async def get_messages(request: Request) -> Response:
        def answer() -> Response:
            call = found(request)
            if isinstance(call, Response):
                return call
            messages = call.extras.get("transcript") or []
            keyed = [(sort_key(m.get("created_date"), i), m) for i, m in enumerate(messages)]
            return JSONResponse(page(request.query_params, keyed, "message_id", default_limit=100))

        return await guarded(request, answer)

    async def list_calls(request: Request) -> Response:
        def answer() -> Response:
            query = request.query_params
            keyed = [
                (sort_key(call.get("created_date"), call.get("id")), call)
                for call in state.calls.values()
            ]
            listed = page(query, keyed, "id", default_limit=50, keep=call_filter(query))
            return JSONResponse(listed)

        return await guarded(request, answer)

    return Starlette(
        routes=[
            Route("/v1/call/", list_calls, methods=["GET"]),
            Route("/v1/call/{call_id}", get_call, methods=["GET"]),
            Route("/v1/call/{call_id}/message", get_messages, methods=["GET"]),
        ]
    )
