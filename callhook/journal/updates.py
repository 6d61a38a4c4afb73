"""The journal's updates, one builder per thing that happens to a call.

Each builder returns the update `journal.lua` applies: the entry appended to the call's
journal, the summary fields it changes, and the counters it bumps. Entries are JSON objects
with `at` (ISO-8601 UTC) and `kind`:

    accepted   a delivery the ingress accepted (`origin`: webhook), or a call reconcile
               found (`origin`: reconcile); duplicates that follow are counted in the summary
    enrich     one enrichment attempt: `attempt`, `outcome` (ok, payload_only, retry,
               dead_letter), `http_status` or `error`, `latency_ms`, `retry_at`, `routed`
    deliver    one sink attempt: `sink`, `attempt`, `started_at`, `duration_ms`, `outcome`
               (ok, skipped, superseded, retry, dead_letter), `http_status` or `error`,
               `reason`, `retry_at`, `dead_letter`
    replay     a dead letter put back on its queue (`stage`, `sink`, `dead_letter`, `by`)
    redeliver  an operator asked for the call to be delivered again (`sinks`, `by`)
    re_enrich  an operator asked for the call to be fetched again (`by`)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from callhook.config import Config
from callhook.journal import prefix
from callhook.record import CallRecord, iso_z

#: upper bounds (ms) of the sink-latency histogram kept per minute for p95s
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
#: longest `reason` kept in an entry
REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class JournalSettings:
    namespace: str
    retention_days: int = 7
    max_entries_per_call: int = 200
    write_timeout_s: float = 1.0

    @classmethod
    def from_config(cls, config: Config) -> JournalSettings:
        return cls(
            namespace=config.redis.namespace,
            retention_days=config.journal.retention_days,
            max_entries_per_call=config.journal.max_entries_per_call,
            write_timeout_s=config.journal.write_timeout_s,
        )

    @property
    def ttl_s(self) -> int:
        return self.retention_days * 86400


def iso_ms(epoch_ms: float) -> str:
    return iso_z(epoch_ms / 1000)


def sink_state(state: str, at_ms: int, **detail: Any) -> bytes:
    """A summary's `sink:{name}` value: the state of the call at that sink."""
    return orjson.dumps({"state": state, "at": at_ms, **_present(detail)})


def latency_bucket(duration_ms: float) -> int:
    """Index of the histogram bucket `duration_ms` falls in (the last is +inf)."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, duration_ms)


def update(
    settings: JournalSettings,
    source: str,
    call_id: str,
    *,
    now_ms: int,
    entry: Mapping[str, Any] | None = None,
    event_key: str | None = None,
    status: str | None = None,
    set_fields: Mapping[str, Any] | None = None,
    incr: Mapping[str, int] | None = None,
    failed: bool = False,
    stats: Mapping[str, int] | None = None,
    health: Mapping[str, Any] | None = None,
) -> bytes:
    """An update for `journal.lua` as JSON (empty parts left out: Lua reads JSON null as
    a value, not as nothing)."""
    body: dict[str, Any] = {
        "p": prefix(settings.namespace),
        "src": source,
        "call": call_id,
        "now": now_ms,
        "ttl": settings.ttl_s,
        "cap": settings.max_entries_per_call,
    }
    if entry is not None:
        body["entry"] = orjson.dumps({"at": iso_ms(now_ms), **_present(entry)}).decode()
    optional = {
        "ekey": event_key,
        "status": status,
        "set": _present(set_fields or {}),
        "incr": incr,
        "failed": failed,
        "stats": stats,
        "health": health,
    }
    body.update({name: value for name, value in optional.items() if value})
    return orjson.dumps(body)


def accept_arguments(
    settings: JournalSettings,
    *,
    source: str,
    call_id: str,
    vendor: str,
    event_key: str,
    vendor_type: str,
    event_type: str,
    origin: str,
    received_ms: int,
) -> tuple[str, bytes]:
    """The accept script's journal arguments (journal.lua `journal_accept`) for a delivery
    the ingress accepted (or a call reconcile found); the script counts a duplicate instead
    when the event key was seen before. Two plain arguments, not an update: this runs for
    every delivery, on the ingress's hot path."""
    head = "\x1f".join(
        (
            prefix(settings.namespace),
            source,
            call_id,
            str(received_ms),
            str(settings.ttl_s),
            str(settings.max_entries_per_call),
            event_key,
            vendor,
        )
    )
    entry = orjson.dumps(
        {
            "at": iso_ms(received_ms),
            "kind": "accepted",
            "origin": origin,
            "event_key": event_key,
            "vendor_type": vendor_type,
            "type": event_type,
        }
    )
    return head, entry


