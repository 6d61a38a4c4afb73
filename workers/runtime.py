"""What one worker process owns: config, one httpx client, one Redis client, the vendor
clients per source, the sinks (started once), the record store, the rate limiter, the dead
letters. Built on the worker's event-loop thread at first use (async clients are bound to
the loop that made them) and closed when the worker shuts down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio

from callhook.config import Config
from callhook.http import make_client
from callhook.ratelimit import FleetRateLimiter
from callhook.sinks import SINKS
from callhook.sinks.base import Sink, SinkResources
from callhook.store import RecordStore
from callhook.vendors import VENDORS
from callhook.vendors.base import Vendor, VendorClient
from workers.broker import CallhookBroker
from workers.dlq import DeadLetters


@dataclass
class Runtime:
    config: Config
    broker: CallhookBroker
    http: httpx.AsyncClient
    redis: redis.asyncio.Redis
    store: RecordStore
    limiter: FleetRateLimiter
    dead_letters: DeadLetters
    _sinks: dict[str, Sink[Any]] = field(default_factory=dict)
    _sinks_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _clients: dict[str, VendorClient] = field(default_factory=dict)

    @classmethod
    def create(cls, config: Config, broker: CallhookBroker) -> Runtime:
        client = redis.asyncio.Redis.from_url(
            config.redis.url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )
        namespace = config.redis.namespace
        return cls(
            config=config,
            broker=broker,
            http=make_client(),
            redis=client,
            store=RecordStore(client, namespace),
            limiter=FleetRateLimiter(client, namespace),
            dead_letters=DeadLetters(client, namespace),
        )

    def vendor(self, source: str) -> Vendor[Any]:
        return VENDORS[self.config.sources[source].vendor]

    def vendor_client(self, source: str) -> VendorClient:
        client = self._clients.get(source)
        if client is None:
            client = self.vendor(source).client(self.config.sources[source], self.http)
            self._clients[source] = client
        return client

    async def sink(self, name: str) -> Sink[Any]:
        """The started sink named `name` (KeyError if the config has none by that name)."""
        sink = self._sinks.get(name)
        if sink is not None:
            return sink
        async with self._sinks_lock:
            if name not in self._sinks:
                config = next(s for s in self.config.sinks if s.name == name)
                resources = SinkResources(self.http, self.redis, self.config.redis.namespace)
                created = SINKS[config.type](config, resources)
                await created.start()
                self._sinks[name] = created
            return self._sinks[name]

    def has_sink(self, name: str) -> bool:
        return any(sink.name == name for sink in self.config.sinks)

    async def close(self) -> None:
        for sink in self._sinks.values():
            await sink.close()
        await self.http.aclose()
        await self.redis.aclose()


_settings: tuple[Config, CallhookBroker] | None = None
_runtime: Runtime | None = None


def configure(config: Config, broker: CallhookBroker) -> None:
    """Set what the next `runtime()` builds from (once per process; tests per test)."""
    global _settings, _runtime
    _settings = (config, broker)
    _runtime = None


def runtime() -> Runtime:
    """This process's runtime, built on first use from `configure`'s settings."""
    global _runtime
    if _runtime is None:
        if _settings is None:
            raise RuntimeError("workers.runtime.configure() was not called")
        _runtime = Runtime.create(*_settings)
    return _runtime


async def shutdown() -> None:
    global _runtime
    if _runtime is not None:
        await _runtime.close()
        _runtime = None
