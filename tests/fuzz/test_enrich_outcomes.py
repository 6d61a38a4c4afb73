"""The real enrich actor (with its safety net) against a vendor API answering garbage on a
loopback port: each run must end in a scheduled retry or a dead letter whose reason says
what was wrong (never an "unexpected" crash), with the real Redis and Dramatiq broker."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from callhook.config import parse_config
from callhook.events import EventType
from callhook.http import MAX_RESPONSE_BYTES
from callhook.queues import ENRICH_QUEUE, ENRICH_RETRY_QUEUE, queue_key
from callhook.vendors import VENDORS
from tests.fuzz.conftest import SOURCES
from tests.fuzz.vendor_answers import AnswerBox, Canned, canned_app
from tests.servers import ServerThread
from tests.workers.harness import FAST
from workers import runtime as runtime_module
from workers.actors.enrich import enrich
from workers.main import build_broker, guarded

HTML = {"content-type": "text/html"}
JSON = {"content-type": "application/json"}
PAGE = b"<html><body>Service Unavailable</body></html>"

#: (case, answer, "retry" or the words the dead letter's reason must contain)
CASES: list[tuple[str, Canned, str]] = [
    ("html with 200", Canned(200, PAGE, HTML), "retry"),
    ("html with 502", Canned(502, PAGE, HTML), "retry"),
    ("truncated json", Canned(200, b'{"data": {"id": "AC', JSON), "retry"),
    ("json array", Canned(200, b"[1, 2]", JSON), "retry"),
    ("empty body", Canned(200, b"", JSON), "retry"),
    ("bad gzip", Canned(200, b"\x01junk", {**JSON, "content-encoding": "gzip"}), "retry"),
    ("endless html 500", Canned(500, b"<p>" * 20000, HTML, endless=True), "retry"),
    ("html with 403", Canned(403, PAGE, HTML), "HTTP 403"),
    ("html with 401", Canned(401, PAGE, HTML), "HTTP 401"),
    ("huge body", Canned(200, b" " * (MAX_RESPONSE_BYTES + 1), JSON), "more than"),
    (
        "gzip bomb",
        Canned(
            200,
            gzip.compress(b" " * (MAX_RESPONSE_BYTES * 2)),
            {**JSON, "content-encoding": "gzip"},
        ),
        "more than",
    ),
    ("endless body", Canned(200, b" " * 65536, JSON, endless=True), "more than"),
]


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[AnswerBox, str]]:
    box = AnswerBox()
    with ServerThread(canned_app(box)) as server:
        yield box, server.url


def enrich_kwargs(config: Any, source: str) -> dict[str, Any]:
    """What ingress would have enqueued for a fresh, fetchable event of `source`: its
    vendor's completed call (enrich calls Get Call for it)."""
    vendor = VENDORS[source]
    now = time.time()
    call = vendor.kit.simulated_call(None, now=now)
    delivery = vendor.kit.simulate_delivery(
        config.sources[source], vendor.kit.completed_type, call, now=now
    )
    event = vendor.parse(delivery)
    assert event.type is EventType.COMPLETED
    assert event.fetchable
    return {
        "source": source,
        "event_key": event.event_key,
        "type": event.type.value,
        "vendor_type": event.vendor_type,
        "call_id": event.call_id,
        "fetchable": event.fetchable,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "payload": dict(event.payload),
    }


async def run_enrich(kwargs: dict[str, Any]) -> None:
    try:
        await guarded(ENRICH_QUEUE, enrich)(**kwargs)
    finally:
        await runtime_module.shutdown()


@pytest.mark.parametrize("source", sorted(VENDORS))
@pytest.mark.parametrize(("case", "canned", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_enrich_ends_in_a_retry_or_a_dead_letter_with_a_reason(
    api: tuple[AnswerBox, str],
    redis_server_url: str,
    redis_namespace: str,
    redis_sync: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    source: str,
    case: str,
    canned: Canned,
    outcome: str,
) -> None:
    box, url = api
    box.canned = canned
    raw = {
        "redis": {"url": redis_server_url, "namespace": redis_namespace},
        "sources": {source: {**SOURCES[source], "api_base_url": url}},
        "sinks": [],
    }
    config = parse_config(raw, {}, origin="fuzz")
    broker = build_broker(config, FAST)
    try:
        with caplog.at_level(logging.INFO):
            asyncio.run(run_enrich(enrich_kwargs(config, source)))
    finally:
        broker.close()
    namespace = redis_namespace
    retries = redis_sync.llen(queue_key(namespace, f"{ENRICH_RETRY_QUEUE}.DQ"))
    entries = redis_sync.hvals(f"{namespace}:dlq:{ENRICH_QUEUE}:entries")
    reasons = [orjson.loads(entry)["reason"] for entry in entries]
    assert "unexpected error" not in caplog.text, case
    if outcome == "retry":
        assert (retries, reasons) == (1, []), f"{case}: {reasons}"
    else:
        assert retries == 0, case
        (reason,) = reasons
        assert outcome in reason, reason
        assert not reason.startswith("unexpected"), reason
