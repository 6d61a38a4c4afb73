"""The Diga API client against the simulated Diga API on a real loopback server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.errors import NotReadyYet, PermanentError, RetryableError
from callhook.events import EventType
from callhook.http import make_client
from callhook.vendors import diga
from callhook.vendors.base import Fetched
from callhook.vendors.diga import DigaClient
from callhook.vendors.diga.client import MAX_MESSAGE_PAGES
from callhook.vendors.diga.simulate import iso, simulated_call
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.simulator import register
from tests.servers import ServerThread
from tests.vendors.diga.conftest import API_KEY, CONFIG, api_fixture, configured
from tests.vendors.support import calls_10_s_apart, window

NOW = 1741945000.0
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def client_for(
    server: ServerThread, http: httpx.AsyncClient, *, api_key: str = API_KEY, page_size: int = 100
) -> DigaClient:
    return DigaClient(
        configured(api_base_url=server.url, api_key=api_key), http, page_size=page_size
    )


def known_call(state: VendorSimulatorState, **changes: Any) -> SimulatedCall:
    call = simulated_call(None, NOW)
    call = SimulatedCall(call.call_id, {**call.call, **changes}, call.extras)
    register(state, call)
    return call


def call_path(call: SimulatedCall) -> str:
    return f"/v1/call/{call.call_id}"


async def test_fetch_a_completed_call_with_every_page_of_its_messages(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state)
    got = await client_for(api_server, http, page_size=4).fetch(call.call_id, EventType.COMPLETED)
    assert got == Fetched(call=call.call, extras={"transcript": call.extras["transcript"]})
    assert len(got.extras["transcript"]) == 6
    path = call_path(call)
    assert api_state.requests == [("GET", path), *[("GET", f"{path}/message")] * 2]


async def test_a_failed_call_brings_its_messages_and_a_missed_one_does_not(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    failed = known_call(api_state, status="failed")
    missed = known_call(api_state, status="no_answer", recording_url=None)
    client = client_for(api_server, http)
    assert (await client.fetch(failed.call_id, EventType.FAILED)).extras == failed.extras
    assert await client.fetch(missed.call_id, EventType.MISSED) == Fetched(call=missed.call)
    assert api_state.requests == [
        ("GET", call_path(failed)),
        ("GET", f"{call_path(failed)}/message"),
        ("GET", call_path(missed)),
    ]


@pytest.mark.parametrize(
    ("name", "event_type", "with_messages"),
    [
        ("get_call", EventType.COMPLETED, True),
        ("get_call__no_answer", EventType.MISSED, False),
        ("get_call__transferred", EventType.COMPLETED, True),
        ("get_call__web", EventType.COMPLETED, True),
    ],
)
async def test_fetch_each_documented_shape(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    name: str,
    event_type: EventType,
    with_messages: bool,
) -> None:
    call = api_fixture(name)
    messages = api_fixture("messages")["data"] if name == "get_call" else []
    register(api_state, SimulatedCall(call["id"], call, {"transcript": messages}))
    got = await client_for(api_server, http).fetch(call["id"], event_type)
    expected_extras = {"transcript": messages} if with_messages else {}
    assert got == Fetched(call=call, extras=expected_extras)


async def test_a_finished_call_the_api_still_shows_live_is_not_ready(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state, status="in_progress", end_time=None)
    client = client_for(api_server, http)
    for event_type in (EventType.COMPLETED, EventType.MISSED, EventType.FAILED):
        with pytest.raises(NotReadyYet, match="still shows the call as in_progress"):
            await client.fetch(call.call_id, event_type)
    api_state.calls[call.call_id]["status"] = "dialing"
    with pytest.raises(NotReadyYet, match="dialing"):
        await client.fetch(call.call_id, EventType.COMPLETED)
    api_state.calls[call.call_id] = simulated_call(call.call_id, NOW).call
    assert (await client.fetch(call.call_id, EventType.COMPLETED)).call["status"] == "completed"


def canned(call_body: bytes, messages: Callable[[Request], Response] | None = None) -> Starlette:
    """A stand-in API answering Get Call with `call_body` (and messages with `messages`)."""

    async def get_call(request: Request) -> Response:
        return Response(call_body, media_type="application/json")

    async def get_messages(request: Request) -> Response:
        assert messages is not None
        return messages(request)

    return Starlette(
        routes=[
            Route("/v1/call/{call_id}", get_call),
            Route("/v1/call/{call_id}/message", get_messages),
        ]
    )


async def test_a_call_without_id_is_retryable(http: httpx.AsyncClient) -> None:
    """Beyond the answers no vendor can read (tests/vendors/test_contract.py)."""
    with (
        ServerThread(canned(b'{"status": "completed"}')) as server,
        pytest.raises(RetryableError, match="a call without id"),
    ):
        await client_for(server, http).fetch(UNKNOWN_ID, EventType.MISSED)


@pytest.mark.parametrize(
    ("page", "error", "reason"),
    [
        ({"data": {"role": "user"}, "has_more": False}, RetryableError, "without a data array"),
        (
            {"data": [{"role": "user", "content": "hola"}], "has_more": True},
            RetryableError,
            "gave no new cursor",
        ),
    ],
)
async def test_malformed_message_pages_are_retryable(
    http: httpx.AsyncClient, page: dict[str, Any], error: type[Exception], reason: str
) -> None:
    call = simulated_call(UNKNOWN_ID, NOW).call
    app = canned(orjson.dumps(call), lambda request: JSONResponse(page))
    with ServerThread(app) as server, pytest.raises(error, match=reason):
        await client_for(server, http).fetch(UNKNOWN_ID, EventType.COMPLETED)


async def test_messages_that_never_end_stop_at_max_message_pages(http: httpx.AsyncClient) -> None:
    """An API that always has one more page of messages (each with a new cursor) cannot
    hold the worker: past MAX_MESSAGE_PAGES the fetch is a `PermanentError` saying so."""
    call = simulated_call(UNKNOWN_ID, NOW).call
    asked: list[str | None] = []

    def endless(request: Request) -> Response:
        asked.append(request.query_params.get("after"))
        message = {"id": f"00000000-0000-4000-8000-{len(asked):012d}", "role": "user"}
        return JSONResponse({"data": [message], "has_more": True, "last_id": message["id"]})

    reason = f"still had more after {MAX_MESSAGE_PAGES} pages"
    with (
        ServerThread(canned(orjson.dumps(call), endless)) as server,
        pytest.raises(PermanentError, match=reason),
    ):
        await client_for(server, http).fetch(UNKNOWN_ID, EventType.COMPLETED)
    assert len(asked) == MAX_MESSAGE_PAGES


async def test_list_calls_skips_a_call_whose_id_is_no_uuid(http: httpx.AsyncClient) -> None:
    ids = ["00000000-0000-4000-8000-000000000001", "..", "a/b", UNKNOWN_ID]
    calls = [{"id": cid, "created_date": iso(NOW + 1)} for cid in ids]

    async def listing(request: Request) -> Response:
        return JSONResponse({"data": calls, "has_more": False})

    with ServerThread(Starlette(routes=[Route("/v1/call/", listing)])) as server:
        client = client_for(server, http)
        listed = [c["id"] async for c in client.list_calls(*window(NOW, NOW + 10))]
    assert listed == [ids[0], ids[3]]
    assert client.coverage_notes == [
        "2 listed calls have an id that is not a Diga call id (a UUID); they were skipped "
        "(see the log)"
    ]


@pytest.mark.parametrize("status", [403, 404])
async def test_messages_refused_still_enrich_the_call(http: httpx.AsyncClient, status: int) -> None:
    call = simulated_call(UNKNOWN_ID, NOW).call
    code = {403: "FORBIDDEN", 404: "CALL_NOT_FOUND"}[status]
    error = {"status": "error", "error_code": code, "message": "no"}
    app = canned(orjson.dumps(call), lambda request: JSONResponse(error, status_code=status))
    with ServerThread(app) as server:
        got = await client_for(server, http).fetch(UNKNOWN_ID, EventType.COMPLETED)
    assert got == Fetched(
        call=call, notes={"transcript": f"diga API answered HTTP {status} ({code})"}
    )


async def test_messages_server_error_is_retryable(http: httpx.AsyncClient) -> None:
    call = simulated_call(UNKNOWN_ID, NOW).call
    app = canned(orjson.dumps(call), lambda request: Response(b"oops", status_code=503))
    with ServerThread(app) as server, pytest.raises(RetryableError) as raised:
        await client_for(server, http).fetch(UNKNOWN_ID, EventType.COMPLETED)
    assert raised.value.status_code == 503


@pytest.fixture
def many_calls(api_state: VendorSimulatorState) -> list[str]:
    """250 calls created one every 10 s from NOW, plus some before and after."""
    return calls_10_s_apart(api_state, simulated_call, NOW + 120)  # created_date: now - 120


async def test_list_calls_asks_for_100_calls_a_page_oldest_first(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    many_calls: list[str],
) -> None:
    """Beyond listing each call once, windowed on its creation (tests/vendors/
    test_contract.py): 250 calls are three pages, oldest first; an empty window is one."""
    client = client_for(api_server, http)
    assert [c["id"] async for c in client.list_calls(*window(NOW, NOW + 2500))] == many_calls
    assert api_state.requests == [("GET", "/v1/call/")] * 3
    api_state.requests.clear()
    empty = window(NOW - 86400 * 30, NOW - 86400 * 29)
    assert [call async for call in client.list_calls(*empty)] == []
    assert api_state.requests == [("GET", "/v1/call/")]


async def test_list_calls_follows_the_after_cursor_and_never_sends_before(
    http: httpx.AsyncClient,
) -> None:
    """The window goes out as ISO date-times, pages follow `after=last_id`, and a call a
    page repeats (or one outside the window) is not yielded."""
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(6)]
    calls = [{"id": ids[i], "created_date": iso(NOW + i)} for i in range(5)]
    pages = {
        None: ([calls[0], calls[1]], True),
        ids[1]: ([calls[1], calls[2], calls[3]], True),
        ids[3]: ([calls[4], {"id": ids[5], "created_date": iso(NOW + 99)}], False),
    }
    seen: list[dict[str, str]] = []

    async def listing(request: Request) -> Response:
        seen.append(dict(request.query_params))
        data, more = pages[request.query_params.get("after")]
        return JSONResponse({"data": data, "has_more": more, "last_id": data[-1]["id"]})

    with ServerThread(Starlette(routes=[Route("/v1/call/", listing)])) as server:
        client = client_for(server, http, page_size=3)
        listed = [c["id"] async for c in client.list_calls(*window(NOW, NOW + 10.5))]
    assert listed == [call["id"] for call in calls]
    base = {
        "start_created_date": "2025-03-14T09:36:40Z",
        "end_created_date": "2025-03-14T09:36:50.500000Z",
        "limit": "3",
        "order": "asc",
    }
    assert seen == [base, {**base, "after": ids[1]}, {**base, "after": ids[3]}]


async def test_list_calls_sees_a_call_created_while_paging_once(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    first = [simulated_call(None, NOW + 120 + i) for i in range(3)]
    for simulated in first:
        register(api_state, simulated)
    newcomer = simulated_call(None, NOW + 600)
    listed: list[str] = []
    client = client_for(api_server, http, page_size=2)
    async for listed_call in client.list_calls(*window(NOW, NOW + 3600)):
        listed.append(listed_call["id"])
        if len(listed) == 1:  # cursor paging: a newer call lands on a later page
            register(api_state, newcomer)
    assert listed == [*(simulated.call_id for simulated in first), newcomer.call_id]


async def test_the_vendor_builds_its_client_on_the_given_http_client() -> None:
    async with make_client() as shared:
        assert isinstance(diga.VENDOR.client(CONFIG, shared), DigaClient)
        with pytest.raises(ValueError, match="page_size"):
            DigaClient(CONFIG, shared, page_size=1001)


# --- the simulator answers like the API (sandbox mode relies on it) -----------------------


async def test_simulator_auth_and_error_shapes(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state)
    url = f"{api_server.url}/v1/call/{call.call_id}"
    for headers in ({}, {"authorization": API_KEY}, {"authorization": "Bearer nope"}):
        refused = await http.get(url, headers=headers)
        assert (refused.status_code, refused.json()) == (
            401,
            {"status": "error", "error_code": "UNAUTHORIZED", "message": "unauthorized"},
        )
    auth = {"authorization": f"Bearer {API_KEY}"}
    assert (await http.get(url, headers=auth)).json() == call.call
    missing = await http.get(f"{api_server.url}/v1/call/{UNKNOWN_ID}", headers=auth)
    assert (missing.status_code, missing.json()) == (
        404,
        {
            "status": "error",
            "error_code": "CALL_NOT_FOUND",
            "message": f"Call {UNKNOWN_ID} not found",
        },
    )
    not_uuid = await http.get(f"{api_server.url}/v1/call/not-a-uuid", headers=auth)
    assert (not_uuid.status_code, not_uuid.json()["error_code"]) == (422, "VALIDATION_ERROR")
    api_state.autocreate = True
    made = await http.get(f"{api_server.url}/v1/call/{UNKNOWN_ID}/message", headers=auth)
    assert made.status_code == 200
    assert api_state.calls[UNKNOWN_ID]["id"] == UNKNOWN_ID


@pytest.mark.parametrize(
    "params",
    [
        {"after": "x", "before": "y"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"order": "newest"},
        {"page": "0"},
        {"start_created_date": "yesterday"},
        {"after": UNKNOWN_ID},
    ],
)
async def test_simulator_refuses_bad_list_queries(
    api_server: ServerThread, http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    answer = await http.get(
        f"{api_server.url}/v1/call/", params=params, headers={"authorization": f"Bearer {API_KEY}"}
    )
    assert (answer.status_code, answer.json()["error_code"]) == (422, "VALIDATION_ERROR")


async def test_simulator_lists_like_the_api(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    """Newest first by default, page numbers or one cursor, filters, messages paged too."""
    calls = [known_call(api_state) for _ in range(5)]
    for i, call in enumerate(calls):
        call.call["created_date"] = iso(NOW + i)
    calls[1].call.update(status="no_answer", type="outbound")
    ids = [call.call_id for call in calls]
    auth = {"authorization": f"Bearer {API_KEY}"}
    url = f"{api_server.url}/v1/call/"

    async def listing(**params: str) -> dict[str, Any]:
        answer = await http.get(url, params=params, headers=auth)
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body

    first = await listing(limit="2")
    assert [c["id"] for c in first["data"]] == [ids[4], ids[3]]
    assert {k: v for k, v in first.items() if k != "data"} == {
        "has_more": True,
        "first_id": ids[4],
        "last_id": ids[3],
        "current_page": 1,
        "total_pages": 3,
    }
    third = await listing(limit="2", page="3")
    assert ([c["id"] for c in third["data"]], third["has_more"]) == ([ids[0]], False)
    after = await listing(limit="2", order="asc", after=ids[1])
    assert ([c["id"] for c in after["data"]], after["has_more"]) == ([ids[2], ids[3]], True)
    assert after["current_page"] is None
    before = await listing(limit="2", order="asc", before=ids[3])
    assert ([c["id"] for c in before["data"]], before["has_more"]) == ([ids[1], ids[2]], True)
    outbound = await listing(type="outbound", status="no_answer")
    assert [c["id"] for c in outbound["data"]] == [ids[1]]
    windowed = await listing(
        start_created_date=iso(NOW + 1), end_created_date=iso(NOW + 3), order="asc"
    )
    assert [c["id"] for c in windowed["data"]] == ids[1:4]
    messages = await http.get(f"{url}{ids[0]}/message", params={"limit": "4"}, headers=auth)
    page = messages.json()
    newest_first = list(reversed(calls[0].extras["transcript"]))
    assert (page["data"], page["has_more"]) == (newest_first[:4], True)
    assert page["last_id"] == newest_first[3]["message_id"]
