"""callhook.deliver: one sink, one call, one trigger → `sink.write(current record)`.

Takes keys, not records: the record is read from the store when the delivery runs, so a
retry or replay always writes the newest state. One message per sink, so one failing sink
never repeats another; its retries run from `callhook.deliver.retry`, behind every first
attempt, so it does not hold the others back either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from callhook import metrics
from callhook.errors import CallhookError, ConfigError, PermanentError, RetryableError
from callhook.events import EventType
from callhook.lenient import iso_utc
from callhook.queues import DELIVER_ACTOR, DELIVER_QUEUE
from callhook.record import utc_now_iso
from callhook.sinks.base import Trigger
from workers.retrying import retry_later
from workers.runtime import Runtime, runtime

log = logging.getLogger("callhook.workers.deliver")


async def deliver(
    *,
    sink: str,
    source: str,
    call_id: str,
    event_key: str,
    type: str,
    received_at: float,
    payload: dict[str, Any] | None = None,
    attempt: int = 0,
) -> None:
    kwargs = {
        "sink": sink,
        "source": source,
        "call_id": call_id,
        "event_key": event_key,
        "type": type,
        "received_at": received_at,
        "payload": payload,
        "attempt": attempt,
    }
    rt = runtime()
    context = {"source": source, "call_id": call_id, "event_key": event_key, "sink": sink}
    if not rt.has_sink(sink):
        await dead_letter(rt, kwargs, f"sink {sink!r} is no longer configured")
        return
    record = await rt.store.get(source, call_id)
    if record is None:
        await dead_letter(rt, kwargs, "the call record expired from the store before delivery")
        return
    trigger = Trigger(
        event_key=event_key,
        event_type=EventType(type),
        received_at=iso_utc(received_at) or utc_now_iso(),
        payload=payload,
    )
    started = time.perf_counter()
    try:
        target = await rt.sink(sink)
        async with asyncio.timeout(target.config.timeout_s * 3):
            await target.write(record.to_json_dict(), trigger)
    except ConfigError as exc:
        await dead_letter(rt, kwargs, f"sink cannot start: {exc}")
        return
    except PermanentError as exc:
        await dead_letter(rt, kwargs, exc.reason)
        return
    except RetryableError as exc:
        await retry_or_dead_letter(rt, kwargs, exc.reason, exc.retry_after, context)
        return
    except TimeoutError:
        await retry_or_dead_letter(rt, kwargs, "sink write timed out", None, context)
        return
    except CallhookError as exc:
        await dead_letter(rt, kwargs, f"{type_name(exc)}: {exc}")
        return
    except OSError as exc:  # a connection refused while a sink starts up
        await retry_or_dead_letter(rt, kwargs, f"{type_name(exc)}: {exc}", None, context)
        return
    finally:
        metrics.sink_seconds.labels(sink).observe(time.perf_counter() - started)
    metrics.sink_deliveries_total.labels(sink, "ok").inc()
    metrics.end_to_end_seconds.labels(sink).observe(max(0.0, time.time() - received_at))
    log.info("delivered %s (revision %d)", type, record.revision, extra=context)


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


async def retry_or_dead_letter(
    rt: Runtime,
    kwargs: dict[str, Any],
    reason: str,
    retry_after: float | None,
    context: dict[str, Any],
) -> None:
    attempt = int(kwargs["attempt"])
    if rt.policies.sink_transient.exhausted(attempt):
        await dead_letter(rt, kwargs, f"gave up after {attempt + 1} attempts: {reason}")
        return
    delay = rt.policies.sink_transient.delay_s(attempt, retry_after)
    metrics.sink_deliveries_total.labels(kwargs["sink"], "retry").inc()
    log.warning("retrying in %.1fs: %s", delay, reason, extra={**context, "attempt": attempt})
    await retry_later(rt.broker, DELIVER_QUEUE, {**kwargs, "attempt": attempt + 1}, delay)


async def dead_letter(rt: Runtime, kwargs: dict[str, Any], reason: str) -> None:
    entry = await rt.dead_letters.add(
        queue=DELIVER_QUEUE,
        actor=DELIVER_ACTOR,
        kwargs=kwargs,
        reason=reason,
        attempts=int(kwargs["attempt"]) + 1,
        sink=kwargs["sink"],
    )
    metrics.sink_deliveries_total.labels(kwargs["sink"], "dead_letter").inc()
    log.error(
        "dead-lettered: %s",
        reason,
        extra={
            "source": kwargs["source"],
            "call_id": kwargs["call_id"],
            "event_key": kwargs["event_key"],
            "sink": kwargs["sink"],
            "dead_letter": entry.id,
        },
    )
