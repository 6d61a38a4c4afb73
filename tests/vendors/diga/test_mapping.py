"""Diga workflow bodies and Get Call answers → whole call records."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import pytest

from callhook.record import CallStatus, merge
from callhook.vendors import diga
from callhook.vendors.base import Fetched
from callhook.vendors.diga.simulate import simulated_call
from tests.vendors.diga.conftest import CONFIG, api_fixture, fixture_body, signed, webhook_fixtures
from tests.vendors.support import blank_record, record_json

VENDOR = diga.VENDOR
SOURCE = "diga-es"
RECEIVED = "2025-03-14T18:00:00.000Z"
OBSERVED = "2025-03-14T18:00:05.000Z"
AGENT = "6f1d2c3b-8a4e-4c5d-9e0f-1a2b3c4d5e6f"
OUTBOUND_AGENT = "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"
CALL_ID = "7c1e4b2a-9d3f-4e5a-8b6c-0d1e2f3a4b5c"
GREETING = "Hola, le atiende Lucía de Clínica Dental Sonrisa. ¿En qué puedo ayudarle?"


#: a record's JSON with nothing known but its identity (and Diga's audio), then `fields`
blank = partial(blank_record, SOURCE, "diga", media="audio")


def said(
    role: str, content: str | None, at: str, *, id: str | None = None, tool: Any = None
) -> dict[str, Any]:
    """One transcript entry."""
    return {"id": id, "role": role, "content": content, "created_at": at, "tool_call": tool}


def event_record(name: str, type_: str, at: str | None, **fields: Any) -> dict[str, Any]:
    """The expected record for webhook fixture `name`: identity, last_event, the raw body
    under vendor_data["call_finished"], then `fields`."""
    payload = orjson.loads(fixture_body(name))
    return blank(
        payload["call_id"],
        last_event={
            "type": type_,
            "key": f"call_finished:{payload['call_id']}",
            "received_at": RECEIVED,
        },
        observed_at=at or RECEIVED,
        vendor_data={"call_finished": payload},
        **fields,
    )


EVENT_RECORDS: dict[str, dict[str, Any]] = {
    "call_finished": event_record(
        "call_finished",
        "call.completed",
        "2025-03-14T09:31:40.000Z",
        status="completed",
        vendor_status="completed",
        direction="inbound",
        initiator="+34612345678",
        receiver=AGENT,
        created_at="2025-03-14T09:30:04.000Z",
        started_at="2025-03-14T09:30:04.000Z",
        answered_at="2025-03-14T09:30:04.000Z",
        ended_at="2025-03-14T09:31:40.000Z",
        duration_s=96.0,
        transcript=[
            said("assistant", GREETING, "2025-03-14T09:30:05.000Z"),
            said(
                "user",
                "Hola, quería pedir cita para una limpieza la semana que viene.",
                "2025-03-14T09:30:12.000Z",
            ),
            said(
                "assistant",
                "Tengo hueco el martes a las 10:30. ¿Le va bien?",
                "2025-03-14T09:30:41.000Z",
            ),
            said("user", "Perfecto, el martes a las 10:30.", "2025-03-14T09:31:02.000Z"),
        ],
    ),
    "call_finished__no_answer": event_record(
        "call_finished__no_answer",
        "call.missed",
        "2025-03-14T10:15:32.000Z",
        status="no_answer",
        vendor_status="no_answer",
        direction="outbound",
        initiator=OUTBOUND_AGENT,
        receiver="+34698765432",
        ended_at="2025-03-14T10:15:32.000Z",
        duration_s=0.0,
    ),
    "call_finished__failed": event_record(
        "call_finished__failed",
        "call.failed",
        "2025-03-14T11:02:12.000Z",
        status="failed",
        vendor_status="failed",
        direction="inbound",
        initiator="+34611222333",
        receiver=AGENT,
        created_at="2025-03-14T11:02:00.000Z",
        started_at="2025-03-14T11:02:00.000Z",
        ended_at="2025-03-14T11:02:12.000Z",
        duration_s=12.0,
        transcript=[
            said(
                "assistant",
                "Hola, le atiende Lucía de Clínica Dental Sonrisa.",
                "2025-03-14T11:02:01.000Z",
            )
        ],
    ),
    "call_finished__transferred": event_record(
        "call_finished__transferred",
        "call.completed",
        "2025-03-14T12:20:48.000Z",
        status="completed",
        vendor_status="transferred",
        direction="inbound",
        initiator="+34655443322",
        receiver=AGENT,
        created_at="2025-03-14T12:20:00.000Z",
        started_at="2025-03-14T12:20:00.000Z",
        answered_at="2025-03-14T12:20:00.000Z",
        ended_at="2025-03-14T12:20:48.000Z",
        duration_s=48.0,
        transcript=[
            said("assistant", GREETING, "2025-03-14T12:20:01.000Z"),
            said(
                "user",
                "Tengo una urgencia, me duele mucho una muela.",
                "2025-03-14T12:20:09.000Z",
            ),
            said("assistant", "Le paso ahora mismo con recepción.", "2025-03-14T12:20:40.000Z"),
        ],
    ),
    # only the call id: the status stays unknown until Get Call tells it
    "call_finished__minimal": event_record("call_finished__minimal", "call.completed", None),
    "call_finished__as_strings": event_record(
        "call_finished__as_strings",
        "call.completed",
        "2025-03-14T13:01:07.000Z",
        status="completed",
        vendor_status="completed",
        direction="outbound",
        initiator=OUTBOUND_AGENT,
        receiver="+34677889900",
        created_at="2025-03-14T13:00:05.000Z",
        started_at="2025-03-14T13:00:05.000Z",
        answered_at="2025-03-14T13:00:05.000Z",
        ended_at="2025-03-14T13:01:07.000Z",
        duration_s=62.0,
        transcript=[
            said(
                "assistant",
                "Buenas tardes, le llamo de Clínica Dental Sonrisa para confirmar su cita "
                "de mañana.",
                "2025-03-14T13:00:06.000Z",
            ),
            said("user", "Sí, allí estaré.", "2025-03-14T13:00:15.000Z"),
        ],
    ),
}


def test_every_fixture_has_an_expected_record() -> None:
    assert set(webhook_fixtures()) == set(EVENT_RECORDS)


@pytest.mark.parametrize("name", sorted(EVENT_RECORDS))
def test_each_fixture_maps_to_its_expected_record(name: str) -> None:
    event = VENDOR.parse(signed(fixture_body(name)))
    assert record_json(VENDOR.record_from_event(SOURCE, event, RECEIVED)) == EVENT_RECORDS[name]


def test_a_body_with_a_recording_url_has_the_calls_recording() -> None:
    payload = orjson.loads(fixture_body("call_finished"))
    payload["recording_url"] = "https://storage.diga.io/recordings/x.wav"
    event = VENDOR.parse(signed(orjson.dumps(payload)))
    record = VENDOR.record_from_event(SOURCE, event, RECEIVED)
    assert [r.model_dump() for r in record.recordings] == [
        {
            "id": f"{CALL_ID}-recording",
            "url": "https://storage.diga.io/recordings/x.wav",
            "url_from": "payload",
            "duration_s": None,
            "started_at": None,
            "stored_as": None,
        }
    ]


def recording(call_id: str) -> dict[str, Any]:
    return {
        "id": f"{call_id}-recording",
        "url": f"https://storage.diga.io/recordings/{call_id}.wav",
        "url_from": "api",
        "duration_s": None,
        "started_at": None,
        "stored_as": None,
    }


def api_record(call: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return blank(
        call["id"],
        vendor_data={"call": call, **fields.pop("vendor_data", {})},
        enrichment="api",
        observed_at=OBSERVED,
        **fields,
    )


def test_record_from_api_completed_with_messages() -> None:
    call = api_fixture("get_call")
    messages = api_fixture("messages")["data"]
    expected = api_record(
        call,
        status="completed",
        vendor_status="completed",
        direction="inbound",
        initiator="+34612345678",
        receiver=AGENT,
        created_at="2025-03-14T09:30:00.000Z",
        started_at="2025-03-14T09:30:04.000Z",
        answered_at="2025-03-14T09:30:04.000Z",
        ended_at="2025-03-14T09:31:40.000Z",
        duration_s=96.0,
        recordings=[recording(CALL_ID)],
        transcript=[
            said("assistant", GREETING, "2025-03-14T09:30:05.000Z", id=messages[0]["message_id"]),
            said(
                "user",
                "Hola, quería pedir cita para una limpieza la semana que viene.",
                "2025-03-14T09:30:12.000Z",
                id=messages[1]["message_id"],
            ),
            said(
                "assistant",
                "",
                "2025-03-14T09:30:20.000Z",
                id=messages[2]["message_id"],
                tool={
                    "name": "check_availability",
                    "arguments": {"service": "limpieza", "week": "next"},
                },
            ),
            said(
                "assistant",
                "Tengo hueco el martes a las 10:30. ¿Le va bien?",
                "2025-03-14T09:30:41.000Z",
                id=messages[3]["message_id"],
            ),
            said(
                "user",
                "Perfecto, el martes a las 10:30.",
                "2025-03-14T09:31:02.000Z",
                id=messages[4]["message_id"],
            ),
        ],
        vendor_data={"transcript": messages},
    )
    fetched = Fetched(call=call, extras={"transcript": messages})
    assert record_json(VENDOR.record_from_api(SOURCE, fetched, OBSERVED)) == expected
    # a listed call (reconcile: no extras) maps the same, without the transcript
    listed = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    assert record_json(listed) == {**expected, "transcript": None, "vendor_data": {"call": call}}


def test_record_from_api_outbound_no_answer() -> None:
    call = api_fixture("get_call__no_answer")
    expected = api_record(
        call,
        status="no_answer",
        vendor_status="no_answer",
        direction="outbound",
        initiator=OUTBOUND_AGENT,
        receiver="+34698765432",
        created_at="2025-03-14T10:15:02.000Z",
        ended_at="2025-03-14T10:15:32.000Z",
        duration_s=0.0,
    )
    record = VENDOR.record_from_api(SOURCE, Fetched(call=call, extras={}), OBSERVED)
    assert record_json(record) == expected


def test_record_from_api_transferred() -> None:
    call = api_fixture("get_call__transferred")
    expected = api_record(
        call,
        status="completed",
        vendor_status="transferred",
        direction="inbound",
        initiator="+34655443322",
        receiver=AGENT,
        created_at="2025-03-14T12:19:58.000Z",
        started_at="2025-03-14T12:20:00.000Z",
        answered_at="2025-03-14T12:20:00.000Z",
        ended_at="2025-03-14T12:20:48.000Z",
        duration_s=48.0,
        recordings=[recording(call["id"])],
        transcript=None,
        vendor_data={"transcript": []},
    )
    fetched = Fetched(call=call, extras={"transcript": []})
    assert record_json(VENDOR.record_from_api(SOURCE, fetched, OBSERVED)) == expected


def test_record_from_api_web_call_with_fractional_times_and_a_string_duration() -> None:
    call = api_fixture("get_call__web")
    expected = api_record(
        call,
        status="completed",
        vendor_status="completed",
        direction="inbound",
        initiator="web-visitor-7e9f1a3b",
        receiver=AGENT,
        created_at="2025-03-14T15:40:00.250Z",
        started_at="2025-03-14T15:40:01.500Z",
        answered_at="2025-03-14T15:40:01.500Z",
        ended_at="2025-03-14T15:42:31.750Z",
        duration_s=150.25,
        recordings=[recording(call["id"])],
    )
    assert record_json(VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)) == expected


def test_record_from_api_fallbacks() -> None:
    """No agent id: the phone line names the agent side; no duration: end - start; no
    contact identifier: the contact id; a summary string is kept."""
    call = {
        "id": CALL_ID,
        "type": "outbound",
        "agent_id": None,
        "phone_register_id": "d3c2b1a0-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
        "contact": {"id": "2f4a6c8e-1b3d-4f5a-9c7e-0a2b4c6d8e1f", "identifier": ""},
        "start_time": "2025-03-14T09:30:04Z",
        "end_time": "2025-03-14T09:31:40.5Z",
        "summary": "Cita reservada para el martes a las 10:30.",
    }
    record = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    assert (record.initiator, record.receiver) == (
        "d3c2b1a0-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
        "2f4a6c8e-1b3d-4f5a-9c7e-0a2b4c6d8e1f",
    )
    assert (record.duration_s, record.status, record.answered_at) == (96.5, "unknown", None)
    assert record.summary == "Cita reservada para el martes a las 10:30."


@pytest.mark.parametrize(
    ("vendor_status", "status", "answered"),
    [
        ("dialing", CallStatus.RINGING, False),
        ("in_progress", CallStatus.IN_PROGRESS, True),
        ("completed", CallStatus.COMPLETED, True),
        ("failed", CallStatus.FAILED, False),
        ("transferred", CallStatus.COMPLETED, True),
        ("no_answer", CallStatus.NO_ANSWER, False),
        ("Completed", CallStatus.COMPLETED, True),
        ("voicemail", CallStatus.UNKNOWN, False),
        (None, CallStatus.UNKNOWN, False),
    ],
)
def test_status_table(vendor_status: str | None, status: CallStatus, answered: bool) -> None:
    call = {"id": CALL_ID, "status": vendor_status, "start_time": "2025-03-14T09:30:04Z"}
    record = VENDOR.record_from_api(SOURCE, Fetched(call=call), OBSERVED)
    assert (record.status, record.vendor_status) == (status, vendor_status)
    assert record.answered_at == ("2025-03-14T09:30:04.000Z" if answered else None)
    body = orjson.dumps({"call_id": CALL_ID, "status": vendor_status})
    from_event = VENDOR.record_from_event(SOURCE, VENDOR.parse(signed(body)), RECEIVED)
    assert from_event.status is status


def test_a_call_object_without_id_is_a_bug() -> None:
    with pytest.raises(ValueError, match="without id"):
        VENDOR.record_from_api(SOURCE, Fetched(call={"status": "completed"}), OBSERVED)


def test_event_and_api_converge_whatever_the_order() -> None:
    """The workflow body and Get Call about one call merge into one record: one recording,
    the API's transcript (with message ids), the API's creation time."""
    simulated = simulated_call(CALL_ID, 1741945000.0)
    delivery = VENDOR.kit.simulate_delivery(CONFIG, "call_finished", simulated, now=1741945000.0)
    from_event = VENDOR.record_from_event(SOURCE, VENDOR.parse(delivery), RECEIVED)
    api = VENDOR.record_from_api(SOURCE, Fetched(simulated.call, simulated.extras), OBSERVED)
    forward = merge(merge(None, from_event), api)
    backward = merge(merge(None, api), from_event)
    for merged in (forward, backward):
        assert merged.status is CallStatus.COMPLETED
        assert merged.recordings == api.recordings
        assert merged.transcript == api.transcript
        assert merged.created_at == api.created_at
        assert (merged.initiator, merged.receiver) == (api.initiator, api.receiver)
        assert merged.enrichment == "api"
        assert set(merged.vendor_data) == {"call_finished", "call", "transcript"}
    # the body leaves the tool call out; its spoken messages are the API's, in order
    spoken = [m for m in api.transcript if m["tool_call"] is None]
    assert [(m["role"], m["content"]) for m in from_event.transcript] == [
        (m["role"], m["content"]) for m in spoken
    ]
