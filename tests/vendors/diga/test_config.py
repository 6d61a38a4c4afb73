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


def test_secrets_stay_secret() -> None:
    source = DigaSource.model_validate(MINIMAL)
    dumped = source.model_dump(mode="json")
    assert (dumped["webhook_token"], dumped["api_key"]) == ("**********", "**********")
    assert "workflow-token-secret" not in repr(source)
    assert "diga-api-key-secret" not in repr(source)


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"webhook_token": None}, "webhook_token"),
        ({"api_key": None}, "api_key"),
        ({"vendor": "cometchat"}, "vendor"),
        ({"api_base_url": "api.diga.io"}, "api_base_url"),
        ({"webhook_secret": "x"}, "webhook_secret"),
        ({"rate_limit_per_s": 0}, "rate_limit_per_s"),
    ],
)
def test_invalid_tables_name_the_key(changes: dict[str, Any], location: str) -> None:
    table = {key: value for key, value in {**MINIMAL, **changes}.items() if value is not None}
    with pytest.raises(ValidationError) as raised:
        DigaSource.model_validate(table)
    assert location in {str(error["loc"][0]) for error in raised.value.errors()}


def test_an_empty_token_disables_the_webhook() -> None:
    assert DigaSource.model_validate(MINIMAL).webhook_enabled()
    assert not DigaSource.model_validate({**MINIMAL, "webhook_token": ""}).webhook_enabled()
