"""`[sources.NAME]` with `vendor = "diga"`: the workflow's Bearer token and the Diga API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from callhook.vendors.base import SourceConfig, strong_secret

DEFAULT_API_BASE_URL = "https://api.diga.io"


def reveal(secret: object) -> str:
    """The plain value of a secret field.

    Also accepts a plain string: `model_copy(update=...)` skips validation, so a copy made
    that way (tests, sandbox tooling) can hold a `str` where the model declares `SecretStr`.
    """
    if isinstance(secret, SecretStr):
        return secret.get_secret_value()
    return "" if secret is None else str(secret)


class DigaSource(SourceConfig):
    """One Diga company posting to Callhook from its "Call Finished" workflow.

    `webhook_token` is a required key (a forgotten one is a config error) but may be empty:
    that disables the webhook and the source's URL answers 404.
    """

    vendor: Literal["diga"]
    #: the token the workflow's HTTP step sends as `Authorization: Bearer <token>`
    webhook_token: SecretStr
    #: the Diga API key (`Authorization: Bearer <key>`); Get Call cannot work without it
    api_key: SecretStr
    api_base_url: str = DEFAULT_API_BASE_URL
    #: Diga documents no limit: a conservative 5 requests/s
    rate_limit_per_s: float = Field(default=5.0, gt=0)

    _strong_token = field_validator("webhook_token")(strong_secret)

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def webhook_enabled(self) -> bool:
        """False when `webhook_token` is empty (the source then answers 404)."""
        return bool(reveal(self.webhook_token))
