"""The broker gives back delayed messages a live worker held when Redis went away."""

from __future__ import annotations

from typing import cast

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


def test_a_message_in_a_live_workers_ack_set_that_it_does_not_hold_is_given_back(
    redis_server_url: str,
    redis_namespace: str,
    redis_sync: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a failover lost a live worker's acknowledgement, the new primary still lists
    the message in that worker's ack set: it runs again, without a restart. A message the
    worker does hold stays with it however long it takes."""
    broker = CallhookBroker(
        client=redis.Redis.from_url(redis_server_url), namespace=redis_namespace
    )
    queue = f"{redis_namespace}:{DELIVER_QUEUE}"
    acks = f"{redis_namespace}:__acks__.{broker.broker_id}.{DELIVER_QUEUE}"
    try:
        broker.declare_queue(DELIVER_QUEUE)
        for _ in range(2):
            broker.enqueue(
                dramatiq.Message(
                    queue_name=DELIVER_QUEUE,
                    actor_name=DELIVER_ACTOR,
                    args=(),
                    kwargs={},
                    options={},
                )
            )
        fetched = broker.do_fetch(DELIVER_QUEUE, 2)
        done, working = (dramatiq.Message.decode(m) for m in fetched if m is not None)
        done_id = done.options["redis_message_id"]
        data = redis_sync.hget(f"{queue}.msgs", done_id)
        assert data is not None
        broker.do_ack(DELIVER_QUEUE, done_id)
        # the failover: the new primary never received that acknowledgement
        redis_sync.sadd(acks, done_id)
        redis_sync.hset(f"{queue}.msgs", done_id, data)

        broker.housekeeping()  # first seen: it may be a fetch still being recorded
        assert redis_sync.llen(queue) == 0
        broker.housekeeping()
        assert cast(list[bytes], redis_sync.lrange(queue, 0, -1)) == [done_id.encode()]
        working_id = working.options["redis_message_id"]
        assert cast(set[bytes], redis_sync.smembers(acks)) == {working_id.encode()}
        assert "gave back 1 message(s) of callhook.deliver" in caplog.text

        for _ in range(3):  # the one being worked on is never taken away
            broker.housekeeping()
        assert redis_sync.llen(queue) == 1
        assert redis_sync.scard(acks) == 1
    finally:
        broker.close()
