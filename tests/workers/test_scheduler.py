"""The reconcile scheduler on the real Redis against the vendor API simulators: it alone
brings never-delivered calls into the sink, one run at a time across schedulers (the lock),
and an outage longer than the lookback is caught up from the recorded window."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from callhook.config import load_config
from callhook.queues import ENRICH_QUEUE, messages_key
from callhook.vendors.kit import Faults
from tests.servers import free_port, wait_until_answers
from tests.workers.harness import Pipeline
from tests.workers.test_reconcile import (
    FAST_PAGES,
    MANY,
    delivered,
    delivered_once,
    enqueued,
    reconcile_pipeline,
    seed,
    wait_for,
)
from workers.launch import start_scheduler
from workers.reconcile import Outcome, Reconciler, Summary, iso
from workers.scheduler import Schedule, Scheduler, interval_key, lock_key, window_key

HOUR = 3600.0


@pytest.fixture
def pipeline(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Pipeline]:
    with reconcile_pipeline(tmp_path, redis_server_url, redis_namespace) as running:
        yield running


@pytest.fixture
def idle_pipeline(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> Iterator[Pipeline]:
    with reconcile_pipeline(
        tmp_path, redis_server_url, redis_namespace, start_worker=False
    ) as running:
        yield running


@asynccontextmanager
async def scheduler(
    pipeline: Pipeline, schedule: Schedule, summaries: list[Summary] | None = None
) -> AsyncIterator[Scheduler]:
    async with Reconciler.open(
        pipeline.config, page_retry=FAST_PAGES, http_timeout=httpx.Timeout(2.0)
    ) as reconciler:
        yield Scheduler(
            reconciler, schedule, on_summary=None if summaries is None else summaries.append
        )


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    """The scheduler's loop as a task, stopped (its tick in progress finishing) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def until(condition: Callable[[], object], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def recorded_end(pipeline: Pipeline, source: str) -> datetime | None:
    raw = pipeline.redis.get(window_key(pipeline.config.redis.namespace, source))
    if raw is None:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)


def set_recorded_end(pipeline: Pipeline, source: str, moment: datetime) -> None:
    pipeline.redis.set(window_key(pipeline.config.redis.namespace, source), iso(moment))


def of(source: str, summaries: list[Summary] | None) -> list[Summary]:
    """The runs over `source` (a tick runs every configured source, in name order)."""
    return [summary for summary in summaries or [] if summary.source == source]


def fed_ids(pipeline: Pipeline) -> set[str]:
    """The call ids in the enrich messages waiting in the queue (no worker runs)."""
    raw = pipeline.redis.hvals(messages_key(pipeline.config.redis.namespace, ENRICH_QUEUE))
    return {orjson.loads(message)["kwargs"]["call_id"] for message in raw}


async def test_the_scheduler_alone_brings_missing_calls_to_the_sink_once(
    pipeline: Pipeline,
) -> None:
    calls = seed(pipeline, "cometchat", MANY, first=time.time() - 2 * HOUR)
    for call in calls[:10]:
        assert pipeline.post("cometchat", "call_ended", call).status_code == 200
    wait_for(pipeline, 10)
    summaries: list[Summary] = []
    schedule = Schedule(interval_s=0.2, lookback_s=3 * HOUR)
    async with scheduler(pipeline, schedule, summaries) as scheduling, running(scheduling):
        await until(lambda: len(delivered(pipeline)) >= MANY, 20, "every call in the sink")
        seen = len(of("cometchat", summaries))
        await until(lambda: len(of("cometchat", summaries)) >= seen + 2, 5, "two more runs")
    delivered_once(pipeline, calls)
    runs = of("cometchat", summaries)
    assert sum(run[Outcome.NEW] for run in runs) == MANY - 10
    assert runs[-1].seen == MANY
    assert runs[-1][Outcome.ALREADY_DELIVERED] == MANY
    end = recorded_end(pipeline, "cometchat")
    assert end is not None
    assert end == runs[-1].until


async def test_two_schedulers_at_once_take_turns(idle_pipeline: Pipeline) -> None:
    seed(idle_pipeline, "cometchat", MANY, first=time.time() - 2 * HOUR)
    idle_pipeline.state("cometchat").faults = Faults(latency_s=0.2)  # a run takes ≥ 0.6 s
    schedule = Schedule(interval_s=0.01, lookback_s=3 * HOUR, lock_ttl_s=0.4)
    runs: list[Summary] = []
    async with (
        scheduler(idle_pipeline, schedule, runs) as one,
        scheduler(idle_pipeline, schedule, runs) as two,
    ):
        # the same moment: one runs, the other finds the lock taken and skips its tick
        results = await asyncio.gather(one.tick(), two.tick())
        assert sorted(result is None for result in results) == [False, True]
        # and in their loops, with runs outlasting the lock's expiry (it is renewed)
        async with running(one), running(two):
            await until(lambda: len(of("cometchat", runs)) >= 4, 10, "four scheduled runs")
    spans = sorted((run.started_at, run.finished_at or 0.0) for run in runs)
    for (_, finished), (started, _) in itertools.pairwise(spans):
        assert finished <= started, "two runs overlapped"
    assert all(run.ok and run.seen == MANY for run in of("cometchat", runs))
    assert enqueued(idle_pipeline) == MANY
    assert idle_pipeline.redis.exists(lock_key(idle_pipeline.config.redis.namespace)) == 0


