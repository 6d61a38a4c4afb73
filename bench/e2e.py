"""End-to-end benchmark (`make bench-e2e`): calls go through `callhook serve` → Redis →
`callhook worker` processes → the vendor API simulators (answering after 20 ms) → the
database (PostgreSQL), s3 (moto) and http (a receiver) sinks; every part is a process of
its own on this machine (bench/e2e_servers.py).

Phases: (1) throughput: N calls, each a realistic sequence of deliveries posted in order,
as fast as the ingress takes them; calls/s from the first post to the last sink write, and
CPU per call. (1b) the same N calls through the naive pipeline (bench/naive.py) on the same
simulators and sinks, and the ratios.
(2) latency: calls started at a fixed rate (open loop); per call, the time from the 200
for its last delivery to the last write any sink made for it. (3) backlog: workers
stopped, a backlog posted (Redis memory per queued event), workers started again (drain
rate, worker memory while draining). Also printed: vendor requests per call, CPU time and
peak RSS per process. The Redis namespace and the database are deleted at the end.

    python -m bench.e2e [--calls 400] [--rate 100] [--seconds 15] [--backlog 4000] [--profile DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from bench import loadgen
from bench.e2e_servers import database_writes, observed_database
from bench.ingress import write_config
from bench.processes import (
    Child,
    CpuMeter,
    command_line,
    delete_namespace,
    free_port,
    memory_kib,
    peak_rss_report,
    python_command,
    redis_cpu_seconds,
    redis_used_memory,
    running,
    spawn,
    stop,
    tree,
    tree_cpu_seconds,
)
from bench.pyspy import profiled
from callhook.config import Config, RedisConfig, load_config
from callhook.journal import prefix
from callhook.queues import QUEUES, STAGES, dlq_entries_key, messages_key
from callhook.redis_connect import sync_client
from callhook.sinks.s3_recordings import key_segment
from callhook.vendors import VENDORS

BUCKET = "bench-calls"
#: the AWS credential chain needs some; moto takes any
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
OUTSIDE = ("simulators", "receiver", "s3")
#: bound on any wait for the queues to empty, so a stuck pipeline cannot hang the run
DRAIN_LIMIT_S = 150.0


@dataclass
class World:
    """Everything running, and how to watch it."""

    directory: Path
    namespace: str
    redis: redis.Redis
    config: Config
    ports: dict[str, int]
    children: dict[str, Child]
    worker_command: list[str]
    database_url: str | None
    workers: Child | None = None
    stopped_workers: list[Child] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start_workers(self) -> Child:
        self.workers = spawn("workers", self.worker_command, self.directory, AWS_ENV)
        return self.workers

    def stop_workers(self) -> None:
        if self.workers is not None:
            stop(self.workers)
            self.workers = None

    def calls(self, count: int) -> list[loadgen.Call]:
        return loadgen.build_calls(self.config, count, f"127.0.0.1:{self.ports['ingress']}")

    def post(self, calls: Sequence[loadgen.Call], concurrency: int) -> loadgen.RunResult:
        units = [call.requests for call in calls]
        return loadgen.run(loadgen.closed_loop(self.ports["ingress"], units, concurrency))

    def queued(self) -> int:
        """Messages not acknowledged yet, delayed retries included."""
        queues = [q + suffix for q in QUEUES for suffix in ("", ".DQ")]
        return sum(int(self.redis.hlen(messages_key(self.namespace, q))) for q in queues)

    def wait_drained(self, timeout_s: float = DRAIN_LIMIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.queued():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.queued()} messages still queued after {timeout_s}s")
            time.sleep(0.05)

    def vendor_requests(self) -> int:
        counts: dict[str, int] = httpx.get(f"{self.url('simulators')}/_bench/requests").json()
        return sum(counts.values())

    def last_writes(self) -> dict[str, dict[str, float]]:
        """Per sink, `source/call_id` → when that sink last wrote for the call."""
        receiver = httpx.get(f"{self.url('receiver')}/_bench/writes", timeout=30).json()
        s3: dict[str, list[float]] = httpx.get(f"{self.url('s3')}/_bench/writes").json()
        found = {
            "http": {key: max(times) for key, times in receiver.items()},
            # /{bucket}/{source}/{YYYY}/{MM}/{DD}/{call_id as a key segment}.json
            "s3": {
                f"{path.split('/')[2]}/{path.rsplit('/', 1)[1].removesuffix('.json')}": max(t)
                for path, t in s3.items()
            },
        }
        if self.database_url is not None:
            found["database"] = {
                f"{source}/{call_id}": at
                for (source, call_id), at in database_writes(self.database_url).items()
            }
        return found

    def dead_letters(self) -> int:
        return sum(int(self.redis.hlen(dlq_entries_key(self.namespace, queue))) for queue in STAGES)


def last_write(by_sink: dict[str, dict[str, float]], call: loadgen.Call) -> float | None:
    """When the last of the sinks in `by_sink` wrote for `call`; None if one never did."""
    keys = (f"{call.source}/{key_segment(call.call_id)}", f"{call.source}/{call.call_id}")
    times = [next((w[k] for k in keys if k in w), None) for w in by_sink.values()]
    return None if None in times else max(t for t in times if t is not None)


@contextlib.contextmanager
def running_world(args: argparse.Namespace, directory: Path, namespace: str) -> Iterator[World]:
    ports = {name: free_port() for name in (*OUTSIDE, "ingress")}
    client = sync_client(RedisConfig(url=args.redis_url))  # a Sentinel address too
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        stack.callback(lambda: print(f"deleted {delete_namespace(client, namespace)} Redis keys"))
        database_url = stack.enter_context(
            observed_database(args.postgres, args.redis_url, namespace)
        )
        sinks: list[dict[str, object]] = [
            {"name": "archive", "type": "s3", "bucket": BUCKET},
            {"name": "crm", "type": "http", "url": f"http://127.0.0.1:{ports['receiver']}/hooks"},
        ]
        sinks[0]["endpoint_url"] = f"http://127.0.0.1:{ports['s3']}"
        sinks[1]["secret"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        if database_url is not None:
            sinks.append({"name": "warehouse", "type": "database", "url": database_url})
        config_path = write_config(
            directory,
            redis_url=args.redis_url,
            namespace=namespace,
            simulator_port=ports["simulators"],
            sinks=sinks,
            rate_limit_per_s=1_000_000.0,  # the pipeline is measured, not a vendor's limit
        )
        children: dict[str, Child] = {}
        for name in OUTSIDE:
            command = python_command("-m", "bench.e2e_servers", name, "--port", str(ports[name]))
            command += ["--var-dir", str(directory / "var")]
            command += ["--latency-s", str(args.vendor_latency_s)]
            children[name] = stack.enter_context(
                running(name, command, directory, port=ports[name])
            )
        httpx.put(f"http://127.0.0.1:{ports['s3']}/{BUCKET}").raise_for_status()
        serve = python_command("-m", "callhook", "serve", "--config", str(config_path))
        serve += ["--port", str(ports["ingress"]), "--workers", "1"]
        children["ingress"] = stack.enter_context(
            running("ingress", serve, directory, port=ports["ingress"])
        )
        workers = python_command("-m", "callhook", "worker", "--config", str(config_path))
        workers += ["--metrics-port", "0", "--processes", str(args.processes)]
        workers += ["--threads", str(args.threads)]
        w = World(
            directory, namespace, client, load_config(config_path), ports, children, workers,
            database_url,
        )  # fmt: skip
        stack.callback(w.stop_workers)
        yield w


# --- phases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One pipeline's throughput run: calls/s sustained, CPU per call of its own processes
    (Callhook: ingress and workers; Redis apart), and of Redis."""

    calls_per_s: float
    cpu_ms_per_call: float
    redis_ms_per_call: float = 0.0


