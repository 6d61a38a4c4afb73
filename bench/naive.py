"""The naive pipeline `make bench-e2e` measures Callhook against: the same calls, the same
vendor API simulators and the same sinks, with the simplest code doing the same I/O.

For each delivery, inside the request: find the call's id, GET the call (and what the
event type calls for) from the vendor's API, upsert a row in PostgreSQL, PUT the object in
S3, POST it to the receiver, then answer 200. No authentication, no dedupe, no merge, no
once-marks, no retries, no queue: a delivery that fails is simply lost. It takes its
sinks from a Callhook config (the benchmark's own) and serves on Uvicorn with as many
processes as Callhook's workers get.

    python -m bench.naive --config callhook.toml --port 9104 --processes 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import uvicorn
from aiobotocore.session import get_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callhook.config import load_config
from callhook.events import Delivery
from callhook.vendors import VENDORS

CONFIG_VARIABLE = "BENCH_NAIVE_CONFIG"
TABLE = """
CREATE TABLE IF NOT EXISTS naive_calls (
  source text, call_id text, doc jsonb, updated_at timestamptz,
  PRIMARY KEY (source, call_id)
)
"""
UPSERT = """
INSERT INTO naive_calls (source, call_id, doc, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (source, call_id) DO UPDATE SET doc = excluded.doc, updated_at = now()
"""


def app() -> Starlette:
    """One process's app (Uvicorn's factory): its clients are made in the lifespan."""
    config = load_config(os.environ[CONFIG_VARIABLE], sandbox=False)
    sinks = {sink.type: sink for sink in config.sinks}
    s3, http_sink, database = sinks["s3"], sinks["http"], sinks.get("database")
    clients: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
            clients["http"] = http
            clients["vendors"] = {
                name: VENDORS[source.vendor].client(source, http)
                for name, source in config.sources.items()
            }
            clients["s3"] = await stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    endpoint_url=getattr(s3, "endpoint_url", None),
                    region_name="us-east-1",
                )
            )
            if database is not None:
                dsn = str(getattr(database, "url", "")).replace("+asyncpg", "")
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=16)
                stack.push_async_callback(pool.close)
                await pool.execute(TABLE)
                clients["database"] = pool
            yield

    async def receive(request: Request) -> Response:
        source = request.path_params["source"]
        settings = config.sources[source]
        vendor = VENDORS[settings.vendor]
        event = vendor.parse(Delivery(await request.body(), request.headers))
        if event.type is None or event.call_id is None:
            return Response(status_code=200)
        fetched = await clients["vendors"][source].fetch(event.call_id, event.type)
        doc = orjson.dumps(
            {
                "source": source,
                "call_id": event.call_id,
                "type": event.type,
                "call": fetched.call,
                "extras": fetched.extras,
            }
        )
        if "database" in clients:
            await clients["database"].execute(UPSERT, source, event.call_id, doc.decode())
        await clients["s3"].put_object(
            Bucket=getattr(s3, "bucket", ""),
            Key=f"naive/{source}/{event.call_id}.json",
            Body=doc,
            ContentType="application/json",
        )
        await clients["http"].post(str(getattr(http_sink, "url", "")), content=doc)
        return Response(status_code=200)

    return Starlette(
        routes=[Route("/webhooks/{source}", receive, methods=["POST"])], lifespan=lifespan
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ[CONFIG_VARIABLE] = args.config
    uvicorn.run(
        "bench.naive:app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.processes,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
