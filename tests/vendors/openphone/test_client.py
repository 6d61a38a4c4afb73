"""The Quo API client against the simulated Quo API on a real loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.errors import NotReadyYet, PermanentError, RateLimited, RetryableError
from callhook.events import EventType
from callhook.vendors.base import Fetched
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from callhook.vendors.openphone import OpenPhoneClient
from callhook.vendors.openphone.simulate import Scenario, simulated_call, simulator_app
from callhook.vendors.simulator import register
from tests.servers import ServerThread
from tests.vendors.openphone.conftest import API_KEY, configured
from tests.vendors.support import window

NOW = 1776092700.0
GET_CALL = "/v1/calls/{}"


def client_for(
    server: ServerThread, http: httpx.AsyncClient, api_key: str = API_KEY, **config: Any
) -> OpenPhoneClient:
    return OpenPhoneClient(configured(api_base_url=server.url, api_key=api_key, **config), http)


def known_call(
    state: VendorSimulatorState, scenario: Scenario = "answered", **changes: Any
) -> SimulatedCall:
    call = simulated_call(None, NOW, scenario=scenario)
    call = SimulatedCall(call.call_id, {**call.call, **changes}, call.extras)
    register(state, call)
    return call


def paths(state: VendorSimulatorState) -> list[str]:
    return [path for _, path in state.requests]


@pytest.mark.parametrize(
    ("event_type", "kind", "path"),
    [
        (EventType.RINGING, None, None),
        (EventType.STARTED, None, None),
        (EventType.MISSED, None, None),
        (EventType.COMPLETED, "recordings", "/v1/call-recordings/{}"),
        (EventType.RECORDING_READY, "recordings", "/v1/call-recordings/{}"),
        (EventType.SUMMARY_READY, "summary", "/v1/call-summaries/{}"),
        (EventType.TRANSCRIPT_READY, "transcript", "/v1/call-transcripts/{}"),
        (EventType.VOICEMAIL_READY, "voicemail", "/v1/call-voicemails/{}"),
    ],
)
async def test_fetch_calls_for_the_extras_of_each_event_type(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    event_type: EventType,
    kind: str | None,
    path: str | None,
) -> None:
    call = known_call(api_state)
    got = await client_for(api_server, http).fetch(call.call_id, event_type)
    extras = {} if kind is None else {kind: call.extras[kind]}
    assert got == Fetched(call=call.call, extras=extras, notes={})
    expected = [GET_CALL] if path is None else [GET_CALL, path]
    assert paths(api_state) == [p.format(call.call_id) for p in expected]


async def test_a_completed_call_without_recordings_is_fine(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state, scenario="missed")
    got = await client_for(api_server, http).fetch(call.call_id, EventType.COMPLETED)
    assert got == Fetched(call=call.call, extras={"recordings": []}, notes={})


async def test_recording_event_before_the_recording_is_listed_is_not_ready(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state)
    listed = call.extras["recordings"]
    api_state.extras[call.call_id]["recordings"] = [
        {**listed[0], "url": None, "status": "processing"}
    ]
    client = client_for(api_server, http)
    with pytest.raises(NotReadyYet, match="no finished recording"):
        await client.fetch(call.call_id, EventType.RECORDING_READY)
    api_state.extras[call.call_id]["recordings"] = listed
    assert (await client.fetch(call.call_id, EventType.RECORDING_READY)).extras == {
        "recordings": listed
    }


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [(EventType.SUMMARY_READY, "summary"), (EventType.TRANSCRIPT_READY, "transcript")],
)
async def test_ai_extras_unfinished_then_finished(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    event_type: EventType,
    kind: str,
) -> None:
    call = known_call(api_state)
    finished = call.extras[kind]
    client = client_for(api_server, http)
    api_state.extras[call.call_id][kind] = {**finished, "status": "in-progress"}
    with pytest.raises(NotReadyYet, match=f"{kind} is in-progress yet"):
        await client.fetch(call.call_id, event_type)
    del api_state.extras[call.call_id][kind]  # the simulator then answers status "absent"
    with pytest.raises(NotReadyYet, match=f"{kind} is absent yet"):
        await client.fetch(call.call_id, event_type)
    api_state.extras[call.call_id][kind] = {**finished, "status": "failed"}
    failed = await client.fetch(call.call_id, event_type)
    assert (failed.extras, failed.notes) == ({}, {kind: f"{kind} failed at Quo"})
    api_state.extras[call.call_id][kind] = finished
    assert (await client.fetch(call.call_id, event_type)).extras == {kind: finished}


@pytest.mark.parametrize("event_type", [EventType.SUMMARY_READY, EventType.TRANSCRIPT_READY])
async def test_plan_without_ai_features_is_noted_not_raised(
    api_state: VendorSimulatorState, http: httpx.AsyncClient, event_type: EventType
) -> None:
    call = known_call(api_state)
    with ServerThread(simulator_app(api_state, ai_features=False)) as server:
        got = await client_for(server, http).fetch(call.call_id, event_type)
    kind = "summary" if event_type is EventType.SUMMARY_READY else "transcript"
    assert (got.call, got.extras) == (call.call, {})
    assert got.notes[kind].startswith("forbidden: the plan or key does not include this")
    assert "HTTP 403" in got.notes[kind]


async def test_voicemail_missing_or_unfinished_is_not_ready(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state, scenario="missed")
    client = client_for(api_server, http)
    with pytest.raises(NotReadyYet, match="HTTP 404"):
        await client.fetch(call.call_id, EventType.VOICEMAIL_READY)
    api_state.extras[call.call_id]["voicemail"] = {
        "duration": None,
        "id": "VMsample0001",
        "transcript": None,
        "recordingUrl": None,
        "status": "in-progress",
    }
    with pytest.raises(NotReadyYet, match="voicemail is in-progress yet"):
        await client.fetch(call.call_id, EventType.VOICEMAIL_READY)


async def test_bearer_prefix_is_not_what_quo_wants(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    call = known_call(api_state)
    url = f"{api_server.url}{GET_CALL.format(call.call_id)}"
    bearer = await http.get(url, headers={"authorization": f"Bearer {API_KEY}"})
    assert bearer.status_code == 401
    assert (await http.get(url, headers={"authorization": API_KEY})).status_code == 200


@pytest.mark.parametrize(
    ("event_type", "path", "status", "error"),
    [
        (EventType.SUMMARY_READY, "/v1/call-summaries/AC1", 429, RateLimited),
        (EventType.COMPLETED, "/v1/call-recordings/AC1", 503, RetryableError),
        (EventType.VOICEMAIL_READY, "/v1/call-voicemails/AC1", 401, PermanentError),
    ],
)
async def test_an_extra_failing_fails_the_fetch(
    http: httpx.AsyncClient, event_type: EventType, path: str, status: int, error: type[Exception]
) -> None:
    """Transient and auth failures of an extra are not swallowed into notes, even for an
    optional extra: the enrich actor retries (or dead-letters) the whole fetch."""

    async def failing(request: Request) -> Response:
        body = {"message": "no", "code": f"0900{status}", "status": status}
        return JSONResponse(body, status_code=status, headers={"retry-after": "3"})

    app = _canned({"/v1/calls/AC1": (GOOD_CALL, "application/json")})
    app.router.routes.append(Route(path, failing))
    with ServerThread(app) as server, pytest.raises(error) as raised:
        await client_for(server, http).fetch("AC1", event_type)
    assert getattr(raised.value, "status_code", None) == status
    if status == 429:
        assert getattr(raised.value, "retry_after", None) == 3.0


@pytest.mark.parametrize(("status", "note"), [(403, "forbidden: "), (404, "openphone API")])
async def test_optional_recordings_refused_are_noted(
    http: httpx.AsyncClient, status: int, note: str
) -> None:
    async def refusing(request: Request) -> Response:
        return JSONResponse({"code": f"0900{status}"}, status_code=status)

    app = _canned({"/v1/calls/AC1": (GOOD_CALL, "application/json")})
    app.router.routes.append(Route("/v1/call-recordings/AC1", refusing))
    with ServerThread(app) as server:
        got = await client_for(server, http).fetch("AC1", EventType.COMPLETED)
    assert (got.call, got.extras) == ({"id": "AC1", "status": "completed"}, {})
    assert got.notes["recordings"].startswith(note)
    assert f"HTTP {status} (0900{status})" in got.notes["recordings"]


def _canned(routes: Mapping[str, tuple[bytes, str]]) -> Starlette:
    def answer(body: bytes, content_type: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return Response(body, media_type=content_type)

        return endpoint

    return Starlette(routes=[Route(path, answer(*reply)) for path, reply in routes.items()])


GOOD_CALL = b'{"data": {"id": "AC1", "status": "completed"}}'


@pytest.mark.parametrize(
    ("path", "body", "content_type", "reason"),
    [
        ("/v1/calls/AC1", b'{"data": "completed"}', "application/json", "without a call"),
        ("/v1/calls/AC1", b'{"data": {"status": "x"}}', "application/json", "without a call"),
        ("/v1/call-recordings/AC1", b'{"data": {}}', "application/json", "without a data array"),
        ("/v1/call-recordings/AC1", b"<html></html>", "text/html", "not JSON"),
    ],
)
async def test_malformed_calls_and_recordings_are_retryable(
    http: httpx.AsyncClient, path: str, body: bytes, content_type: str, reason: str
) -> None:
    """Beyond the answers no vendor can read (tests/vendors/test_contract.py)."""
    routes = {"/v1/calls/AC1": (GOOD_CALL, "application/json"), path: (body, content_type)}
    with ServerThread(_canned(routes)) as server, pytest.raises(RetryableError, match=reason):
        await client_for(server, http).fetch("AC1", EventType.COMPLETED)


async def test_a_summary_without_a_data_object_is_retryable(http: httpx.AsyncClient) -> None:
    routes = {
        "/v1/calls/AC1": (GOOD_CALL, "application/json"),
        "/v1/call-summaries/AC1": (b'{"data": null}', "application/json"),
    }
    expected = pytest.raises(RetryableError, match="summary without a data object")
    with ServerThread(_canned(routes)) as server, expected:
        await client_for(server, http).fetch("AC1", EventType.SUMMARY_READY)


# --- List Calls ---------------------------------------------------------------------------

NUMBERS = ("PNq8Xk2Lm0", "PNz3Yw9Vb1")
PEOPLE = ("+12125550101", "+12125550102", "+12125550103")


def add_call(state: VendorSimulatorState, created: float, number_id: str, person: str) -> str:
    call = simulated_call(None, created + 300, phone_number_id=number_id, participant=person)
    register(state, call)
    return call.call_id


@pytest.fixture
def many_calls(api_state: VendorSimulatorState) -> list[str]:
    """310 calls inside [NOW, NOW + 3100) over two numbers and three counterparties (250
    with the first pair: three pages), one call with two counterparties, and calls just
    before and after the window."""
    inside = [add_call(api_state, NOW + i * 10, NUMBERS[0], PEOPLE[0]) for i in range(250)]
    inside += [
        add_call(api_state, NOW + 2500 + i * 10, NUMBERS[i % 2], PEOPLE[1 + i % 2])
        for i in range(59)
    ]
    shared = add_call(api_state, NOW + 3050, NUMBERS[1], PEOPLE[1])
    api_state.calls[shared]["participants"] = [PEOPLE[1], PEOPLE[2]]
    inside.append(shared)
    add_call(api_state, NOW - 10, NUMBERS[0], PEOPLE[0])
    add_call(api_state, NOW + 3100, NUMBERS[1], PEOPLE[2])
    return inside


async def test_list_calls_walks_numbers_and_counterparties_each_call_once(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    many_calls: list[str],
) -> None:
    client = client_for(api_server, http)
    listed = [call["id"] async for call in client.list_calls(*window(NOW, NOW + 3100))]
    assert sorted(listed) == sorted(many_calls)
    assert len(listed) == len(set(listed)) == 310
    assert client.coverage_notes == []
    # 1 phone-numbers + per number 1 conversations page + per (number, counterparty) pages:
    # PN0: +101 (3 pages), +102; PN1: +102, +103 (the shared call is listed under both)
    assert paths(api_state) == [
        "/v1/phone-numbers",
        "/v1/conversations",
        *["/v1/calls"] * 4,
        "/v1/conversations",
        *["/v1/calls"] * 2,
    ]


async def test_list_calls_with_configured_numbers_and_counterparties(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    many_calls: list[str],
) -> None:
    client = client_for(api_server, http, phone_number_ids=[NUMBERS[1]], participants=[PEOPLE[2]])
    listed = [call["id"] async for call in client.list_calls(*window(NOW, NOW + 3100))]
    expected = {
        call_id
        for call_id in many_calls
        if api_state.calls[call_id]["phoneNumberId"] == NUMBERS[1]
        and PEOPLE[2] in api_state.calls[call_id]["participants"]
    }
    assert set(listed) == expected
    assert len(listed) == len(expected) == 30
    assert paths(api_state) == ["/v1/calls"]


async def test_adjacent_windows_split_the_calls(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    many_calls: list[str],
) -> None:
    client = client_for(api_server, http)
    first = {c["id"] async for c in client.list_calls(*window(NOW, NOW + 1200))}
    second = {c["id"] async for c in client.list_calls(*window(NOW + 1200, NOW + 3100))}
    assert (len(first), first & second, first | second) == (120, set(), set(many_calls))


async def test_an_empty_window_needs_no_call_listing(
    api_server: ServerThread,
    api_state: VendorSimulatorState,
    http: httpx.AsyncClient,
    many_calls: list[str],
) -> None:
    """Nothing happened after the window began: the conversations say so, and no call
    listing is even needed."""
    client = client_for(api_server, http)
    empty = window(NOW + 86400, NOW + 2 * 86400)
    assert [call async for call in client.list_calls(*empty)] == []
    assert paths(api_state) == ["/v1/phone-numbers", *["/v1/conversations"] * 2]


async def test_list_calls_sends_the_documented_query(http: httpx.AsyncClient) -> None:
    seen: list[dict[str, str]] = []

    async def listing(request: Request) -> Response:
        seen.append(dict(request.query_params))
        token = request.query_params.get("pageToken")
        page = [{"id": "AC1", "createdAt": "2026-04-13T15:06:00Z"}] if token is None else []
        # a repeated token must not make the client loop
        return JSONResponse({"data": page, "totalItems": 99, "nextPageToken": "same"})

    app = Starlette(routes=[Route("/v1/calls", listing)])
    with ServerThread(app) as server:
        client = client_for(server, http, phone_number_ids=["PNq8Xk2Lm0"], participants=["+1212"])
        listed = [c["id"] async for c in client.list_calls(*window(NOW, NOW + 600))]
    assert listed == ["AC1"]
    query = {
        "phoneNumberId": "PNq8Xk2Lm0",
        "participants": "+1212",
        "maxResults": "100",
        "createdAfter": "2026-04-13T15:04:59.000Z",
        "createdBefore": "2026-04-13T15:15:01.000Z",
    }
    assert seen == [query, {**query, "pageToken": "same"}]


async def collect(calls: AsyncIterator[Mapping[str, Any]], into: list[str]) -> None:
    async for call in calls:
        into.append(call["id"])


@pytest.mark.parametrize(
    ("second_page", "error", "yielded"),
    [
        (("AC2", "same"), "with the page token it was asked with", ["AC1", "AC2"]),
        (("AC1", "another"), "with the items of the page before again", ["AC1"]),
    ],
)
async def test_list_calls_refuses_a_page_that_goes_nowhere(
    http: httpx.AsyncClient, second_page: tuple[str, str], error: str, yielded: list[str]
) -> None:
    """A page that hands back the token it was asked with, or lists exactly the calls of
    the page before under a new token, would be followed for ever: it is an error."""
    pages = {None: ("AC1", "same"), "same": second_page}

    async def listing(request: Request) -> Response:
        call_id, following = pages[request.query_params.get("pageToken")]
        page = [{"id": call_id, "createdAt": "2026-04-13T15:06:00Z"}]
        return JSONResponse({"data": page, "nextPageToken": following})

    listed: list[str] = []
    app = Starlette(routes=[Route("/v1/calls", listing)])
    with ServerThread(app) as server:
        client = client_for(server, http, phone_number_ids=["PNq8Xk2Lm0"], participants=["+1212"])
        with pytest.raises(RetryableError, match=error):
            await collect(client.list_calls(*window(NOW, NOW + 600)), listed)
    assert listed == yielded


async def test_list_calls_skips_a_call_whose_id_is_no_quo_call_id(http: httpx.AsyncClient) -> None:
    ids = ["AC1", "..", "AC1/../../v1/phone-numbers", "AC2"]
    page = [{"id": cid, "createdAt": "2026-04-13T15:06:00Z"} for cid in ids]

    async def listing(request: Request) -> Response:
        return JSONResponse({"data": page, "nextPageToken": None})

    app = Starlette(routes=[Route("/v1/calls", listing)])
    with ServerThread(app) as server:
        client = client_for(server, http, phone_number_ids=["PNq8Xk2Lm0"], participants=["+1212"])
        listed = [c["id"] async for c in client.list_calls(*window(NOW, NOW + 600))]
    assert listed == ["AC1", "AC2"]
    assert client.coverage_notes == [
        "2 listed calls have an id that is not a Quo call id (AC...); they were skipped "
        "(see the log)"
    ]


async def test_counterparties_skip_numbers_list_calls_would_refuse(
    http: httpx.AsyncClient,
) -> None:
    conversations = {
        "data": [
            {"id": "CN1", "phoneNumberId": "PNq8Xk2Lm0", "participants": ["+12125550101", "33"]},
            {"id": "CN2", "phoneNumberId": "PNother0000", "participants": ["+12125550199"]},
            {"id": "CN3", "participants": ["+12125550102", "+12125550101"]},
        ],
        "nextPageToken": None,
    }
    asked: list[str] = []

    async def listing(request: Request) -> Response:
        if request.url.path == "/v1/conversations":
            return JSONResponse(conversations)
        asked.append(request.query_params["participants"])
        return JSONResponse({"data": [], "nextPageToken": None})

    app = Starlette(routes=[Route("/v1/conversations", listing), Route("/v1/calls", listing)])
    with ServerThread(app) as server:
        client = client_for(server, http, phone_number_ids=["PNq8Xk2Lm0"])
        assert [c async for c in client.list_calls(*window(NOW, NOW + 60))] == []
    assert asked == ["+12125550101", "+12125550102"]
    assert client.coverage_notes == [
        "phone number PNq8Xk2Lm0: 1 counterparties are not E.164 numbers, which List Calls "
        "cannot take; their calls were not listed"
    ]


# --- the simulator itself -------------------------------------------------------------------


async def test_simulator_answers_like_the_api(
    api_server: ServerThread, api_state: VendorSimulatorState, http: httpx.AsyncClient
) -> None:
    """Sandbox mode relies on it: auth header, error shape, List Calls rules, paging, and
    calls made up on demand when `autocreate` is on."""
    call = known_call(api_state)
    base = api_server.url
    refused = await http.get(f"{base}/v1/calls/{call.call_id}")
    assert refused.status_code == 401
    assert refused.json() == {
        "message": "Unauthorized",
        "code": "0100401",
        "status": 401,
        "docs": "https://quo.com/docs",
        "title": "Unauthorized",
    }
    headers = {"authorization": API_KEY}
    number_id = call.call["phoneNumberId"]
    person = call.call["participants"][0]
    listing = f"{base}/v1/calls"
    for params in (
        {"phoneNumberId": number_id, "maxResults": "10"},
        {"participants": person, "maxResults": "10"},
        {"phoneNumberId": number_id, "participants": person, "maxResults": "0"},
        {"phoneNumberId": number_id, "participants": person, "maxResults": "101"},
        {"phoneNumberId": number_id, "participants": person, "maxResults": "1", "pageToken": "x"},
    ):
        answer = await http.get(listing, params=params, headers=headers)
        assert answer.status_code == 400, params
        assert answer.json()["title"] == "Bad Request"
    two = {"phoneNumberId": number_id, "participants[]": [person, "+1"], "maxResults": "10"}
    too_many = await http.get(listing, params=two, headers=headers)
    assert too_many.json()["message"] == "Too Many Participants"
    bracketed = {"phoneNumberId": number_id, "participants[]": person, "maxResults": "10"}
    found = (await http.get(listing, params=bracketed, headers=headers)).json()
    assert found == {"data": [call.call], "totalItems": 1, "nextPageToken": None}
    numbers = (await http.get(f"{base}/v1/phone-numbers", headers=headers)).json()["data"]
    assert [(n["id"], n["number"][:9]) for n in numbers] == [(number_id, "+14155550")]
    unknown = f"{base}/v1/calls/ACsandbox0001"
    missing = await http.get(unknown, headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "0100404")
    api_state.autocreate = True
    made = await http.get(unknown, headers=headers)
    assert made.json()["data"]["id"] == "ACsandbox0001"
    summary = await http.get(f"{base}/v1/call-summaries/ACsandbox0001", headers=headers)
    assert summary.json()["data"]["status"] == "completed"