def throughput(
    w: World, count: int, concurrency: int, profile: Path | None
) -> tuple[Measured, loadgen.RunResult]:
    """Post `count` calls as fast as the ingress takes them; return the calls/s sustained
    from the first post to the last sink write, CPU per call, and what was posted."""
    calls = w.calls(count)
    assert w.workers is not None
    own = {"ingress": w.children["ingress"], "workers": w.workers}
    with (
        profiled(w.workers.pid, profile / "workers.txt", gil=True)
        if profile
        else contextlib.nullcontext()
    ):
        cpu_before = sum(tree_cpu_seconds(child.pid) for child in own.values())
        redis_before = redis_cpu_seconds(w.redis)
        started = time.time()
        posted = w.post(calls, concurrency)
        w.wait_drained()
        cpu = sum(tree_cpu_seconds(child.pid) for child in own.values()) - cpu_before
        redis_cpu = redis_cpu_seconds(w.redis) - redis_before
    writes = w.last_writes()
    ends = [last_write(writes, call) for call in calls]
    done = [end for end in ends if end is not None]
    span = max(done) - started
    print(
        f"\nthroughput: {count} calls ({posted.requests} deliveries) posted in "
        f"{posted.elapsed_s:.1f}s; last sink write {span:.1f}s after the first post: "
        f"{count / span:.0f} calls/s sustained, {posted.requests / span:.0f} deliveries/s "
        f"(target >= 300 calls/s){'' if len(done) == count else f'; {count - len(done)} lost'}"
    )
    measured = Measured(count / span, cpu / count * 1000, redis_cpu / count * 1000)
    print(
        f"  CPU per call: {measured.cpu_ms_per_call:.1f} ms in the ingress and workers "
        f"({cpu / posted.requests * 1000:.1f} ms per delivery), "
        f"{measured.redis_ms_per_call:.1f} ms in Redis"
    )
    return measured, posted


