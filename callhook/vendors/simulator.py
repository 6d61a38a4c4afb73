"""What every simulated vendor API shares: request logging and fault injection.

Each vendor's `simulate.py` builds a Starlette app whose handlers call `inject_faults`
first and `lookup_call` to find (or, in sandbox mode, create) the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callhook.vendors.kit import SimulatedCall, VendorSimulatorState


async def inject_faults(
    state: VendorSimulatorState,
    request: Request,
    *,
    error_body: Callable[[int], dict[str, Any]],
    authorized: bool,
) -> Response | None:
    """Log the request and return the injected failure for it, or None to serve normally.

    `authorized` is the handler's own check of the vendor's auth header against
    `state.api_key`; `error_body(status)` shapes an error like the vendor does.
    """
    state.requests.append((request.method, request.url.path))
    faults = state.faults
    if faults.latency_s:
        await asyncio.sleep(faults.latency_s)
    if faults.unauthorized or not authorized:
        return JSONResponse(error_body(401), status_code=401)
    if faults.rate_limited > 0:
        faults.rate_limited -= 1
        headers = (
            {"retry-after": f"{faults.retry_after:g}"} if faults.retry_after is not None else {}
        )
        return JSONResponse(error_body(429), status_code=429, headers=headers)
    if faults.server_errors > 0:
        faults.server_errors -= 1
        return JSONResponse(error_body(500), status_code=500)
    return None


def lookup_call(
    state: VendorSimulatorState,
    call_id: str,
    make: Callable[[str], SimulatedCall],
) -> SimulatedCall | None:
    """The call if the simulated vendor knows it and its not-yet-found count is used up.

    In sandbox mode (`state.autocreate`) an unknown id becomes a new call made by `make`.
    """
    served = state.not_found_served.get(call_id, 0)
    if served < state.faults.not_found_first:
        state.not_found_served[call_id] = served + 1
        return None
    if call_id not in state.calls:
        if not state.autocreate:
            return None
        made = make(call_id)
        state.calls[call_id] = made.call
        state.extras[call_id] = made.extras
    return SimulatedCall(call_id, state.calls[call_id], state.extras.get(call_id, {}))


def register(state: VendorSimulatorState, call: SimulatedCall) -> None:
    """Make the simulated vendor API know `call` (tests do this before delivering events)."""
    state.calls[call.call_id] = call.call
    state.extras[call.call_id] = call.extras
