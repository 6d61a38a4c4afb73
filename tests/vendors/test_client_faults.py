"""Transport failures every vendor client turns into `RetryableError` (they share
`callhook.http.get_json_object`): a 5xx, an answer slower than the timeout, an answer that
trickles in past the deadline, nobody there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from callhook.errors import RetryableError
from callhook.events import EventType
from callhook.http import make_client
from callhook.vendors import VENDORS
from callhook.vendors.base import SourceConfig, VendorClient
from callhook.vendors.kit import VendorSimulatorState
from tests.servers import ServerThread, free_port

#: each registered vendor's example secrets, from its kit (the API key under "api_key")
SECRETS = {name: vendor.kit.new_secrets() for name, vendor in VENDORS.items()}


def source(vendor_name: str, api_base_url: str) -> SourceConfig:
    """The vendor's example source (its kit's) with its API at `api_base_url`."""
    vendor = VENDORS[vendor_name]
    table = vendor.kit.example_source(SECRETS[vendor_name], api_base_url)
    config: SourceConfig = vendor.config_model.model_validate(table)
    return config


def client_with_deadline(
    vendor_name: str, config: SourceConfig, http: httpx.AsyncClient, deadline_s: float
) -> VendorClient:
    """The vendor's client with its own deadline on each exchange."""
    return VENDORS[vendor_name].client(config, http, deadline_s=deadline_s)


@pytest.fixture(params=sorted(VENDORS))
def vendor_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def state(vendor_name: str) -> VendorSimulatorState:
    return VendorSimulatorState(api_key=SECRETS[vendor_name]["api_key"])


@pytest.fixture
def server(vendor_name: str, state: VendorSimulatorState) -> Iterator[ServerThread]:
    with ServerThread(VENDORS[vendor_name].kit.simulator_app(state)) as running:
        yield running


def client(vendor_name: str, base_url: str, http: httpx.AsyncClient) -> VendorClient:
    return VENDORS[vendor_name].client(source(vendor_name, base_url), http)


def known_call_id(vendor_name: str, state: VendorSimulatorState) -> str:
    call = VENDORS[vendor_name].kit.simulated_call(None, now=time.time())
    state.calls[call.call_id] = call.call
    state.extras[call.call_id] = call.extras
    return call.call_id


async def test_server_error_is_retryable(
    vendor_name: str, state: VendorSimulatorState, server: ServerThread
) -> None:
    call_id = known_call_id(vendor_name, state)
    state.faults.server_errors = 1
    async with make_client() as http:
        with pytest.raises(RetryableError) as raised:
            await client(vendor_name, server.url, http).fetch(call_id, EventType.COMPLETED)
    assert type(raised.value) is RetryableError
    assert raised.value.status_code == 500


async def test_slow_answer_past_the_timeout_is_retryable(
    vendor_name: str, state: VendorSimulatorState, server: ServerThread
) -> None:
    call_id = known_call_id(vendor_name, state)
    state.faults.latency_s = 0.3
    async with make_client(timeout=httpx.Timeout(0.05)) as impatient:
        with pytest.raises(RetryableError, match="timed out"):
            await client(vendor_name, server.url, impatient).fetch(call_id, EventType.COMPLETED)


async def test_nothing_listening_is_retryable(vendor_name: str) -> None:
    call_id = VENDORS[vendor_name].kit.simulated_call(None, now=time.time()).call_id
    async with make_client() as http:
        nowhere = client(vendor_name, f"http://127.0.0.1:{free_port()}", http)
        with pytest.raises(RetryableError, match="unreachable"):
            await nowhere.fetch(call_id, EventType.COMPLETED)


def trickling_app(every_s: float, requests: list[str]) -> Starlette:
    """Answers every GET 200 with a JSON body that comes one byte every `every_s` seconds
    (each read well within the client's read timeout) for a couple of minutes."""

    async def answer(request: Request) -> Response:
        requests.append(request.url.path)

        async def body() -> AsyncIterator[bytes]:
            yield b"{"
            for _ in range(int(120 / every_s)):
                await asyncio.sleep(every_s)
                yield b" "
            yield b"}"

        return StreamingResponse(body(), media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer)])


async def test_an_answer_trickling_in_past_the_deadline_is_retryable(vendor_name: str) -> None:
    """The per-read timeout (10 s) never fires on a byte every 0.2 s; the deadline on the
    whole exchange does, so a worker is never held for longer than that."""
    requests: list[str] = []
    call_id = VENDORS[vendor_name].kit.simulated_call(None, now=time.time()).call_id
    with ServerThread(trickling_app(0.2, requests)) as server:
        config = source(vendor_name, server.url)
        async with make_client() as http:
            slow = client_with_deadline(vendor_name, config, http, deadline_s=1.0)
            started = time.monotonic()
            with pytest.raises(RetryableError) as raised:
                await slow.fetch(call_id, EventType.COMPLETED)
            waited = time.monotonic() - started
    assert type(raised.value) is RetryableError
    assert raised.value.reason.endswith("answer took longer than 1 s")
    assert len(requests) == 1
    # far less than the two minutes the body would take (a loose bound: the machine is busy)
    assert waited < 60


class WaitsFirst(httpx.AsyncBaseTransport):
    """Waits before each request goes out, as the rate limiter waits for a fleet-wide slot
    (or a retry for its backoff), then sends it on a real connection pool."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.pool = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.wait_s)
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        await self.pool.aclose()


async def test_waiting_before_the_request_goes_out_is_not_counted_in_the_deadline(
    vendor_name: str, state: VendorSimulatorState, server: ServerThread
) -> None:
    call_id = known_call_id(vendor_name, state)
    config = source(vendor_name, server.url)
    async with make_client(transport=WaitsFirst(3.5)) as http:
        fetched = await client_with_deadline(vendor_name, config, http, deadline_s=3.0).fetch(
            call_id, EventType.COMPLETED
        )
    assert fetched.call
