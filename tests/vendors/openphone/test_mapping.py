"""OpenPhone / Quo payloads and API answers → whole call records, and the mapping tables."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import pytest

from callhook.events import EventType
from callhook.record import CallStatus, merge
from callhook.vendors import openphone
from callhook.vendors.base import Fetched
from callhook.vendors.openphone.mapping import API_STATUS, EVENT_TYPES, api_status, event_type
from tests.vendors.openphone.conftest import api_fixture, fixture_body, signed, webhook_fixtures
from tests.vendors.support import blank_record, record_json

VENDOR = openphone.VENDOR
SOURCE = "quo"
RECEIVED = "2026-04-13T16:00:00.000Z"
OBSERVED = "2026-04-13T16:00:05.000Z"
CALL = "AC3fe91c2b7d4e4a0c9b1f5e6d7a8b9c0d"
MISSED = "AC9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"
OURS = "+14155550182"
THEIRS = "+12125550147"
CREATED = "2026-04-13T15:02:11.482Z"
ANSWERED = "2026-04-13T15:02:19.000Z"
ENDED = "2026-04-13T15:05:02.000Z"
RECORDING_URL = "https://storage.openphone.example/recordings/a643d4d3e1484fcc8b721627284eda5e.mp3"
VOICEMAIL_URL = "https://storage.openphone.example/voicemails/VMsampleVoicemail01.mp3"
VOICEMAIL_TEXT = "Hi, it's Dana about the annual plan quote. Please call me back."
SUMMARY = {
    "summary": [
        "The caller asked to move the team to the annual plan.",
        "They need a quote for 12 seats.",
    ],
    "next_steps": ["Send the annual plan quote by Friday."],
}
DIALOGUE = [
    {
        "content": "Thanks for calling, this is Ava.",
        "start": 0.84,
        "end": 2.9,
        "identifier": OURS,
        "userId": "USu5AsEHuQ",
    },
    {
        "content": "Hi, I'd like a quote for the annual plan.",
        "start": 3.512,
        "end": 6.004,
        "identifier": THEIRS,
        "userId": None,
    },
]


def person(number: str) -> dict[str, Any]:
    return {"id": number, "name": None, "joined_at": None, "left_at": None, "duration_s": None}


#: a record's JSON with nothing known but its identity, then `fields`
blank = partial(blank_record, SOURCE, "openphone")


def from_event(name: str) -> dict[str, Any]:
    event = VENDOR.parse(signed(fixture_body(name)))
    return record_json(VENDOR.record_from_event(SOURCE, event, RECEIVED))


def event_record(name: str, call_id: str, **fields: Any) -> dict[str, Any]:
    """The expected record for webhook fixture `name`: identity, last_event, the event's
    `data` under its type in vendor_data, then `fields`."""
    payload = orjson.loads(fixture_body(name))
    event = VENDOR.parse(signed(fixture_body(name)))
    assert event.type is not None
    return blank(
        call_id,
        last_event={"type": event.type.value, "key": event.event_key, "received_at": RECEIVED},
        observed_at=event.occurred_at,
        vendor_data={payload["type"]: payload["data"]},
        **fields,
    )


#: a finished inbound call as the payloads tell it (legacy: no workspace number)
ANSWERED_CALL: dict[str, Any] = {
    "direction": "inbound",
    "media": "audio",
    "initiator": THEIRS,
    "created_at": CREATED,
    "started_at": ANSWERED,
    "answered_at": ANSWERED,
    "ended_at": ENDED,
    "duration_s": 163.0,
}
BOTH_SIDES: dict[str, Any] = {"receiver": OURS, "participants": [person(THEIRS), person(OURS)]}

EVENT_RECORDS: dict[str, tuple[str, dict[str, Any]]] = {
    "call.ringing": (
        CALL,
        {
            "status": "ringing",
            "vendor_status": "ringing",
            "direction": "inbound",
            "media": "audio",
            "initiator": THEIRS,
            "participants": [person(THEIRS)],
            "created_at": CREATED,
        },
    ),
    # the new ringing event's context is narrow: no numbers yet
    "call.ringing__v2026": (
        CALL,
        {
            "status": "ringing",
            "vendor_status": "ringing",
            "direction": "inbound",
            "media": "audio",
            "created_at": CREATED,
        },
    ),
    "call.answered": (
        CALL,
        {
            "status": "in_progress",
            "direction": "inbound",
            "media": "audio",
            "initiator": THEIRS,
            **BOTH_SIDES,
            "created_at": CREATED,
            "started_at": ANSWERED,
            "answered_at": ANSWERED,
        },
    ),
    "call.completed": (
        CALL,
        {
            **ANSWERED_CALL,
            "status": "completed",
            "vendor_status": "completed",
            "participants": [person(THEIRS)],
        },
    ),
    "call.completed__older": (
        "AC24a8b8321c4f4cf2be110f4250793d51",
        {
            "status": "completed",
            "vendor_status": "completed",
            "direction": "inbound",
            "media": "audio",
            "initiator": "+18005550100",
            "receiver": "+18885550101",
            "participants": [person("+18005550100"), person("+18885550101")],
            "created_at": "2022-01-24T19:21:59.545Z",
            "ended_at": "2022-01-24T19:22:19.000Z",
            "voicemail": {
                "url": "https://m.openph.one/static/15ad4740be6048e4a80efb268d347482.mp3",
                "duration": 7.0,
                "transcript": None,
            },
        },
    ),
    "call.completed__no_answer": (
        MISSED,
        {
            "status": "no_answer",
            "vendor_status": "no-answer",
            "direction": "inbound",
            "media": "audio",
            "initiator": THEIRS,
            "participants": [person(THEIRS)],
            "created_at": "2026-04-13T16:40:02.117Z",
            "ended_at": "2026-04-13T16:40:30.000Z",
            "duration_s": 0.0,
        },
    ),
    "call.completed__outgoing_busy": (
        "AC0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        {
            "status": "busy",
            "vendor_status": "busy",
            "direction": "outbound",
            "media": "audio",
            "receiver": THEIRS,
            "participants": [person(THEIRS)],
            "created_at": "2026-04-13T17:11:01.730Z",
            "ended_at": "2026-04-13T17:11:09.000Z",
            "duration_s": 0.0,
        },
    ),
    "call.completed__v2026": (
        CALL,
        {**ANSWERED_CALL, **BOTH_SIDES, "status": "completed", "vendor_status": "answered"},
    ),
    "call.completed__v2026_unanswered": (
        MISSED,
        {
            "status": "missed",
            "vendor_status": "unanswered",
            "direction": "inbound",
            "media": "audio",
            "initiator": THEIRS,
            **BOTH_SIDES,
            "created_at": "2026-04-13T16:40:02.117Z",
            "ended_at": "2026-04-13T16:40:30.000Z",
        },
    ),
    "call.completed__v2026_failed": (
        "AC5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",
        {
            "status": "failed",
            "vendor_status": "failed",
            "direction": "outbound",
            "media": "audio",
            "initiator": OURS,
            "receiver": THEIRS,
            "participants": [person(THEIRS), person(OURS)],
            "created_at": "2026-04-13T17:30:01.000Z",
            "ended_at": "2026-04-13T17:30:03.000Z",
        },
    ),
    # the new call.missed resource is minimal; Quo fires it for incoming calls only
    "call.missed": (
        MISSED,
        {
            "status": "missed",
            "direction": "inbound",
            "media": "audio",
            "initiator": THEIRS,
            **BOTH_SIDES,
            "created_at": "2026-04-13T16:40:02.117Z",
        },
    ),
    # legacy media[] has no recording ids: the recordings come from Get Call's answer
    "call.recording.completed": (
        CALL,
        {
            **ANSWERED_CALL,
            "status": "completed",
            "vendor_status": "completed",
            "participants": [person(THEIRS)],
        },
    ),
    "call.recording.completed__v2026": (
        CALL,
        {
            **ANSWERED_CALL,
            **BOTH_SIDES,
            "recordings": [
                {
                    "id": "CRwRVK2qBq",
                    "url": RECORDING_URL,
                    "url_from": "payload",
                    "duration_s": 154.0,
                    "started_at": "2026-04-13T15:02:20.000Z",
                    "stored_as": None,
                }
            ],
        },
    ),
    "call.summary.completed": (CALL, {"summary": SUMMARY}),
    "call.summary.completed__v2026": (CALL, {"summary": SUMMARY}),
    "callSummary": (
        CALL,
        {
            "summary": {
                "summary": ["You talked about the weather."],
                "next_steps": ["Bring an umbrella."],
            }
        },
    ),
    "call.transcript.completed": (CALL, {"transcript": DIALOGUE}),
    "call.transcript.completed__v2026": (CALL, {"transcript": DIALOGUE}),
    "callTranscript": (
        CALL,
        {
            "transcript": [
                {
                    "content": "Hello, world!",
                    "start": 5.123456,
                    "end": 10.123456,
                    "identifier": "+19876543210",
                    "userId": "USlHhXmRMz",
                }
            ]
        },
    ),
    "call.voicemail.completed": (
        MISSED,
        {
            "direction": "inbound",
            "initiator": THEIRS,
            "receiver": OURS,
            "voicemail": {"url": VOICEMAIL_URL, "duration": 18.0, "transcript": VOICEMAIL_TEXT},
        },
    ),
    "call.voicemail.completed__unresolved": (
        "AC71e3a2def05061728394a5b6c7d8e9f0",
        {
            "direction": "inbound",
            "initiator": THEIRS,
            "receiver": OURS,
            "voicemail": {"url": VOICEMAIL_URL, "duration": 18.0, "transcript": None},
        },
    ),
}


def test_every_call_event_fixture_has_an_expected_record() -> None:
    dropped = {"message.received", "message.received__v2026", "contact.updated"}
    assert set(EVENT_RECORDS) == set(webhook_fixtures()) - dropped


@pytest.mark.parametrize("name", sorted(EVENT_RECORDS))
def test_each_fixture_maps_to_its_expected_record(name: str) -> None:
    call_id, fields = EVENT_RECORDS[name]
    assert from_event(name) == event_record(name, call_id, **fields)


# --- Get Call answers ---------------------------------------------------------------------


def api_record(call: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return blank(
        call["id"],
        enrichment="api",
        observed_at=OBSERVED,
        media="audio",
        **fields,
    )


def from_api(
    call: dict[str, Any], extras: dict[str, Any] | None = None, **notes: str
) -> dict[str, Any]:
    fetched = Fetched(call=call, extras=extras or {}, notes=notes)
    return record_json(VENDOR.record_from_api(SOURCE, fetched, OBSERVED))


def test_get_call_with_every_extra() -> None:
    call = api_fixture("get_call")["data"]
    extras = {
        "recordings": api_fixture("call_recordings")["data"],
        "summary": api_fixture("call_summary")["data"],
        "transcript": api_fixture("call_transcript")["data"],
        "voicemail": api_fixture("call_voicemail")["data"],
    }
    assert from_api(call, extras) == api_record(
        call,
        status="completed",
        vendor_status="completed",
        direction="inbound",
        initiator=THEIRS,
        participants=[person(THEIRS)],
        created_at="2026-04-13T15:02:11.000Z",
        started_at="2026-04-13T15:02:19.000Z",
        answered_at="2026-04-13T15:02:19.000Z",
        ended_at=ENDED,
        duration_s=163.0,
        # the "absent" recording has no audio and is left out
        recordings=[
            {
                "id": "CRwRVK2qBq",
                "url": RECORDING_URL,
                "url_from": "api",
                "duration_s": 154.0,
                "started_at": "2026-04-13T15:02:20.000Z",
                "stored_as": None,
            }
        ],
        summary=SUMMARY,
        transcript=DIALOGUE,
        voicemail={"url": VOICEMAIL_URL, "duration": 18.0, "transcript": VOICEMAIL_TEXT},
        vendor_data={"call": call, **extras},
    )


def test_listed_call_without_extras() -> None:
    """Reconcile maps List Calls items the same way, without the extras."""
    call = api_fixture("get_call__missed")["data"]
    assert from_api(call) == api_record(
        call,
        status="no_answer",
        vendor_status="no-answer",
        direction="inbound",
        initiator=THEIRS,
        participants=[person(THEIRS)],
        created_at="2026-04-13T16:40:02.000Z",
        ended_at="2026-04-13T16:40:30.000Z",
        duration_s=0.0,
        vendor_data={"call": call},
    )


def test_older_call_shape_with_media_and_voicemail() -> None:
    call = api_fixture("get_call__older")["data"]
    assert from_api(call) == api_record(
        call,
        status="completed",
        vendor_status="completed",
        direction="inbound",
        initiator="+18005550100",
        receiver="+18885550101",
        participants=[person("+18005550100"), person("+18885550101")],
        created_at="2022-01-24T19:21:59.545Z",
        ended_at="2022-01-24T19:22:19.000Z",
        recordings=[
            {
                "id": "media-0c5b2a1d9e8f4c3b",
                "url": "https://m.openph.one/static/0c5b2a1d9e8f4c3b.mp3",
                "url_from": "api",
                "duration_s": 12.0,
                "started_at": None,
                "stored_as": None,
            }
        ],
        voicemail={
            "url": "https://m.openph.one/static/15ad4740be6048e4a80efb268d347482.mp3",
            "duration": 7.0,
            "transcript": None,
        },
        vendor_data={"call": call},
    )


def test_unfinished_extras_and_notes() -> None:
    call = api_fixture("get_call")["data"]
    extras = {
        "summary": api_fixture("call_summary__in_progress")["data"],
        "voicemail": api_fixture("call_voicemail__in_progress")["data"],
        "recordings": [],
    }
    note = "forbidden: the plan or key does not include this"
    record = from_api(call, extras, transcript=note)
    assert (record["summary"], record["voicemail"], record["recordings"]) == (None, None, [])
    assert record["vendor_data"] == {"call": call, **extras, "notes": {"transcript": note}}


def test_get_call_without_id_is_a_bug() -> None:
    with pytest.raises(ValueError, match="without id"):
        from_api({"status": "completed"})


def test_event_and_api_records_converge() -> None:
    """The API does not name our number; the new webhooks' context does, and the merge
    keeps it while the API's answer fills in the rest."""
    event = VENDOR.parse(signed(fixture_body("call.completed__v2026")))
    observed = VENDOR.record_from_event(SOURCE, event, RECEIVED)
    call = api_fixture("get_call")["data"]
    fetched = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    merged = merge(merge(None, observed), fetched)
    assert (merged.status, merged.receiver, merged.enrichment) == (
        CallStatus.COMPLETED,
        OURS,
        "api",
    )
    assert merged.last_event is not None
    assert merged.last_event.key == event.event_key


