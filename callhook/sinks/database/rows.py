"""A call record (its JSON wire shape) and its trigger as `calls` and `call_events` rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from callhook.errors import PermanentError
from callhook.sinks.base import Trigger

_TIMESTAMPS = ("created_at", "started_at", "answered_at", "ended_at")
_TEXTS = ("vendor_status", "direction", "media", "initiator", "receiver", "enrichment")
_JSON_OPTIONAL = ("transcript", "summary", "voicemail")


def call_row(record: dict[str, Any], *, written_at: datetime) -> dict[str, Any]:
    """The `calls` row for `record`. `written_at` stands in for a missing `updated_at`."""
    source, call_id = _identity(record)
    last_event = record.get("last_event") or {}
    recordings = list(record.get("recordings") or ())
    row: dict[str, Any] = {
        "source": source,
        "call_id": call_id,
        "vendor": str(record.get("vendor") or ""),
        "status": str(record.get("status") or "unknown"),
        "duration_s": _number(record.get("duration_s")),
        "has_recording": bool(recordings),
        "revision": int(record.get("revision") or 0),
        "last_event_type": last_event.get("type"),
        "last_event_key": last_event.get("key"),
        "updated_at": instant(record.get("updated_at")) or written_at,
        "participants": list(record.get("participants") or ()),
        "recordings": recordings,
        "vendor_data": dict(record.get("vendor_data") or {}),
        "record": record,
    }
    row.update({name: _text(record.get(name)) for name in _TEXTS})
    row.update({name: instant(record.get(name)) for name in _TIMESTAMPS})
    row.update({name: record.get(name) for name in _JSON_OPTIONAL})
    return row


def event_row(record: dict[str, Any], trigger: Trigger, *, written_at: datetime) -> dict[str, Any]:
    """The `call_events` audit row for the trigger of this delivery."""
    source, call_id = _identity(record)
    return {
        "source": source,
        "event_key": trigger.event_key,
        "call_id": call_id,
        "type": str(trigger.event_type),
        "received_at": instant(trigger.received_at) or written_at,
        "payload": trigger.payload,
    }


def instant(value: Any) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime (naive means UTC); None if unreadable.

    The record keeps the original text, so a value this cannot read is not lost.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _identity(record: dict[str, Any]) -> tuple[str, str]:
    source, call_id = record.get("source"), record.get("call_id")
    if not isinstance(source, str) or not isinstance(call_id, str) or not source or not call_id:
        raise PermanentError("the record has no source or call_id")
    return source, call_id


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
