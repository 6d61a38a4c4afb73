"""The call record's merge: whatever the order, the newest state wins."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from callhook.record import (
    CallRecord,
    CallStatus,
    LastEvent,
    Recording,
    first_revision,
    iso_z,
    merge,
)


def observation(status: CallStatus, observed_at: str, **fields: Any) -> CallRecord:
    return CallRecord(
        source="quo",
        vendor="openphone",
        call_id="AC1",
        status=status,
        observed_at=observed_at,
        **fields,
    )


RINGING = observation(
    CallStatus.RINGING,
    "2026-01-01T10:00:00.000Z",
    direction="inbound",
    initiator="+15550100",
    receiver="+15550101",
    last_event=LastEvent(type="call.ringing", key="e1", received_at="2026-01-01T10:00:00.100Z"),
)
ANSWERED = observation(
    CallStatus.IN_PROGRESS,
    "2026-01-01T10:00:05.000Z",
    answered_at="2026-01-01T10:00:05.000Z",
    last_event=LastEvent(type="call.started", key="e2", received_at="2026-01-01T10:00:05.100Z"),
)
COMPLETED = observation(
    CallStatus.COMPLETED,
    "2026-01-01T10:01:00.000Z",
    duration_s=55.0,
    ended_at="2026-01-01T10:01:00.000Z",
    last_event=LastEvent(type="call.completed", key="e3", received_at="2026-01-01T10:01:00.100Z"),
)
RECORDING = observation(
    CallStatus.UNKNOWN,
    "2026-01-01T10:02:00.000Z",
    recordings=(Recording(id="R1", url="https://x/r1.mp3", duration_s=50.0),),
    last_event=LastEvent(
        type="call.recording.ready", key="e4", received_at="2026-01-01T10:02:00.100Z"
    ),
)


def fold(records: tuple[CallRecord, ...]) -> CallRecord:
    current: CallRecord | None = None
    for record in records:
        current = merge(current, record)
    assert current is not None
    return current


def test_every_order_converges_on_the_newest_state() -> None:
    results = {
        fold(order).model_dump(exclude={"updated_at", "revision"}, mode="json").__repr__()
        for order in itertools.permutations((RINGING, ANSWERED, COMPLETED, RECORDING))
    }
    assert len(results) == 1
    started = first_revision()
    final = fold((COMPLETED, RINGING, RECORDING, ANSWERED))
    assert final.status is CallStatus.COMPLETED
    assert final.direction == "inbound"
    assert final.initiator == "+15550100"
    assert final.answered_at == "2026-01-01T10:00:05.000Z"
    assert final.duration_s == 55.0
    assert [r.id for r in final.recordings] == ["R1"]
    assert final.last_event is not None
    assert final.last_event.key == "e4"
    # the first merge stamps the creation time in ms; each later one adds one
    assert started <= final.revision - 3 <= first_revision()


def test_a_call_recreated_after_the_store_forgot_it_outranks_its_old_record() -> None:
    old = fold((RINGING, ANSWERED, COMPLETED, RECORDING))
    time.sleep(0.01)  # in production: RECORD_TTL_S (30 days) or a lost Redis later
    again = merge(None, RECORDING)
    assert again.revision > old.revision


def test_an_older_ringing_after_completed_does_not_move_status_back() -> None:
    final = fold((COMPLETED, RINGING))
    assert final.status is CallStatus.COMPLETED
    assert final.ended_at == "2026-01-01T10:01:00.000Z"


def test_a_later_final_status_from_the_api_replaces_a_payload_guess() -> None:
    guessed = observation(CallStatus.COMPLETED, "2026-01-01T10:01:00.000Z")
    from_api = observation(CallStatus.NO_ANSWER, "2026-01-01T10:01:30.000Z")
    assert fold((guessed, from_api)).status is CallStatus.NO_ANSWER
    assert fold((from_api, guessed)).status is CallStatus.NO_ANSWER


def test_recordings_union_keeps_what_each_knew() -> None:
    first = observation(
        CallStatus.COMPLETED,
        "2026-01-01T10:01:00.000Z",
        recordings=(Recording(id="R1", url="u1", stored_as="s3://b/k"),),
    )
    second = observation(
        CallStatus.COMPLETED,
        "2026-01-01T10:02:00.000Z",
        recordings=(
            Recording(id="R1", url="u1-fresh", duration_s=3.0),
            Recording(id="R2", url="u2"),
        ),
    )
    merged = fold((first, second))
    assert merged.recordings == (
        Recording(id="R1", url="u1-fresh", duration_s=3.0, stored_as="s3://b/k"),
        Recording(id="R2", url="u2"),
    )


def recorded(observed_at: str, *recordings: Recording) -> CallRecord:
    return observation(CallStatus.COMPLETED, observed_at, recordings=recordings)


def test_a_url_the_api_answered_is_kept_over_a_payloads_in_every_order() -> None:
    # A payload may name any URL; only the API's may be downloaded, so a payload's never
    # replaces it, whether the payload is older, newer, or merged first or last.
    api = recorded("2026-01-01T10:01:00.000Z", Recording(id="R1", url="api", url_from="api"))
    earlier = recorded("2026-01-01T10:00:00.000Z", Recording(id="R1", url="p0", url_from="payload"))
    later = recorded(
        "2026-01-01T10:02:00.000Z", Recording(id="R1", url="p1", url_from="payload", duration_s=9.0)
    )
    for order in itertools.permutations((api, earlier, later)):
        [merged] = fold(order).recordings
        assert (merged.url, merged.url_from) == ("api", "api"), order
        assert merged.duration_s == 9.0  # the rest of the payload's news still counts


def test_a_payload_url_stays_a_payload_url_until_the_api_answers_one() -> None:
    payload = recorded("2026-01-01T10:00:00.000Z", Recording(id="R1", url="p", url_from="payload"))
    # the API knows the recording but gives no URL (yet): the payload's URL is not its
    silent = recorded("2026-01-01T10:01:00.000Z", Recording(id="R1", duration_s=3.0))
    for order in itertools.permutations((payload, silent)):
        [merged] = fold(order).recordings
        assert (merged.url, merged.url_from, merged.duration_s) == ("p", "payload", 3.0)
    newer_api = recorded(
        "2026-01-01T10:05:00.000Z", Recording(id="R1", url="api-2", url_from="api")
    )
    older_api = recorded(
        "2026-01-01T09:00:00.000Z", Recording(id="R1", url="api-1", url_from="api")
    )
    for order in itertools.permutations((payload, older_api, newer_api)):
        [merged] = fold(order).recordings
        assert (merged.url, merged.url_from) == ("api-2", "api"), order


def test_url_from_is_part_of_the_wire_shape_and_needs_a_url() -> None:
    record = recorded("2026-01-01T10:00:00.000Z", Recording(id="R1", url="u", url_from="api"))
    wire = record.to_json_dict()
    assert wire["recordings"][0]["url_from"] == "api"
    assert CallRecord.model_validate_json(__import__("orjson").dumps(wire)) == record
    assert Recording(id="R2", url_from="api").url_from is None


def test_wire_shape_spells_schema() -> None:
    assert COMPLETED.to_json_dict()["schema"] == "callhook.call/v1"
    assert (
        CallRecord.model_validate_json(__import__("orjson").dumps(COMPLETED.to_json_dict()))
        == COMPLETED
    )


def test_iso_z_writes_any_moment_as_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2024, 5, 1, 16, 3, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    assert iso_z(moment) == "2024-05-01T14:03:00.123Z"
    # a naive datetime is UTC; a number is unix seconds
    assert iso_z(moment.astimezone(UTC).replace(tzinfo=None)) == "2024-05-01T14:03:00.123Z"
    assert iso_z(moment.timestamp()) == "2024-05-01T14:03:00.123Z"
    assert iso_z(0) == "1970-01-01T00:00:00.000Z"
    assert iso_z(moment, timespec="seconds") == "2024-05-01T14:03:00Z"
    assert iso_z(moment, timespec="auto") == "2024-05-01T14:03:00.123456Z"
