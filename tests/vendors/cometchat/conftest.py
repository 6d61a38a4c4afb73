"""CometChat test helpers: a configured source, fixture files, the simulated Calls API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from callhook.events import Delivery
from callhook.vendors.base import VendorSimulatorState
from callhook.vendors.cometchat import CometChatSource
from callhook.vendors.cometchat.simulate import signed_headers, simulator_app
from tests.servers import ServerThread

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "cc-rest-api-key-0123456789"

CONFIG = CometChatSource.model_validate(
    {
        "vendor": "cometchat",
        "app_id": "2080843fb1d0b4a9",
        "region": "us",
        "basic_auth_username": "cometchat-hooks",
        "basic_auth_password": "s3cret-pass:with-colon",
        "api_key": API_KEY,
    }
)


def webhook_fixtures() -> list[str]:
    """Every webhook fixture name (`<trigger>[__variant]`)."""
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def api_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((FIXTURES / "api" / f"{name}.json").read_bytes())
    return loaded


def signed(body: bytes, config: CometChatSource = CONFIG) -> Delivery:
    """A delivery of `body` authenticated as CometChat sends it for `config`."""
    return Delivery(body=body, headers=signed_headers(config))


def configured(**changes: Any) -> CometChatSource:
    raw = {
        "vendor": "cometchat",
        "app_id": CONFIG.app_id,
        "region": CONFIG.region,
        "basic_auth_username": CONFIG.basic_auth_username,
        "basic_auth_password": CONFIG.basic_auth_password.get_secret_value(),
        "api_key": API_KEY,
    }
    return CometChatSource.model_validate({**raw, **changes})


@pytest.fixture
def api_state() -> VendorSimulatorState:
    return VendorSimulatorState(api_key=API_KEY)


@pytest.fixture
def api_server(api_state: VendorSimulatorState) -> Iterator[ServerThread]:
    """The simulated Calls API on a loopback port (Get Call in the current shape)."""
    with ServerThread(simulator_app(api_state)) as server:
        yield server