def enrich_attempt(
    settings: JournalSettings,
    *,
    source: str,
    call_id: str,
    now_ms: int,
    event_key: str,
    event_type: str,
    attempt: int,
    outcome: str,
    latency_ms: float | None = None,
    error: BaseException | None = None,
    reason: str | None = None,
    retry_at_ms: int | None = None,
    dead_letter: str | None = None,
    record: CallRecord | None = None,
    routed: Iterable[str] = (),
) -> bytes:
    """One enrichment attempt; with `record` (a success), the call's summary and the
    sinks it was routed to (each now `pending`)."""
    routed = tuple(routed)
    failed = outcome in ("retry", "dead_letter")
    entry = {
        "kind": "enrich",
        "event_key": event_key,
        "type": event_type,
        "attempt": attempt,
        "outcome": outcome,
        "latency_ms": None if latency_ms is None else round(latency_ms, 1),
        **error_fields(error),
        "reason": _short(reason),
        "retry_at": None if retry_at_ms is None else iso_ms(retry_at_ms),
        "dead_letter": dead_letter,
        "routed": list(routed) if record is not None else None,
    }
    fields: dict[str, Any] = {"enrich": sink_state(outcome, now_ms, attempt=attempt).decode()}
    status = None
    if record is not None:
        entry |= {"status": record.status.value, "revision": record.revision}
        status = record.status.value
        fields |= _record_fields(record)
        fields |= {f"sink:{name}": sink_state("pending", now_ms).decode() for name in routed}
    return update(
        settings,
        source,
        call_id,
        now_ms=now_ms,
        entry=entry,
        status=status,
        set_fields=fields,
        incr=_failure_counts(outcome),
        failed=failed,
        stats={f"enrich:{outcome}:{source}": 1},
        health=_health(f"source:{source}:last_enrich", now_ms, outcome, reason),
    )


def deliver_attempt(
    settings: JournalSettings,
    *,
    source: str,
    call_id: str,
    sink: str,
    started_ms: int,
    duration_ms: float,
    event_key: str,
    event_type: str,
    attempt: int,
    outcome: str,
    error: BaseException | None = None,
    reason: str | None = None,
    retry_at_ms: int | None = None,
    dead_letter: str | None = None,
) -> bytes:
    """One attempt to write the call to `sink`; the summary's `sink:{sink}` follows it,
    unless the attempt was superseded (the newer delivery it left the state to tells)."""
    now_ms = started_ms + int(duration_ms)
    failed = outcome in ("retry", "dead_letter")
    state = {"retry": "retrying"}.get(outcome, outcome)
    stats = {f"sink:{outcome}:{sink}": 1}
    if outcome in ("ok", "skipped"):
        stats[f"lat:{sink}:{latency_bucket(duration_ms)}"] = 1
    followed = {
        f"sink:{sink}": sink_state(
            state,
            now_ms,
            attempt=attempt,
            reason=_short(reason),
            retry_at=None if retry_at_ms is None else iso_ms(retry_at_ms),
        ).decode()
    }
    return update(
        settings,
        source,
        call_id,
        now_ms=now_ms,
        entry={
            "kind": "deliver",
            "sink": sink,
            "event_key": event_key,
            "type": event_type,
            "attempt": attempt,
            "started_at": iso_ms(started_ms),
            "duration_ms": round(duration_ms, 1),
            "outcome": outcome,
            **error_fields(error),
            "reason": _short(reason),
            "retry_at": None if retry_at_ms is None else iso_ms(retry_at_ms),
            "dead_letter": dead_letter,
        },
        set_fields=None if outcome == "superseded" else followed,
        incr=_failure_counts(outcome),
        failed=failed,
        stats=stats,
        health=_health(f"sink:{sink}:last", now_ms, outcome, reason),
    )


def action(
    settings: JournalSettings,
    *,
    source: str,
    call_id: str,
    now_ms: int,
    kind: str,
    by: str,
    **detail: Any,
) -> bytes:
    """An operator's action on the call (`replay`, `redeliver`, `re_enrich`)."""
    return update(
        settings,
        source,
        call_id,
        now_ms=now_ms,
        entry={"kind": kind, "by": by, **detail},
    )


def _failure_counts(outcome: str) -> dict[str, int] | None:
    """The summary's counts an attempt with `outcome` adds to (None: a success)."""
    if outcome == "retry":
        return {"failures": 1}
    if outcome == "dead_letter":
        return {"failures": 1, "dead": 1}
    return None


def _health(field: str, now_ms: int, outcome: str, reason: str | None) -> dict[str, Any]:
    """`{field}_ok` after a success; `{field}_error_at` and `{field}_error` after a failure
    (`source:NAME:last_enrich`, `sink:NAME:last`)."""
    if _failure_counts(outcome) is None:
        return {f"{field}_ok": now_ms}
    return {f"{field}_error_at": now_ms, f"{field}_error": _short(reason) or outcome}


def error_fields(error: BaseException | None) -> dict[str, Any]:
    """`http_status` when the error carries one, else `error`: the exception's class."""
    if error is None:
        return {}
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return {"http_status": status, "error": type(error).__name__}
    return {"error": type(error).__name__}


def _record_fields(record: CallRecord) -> dict[str, Any]:
    return {
        "vendor": record.vendor,
        "direction": record.direction,
        "media": record.media,
        "initiator": record.initiator,
        "receiver": record.receiver,
        "duration_s": record.duration_s,
        "created_at": record.created_at,
        "revision": record.revision,
        "recordings": len(record.recordings),
    }


def _short(reason: str | None) -> str | None:
    if reason is None:
        return None
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
