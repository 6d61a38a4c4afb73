"""A loopback vendor API whose every answer is set by the test: any status, headers and
body, a body streamed without end (bounded), or a realistic answer with fields replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

#: how much an endless body may send before the server gives up (the client must stop first)
ENDLESS_LIMIT_BYTES = 128 * 1024 * 1024


@dataclass
class Canned:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    #: stream `body` repeated until ENDLESS_LIMIT_BYTES, with no content-length
    endless: bool = False


@dataclass
class AnswerBox:
    """What the server answers to every request; tests change `canned` between calls."""

    canned: Canned = field(default_factory=Canned)
    #: (path, body bytes; -1 for an endless body) per request
    served: list[tuple[str, int]] = field(default_factory=list)


def canned_app(box: AnswerBox) -> Starlette:
    async def answer(request: Request) -> Response:
        canned = box.canned
        if canned.endless:

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(ENDLESS_LIMIT_BYTES // max(len(canned.body), 1)):
                    yield canned.body

            box.served.append((request.url.path, -1))
            return StreamingResponse(chunks(), status_code=canned.status, headers=canned.headers)
        box.served.append((request.url.path, len(canned.body)))
        return Response(canned.body, status_code=canned.status, headers=canned.headers)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET"])])
