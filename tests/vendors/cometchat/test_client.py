"""The Calls API client against the simulated CometChat API on a real loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.errors import NotReadyYet, RetryableError
from callhook.events import EventType
from callhook.vendors.base import Fetched
from callhook.vendors.cometchat import CometChatClient
from callhook.vendors.cometchat.simulate import legacy_shape, simulated_call, simulator_app
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.simulator import register
from tests.servers import ServerThread
from tests.vendors.cometchat.conftest import API_KEY, api_fixture, configured
from tests.vendors.support import calls_10_s_apart, window

NOW = 1696934700.0


def client_for(
    server: ServerThread, http: httpx.AsyncClient, api_key: str = API_KEY
) -> CometChatClient:
    return CometChatClient(configured(api_base_url=server.url, api_key=api_key), http)


def known_call(state: VendorSimulatorState, **changes: Any) -> SimulatedCall:
    call = simulated_call(None, NOW)
    call = SimulatedCall(call.call_id, {**call.call, **changes}, call.extras)
    register(state, call)
    return call


def fetched(call: SimulatedCall) -> Fetched:
    return Fetched(
        call=call.call,
        extras={"recordings": call.call["recordings"], "transcript": call.call["transcriptions"]},
    )


async def test_fetch_current_shape(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state)
    got = await client_for(api_server, http).fetch(call.call_id, EventType.COMPLETED)
    assert got == fetched(call)
    assert got.extras == call.extras
    assert api_state.requests == [("GET", f"/calls/{call.call_id}")]


@pytest.mark.parametrize("per_call", [False, True])
async def test_fetch_older_array_shape(
    api_state: VendorSimulatorState, http: httpx.AsyncClient, per_call: bool
) -> None:
    call = known_call(api_state)
    older = SimulatedCall(call.call_id, legacy_shape(call.call))
    register(api_state, older)
    app = (
        simulator_app(api_state, array_shape_calls={call.call_id})
        if per_call
        else simulator_app(api_state, shape="array")
    )
    with ServerThread(app) as server:
        got = await client_for(server, http).fetch(call.call_id, EventType.RECORDING_READY)
    assert got == fetched(older)
    assert got.call["participants"][0]["name"] == "Andrew Joseph"


async def test_recording_and_transcript_not_listed_yet_are_not_ready(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state, hasRecording=False, hasTranscription="false")
    client = client_for(api_server, http)
    with pytest.raises(NotReadyYet, match="recording"):
        await client.fetch(call.call_id, EventType.RECORDING_READY)
    with pytest.raises(NotReadyYet, match="transcript"):
        await client.fetch(call.call_id, EventType.TRANSCRIPT_READY)
    # the call itself is there: other events enrich normally
    assert (await client.fetch(call.call_id, EventType.COMPLETED)).call == api_state.calls[
        call.call_id
    ]
    api_state.calls[call.call_id] = {**call.call, "hasRecording": True, "hasTranscription": True}
    ready = await client.fetch(call.call_id, EventType.TRANSCRIPT_READY)
    assert ready.extras["transcript"] == call.call["transcriptions"]


def _canned(body: bytes, content_type: str) -> Starlette:
    async def answer(request: Request) -> Response:
        return Response(body, media_type=content_type)

    return Starlette(routes=[Route("/calls/{session_id}", answer)])


@pytest.mark.parametrize(
    ("body", "content_type", "error", "reason"),
    [
        (b'{"data": "ended"}', "application/json", RetryableError, "without a call object"),
        (b'{"data": {"status": "ended"}}', "application/json", RetryableError, "without sessionId"),
        (b'{"data": []}', "application/json", NotReadyYet, "empty call list"),
    ],
)
async def test_answers_without_a_call_are_retryable(
    http: httpx.AsyncClient,
    body: bytes,
    content_type: str,
    error: type[RetryableError],
    reason: str,
) -> None:
    """Beyond the answers no vendor can read (tests/vendors/test_contract.py)."""
    with ServerThread(_canned(body, content_type)) as server, pytest.raises(error, match=reason):
        await client_for(server, http).fetch("v1.us.x.1", EventType.COMPLETED)


async def test_array_answer_picks_the_asked_call(http: httpx.AsyncClient) -> None:
    (older,) = api_fixture("get_call__array")["data"]
    other = {**older, "sessionId": "v1.us.other.1"}
    body = orjson.dumps({"data": [other, older]})
    with ServerThread(_canned(body, "application/json")) as server:
        got = await client_for(server, http).fetch(older["sessionId"], EventType.COMPLETED)
    assert got == Fetched(call=older, extras={})


@pytest.fixture
def many_calls(api_state: VendorSimulatorState) -> list[str]:
    """250 calls initiated one every 10 s from NOW, plus some before and after."""
    return calls_10_s_apart(api_state, simulated_call, NOW + 95)  # initiatedAt: now - 95


async def test_list_calls_asks_for_100_calls_a_page(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    many_calls: list[str],
) -> None:
    """Beyond listing each call once, windowed on its creation (tests/vendors/
    test_contract.py): 250 calls are three pages, an empty window one."""
    client = client_for(api_server, http)
    assert len([c async for c in client.list_calls(*window(NOW, NOW + 2500))]) == 250
    assert api_state.requests == [("GET", "/calls")] * 3
    api_state.requests.clear()
    empty = window(NOW - 86400 * 30, NOW - 86400 * 29)
    assert [call async for call in client.list_calls(*empty)] == []
    assert api_state.requests == [("GET", "/calls")]


async def collect(calls: AsyncIterator[Mapping[str, Any]], into: list[str], key: str) -> None:
    async for call in calls:
        into.append(call[key])


async def test_list_calls_refuses_a_page_that_repeats_the_page_before(
    http: httpx.AsyncClient,
) -> None:
    """An API that ignores `page` (and claims a billion pages) would be walked for ever:
    the second identical page ends the listing with an error instead."""
    calls = [{"sessionId": f"v1.us.s.{i}", "initiatedAt": int(NOW) + i} for i in range(100)]
    asked: list[str] = []

    async def listing(request: Request) -> Response:
        asked.append(request.query_params["page"])
        pagination = {"current_page": 1, "per_page": 100, "total_pages": 10**9}
        return JSONResponse({"data": calls, "meta": {"pagination": pagination}})

    listed: list[str] = []
    with ServerThread(Starlette(routes=[Route("/calls", listing)])) as server:
        since, until = window(NOW - 0.5, NOW + 1000.5)
        calls_listed = client_for(server, http).list_calls(since, until)
        with pytest.raises(RetryableError, match="answered page 2 with the calls of page 1"):
            await collect(calls_listed, listed, "sessionId")
    assert listed == [call["sessionId"] for call in calls]
    assert asked == ["1", "2"]


async def test_list_calls_skips_a_call_whose_id_is_no_session_id(
    http: httpx.AsyncClient,
) -> None:
    ids = ["v1.us.s.1", "..", "a/b", "v1.us.s.2"]
    calls = [{"sessionId": cid, "initiatedAt": int(NOW)} for cid in ids]

    async def listing(request: Request) -> Response:
        return JSONResponse({"data": calls, "meta": {"pagination": {"total_pages": 1}}})

    with ServerThread(Starlette(routes=[Route("/calls", listing)])) as server:
        client = client_for(server, http)
        since, until = window(NOW - 0.5, NOW + 1000.5)
        listed = [c["sessionId"] async for c in client.list_calls(since, until)]
    assert listed == ["v1.us.s.1", "v1.us.s.2"]
    assert client.coverage_notes == [
        "2 listed calls have an id that is not a CometChat session id; they were skipped "
        "(see the log)"
    ]


async def test_list_calls_survives_pages_shifting_under_it(http: httpx.AsyncClient) -> None:
    """A call arriving while paging pushes the last call of page 1 onto page 2: it is
    still yielded once. The window goes out as unix seconds."""
    calls = [{"sessionId": f"v1.us.s.{i}", "initiatedAt": int(NOW) + i} for i in range(150)]
    seen_params: list[dict[str, str]] = []

    async def listing(request: Request) -> Response:
        seen_params.append(dict(request.query_params))
        page = int(request.query_params["page"])
        chunk = calls[:100] if page == 1 else calls[99:]
        pagination = {"total": 151, "count": len(chunk), "per_page": 100}
        pagination |= {"current_page": page, "total_pages": 2}
        return JSONResponse({"data": chunk, "meta": {"pagination": pagination}})

    app = Starlette(routes=[Route("/calls", listing)])
    with ServerThread(app) as server:
        since, until = window(NOW - 0.5, NOW + 1000.5)
        listed = [c["sessionId"] async for c in client_for(server, http).list_calls(since, until)]
    assert listed == [call["sessionId"] for call in calls]
    assert seen_params == [
        {
            "startedAt": str(int(NOW) - 1),
            "endedAt": str(int(NOW) + 1001),
            "page": "1",
            "perPage": "100",
        },
        {
            "startedAt": str(int(NOW) - 1),
            "endedAt": str(int(NOW) + 1001),
            "page": "2",
            "perPage": "100",
        },
    ]


async def test_simulator_answers_like_the_api(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    """Sandbox mode relies on it: auth header, error shape, List Calls filters and meta,
    and calls made up on demand when `autocreate` is on."""
    video = known_call(api_state, type="video", hasRecording=False)
    audio = known_call(api_state)
    calls = f"{api_server.url}/calls"
    refused = await http.get(calls)
    assert refused.status_code == 401
    assert refused.json() == {
        "error": {"code": "AUTH_ERR_APIKEY_NOT_FOUND", "message": "auth err apikey not found"}
    }
    headers = {"apikey": API_KEY}
    listed = await http.get(calls, params={"type": "video", "perPage": "1"}, headers=headers)
    assert listed.json() == {
        "data": [video.call],
        "meta": {
            "pagination": {
                "total": 1,
                "count": 1,
                "per_page": 1,
                "current_page": 1,
                "total_pages": 1,
            }
        },
    }
    recorded = await http.get(calls, params={"hasRecording": "true"}, headers=headers)
    assert [c["sessionId"] for c in recorded.json()["data"]] == [audio.call_id]
    by_user = await http.get(calls, params={"uid": "cometchat-uid-5"}, headers=headers)
    assert len(by_user.json()["data"]) == 2
    nobody = await http.get(calls, params={"uid": "cometchat-uid-9"}, headers=headers)
    assert nobody.json()["meta"]["pagination"]["total"] == 0
    unknown = f"{calls}/v1.us.sandbox.1696934700abc"
    missing = await http.get(unknown, headers=headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        404,
        "ERR_CALL_SESSION_NOT_FOUND",
    )
    api_state.autocreate = True
    made = await http.get(unknown, headers=headers)
    assert made.json()["data"]["sessionId"] == "v1.us.sandbox.1696934700abc"
