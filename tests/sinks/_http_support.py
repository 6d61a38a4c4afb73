"""A loopback webhook receiver that verifies Standard Webhooks signatures the way a real
receiver would (`standardwebhooks.webhooks.Webhook(secret).verify`), records every
attempt, and answers with scripted statuses (410, 429, 302...) when a test queues them."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

#: the Standard Webhooks spec's own test secret
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK_PATH = "/hooks/calls"
MOVED_PATH = "/moved"


@dataclass(frozen=True)
class Attempt:
    """One request as the receiver saw it; `payload` is None when verification failed."""

    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any


@dataclass(frozen=True)
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class Receiver:
    """`attempts` holds every request; `delivered` the verified ones answered with 2xx."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.delivered: list[Attempt] = []
        self.delay_s = 0.0
        #: when set, every verified request is answered with this status (a receiver that
        #: is broken until a test "fixes" it by setting None)
        self.failing_status: int | None = None
        #: set by the fixture that serves `app`
        self.base_url = ""
        # bumped by reset(): a slow request from an earlier test must not record into this one
        self._generation = 0
        self._script: deque[Scripted] = deque()
        self._verifier = Webhook(SECRET)
        self.app = Starlette(
            routes=[
                Route(HOOK_PATH, self._hook, methods=["POST"]),
                Route(MOVED_PATH, self._hook, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        self.attempts.clear()
        self.delivered.clear()
        self.delay_s = 0.0
        self.failing_status = None
        self._script.clear()
        self._generation += 1

    def answer_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._script.append(Scripted(status, headers or {}, body=f"scripted {status}"))

    async def _hook(self, request: Request) -> Response:
        generation = self._generation
        body = await request.body()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if generation != self._generation:
            return PlainTextResponse("stale", 503)
        headers = dict(request.headers)
        try:
            payload = self._verifier.verify(body, headers)
        except WebhookVerificationError:
            payload = None
        attempt = Attempt(request.url.path, headers, body, payload)
        self.attempts.append(attempt)
        if payload is None:
            return PlainTextResponse("bad signature", 401)
        if self.failing_status is not None:
            return PlainTextResponse("broken", self.failing_status)
        if self._script:
            scripted = self._script.popleft()
            return PlainTextResponse(scripted.body, scripted.status, headers=scripted.headers)
        self.delivered.append(attempt)
        return JSONResponse({"received": True})
