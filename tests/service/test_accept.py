"""The accept step against the real Redis: atomic dedupe + enqueue, consumed by a real
Dramatiq worker, and a clean refusal when Redis does not answer."""

from __future__ import annotations

import threading

import dramatiq
import pytest
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker

from callhook.errors import AcceptUnavailable
from callhook.events import Event, EventType
from callhook.queues import ENRICH_ACTOR, ENRICH_QUEUE, dedupe_key, messages_key, queue_key
from service.accept import Acceptor, Outcome
from tests.servers import free_port

EVENT = Event(
    event_key="evt:EV1",
    vendor_type="call.completed",
    type=EventType.COMPLETED,
    call_id="AC1",
    payload={"id": "EV1", "data": {"object": {"id": "AC1"}}},
)


def acceptor(client: redis.asyncio.Redis, namespace: str, timeout_s: float = 2.0) -> Acceptor:
    return Acceptor(client, namespace=namespace, dedupe_ttl_s=72 * 3600, timeout_s=timeout_s)


async def test_accept_writes_mark_and_message_once(
    redis_async: redis.asyncio.Redis, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    accept = acceptor(redis_async, redis_namespace)
    assert await accept.accept("quo", EVENT) is Outcome.ACCEPTED
    assert await accept.accept("quo", EVENT) is Outcome.DUPLICATE
    assert redis_sync.llen(queue_key(redis_namespace, ENRICH_QUEUE)) == 1
    assert redis_sync.hlen(messages_key(redis_namespace, ENRICH_QUEUE)) == 1
    ttl = redis_sync.ttl(dedupe_key(redis_namespace, "quo", "evt:EV1"))
    assert 72 * 3600 - 5 < ttl <= 72 * 3600
    # the same key from another source is another event
    assert await accept.accept("other", EVENT) is Outcome.ACCEPTED


async def test_concurrent_duplicates_enqueue_one(
    redis_async: redis.asyncio.Redis, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    import asyncio

    accept = acceptor(redis_async, redis_namespace)
    outcomes = await asyncio.gather(*(accept.accept("quo", EVENT) for _ in range(20)))
    assert outcomes.count(Outcome.ACCEPTED) == 1
    assert redis_sync.llen(queue_key(redis_namespace, ENRICH_QUEUE)) == 1


async def test_redis_down_is_unavailable_and_writes_nothing() -> None:
    closed = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=0.2)
    with pytest.raises(AcceptUnavailable):
        await acceptor(closed, "nowhere", timeout_s=0.5).accept("quo", EVENT)
    await closed.aclose()


def test_accepted_message_is_consumed_by_a_real_dramatiq_worker(
    redis_server_url: str, redis_namespace: str
) -> None:
    import asyncio

    async def accept_one() -> None:
        client = redis.asyncio.Redis.from_url(redis_server_url)
        await acceptor(client, redis_namespace).accept("quo", EVENT)
        await client.aclose()

    asyncio.run(accept_one())

    broker = RedisBroker(url=redis_server_url, namespace=redis_namespace)
    received: list[dict[str, object]] = []
    done = threading.Event()

    def enrich(**kwargs: object) -> None:
        received.append(kwargs)
        done.set()

    dramatiq.Actor(
        enrich,
        broker=broker,
        actor_name=ENRICH_ACTOR,
        queue_name=ENRICH_QUEUE,
        priority=0,
        options={},
    )
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        assert done.wait(10)
    finally:
        worker.stop()
        broker.close()
    (kwargs,) = received
    assert kwargs["source"] == "quo"
    assert kwargs["event_key"] == "evt:EV1"
    assert kwargs["type"] == "call.completed"
    assert kwargs["call_id"] == "AC1"
    assert kwargs["payload"] == EVENT.payload
