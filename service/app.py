"""The ingress application: `create_app(config)` → a Starlette app with its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio
import redis.exceptions
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from callhook.config import Config
from callhook.journal.tally import IngressTally
from callhook.journal.updates import JournalSettings
from callhook.replication import Replicas
from service import api
from service.accept import Acceptor
from service.access import Access
from service.console import pages
from service.health import healthz, metrics_endpoint, readyz
from service.insight import Insight
from service.openapi import openapi_endpoint
from service.state import AppState, enabled_routes, redis_client
from service.webhooks import receive_webhook

log = logging.getLogger("callhook.ingress")


def create_app(config: Config, *, client: redis.asyncio.Redis | None = None) -> Starlette:
    """The ingress app. `client` lets tests hand in a Redis client; else one is made."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis_conn = client or redis_client(config)
        routes = enabled_routes(config)
        tally = IngressTally(
            redis_conn, config.redis.namespace, timeout_s=config.journal.write_timeout_s
        )
        app.state.callhook = AppState(
            config=config,
            routes=routes,
            redis=redis_conn,
            acceptor=Acceptor(
                redis_conn,
                namespace=config.redis.namespace,
                dedupe_ttl_s=config.redis.dedupe_ttl_s,
                timeout_s=config.redis.accept_timeout_s,
                journal=JournalSettings.from_config(config),
                replicas=Replicas.from_config(config.redis),
            ),
            tally=tally,
        )
        if config.console.enabled:
            app.state.insight = Insight(config, redis_conn)
        announce_sources(config, sorted(routes))
        await warn_about_redis(redis_conn, config.redis.replicas_ack)
        flusher = asyncio.create_task(tally.run(), name="ingress-tally")
        try:
            yield
        finally:
            tally.stop()
            await flusher
            if client is None:
                await redis_conn.aclose()

    app = Starlette(
        routes=[
            Route("/webhooks/{source}", receive_webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
            *console_routes(config),
        ],
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan,
    )
    if config.console.enabled:
        app.state.console_access = Access(config.console)
    return app


def console_routes(config: Config) -> list[BaseRoute]:
    """The JSON API and the console, only when `[console] token` is set (else: 404)."""
    if not config.console.enabled:
        return []
    return [Mount("/api/v1", routes=api.routes()), Mount("/console", routes=pages.routes())]


def announce_sources(config: Config, enabled: list[str]) -> None:
    disabled = sorted(set(config.sources) - set(enabled))
    if not enabled:
        log.warning(
            "no vendor source is enabled: every /webhooks/... path answers 404 until one is "
            "configured (config: %s)",
            config.origin,
        )
    else:
        log.info("sources enabled: %s", ", ".join(enabled))
    if disabled:
        log.warning(
            "sources with empty webhook credentials (answering 404): %s", ", ".join(disabled)
        )


async def warn_about_redis(client: redis.asyncio.Redis, replicas_ack: int = 0) -> None:
    """Say at start when Redis could lose accepted events (no persistence, evicting policy),
    or cannot confirm any (fewer replicas connected than `replicas_ack`)."""
    if replicas_ack:
        try:
            connected = int((await client.info("replication")).get("connected_slaves", 0))
        except (redis.exceptions.RedisError, OSError, ValueError):
            connected = replicas_ack  # the accepts will say it soon enough
        if connected < replicas_ack:
            log.warning(
                "redis.replicas_ack is %d but the primary has %d replica(s) connected: "
                "accepts are answered 503 until enough replicas confirm them",
                replicas_ack,
                connected,
            )
    try:
        raw = await client.config_get("appendonly", "save", "maxmemory-policy")
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("cannot read redis persistence settings (%s); check them", type(exc).__name__)
        return
    settings = {_text(key): _text(value) for key, value in raw.items()}
    if settings.get("appendonly") != "yes" and not settings.get("save"):
        log.warning(
            "redis has no persistence (appendonly no, no save points): a Redis restart "
            "loses accepted events; use appendonly yes (see docs/guarantees.md)"
        )
    policy = settings.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        log.warning(
            "redis maxmemory-policy is %s: under memory pressure it may evict queued events; "
            "use noeviction",
            policy,
        )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"status": "error", "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"status": "error", "detail": "internal error"}, status_code=500)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
