"""Malformed vendor API answers, from a real loopback server, for every vendor client:
each must end in a classified `callhook.errors` exception (retryable or permanent as the
case calls for), never a raw KeyError/ValueError/JSONDecodeError/httpx error, never an
unbounded read; and whatever a client does return, the vendor's mapping must turn into a
record without raising."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from callhook.errors import (
    PermanentError,
    RateLimited,
    RetryableError,
    UpstreamError,
)
from callhook.events import EventType
from callhook.http import MAX_RESPONSE_BYTES, make_client
from callhook.vendors import VENDORS
from callhook.vendors.base import SourceConfig, VendorClient
from callhook.vendors.kit import VendorSimulatorState
from callhook.vendors.simulator import register
from tests.fuzz.conftest import SOURCES
from tests.fuzz.mutations import ODD_SCALARS, _paths, _replace, json_values
from tests.fuzz.vendor_answers import AnswerBox, Canned, canned_app
from tests.servers import ServerThread

HTML = {"content-type": "text/html; charset=utf-8"}
JSON = {"content-type": "application/json"}
PAGE = b"<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>"
SINCE = datetime(2024, 1, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=2)

#: (case, answer, the error class the client must raise: exactly this class)
CASES: list[tuple[str, Canned, type[UpstreamError]]] = [
    ("html page with 200", Canned(200, PAGE, HTML), RetryableError),
    ("html page with 502", Canned(502, PAGE, HTML), RetryableError),
    ("html page with 500", Canned(500, PAGE, HTML), RetryableError),
    ("html page with 503", Canned(503, PAGE, {**HTML, "retry-after": "7"}), RetryableError),
    ("html page with 403", Canned(403, PAGE, HTML), PermanentError),
    ("html page with 401", Canned(401, PAGE, HTML), PermanentError),
    ("html page with 429", Canned(429, PAGE, {**HTML, "retry-after": "3"}), RateLimited),
    ("truncated json", Canned(200, b'{"data": {"id": "AC1", "sta', JSON), RetryableError),
    ("empty body", Canned(200, b"", JSON), RetryableError),
    ("empty 204", Canned(204, b"", {}), RetryableError),
    ("json array", Canned(200, b"[]", JSON), RetryableError),
    ("json array of objects", Canned(200, b'[{"id": "AC1"}]', JSON), RetryableError),
    ("json string", Canned(200, b'"ok"', JSON), RetryableError),
    ("json null", Canned(200, b"null", JSON), RetryableError),
    ("json with NaN", Canned(200, b'{"data": NaN}', JSON), RetryableError),
    ("latin-1 bytes", Canned(200, b'{"data": "\xe9"}', JSON), RetryableError),
    (
        "gzip that is not gzip",
        Canned(200, b"\x00garbage", {**JSON, "content-encoding": "gzip"}),
        RetryableError,
    ),
    (
        "huge json object",
        Canned(200, b'{"data": {"id": "' + b"x" * (MAX_RESPONSE_BYTES + 10) + b'"}}', JSON),
        PermanentError,
    ),
    (
        "huge gzip bomb",
        Canned(
            200,
            gzip.compress(b'{"data": "' + b"0" * (MAX_RESPONSE_BYTES * 2) + b'"}'),
            {**JSON, "content-encoding": "gzip"},
        ),
        PermanentError,
    ),
    ("endless body", Canned(200, b" " * 65536, JSON, endless=True), PermanentError),
    ("endless html 500", Canned(500, b"<p>" * 20000, HTML, endless=True), RetryableError),
]


def realistic_answer(source: str) -> Any:
    """The vendor's Get Call answer for a simulated call, as its API wraps it (or not):
    what the kit's simulated API answers to the first request of the vendor's own client
    fetching that call (every client asks Get Call first)."""
    vendor = VENDORS[source]
    call = vendor.kit.simulated_call(None, now=time.time())
    state = VendorSimulatorState(api_key=SOURCES[source]["api_key"])
    register(state, call)
    answers: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        answers.append(response)

    async def fetch() -> None:
        transport = httpx.ASGITransport(app=vendor.kit.simulator_app(state))
        async with make_client(transport=transport) as http:
            http.event_hooks["response"] = [keep]
            await client_for(source, "http://simulated.invalid", http).fetch(
                call.call_id, EventType.COMPLETED
            )

    asyncio.run(fetch())
    first = answers[0]
    assert first.status_code == 200, first.text
    assert call.call_id in first.text, first.text
    return orjson.loads(first.content)


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[AnswerBox, str]]:
    box = AnswerBox()
    with ServerThread(canned_app(box)) as server:
        yield box, server.url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = make_client(timeout=httpx.Timeout(5.0))
    yield client
    await client.aclose()


def client_for(source: str, url: str, http: httpx.AsyncClient) -> VendorClient:
    vendor = VENDORS[source]
    config: SourceConfig = vendor.config_model.model_validate(
        {**SOURCES[source], "api_base_url": url}
    )
    return vendor.client(config, http)


def call_id_for(source: str) -> str:
    return str(VENDORS[source].kit.simulated_call(None, now=time.time()).call_id)


async def listed(client: VendorClient) -> list[Any]:
    return [call async for call in client.list_calls(SINCE, UNTIL)]


@pytest.mark.parametrize("source", sorted(VENDORS))
@pytest.mark.parametrize(("case", "canned", "error"), CASES, ids=[c[0] for c in CASES])
async def test_a_malformed_answer_is_a_classified_error(
    api: tuple[AnswerBox, str],
    http: httpx.AsyncClient,
    source: str,
    case: str,
    canned: Canned,
    error: type[UpstreamError],
) -> None:
    box, url = api
    box.canned, box.served[:] = canned, []
    client = client_for(source, url, http)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as raised:
        await client.fetch(call_id_for(source), EventType.COMPLETED)
    assert type(raised.value) is error, f"{case}: {raised.value!r}"
    assert raised.value.reason
    assert SOURCES[source]["api_key"] not in str(raised.value)
    with pytest.raises(UpstreamError) as listing:
        await listed(client)
    assert type(listing.value) is error, f"{case} (list calls): {listing.value!r}"
    # nothing read without bound: an endless body is given up at the cap (reading it all
    # would take long and end in a RetryableError about JSON, not the PermanentError above)
    assert time.monotonic() - started < 20, case


def _answer_variants(source: str) -> st.SearchStrategy[bytes]:
    """A realistic Get Call answer with one value (or the whole `data`) replaced."""
    base = realistic_answer(source)
    paths = _paths(base)

    def replaced(pick: int, value: Any) -> bytes:
        import json

        return json.dumps(_replace(base, paths[pick % len(paths)], value)).encode()

    return st.builds(replaced, st.integers(0, 10**6), st.sampled_from(ODD_SCALARS) | json_values)


@pytest.mark.parametrize("source", sorted(VENDORS))
def test_wrong_types_in_a_call_raise_classified_or_map_cleanly(
    api: tuple[AnswerBox, str], source: str
) -> None:
    box, url = api
    vendor = VENDORS[source]
    loop = asyncio.new_event_loop()
    http = make_client(timeout=httpx.Timeout(5.0))
    client = client_for(source, url, http)
    outcomes = {"mapped": 0, "raised": 0}

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate),
    )
    @given(body=_answer_variants(source), event=st.sampled_from(list(EventType)))
    def run(body: bytes, event: EventType) -> None:
        box.canned = Canned(200, body, JSON)
        try:
            fetched = loop.run_until_complete(client.fetch(call_id_for(source), event))
        except UpstreamError:
            outcomes["raised"] += 1
            return
        vendor.record_from_api(source, fetched, "2024-01-01T00:00:00.000Z")
        outcomes["mapped"] += 1

    try:
        run()
    finally:
        loop.run_until_complete(http.aclose())
        loop.close()
    assert outcomes["mapped"] > 0, outcomes


@pytest.mark.parametrize("total_pages", ["nan", "inf", "-inf", "NaN", -3, "1e999"])
async def test_cometchat_odd_page_counts_end_the_listing(
    api: tuple[AnswerBox, str], http: httpx.AsyncClient, total_pages: Any
) -> None:
    box, url = api
    call = VENDORS["cometchat"].kit.simulated_call(None, now=SINCE.timestamp() + 600).call
    body = {"data": [call], "meta": {"pagination": {"total_pages": total_pages}}}
    box.canned = Canned(200, orjson.dumps(body), JSON)
    calls = await listed(client_for("cometchat", url, http))
    assert [c["sessionId"] for c in calls] == [call["sessionId"]]
