"""Every delivery sent 3x concurrently by the vendor, and every piece of work then run 3x
(as redeliveries would) by two worker groups racing: one row, object, message and request
per identity."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from callhook.queues import ENRICH_ACTOR, ENRICH_QUEUE, encode_message, messages_key, queue_key
from tests.chaos.sender import Sender
from tests.chaos.tally import record, verdict
from tests.chaos.world import NAMESPACE, World, running_world
from tests.servers import PostgresServer

COPIES = 3


def triple_enrich_work(world: World) -> int:
    """Two more copies (new message ids, same work) of every queued enrich message."""
    queued = world.redis.hgetall(messages_key(NAMESPACE, ENRICH_QUEUE))
    pipe = world.redis.pipeline(transaction=False)
    for data in queued.values():
        kwargs = orjson.loads(data)["kwargs"]
        for _ in range(COPIES - 1):
            copy = encode_message(ENRICH_QUEUE, ENRICH_ACTOR, kwargs)
            pipe.hset(messages_key(NAMESPACE, ENRICH_QUEUE), copy.redis_message_id, copy.data)
            pipe.rpush(queue_key(NAMESPACE, ENRICH_QUEUE), copy.redis_message_id)
    pipe.execute()
    return len(queued)


@pytest.mark.timeout(200)
def test_every_delivery_three_times_concurrently(tmp_path: Path, postgres: PostgresServer) -> None:
    with running_world(tmp_path, postgres) as world:
        world.start_ingress()
        sender = Sender(
            world.config, world.ingress_url, world.states, calls=120, calls_per_s=60, copies=COPIES
        )
        report = sender.start().join(timeout=120)
        enrich_messages = triple_enrich_work(world)
        world.start_workers("a", threads=8)
        world.start_workers("b", threads=8)
        settled_s = world.wait_settled(timeout=150)
        figures = {
            **verdict(world, report, distinct_requests=False),
            "posts": len(report.sent) * COPIES,
            "enrich_messages_before_tripling": enrich_messages,
            "settled_s": round(settled_s, 1),
        }
    record("triple-delivery", figures)
    assert figures["problems"] == []
    # the ingress took each delivery once and called the other two copies duplicates
    assert report.answers["accepted"] == len(report.sent)
    assert report.answers["duplicate"] == (COPIES - 1) * len(report.sent)
