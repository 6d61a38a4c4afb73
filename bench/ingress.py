"""Ingress benchmark (`make bench`): one `callhook serve` process against two baselines on
Uvicorn (bench/baselines.py), with the same load generator and the same deliveries.

For each target: a warm-up, then a closed-loop run (fixed concurrency) of fresh signed
deliveries with unique event keys; it prints requests/s, p50/p99 time to answer, CPU time
per request of the server and of Redis, and the ratios. Then Callhook alone at half its
peak rate, open loop, for the p99 at that rate. Everything is on loopback against the
machine's Redis, under a key prefix of its own that is deleted at the end.

    python -m bench.ingress [--requests 20000] [--concurrency 64] [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import loadgen
from bench.processes import (
    Child,
    delete_namespace,
    free_port,
    python_command,
    redis_cpu_seconds,
    running,
    tree_cpu_seconds,
)
from bench.pyspy import profiled
from callhook.config import Config, RedisConfig, load_config
from callhook.redaction import redact_url
from callhook.redis_connect import sync_client
from callhook.sandbox import prepare
from callhook.vendors import VENDORS

TARGETS = ("bare", "naive-send", "callhook")


def write_config(
    directory: Path,
    *,
    redis_url: str,
    namespace: str,
    simulator_port: int,
    sinks: Sequence[dict[str, Any]] = (),
    rate_limit_per_s: float | None = None,
) -> Path:
    """A Callhook config with one source per registered vendor (the sandbox's, APIs at the
    simulators on `simulator_port`), our Redis namespace and `sinks`; returns its path."""
    sandbox = prepare(
        directory / "var",
        ingress_host="127.0.0.1",
        ingress_port=0,
        simulator_port=simulator_port,
        redis_url=redis_url,
        namespace=namespace,
    )
    raw = tomllib.loads(sandbox.config_path.read_text())
    lines = [f"[redis]\nurl = {_toml(redis_url)}\nnamespace = {_toml(namespace)}\n"]
    for name, table in raw["sources"].items():
        if rate_limit_per_s is not None:
            table["rate_limit_per_s"] = rate_limit_per_s
        lines.append(f"[sources.{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
        lines.append("")
    for sink in sinks:
        lines.append("[[sinks]]")
        lines += [f"{key} = {_toml(value)}" for key, value in sink.items()]
        lines.append("")
    path = directory / "callhook.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return orjson.dumps(str(value)).decode()


def deliveries(config: Config, count: int, port: int) -> list[tuple[bytes, ...]]:
    """`count` fresh deliveries (units of one), a mix of every registered vendor."""
    units: list[tuple[bytes, ...]] = []
    while len(units) < count:
        units += loadgen.single_deliveries(loadgen.build_calls(config, 256, f"127.0.0.1:{port}"))
    return units[:count]


@dataclass
class Measured:
    target: str
    result: loadgen.RunResult
    server_cpu_s: float
    redis_cpu_s: float
    client_cpu_s: float

    def per_request_ms(self, seconds: float) -> float:
        return seconds / self.result.requests * 1000


def measure(
    target: str,
    server: Child,
    redis_client: redis.Redis,
    run: Callable[[], loadgen.RunResult],
) -> Measured:
    """Run the load and take the CPU the server, Redis and this generator spent on it."""
    server_before, redis_before = tree_cpu_seconds(server.pid), redis_cpu_seconds(redis_client)
    client_before = sum(os.times()[:2])
    result = run()
    return Measured(
        target,
        result,
        tree_cpu_seconds(server.pid) - server_before,
        redis_cpu_seconds(redis_client) - redis_before,
        sum(os.times()[:2]) - client_before,
    )


@contextmanager
def serving(target: str, setup: Setup) -> Iterator[tuple[Child, int]]:
    """`target` served in a process of its own on a free port."""
    port = free_port()
    if target == "callhook":
        command = python_command(
            "-m", "callhook", "serve", "--config", str(setup.config_path), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--log-level", setup.log_level,
        )  # fmt: skip
    else:
        command = python_command(
            "-m", "bench.baselines", target, "--port", str(port), "--redis-url", setup.redis_url,
            "--namespace", f"{setup.namespace}:naive",
        )  # fmt: skip
    with running(target, command, setup.directory, port=port) as child:
        yield child, port


@dataclass
class Setup:
    """What every target's run shares."""

    config: Config
    config_path: Path
    redis_url: str
    namespace: str
    redis: redis.Redis
    directory: Path
    concurrency: int
    #: `callhook serve --log-level`: info (the default) logs one line per delivery
    log_level: str = "info"


