"""http: POSTs the call record, signed the Standard Webhooks way, to a receiver's URL.

One successful request per (sink, call, event key), whatever the retries and replays
(`callhook.sinks.once`); its `webhook-id` is the same on every attempt so receivers can
dedupe the remaining at-least-once window. A 410 Gone disables the sink until an
operator deletes its flag in Redis (see docs/sinks/http.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator
from standardwebhooks.webhooks import Webhook

from callhook.errors import PermanentError
from callhook.http import post
from callhook.record import utc_now_iso
from callhook.sinks.base import Sink, SinkConfig, SinkResources, Trigger, WriteResult
from callhook.sinks.once import Once

log = logging.getLogger("callhook.sinks.http")

#: headers Callhook sets itself; `headers` in the config may not override them
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "callhook-event",
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
    }
)
#: the answers this sink classifies itself (`_check`); `post` classifies the others
_OWN_STATUSES = frozenset({*range(300, 400), 410})
#: RFC 9110 token characters
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")


class HttpSinkConfig(SinkConfig):
    """`url` to POST to, the `secret` (whsec_...) to sign with, optional extra `headers`."""

    # a rejected value may be a secret (a webhook URL, a token): never echo it in errors
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["http"] = "http"
    url: str
    secret: SecretStr
    #: sent with every request (e.g. an Authorization header); values are kept secret
    headers: Mapping[str, SecretStr] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret (whsec_...)")
        try:
            key = base64.b64decode(raw.removeprefix("whsec_") + "==", validate=True)
        except binascii.Error:
            key = b""
        if len(key) < 16:
            raise ValueError("must be whsec_ followed by base64 of at least 16 bytes")
        return value

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, value: Mapping[str, SecretStr]) -> Mapping[str, SecretStr]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name!r} is set by Callhook and cannot be overridden")
        return value


def webhook_id(sink: str, source: str, call_id: str, event_key: str) -> str:
    """The `webhook-id`: the same for every attempt of one (sink, call, event key)."""
    identity = "\0".join((sink, source, call_id, event_key)).encode()
    return "msg_" + hashlib.sha256(identity).hexdigest()[:32]


class HttpSink(Sink[HttpSinkConfig]):
    """Signed POSTs of the record; 2xx is success, 410 disables the sink."""

    type_name: ClassVar[str] = "http"
    config_model: ClassVar[type[SinkConfig]] = HttpSinkConfig

    def __init__(self, config: HttpSinkConfig, resources: SinkResources) -> None:
        super().__init__(config, resources)
        self._target = f"http sink {config.name!r}"
        self._signer = Webhook(config.secret.get_secret_value())
        prefix = f"{resources.namespace}:sink:{config.name}"
        self.disabled_key = f"{prefix}:disabled"
        self._once = Once(
            resources.redis,
            prefix,
            # outlasts one request, which _post bounds with timeout_s
            lock_s=config.timeout_s * 2 + 5,
            wait_s=config.timeout_s,
            target=self._target,
        )

    async def start(self) -> None:
        disabled = await self.resources.redis.get(self.disabled_key)
        if disabled is not None:
            log.error(
                "http sink %s is disabled since a 410 Gone (%s); delete Redis key %s to re-enable",
                self.config.name,
                _text(disabled),
                self.disabled_key,
                extra={"sink": self.config.name},
            )

    async def write(self, record: dict[str, Any], trigger: Trigger) -> WriteResult:
        if await self.resources.redis.exists(self.disabled_key):
            raise PermanentError(
                f"{self._target}: sink disabled after 410 Gone from the receiver "
                f"(delete Redis key {self.disabled_key} to re-enable)",
                target=self._target,
            )
        message_id = webhook_id(
            self.config.name, record["source"], record["call_id"], trigger.event_key
        )
        body = orjson.dumps(record)
        sent = await self._once.run(
            message_id, lambda: self._post(message_id, body, record, trigger)
        )
        if sent:
            return WriteResult.WRITTEN
        log.info(
            "%s already delivered; not sending again",
            message_id,
            extra=_context(record, trigger, self.config.name),
        )
        return WriteResult.ALREADY_DONE

    async def _post(
        self, message_id: str, body: bytes, record: dict[str, Any], trigger: Trigger
    ) -> None:
        now = datetime.now(UTC)
        headers = {name: value.get_secret_value() for name, value in self.config.headers.items()}
        headers.update(
            {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self._signer.sign(message_id, now, body.decode()),
                "callhook-event": str(trigger.event_type),
            }
        )
        response = await post(
            self.resources.http,
            self.config.url,
            content=body,
            headers=headers,
            target=self._target,
            peer="the receiver",
            timeout_s=self.config.timeout_s,
            own_statuses=_OWN_STATUSES,
        )
        await self._check(response, record, trigger)

    async def _check(
        self, response: httpx.Response, record: dict[str, Any], trigger: Trigger
    ) -> None:
        """What `post` leaves to this sink: a redirect, and a 410 that disables it."""
        status = response.status_code
        if 300 <= status < 400:
            # never follow: the signature is for this URL's owner, and the Location may
            # carry tokens, so only its host is named
            host = urlsplit(response.headers.get("location", "")).hostname or "no location"
            raise PermanentError(
                f"{self._target}: the receiver answered HTTP {status} redirecting to {host}; "
                "redirects are not followed (update the sink's url)",
                target=self._target,
                status_code=status,
            )
        if status == 410:
            await self.resources.redis.set(self.disabled_key, utc_now_iso())
            log.error(
                "http sink %s disabled: the receiver answered 410 Gone; "
                "delete Redis key %s to re-enable",
                self.config.name,
                self.disabled_key,
                extra=_context(record, trigger, self.config.name),
            )
            raise PermanentError(
                f"{self._target}: the receiver answered HTTP 410 Gone; sink disabled",
                target=self._target,
                status_code=status,
            )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _context(record: dict[str, Any], trigger: Trigger, sink: str) -> dict[str, Any]:
    return {
        "sink": sink,
        "source": record.get("source"),
        "call_id": record.get("call_id"),
        "event_key": trigger.event_key,
    }
