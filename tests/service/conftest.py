"""An ingress on a real loopback port, configured with one source per vendor."""

from __future__ import annotations

import contextlib
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import uvicorn

from callhook.config import Config, parse_config
from callhook.sandbox import prepare
from service.app import create_app
from service.run import server_options
from tests.servers import ServerThread, free_port


@dataclass
class Ingress:
    url: str
    config: Config


def ingress_config(
    tmp_path: Path, redis_url: str, namespace: str, **sections: dict[str, Any]
) -> Config:
    sandbox = prepare(tmp_path / "var", ingress_host="127.0.0.1", ingress_port=0, simulator_port=1)
    raw = tomllib.loads(sandbox.config_path.read_text())
    raw["redis"] = {"url": redis_url, "namespace": namespace, **sections.pop("redis", {})}
    raw.pop("console")  # the sandbox's; tests of the console and the API set their own
    raw.update(sections)
    raw["sinks"] = []
    return parse_config(raw, {}, origin="tests")


@pytest.fixture
def ingress(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Ingress]:
    config = ingress_config(
        tmp_path, redis_server_url, redis_namespace, ingress={"max_body_bytes": 65536}
    )
    with ServerThread(create_app(config), lifespan=True) as server:
        yield Ingress(server.url, config)


def serve_with(config: Config, client: redis.asyncio.Redis | None = None) -> ServerThread:
    return ServerThread(create_app(config, client=client), lifespan=True)


@contextlib.contextmanager
def served(config: Config) -> Iterator[Ingress]:
    """The ingress with the Uvicorn settings `callhook serve` uses (its limits, its trust of
    forwarded headers), on a loopback port in a background thread."""
    port = free_port()
    options = server_options(config, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(uvicorn.Config(create_app(config), lifespan="on", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the ingress did not start")
        time.sleep(0.02)
    try:
        yield Ingress(f"http://127.0.0.1:{port}", config)
    finally:
        server.should_exit = True
        thread.join(timeout=40)
