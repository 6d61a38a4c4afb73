"""Uvicorn's httptools protocol with the limits it lacks: a cap on the request head and
deadlines on reading the head and the body.

Uvicorn bounds neither the size of a request's head nor the time a client takes to send
it (its keep-alive timer runs only between requests, and any byte received stops it), so
one client trickling its headers, or a body nobody reads, holds a connection forever.
Here each connection gets:

* a head deadline, from the connection opening or a request's first byte to the end of its
  headers: when it passes the connection is closed, with a 408 if part of a head came;
* a cap on the head (request line and headers): beyond it, 431 and the connection closed,
  before anything reaches the application;
* a body deadline, from the end of the headers to the end of the body: the webhook route
  answers 408 by itself (service/webhooks.py); here the connection is then not kept alive,
  and one whose body is still arriving after its answer was sent is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

rejected_log = logging.getLogger("callhook.ingress.rejected")

#: what the wire adds around each header's name and value (": " and CRLF)
_HEADER_OVERHEAD = 4


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int
    head_timeout_s: float
    body_timeout_s: float


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the cap."""


class GuardedProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with `limits` enforced (see the module docstring)."""

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._head_bytes = 0  # of the current head, as parsed
        self._unparsed_bytes = 0  # received since the last head ended, while one is awaited
        self._awaiting_head = True
        self._head_started = False
        self._body_pending = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # --- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # a refusal was written and the connection is closing
        if self._awaiting_head:
            self._unparsed_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        # Deadlines are armed only for what this chunk left unfinished: a request that
        # comes whole in one read costs no timer.
        if self._awaiting_head:
            # httptools buffers a header until its line ends: the callbacks alone would
            # let one endless header line grow without bound
            if self._unparsed_bytes > self.limits.max_head_bytes:
                self._head_too_large()
            elif self._head_started and self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.limits.head_timeout_s, self._head_too_slow
                )
        elif self._body_pending and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_too_slow)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers 400 to any parser error; a callback's HeadTooLarge is one
        if self._head_bytes > self.limits.max_head_bytes:
            self._head_too_large()
            return
        super().send_400_response(msg)

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_started = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + _HEADER_OVERHEAD)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        self._awaiting_head = self._head_started = False
        self._unparsed_bytes = 0
        self._body_pending = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_body_deadline()
        self._body_pending = False
        self._awaiting_head = True
        super().on_message_complete()

    # --- the limits ---------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_head_bytes:
            raise HeadTooLarge

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_deadline(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_started:
            self.transport.close()  # nothing came: an idle connection, not a refusal
            return
        rejected_log.warning(
            "request head not received within %ss: answered 408",
            self.limits.head_timeout_s,
            extra=self._peer(408),
        )
        self._refuse(408, "Request Timeout")

    def _head_too_large(self) -> None:
        rejected_log.warning(
            "request head over %d bytes: answered 431",
            self.limits.max_head_bytes,
            extra=self._peer(431),
        )
        self._refuse(431, "Request Header Fields Too Large")

    def _body_too_slow(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or self.transport.is_closing():
            return
        # the application answers (the webhook route with 408); the connection ends after it
        cycle.keep_alive = False
        if cycle.response_complete:
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` and close, bypassing the application (it has seen nothing)."""
        self._refused = True
        self._cancel_head_deadline()
        self._cancel_body_deadline()
        body = reason.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        self.transport.close()

    def _peer(self, status: int) -> dict[str, object]:
        return {"remote": self.client[0] if self.client else None, "status": status}


def guarded_protocol(limits: Limits) -> functools.partial[GuardedProtocol]:
    """What to pass as Uvicorn's `http`: a picklable factory, for `--workers` > 1."""
    return functools.partial(GuardedProtocol, limits=limits)
