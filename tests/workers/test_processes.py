"""Real worker processes (`callhook worker`) against one Redis: a SIGKILLed worker's
messages are redelivered and completed; two worker groups share the work and the
vendor's fleet-wide rate limit; the group's merged metrics are scraped over HTTP; sinks are
started as a worker boots (a misconfigured one stops it, an unreachable one does not); a
SIGTERM with Redis gone ends the worker at its shutdown timeout, its work left unacked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from callhook.queues import ENRICH_QUEUE, queue_key
from callhook.vendors.kit import Faults
from tests.servers import RedisServer, free_port, stop_group, wait_until_answers
from tests.sinks._s3_support import moto_s3
from tests.workers.harness import Pipeline, running_pipeline, toml_text
from workers.shutdown import SHUTDOWN_TIMEOUT_EXIT

pytestmark = pytest.mark.slow


@contextmanager
def worker_process(
    config_path: Path, log: Path, threads: int = 4, metrics_port: int = 0
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
        str(metrics_port),
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop_group(process)


#: `[workers] heartbeat_timeout_s` of the tests that wait for a dead worker's messages:
#: they come back within it and one beat, not the default's 35 s. Only there: elsewhere a
#: worker starved of CPU that long on a loaded machine would be taken for dead.
HEARTBEAT_TIMEOUT_S = 6.0


@pytest.fixture
def idle_pipeline(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path, redis_server_url, redis_namespace, start_worker=False) as p:
        yield p


@pytest.fixture
def quick_heartbeat_pipeline(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> Iterator[Pipeline]:
    with running_pipeline(
        tmp_path,
        redis_server_url,
        redis_namespace,
        start_worker=False,
        sections={"workers": {"heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S}},
    ) as p:
        yield p


def wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sigkilled_worker_messages_are_redelivered(
    quick_heartbeat_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = quick_heartbeat_pipeline
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
    # back once the killed worker's heartbeat expired (the setting's, not the default's
    # 30-35 s), with a booting worker group and a loaded machine's slack
    assert redelivered_after < HEARTBEAT_TIMEOUT_S + 20
    assert stopped_in < 35  # SIGTERM: graceful, bounded by the 30 s shutdown timeout
    print(
        f"redelivered {len(lines)} messages {redelivered_after:.1f}s after SIGKILL; "
        f"SIGTERM stop took {stopped_in:.1f}s"
    )


def test_a_live_worker_runs_work_its_ack_set_held_unknown_to_it(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    """After a Redis failover the new primary can list, in a live worker's ack set, a
    message whose acknowledgement (and the work it stood for) was lost with the old
    primary. The worker gives it back and the call is delivered, with no restart."""
    pipeline = idle_pipeline
    namespace = pipeline.config.redis.namespace
    call = pipeline.new_call("cometchat")
    assert pipeline.post("cometchat", "call_ended", call).status_code == 200
    enrich = queue_key(namespace, ENRICH_QUEUE)
    stray = cast(bytes | None, pipeline.redis.lpop(enrich))  # stored still, in no queue
    assert stray is not None
    log = tmp_path / "worker.log"
    with worker_process(Path(pipeline.config.origin), log):
        heartbeats = f"{namespace}:__heartbeats__"
        wait(lambda: pipeline.redis.zcard(heartbeats) >= 1, 60, "the worker to beat")
        (worker_id,) = (
            m.decode() for m in cast(list[bytes], pipeline.redis.zrange(heartbeats, 0, -1))
        )
        pipeline.redis.sadd(f"{namespace}:__acks__.{worker_id}.{ENRICH_QUEUE}", stray)
        (line,) = pipeline.wait_for(1, timeout=30)
        assert line["record"]["call_id"] == call.call_id
        assert pipeline.redis.zcard(heartbeats) == 1, "the same worker, never restarted"
    assert f"gave back 1 message(s) of {ENRICH_QUEUE}" in log.read_text()


def test_two_worker_processes_share_work_and_the_rate_limit(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = idle_pipeline
    state = pipeline.state("cometchat")
    # Quo's 10/s rather than CometChat's default 100/s: the burst then lasts seconds, long
    # enough for the limit to be measured and for both groups to take a share
    rate = 10.0
    config_path = Path(pipeline.config.origin)
    raw = tomllib.loads(config_path.read_text())
    raw["sources"]["cometchat"]["rate_limit_per_s"] = rate
    config_path.write_text(toml_text(raw))
    calls = [pipeline.new_call("cometchat") for _ in range(30)]
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    heartbeats = f"{pipeline.config.redis.namespace}:__heartbeats__"
    with (
        worker_process(config_path, logs[0]),
        worker_process(config_path, logs[1]),
    ):
        wait(lambda: pipeline.redis.zcard(heartbeats) >= 2, 60, "both worker groups consuming")
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


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample served on 127.0.0.1:`port`, keyed by (name, labels)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_worker_group_serves_its_merged_metrics(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = idle_pipeline
    port = free_port()
    with worker_process(Path(pipeline.config.origin), tmp_path / "w.log", metrics_port=port):
        wait_until_answers("127.0.0.1", port)
        call = pipeline.new_call("cometchat")
        assert pipeline.post("cometchat", "call_ended", call).status_code == 200
        pipeline.wait_for(1, timeout=30)
        samples = scrape(port)
    ok = frozenset({("sink", "records"), ("outcome", "ok")})
    assert samples[("callhook_sink_deliveries_total", ok)] == 1.0
    assert (
        samples[("callhook_enrich_total", frozenset({("vendor", "cometchat"), ("outcome", "ok")}))]
        == 1.0
    )
    assert samples[("callhook_end_to_end_seconds_count", frozenset({("sink", "records")}))] == 1.0


NO_METRICS = ("--metrics-port", "0")


def sinks_config(path: Path, redis_url: str, namespace: str, sink: str) -> Path:
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\nnamespace = "{namespace}"\n\n[[sinks]]\n{sink}\n'
    )
    return path


def test_a_sink_misconfigured_at_start_stops_the_worker_with_one_line(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    secret = "s3cr3t-never-logged"
    with moto_s3() as endpoint:
        config = sinks_config(
            tmp_path / "s3.toml",
            redis_server_url,
            redis_namespace,
            'name = "archive"\ntype = "s3"\nbucket = "no-such-bucket"\n'
            f'endpoint_url = "{endpoint}"',
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "callhook", "worker", "--config", str(config), *NO_METRICS],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **os.environ,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            },
        )
        took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    named = [line for line in output.splitlines() if "no-such-bucket" in line]
    assert len(named) == 1, output
    assert "sink 'archive' (s3): bucket 'no-such-bucket' does not exist" in named[0]
    assert "Traceback" not in output
    assert secret not in output
    assert took < 30
    print(f"exited {done.returncode} in {took:.1f}s: {named[0]}")


def test_an_unreachable_sink_at_start_does_not_stop_the_worker(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    url = f"postgresql://callhook@127.0.0.1:{free_port()}/callhook"
    config = sinks_config(
        tmp_path / "db.toml",
        redis_server_url,
        redis_namespace,
        f'name = "warehouse"\ntype = "database"\nurl = "{url}"\ntimeout_s = 2',
    )
    log = tmp_path / "w.log"
    with worker_process(config, log) as process:
        wait(lambda: "did not start" in log.read_text(), 30, "the start warning")
        time.sleep(2.0)
        assert process.poll() is None, log.read_text()
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    warning = next(line for line in log.read_text().splitlines() if "did not start" in line)
    assert '"level":"warning"' in warning
    assert "sink warehouse (database)" in warning


def loaded(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.BusyLoadingError:
        return False


def test_sigterm_with_redis_gone_exits_at_the_shutdown_timeout_leaving_work_unacked(
    tmp_path: Path,
) -> None:
    """Redis (a server of this test's own) stops while two messages are in flight; on
    SIGTERM the worker exits once its shutdown timeout has passed, with status 5 and one
    line, instead of retrying for ever. With Redis back, another worker gets that work
    again: it was never acknowledged."""
    timeout_s = 3.0
    (tmp_path / "redis").mkdir()
    server = RedisServer(port=free_port(), directory=tmp_path / "redis", appendonly=True)
    server.start()
    try:
        with running_pipeline(
            tmp_path,
            server.url,
            "shutdown",
            start_worker=False,
            sections={
                "workers": {
                    "shutdown_timeout_s": timeout_s,
                    "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
                }
            },
        ) as pipeline:
            state = pipeline.state("cometchat")
            state.faults = Faults(latency_s=5.0)  # each Get Call hangs: the work is in flight
            calls = [pipeline.new_call("cometchat") for _ in range(4)]
            log = tmp_path / "stopped.log"
            with worker_process(Path(pipeline.config.origin), log, threads=2) as worker:
                for call in calls:
                    assert pipeline.post("cometchat", "call_ended", call).status_code == 200

                def fetching() -> int:
                    """Calls whose Get Call has started: one per busy thread."""
                    ends = {path.rpartition("/calls/")[2] for _, path in state.requests}
                    return sum(call.call_id in ends for call in calls)

                wait(lambda: fetching() >= 2, 30, "both threads to be in a Get Call")
                server.stop()
                stopping = time.monotonic()
                worker.send_signal(signal.SIGTERM)  # callhook worker passes it on
                status = worker.wait(timeout=timeout_s + 60)
                took = time.monotonic() - stopping
            output = log.read_text()
            assert status == SHUTDOWN_TIMEOUT_EXIT, output[-3000:]
            assert took < timeout_s + 30, output[-3000:]
            said = [line for line in output.splitlines() if "shutdown timeout" in line]
            assert len(said) == 1, output[-3000:]
            assert '"level":"error"' in said[0]
            assert "shutdown timeout (3s) passed with 2 message(s) in flight" in said[0]
            assert "unacknowledged" in said[0]

            server.start()
            wait(lambda: loaded(pipeline.redis), 30, "Redis to load its AOF")
            held = sum(
                int(pipeline.redis.scard(key))
                for key in pipeline.redis.scan_iter(match="shutdown:__acks__.*")
            )
            assert held >= 2  # still the stopped worker's, unacknowledged
            state.faults = Faults()
            with worker_process(Path(pipeline.config.origin), tmp_path / "after.log"):
                lines = pipeline.wait_for(4, timeout=120)
        assert {line["record"]["call_id"] for line in lines} == {c.call_id for c in calls}
        print(f"stopped in {took:.1f}s (timeout {timeout_s}s): {said[0]}")
    finally:
        server.stop()