def baseline(w: World, count: int, concurrency: int, processes: int) -> Measured:
    """The naive pipeline (bench/naive.py) on the same calls, simulators and sinks: calls/s
    from the first post to the last answer (it answers once its I/O is done), and CPU per
    call of its processes."""
    port = free_port()
    config_path = w.directory / "callhook.toml"
    command = python_command("-m", "bench.naive", "--config", str(config_path))
    command += ["--port", str(port), "--processes", str(processes)]
    with running("naive", command, w.directory, port=port, env=AWS_ENV) as naive:
        warm = loadgen.build_calls(w.config, 20, f"127.0.0.1:{port}")
        loadgen.run(loadgen.closed_loop(port, [call.requests for call in warm], 4))
        calls = loadgen.build_calls(w.config, count, f"127.0.0.1:{port}")
        before = tree_cpu_seconds(naive.pid)
        posted = loadgen.run(
            loadgen.closed_loop(port, [call.requests for call in calls], concurrency)
        )
        cpu = tree_cpu_seconds(naive.pid) - before
    failed = sum(n for status, n in posted.statuses.items() if status != 200)
    measured = Measured(count / posted.elapsed_s, cpu / count * 1000)
    print(
        f"\nbaseline (bench/naive.py, {processes} processes: GET the call, upsert, PUT, POST "
        f"in the request; no dedupe, merge, once-marks or retries): {count} calls "
        f"({posted.requests} deliveries) in {posted.elapsed_s:.1f}s: "
        f"{measured.calls_per_s:.0f} calls/s, CPU {measured.cpu_ms_per_call:.1f} ms per call"
        f"{f'; {failed} deliveries failed' if failed else ''}"
    )
    return measured


def latency(w: World, rate: float, seconds: float, connections: int) -> loadgen.RunResult:
    calls = w.calls(int(rate * seconds))
    units = [call.requests for call in calls]
    posted = loadgen.run(loadgen.open_loop(w.ports["ingress"], units, rate, connections))
    w.wait_drained()
    writes = w.last_writes()
    print(
        f"\nlatency at {rate:.0f} calls/s for {seconds:.0f}s ({len(calls)} calls, "
        f"{posted.units_per_s:.0f} calls/s posted): from the 200 for a call's last delivery "
        "to its last sink write (target p95 <= 500 ms at 100 calls/s)"
    )
    for sink in [*writes, "all sinks"]:
        chosen = writes if sink == "all sinks" else {sink: writes[sink]}
        ends = [last_write(chosen, call) for call in calls]
        spans = [end - ok for end, ok in zip(ends, posted.answered_at, strict=True) if end]
        p = [loadgen.percentile(spans, q) * 1000 for q in (50, 95, 99)]
        print(
            f"  {sink:<10} p50 {p[0]:7.1f} ms  p95 {p[1]:7.1f} ms  p99 {p[2]:7.1f} ms"
            f"{'' if len(spans) == len(calls) else f'  ({len(calls) - len(spans)} missing)'}"
        )
    return posted


