"""`[sources.NAME]` tables with `vendor = "diga"`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from callhook.vendors.diga import DigaSource

MINIMAL: dict[str, Any] = {
    "vendor": "diga",
    "webhook_token": "workflow-token-secret",
    "api_key": "diga-api-key-secret",
}


def test_api_base_url_defaults_to_diga_and_is_overridable() -> None:
    assert DigaSource.model_validate(MINIMAL).api_base_url == "https://api.diga.io"
    proxied = DigaSource.model_validate({**MINIMAL, "api_base_url": "http://127.0.0.1:9/diga/"})
    assert proxied.api_base_url == "http://127.0.0.1:9/diga"


def test_the_webhook_token_is_required() -> None:
    """Beyond what every vendor refuses (tests/vendors/test_contract.py)."""
    table = {key: value for key, value in MINIMAL.items() if key != "webhook_token"}
    with pytest.raises(ValidationError) as raised:
        DigaSource.model_validate(table)
    assert "webhook_token" in {str(error["loc"][0]) for error in raised.value.errors()}


def test_an_empty_token_disables_the_webhook() -> None:
    assert DigaSource.model_validate(MINIMAL).webhook_enabled()
    assert not DigaSource.model_validate({**MINIMAL, "webhook_token": ""}).webhook_enabled()
