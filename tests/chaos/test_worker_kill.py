"""SIGKILL one worker group, then all of them, with work in flight; restart them. What the
killed processes held is redelivered (heartbeat 30 s + housekeeping 5 s) and completed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callhook.vendors.kit import Faults
from tests.chaos.sender import Sender
from tests.chaos.tally import record, verdict
from tests.chaos.world import World, running_world
from tests.servers import PostgresServer

REDELIVERY_LIMIT_S = 120.0


def wait_holding(world: World, broker_ids: set[str], timeout: float = 60) -> int:
    """Wait until these worker processes hold fetched, unacknowledged work; how much."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = world.held_by(broker_ids)
        if held:
            return held
        time.sleep(0.1)
    raise AssertionError("the workers to be killed never held any work")


def redelivered_after(world: World, broker_ids: set[str], killed_at: float) -> float:
    """Seconds from the kill until none of the dead processes' work is held any more."""
    while world.held_by(broker_ids):
        if time.monotonic() - killed_at > REDELIVERY_LIMIT_S:
            raise AssertionError(f"not redelivered within {REDELIVERY_LIMIT_S}s")
        time.sleep(0.2)
    return time.monotonic() - killed_at


@pytest.mark.timeout(330)
def test_sigkilled_workers_work_is_redelivered(tmp_path: Path, postgres: PostgresServer) -> None:
    with running_world(tmp_path, postgres) as world:
        for state in world.states.values():
            state.faults = Faults(latency_s=0.05)
        world.start_ingress()
        world.start_workers("a", threads=8)
        a_ids = world.wait_for_new_broker_ids(set(), 1)
        world.start_workers("b", threads=8)
        b_ids = world.wait_for_new_broker_ids(a_ids, 1)
        sender = Sender(
            world.config, world.ingress_url, world.states, calls=500, calls_per_s=12.0
        ).start()
        time.sleep(8)

        held_one = wait_holding(world, a_ids)
        killed_at = time.monotonic()
        world.kill_tree(world.workers["a"])
        world.start_workers("a", threads=8)
        one_s = redelivered_after(world, a_ids, killed_at)
        a2_ids = world.wait_for_new_broker_ids(a_ids | b_ids, 1)

        everyone = a2_ids | b_ids
        held_all = wait_holding(world, everyone)
        killed_at = time.monotonic()
        for name in ("a", "b"):
            world.kill_tree(world.workers[name])
        world.start_workers("a", threads=8)
        world.start_workers("b", threads=8)
        all_s = redelivered_after(world, everyone, killed_at)

        report = sender.join(timeout=150)
        settled_s = world.wait_settled(timeout=150)
        figures = {
            # a killed process can have sent to Slack without writing the sent mark yet
            **verdict(world, report, slack_resends_allowed=held_one + held_all),
            "held_when_one_killed": held_one,
            "redelivery_one_killed_s": round(one_s, 1),
            "held_when_all_killed": held_all,
            "redelivery_all_killed_s": round(all_s, 1),
            "settled_after_last_post_s": round(settled_s, 1),
        }
    record("worker-sigkill", figures)
    assert figures["problems"] == []
