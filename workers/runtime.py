"""What one worker process owns: config, one Redis client, the vendor clients per source
and the sinks (started once), each with an httpx connection pool of its own, the record
store, the journal, the rate limiter, the dead letters. Built on the worker's event-loop
thread at first use (async clients are bound to the loop that made them) and closed when
the worker shuts down.

A worker process starts every configured sink as it boots (`start_sinks`), so a sink that
cannot work as configured stops the process with one line; a sink that cannot be reached
yet is started again by its first delivery."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio
import redis.exceptions

from callhook.config import Config
from callhook.dead_letters import DeadLetters
from callhook.errors import RetryableError
from callhook.http import DEFAULT_LIMITS, DEFAULT_TIMEOUT, make_client
from callhook.journal.updates import JournalSettings
from callhook.journal.writer import Journal
from callhook.ratelimit import FleetRateLimiter, RateLimitedTransport
from callhook.redis_connect import async_client
from callhook.replication import Replicas
from callhook.sinks import SINKS
from callhook.sinks.base import Sink, SinkResources
from callhook.store import RecordStore
from callhook.vendors import VENDORS
from callhook.vendors.base import Vendor, VendorClient
from workers.broker import CallhookBroker
from workers.retrying import DEFAULT_POLICIES, RetryPolicies, policies_from_config

log = logging.getLogger("callhook.workers")

#: what a sink's start may raise when its target cannot be reached right now
TRANSIENT_START_ERRORS = (RetryableError, OSError, TimeoutError, redis.exceptions.RedisError)


@dataclass(frozen=True, slots=True)
class WorkerTuning:
    """Timing knobs with production defaults; tests shorten them."""

    policies: RetryPolicies = DEFAULT_POLICIES
    http_timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)


@dataclass
class Runtime:
    config: Config
    broker: CallhookBroker
    redis: redis.asyncio.Redis
    store: RecordStore
    journal: Journal
    limiter: FleetRateLimiter
    dead_letters: DeadLetters
    policies: RetryPolicies
    http_timeout: httpx.Timeout
    _sinks: dict[str, Sink[Any]] = field(default_factory=dict)
    #: the start in flight per sink: every delivery waiting for that sink shares it
    _sink_starts: dict[str, asyncio.Task[Sink[Any]]] = field(default_factory=dict)
    #: each sink as made, kept across its start attempts until one succeeds
    _unstarted: dict[str, Sink[Any]] = field(default_factory=dict)
    _clients: dict[str, VendorClient] = field(default_factory=dict)
    #: every httpx client made for a vendor source or a sink (each with its own pool)
    _http_clients: list[httpx.AsyncClient] = field(default_factory=list)

    @classmethod
    def create(
        cls, config: Config, broker: CallhookBroker, tuning: WorkerTuning | None = None
    ) -> Runtime:
        # worker processes get no tuning: their schedules come from the config ([retries])
        tuning = tuning or WorkerTuning(policies=policies_from_config(config.retries))
        client = async_client(
            config.redis, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )
        namespace = config.redis.namespace
        journal = Journal(client, JournalSettings.from_config(config))
        return cls(
            config=config,
            broker=broker,
            http_timeout=tuning.http_timeout,
            redis=client,
            store=RecordStore(client, namespace, journal),
            journal=journal,
            limiter=FleetRateLimiter(client, namespace),
            dead_letters=DeadLetters(
                client,
                namespace,
                config.dead_letters,
                replicas=Replicas.from_config(config.redis),
            ),
            policies=tuning.policies,
        )

    def vendor(self, source: str) -> Vendor[Any]:
        return VENDORS[self.config.sources[source].vendor]

    def vendor_client(self, source: str) -> VendorClient:
        """The source's API client: a connection pool of its own (httpcore looks at every
        connection of a pool for each request: one pool per host keeps that short), behind
        the fleet-wide rate limit of the source."""
        client = self._clients.get(source)
        if client is None:
            settings = self.config.sources[source]
            limited = RateLimitedTransport(
                httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS),
                self.limiter,
                source,
                settings.rate_limit_per_s,
                owns_inner=True,
            )
            http = make_client(timeout=self.http_timeout, transport=limited)
            self._http_clients.append(http)
            client = self.vendor(source).client(settings, http)
            self._clients[source] = client
        return client

    async def sink(self, name: str) -> Sink[Any]:
        """The started sink named `name` (KeyError if the config has none by that name).

        One start at a time per sink, shared by every delivery that needs it meanwhile, and
        bounded by the sink's write budget (3 x `timeout_s`): a sink that cannot start (a
        database or bucket that is down) costs one attempt per retry wave, never holds
        another sink's deliveries back, and is tried again by the next delivery."""
        sink = self._sinks.get(name)
        if sink is not None:
            return sink
        starting = self._sink_starts.get(name)
        if starting is None:
            starting = asyncio.create_task(self._start_sink(name), name=f"start sink {name}")
            self._sink_starts[name] = starting
            starting.add_done_callback(lambda done: self._start_ended(name, done))
        # shielded: a delivery giving up on its own timeout leaves the start to the others
        return await asyncio.shield(starting)

    def _start_ended(self, name: str, done: asyncio.Task[Sink[Any]]) -> None:
        self._sink_starts.pop(name, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every delivery waiting may have timed out

    async def _start_sink(self, name: str) -> Sink[Any]:
        config = next(s for s in self.config.sinks if s.name == name)
        sink = self._unstarted.get(name)
        if sink is None:
            # a connection pool per sink, as per vendor source
            http = make_client(
                timeout=self.http_timeout,
                transport=httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS),
            )
            self._http_clients.append(http)
            resources = SinkResources(
                http,
                self.redis,
                self.config.redis.namespace,
                allow_private_networks=self.config.recordings.allow_private_networks,
            )
            sink = self._unstarted[name] = SINKS[config.type](config, resources)
        async with asyncio.timeout(config.timeout_s * 3):
            await sink.start()
        self._sinks[name] = self._unstarted.pop(name)
        return sink

    async def start_sinks(self) -> None:
        """Start every configured sink now, within its write budget (3 x `timeout_s`).

        A `ConfigError` (no such bucket, no credentials, a bad database URL) is raised:
        retrying cannot fix it. A sink that is unreachable now is logged as a warning and
        left unstarted; its first delivery starts it, retrying as usual."""
        for config in self.config.sinks:
            try:
                await self.sink(config.name)
            except TRANSIENT_START_ERRORS as exc:
                reason = exc.reason if isinstance(exc, RetryableError) else str(exc)
                log.warning(
                    "sink %s (%s) did not start (%s: %s); deliveries to it retry until it does",
                    config.name,
                    config.type,
                    type(exc).__name__,
                    reason or "timed out",
                    extra={"sink": config.name},
                )

    def has_sink(self, name: str) -> bool:
        return any(sink.name == name for sink in self.config.sinks)

    async def close(self) -> None:
        starting = list(self._sink_starts.values())
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        for sink in [*self._sinks.values(), *self._unstarted.values()]:
            await sink.close()
        for http in self._http_clients:
            await http.aclose()
        await self.redis.aclose()


_settings: tuple[Config, CallhookBroker, WorkerTuning | None] | None = None
_runtime: Runtime | None = None


def configure(config: Config, broker: CallhookBroker, tuning: WorkerTuning | None = None) -> None:
    """Set what the next `runtime()` builds from (once per process; tests per test)."""
    global _settings, _runtime
    _settings = (config, broker, tuning)
    _runtime = None


def runtime() -> Runtime:
    """This process's runtime, built on first use from `configure`'s settings."""
    global _runtime
    if _runtime is None:
        if _settings is None:
            raise RuntimeError("workers.runtime.configure() was not called")
        _runtime = Runtime.create(*_settings)
    return _runtime


async def start_sinks() -> None:
    """Start this process's sinks (see `Runtime.start_sinks`); run on the event-loop thread."""
    await runtime().start_sinks()


async def shutdown() -> None:
    global _runtime
    if _runtime is not None:
        await _runtime.close()
        _runtime = None
