"""The loopback outside world a chaos scenario controls from the test process: the vendor API
simulators (every request timed), Slack-like and HTTP receivers behind a switchable outage,
and a TCP proxy that takes a server off the network without losing its state."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tests.sinks._database_support import TcpProxy


class Timed:
    """Notes the wall-clock time of every HTTP request `app` gets, by first path segment
    (the vendor: the sandbox mounts each simulated API at /<vendor>)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.times: dict[str, list[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            vendor = str(scope["path"]).strip("/").split("/", 1)[0]
            self.times.setdefault(vendor, []).append(time.time())
        await self.app(scope, receive, send)


def max_per_second(times: list[float]) -> int:
    """The most requests seen in any one-second window starting at a request."""
    return max_in_window(times, 1.0)


def max_in_window(times: list[float], window_s: float) -> int:
    """The most requests seen in any `window_s`-long window ending at a request."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class Outage:
    """While `active`, answers every request itself, alternating 500 and 429 + Retry-After
    (as a struggling service does), without passing it to `app`."""

    def __init__(self, app: ASGIApp, retry_after_s: int = 1) -> None:
        self.app = app
        self.active = False
        self.retry_after_s = retry_after_s
        self.answered: Counter[int] = Counter()
        self._next = itertools.cycle((500, 429))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.active:
            await self.app(scope, receive, send)
            return
        status = next(self._next)
        self.answered[status] += 1
        headers = [(b"content-type", b"text/plain")]
        if status == 429:
            headers.append((b"retry-after", str(self.retry_after_s).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"chaos outage"})


class LoopThread:
    """An asyncio loop on a daemon thread, for the proxies."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class Partition:
    """A TCP proxy to 127.0.0.1:`upstream_port`: `cut()` refuses and drops connections as a
    server that went down would, `heal()` listens again on the same port; the server behind
    keeps its state (moto's S3 keeps objects only in memory, so it must not be killed)."""

    def __init__(self, loop: LoopThread, upstream_port: int) -> None:
        self._loop = loop
        self._proxy = TcpProxy("127.0.0.1", upstream_port)
        loop.run(self._proxy.open())
        self.port = self._proxy.port

    def cut(self) -> None:
        self._loop.run(self._proxy.close())

    def heal(self) -> None:
        self._loop.run(self._proxy.open())
