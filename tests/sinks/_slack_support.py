"""A loopback stand-in for Slack: an incoming webhook and `chat.postMessage`, answering the
way Slack does (plain-text codes for webhooks, `{"ok": false, "error": ...}` for the API),
plus scripted answers (429 + Retry-After, 500, invalid_payload...) queued by a test."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

WEBHOOK_PATH = "/services/T0CALLHOOK/B0CALLHOOK/webhooksecretpart"
BOT_TOKEN = "xoxb-1111-2222-bottokensecret"
CHANNEL = "C0CALLS"


@dataclass(frozen=True)
class Scripted:
    status: int
    body: str | dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        if isinstance(self.body, dict):
            return JSONResponse(self.body, self.status, headers=self.headers)
        return PlainTextResponse(self.body, self.status, headers=self.headers)


class FakeSlack:
    """`messages` holds every payload Slack accepted (as it would appear in the channel)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.requests = 0
        self.delay_s = 0.0
        #: set by the fixture that serves `app`
        self.base_url = ""
        # bumped by reset(): a slow request from an earlier test must not record into this one
        self._generation = 0
        self._script: deque[Scripted] = deque()
        self.app = Starlette(
            routes=[
                Route(WEBHOOK_PATH, self._webhook, methods=["POST"]),
                Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        self.messages.clear()
        self.requests = 0
        self.delay_s = 0.0
        self._script.clear()
        self._generation += 1

    def answer_next(
        self, status: int, body: str | dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """The next request gets this answer instead of Slack's normal behaviour."""
        self._script.append(Scripted(status, body, headers or {}))

    async def _receive(self, request: Request) -> tuple[Any, Response | None]:
        generation = self._generation
        body = await request.body()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if generation != self._generation:
            return None, PlainTextResponse("stale", 503)
        self.requests += 1
        if self._script:
            return None, self._script.popleft().response()
        try:
            return orjson.loads(body), None
        except orjson.JSONDecodeError:
            return None, PlainTextResponse("invalid_payload", 400)

    async def _webhook(self, request: Request) -> Response:
        payload, answer = await self._receive(request)
        if answer is not None:
            return answer
        problem = _problem(payload)
        if problem:
            return PlainTextResponse(problem, 400)
        self.messages.append(payload)
        return PlainTextResponse("ok")

    async def _post_message(self, request: Request) -> Response:
        payload, answer = await self._receive(request)
        if answer is not None:
            return answer
        if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if not isinstance(payload, dict) or payload.get("channel") != CHANNEL:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        problem = _problem(payload)
        if problem:
            return JSONResponse({"ok": False, "error": problem})
        self.messages.append(payload)
        return JSONResponse({"ok": True, "channel": CHANNEL, "ts": "1714572180.000100"})


def _problem(payload: Any) -> str | None:
    """The error code Slack gives a malformed message, or None."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    if not payload.get("text") and not payload.get("blocks"):
        return "no_text"
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        section_text = block.get("text", {}).get("text", "") if isinstance(block, dict) else ""
        if block.get("type") == "section" and len(section_text) > 3000:
            return "invalid_blocks"
    return None
