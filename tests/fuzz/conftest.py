"""The fuzzed ingress: the real app (lifespan and all) on httpx's ASGI transport, the real
Redis under a per-test namespace, every log line captured, every request counted.

Every registered vendor has a source named after it, configured from its kit with fresh
random secrets, so that a leak into a response or a log line is found by plain substring
search (`SECRET_TEXTS`).
"""

from __future__ import annotations

import asyncio
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
from callhook.vendors import VENDORS
from callhook.vendors.base import MIN_SECRET_BYTES
from service.app import create_app

MAX_BODY_BYTES = 65536
#: seconds one request may take before it counts as a hang
REQUEST_TIMEOUT_S = 5.0

#: an API base URL where nothing answers (the ingress never calls a vendor API)
NOWHERE = "http://127.0.0.1:9"

#: one source per registered vendor, named after it, with fresh secrets from its kit (made
#: once per test session: random values a leak search can find by substring)
SOURCES: dict[str, dict[str, Any]] = {
    name: vendor.kit.example_source(vendor.kit.new_secrets(), NOWHERE)
    for name, vendor in VENDORS.items()
}


def _leak_forms(name: str) -> tuple[str, ...]:
    vendor = VENDORS[name]
    return vendor.kit.leak_forms(vendor.config_model.model_validate(SOURCES[name]))


#: every form in which a secret could leak: each secret's value (a `whsec_` secret also
#: without its prefix) and the credentials of the Basic / Bearer headers a delivery carries
SECRET_TEXTS: tuple[str, ...] = tuple(
    dict.fromkeys(form for name in SOURCES for form in _leak_forms(name))
)
#: forms too short to search for: they would match innocent text (a kit's `new_secrets`
#: must make every secret at least MIN_SECRET_BYTES long, as real ones have to be)
_TOO_SHORT = [form for form in SECRET_TEXTS if len(form) < MIN_SECRET_BYTES]
assert not _TOO_SHORT, f"secret forms too short for a leak search: {_TOO_SHORT}"


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
