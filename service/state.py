"""What the ingress process holds for its lifetime, built once from the config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from callhook.config import Config
from callhook.journal.tally import IngressTally
from callhook.redis_connect import async_client
from callhook.vendors import VENDORS
from callhook.vendors.base import SourceConfig, Vendor
from service.accept import Acceptor


@dataclass(frozen=True, slots=True)
class SourceRoute:
    """A configured, enabled source: its settings and its vendor's logic."""

    name: str
    config: SourceConfig
    vendor: Vendor[Any]


@dataclass(frozen=True, slots=True)
class AppState:
    config: Config
    routes: Mapping[str, SourceRoute]
    redis: redis.asyncio.Redis
    acceptor: Acceptor
    tally: IngressTally


def enabled_routes(config: Config) -> dict[str, SourceRoute]:
    """Sources whose webhook credentials are set; the others answer 404 like unknown ones."""
    return {
        name: SourceRoute(name, source, VENDORS[source.vendor])
        for name, source in config.sources.items()
        if source.webhook_enabled()
    }


def redis_client(config: Config) -> redis.asyncio.Redis:
    """The ingress's Redis client: short socket timeouts so an outage turns into fast 503s."""
    bound = config.redis.accept_timeout_s
    return async_client(
        config.redis,
        socket_connect_timeout=bound,
        socket_timeout=bound,
        max_connections=256,
        health_check_interval=30,
    )
