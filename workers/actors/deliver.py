"""callhook.deliver: one call, one trigger → `sink.write(current record)` for its sinks.

Takes keys, not records: the record is read from the store when the delivery runs, so a
retry or replay always writes the newest state. A first attempt is one message per event
naming every sink it is routed to (`sinks`): the record is read once and the sinks are
written concurrently, each with its own timeout, outcome, journal entry and metrics. A
sink that fails gets a message of its own (`sink`) on `callhook.deliver.retry`, which
runs behind every first attempt: one failing sink never repeats another, nor holds the
others back. Dead letters, replays and retries are per sink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis.exceptions

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

#: seconds before retrying a sink whose attempt a Redis outage cut short
REDIS_OUTAGE_RETRY_S = 5.0


async def deliver(
    *,
    source: str,
    call_id: str,
    event_key: str,
    type: str,
    received_at: float,
    payload: dict[str, Any] | None = None,
    attempt: int = 0,
    sink: str | None = None,
    sinks: Sequence[str] | None = None,
    revision: int | None = None,
) -> None:
    """Deliver to `sinks` (a first attempt) or to `sink` (a retry, a replay). `revision`
    is the record's when the delivery was enqueued: when a newer delivery of the call to a
    sink that `coalesces` is enqueued too, this one leaves the call's state to it."""
    names = list(sinks) if sinks is not None else [sink] if sink is not None else []
    common = {
        "source": source,
        "call_id": call_id,
        "event_key": event_key,
        "type": type,
        "received_at": received_at,
        "payload": payload,
        "attempt": attempt,
        "revision": revision,
    }
    rt = runtime()
    runs = [
        AttemptRun(
            rt,
            {"sink": name, **common},
            {"source": source, "call_id": call_id, "event_key": event_key, "sink": name},
        )
        for name in names
    ]
    record, latest = await rt.store.for_delivery(source, call_id)
    trigger = Trigger(
        event_key=event_key,
        event_type=EventType(type),
        received_at=iso_utc(received_at) or utc_now_iso(),
        payload=payload,
    )

    def superseded(name: str) -> bool:
        return revision is not None and latest.get(name, 0) > revision

    await asyncio.gather(
        *(
            run.deliver(record, replace(trigger, superseded=superseded(name)))
            for name, run in zip(names, runs, strict=True)
        )
    )


class AttemptRun:
    """One sink's delivery attempt: the write, its timing and its endings, each counted,
    logged and journaled (workers/journaling.py) before a retry is enqueued."""

    def __init__(self, rt: Runtime, kwargs: dict[str, Any], context: dict[str, Any]) -> None:
        self.rt = rt
        self.kwargs = kwargs
        self.context = context
        self.started_ms = int(time.time() * 1000)
        self._started = time.perf_counter()

    def start(self) -> None:
        self.started_ms = int(time.time() * 1000)
        self._started = time.perf_counter()

    async def deliver(self, record: dict[str, Any] | None, trigger: Trigger) -> None:
        """Write `record` to this run's sink and see the attempt to its end. A Redis outage
        in the middle re-enqueues this sink's work alone; any other unexpected error
        dead-letters it with the error as the reason: the other sinks' attempts go on."""
        name = self.kwargs["sink"]
        try:
            await self._deliver(record, trigger)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning(
                "redis failed mid-delivery (%s); re-enqueueing the work",
                type(exc).__name__,
                extra=self.context,
            )
            await retry_later(self.rt.broker, DELIVER_QUEUE, self.kwargs, REDIS_OUTAGE_RETRY_S)
        except Exception as exc:
            log.exception("unexpected error; dead-lettering the work", extra=self.context)
            await self.dead_letter(f"unexpected {type(exc).__name__}: {exc}", exc)
        finally:
            metrics.sink_seconds.labels(name).observe(self.elapsed_s())

    async def _deliver(self, record: dict[str, Any] | None, trigger: Trigger) -> None:
        rt, name = self.rt, self.kwargs["sink"]
        if not rt.has_sink(name):
            await self.dead_letter(f"sink {name!r} is no longer configured")
            return
        if record is None:
            await self.dead_letter("the call record expired from the store before delivery")
            return
        self.start()
        try:
            target = await rt.sink(name)
            async with asyncio.timeout(target.config.timeout_s * 3):
                result = await target.write(record, trigger)
        except ConfigError as exc:
            await self.dead_letter(f"sink cannot start: {exc}", exc)
            return
        except PermanentError as exc:
            await self.dead_letter(exc.reason, exc)
            return
        except RetryableError as exc:
            await self.retry_or_dead_letter(exc.reason, exc.retry_after, exc)
            return
        except TimeoutError as exc:
            await self.retry_or_dead_letter("sink write timed out", None, exc)
            return
        except CallhookError as exc:
            await self.dead_letter(f"{type_name(exc)}: {exc}", exc)
            return
        except OSError as exc:  # a connection refused while a sink starts up
            await self.retry_or_dead_letter(f"{type_name(exc)}: {exc}", None, exc)
            return
        metrics.sink_deliveries_total.labels(name, result.value).inc()
        received_at = float(self.kwargs["received_at"])
        metrics.end_to_end_seconds.labels(name).observe(max(0.0, time.time() - received_at))
        await self.note(result.value)
        if result is WriteResult.WRITTEN:
            log.info(
                "delivered %s (revision %s)",
                trigger.event_type,
                record.get("revision"),
                extra=self.context,
            )

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
