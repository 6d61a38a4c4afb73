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
from callhook.sinks.base import Trigger, WriteResult
from workers.journaling import note_deliver
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
    attempt_run = AttemptRun(rt, kwargs, context)
    if not rt.has_sink(sink):
        await attempt_run.dead_letter(f"sink {sink!r} is no longer configured")
        return
    record = await rt.store.get_wire(source, call_id)
    if record is None:
        await attempt_run.dead_letter("the call record expired from the store before delivery")
        return
    trigger = Trigger(
        event_key=event_key,
        event_type=EventType(type),
        received_at=iso_utc(received_at) or utc_now_iso(),
        payload=payload,
    )
    attempt_run.start()
    try:
        target = await rt.sink(sink)
        async with asyncio.timeout(target.config.timeout_s * 3):
            result = await target.write(record, trigger)
    except ConfigError as exc:
        await attempt_run.dead_letter(f"sink cannot start: {exc}", exc)
        return
    except PermanentError as exc:
        await attempt_run.dead_letter(exc.reason, exc)
        return
    except RetryableError as exc:
        await attempt_run.retry_or_dead_letter(exc.reason, exc.retry_after, exc)
        return
    except TimeoutError as exc:
        await attempt_run.retry_or_dead_letter("sink write timed out", None, exc)
        return
    except CallhookError as exc:
        await attempt_run.dead_letter(f"{type_name(exc)}: {exc}", exc)
        return
    except OSError as exc:  # a connection refused while a sink starts up
        await attempt_run.retry_or_dead_letter(f"{type_name(exc)}: {exc}", None, exc)
        return
    finally:
        metrics.sink_seconds.labels(sink).observe(attempt_run.elapsed_s())
    metrics.sink_deliveries_total.labels(sink, result.value).inc()
    metrics.end_to_end_seconds.labels(sink).observe(max(0.0, time.time() - received_at))
    await attempt_run.note(result.value)
    if result is WriteResult.WRITTEN:
        log.info("delivered %s (revision %s)", type, record.get("revision"), extra=context)


class AttemptRun:
    """One delivery attempt's timing and its endings: each is counted, logged and journaled
    (workers/journaling.py) before a retry is enqueued."""

    def __init__(self, rt: Runtime, kwargs: dict[str, Any], context: dict[str, Any]) -> None:
        self.rt = rt
        self.kwargs = kwargs
        self.context = context
        self.started_ms = int(time.time() * 1000)
        self._started = time.perf_counter()

    def start(self) -> None:
        self.started_ms = int(time.time() * 1000)
        self._started = time.perf_counter()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._started

    async def note(
        self,
        outcome: str,
        *,
        error: BaseException | None = None,
        reason: str | None = None,
        retry_in_s: float | None = None,
        dead_letter: str | None = None,
    ) -> None:
        await note_deliver(
            self.rt,
            self.kwargs,
            outcome,
            started_ms=self.started_ms,
            duration_ms=self.elapsed_s() * 1000,
            error=error,
            reason=reason,
            retry_in_s=retry_in_s,
            dead_letter=dead_letter,
        )

    async def retry_or_dead_letter(
        self, reason: str, retry_after: float | None, error: BaseException
    ) -> None:
        rt, kwargs = self.rt, self.kwargs
        attempt = int(kwargs["attempt"])
        if rt.policies.sink_transient.exhausted(attempt):
            await self.dead_letter(f"gave up after {attempt + 1} attempts: {reason}", error)
            return
        delay = rt.policies.sink_transient.delay_s(attempt, retry_after)
        metrics.sink_deliveries_total.labels(kwargs["sink"], "retry").inc()
        log.warning(
            "retrying in %.1fs: %s", delay, reason, extra={**self.context, "attempt": attempt}
        )
        await self.note("retry", error=error, reason=reason, retry_in_s=delay)
        await retry_later(rt.broker, DELIVER_QUEUE, {**kwargs, "attempt": attempt + 1}, delay)

    async def dead_letter(self, reason: str, error: BaseException | None = None) -> None:
        kwargs = self.kwargs
        entry = await self.rt.dead_letters.add(
            queue=DELIVER_QUEUE,
            actor=DELIVER_ACTOR,
            kwargs=kwargs,
            reason=reason,
            attempts=int(kwargs["attempt"]) + 1,
            sink=kwargs["sink"],
        )
        metrics.sink_deliveries_total.labels(kwargs["sink"], "dead_letter").inc()
        log.error("dead-lettered: %s", reason, extra={**self.context, "dead_letter": entry.id})
        await self.note("dead_letter", error=error, reason=reason, dead_letter=entry.id)


def type_name(exc: BaseException) -> str:
    return type(exc).__name__
