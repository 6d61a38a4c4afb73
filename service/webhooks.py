"""POST /webhooks/{source}: size cap → authenticate raw bytes → parse → accept → answer."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callhook import metrics
from callhook.errors import AcceptUnavailable, BodyTimeout, DeliveryRejected, PayloadTooLarge
from callhook.events import Delivery
from callhook.journal.tally import UNKNOWN_SOURCE
from service.accept import Outcome
from service.state import AppState

log = logging.getLogger("callhook.ingress")
rejected_log = logging.getLogger("callhook.ingress.rejected")
unsupported_log = logging.getLogger("callhook.ingress.unsupported")

#: seconds a vendor is asked to wait before retrying after a 503
RETRY_AFTER_S = 5


def answer(status_code: int, status: str, detail: str | None = None, **extra: str) -> Response:
    body: dict[str, str] = {"status": status, **extra}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status_code)


async def receive_webhook(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    source = request.path_params["source"]
    route = state.routes.get(source)
    if route is None:
        metrics.webhooks_total.labels("_unknown", "unknown_source").inc()
        state.tally.rejected(
            UNKNOWN_SOURCE,
            status=404,
            code="unknown_source",
            reason=f"no source named {source[:64]!r}",
            remote=request.client.host if request.client else None,
        )
        return answer(404, "not_found", "unknown source")
    extra = {"source": source}
    try:
        body = await read_capped(
            request, state.config.ingress.max_body_bytes, state.config.ingress.body_timeout_s
        )
        delivery = Delivery(body=body, headers=request.headers)
        route.vendor.authenticate(
            route.config,
            delivery,
            now=time.time(),
            tolerance_s=state.config.ingress.timestamp_tolerance_s,
        )
        event = route.vendor.parse(delivery)
    except DeliveryRejected as exc:
        metrics.webhooks_total.labels(source, exc.code).inc()
        remote = request.client.host if request.client else None
        rejected_log.warning(
            "rejected: %s",
            exc.reason,
            extra={**extra, "status": exc.status_code, "remote": remote},
        )
        state.tally.rejected(
            source, status=exc.status_code, code=exc.code, reason=exc.reason, remote=remote
        )
        detail = exc.reason if exc.status_code == 400 else None
        response = answer(exc.status_code, exc.code, detail)
        if isinstance(exc, BodyTimeout):
            response.headers["connection"] = "close"
        return response

    extra |= {"event_key": event.event_key, "call_id": event.call_id}
    if event.type is None:
        metrics.webhooks_total.labels(source, "ignored").inc()
        unsupported_log.info("ignored vendor event %s", event.vendor_type, extra=extra)
        return answer(
            200, "ignored", f"{event.vendor_type} is not a call event", event_key=event.event_key
        )

    started = time.perf_counter()
    try:
        outcome = await state.acceptor.accept(source, event, vendor=route.vendor.name)
    except AcceptUnavailable as exc:
        metrics.webhooks_total.labels(source, "unavailable").inc()
        log.error("accept failed, answering 503: %s", exc, extra=extra)
        response = answer(503, "unavailable", "try again later")
        response.headers["retry-after"] = str(RETRY_AFTER_S)
        return response
    metrics.ingress_accept_seconds.observe(time.perf_counter() - started)
    metrics.webhooks_total.labels(source, outcome.value).inc()
    state.tally.accepted(source, duplicate=outcome is Outcome.DUPLICATE)
    if outcome is Outcome.ACCEPTED:
        metrics.events_enqueued_total.labels(source, event.type.value).inc()
    # every accepted delivery is in the call's journal; its log line is on request only
    level = logging.INFO if state.config.ingress.log_accepted else logging.DEBUG
    if log.isEnabledFor(level):
        what = f"accepted {event.type.value}" if outcome is Outcome.ACCEPTED else "duplicate"
        log.log(level, what, extra={**extra, "type": event.type.value})
    return answer(200, outcome.value, event_key=event.event_key)


async def read_capped(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed `limit` bytes:
    from Content-Length before reading anything, else while streaming; and (408) when it
    has not all arrived within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"content-length {declared} exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"body not received within {timeout_s}s ({size} bytes came)") from None
    return b"".join(chunks)
