"""A sink that cannot start yet (its store is down) is started once per retry wave, shared
by every delivery waiting for it, and never holds another sink's deliveries back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callhook.config import parse_config
from callhook.errors import RetryableError
from tests.servers import ServerThread
from workers.main import build_broker
from workers.runtime import Runtime

CONCURRENT_DELIVERIES = 10


class StrugglingStore:
    """An S3 endpoint that holds every request until `release` is set, then answers 503
    (200 once `healthy`)."""

    def __init__(self) -> None:
        self.requests = 0
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.healthy = False
        self.app = Starlette(
            routes=[Route("/{path:path}", self.answer, methods=["GET", "HEAD", "PUT"])]
        )

    async def answer(self, request: Request) -> Response:
        self.requests += 1
        self.arrived.set()
        await asyncio.to_thread(self.release.wait, 30)
        return Response(status_code=200 if self.healthy else 503)


@pytest.fixture
async def store_and_runtime(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[StrugglingStore, Runtime]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = StrugglingStore()
    with ServerThread(store.app) as server:
        raw = {
            "redis": {"url": redis_server_url, "namespace": redis_namespace},
            "sinks": [
                {
                    "name": "archive",
                    "type": "s3",
                    "bucket": "calls",
                    "endpoint_url": server.url,
                    "timeout_s": 10,
                },
                {"name": "records", "type": "file", "path": str(tmp_path / "records.jsonl")},
            ],
        }
        config = parse_config(raw, {}, origin="test")
        broker = build_broker(config)
        rt = Runtime.create(config, broker)
        try:
            yield store, rt
        finally:
            store.release.set()
            await rt.close()
            broker.close()


async def test_deliveries_waiting_for_a_struggling_sink_share_one_start(
    store_and_runtime: tuple[StrugglingStore, Runtime],
) -> None:
    store, rt = store_and_runtime
    waiting = [asyncio.create_task(rt.sink("archive")) for _ in range(CONCURRENT_DELIVERIES)]
    assert await asyncio.to_thread(store.arrived.wait, 10), "the archive's start never came"

    # the file sink starts while the archive's start is still held by its store
    records = await rt.sink("records")
    assert records.config.name == "records"
    assert not any(task.done() for task in waiting)

    store.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(outcome, RetryableError) for outcome in outcomes), outcomes
    one_start = store.requests  # HeadBucket, and the client's one quick retry of a 503

    # the next retry wave tries again, once
    with pytest.raises(RetryableError):
        await rt.sink("archive")
    assert store.requests == 2 * one_start

    # the store is back: the next delivery starts the sink, and the ones after it use it
    store.healthy = True
    archive = await rt.sink("archive")
    assert await rt.sink("archive") is archive
    assert store.requests == 2 * one_start + 1


async def test_closing_the_runtime_ends_a_start_its_store_holds(
    store_and_runtime: tuple[StrugglingStore, Runtime],
) -> None:
    """A worker shutting down while a sink's store hangs is not held until the start's
    budget runs out (here 30 s)."""
    store, rt = store_and_runtime
    waiting = asyncio.create_task(rt.sink("archive"))
    assert await asyncio.to_thread(store.arrived.wait, 10), "the archive's start never came"
    await asyncio.wait_for(rt.close(), timeout=10)
    with pytest.raises(asyncio.CancelledError):
        await waiting
