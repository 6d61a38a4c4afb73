"""Diga test helpers: a configured source, fixture files, the simulated Diga API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from callhook.events import Delivery
from callhook.vendors.base import VendorSimulatorState
from callhook.vendors.diga import DigaSource
from callhook.vendors.diga.simulate import signed_headers, simulator_app
from tests.servers import ServerThread

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "diga-api-key-0123456789abcdef"
WEBHOOK_TOKEN = "diga-workflow-token-Zx8vQ2"

CONFIG = DigaSource.model_validate(
    {"vendor": "diga", "webhook_token": WEBHOOK_TOKEN, "api_key": API_KEY}
)


def configured(**changes: Any) -> DigaSource:
    raw = {"vendor": "diga", "webhook_token": WEBHOOK_TOKEN, "api_key": API_KEY}
    return DigaSource.model_validate({**raw, **changes})


def webhook_fixtures() -> list[str]:
    """Every webhook fixture name (`call_finished[__variant]`)."""
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def api_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((FIXTURES / "api" / f"{name}.json").read_bytes())
    return loaded


def signed(body: bytes, config: DigaSource = CONFIG) -> Delivery:
    """A delivery of `body` with the Bearer token the workflow sends for `config`."""
    return Delivery(body=body, headers=signed_headers(config))


@pytest.fixture
def api_state() -> VendorSimulatorState:
    return VendorSimulatorState(api_key=API_KEY)


@pytest.fixture
def api_server(api_state: VendorSimulatorState) -> Iterator[ServerThread]:
    """The simulated Diga API on a loopback port."""
    with ServerThread(simulator_app(api_state)) as server:
        yield server