async def test_a_fleet_of_schedulers_reconciles_once_per_interval(
    idle_pipeline: Pipeline,
) -> None:
    """Two schedulers ticking out of phase (as on two hosts): every interval is reconciled
    by one of them, not by both."""
    seed(idle_pipeline, "cometchat", 5, first=time.time() - HOUR)
    interval = 0.4
    schedule = Schedule(interval_s=interval, lookback_s=3 * HOUR)
    runs: list[Summary] = []
    async with (
        scheduler(idle_pipeline, schedule, runs) as one,
        scheduler(idle_pipeline, schedule, runs) as two,
        running(one),
    ):
        await asyncio.sleep(interval / 2)  # the second host ticks half an interval later
        async with running(two):
            await until(lambda: len(of("cometchat", runs)) >= 8, 20, "eight scheduled runs")
    starts = sorted(run.started_at for run in of("cometchat", runs))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.8 * interval, gaps  # twice in one interval would be ~interval / 2
    assert max(gaps) < 2 * interval, gaps  # and no interval went without a run


async def test_a_run_that_loses_the_lock_stops_without_recording(idle_pipeline: Pipeline) -> None:
    seed(idle_pipeline, "cometchat", MANY, first=time.time() - 2 * HOUR)
    idle_pipeline.state("cometchat").faults = Faults(latency_s=0.3)
    schedule = Schedule(interval_s=60, lookback_s=3 * HOUR, lock_ttl_s=0.3)
    key = lock_key(idle_pipeline.config.redis.namespace)
    async with scheduler(idle_pipeline, schedule) as scheduling:
        tick = asyncio.create_task(scheduling.tick())
        await until(lambda: idle_pipeline.redis.exists(key), 5, "the lock")
        idle_pipeline.redis.set(key, "another-scheduler")  # ours expired; someone took it
        assert await asyncio.wait_for(tick, timeout=5) == []
    assert recorded_end(idle_pipeline, "cometchat") is None
    assert idle_pipeline.redis.get(key) == b"another-scheduler", "its lock was left alone"


async def test_stopping_cancels_the_run_in_progress_and_frees_the_lock(
    idle_pipeline: Pipeline,
) -> None:
    seed(idle_pipeline, "cometchat", MANY, first=time.time() - 2 * HOUR)
    idle_pipeline.state("cometchat").faults = Faults(latency_s=0.5)  # a run takes ≥ 1.5 s
    key = lock_key(idle_pipeline.config.redis.namespace)
    schedule = Schedule(interval_s=60, lookback_s=3 * HOUR)
    async with scheduler(idle_pipeline, schedule) as scheduling:
        stop = asyncio.Event()
        loop = asyncio.create_task(scheduling.run(stop))
        await until(lambda: idle_pipeline.redis.exists(key), 5, "the lock")
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(loop, timeout=5)
        assert time.monotonic() - started < 1.0, "the run was not left to finish"
    assert idle_pipeline.redis.exists(key) == 0
    assert recorded_end(idle_pipeline, "cometchat") is None


async def test_a_restart_after_an_outage_catches_up_from_the_recorded_window(
    idle_pipeline: Pipeline,
) -> None:
    now = time.time()
    before = seed(idle_pipeline, "cometchat", 5, first=now - 11 * HOUR)
    during = seed(idle_pipeline, "cometchat", 120, first=now - 9 * HOUR)
    recent = seed(idle_pipeline, "cometchat", 5, first=now - HOUR)
    outage_began = datetime.fromtimestamp(int(now - 10 * HOUR), UTC)
    set_recorded_end(idle_pipeline, "cometchat", outage_began)
    schedule = Schedule(interval_s=60, lookback_s=2 * HOUR, chunk_s=4 * HOUR)
    async with scheduler(idle_pipeline, schedule) as scheduling:
        summaries = of("cometchat", await scheduling.tick())
    # 10 h from the recorded end in chunks of at most 4 h, each recorded when done
    assert summaries[0].since == outage_began
    assert [(s.until - s.since) / timedelta(hours=1) for s in summaries][:2] == [4.0, 4.0]
    assert all(a.until == b.since for a, b in itertools.pairwise(summaries))
    assert fed_ids(idle_pipeline) == {c.call_id for c in during + recent}
    assert not fed_ids(idle_pipeline) & {c.call_id for c in before}
    assert recorded_end(idle_pipeline, "cometchat") == summaries[-1].until


