"""Once: a send runs once per identity across retries, replays and racing workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from callhook.errors import RetryableError
from callhook.sinks.once import KEEP_S, Once
from tests.servers import RedisServer, free_port


class Sender:
    """Counts sends; optionally holds each one until `release` is set."""

    def __init__(self, *, hold: asyncio.Event | None = None, fail: bool = False) -> None:
        self.sent = 0
        self.started = asyncio.Event()
        self.hold = hold
        self.fail = fail

    async def __call__(self) -> None:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise ConnectionError("the remote went away")
        self.sent += 1


def once(
    client: redis.asyncio.Redis, namespace: str, *, lock_s: float = 5.0, wait_s: float = 2.0
) -> Once:
    return Once(client, f"{namespace}:sink:test", lock_s=lock_s, wait_s=wait_s, target="test sink")


async def test_sends_once_then_skips(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    guard, send = once(redis_async, redis_namespace), Sender()

    assert await guard.run("quo:AC1:call.completed", send) is True
    assert await guard.run("quo:AC1:call.completed", send) is False
    assert await guard.run("quo:AC1:call.missed", send) is True

    assert send.sent == 2
    ttl = await redis_async.ttl(guard.sent_key("quo:AC1:call.completed"))
    assert KEEP_S - 60 < ttl <= KEEP_S
    assert KEEP_S >= 30 * 24 * 3600
    assert not await redis_async.exists(guard.lock_key("quo:AC1:call.completed"))


async def test_racing_workers_send_once(
    redis_server_url: str, redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    other_worker = redis.asyncio.Redis.from_url(redis_server_url)
    try:
        release = asyncio.Event()
        send = Sender(hold=release)
        first = asyncio.create_task(once(redis_async, redis_namespace).run("id", send))
        await send.started.wait()
        second = asyncio.create_task(once(other_worker, redis_namespace).run("id", send))
        await asyncio.sleep(0.05)  # the second worker is now waiting on the lock
        release.set()
        results = await asyncio.gather(first, second)
    finally:
        await other_worker.aclose()

    assert sorted(results) == [False, True]
    assert send.sent == 1


async def test_failed_send_leaves_no_mark(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    guard = once(redis_async, redis_namespace)

    with pytest.raises(ConnectionError):
        await guard.run("id", Sender(fail=True))
    assert not await redis_async.exists(guard.sent_key("id"), guard.lock_key("id"))

    retry = Sender()
    assert await guard.run("id", retry) is True
    assert retry.sent == 1


async def test_cancelled_send_releases_the_lock(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    guard = once(redis_async, redis_namespace)
    stuck = Sender(hold=asyncio.Event())
    task = asyncio.create_task(guard.run("id", stuck))
    await stuck.started.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not await redis_async.exists(guard.sent_key("id"), guard.lock_key("id"))


async def test_lock_held_too_long_is_retryable(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    guard = once(redis_async, redis_namespace, wait_s=0.1)
    await redis_async.set(guard.lock_key("id"), "another-worker", px=5000)
    send = Sender()

    with pytest.raises(RetryableError) as raised:
        await guard.run("id", send)

    assert raised.value.retry_after is not None
    assert 4.0 < raised.value.retry_after <= 5.0
    assert send.sent == 0
    assert await redis_async.get(guard.lock_key("id")) == b"another-worker"


async def test_lock_of_a_killed_worker_expires(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    guard = once(redis_async, redis_namespace, wait_s=2.0)
    await redis_async.set(guard.lock_key("id"), "killed-worker", px=150)
    send = Sender()

    assert await guard.run("id", send) is True
    assert send.sent == 1


async def test_late_release_keeps_the_next_holders_lock(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> None:
    guard = once(redis_async, redis_namespace, lock_s=0.05)
    release = asyncio.Event()
    slow = Sender(hold=release)
    task = asyncio.create_task(guard.run("id", slow))
    await slow.started.wait()
    await asyncio.sleep(0.1)  # the 50 ms lock expires while the send is still running
    assert not await redis_async.exists(guard.lock_key("id"))
    await redis_async.set(guard.lock_key("id"), "next-holder", px=5000)

    release.set()
    await task

    assert await redis_async.get(guard.lock_key("id")) == b"next-holder"


async def test_redis_down_is_retryable(redis_namespace: str) -> None:
    unreachable = redis.asyncio.Redis(
        host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0)
    )
    send = Sender()
    try:
        with pytest.raises(RetryableError, match="Redis unavailable"):
            await once(unreachable, redis_namespace).run("id", send)
    finally:
        await unreachable.aclose()
    assert send.sent == 0


async def test_redis_lost_between_send_and_mark_delays_the_mark_and_never_resends(
    tmp_path: Path, redis_namespace: str
) -> None:
    server = RedisServer(port=free_port(), directory=tmp_path, appendonly=True)
    server.start()
    client = redis.asyncio.Redis.from_url(server.url, socket_connect_timeout=0.2)
    guard = once(client, redis_namespace)
    sent = 0

    async def send_then_lose_redis() -> None:
        nonlocal sent
        sent += 1  # the remote accepted; now Redis goes away before the mark
        await asyncio.to_thread(server.stop)

    async def bring_redis_back() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)

    try:
        comeback = asyncio.create_task(bring_redis_back())
        # the attempt's own timeout (as the deliver actor's) ends it while Redis is away
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await guard.run("quo:AC1:call.completed", send_then_lose_redis)
        await comeback
        await asyncio.sleep(1.5)  # Redis is back; the mark lands meanwhile
        assert await guard.run("quo:AC1:call.completed", send_then_lose_redis) is False
        assert sent == 1
    finally:
        await client.aclose()
        server.stop()
