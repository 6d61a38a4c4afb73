"""The broker gives back delayed messages a live worker held when Redis went away."""

from __future__ import annotations

import dramatiq
import pytest
import redis
import redis.exceptions
from dramatiq.errors import BrokerConnectionError

from callhook.queues import DELIVER_ACTOR, DELIVER_QUEUE
from workers.broker import CallhookBroker, RedisUnavailable


def test_a_restarting_delay_queue_consumer_gets_back_what_its_worker_held(
    redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    broker = CallhookBroker(
        client=redis.Redis.from_url(redis_server_url), namespace=redis_namespace
    )
    try:
        broker.declare_queue(DELIVER_QUEUE)
        message: dramatiq.Message[object] = dramatiq.Message(
            queue_name=DELIVER_QUEUE, actor_name=DELIVER_ACTOR, args=(), kwargs={}, options={}
        )
        broker.enqueue(message, delay=60_000)
        delay_queue = f"{DELIVER_QUEUE}.DQ"
        # what a consumer thread's fetch does: the message moves to this worker's ack set
        fetched = broker.do_fetch(delay_queue, 10)
        assert len(fetched) == 1
        assert redis_sync.llen(f"{redis_namespace}:{delay_queue}") == 0
        # the thread lost its in-memory copy to a connection error and starts a consumer again
        broker.consume(delay_queue)
        assert redis_sync.llen(f"{redis_namespace}:{delay_queue}") == 1
        acks = f"{redis_namespace}:__acks__.{broker.broker_id}.{delay_queue}"
        assert redis_sync.scard(acks) == 0
    finally:
        broker.close()


def test_an_enqueue_without_redis_is_a_connection_error_to_both_libraries() -> None:
    broker = CallhookBroker(
        client=redis.Redis.from_url("redis://127.0.0.1:1/0"), namespace="nowhere"
    )
    message: dramatiq.Message[object] = dramatiq.Message(
        queue_name=DELIVER_QUEUE, actor_name=DELIVER_ACTOR, args=(), kwargs={}, options={}
    )
    try:
        with pytest.raises(RedisUnavailable) as caught:
            broker.enqueue(message)
        assert isinstance(caught.value, BrokerConnectionError)
        assert isinstance(caught.value, redis.exceptions.ConnectionError)
    finally:
        broker.close()
