"""The fuzzed ingress: the real app (lifespan and all) on httpx's ASGI transport, the real
Redis under a per-test namespace, every log line captured, every request counted.

Secrets are distinctive strings so that a leak into a response or a log line is found by
plain substring search (`SECRET_TEXTS`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from callhook.config import Config, parse_config
from callhook.logs import JsonFormatter
from callhook.queues import ENRICH_QUEUE, messages_key, queue_key
from service.app import create_app

MAX_BODY_BYTES = 65536
#: seconds one request may take before it counts as a hang
REQUEST_TIMEOUT_S = 5.0

CC_USER = "fuzz-cc-hook-user"
CC_PASSWORD = "fuzzCCpass-7f3a9e21c4"
CC_API_KEY = "fuzzCCapikey-0b8d6e44a1"
QUO_SIGNING_SECRET = base64.b64encode(b"fuzz-quo-legacy-signing-key-32by").decode()
QUO_WHSEC_KEY = base64.b64encode(b"fuzz-quo-standard-key-24b").decode()
QUO_WEBHOOK_SECRET = "whsec_" + QUO_WHSEC_KEY
QUO_API_KEY = "fuzzQUOapikey-5c1e0f9b77"
DIGA_TOKEN = "fuzzDIGAtoken-93d2a7c6e0"
DIGA_API_KEY = "fuzzDIGAapikey-1a4f8b2d3e"

#: every form in which a secret could leak: the values, and the Basic header's token
SECRET_TEXTS: tuple[str, ...] = (
    CC_PASSWORD,
    CC_API_KEY,
    base64.b64encode(f"{CC_USER}:{CC_PASSWORD}".encode()).decode(),
    QUO_SIGNING_SECRET,
    QUO_WEBHOOK_SECRET,
    QUO_WHSEC_KEY,
    QUO_API_KEY,
    DIGA_TOKEN,
    DIGA_API_KEY,
)

SOURCES: dict[str, dict[str, Any]] = {
    "cometchat": {
        "vendor": "cometchat",
        "app_id": "fuzzapp1",
        "region": "eu",
        "basic_auth_username": CC_USER,
        "basic_auth_password": CC_PASSWORD,
        "api_key": CC_API_KEY,
        "api_base_url": "http://127.0.0.1:9",
    },
    "openphone": {
        "vendor": "openphone",
        "signing_secret": QUO_SIGNING_SECRET,
        "webhook_secret": QUO_WEBHOOK_SECRET,
        "api_key": QUO_API_KEY,
        "api_base_url": "http://127.0.0.1:9",
    },
    "diga": {
        "vendor": "diga",
        "webhook_token": DIGA_TOKEN,
        "api_key": DIGA_API_KEY,
        "api_base_url": "http://127.0.0.1:9",
    },
}


def fuzz_config(redis_url: str, namespace: str, *, console_token: str | None = None) -> Config:
    raw: dict[str, Any] = {
        "redis": {"url": redis_url, "namespace": namespace},
        "ingress": {"max_body_bytes": MAX_BODY_BYTES, "timestamp_tolerance_s": 300},
        "sources": SOURCES,
        "sinks": [],
    }
    if console_token is not None:
        raw["console"] = {"token": console_token}
    return parse_config(raw, {}, origin="fuzz")


class LogLines(logging.Handler):
    """Every record, formatted as the JSON line production would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Answer:
    status_code: int
    headers: list[tuple[str, str]]
    text: str

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.text)


@dataclass
class FuzzIngress:
    """Drives the ingress app from synchronous (Hypothesis) tests on one event loop."""

    config: Config
    runner: asyncio.Runner
    client: httpx.AsyncClient
    redis: redis.Redis
    logs: LogLines
    requests_made: int = 0
    #: event keys the ingress answered "accepted" for, per source
    accepted: dict[str, set[str]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.config.redis.namespace

    def post(
        self,
        source: str,
        body: bytes,
        headers: list[tuple[str, str]],
        *,
        chunked: bool = False,
    ) -> Answer:
        """POST one delivery; fail if it takes longer than REQUEST_TIMEOUT_S."""
        self.requests_made += 1
        return self.runner.run(self._post(source, body, headers, chunked))

    async def _post(
        self, source: str, body: bytes, headers: list[tuple[str, str]], chunked: bool
    ) -> Answer:
        async def pieces() -> Any:
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        content: Any = pieces() if chunked else body
        # bytes, so that any latin-1 value goes out as it is (httpx would insist on ASCII)
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                response = await self.client.post(
                    f"/webhooks/{source}", content=content, headers=raw
                )
        except TimeoutError:
            raise AssertionError(f"POST /webhooks/{source} hung for {REQUEST_TIMEOUT_S}s") from None
        return Answer(response.status_code, list(response.headers.multi_items()), response.text)

    def queued(self) -> tuple[int, int]:
        """(ids in the enrich queue, messages in its hash)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(queue_key(self.namespace, ENRICH_QUEUE))
            pipe.hlen(messages_key(self.namespace, ENRICH_QUEUE))
            llen, hlen = pipe.execute()
        return int(llen), int(hlen)

    def dedupe_marks(self) -> set[str]:
        prefix = f"{self.namespace}:seen:"
        return {
            key.decode()[len(prefix) :]
            for key in self.redis.scan_iter(match=f"{prefix}*", count=1000)
        }


@pytest.fixture
def fuzz_ingress(redis_server_url: str, redis_namespace: str) -> Iterator[FuzzIngress]:
    config = fuzz_config(redis_server_url, redis_namespace)
    app = create_app(config)
    logs = LogLines()
    root = logging.getLogger()
    callhook_logger = logging.getLogger("callhook")
    saved_level = callhook_logger.level
    root.addHandler(logs)
    callhook_logger.setLevel(logging.DEBUG)
    sync_redis = redis.Redis.from_url(redis_server_url)
    runner = asyncio.Runner()
    lifespan = app.router.lifespan_context(app)
    try:
        runner.run(lifespan.__aenter__())
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
        try:
            yield FuzzIngress(config, runner, client, sync_redis, logs)
        finally:
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))
    finally:
        runner.close()
        sync_redis.close()
        root.removeHandler(logs)
        callhook_logger.setLevel(saved_level)
