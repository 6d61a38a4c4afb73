"""The workers' journal entries: one per enrichment attempt and per sink attempt.

Each is written from the actor's own message arguments once the attempt's outcome is
known, before a retry is enqueued (so a call's journal lists attempts in order), and never
fails the work (callhook/journal/writer.py). A successful enrichment is journaled inside
the record store's merge transaction instead (workers/actors/enrich.py).
"""

from __future__ import annotations

import time
from typing import Any

from callhook.journal import updates
from workers.runtime import Runtime


async def note_enrich(
    rt: Runtime,
    kwargs: dict[str, Any],
    outcome: str,
    *,
    latency_ms: float | None = None,
    error: BaseException | None = None,
    reason: str | None = None,
    retry_in_s: float | None = None,
    dead_letter: str | None = None,
) -> None:
    if not kwargs.get("call_id") or not kwargs.get("source"):
        return
    now_ms = int(time.time() * 1000)
    await rt.journal.write(
        updates.enrich_attempt(
            rt.journal.settings,
            source=kwargs["source"],
            call_id=kwargs["call_id"],
            now_ms=now_ms,
            event_key=kwargs.get("event_key") or "",
            event_type=kwargs.get("type") or "",
            attempt=int(kwargs.get("attempt", 0)),
            outcome=outcome,
            latency_ms=latency_ms,
            error=error,
            reason=reason,
            retry_at_ms=None if retry_in_s is None else now_ms + int(retry_in_s * 1000),
            dead_letter=dead_letter,
        ),
        where="enrich",
    )


async def note_deliver(
    rt: Runtime,
    kwargs: dict[str, Any],
    outcome: str,
    *,
    started_ms: int,
    duration_ms: float,
    error: BaseException | None = None,
    reason: str | None = None,
    retry_in_s: float | None = None,
    dead_letter: str | None = None,
) -> None:
    if not kwargs.get("call_id") or not kwargs.get("source") or not kwargs.get("sink"):
        return
    finished_ms = started_ms + int(duration_ms)
    await rt.journal.write(
        updates.deliver_attempt(
            rt.journal.settings,
            source=kwargs["source"],
            call_id=kwargs["call_id"],
            sink=kwargs["sink"],
            started_ms=started_ms,
            duration_ms=duration_ms,
            event_key=kwargs.get("event_key") or "",
            event_type=kwargs.get("type") or "",
            attempt=int(kwargs.get("attempt", 0)),
            outcome=outcome,
            error=error,
            reason=reason,
            retry_at_ms=None if retry_in_s is None else finished_ms + int(retry_in_s * 1000),
            dead_letter=dead_letter,
        ),
        where="deliver",
    )
