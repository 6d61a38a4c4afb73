"""OpenPhone / Quo test helpers: a configured source, fixture files signed the way Quo signs
them, and the simulated REST API on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from callhook.events import Delivery
from callhook.vendors.base import VendorSimulatorState
from callhook.vendors.openphone import OpenPhoneSource
from callhook.vendors.openphone.simulate import Generation, signed_headers, simulator_app
from tests.servers import ServerThread

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "op-api-key-3f9a0c1d2e4b"
#: the legacy signing secret from Quo's docs example (base64 of an ASCII key)
SIGNING_SECRET = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg="
WEBHOOK_SECRET = "whsec_Y2FsbGhvb2stb3BlbnBob25lLXRlc3Qta2V5LTAwMDE="
#: the `webhook-id` fixtures are delivered with (Standard Webhooks)
MSG_ID = "msg_2abcDEFghiJKLmnoPQRstu"
#: when the fixtures are signed (2026-04-13T15:05:00Z), unix seconds
NOW = 1776092700.0

RAW_CONFIG: dict[str, Any] = {
    "vendor": "openphone",
    "signing_secret": SIGNING_SECRET,
    "webhook_secret": WEBHOOK_SECRET,
    "api_key": API_KEY,
}
CONFIG = OpenPhoneSource.model_validate(RAW_CONFIG)


def configured(**changes: Any) -> OpenPhoneSource:
    """The test source with some keys changed (None removes a key)."""
    raw = {key: value for key, value in {**RAW_CONFIG, **changes}.items() if value is not None}
    return OpenPhoneSource.model_validate(raw)


def webhook_fixtures() -> list[str]:
    """Every webhook fixture name (`<type>[__variant]`)."""
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def api_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((FIXTURES / "api" / f"{name}.json").read_bytes())
    return loaded


def generation_of(body: bytes) -> Generation:
    """The generation a body belongs to: `data.resource` is the 2026-03-30 envelope."""
    data = orjson.loads(body).get("data")
    return "2026-03-30" if isinstance(data, dict) and "resource" in data else "legacy"


def signed(
    body: bytes,
    config: OpenPhoneSource = CONFIG,
    *,
    now: float = NOW,
    generation: Generation | None = None,
) -> Delivery:
    """A delivery of `body` signed as Quo signs it for `config` (the generation the body's
    shape belongs to, unless given)."""
    chosen = generation or generation_of(body)
    return Delivery(
        body=body, headers=signed_headers(config, body, now, generation=chosen, msg_id=MSG_ID)
    )


@pytest.fixture
def api_state() -> VendorSimulatorState:
    return VendorSimulatorState(api_key=API_KEY)


@pytest.fixture
def api_server(api_state: VendorSimulatorState) -> Iterator[ServerThread]:
    """The simulated Quo API on a loopback port."""
    with ServerThread(simulator_app(api_state)) as server:
        yield server
