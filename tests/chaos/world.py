"""A whole Callhook for one chaos scenario, every part a real server: a redis-server of its
own (AOF, fsync always), a database on the session's own PostgreSQL server, moto's S3 as a
process (bench/e2e_servers.py) behind a proxy that can cut it off, `callhook serve`,
`callhook worker` groups and `callhook scheduler` as processes, on the world's config or on
the config files of a fleet's hosts; in this process, the vendor API simulators and the
Slack-like and HTTP receivers (tests/sinks), each behind an outage switch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from bench.processes import Child, python_command, running, spawn, stop, tree, wait_for_port
from callhook.config import Config, load_config
from callhook.queues import QUEUES as WORK_QUEUES
from callhook.queues import STAGES, dlq_entries_key, messages_key
from callhook.sandbox import Sandbox, prepare
from callhook.vendors.kit import VendorSimulatorState
from tests.chaos.apps import LoopThread, Outage, Partition, Timed
from tests.servers import PostgresServer, RedisServer, ServerThread, free_port
from tests.sinks._http_support import HOOK_PATH, SECRET, Receiver
from tests.sinks._slack_support import WEBHOOK_PATH, FakeSlack
from tests.workers.harness import toml_text

NAMESPACE = "chaos"
BUCKET = "chaos-calls"
#: the AWS credential chain needs some; moto takes any
AWS_ENV = {"AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos"}
#: the Slack text names the message's identity, so the channel can be counted by key
SLACK_TEMPLATE = "chaos|{{ source }}|{{ call_id }}|{{ event.type }}"
#: worker retry schedules ([retries] in the config): budgets of about 100 s, so a 60 s
#: outage is inside them and a scenario still ends in minutes
RETRIES = {
    "vendor_transient": {"max_attempts": 30, "base_s": 0.5, "cap_s": 5.0},
    "not_ready": {"max_attempts": 6, "base_s": 1.0, "cap_s": 4.0},
    "sink_transient": {"max_attempts": 30, "base_s": 0.5, "cap_s": 5.0},
}
QUEUES = tuple(q + suffix for q in WORK_QUEUES for suffix in ("", ".DQ"))


@dataclass(frozen=True)
class Host:
    """One machine of a fleet on the world's Redis: a config file of its own (the world's
    [redis], [sources] and [[sinks]]; its own [ingress] port) and metrics ports of its own,
    for the processes `World.start_ingress` / `start_workers` / `start_scheduler` start
    from it."""

    name: str
    config: Config
    metrics_port: int
    scheduler_metrics_port: int

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ingress.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def scheduler_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.scheduler_metrics_port}/metrics"


@dataclass
class World:
    directory: Path
    config: Config
    redis_server: RedisServer
    postgres: PostgresServer
    database_url: str
    simulators: Timed
    states: dict[str, VendorSimulatorState]
    slack: FakeSlack
    slack_outage: Outage
    receiver: Receiver
    http_outage: Outage
    s3_url: str
    s3_partition: Partition
    ingress_port: int
    ingresses: dict[str, Child] = field(default_factory=dict)
    workers: dict[str, Child] = field(default_factory=dict)
    schedulers: dict[str, Child] = field(default_factory=dict)
    redis: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.redis = redis.Redis.from_url(self.redis_server.url, socket_timeout=5)

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def ingress(self) -> Child | None:
        """The ingress on the world's own config (`start_ingress()` without a host)."""
        return self.ingresses.get("ingress")

    def add_host(self, name: str) -> Host:
        """Another host's config file, `<name>.toml`: the world's, with an [ingress] port
        of its own (each process reads its file; nothing else differs)."""
        raw = tomllib.loads(Path(self.config.origin).read_text())
        raw["ingress"] = {**raw.get("ingress", {}), "port": free_port()}
        path = self.directory / f"{name}.toml"
        path.write_text(toml_text(raw))
        ports = {"metrics_port": free_port(), "scheduler_metrics_port": free_port()}
        return Host(name, load_config(path), **ports)

    # --- processes ----------------------------------------------------------------------

    def start_ingress(self, host: Host | None = None) -> Child:
        """`callhook serve` on the world's config at `ingress_port`, or on a host's file at
        the port that file names."""
        config = self.config if host is None else host.config
        command = python_command("-m", "callhook", "serve", "--config", str(config.origin))
        command += ["--workers", "1"]
        if host is None:
            name, port = "ingress", self.ingress_port
            command += ["--port", str(port)]
        else:
            name, port = f"ingress-{host.name}", config.ingress.port
        child = self.ingresses[name] = spawn(name, command, self.directory)
        wait_for_port(child, port)
        return child

    def start_workers(
        self, name: str, *, processes: int = 1, threads: int = 8, host: Host | None = None
    ) -> Child:
        """A `callhook worker` group on the world's config (no metrics port), or on a
        host's file serving its metrics on the host's port."""
        config = self.config if host is None else host.config
        command = python_command("-m", "callhook", "worker", "--config", str(config.origin))
        command += ["--processes", str(processes), "--threads", str(threads)]
        command += ["--metrics-port", str(0 if host is None else host.metrics_port)]
        self.workers[name] = spawn(f"workers-{name}", command, self.directory, AWS_ENV)
        return self.workers[name]

    def start_scheduler(self, host: Host) -> Child:
        """`callhook scheduler` on a host's file, serving its metrics on the host's port;
        its JSON log lines (each reconcile run, each tick skipped for the fleet lock) go to
        `scheduler-<host>.log`."""
        command = python_command("-m", "callhook", "scheduler", "--config", str(host.config.origin))
        command += ["--metrics-port", str(host.scheduler_metrics_port)]
        child = spawn(f"scheduler-{host.name}", command, self.directory)
        self.schedulers[host.name] = child
        wait_for_port(child, host.scheduler_metrics_port)
        return child

    def signal_group(self, child: Child, signum: signal.Signals, wait_s: float = 45.0) -> float:
        """Send `signum` to the child's process group (`callhook worker` passes it on to its
        Dramatiq processes once); the seconds it took to exit."""
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        child.process.wait(timeout=wait_s)
        return time.monotonic() - started

    def kill_tree(self, child: Child) -> None:
        """SIGKILL the child and every process under it (Dramatiq's run in sessions of
        their own, out of reach of a group signal), as a machine losing them would."""
        _kill(tree(child.pid))
        child.process.wait(timeout=10)

    def stop_all(self) -> None:
        everyone = [*self.schedulers.values(), *self.workers.values(), *self.ingresses.values()]
        for child in everyone:
            below = tree(child.pid)
            stop(child)
            _kill(below)  # whatever outlived a graceful stop

    def redis_down(self) -> None:
        """SIGKILL redis-server: what it acknowledged is in its AOF (appendfsync always)."""
        process = self.redis_server.process
        assert process is not None
        process.kill()
        process.wait(timeout=10)
        self.redis_server.process = None

    def redis_up(self) -> None:
        """Start redis-server again on the same port and directory: it loads its AOF."""
        self.redis_server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.BusyLoadingError):
                if self.redis.ping():
                    return
            time.sleep(0.1)

    # --- what Redis holds ---------------------------------------------------------------

    def queued(self) -> dict[str, int]:
        """Messages not acknowledged yet, per queue (delay queues too)."""
        return {q: int(self.redis.hlen(messages_key(NAMESPACE, q))) for q in QUEUES}

    def dead_letters(self) -> int:
        entries = sum(int(self.redis.hlen(dlq_entries_key(NAMESPACE, q))) for q in STAGES)
        dramatiq_own = sum(int(self.redis.zcard(f"{NAMESPACE}:{q}.XQ")) for q in WORK_QUEUES)
        return entries + dramatiq_own

    def broker_ids(self) -> set[str]:
        """Worker processes that have heart-beaten (Dramatiq's broker ids)."""
        members = self.redis.zrange(f"{NAMESPACE}:__heartbeats__", 0, -1)
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    def held_by(self, broker_ids: set[str]) -> int:
        """Messages fetched and not acknowledged by these worker processes."""
        held = 0
        for broker_id in broker_ids:
            for key in self.redis.scan_iter(match=f"{NAMESPACE}:__acks__.{broker_id}.*"):
                held += int(self.redis.scard(key))
        return held

    def wait_for_new_broker_ids(self, known: set[str], count: int, timeout: float = 30) -> set[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.broker_ids() - known
            if len(new) >= count:
                return new
            time.sleep(0.2)
        raise AssertionError(f"no {count} new worker processes heart-beat within {timeout}s")

    def wait_settled(self, timeout: float) -> float:
        """Wait until no message is left (twice in a row, 1 s apart); the seconds it took."""
        started = time.monotonic()
        calm = 0
        while calm < 2:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"still queued after {timeout}s: {self.queued()}")
            calm = calm + 1 if not any(self.queued().values()) else 0
            time.sleep(1.0)
        return time.monotonic() - started - 2.0

    # --- what the sinks hold ------------------------------------------------------------

    def database_rows(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(source, call_id) of every `calls` row, (source, event_key) of every `call_events`."""

        async def fetch() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
            connection = await asyncpg.connect(self.database_url)
            try:
                calls = await connection.fetch("SELECT source, call_id FROM calls")
                events = await connection.fetch("SELECT source, event_key FROM call_events")
            finally:
                await connection.close()
            return [(r[0], r[1]) for r in calls], [(r[0], r[1]) for r in events]

        return asyncio.run(fetch())

    def s3_keys(self) -> list[str]:
        """Every object key in the bucket (ListObjectsV2, page by page)."""
        import xml.etree.ElementTree as ElementTree

        keys: list[str] = []
        token: str | None = None
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        for _ in range(1000):
            params = {"list-type": "2", **({"continuation-token": token} if token else {})}
            answer = httpx.get(f"{self.s3_url}/{BUCKET}", params=params, timeout=30)
            answer.raise_for_status()
            root = ElementTree.fromstring(answer.content)  # noqa: S314 - our own moto
            keys += [k.text or "" for k in root.iter(f"{ns}Key")]
            token = root.findtext(f"{ns}NextContinuationToken")
            if not token:
                return keys
        raise AssertionError("the bucket listing did not end")


def sinks_config(world_ports: dict[str, int], database_url: str) -> list[dict[str, Any]]:
    """One sink of each type; none filters, so every event goes to all four."""
    base = {"timeout_s": 3.0}
    return [
        {"name": "warehouse", "type": "database", "url": database_url, **base},
        {
            "name": "archive",
            "type": "s3",
            "bucket": BUCKET,
            "endpoint_url": f"http://127.0.0.1:{world_ports['s3_proxy']}",
            **base,
        },
        {
            "name": "alerts",
            "type": "slack",
            "webhook_url": f"http://127.0.0.1:{world_ports['slack']}{WEBHOOK_PATH}",
            "template": SLACK_TEMPLATE,
            **base,
        },
        {
            "name": "crm",
            "type": "http",
            "url": f"http://127.0.0.1:{world_ports['receiver']}{HOOK_PATH}",
            "secret": SECRET,
            **base,
        },
    ]


def write_config(
    sandbox: Sandbox,
    redis_url: str,
    sinks: list[dict[str, Any]],
    rate_limit_per_s: float,
    tables: Mapping[str, Any] | None = None,
) -> Config:
    """The sandbox's sources (every vendor, APIs at our simulators) with our Redis, sinks
    and retry schedules, `tables` merged over them, written next to it (the processes read
    the file)."""
    raw = tomllib.loads(sandbox.config_path.read_text())
    raw["redis"] = {"url": redis_url, "namespace": NAMESPACE, "accept_timeout_s": 2.0}
    raw["retries"] = RETRIES
    raw["reconcile"] = {"interval_s": 0}
    for table in raw["sources"].values():
        table["rate_limit_per_s"] = rate_limit_per_s
    raw["sinks"] = sinks
    path = sandbox.config_path.with_name("chaos.toml")
    path.write_text(toml_text(merged(raw, tables or {})))
    return load_config(path)


def merged(raw: Mapping[str, Any], tables: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with `tables` laid over it, table by table (a key set in both: `tables` wins)."""
    out = dict(raw)
    for key, value in tables.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = merged(below, value)
        else:
            out[key] = value
    return out


@contextlib.contextmanager
def running_world(
    directory: Path,
    postgres: PostgresServer,
    *,
    rate_limit_per_s: float = 1000.0,
    tables: Mapping[str, Any] | None = None,
) -> Iterator[World]:
    """Everything but the ingress, the workers and the schedulers, which the scenario
    starts (and which are stopped here, whatever happened). `tables` are laid over the
    config's (e.g. `{"sources": {"diga": {"rate_limit_per_s": 5}}}`)."""
    name = f"chaos_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    asyncio.run(_admin(postgres.dsn, f'CREATE DATABASE "{name}"'))
    ports = {n: free_port() for n in ("simulators", "slack", "receiver", "s3", "ingress")}
    with contextlib.ExitStack() as stack:
        stack.callback(
            lambda: asyncio.run(
                _admin(postgres.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )
        )
        (directory / "redis").mkdir()
        redis_server = RedisServer(port=free_port(), directory=directory / "redis", appendonly=True)
        redis_server.start()
        stack.callback(redis_server.stop)

        s3_command = python_command("-m", "bench.e2e_servers", "s3", "--port", str(ports["s3"]))
        stack.enter_context(running("s3", s3_command, directory, port=ports["s3"]))
        s3_url = f"http://127.0.0.1:{ports['s3']}"
        httpx.put(f"{s3_url}/{BUCKET}", timeout=10).raise_for_status()
        loop = LoopThread()
        stack.callback(loop.close)
        partition = Partition(loop, ports["s3"])
        ports["s3_proxy"] = partition.port

        database_url = f"{postgres.dsn}/{name}"
        sandbox = prepare(
            directory / "var", ingress_host="127.0.0.1", ingress_port=0,
            simulator_port=ports["simulators"],
        )  # fmt: skip
        sinks = sinks_config(ports, database_url)
        config = write_config(sandbox, redis_server.url, sinks, rate_limit_per_s, tables)
        simulators = Timed(sandbox.simulator_app())
        slack, receiver = FakeSlack(), Receiver()
        slack_outage, http_outage = Outage(slack.app), Outage(receiver.app)
        for app, port in (
            (simulators, "simulators"),
            (slack_outage, "slack"),
            (http_outage, "receiver"),
        ):
            stack.enter_context(ServerThread(app, port=ports[port]))
        world = World(
            directory=directory,
            config=config,
            redis_server=redis_server,
            postgres=postgres,
            database_url=database_url,
            simulators=simulators,
            states=sandbox.simulator_states,
            slack=slack,
            slack_outage=slack_outage,
            receiver=receiver,
            http_outage=http_outage,
            s3_url=s3_url,
            s3_partition=partition,
            ingress_port=ports["ingress"],
        )
        stack.callback(world.redis.close)
        stack.callback(world.stop_all)
        yield world


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # zombies of other parents linger until reaped; bounded


async def _admin(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(f"{dsn}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
