"""`[sources.NAME]` tables with `vendor = "openphone"`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from callhook.vendors.openphone import OpenPhoneSource
from tests.vendors.openphone.conftest import RAW_CONFIG, SIGNING_SECRET, WEBHOOK_SECRET, configured


def test_defaults() -> None:
    config = configured()
    assert config.api_base_url == "https://api.openphone.com"
    assert config.rate_limit_per_s == 10
    assert (config.phone_number_ids, config.participants) == ((), ())
    proxied = configured(api_base_url="http://127.0.0.1:9/quo/")
    assert proxied.api_base_url == "http://127.0.0.1:9/quo"


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"signing_secret": "not base64!"}, "signing_secret"),
        ({"signing_secret": "===="}, "signing_secret"),
        ({"webhook_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "webhook_secret"),
        ({"webhook_secret": "whsec_not*base64"}, "webhook_secret"),
        ({"phone_number_ids": ["+15555550100"]}, "phone_number_ids"),
        ({"participants": ["5555550100"]}, "participants"),
    ],
)
def test_malformed_secrets_and_reconcile_scope_name_the_key(
    changes: dict[str, Any], location: str
) -> None:
    """Beyond what every vendor refuses (tests/vendors/test_contract.py)."""
    with pytest.raises(ValidationError) as raised:
        configured(**changes)
    assert location in {str(error["loc"][0]) for error in raised.value.errors()}


def test_one_of_the_two_secret_keys_is_required() -> None:
    with pytest.raises(ValidationError, match="give signing_secret"):
        configured(signing_secret=None, webhook_secret=None)
    assert configured(signing_secret=None).webhook_enabled()
    assert configured(webhook_secret=None).webhook_enabled()


def test_empty_secrets_disable_their_generation() -> None:
    both = configured()
    assert both.legacy_key() == b"GfK3j4lXA5ZrRu64ofat50srGzoIHHUX"
    assert both.standard_secret() == WEBHOOK_SECRET
    legacy_off = configured(signing_secret="")
    assert (legacy_off.legacy_key(), legacy_off.webhook_enabled()) == (None, True)
    new_off = configured(webhook_secret="")
    assert (new_off.standard_secret(), new_off.webhook_enabled()) == (None, True)
    assert not configured(signing_secret="", webhook_secret="").webhook_enabled()
    assert not configured(signing_secret="", webhook_secret=None).webhook_enabled()


def test_unpadded_base64_secrets_are_accepted() -> None:
    unpadded = SIGNING_SECRET.rstrip("=")
    assert configured(signing_secret=unpadded).legacy_key() == b"GfK3j4lXA5ZrRu64ofat50srGzoIHHUX"
    OpenPhoneSource.model_validate(
        {**RAW_CONFIG, "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    )


def test_reconcile_scope_can_be_configured() -> None:
    config = configured(phone_number_ids=["PNtoDbDhuz"], participants=["+12125550147"])
    assert (config.phone_number_ids, config.participants) == (("PNtoDbDhuz",), ("+12125550147",))
