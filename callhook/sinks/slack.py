"""slack: one Block Kit message per (sink, call, normalised event type).

Two ways to post: an incoming webhook (`webhook_url`) or a bot token with
`chat.postMessage` (`bot_token` + `channel`). Retries and replays never post twice
(`callhook.sinks.once`); Slack's answers are classified into retryable and permanent.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import jinja2
import orjson
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ConfigDict, SecretStr, field_validator, model_validator

from callhook.errors import PermanentError, RateLimited, RetryableError
from callhook.http import json_object, parse_retry_after, post
from callhook.sinks.base import Sink, SinkConfig, SinkResources, Trigger, WriteResult
from callhook.sinks.once import Once
from callhook.sinks.slack_message import build_message, escape, format_duration

log = logging.getLogger("callhook.sinks.slack")

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: chat.postMessage `error` codes that clear by themselves; any other one is permanent
#: (channel_not_found, not_in_channel, invalid_auth, token_revoked, account_inactive,
#: invalid_blocks, msg_too_long, missing_scope, ...)
_TRANSIENT_API_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
#: Slack's incoming-webhook error bodies are short codes like `channel_not_found`
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")


def check_slack_url(url: str) -> str:
    """`url` if it is https, or http to a loopback host (local tests); else ValueError.
    The message never repeats the URL: a webhook URL is a secret."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("must be an https:// URL")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return url
    raise ValueError("must be an https:// URL (http:// only for 127.0.0.1 or localhost)")


#: put around each interpolated value while a template renders (private-use code points,
#: removed from the values first), so `_seal` can tell the data's `|` from the template's
_DATA_OPEN, _DATA_CLOSE = "\ue000", "\ue001"
_DATA = re.compile("\ue000([^\ue001]*)\ue001")


def _finalize(value: Any) -> str:
    # Escape what the template interpolates, whatever its type (a list of participants is
    # shown as text too), not what it says: data cannot mention anyone or open a link, while
    # the template's own <url|label> links and <!here> work.
    if value is None:
        return ""
    shown = str(value).replace(_DATA_OPEN, "").replace(_DATA_CLOSE, "")
    return f"{_DATA_OPEN}{escape(shown)}{_DATA_CLOSE}"


def _seal(rendered: str) -> str:
    """The rendered text without `_finalize`'s marks. A `|` the data put into the URL of
    one of the template's `<url|label>` links is percent-encoded: it would end the URL
    there and make the rest of the value the link's label."""
    out: list[str] = []
    in_url = False
    for index, part in enumerate(_DATA.split(rendered)):
        if index % 2:  # a value: its < and > are escaped, so only the template opens links
            out.append(part.replace("|", "%7C") if in_url else part)
            continue
        for char in part:
            if char == "<":
                in_url = True
            elif char in "|>":
                in_url = False
        out.append(part.replace(_DATA_OPEN, "").replace(_DATA_CLOSE, ""))
    return "".join(out)


# Immutable: a template cannot change the record it renders (`recordings.clear()`)
_TEMPLATES = ImmutableSandboxedEnvironment(autoescape=False, finalize=_finalize)
_TEMPLATES.filters["duration"] = lambda seconds: format_duration(seconds) or ""


def compile_template(source: str) -> jinja2.Template:
    """Compile a `template` option in the sandbox; TemplateSyntaxError when it is invalid."""
    return _TEMPLATES.from_string(source)


