"""CometChat test helpers: a configured source, fixture files, the simulated Calls API."""

from __future__ import annotations

from typing import Any

from callhook.events import Delivery
from callhook.vendors import cometchat
from callhook.vendors.cometchat import CometChatSource
from callhook.vendors.cometchat.simulate import signed_headers
from tests.vendors.support import FixtureFiles, simulated_api_fixtures

FIXTURES = cometchat.VENDOR.kit.fixtures
FILES = FixtureFiles(FIXTURES)
#: every webhook fixture's name (`<vendor type>[__<variant>]`), a fixture body, an API answer
webhook_fixtures, fixture_body, api_fixture = FILES.names, FILES.body, FILES.api
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


#: the simulated Calls API (`api_state`) on a loopback port (`api_server`)
api_state, api_server = simulated_api_fixtures(cometchat.VENDOR, API_KEY)