def bench_target(setup: Setup, target: str, warmup: int, count: int) -> Measured:
    """Start `target`, warm it up, measure a closed-loop run of `count` fresh deliveries."""
    with serving(target, setup) as (server, port):
        warm = deliveries(setup.config, warmup, port)
        loadgen.run(loadgen.closed_loop(port, warm, setup.concurrency))
        units = deliveries(setup.config, count, port)
        return measure(
            target,
            server,
            setup.redis,
            lambda: loadgen.run(loadgen.closed_loop(port, units, setup.concurrency)),
        )


def bench_callhook_open_loop(
    setup: Setup, rate_per_s: float, seconds: float, profile: Path | None
) -> loadgen.RunResult:
    """Callhook at `rate_per_s` for `seconds` (open loop); then, with `profile`, a closed-loop
    run under py-spy."""
    with serving("callhook", setup) as (server, port):
        warm = deliveries(setup.config, 1000, port)
        loadgen.run(loadgen.closed_loop(port, warm, setup.concurrency))
        units = deliveries(setup.config, int(rate_per_s * seconds), port)
        result = loadgen.run(loadgen.open_loop(port, units, rate_per_s, setup.concurrency))
        if profile is not None:
            units = deliveries(setup.config, len(units), port)
            with profiled(server.pid, profile / "ingress.txt"):
                loadgen.run(loadgen.closed_loop(port, units, setup.concurrency))
        return result


def answers(result: loadgen.RunResult) -> str:
    return ", ".join(f"HTTP {code}: {n}" for code, n in sorted(result.statuses.items()))


def print_closed(measured: Sequence[Measured], concurrency: int) -> None:
    print(f"\nclosed loop, {concurrency} connections, {measured[0].result.requests} requests each")
    print(
        f"{'target':<12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'server CPU':>14}{'Redis CPU':>12}{'loadgen CPU':>14}  answers"
    )
    for m in measured:
        r = m.result
        cpu = [m.per_request_ms(s) for s in (m.server_cpu_s, m.redis_cpu_s, m.client_cpu_s)]
        print(
            f"{m.target:<12}{r.requests_per_s:>8.0f}{r.percentile_ms(50):>9.2f}"
            f"{r.percentile_ms(99):>9.2f}{cpu[0]:>11.3f} ms{cpu[1]:>9.3f} ms{cpu[2]:>11.3f} ms"
            f"  {answers(r)}"
        )
    print("(CPU columns: CPU time per request spent by the server, Redis and this generator)")


def print_summary(measured: Sequence[Measured], half: loadgen.RunResult, rate: float) -> None:
    by_name = {m.target: m.result.requests_per_s for m in measured}
    callhook = by_name["callhook"]
    print(
        f"\nratios: callhook/bare {callhook / by_name['bare']:.2f} (target >= 0.5), "
        f"callhook/naive-send {callhook / by_name['naive-send']:.2f} (target >= 3)"
    )
    print(
        f"open loop at half of Callhook's peak: {rate:.0f} req/s asked, "
        f"{half.requests_per_s:.0f} achieved over {half.requests} requests: "
        f"p50 {half.percentile_ms(50):.2f} ms, p99 {half.percentile_ms(99):.2f} ms "
        f"(target <= 25 ms), max {max(half.latencies_s) * 1000:.1f} ms; {answers(half)}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingress", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="per closed-loop run")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--open-loop-s", type=float, default=10.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the Callhook server")
    parser.add_argument("--log-level", default="info", help="callhook serve's log level")
    args = parser.parse_args(argv)

    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    client = sync_client(RedisConfig(url=args.redis_url))  # a Sentinel address too
    print(
        f"ingress benchmark: vendors {', '.join(VENDORS)}; "
        f"Redis {redact_url(args.redis_url)} under {namespace}:*; {os.cpu_count()} CPUs"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="callhook-bench-") as tmp:
            directory = Path(tmp)
            path = write_config(
                directory, redis_url=args.redis_url, namespace=namespace, simulator_port=9
            )
            setup = Setup(
                load_config(path), path, args.redis_url, namespace, client, directory,
                args.concurrency, args.log_level,
            )  # fmt: skip
            sizes = [len(u[0]) for u in deliveries(setup.config, 1000, 8000)]
            print(f"mean request {sum(sizes) / len(sizes):.0f} bytes (headers and body)")
            measured = [bench_target(setup, t, args.warmup, args.requests) for t in TARGETS]
            print_closed(measured, args.concurrency)
            rate = measured[-1].result.requests_per_s / 2
            half = bench_callhook_open_loop(setup, rate, args.open_loop_s, args.profile)
            print_summary(measured, half, rate)
    finally:
        removed = delete_namespace(client, namespace)
        client.close()
        print(f"\ndeleted {removed} Redis keys under {namespace}")


if __name__ == "__main__":
    main()