class SlackSinkConfig(SinkConfig):
    """`webhook_url`, or `bot_token` + `channel` (chat.postMessage at `api_base_url`)."""

    # a rejected value may be a secret (a webhook URL, a token): never echo it in errors
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["slack"] = "slack"
    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None
    channel: str | None = None
    api_base_url: str = "https://slack.com/api"
    #: Jinja2 (sandboxed) for the message text; the record's fields are its variables
    template: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _webhook_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_slack_url(value.get_secret_value())
        return value

    @field_validator("api_base_url")
    @classmethod
    def _api_scheme(cls, value: str) -> str:
        return check_slack_url(value).rstrip("/")

    @field_validator("bot_token")
    @classmethod
    def _token_present(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_template(value)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(
                    f"not a valid Jinja2 template (line {exc.lineno}: {exc.message})"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> SlackSinkConfig:
        if (self.webhook_url is None) == (self.bot_token is None):
            raise ValueError("set either webhook_url, or bot_token and channel (not both)")
        if self.bot_token is not None and not (self.channel or "").strip():
            raise ValueError("channel is required with bot_token")
        if self.webhook_url is not None and self.channel is not None:
            raise ValueError("channel is only used with bot_token (a webhook has its channel)")
        return self


class SlackSink(Sink[SlackSinkConfig]):
    """Posts a readable message for each routed event; exactly one per (call, event type)."""

    type_name: ClassVar[str] = "slack"
    config_model: ClassVar[type[SinkConfig]] = SlackSinkConfig

    def __init__(self, config: SlackSinkConfig, resources: SinkResources) -> None:
        super().__init__(config, resources)
        self._target = f"slack sink {config.name!r}"
        self._template = compile_template(config.template) if config.template else None
        self._once = Once(
            resources.redis,
            f"{resources.namespace}:sink:{config.name}",
            # outlasts one post, which _post bounds with timeout_s
            lock_s=config.timeout_s * 2 + 5,
            wait_s=config.timeout_s,
            target=self._target,
        )

    async def write(self, record: dict[str, Any], trigger: Trigger) -> WriteResult:
        message = build_message(
            record, trigger.event_type, custom_text=self._render(record, trigger)
        )
        identity = f"{record['source']}:{record['call_id']}:{trigger.event_type}"
        if await self._once.run(identity, lambda: self._post(message)):
            return WriteResult.WRITTEN
        log.info(
            "already posted %s for this call; not posting again",
            trigger.event_type,
            extra=_context(record, trigger, self.config.name),
        )
        return WriteResult.ALREADY_DONE

    def _render(self, record: dict[str, Any], trigger: Trigger) -> str | None:
        if self._template is None:
            return None
        variables = {
            **record,
            "event": {
                "type": str(trigger.event_type),
                "key": trigger.event_key,
                "received_at": trigger.received_at,
            },
        }
        try:
            rendered = _seal(self._template.render(variables)).strip()
        except Exception as exc:  # anything the template does wrong is a config problem
            raise PermanentError(
                f"{self._target}: the template failed to render ({type(exc).__name__}: {exc})",
                target=self._target,
            ) from None
        # an empty rendering (e.g. every branch of an {% if %} false) keeps the default text
        return rendered or None

    async def _post(self, message: dict[str, Any]) -> None:
        # link_names off: a bare "@channel" or "@here" in the data stays text
        body = {**message, "unfurl_links": False, "unfurl_media": False, "link_names": False}
        if self.config.webhook_url is not None:
            url, headers = self.config.webhook_url.get_secret_value(), {}
        else:
            assert self.config.bot_token is not None  # guaranteed by the config validator
            url = f"{self.config.api_base_url}/chat.postMessage"
            headers = {"authorization": f"Bearer {self.config.bot_token.get_secret_value()}"}
            body["channel"] = self.config.channel
        headers["content-type"] = "application/json; charset=utf-8"
        # 400 invalid_payload, 403 action_prohibited, 404 channel_not_found / no_service,
        # 410 channel_is_archived, a redirect: permanent, as `post` classifies them
        response = await post(
            self.resources.http,
            url,
            content=orjson.dumps(body),
            headers=headers,
            target=self._target,
            peer="Slack",
            timeout_s=self.config.timeout_s,
            error_code=_webhook_error_code,
        )
        if self.config.bot_token is not None:
            self._check_api_answer(response)

    def _check_api_answer(self, response: httpx.Response) -> None:
        answer = json_object(response, target=self._target)
        if answer.get("ok") is True:
            return
        error = str(answer.get("error") or "unknown_error")[:64]
        reason = f"{self._target}: chat.postMessage failed ({error})"
        if error == "ratelimited":
            raise RateLimited(
                reason,
                target=self._target,
                status_code=response.status_code,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if error in _TRANSIENT_API_ERRORS:
            raise RetryableError(reason, target=self._target, status_code=response.status_code)
        raise PermanentError(reason, target=self._target, status_code=response.status_code)


def _webhook_error_code(response: httpx.Response) -> str | None:
    """The short code of an incoming webhook's error answer (`channel_not_found`), if the
    body is one."""
    code = response.text.strip()[:64]
    return code if _ERROR_CODE.match(code) else None


def _context(record: dict[str, Any], trigger: Trigger, sink: str) -> dict[str, Any]:
    return {
        "sink": sink,
        "source": record.get("source"),
        "call_id": record.get("call_id"),
        "event_key": trigger.event_key,
    }