async def test_a_first_start_looks_back_lookback_s_only(idle_pipeline: Pipeline) -> None:
    now = time.time()
    seed(idle_pipeline, "cometchat", 5, first=now - 9 * HOUR)
    recent = seed(idle_pipeline, "cometchat", 5, first=now - HOUR)
    schedule = Schedule(interval_s=60, lookback_s=2 * HOUR)
    async with scheduler(idle_pipeline, schedule) as scheduling:
        (summary,) = of("cometchat", await scheduling.tick())
    assert summary.until - summary.since == timedelta(hours=2)
    assert fed_ids(idle_pipeline) == {c.call_id for c in recent}


async def test_a_failing_page_leaves_the_window_unrecorded(idle_pipeline: Pipeline) -> None:
    now = time.time()
    calls = seed(idle_pipeline, "cometchat", 5, first=now - 5 * HOUR)
    last_good = datetime.fromtimestamp(int(now - 6 * HOUR), UTC)
    set_recorded_end(idle_pipeline, "cometchat", last_good)
    state = idle_pipeline.state("cometchat")
    state.faults = Faults(server_errors=1000)
    schedule = Schedule(interval_s=60, lookback_s=2 * HOUR)
    async with scheduler(idle_pipeline, schedule) as scheduling:
        (failed,) = of("cometchat", await scheduling.tick())
        assert failed.error is not None
        assert "HTTP 500" in failed.error
        assert recorded_end(idle_pipeline, "cometchat") == last_good

        state.faults = Faults()
        idle_pipeline.redis.delete(interval_key(idle_pipeline.config.redis.namespace))
        (caught_up,) = of("cometchat", await scheduling.tick())  # the next interval
    assert caught_up.since == last_good
    assert caught_up.ok
    assert fed_ids(idle_pipeline) == {c.call_id for c in calls}
    assert recorded_end(idle_pipeline, "cometchat") == caught_up.until


def reconciled(samples: dict[tuple[str, str], float], outcome: str) -> float:
    return samples.get(("cometchat", outcome), 0.0)


def reconcile_samples(text: str) -> dict[tuple[str, str], float]:
    """`callhook_reconcile_calls_total` by (source, outcome), from Prometheus text."""
    return {
        (sample.labels["source"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "callhook_reconcile_calls_total"
    }


def scheduler_config(pipeline: Pipeline) -> Path:
    path = Path(pipeline.config.origin)
    config = path.with_name("scheduler.toml")
    config.write_text(path.read_text() + "\n[reconcile]\ninterval_s = 1\nlookback_s = 7200\n")
    return config


def test_the_scheduler_command_reconciles_until_sigterm(idle_pipeline: Pipeline) -> None:
    calls = seed(idle_pipeline, "cometchat", 20, first=time.time() - HOUR)
    config = scheduler_config(idle_pipeline)
    metrics_port = free_port()
    command = [sys.executable, "-m", "callhook", "scheduler", "--config", str(config)]
    process = subprocess.Popen(
        [*command, "--metrics-port", str(metrics_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        while fed_ids(idle_pipeline) != {c.call_id for c in calls}:
            assert time.monotonic() < deadline, "the scheduler did not feed the calls"
            assert process.poll() is None, process.communicate()[0].decode()
            time.sleep(0.05)
        wait_until_answers("127.0.0.1", metrics_port)
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "reconcile scheduler: every 1s over the last 7200s" in output
    assert recorded_end(idle_pipeline, "cometchat") is not None
    samples = reconcile_samples(scraped)
    assert reconciled(samples, "seen") >= 20, scraped
    assert reconciled(samples, "new") == 20, scraped


def test_under_up_the_scheduler_writes_its_metrics_with_the_workers(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    """`callhook up` starts the scheduler as here: its samples go to the workers' metrics
    directory, which up serves merged."""
    calls = seed(idle_pipeline, "cometchat", 5, first=time.time() - HOUR)
    config = load_config(scheduler_config(idle_pipeline))
    directory = tmp_path / "metrics"
    directory.mkdir()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    process = start_scheduler(config, metrics_dir=str(directory))
    try:
        deadline = time.monotonic() + 20
        while fed_ids(idle_pipeline) != {c.call_id for c in calls}:
            assert time.monotonic() < deadline, "the scheduler did not feed the calls"
            assert process.poll() is None
            time.sleep(0.05)
        samples = reconcile_samples(generate_latest(registry).decode())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert reconciled(samples, "new") == 5, samples
