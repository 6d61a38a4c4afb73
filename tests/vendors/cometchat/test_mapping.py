"""CometChat payloads and Get Call answers → whole call records."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import pytest

from callhook.record import CallRecord, CallStatus, merge
from callhook.vendors import cometchat
from callhook.vendors.base import Fetched
from callhook.vendors.cometchat.simulate import simulated_call
from tests.vendors.cometchat.conftest import (
    CONFIG,
    api_fixture,
    fixture_body,
    signed,
    webhook_fixtures,
)
from tests.vendors.support import blank_record, record_json

VENDOR = cometchat.VENDOR
SOURCE = "cc"
RECEIVED = "2023-10-10T12:00:00.000Z"
OBSERVED = "2023-10-10T12:00:05.000Z"
SID = "v1.us.2080843fb1d0b4a9.1696934199c5f8e1b0a94d4b7e2f3a6c8d0e1f2a3b4c5d6e7f"
MID = "v1.us.2080843fb1d0b4a9.1696934692a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e"
XID = "v1.us.2080843fb1d0b4a9.16969350017d3e9f0a1b2c4d5e6f708192a3b4c5d6e7f80912"
RECORDING_URL = f"https://recordings-us.cometchat.io/2080843fb1d0b4a9/{SID}/rec_6f1c2b.mp4"
TRANSCRIPT_URL = f"https://transcripts-us.cometchat.io/2080843fb1d0b4a9/{SID}/tr_0f3b2c7a.json"


#: a record's JSON with nothing known but its identity, then `fields`
blank = partial(blank_record, SOURCE, "cometchat")


def event_record(
    name: str, call_id: str, type_: str, at: str | None, **fields: Any
) -> dict[str, Any]:
    """The expected record for webhook fixture `name`: identity, last_event, the trigger's
    raw data under vendor_data, then `fields`."""
    payload = orjson.loads(fixture_body(name))
    event = VENDOR.parse(signed(fixture_body(name)))
    return blank(
        call_id,
        last_event={"type": type_, "key": event.event_key, "received_at": RECEIVED},
        observed_at=at or RECEIVED,
        vendor_data={payload["trigger"]: payload["data"]},
        **fields,
    )


def _missed(trigger: str, status: str, action: str, media: str) -> dict[str, dict[str, Any]]:
    fields = {
        "status": status,
        "vendor_status": action,
        "media": media,
        "initiator": "cometchat-uid-2",
        "receiver": "cometchat-uid-5",
        "created_at": "2023-10-10T10:50:01.000Z",
        "ended_at": "2023-10-10T10:50:31.000Z",
    }
    at = "2023-10-10T10:50:31.000Z"
    variant = f"{trigger}__with_session"
    return {
        trigger: event_record(trigger, "msg_53", "call.missed", at, **fields),
        variant: event_record(variant, XID, "call.missed", at, **fields),
    }


EVENT_RECORDS: dict[str, dict[str, Any]] = {
    "call_initiated": event_record(
        "call_initiated",
        SID,
        "call.ringing",
        "2023-10-10T10:36:39.000Z",
        status="ringing",
        vendor_status="initiated",
        media="audio",
        initiator="cometchat-uid-1",
        receiver="cometchat-uid-5",
        created_at="2023-10-10T10:36:39.000Z",
    ),
    "call_started": event_record(
        "call_started",
        SID,
        "call.started",
        "2023-10-10T10:42:52.000Z",
        status="in_progress",
        vendor_status="ongoing",
        started_at="2023-10-10T10:42:52.000Z",
        answered_at="2023-10-10T10:42:52.000Z",
    ),
    "call_participant_joined": event_record(
        "call_participant_joined",
        SID,
        "call.participant.joined",
        "2023-10-10T10:42:53.000Z",
        status="in_progress",
        media="audio",
    ),
    "call_participant_left": event_record(
        "call_participant_left",
        SID,
        "call.participant.left",
        "2023-10-10T10:43:52.000Z",
        status="in_progress",
        media="audio",
    ),
    "call_ended": event_record(
        "call_ended",
        SID,
        "call.completed",
        "2023-10-10T10:43:53.000Z",
        status="completed",
        vendor_status="ended",
        started_at="2023-10-10T10:42:52.000Z",
        ended_at="2023-10-10T10:43:53.000Z",
        duration_s=61.0,
    ),
    **_missed("call_busy", "busy", "busy", "audio"),
    **_missed("call_cancelled", "canceled", "cancelled", "video"),
    **_missed("call_rejected", "rejected", "rejected", "audio"),
    **_missed("call_unanswered", "no_answer", "unanswered", "video"),
    "meeting_started": event_record(
        "meeting_started",
        MID,
        "call.started",
        "2023-10-10T10:44:52.000Z",
        status="in_progress",
        vendor_status="ongoing",
        started_at="2023-10-10T10:44:52.000Z",
    ),
    "meeting_participant_joined": event_record(
        "meeting_participant_joined",
        MID,
        "call.participant.joined",
        "2023-10-10T10:44:52.000Z",
        status="in_progress",
        media="video",
    ),
    "meeting_participant_joined__with_uid": event_record(
        "meeting_participant_joined__with_uid",
        MID,
        "call.participant.joined",
        "2023-10-10T10:44:52.000Z",
        status="in_progress",
        media="video",
        participants=[
            {
                "id": "cometchat-uid-2",
                "name": "George Alan",
                "joined_at": "2023-10-10T10:44:52.000Z",
                "left_at": None,
                "duration_s": None,
            }
        ],
    ),
    "meeting_participant_left": event_record(
        "meeting_participant_left",
        MID,
        "call.participant.left",
        "2023-10-10T10:49:10.000Z",
        status="in_progress",
        media="video",
    ),
    "meeting_ended": event_record(
        "meeting_ended",
        MID,
        "call.completed",
        "2023-10-10T10:49:11.000Z",
        status="completed",
        vendor_status="ended",
        started_at="2023-10-10T10:44:52.000Z",
        ended_at="2023-10-10T10:49:11.000Z",
        duration_s=259.0,
    ),
    # no rid in the documented payload: the recording comes from Get Call
    "recording_generated": event_record("recording_generated", SID, "call.recording.ready", None),
    "recording_generated__with_rid": event_record(
        "recording_generated__with_rid",
        SID,
        "call.recording.ready",
        None,
        recordings=[
            {
                "id": "rec_6f1c2b",
                "url": RECORDING_URL,
                "url_from": "payload",
                "duration_s": 21.433,
                "started_at": "2023-10-10T10:42:55.000Z",
                "stored_as": None,
            }
        ],
    ),
    "transcription_generated": event_record(
        "transcription_generated",
        SID,
        "call.transcript.ready",
        None,
        transcript=[
            {"id": "tr_0f3b2c7a", "url": TRANSCRIPT_URL, "started_at": None, "ended_at": None}
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EVENT_RECORDS))
def test_each_fixture_maps_to_its_expected_record(name: str) -> None:
    event = VENDOR.parse(signed(fixture_body(name)))
    assert record_json(VENDOR.record_from_event(SOURCE, event, RECEIVED)) == EVENT_RECORDS[name]


def test_every_call_fixture_has_an_expected_record() -> None:
    assert set(webhook_fixtures()) - set(EVENT_RECORDS) == {"message_sent"}


def test_record_from_api_current_shape() -> None:
    call = api_fixture("get_call")["data"]
    fetched = Fetched(
        call=call, extras={"recordings": call["recordings"], "transcript": call["transcriptions"]}
    )
    expected = blank(
        SID,
        status="completed",
        vendor_status="ended",
        media="audio",
        initiator="cometchat-uid-1",
        receiver="cometchat-uid-5",
        participants=[
            {
                "id": "cometchat-uid-1",
                "name": None,
                "joined_at": "2023-10-10T10:42:53.000Z",
                "left_at": "2023-10-10T10:43:52.000Z",
                "duration_s": 58.998,
            },
            {
                "id": "cometchat-uid-5",
                "name": None,
                "joined_at": "2023-10-10T10:42:54.000Z",
                "left_at": "2023-10-10T10:43:53.000Z",
                "duration_s": 58.998,
            },
        ],
        created_at="2023-10-10T10:36:39.000Z",
        started_at="2023-10-10T10:42:52.000Z",
        answered_at="2023-10-10T10:42:52.000Z",
        ended_at="2023-10-10T10:43:53.000Z",
        duration_s=61.002,  # totalDurationInMinutes 1.0167
        recordings=[
            {
                "id": "rec_6f1c2b",
                "url": RECORDING_URL,
                "url_from": "api",
                "duration_s": 21.432,  # 0.3572 minutes
                "started_at": "2023-10-10T10:42:55.000Z",
                "stored_as": None,
            }
        ],
        transcript=[
            {
                "id": "tr_0f3b2c7a",
                "url": TRANSCRIPT_URL,
                "started_at": "2023-10-10T10:42:55.000Z",
                "ended_at": "2023-10-10T10:43:16.000Z",
            }
        ],
        vendor_data={
            "call": call,
            "recordings": call["recordings"],
            "transcript": call["transcriptions"],
        },
        enrichment="api",
        observed_at=OBSERVED,
    )
    assert record_json(VENDOR.record_from_api(SOURCE, fetched, OBSERVED)) == expected
    # a listed call (reconcile: no extras) maps the same as a fetched one
    alone = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    assert record_json(alone) == expected


def test_record_from_api_older_array_shape() -> None:
    """Strings for numbers, names on participants, a uid on two devices, initiator and
    receiver only under data.entities, durations only as HH:MM:SS, a group receiver."""
    (call,) = api_fixture("get_call__array")["data"]
    expected = blank(
        MID,
        status="completed",
        vendor_status="ended",
        media="video",
        initiator="cometchat-uid-2",
        receiver="cometchat-guid-1",
        participants=[
            {
                "id": "cometchat-uid-2",
                "name": "George Alan",
                "joined_at": "2023-10-10T10:44:52.000Z",
                "left_at": "2023-10-10T10:49:10.000Z",
                "duration_s": 258.0,
            },
            {
                "id": "cometchat-uid-1",
                "name": "Andrew Joseph",
                "joined_at": "2023-10-10T10:45:00.000Z",
                "left_at": "2023-10-10T10:49:11.000Z",
                "duration_s": 241.0,
            },
        ],
        created_at="2023-10-10T10:44:52.000Z",
        started_at="2023-10-10T10:44:52.000Z",
        answered_at=None,  # a meeting is joined, never answered
        ended_at="2023-10-10T10:49:11.000Z",
        duration_s=259.0,
        vendor_data={"call": call},
        enrichment="api",
        observed_at=OBSERVED,
    )
    assert record_json(VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)) == expected


@pytest.mark.parametrize(
    ("vendor_status", "status"),
    [
        ("initiated", CallStatus.RINGING),
        ("ongoing", CallStatus.IN_PROGRESS),
        ("ended", CallStatus.COMPLETED),
        ("unanswered", CallStatus.NO_ANSWER),
        ("rejected", CallStatus.REJECTED),
        ("canceled", CallStatus.CANCELED),
        ("cancelled", CallStatus.CANCELED),
        ("busy", CallStatus.BUSY),
        ("ENDED", CallStatus.COMPLETED),
        ("teleported", CallStatus.UNKNOWN),
        (None, CallStatus.UNKNOWN),
    ],
)
def test_status_table(vendor_status: str | None, status: CallStatus) -> None:
    call = {"sessionId": "v1.us.x.1", "status": vendor_status, "startedAt": "1696934572"}
    record = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    assert record.status is status
    assert record.vendor_status == vendor_status
    answered = status in (CallStatus.IN_PROGRESS, CallStatus.COMPLETED)
    assert record.answered_at == ("2023-10-10T10:42:52.000Z" if answered else None)


def test_duration_falls_back_to_the_call_times() -> None:
    call = {"sessionId": "s", "startedAt": "1696934572", "endedAt": 1696934633000}
    record = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    assert (record.duration_s, record.ended_at) == (61.0, "2023-10-10T10:43:53.000Z")


def test_a_call_object_without_session_id_is_a_bug() -> None:
    with pytest.raises(ValueError, match="sessionId"):
        VENDOR.record_from_api(SOURCE, Fetched(call={"status": "ended"}), OBSERVED)


def test_events_and_api_converge_without_duplicates() -> None:
    """Webhooks and Get Call about one call merge into one record, whatever the order:
    one participant per uid and one recording per rid."""
    simulated = simulated_call(SID, 1696934700.0)
    observations = [
        VENDOR.record_from_event(
            SOURCE,
            VENDOR.parse(
                VENDOR.kit.simulate_delivery(CONFIG, trigger, simulated, now=1696934700.0)
            ),
            RECEIVED,
        )
        for trigger in (
            "call_initiated",
            "call_started",
            "call_participant_joined",
            "call_participant_left",
            "call_ended",
            "recording_generated",
            "transcription_generated",
        )
    ]
    observations.append(
        VENDOR.record_from_api(SOURCE, Fetched(simulated.call, simulated.extras), OBSERVED)
    )
    forward: CallRecord | None = None
    backward: CallRecord | None = None
    for observation in observations:
        forward = merge(forward, observation)
    for observation in reversed(observations):
        backward = merge(backward, observation)
    assert forward is not None
    assert backward is not None
    api = VENDOR.record_from_api(SOURCE, Fetched(simulated.call, simulated.extras), OBSERVED)
    for merged in (forward, backward):
        assert merged.status is CallStatus.COMPLETED
        assert merged.participants == api.participants
        assert merged.recordings == api.recordings
        assert merged.transcript == api.transcript
        assert merged.enrichment == "api"
