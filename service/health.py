"""GET /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import logging

import redis.exceptions
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callhook import metrics
from callhook.queues import QUEUES, STAGES, dlq_index_key, queue_key
from callhook.redis_connect import ping_primary
from service.state import AppState

log = logging.getLogger("callhook.ingress")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when the Redis primary answers, naming it (`redis_primary`: `host:port`, the
    server this process writes to now; after a Sentinel failover, the new one)."""
    state: AppState = request.app.state.callhook
    try:
        async with asyncio.timeout(state.config.redis.accept_timeout_s):
            primary = await ping_primary(state.redis)
    except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
        return JSONResponse(
            {"status": "unavailable", "detail": f"redis: {type(exc).__name__}"}, status_code=503
        )
    return JSONResponse({"status": "ok", "redis_primary": primary})


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text (every ingress process's, under `callhook serve --workers N`); queue
    depths and dead-letter counts are read from Redis now."""
    state: AppState = request.app.state.callhook
    namespace = state.config.redis.namespace
    try:
        async with asyncio.timeout(state.config.redis.accept_timeout_s):
            async with state.redis.pipeline(transaction=False) as pipe:
                for queue in QUEUES:
                    pipe.llen(queue_key(namespace, queue))
                for stage in STAGES:
                    pipe.zcard(dlq_index_key(namespace, stage))
                counts = await pipe.execute()
        for queue, depth in zip(QUEUES, counts[: len(QUEUES)], strict=True):
            metrics.queue_depth.labels(queue).set(depth)
        for stage, dead in zip(STAGES, counts[len(QUEUES) :], strict=True):
            metrics.dead_letters.labels(stage).set(dead)
    except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
        log.warning("metrics: could not read queue depths from redis: %s", type(exc).__name__)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
