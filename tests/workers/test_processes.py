"""Real worker processes (`callhook worker`) against one Redis: a SIGKILLed worker's
messages are redelivered and completed; two worker groups share the work and the
vendor's fleet-wide rate limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from callhook.vendors.base import Faults
from tests.workers.harness import Pipeline, running_pipeline

pytestmark = pytest.mark.slow


@contextmanager
def worker_process(
    config_path: Path, log: Path, threads: int = 4
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-m",
        "callhook",
        "worker",
        "--config",
        str(config_path),
        "--processes",
        "1",
        "--threads",
        str(threads),
        "--metrics-port",
        "0",
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def idle_pipeline(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path, redis_server_url, redis_namespace, start_worker=False) as p:
        yield p


def wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sigkilled_worker_messages_are_redelivered(idle_pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline = idle_pipeline
    state = pipeline.state("cometchat")
    state.faults = Faults(latency_s=3.0)  # every Get Call hangs: the work is in flight
    calls = [pipeline.new_call("cometchat") for _ in range(4)]
    with worker_process(Path(pipeline.config.origin), tmp_path / "a.log") as first:
        for call in calls:
            assert pipeline.post("cometchat", "call_ended", call).status_code == 200
        wait(lambda: len(state.requests) >= 4, 20, "the worker to fetch every message")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert pipeline.delivered() == []
    state.faults = Faults()
    killed_at = time.monotonic()
    with worker_process(Path(pipeline.config.origin), tmp_path / "b.log"):
        lines = pipeline.wait_for(4, timeout=90)
        redelivered_after = time.monotonic() - killed_at
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping
    assert sorted(line["record"]["call_id"] for line in lines) == sorted(c.call_id for c in calls)
    assert redelivered_after < 60
    assert stopped_in < 35  # SIGTERM: graceful, bounded by the 30 s shutdown timeout
    print(
        f"redelivered {len(lines)} messages {redelivered_after:.1f}s after SIGKILL; "
        f"SIGTERM stop took {stopped_in:.1f}s"
    )


def test_two_worker_processes_share_work_and_the_rate_limit(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = idle_pipeline
    state = pipeline.state("cometchat")
    rate = pipeline.config.sources["cometchat"].rate_limit_per_s
    calls = [pipeline.new_call("cometchat") for _ in range(30)]
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    with (
        worker_process(Path(pipeline.config.origin), logs[0]),
        worker_process(Path(pipeline.config.origin), logs[1]),
    ):
        time.sleep(1.0)  # both consuming before the burst
        started = time.monotonic()
        for call in calls:
            assert pipeline.post("cometchat", "call_ended", call).status_code == 200
        pipeline.wait_for(30, timeout=60)
        elapsed = time.monotonic() - started
    requests = len(state.requests)
    # every Get Call (and transcript page) went through one shared limit
    assert requests / elapsed <= rate * 1.15, f"{requests} requests in {elapsed:.1f}s"
    enriched = [log.read_text().count('"msg":"enriched') for log in logs]
    assert all(count > 0 for count in enriched), enriched
    assert sum(enriched) == 30
    print(f"{requests} vendor requests in {elapsed:.1f}s (limit {rate}/s); split {enriched}")
