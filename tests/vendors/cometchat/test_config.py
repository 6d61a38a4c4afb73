"""`[sources.NAME]` tables with `vendor = "cometchat"`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from callhook.vendors.cometchat import CometChatSource

MINIMAL: dict[str, Any] = {
    "vendor": "cometchat",
    "app_id": "2080843fb1d0b4a9",
    "basic_auth_username": "hooks",
    "basic_auth_password": "hunter2-secret-pass",
    "api_key": "key",
}


def test_api_base_url_is_derived_from_app_and_region() -> None:
    assert CometChatSource.model_validate(MINIMAL).api_base_url == (
        "https://2080843fb1d0b4a9.call-us.cometchat.io/v3"
    )
    eu = CometChatSource.model_validate({**MINIMAL, "region": "eu"})
    assert eu.api_base_url == "https://2080843fb1d0b4a9.call-eu.cometchat.io/v3"
    proxied = CometChatSource.model_validate({**MINIMAL, "api_base_url": "http://127.0.0.1:9/cc/"})
    assert proxied.api_base_url == "http://127.0.0.1:9/cc"


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"basic_auth_username": None}, "basic_auth_username"),
        ({"basic_auth_password": None}, "basic_auth_password"),
        ({"app_id": None}, "app_id"),
        ({"app_id": "evil.example.com/x"}, "app_id"),
        ({"region": "ap"}, "region"),
    ],
)
def test_invalid_credentials_app_or_region_name_the_key(
    changes: dict[str, Any], location: str
) -> None:
    """Beyond what every vendor refuses (tests/vendors/test_contract.py)."""
    table = {key: value for key, value in {**MINIMAL, **changes}.items() if value is not None}
    with pytest.raises(ValidationError) as raised:
        CometChatSource.model_validate(table)
    assert location in {str(error["loc"][0]) for error in raised.value.errors()}


def test_empty_credentials_disable_the_webhook() -> None:
    assert CometChatSource.model_validate(MINIMAL).webhook_enabled()
    for key in ("basic_auth_username", "basic_auth_password"):
        assert not CometChatSource.model_validate({**MINIMAL, key: ""}).webhook_enabled()
