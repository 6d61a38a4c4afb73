"""Routing: which sinks receive a record for a given trigger (a sink's `events` and `when`,
docs/configuration.md `[[sinks]]`). Pure."""

from __future__ import annotations

from collections.abc import Iterable

from callhook.events import EventType
from callhook.record import CallRecord
from callhook.sinks.base import SinkConfig, When


def matching_sinks(
    record: CallRecord, event_type: EventType, sinks: Iterable[SinkConfig]
) -> list[SinkConfig]:
    """The sinks whose `events` include `event_type` and whose `when` all hold for `record`."""
    return [
        sink
        for sink in sinks
        if (sink.events is None or event_type in sink.events) and holds(sink.when, record)
    ]


def holds(when: When, record: CallRecord) -> bool:
    """Whether every condition given in `when` holds for the record."""
    if when.vendor is not None and record.vendor not in when.vendor:
        return False
    if when.source is not None and record.source not in when.source:
        return False
    if when.status is not None and record.status not in when.status:
        return False
    if when.direction is not None and record.direction not in when.direction:
        return False
    if when.media is not None and record.media not in when.media:
        return False
    if when.has_recording is not None and bool(record.recordings) != when.has_recording:
        return False
    return when.min_duration_s is None or (
        record.duration_s is not None and record.duration_s >= when.min_duration_s
    )
