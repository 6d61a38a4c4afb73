"""The vendor APIs answer 429 (Retry-After: 1) for a minute: the fleet-wide rate limit holds
at every moment (measured at the simulators, per second), and everything completes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callhook.vendors.kit import Faults
from tests.chaos.apps import max_per_second
from tests.chaos.sender import Sender
from tests.chaos.tally import record, verdict
from tests.chaos.world import running_world
from tests.servers import PostgresServer

RATE_PER_S = 10.0
RATE_LIMITED_S = 60.0
#: a request may land right on a one-second window's edge
TOLERANCE = 2


@pytest.mark.timeout(330)
def test_rate_limit_holds_through_a_minute_of_429(tmp_path: Path, postgres: PostgresServer) -> None:
    with running_world(tmp_path, postgres, rate_limit_per_s=RATE_PER_S) as world:
        world.start_ingress()
        world.start_workers("a", threads=8)
        world.start_workers("b", threads=8)
        sender = Sender(
            world.config, world.ingress_url, world.states, calls=100, calls_per_s=4.0
        ).start()
        time.sleep(3)
        for state in world.states.values():
            state.faults = Faults(rate_limited=10**9, retry_after=1.0)
        time.sleep(RATE_LIMITED_S)
        for state in world.states.values():
            state.faults = Faults()
        report = sender.join(timeout=30)
        settled_s = world.wait_settled(timeout=200)
        rates = {v: max_per_second(t) for v, t in world.simulators.times.items()}
        figures = {
            **verdict(world, report),
            "rate_limit_per_s": RATE_PER_S,
            "max_vendor_requests_per_s": rates,
            "vendor_requests": {v: len(t) for v, t in world.simulators.times.items()},
            "settled_after_429s_end_s": round(settled_s, 1),
        }
    record("vendor-429", figures)
    assert all(rate <= RATE_PER_S + TOLERANCE for rate in rates.values()), rates
    assert figures["problems"] == []
