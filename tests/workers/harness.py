"""A whole Callhook on loopback for pipeline tests: vendor API simulators (real HTTP), the
ingress app (real HTTP), a real Dramatiq worker on the real Redis, and a JSON-lines sink."""

from __future__ import annotations

import contextlib
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import orjson
import redis

from callhook.config import Config, load_config
from callhook.queues import QUEUES, queue_key
from callhook.redis_connect import sync_client
from callhook.sandbox import Sandbox, prepare
from callhook.vendors import VENDORS
from callhook.vendors.kit import SimulatedCall, VendorSimulatorState
from service.app import create_app
from tests.servers import ServerThread, free_port
from workers.broker import CallhookBroker
from workers.main import build_broker
from workers.retrying import RetryPolicies, RetryPolicy
from workers.runtime import WorkerTuning


@dataclass
class Pipeline:
    config: Config
    sandbox: Sandbox
    ingress_url: str
    records_path: Path
    redis: redis.Redis
    broker: CallhookBroker

    def state(self, source: str) -> VendorSimulatorState:
        return self.sandbox.simulator_states[source]

    def new_call(self, source: str, call_id: str | None = None) -> SimulatedCall:
        """A call the simulated vendor API knows."""
        vendor = VENDORS[self.config.sources[source].vendor]
        call = vendor.kit.simulated_call(call_id, now=time.time())
        state = self.state(source)
        state.calls[call.call_id] = call.call
        state.extras[call.call_id] = call.extras
        return call

    def post(self, source: str, vendor_type: str, call: SimulatedCall) -> httpx.Response:
        vendor = VENDORS[self.config.sources[source].vendor]
        delivery = vendor.kit.simulate_delivery(
            self.config.sources[source], vendor_type, call, now=time.time()
        )
        return httpx.post(
            f"{self.ingress_url}/webhooks/{source}",
            content=delivery.body,
            headers=dict(delivery.headers),
            timeout=10,
        )

    def delivered(self) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        return [orjson.loads(line) for line in self.records_path.read_bytes().splitlines()]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until the sink holds at least `count` deliveries; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.delivered()
            if len(lines) >= count:
                return lines
            time.sleep(0.05)
        raise AssertionError(f"{len(self.delivered())} deliveries after {timeout}s, wanted {count}")

    def queues_empty(self) -> bool:
        ns = self.config.redis.namespace
        return all(self.redis.llen(queue_key(ns, queue)) == 0 for queue in QUEUES)

    def stored_record(self, source: str, call_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"{self.config.redis.namespace}:call:{source}:{call_id}")
        return None if raw is None else orjson.loads(raw)


def pipeline_config(
    sandbox_path: Path,
    redis_url: str,
    namespace: str,
    records: Path,
    sinks: list[dict[str, Any]],
    sections: dict[str, dict[str, Any]] | None = None,
) -> Config:
    """The sandbox's sources with our Redis namespace and sinks (and `sections` in place of
    the sandbox's tables of those names; a `redis` section adds to the URL and namespace),
    written next to it as a config file (worker subprocesses read the same file)."""
    raw = tomllib.loads(sandbox_path.read_text())
    raw.update(sections or {})
    raw["redis"] = {"url": redis_url, "namespace": namespace, **(sections or {}).get("redis", {})}
    raw["sinks"] = [{"name": "records", "type": "file", "path": str(records)}, *sinks]
    path = sandbox_path.with_name("pipeline.toml")
    path.write_text(toml_text(raw))
    return load_config(path)


def toml_text(raw: dict[str, Any]) -> str:
    """Enough TOML for our config (tables, arrays of tables, strings, numbers, lists)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return orjson.dumps(v).decode()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return str(v)

    for name, section in raw.items():
        if name == "sinks":
            continue
        if name == "sources":
            for source, table in section.items():
                lines.append(f"[sources.{source}]")
                lines += [f"{k} = {value(v)}" for k, v in table.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in section.items()]
    for sink in raw.get("sinks", []):
        lines.append("[[sinks]]")
        lines += [f"{k} = {value(v)}" for k, v in sink.items()]
    return "\n".join(lines) + "\n"


FAST = WorkerTuning(
    policies=RetryPolicies(
        vendor_transient=RetryPolicy(max_attempts=3, base_s=0.05, cap_s=0.2),
        not_ready=RetryPolicy(max_attempts=2, base_s=0.05, cap_s=0.2),
        sink_transient=RetryPolicy(max_attempts=3, base_s=0.05, cap_s=0.2),
    ),
    http_timeout=httpx.Timeout(1.0, connect=1.0),
)


@contextlib.contextmanager
def running_pipeline(
    tmp_path: Path,
    redis_url: str,
    namespace: str,
    *,
    worker_threads: int = 4,
    tuning: WorkerTuning = FAST,
    extra_sinks: list[dict[str, Any]] | None = None,
    start_worker: bool = True,
    sections: dict[str, dict[str, Any]] | None = None,
) -> Iterator[Pipeline]:
    simulator_port = free_port()
    sandbox = prepare(
        tmp_path / "var", ingress_host="127.0.0.1", ingress_port=0, simulator_port=simulator_port
    )
    records = tmp_path / "records.jsonl"
    config = pipeline_config(
        sandbox.config_path, redis_url, namespace, records, extra_sinks or [], sections
    )
    client = sync_client(config.redis)
    with (
        ServerThread(sandbox.simulator_app(), port=simulator_port),
        ServerThread(create_app(config), lifespan=True) as ingress,
    ):
        broker = build_broker(config, tuning)
        worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=worker_threads)
        if start_worker:
            worker.start()
        try:
            yield Pipeline(config, sandbox, ingress.url, records, client, broker)
        finally:
            if start_worker:
                worker.stop()
            broker.close()
            client.close()
