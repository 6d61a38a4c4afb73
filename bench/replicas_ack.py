"""What `[redis] replicas_ack` costs the accept (`make bench-replicas`).

Starts a primary and one replica of our own on loopback (redis-server processes that die
with this one; AOF on, fsync every second, as docs/operations.md recommends), then times the
accept step (service/accept.py: the dedupe + enqueue script, and with replicas_ack = 1 its
`WAIT 1` on the same connection) with `replicas_ack` 0 and 1: one accept at a time (the
latency a vendor sees, HTTP apart), and `--concurrency` at once (throughput).

    python -m bench.replicas_ack [--accepts 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis
import redis.asyncio

from bench.processes import Child, free_port, spawn, stop, wait_for_port
from callhook.events import Event, EventType
from callhook.lifecycle import child_command
from callhook.replication import Replicas
from service.accept import Acceptor


def redis_server(directory: Path, name: str, *extra: str) -> tuple[Child, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
        "--appendfilename", f"{name}.aof", "--appenddirname", f"{name}-aof",
        "--repl-diskless-sync-delay", "0", *extra,
    ]  # fmt: skip
    child = spawn(name, child_command(args), directory)
    wait_for_port(child, port)
    return child, port


@contextmanager
def primary_and_replica(directory: Path) -> Iterator[int]:
    """The primary's port, its replica in sync."""
    with ExitStack() as stack:
        primary, port = redis_server(directory, "primary")
        stack.callback(stop, primary)
        replica, replica_port = redis_server(
            directory, "replica", "--replicaof", "127.0.0.1", str(port)
        )
        stack.callback(stop, replica)
        client = redis.Redis(port=replica_port)
        deadline = time.monotonic() + 30
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise SystemExit("the replica did not sync within 30 s")
            time.sleep(0.05)
        client.close()
        yield port


def event(number: int) -> Event:
    key = f"bench:{uuid.uuid4().hex}:{number}"
    return Event(
        event_key=key,
        vendor_type="call.completed",
        type=EventType.COMPLETED,
        call_id=f"C{number}",
        payload={"id": key, "data": {"object": {"id": f"C{number}", "status": "completed"}}},
    )


async def measure(port: int, replicas_ack: int, accepts: int, concurrency: int) -> str:
    client = redis.asyncio.Redis(port=port, max_connections=concurrency + 8)
    namespace = f"bench-replicas-{uuid.uuid4().hex[:8]}"
    replicas = Replicas(replicas_ack, 1500, namespace) if replicas_ack else None
    acceptor = Acceptor(
        client, namespace=namespace, dedupe_ttl_s=72 * 3600, timeout_s=2.0, replicas=replicas
    )
    try:
        for number in range(200):  # warm-up: connections, script cache
            await acceptor.accept("bench", event(number))
        latencies = []
        for number in range(accepts):
            started = time.perf_counter()
            await acceptor.accept("bench", event(number))
            latencies.append(time.perf_counter() - started)
        remaining = iter(range(accepts))

        async def loop() -> None:
            for number in remaining:
                await acceptor.accept("bench", event(number))

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        rate = accepts / (time.perf_counter() - started)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()
    ms = sorted(seconds * 1000 for seconds in latencies)
    p50, p99 = statistics.median(ms), ms[int(len(ms) * 0.99) - 1]
    return f"{replicas_ack:>12}  {p50:>8.3f}  {p99:>8.3f}  {rate:>12,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accepts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="callhook-bench-replicas-") as directory,
        primary_and_replica(Path(directory)) as port,
    ):
        print(
            f"accept step, {args.accepts} accepts per row, loopback primary + 1 replica "
            f"(AOF everysec); {os.cpu_count()} CPUs"
        )
        rate = f"accepts/s @{args.concurrency}"
        print(f"{'replicas_ack':>12}  {'p50 ms':>8}  {'p99 ms':>8}  {rate:>12}")
        for replicas_ack in (0, 1, 0, 1):
            print(asyncio.run(measure(port, replicas_ack, args.accepts, args.concurrency)))


if __name__ == "__main__":
    main()
