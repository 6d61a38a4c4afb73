"""Diga test helpers: a configured source, fixture files, the simulated Diga API."""

from __future__ import annotations

from typing import Any

from callhook.events import Delivery
from callhook.vendors import diga
from callhook.vendors.diga import DigaSource
from callhook.vendors.diga.simulate import signed_headers
from tests.vendors.support import FixtureFiles, simulated_api_fixtures

FIXTURES = diga.VENDOR.kit.fixtures
FILES = FixtureFiles(FIXTURES)
#: every webhook fixture's name (`<vendor type>[__<variant>]`), a fixture body, an API answer
webhook_fixtures, fixture_body, api_fixture = FILES.names, FILES.body, FILES.api
API_KEY = "diga-api-key-0123456789abcdef"
WEBHOOK_TOKEN = "diga-workflow-token-Zx8vQ2"

CONFIG = DigaSource.model_validate(
    {"vendor": "diga", "webhook_token": WEBHOOK_TOKEN, "api_key": API_KEY}
)


def configured(**changes: Any) -> DigaSource:
    raw = {"vendor": "diga", "webhook_token": WEBHOOK_TOKEN, "api_key": API_KEY}
    return DigaSource.model_validate({**raw, **changes})


def signed(body: bytes, config: DigaSource = CONFIG) -> Delivery:
    """A delivery of `body` with the Bearer token the workflow sends for `config`."""
    return Delivery(body=body, headers=signed_headers(config))


#: the simulated Diga API (`api_state`) on a loopback port (`api_server`)
api_state, api_server = simulated_api_fixtures(diga.VENDOR, API_KEY)
