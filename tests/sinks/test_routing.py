"""Routing: `events` and every `when` condition decide which sinks get a record."""

from __future__ import annotations

import pytest

from callhook.events import EventType
from callhook.record import CallRecord, CallStatus, Recording
from callhook.sinks.base import SinkConfig, When
from callhook.sinks.routing import matching_sinks

RECORD = CallRecord(
    source="quo",
    vendor="openphone",
    call_id="AC1",
    status=CallStatus.MISSED,
    direction="inbound",
    media="audio",
    duration_s=0.0,
)


def sink(name: str, **fields: object) -> SinkConfig:
    return SinkConfig.model_validate({"name": name, "type": "file", **fields})


@pytest.mark.parametrize(
    ("config", "event_type", "routed"),
    [
        (sink("all"), EventType.MISSED, True),
        (sink("only-completed", events=["call.completed"]), EventType.MISSED, False),
        (sink("missed", events=["call.missed"]), EventType.MISSED, True),
        (
            sink(
                "inbound-missed", when={"status": ["missed", "no_answer"], "direction": ["inbound"]}
            ),
            EventType.MISSED,
            True,
        ),
        (sink("outbound", when={"direction": ["outbound"]}), EventType.MISSED, False),
        (sink("other-vendor", when={"vendor": ["diga"]}), EventType.MISSED, False),
        (sink("this-source", when={"source": ["quo"]}), EventType.MISSED, True),
        (sink("video", when={"media": ["video"]}), EventType.MISSED, False),
        (sink("with-recording", when={"has_recording": True}), EventType.MISSED, False),
        (sink("without-recording", when={"has_recording": False}), EventType.MISSED, True),
        (sink("long", when={"min_duration_s": 30}), EventType.MISSED, False),
        (sink("any-length", when={"min_duration_s": 0}), EventType.MISSED, True),
    ],
)
def test_routing(config: SinkConfig, event_type: EventType, routed: bool) -> None:
    assert (matching_sinks(RECORD, event_type, [config]) == [config]) is routed


def test_has_recording_and_duration_unknown() -> None:
    record = RECORD.model_copy(update={"recordings": (Recording(id="R"),), "duration_s": None})
    assert matching_sinks(record, EventType.MISSED, [sink("r", when={"has_recording": True})])
    assert not matching_sinks(record, EventType.MISSED, [sink("d", when={"min_duration_s": 1})])


def test_when_rejects_unknown_conditions() -> None:
    with pytest.raises(ValueError, match="extra"):
        When.model_validate({"expression": "1+1"})
