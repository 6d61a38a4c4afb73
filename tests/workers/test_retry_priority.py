"""A sink that keeps failing does not hold the healthy ones back: its retries run from the
deliver stage's retry queue, and a worker takes every first attempt waiting before them.

One worker thread, a sink whose receiver answers 500 after 100 ms, and twenty calls whose
deliveries to it retry without pause: the worker is never idle. A new event must still
reach the healthy sink after at most a few of those retries, not behind all twenty."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from callhook.queues import DELIVER_RETRY_QUEUE, queue_key
from tests.servers import ServerThread
from tests.sinks._http_support import HOOK_PATH, SECRET
from tests.workers.harness import Pipeline, running_pipeline
from workers.retrying import RetryPolicies, RetryPolicy
from workers.runtime import WorkerTuning

BACKLOG_CALLS = 20
#: retries come due at once, so the failing sink always has work waiting
TUNING = WorkerTuning(
    policies=RetryPolicies(
        sink_transient=RetryPolicy(max_attempts=10_000, base_s=0.002, cap_s=0.002)
    ),
    http_timeout=httpx.Timeout(2.0, connect=1.0),
)


class FailingReceiver:
    """Answers every request with a 500 after `delay_s`, counting them."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await request.body()
        self.requests += 1
        await asyncio.sleep(self.delay_s)
        response: Response = PlainTextResponse("down", status_code=500)
        await response(scope, receive, send)


@pytest.fixture
def failing() -> Iterator[tuple[FailingReceiver, str]]:
    receiver = FailingReceiver(delay_s=0.1)
    with ServerThread(receiver) as server:
        yield receiver, server.url + HOOK_PATH


def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.01)


def post_call(pipeline: Pipeline) -> None:
    response = pipeline.post("diga", "call_finished", pipeline.new_call("diga"))
    assert response.status_code == 200, response.text


def test_first_attempts_for_a_healthy_sink_overtake_a_failing_sinks_retries(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    failing: tuple[FailingReceiver, str],
) -> None:
    receiver, url = failing
    down = {"name": "crm", "type": "http", "url": url, "secret": SECRET, "timeout_s": 2.0}
    with running_pipeline(
        tmp_path,
        redis_server_url,
        redis_namespace,
        worker_threads=1,
        tuning=TUNING,
        extra_sinks=[down],
    ) as pipeline:
        for _ in range(BACKLOG_CALLS):
            post_call(pipeline)
        pipeline.wait_for(BACKLOG_CALLS, timeout=30)
        # every call's delivery to the failing sink is now a retry, over and over
        wait_until(
            lambda: receiver.requests >= 3 * BACKLOG_CALLS, "the failing sink retried", timeout=30
        )
        retries_waiting = pipeline.redis.llen(queue_key(redis_namespace, DELIVER_RETRY_QUEUE))
        assert retries_waiting > BACKLOG_CALLS // 2, "the retries queue up on their own queue"

        before = receiver.requests
        post_call(pipeline)
        pipeline.wait_for(BACKLOG_CALLS + 1, timeout=10)
        # the new event's enrich and its healthy delivery waited for the retries being run
        # (one at a time, at most a couple held by the worker), not for the whole backlog
        overtaken = receiver.requests - before
        assert overtaken <= 5, f"the new event waited for {overtaken} retries of the failing sink"
