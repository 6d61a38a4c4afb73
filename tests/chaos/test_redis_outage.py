"""Redis killed for 30 s under load and started again from its AOF, while deliveries and
enrichments wait in the delay queues: the ingress answers 503 (never a 200 it did not
store), the sender retries, and in the end everything sent is delivered once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callhook.vendors.kit import Faults
from tests.chaos.sender import Sender
from tests.chaos.tally import record, verdict
from tests.chaos.world import running_world
from tests.servers import PostgresServer

OUTAGE_S = 30.0


@pytest.mark.timeout(330)
def test_redis_outage_loses_nothing(tmp_path: Path, postgres: PostgresServer) -> None:
    with running_world(tmp_path, postgres) as world:
        for state in world.states.values():
            # each call's first Get Call is a 404 "not yet": its enrich waits to be retried
            state.faults = Faults(not_found_first=1)
        # the http sink's receiver struggles: its deliveries wait to be retried
        world.http_outage.active = True
        world.start_ingress()
        world.start_workers("a", threads=8)
        sender = Sender(
            world.config, world.ingress_url, world.states, calls=200, calls_per_s=4.0
        ).start()
        time.sleep(12)
        delayed = {q: n for q, n in world.queued().items() if q.endswith(".DQ")}
        world.redis_down()
        time.sleep(OUTAGE_S)
        world.redis_up()
        time.sleep(3)
        world.http_outage.active = False
        report = sender.join(timeout=150)
        settled_s = world.wait_settled(timeout=150)
        figures = {
            **verdict(world, report),
            "outage_s": OUTAGE_S,
            "delayed_at_outage": delayed,
            "settled_after_last_post_s": round(settled_s, 1),
        }
    record("redis-outage", figures)
    assert sum(delayed.values()) > 0, "nothing was waiting for a retry when Redis went away"
    assert figures["answered_503"] > 0, "the outage was not seen by the sender"
    assert figures["problems"] == []
