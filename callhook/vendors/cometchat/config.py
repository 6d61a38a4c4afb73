"""`[sources.NAME]` with `vendor = "cometchat"`: webhook Basic credentials and the Calls API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from callhook.vendors.base import SourceConfig, strong_secret

Region = Literal["us", "eu", "in"]


def default_api_base_url(app_id: str, region: str) -> str:
    """The Calls API base for an app: `https://{appId}.call-{region}.cometchat.io/v3`."""
    return f"https://{app_id}.call-{region}.cometchat.io/v3"


class CometChatSource(SourceConfig):
    """One CometChat app posting to Callhook.

    The webhook credentials are required keys (a forgotten one is a config error), but an
    empty value is allowed: it disables the webhook, and the source's URL answers 404.
    """

    vendor: Literal["cometchat"]
    #: goes into the API host name, so only host-name characters are accepted
    app_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
    region: Region = "us"
    basic_auth_username: str
    basic_auth_password: SecretStr
    #: the REST API key (sent as the `apikey` header); Get Call cannot work without it
    api_key: SecretStr
    api_base_url: str
    #: CometChat allows 10,000-20,000 API requests/min per app (500/min on the free plan),
    #: shared with the app's other API clients: 100/s uses at most 60 % of the smallest
    #: paid limit. Free-plan apps set 8.
    rate_limit_per_s: float = Field(default=100.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _derive_api_base_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("api_base_url") and data.get("app_id"):
            region = data.get("region") or "us"
            data = {**data, "api_base_url": default_api_base_url(str(data["app_id"]), region)}
        return data

    _strong_password = field_validator("basic_auth_password")(strong_secret)

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def webhook_enabled(self) -> bool:
        """False when the Basic username or password is empty (the source answers 404)."""
        return bool(self.basic_auth_username) and bool(self.basic_auth_password.get_secret_value())
