"""`[sources.NAME]` with `vendor = "openphone"`: the two webhook secrets and the REST API."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from callhook.vendors.base import MIN_SECRET_BYTES, SourceConfig

DEFAULT_API_BASE_URL = "https://api.openphone.com"
WHSEC_PREFIX = "whsec_"

_PHONE_NUMBER_ID = re.compile(r"^PN[A-Za-z0-9]+$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def decode_base64_secret(value: str) -> bytes:
    """The key bytes of a base64 secret (padding optional); ValueError if it is not base64
    or holds fewer than MIN_SECRET_BYTES bytes of key."""
    padded = value + "=" * (-len(value) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"too short: the key must decode to at least {MIN_SECRET_BYTES} bytes")
    return key


class OpenPhoneSource(SourceConfig):
    """One OpenPhone / Quo workspace posting to Callhook.

    Quo runs two webhook generations side by side, each with its own secret: `signing_secret`
    (legacy `openphone-signature` webhooks, the base64 key the Quo app reveals) and
    `webhook_secret` (`whsec_...`, webhooks created with API version 2026-03-30). At least
    one of the two keys must be present; an empty value disables that generation, and with
    both empty the source's URL answers 404.
    """

    vendor: Literal["openphone"]
    signing_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    #: sent as `Authorization: <key>` (no `Bearer`)
    api_key: SecretStr
    api_base_url: str = DEFAULT_API_BASE_URL
    #: Quo's documented limit: 10 requests/s per API key
    rate_limit_per_s: float = Field(default=10.0, gt=0)
    #: reconcile: the workspace numbers to list calls for (default: GET /v1/phone-numbers)
    phone_number_ids: tuple[str, ...] = ()
    #: reconcile: the counterparties to list calls with (default: GET /v1/conversations)
    participants: tuple[str, ...] = ()

    @field_validator("signing_secret")
    @classmethod
    def _legacy_secret_is_base64(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            decode_base64_secret(value.get_secret_value())
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_is_whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return value
        secret = value.get_secret_value()
        if not secret.startswith(WHSEC_PREFIX):
            raise ValueError(f"must start with {WHSEC_PREFIX} (the key Quo returns)")
        decode_base64_secret(secret[len(WHSEC_PREFIX) :])
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("phone_number_ids")
    @classmethod
    def _phone_number_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _PHONE_NUMBER_ID.match(item):
                raise ValueError("each entry must be a Quo phone number id (PN...)")
        return value

    @field_validator("participants")
    @classmethod
    def _e164(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _E164.match(item):
                raise ValueError("each entry must be an E.164 number (+15555550100)")
        return value

    @model_validator(mode="after")
    def _one_secret_at_least(self) -> OpenPhoneSource:
        if self.signing_secret is None and self.webhook_secret is None:
            raise ValueError(
                "give signing_secret (legacy webhooks) or webhook_secret (whsec_..., "
                "new webhooks), or both; an empty value disables that kind"
            )
        return self

    def legacy_key(self) -> bytes | None:
        """The HMAC key for `openphone-signature`, or None when legacy webhooks are off."""
        secret = self.signing_secret.get_secret_value() if self.signing_secret else ""
        return decode_base64_secret(secret) if secret else None

    def standard_secret(self) -> str | None:
        """The `whsec_...` secret for Standard Webhooks, or None when they are off."""
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        return secret or None

    def webhook_enabled(self) -> bool:
        """False when both webhook secrets are empty (the source then answers 404)."""
        return self.legacy_key() is not None or self.standard_secret() is not None