def backlog(w: World, events: int, concurrency: int) -> None:
    w.stop_workers()
    calls: list[loadgen.Call] = []
    while sum(len(call.requests) for call in calls) < events:
        calls += w.calls(100)
    before = redis_used_memory(w.redis)
    posted = w.post(calls, concurrency)
    queued, during = w.queued(), redis_used_memory(w.redis)
    print(
        f"\nbacklog: {posted.requests} deliveries posted with the workers stopped "
        f"({queued} messages queued): Redis used_memory +{(during - before) / 2**20:.1f} MiB, "
        f"{(during - before) / posted.requests:.0f} bytes per queued event"
    )
    workers = w.start_workers()
    started = time.monotonic()
    limit_s = max(DRAIN_LIMIT_S, posted.requests / 50)  # a big backlog gets 50 events/s
    rss: dict[int, list[int]] = {}
    while w.queued():
        if time.monotonic() - started > limit_s:
            raise RuntimeError(f"{w.queued()} messages still queued after {limit_s:.0f}s")
        for pid in tree(workers.pid):
            rss.setdefault(pid, []).append(memory_kib(pid, "VmRSS"))
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    after = redis_used_memory(w.redis)
    print(
        f"drained in {elapsed:.1f}s from starting the workers ({posted.requests / elapsed:.0f} "
        f"deliveries/s, {len(calls) / elapsed:.0f} calls/s, worker boot included); left in "
        f"Redis: {(after - before) / posted.requests:.0f} bytes per event (dedupe marks, "
        "call records)"
    )
    print("worker RSS at 25% / 50% / 75% / 100% of the drain time, then VmHWM (MiB):")
    for pid, samples in rss.items():
        figures = [samples[len(samples) * q // 4 - 1] for q in (1, 2, 3, 4)]
        figures.append(memory_kib(pid))
        print(
            f"  {pid:>7} {command_line(pid):<58} " + " / ".join(f"{f / 1024:.0f}" for f in figures)
        )


def journal_report(client: redis.Redis, namespace: str) -> str:
    """Redis memory the call journal holds per call (MEMORY USAGE of its keys, exact)."""
    journal = prefix(namespace)
    kinds = {"call": 0, "summary": 0, "idx": 0, "event": 0, "other": 0}
    calls = 0
    for key in client.scan_iter(match=f"{journal}:*", count=1000):
        kind = key.decode().removeprefix(f"{journal}:").split(":", 1)[0]
        used = int(client.memory_usage(key, samples=0) or 0)
        kinds[kind if kind in kinds else "other"] += used
        calls += kind == "summary"
    total = sum(kinds.values())
    each = {kind: used / max(calls, 1) for kind, used in kinds.items()}
    return (
        f"call journal: {calls} calls, {total / max(calls, 1):,.0f} B of Redis per call "
        f"(entries {each['call']:,.0f}, summary {each['summary']:,.0f}, indexes "
        f"{each['idx']:,.0f}, event keys {each['event']:,.0f}, counters {each['other']:,.0f})"
    )


def running_children(w: World) -> dict[str, Child]:
    return {**w.children, **({"workers": w.workers} if w.workers else {})}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--calls", type=int, default=400, help="calls in the throughput run")
    parser.add_argument("--rate", type=float, default=100.0, help="calls/s in the latency run")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency run")
    parser.add_argument("--backlog", type=int, default=4_000, help="events in the backlog run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker process")
    parser.add_argument("--vendor-latency-s", type=float, default=0.02)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the workers")
    args = parser.parse_args(argv)
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    print(
        f"end-to-end benchmark: vendors {', '.join(VENDORS)}; {os.cpu_count()} CPUs; "
        f"{args.processes} worker processes x {args.threads} threads; vendor APIs answer "
        f"after {args.vendor_latency_s * 1000:.0f} ms; Redis namespace {namespace}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="callhook-e2e-") as tmp,
        running_world(args, Path(tmp), namespace) as w,
    ):
        w.start_workers()
        w.post(w.calls(20), 4)  # boots the workers and starts every sink
        w.wait_drained(timeout_s=60)
        print(f"sinks: {', '.join(w.last_writes())}")
        vendor_before, started = w.vendor_requests(), time.monotonic()
        cpu = CpuMeter.start(running_children(w), w.redis)
        callhook, first = throughput(w, args.calls, args.concurrency, args.profile)
        sustained = callhook.calls_per_s
        rate = min(args.rate, sustained / 2)
        if rate < args.rate:
            print(
                f"\nnote: {args.rate:.0f} calls/s is over what this machine sustains; the "
                f"latency run uses half the sustained rate, {rate:.0f} calls/s"
            )
        second = latency(w, rate, args.seconds, args.concurrency * 4)
        calls, deliveries = first.units + second.units, first.requests + second.requests
        per_call = (w.vendor_requests() - vendor_before) / calls
        print(f"\nvendor API requests per call: {per_call:.2f}")
        print("\nCPU time over phases 1-2:")
        print(cpu.report(running_children(w), w.redis, time.monotonic() - started, deliveries))
        print("\npeak RSS (VmHWM) per process, MiB:")
        print(peak_rss_report(running_children(w)))
        print(f"\n{journal_report(w.redis, namespace)}")
        naive = baseline(w, args.calls, args.concurrency, args.processes)
        print(
            f"callhook / baseline: {callhook.calls_per_s / naive.calls_per_s:.2f}x the calls/s "
            f"(target >= 1.0), {callhook.cpu_ms_per_call / naive.cpu_ms_per_call:.2f}x the "
            "CPU per call (Redis apart)"
        )
        backlog(w, args.backlog, args.concurrency)
        print(f"\ndead letters: {w.dead_letters()}")


if __name__ == "__main__":
    main()
