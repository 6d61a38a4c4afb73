"""Outbound HTTP: client settings, Retry-After parsing, backoff, status classification, and
the two exchanges everything outbound goes through: a vendor API's GET (`get_json_object`)
and a sink's POST (`post`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Container, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from callhook.errors import (
    NotReadyYet,
    PermanentError,
    RateLimited,
    RetryableError,
)

#: connect fast, read patiently; vendor APIs answer in well under this.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
USER_AGENT = "Callhook/0.1 (+https://github.com/callhook/callhook)"
#: the most a vendor API answer may hold (decoded). Real answers are kilobytes; a bigger one
#: is refused as it streams in, so no answer (or gzip bomb) is ever read into memory whole.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: of an error answer only the start is read: enough for the vendor's error code
ERROR_BODY_BYTES = 65536
#: the longest one exchange with a vendor API may take, request sent to last byte read.
#: The per-read timeout alone lets a server that trickles a byte every few seconds hold a
#: worker for ever; real answers take well under a second.
VENDOR_DEADLINE_S = 30.0
#: httpcore trace events (its documented `trace` extension) that begin an exchange with the
#: server, and those that end one
_EXCHANGE_STARTS = (
    "connect_tcp.started",
    "connect_unix_socket.started",
    "send_request_headers.started",
)
_EXCHANGE_ENDS = ("response_closed.complete", ".failed")


def make_client(
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one httpx client a process uses for every vendor API and sink."""
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        transport=transport,
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if now is None:
        import time

        now = time.time()
    return max(0.0, when.timestamp() - now)


