"""callhook.enrich: one accepted event → Get Call → merged call record → deliver messages.

Input is what ingress enqueued (service/accept.py). Idempotent: processing the same event
twice merges the same observations again and routes the same deliver messages, which the
sinks absorb.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from callhook import metrics
from callhook.actions import RE_ENRICH_VENDOR_TYPE
from callhook.errors import NotReadyYet, RetryableError, UpstreamError
from callhook.events import Event, EventType
from callhook.journal import updates
from callhook.lenient import iso_utc
from callhook.queues import (
    DELIVER_ACTOR,
    DELIVER_QUEUE,
    ENRICH_ACTOR,
    ENRICH_QUEUE,
    EncodedMessage,
    encode_message,
)
from callhook.record import CallRecord, utc_now_iso
from callhook.sinks import SINKS
from callhook.sinks.routing import matching_sinks
from workers.journaling import note_enrich
from workers.reconcile import RECONCILE_VENDOR_TYPE, listed_observation
from workers.retrying import retry_later
from workers.runtime import Runtime, runtime

log = logging.getLogger("callhook.workers.enrich")


async def enrich(
    *,
    source: str,
    event_key: str,
    type: str | None,
    vendor_type: str,
    call_id: str | None,
    fetchable: bool,
    occurred_at: str | None,
    received_at: float,
    payload: dict[str, Any],
    attempt: int = 0,
    payload_only: bool = False,
) -> None:
    kwargs = {
        "source": source,
        "event_key": event_key,
        "type": type,
        "vendor_type": vendor_type,
        "call_id": call_id,
        "fetchable": fetchable,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "payload": payload,
        "attempt": attempt,
        "payload_only": payload_only,
    }
    rt = runtime()
    context = {"source": source, "event_key": event_key, "call_id": call_id}
    if source not in rt.config.sources:
        await dead_letter(
            rt, kwargs, f"source {source!r} is no longer configured", "unknown_source"
        )
        return
    if type is None or call_id is None:
        return  # ingress never enqueues these; nothing to enrich
    vendor = rt.vendor(source)
    event_type = EventType(type)
    event = Event(
        event_key=event_key,
        vendor_type=vendor_type,
        type=event_type,
        call_id=call_id,
        payload=payload,
        fetchable=fetchable,
        occurred_at=occurred_at,
    )
    received_iso = iso_utc(received_at) or utc_now_iso()
    if vendor_type == RECONCILE_VENDOR_TYPE:
        first = listed_observation(vendor, source, event, received_iso)
    elif vendor_type == RE_ENRICH_VENDOR_TYPE:  # an operator's: all there is, is the API
        first = CallRecord(source=source, vendor=vendor.name, call_id=call_id)
    else:
        first = vendor.record_from_event(source, event, received_iso)
    observations: list[CallRecord] = [first]

    # not fetchable: the event carries no id the vendor API knows (e.g. a CometChat missed
    # call without a session id); the payload is all there is
    payload_only = payload_only or not fetchable
    latency_ms: float | None = None
    if not payload_only:
        started = time.perf_counter()
        try:
            observations.append(await fetch(rt, source, call_id, event_type))
        except UpstreamError as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            if isinstance(exc, NotReadyYet) and rt.policies.not_ready.exhausted(attempt):
                log.warning(
                    "vendor never returned the call; recording it from the payload alone: %s",
                    exc.reason,
                    extra=context,
                )
                metrics.enrich_total.labels(vendor.name, "payload_only").inc()
                payload_only = True
            elif isinstance(exc, NotReadyYet):
                delay = rt.policies.not_ready.delay_s(attempt)
                await retry(rt, kwargs, delay, exc, context, latency_ms)
                return
            elif isinstance(exc, RetryableError):
                await retry_or_dead_letter(rt, kwargs, exc, context, latency_ms)
                return
            else:
                await dead_letter(rt, kwargs, exc.reason, vendor.name, exc, latency_ms)
                return
        else:
            latency_ms = (time.perf_counter() - started) * 1000
    if payload_only:
        observations = [o.model_copy(update={"enrichment": "payload_only"}) for o in observations]

    def deliver_messages(record: CallRecord) -> list[EncodedMessage]:
        """One message for the event, naming every sink it is routed to (none: nothing)."""
        routed = [sink.name for sink in matching_sinks(record, event_type, rt.config.sinks)]
        if not routed:
            return []
        kwargs = {
            "sinks": routed,
            "source": source,
            "call_id": call_id,
            "event_key": event_key,
            "type": event_type.value,
            "received_at": received_at,
            "payload": payload,
            "attempt": 0,
            "revision": record.revision,
        }
        return [encode_message(DELIVER_QUEUE, DELIVER_ACTOR, kwargs)]

    def coalescing_sinks(record: CallRecord) -> list[str]:
        """The routed sinks that keep only the call's latest state (`Sink.coalesces`)."""
        return [
            sink.name
            for sink in matching_sinks(record, event_type, rt.config.sinks)
            if SINKS[sink.type].coalesces
        ]

    outcome = "payload_only" if payload_only else "ok"

    def journal_entry(record: CallRecord) -> bytes:
        return updates.enrich_attempt(
            rt.journal.settings,
            source=source,
            call_id=call_id,
            now_ms=int(time.time() * 1000),
            event_key=event_key,
            event_type=event_type.value,
            attempt=attempt,
            outcome=outcome,
            latency_ms=latency_ms,
            record=record,
            routed=[sink.name for sink in matching_sinks(record, event_type, rt.config.sinks)],
        )

    record = await rt.store.merge_and_enqueue(
        observations, deliver_messages, journal_entry, latest_for=coalescing_sinks
    )
    metrics.enrich_total.labels(vendor.name, outcome).inc()
    log.info(
        "enriched %s → status %s (revision %d)",
        event_type.value,
        record.status.value,
        record.revision,
        extra=context,
    )


