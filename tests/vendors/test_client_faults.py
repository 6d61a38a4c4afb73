"""Transport failures every vendor client turns into `RetryableError` (they share
`callhook.http.get_json_object`): a 5xx, an answer slower than the timeout, nobody there."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from callhook.errors import RetryableError
from callhook.events import EventType
from callhook.http import make_client
from callhook.vendors import VENDORS
from callhook.vendors.base import SourceConfig, VendorClient, VendorSimulatorState
from tests.servers import ServerThread, free_port
from tests.vendors.cometchat.conftest import configured as cometchat_source
from tests.vendors.diga.conftest import configured as diga_source
from tests.vendors.openphone.conftest import configured as openphone_source

SOURCES: dict[str, Callable[..., SourceConfig]] = {
    "cometchat": cometchat_source,
    "openphone": openphone_source,
    "diga": diga_source,
}


@pytest.fixture(params=sorted(SOURCES))
def vendor_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def state(vendor_name: str) -> VendorSimulatorState:
    api_key = SOURCES[vendor_name]().api_key
    assert api_key is not None
    return VendorSimulatorState(api_key=api_key.get_secret_value())


@pytest.fixture
def server(vendor_name: str, state: VendorSimulatorState) -> Iterator[ServerThread]:
    with ServerThread(VENDORS[vendor_name].simulator_app(state)) as running:
        yield running


def client(vendor_name: str, base_url: str, http: httpx.AsyncClient) -> VendorClient:
    config: Any = SOURCES[vendor_name](api_base_url=base_url)
    return VENDORS[vendor_name].client(config, http)


def known_call_id(vendor_name: str, state: VendorSimulatorState) -> str:
    call = VENDORS[vendor_name].simulated_call(None, now=time.time())
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
    async with make_client() as http:
        nowhere = client(vendor_name, f"http://127.0.0.1:{free_port()}", http)
        with pytest.raises(RetryableError, match="unreachable"):
            await nowhere.fetch("call-that-is-nowhere", EventType.COMPLETED)