# --- tables -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor_status", "expected"),
    [
        ("queued", CallStatus.RINGING),
        ("initiated", CallStatus.RINGING),
        ("ringing", CallStatus.RINGING),
        ("in-progress", CallStatus.IN_PROGRESS),
        ("answered", CallStatus.IN_PROGRESS),
        ("completed", CallStatus.COMPLETED),
        ("busy", CallStatus.BUSY),
        ("failed", CallStatus.FAILED),
        ("no-answer", CallStatus.NO_ANSWER),
        ("canceled", CallStatus.CANCELED),
        ("missed", CallStatus.MISSED),
        ("abandoned", CallStatus.MISSED),
        ("forwarded", CallStatus.COMPLETED),
        ("COMPLETED", CallStatus.COMPLETED),
        ("teleported", CallStatus.UNKNOWN),
        (None, CallStatus.UNKNOWN),
        (42, CallStatus.UNKNOWN),
    ],
)
def test_api_status_table(vendor_status: Any, expected: CallStatus) -> None:
    assert api_status(vendor_status) is expected


def test_every_documented_api_status_is_mapped() -> None:
    documented = [
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
        "missed",
        "answered",
        "forwarded",
        "abandoned",
    ]
    assert set(documented) <= set(API_STATUS)


@pytest.mark.parametrize(
    ("vendor_type", "status", "expected"),
    [
        ("call.ringing", None, EventType.RINGING),
        ("call.answered", None, EventType.STARTED),
        ("call.completed", "completed", EventType.COMPLETED),
        ("call.completed", "answered", EventType.COMPLETED),
        ("call.completed", "forwarded", EventType.COMPLETED),
        ("call.completed", "ai-handled", EventType.COMPLETED),
        ("call.completed", None, EventType.COMPLETED),
        ("call.completed", "no-answer", EventType.MISSED),
        ("call.completed", "missed", EventType.MISSED),
        ("call.completed", "busy", EventType.MISSED),
        ("call.completed", "canceled", EventType.MISSED),
        ("call.completed", "abandoned", EventType.MISSED),
        ("call.completed", "unanswered", EventType.MISSED),
        ("call.completed", "failed", EventType.FAILED),
        ("call.missed", None, EventType.MISSED),
        ("call.recording.completed", "completed", EventType.RECORDING_READY),
        ("call.summary.completed", "completed", EventType.SUMMARY_READY),
        ("callSummary", "completed", EventType.SUMMARY_READY),
        ("call.transcript.completed", "completed", EventType.TRANSCRIPT_READY),
        ("callTranscript", "completed", EventType.TRANSCRIPT_READY),
        ("call.voicemail.completed", None, EventType.VOICEMAIL_READY),
        ("message.received", "received", None),
        ("message.delivered", "delivered", None),
        ("contact.updated", None, None),
        ("task.created", None, None),
        ("call.forwarded", None, None),
    ],
)
def test_event_type_table(vendor_type: str, status: Any, expected: EventType | None) -> None:
    assert event_type(vendor_type, status) is expected
    if expected is not None:
        assert vendor_type in EVENT_TYPES