async def fetch(rt: Runtime, source: str, call_id: str, event_type: EventType) -> CallRecord:
    """Get Call (and extras); the client's transport applies the fleet-wide rate limit."""
    vendor = rt.vendor(source)
    started = time.perf_counter()
    try:
        fetched = await rt.vendor_client(source).fetch(call_id, event_type)
    finally:
        metrics.vendor_request_seconds.labels(vendor.name).observe(time.perf_counter() - started)
    return vendor.record_from_api(source, fetched, utc_now_iso())


async def retry_or_dead_letter(
    rt: Runtime,
    kwargs: dict[str, Any],
    exc: RetryableError,
    context: dict[str, Any],
    latency_ms: float | None,
) -> None:
    attempt = int(kwargs["attempt"])
    if rt.policies.vendor_transient.exhausted(attempt):
        reason = f"gave up after {attempt + 1} attempts: {exc.reason}"
        await dead_letter(rt, kwargs, reason, rt.vendor(kwargs["source"]).name, exc, latency_ms)
        return
    delay = rt.policies.vendor_transient.delay_s(attempt, exc.retry_after)
    await retry(rt, kwargs, delay, exc, context, latency_ms)


async def retry(
    rt: Runtime,
    kwargs: dict[str, Any],
    delay_s: float,
    exc: UpstreamError,
    context: dict[str, Any],
    latency_ms: float | None,
) -> None:
    vendor_name = rt.vendor(kwargs["source"]).name
    metrics.enrich_total.labels(vendor_name, "retry").inc()
    log.info(
        "retrying in %.1fs: %s",
        delay_s,
        exc.reason,
        extra={**context, "attempt": kwargs["attempt"]},
    )
    await note_enrich(
        rt,
        kwargs,
        "retry",
        latency_ms=latency_ms,
        error=exc,
        reason=exc.reason,
        retry_in_s=delay_s,
    )
    retried = {**kwargs, "attempt": kwargs["attempt"] + 1}
    await retry_later(rt.broker, ENRICH_QUEUE, retried, delay_s)


async def dead_letter(
    rt: Runtime,
    kwargs: dict[str, Any],
    reason: str,
    vendor_label: str,
    exc: BaseException | None = None,
    latency_ms: float | None = None,
) -> None:
    entry = await rt.dead_letters.add(
        queue=ENRICH_QUEUE,
        actor=ENRICH_ACTOR,
        kwargs=kwargs,
        reason=reason,
        attempts=int(kwargs["attempt"]) + 1,
    )
    await note_enrich(
        rt,
        kwargs,
        "dead_letter",
        latency_ms=latency_ms,
        error=exc,
        reason=reason,
        dead_letter=entry.id,
    )
    metrics.enrich_total.labels(vendor_label, "dead_letter").inc()
    log.error(
        "dead-lettered: %s",
        reason,
        extra={
            "source": kwargs["source"],
            "event_key": kwargs["event_key"],
            "call_id": kwargs["call_id"],
            "dead_letter": entry.id,
        },
    )
