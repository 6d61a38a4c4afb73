"""SIGTERM of the ingress and of every worker group under load, each started again: they
stop gracefully (in-flight work finished or given back) and nothing is lost; the sender
retries what got no answer or a 503."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.chaos.sender import Sender
from tests.chaos.tally import record, verdict
from tests.chaos.world import running_world
from tests.servers import PostgresServer

#: Dramatiq's --worker-shutdown-timeout is 30 s; Uvicorn's graceful stop is quicker
STOP_LIMIT_S = 40.0


@pytest.mark.timeout(330)
def test_sigterm_under_load_loses_nothing(tmp_path: Path, postgres: PostgresServer) -> None:
    with running_world(tmp_path, postgres) as world:
        world.start_ingress()
        world.start_workers("a", threads=8)
        world.start_workers("b", threads=8)
        sender = Sender(
            world.config, world.ingress_url, world.states, calls=200, calls_per_s=6.0
        ).start()
        time.sleep(6)
        assert world.ingress is not None
        ingress_stop_s = world.signal_group(world.ingress, signal.SIGTERM)
        world.start_ingress()
        time.sleep(6)
        worker_stop_s = {}
        for name in ("a", "b"):
            worker_stop_s[name] = round(world.signal_group(world.workers[name], signal.SIGTERM), 1)
            world.start_workers(name, threads=8)
        report = sender.join(timeout=120)
        settled_s = world.wait_settled(timeout=150)
        figures = {
            **verdict(world, report),
            "ingress_stop_s": round(ingress_stop_s, 1),
            "worker_stop_s": worker_stop_s,
            "settled_after_last_post_s": round(settled_s, 1),
        }
    record("sigterm", figures)
    assert ingress_stop_s < STOP_LIMIT_S
    assert all(s < STOP_LIMIT_S for s in worker_stop_s.values())
    assert figures["problems"] == []
