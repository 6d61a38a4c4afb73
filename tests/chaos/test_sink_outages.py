"""PostgreSQL stopped for 60 s, S3 cut off, the Slack receiver answering 500/429: those
sinks catch up after recovery, the http sink is not held back meanwhile, and nothing is
dead-lettered inside the retry budget (about 100 s here, world.RETRIES)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.sender import Sender
from tests.chaos.tally import expected, record, verdict
from tests.chaos.world import World, running_world
from tests.servers import PostgresServer

OUTAGE_S = 60.0


def http_caught_up(world: World, sender: Sender, until: float) -> float | None:
    """Once the sender is done: seconds until the http receiver holds every accepted
    event, or None if it did not before `until` (monotonic)."""
    while time.monotonic() < until:
        if sender.done():
            want = expected(sender.report.accepted).requests
            if set(want) <= set(observed_requests(world)):
                return time.monotonic()
        time.sleep(0.5)
    return None


def observed_requests(world: World) -> set[str]:
    return {a.headers["webhook-id"] for a in list(world.receiver.delivered)}


@pytest.mark.timeout(330)
def test_sinks_catch_up_after_outages(tmp_path: Path, postgres: PostgresServer) -> None:
    try:
        with running_world(tmp_path, postgres) as world:
            world.start_ingress()
            world.start_workers("a", threads=8)
            sender = Sender(
                world.config, world.ingress_url, world.states, calls=100, calls_per_s=4.0
            ).start()
            time.sleep(3)
            postgres.stop()
            world.s3_partition.cut()
            world.slack_outage.active = True
            down_at = time.monotonic()
            caught_up = http_caught_up(world, sender, until=down_at + OUTAGE_S)
            http_lag = None if caught_up is None else round(caught_up - sender.finished_at, 1)
            time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
            postgres.start()
            world.s3_partition.heal()
            world.slack_outage.active = False
            report = sender.join(timeout=30)
            settled_s = world.wait_settled(timeout=150)
            figures = {
                **verdict(world, report),
                "outage_s": OUTAGE_S,
                "slack_outage_answers": {str(k): n for k, n in world.slack_outage.answered.items()},
                "http_complete_after_last_post_s": http_lag,
                "settled_after_recovery_s": round(settled_s, 1),
            }
    finally:
        if postgres.process is None:
            postgres.start()
    record("sink-outages", figures)
    assert http_lag is not None, "the http sink did not get everything while the others were down"
    assert figures["problems"] == []
