"""OpenPhone / Quo test helpers: a configured source, fixture files signed the way Quo signs
them, and the simulated REST API on a loopback port."""

from __future__ import annotations

from typing import Any

import orjson

from callhook.events import Delivery
from callhook.vendors import openphone
from callhook.vendors.openphone import OpenPhoneSource
from callhook.vendors.openphone.simulate import Generation, signed_headers
from tests.vendors.support import FixtureFiles, simulated_api_fixtures

FIXTURES = openphone.VENDOR.kit.fixtures
FILES = FixtureFiles(FIXTURES)
#: every webhook fixture's name (`<vendor type>[__<variant>]`), a fixture body, an API answer
webhook_fixtures, fixture_body, api_fixture = FILES.names, FILES.body, FILES.api
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


#: the simulated Quo API (`api_state`) on a loopback port (`api_server`)
api_state, api_server = simulated_api_fixtures(openphone.VENDOR, API_KEY)