def backoff_s(attempt: int, *, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """Exponential backoff with full jitter for retry number `attempt` (0-based)."""
    ceiling = min(cap_s, base_s * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


def raise_for_upstream(
    response: httpx.Response,
    *,
    target: str,
    not_found_is_late: bool,
    peer: str | None = None,
    error_code: Callable[[httpx.Response], str | None] | None = None,
) -> None:
    """Raise the error class for a non-2xx answer; return on 2xx.

    `not_found_is_late`: a 404 means "the vendor has not caught up yet" (Get Call right after
    an event) rather than a permanent miss. The reason reads "{target} answered HTTP 503",
    or "{target}: {peer} answered HTTP 503" when `peer` names who answered, followed by the
    short error code `error_code` finds in the body (default `json_error_code`).
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    who = f"{target}: {peer}" if peer else target
    code = (error_code or json_error_code)(response)
    reason = f"{who} answered HTTP {status}" + (f" ({code[:64]})" if code else "")
    if status == 429:
        raise RateLimited(
            reason,
            target=target,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status == 404 and not_found_is_late:
        raise NotReadyYet(reason, target=target, status_code=status)
    if status in (408, 425) or status >= 500:
        raise RetryableError(
            reason,
            target=target,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    raise PermanentError(reason, target=target, status_code=status)


def json_error_code(response: httpx.Response) -> str | None:
    """A vendor's error code from a JSON body (`error.code`, `error_code` or `code`), if it
    has one; never the whole body."""
    try:
        body = orjson.loads(response.content[:ERROR_BODY_BYTES])
    except orjson.JSONDecodeError:
        return None
    code: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
        code = code or body.get("error_code") or body.get("code")
    return str(code)[:64] if code else None


def json_object(response: httpx.Response, *, target: str) -> dict[str, Any]:
    """The body of a 2xx answer as a JSON object, or a RetryableError saying what was wrong.

    A 2xx that is not a JSON object (an HTML error page from a proxy, a truncated body) is
    treated as transient: it is usually an intermediary's fault and clears by itself.
    """
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type", "unknown type")
        raise RetryableError(
            f"{target} answered HTTP {response.status_code} with a body that is not JSON ({kind})",
            target=target,
            status_code=response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise RetryableError(
            f"{target} answered with JSON that is not an object",
            target=target,
            status_code=response.status_code,
        )
    return body


async def get_json_object(
    http: httpx.AsyncClient,
    url: str,
    *,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    target: str,
    not_found_is_late: bool,
    deadline_s: float = VENDOR_DEADLINE_S,
) -> dict[str, Any]:
    """GET a vendor API's JSON object; every failure raised as its `callhook.errors` class
    (timeouts, an answer slower than `deadline_s`, unreachable hosts and corrupt encodings
    retryable, statuses by `raise_for_upstream`, a 2xx over `MAX_RESPONSE_BYTES`
    permanent)."""
    scope = asyncio.timeout(None)
    deadline = _ExchangeDeadline(scope, deadline_s)
    try:
        async with (
            scope,
            http.stream(
                "GET", url, params=params, headers=headers, extensions={"trace": deadline.trace}
            ) as response,
        ):
            content = await _read_capped(response, target=target)
    except TimeoutError:
        if not scope.expired():
            raise
        raise RetryableError(
            f"{target} answer took longer than {deadline_s:g} s", target=target
        ) from None
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{target} timed out ({type(exc).__name__})", target=target) from None
    except httpx.TransportError as exc:
        raise RetryableError(
            f"{target} unreachable ({type(exc).__name__})", target=target
        ) from None
    except httpx.DecodingError as exc:
        raise RetryableError(
            f"{target} answered a body that does not decode ({type(exc).__name__})",
            target=target,
            status_code=response.status_code,
        ) from None
    read = _as_read(response, content)
    raise_for_upstream(read, target=target, not_found_is_late=not_found_is_late)
    return json_object(read, target=target)


async def post(
    http: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    target: str,
    peer: str,
    timeout_s: float,
    error_code: Callable[[httpx.Response], str | None] | None = None,
    own_statuses: Container[int] = (),
) -> httpx.Response:
    """POST `content` to a sink's `url` and return the answer, its body read, when it is a
    2xx or its status is in `own_statuses` (which the caller classifies itself).

    `timeout_s` bounds the whole exchange, from waiting for a connection to the answer's last
    byte. Every failure is raised as its `callhook.errors` class, the reason naming `target`
    and `peer` (who answers: "the receiver", "Slack") and never the URL, which may be a
    secret: a timeout or an unreachable host is retryable; other statuses are classified by
    `raise_for_upstream`, with the error code `error_code` finds (default
    `json_error_code`). Redirects are never followed. The body is read as for GETs (an error
    answer's start, a 2xx one up to `MAX_RESPONSE_BYTES`, cut there: the request was
    accepted); one that does not decode counts as empty, since the status is the answer.
    """
    scope = asyncio.timeout(timeout_s)
    try:
        async with (
            scope,
            http.stream(
                "POST",
                url,
                content=content,
                headers=headers,
                timeout=timeout_s,
                follow_redirects=False,
            ) as response,
        ):
            try:
                body = await _read_capped(response, target=target, cut=True)
            except httpx.DecodingError:
                body = b""
    except (TimeoutError, httpx.TimeoutException) as exc:
        if isinstance(exc, TimeoutError) and not scope.expired():
            raise
        raise RetryableError(
            f"{target}: {peer} did not answer within {timeout_s}s", target=target
        ) from None
    except httpx.TransportError as exc:
        raise RetryableError(
            f"{target}: could not reach {peer} ({type(exc).__name__})", target=target
        ) from None
    answer = _as_read(response, body)
    if answer.status_code not in own_statuses:
        raise_for_upstream(
            answer, target=target, not_found_is_late=False, peer=peer, error_code=error_code
        )
    return answer


def _as_read(response: httpx.Response, content: bytes) -> httpx.Response:
    """A streamed `response` with `content`, its body as read (already decoded): without the
    headers that described the transfer."""
    kept = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=kept, content=content, request=response.request
    )


class _ExchangeDeadline:
    """Bounds each exchange with the server to `seconds`, from connecting (or sending the
    request on a kept-alive connection) to the answer's last byte, armed and disarmed by
    httpcore's trace events. What comes before an exchange does not count: waiting for a
    fleet-wide rate-limit slot, for a pooled connection, or out a retry's backoff (the
    transports under the client may retry a request in place, each try bounded anew)."""

    def __init__(self, scope: asyncio.Timeout, seconds: float) -> None:
        self.scope = scope
        self.seconds = seconds

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if self.scope.expired():
            return  # unwinding after the deadline: the scope can no longer be changed
        if event.endswith(_EXCHANGE_STARTS):
            if self.scope.when() is None:
                self.scope.reschedule(asyncio.get_running_loop().time() + self.seconds)
        elif event.endswith(_EXCHANGE_ENDS):
            self.scope.reschedule(None)


async def _read_capped(response: httpx.Response, *, target: str, cut: bool = False) -> bytes:
    """The decoded body: a 2xx one up to `MAX_RESPONSE_BYTES` (over it, `PermanentError`:
    the same request would bring the same answer; with `cut`, the body read so far), an error
    one cut at `ERROR_BODY_BYTES`."""
    ok = 200 <= response.status_code < 300
    declared = response.headers.get("content-length", "")
    too_big = f"{target} answered more than {MAX_RESPONSE_BYTES} bytes"
    plain = "content-encoding" not in response.headers
    if ok and plain and not cut and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise PermanentError(too_big, target=target, status_code=response.status_code)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if (not ok and size >= ERROR_BODY_BYTES) or (cut and size > MAX_RESPONSE_BYTES):
            break
        if size > MAX_RESPONSE_BYTES:
            raise PermanentError(too_big, target=target, status_code=response.status_code)
    return b"".join(chunks)
