"""The two apps the ingress is measured against, served by Uvicorn as `callhook serve` is
(one process; uvloop and httptools when installed; no access log):

* `bare`: reads the body and answers 200. The ceiling of Starlette on Uvicorn on this box.
* `naive-send`: parses the body and calls a Dramatiq actor's `.send()` from the handler,
  the straightforward way to enqueue from a webhook (a synchronous Redis round trip on the
  event loop, no dedupe, no authentication).

Run one with `python -m bench.baselines bare --port 8001`, or `naive-send --port 8002
--redis-url redis://127.0.0.1:6379/0 --namespace bench-x` (its messages go under that key
prefix and nothing consumes them).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import dramatiq
import orjson
import uvicorn
from dramatiq.brokers.redis import RedisBroker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NAIVE_QUEUE = "bench.naive"


def bare_app() -> Starlette:
    """Reads the body, answers 200."""

    async def receive(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted"})

    return Starlette(routes=[Route("/webhooks/{source}", receive, methods=["POST"])])


def naive_send_app(redis_url: str, namespace: str) -> Starlette:
    """Parses the body and enqueues it with `actor.send()` on Dramatiq's Redis broker."""
    broker = RedisBroker(url=redis_url, namespace=namespace)

    def handle(source: str, payload: dict[str, Any]) -> None:
        """The consumer side, which this benchmark never runs: only `.send()` is measured."""

    actor = dramatiq.Actor(
        handle,
        broker=broker,
        actor_name=NAIVE_QUEUE,
        queue_name=NAIVE_QUEUE,
        priority=0,
        options={},
    )

    async def receive(request: Request) -> Response:
        payload = orjson.loads(await request.body())
        message = actor.send(request.path_params["source"], payload)
        return JSONResponse({"status": "accepted", "message_id": message.message_id})

    return Starlette(routes=[Route("/webhooks/{source}", receive, methods=["POST"])])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__)
    parser.add_argument("app", choices=["bare", "naive-send"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--namespace", default="bench-naive")
    args = parser.parse_args(argv)
    app = bare_app() if args.app == "bare" else naive_send_app(args.redis_url, args.namespace)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
