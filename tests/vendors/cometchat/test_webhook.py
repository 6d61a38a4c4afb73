"""CometChat deliveries: Basic authentication on the raw request, then payload → Event."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from callhook.errors import AuthenticationFailed
from callhook.events import Delivery, Event, EventType
from callhook.vendors import cometchat
from callhook.vendors.cometchat.mapping import TRIGGERS
from callhook.vendors.cometchat.simulate import basic_auth_headers, simulated_call
from tests.vendors.cometchat.conftest import (
    CONFIG,
    configured,
    fixture_body,
    signed,
    webhook_fixtures,
)
from tests.vendors.support import ExpectedEvent, bad_payload_reason, refusal

VENDOR = cometchat.VENDOR
NOW = 1696935100.0
SID = "v1.us.2080843fb1d0b4a9.1696934199c5f8e1b0a94d4b7e2f3a6c8d0e1f2a3b4c5d6e7f"
MID = "v1.us.2080843fb1d0b4a9.1696934692a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e"
XID = "v1.us.2080843fb1d0b4a9.16969350017d3e9f0a1b2c4d5e6f708192a3b4c5d6e7f80912"
WH = "callhook-prod"


def _missed(trigger: str) -> dict[str, ExpectedEvent]:
    key = f"{WH}:{trigger}:53:1696935001"
    at = "2023-10-10T10:50:31.000Z"
    return {
        trigger: ExpectedEvent(key, EventType.MISSED, "msg_53", False, at),
        f"{trigger}__with_session": ExpectedEvent(key, EventType.MISSED, XID, True, at),
    }


EXPECTED: dict[str, ExpectedEvent] = {
    "call_initiated": ExpectedEvent(
        f"{WH}:call_initiated:52:1696934199",
        EventType.RINGING,
        SID,
        True,
        "2023-10-10T10:36:39.000Z",
    ),
    "call_started": ExpectedEvent(
        f"{WH}:call_started:{SID}:1696934572",
        EventType.STARTED,
        SID,
        True,
        "2023-10-10T10:42:52.000Z",
    ),
    "call_participant_joined": ExpectedEvent(
        f"{WH}:call_participant_joined:{SID}:1696934573",
        EventType.PARTICIPANT_JOINED,
        SID,
        True,
        "2023-10-10T10:42:53.000Z",
    ),
    "call_participant_left": ExpectedEvent(
        f"{WH}:call_participant_left:{SID}:1696934632",
        EventType.PARTICIPANT_LEFT,
        SID,
        True,
        "2023-10-10T10:43:52.000Z",
    ),
    "call_ended": ExpectedEvent(
        f"{WH}:call_ended:{SID}:1696934633",
        EventType.COMPLETED,
        SID,
        True,
        "2023-10-10T10:43:53.000Z",
    ),
    **_missed("call_busy"),
    **_missed("call_cancelled"),
    **_missed("call_rejected"),
    **_missed("call_unanswered"),
    "meeting_started": ExpectedEvent(
        f"{WH}:meeting_started:{MID}:1696934692",
        EventType.STARTED,
        MID,
        True,
        "2023-10-10T10:44:52.000Z",
    ),
    "meeting_participant_joined": ExpectedEvent(
        f"{WH}:meeting_participant_joined:{MID}:1696934692",
        EventType.PARTICIPANT_JOINED,
        MID,
        True,
        "2023-10-10T10:44:52.000Z",
    ),
    "meeting_participant_joined__with_uid": ExpectedEvent(
        f"{WH}:meeting_participant_joined:{MID}:1696934692",
        EventType.PARTICIPANT_JOINED,
        MID,
        True,
        "2023-10-10T10:44:52.000Z",
    ),
    "meeting_participant_left": ExpectedEvent(
        f"{WH}:meeting_participant_left:{MID}:1696934950",
        EventType.PARTICIPANT_LEFT,
        MID,
        True,
        "2023-10-10T10:49:10.000Z",
    ),
    "meeting_ended": ExpectedEvent(
        f"{WH}:meeting_ended:{MID}:1696934951",
        EventType.COMPLETED,
        MID,
        True,
        "2023-10-10T10:49:11.000Z",
    ),
    # the recording's startTime is its key part, not the event's time
    "recording_generated": ExpectedEvent(
        f"{WH}:recording_generated:{SID}:1696934575", EventType.RECORDING_READY, SID, True, None
    ),
    "recording_generated__with_rid": ExpectedEvent(
        f"{WH}:recording_generated:{SID}:1696934575", EventType.RECORDING_READY, SID, True, None
    ),
    "transcription_generated": ExpectedEvent(
        f"{WH}:transcription_generated:{SID}:tr_0f3b2c7a",
        EventType.TRANSCRIPT_READY,
        SID,
        True,
        None,
    ),
    # not a call event: accepted and dropped, keyed by the body's digest
    "message_sent": ExpectedEvent(
        f"{WH}:message_sent:sha256-971f1c7da809bc00e73479c59ffe3ff2", None, None, False, None
    ),
}


def authenticated_event(delivery: Delivery) -> Event:
    VENDOR.authenticate(CONFIG, delivery, now=NOW, tolerance_s=300)
    return VENDOR.parse(delivery)


def test_every_fixture_is_expected_and_every_trigger_has_one() -> None:
    assert set(webhook_fixtures()) == set(EXPECTED)
    triggers = {name.split("__")[0] for name in EXPECTED}
    assert triggers == set(VENDOR.kit.simulated_types)
    assert set(TRIGGERS) <= triggers


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_its_expected_event(name: str) -> None:
    body = fixture_body(name)
    assert authenticated_event(signed(body)) == EXPECTED[name].of(name, body)


@pytest.mark.parametrize("vendor_type", VENDOR.kit.simulated_types)
def test_a_simulated_delivery_names_its_app_and_maps_by_trigger(vendor_type: str) -> None:
    """Beyond the round trip every vendor makes (tests/vendors/test_contract.py): the
    trigger table decides the type, the webhook's name leads the key, and a missed call
    (whose documented message carries no session) is keyed by its message."""
    call = simulated_call(None, NOW)
    delivery = VENDOR.kit.simulate_delivery(CONFIG, vendor_type, call, now=NOW)
    event = authenticated_event(delivery)
    payload = orjson.loads(delivery.body)
    assert event.type == TRIGGERS.get(vendor_type)
    assert event.event_key.startswith(f"callhook:{vendor_type}:")
    assert (payload["appId"], payload["region"]) == (CONFIG.app_id, CONFIG.region)
    if event.type is EventType.MISSED:
        assert (event.call_id, event.fetchable) == (f"msg_{payload['data']['call']['id']}", False)
    elif event.type is not None:
        assert (event.call_id, event.fetchable) == (call.call_id, True)


def _with_authorization(value: str | None) -> Delivery:
    headers = {"content-type": "application/json"}
    if value is not None:
        headers["authorization"] = value
    return Delivery(body=fixture_body("call_ended"), headers=headers)


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.mark.parametrize(
    ("delivery", "reason"),
    [
        (_with_authorization(None), "missing Authorization header"),
        (_with_authorization(""), "missing Authorization header"),
        (_with_authorization("Bearer abc.def"), "Authorization is not Basic"),
        (_with_authorization("Basic"), "malformed Basic credentials"),
        (_with_authorization("Basic !!not-base64!!"), "malformed Basic credentials"),
        (_with_authorization(_basic(b"no-colon-here")), "malformed Basic credentials"),
        (
            _with_authorization(_basic(b"someone-else:s3cret-pass:with-colon")),
            "wrong username",
        ),
        (_with_authorization(_basic(b"cometchat-hooks:guess")), "wrong password"),
        (_with_authorization(_basic(b"someone:guess")), "wrong username and password"),
        (
            Delivery(
                body=fixture_body("call_ended"),
                headers=basic_auth_headers("cometchat-hooks", "s3cret-pass"),
            ),
            "wrong password",
        ),
    ],
)
def test_bad_basic_credentials_are_refused_with_their_reason(
    delivery: Delivery, reason: str
) -> None:
    refused = refusal(VENDOR, CONFIG, delivery, NOW)
    assert refused.reason == reason
    assert CONFIG.basic_auth_password.get_secret_value() not in str(refused)


def test_scheme_is_case_insensitive_and_time_plays_no_part() -> None:
    token = CONFIG.basic_auth_username + ":" + CONFIG.basic_auth_password.get_secret_value()
    delivery = _with_authorization("basic " + base64.b64encode(token.encode()).decode())
    # CometChat sends no timestamp: a delivery is as valid a day later (vendor retries)
    VENDOR.authenticate(CONFIG, delivery, now=time.time() + 86400, tolerance_s=1)


def test_empty_credentials_refuse_everything() -> None:
    disabled = configured(basic_auth_password="")
    assert not disabled.webhook_enabled()
    assert not configured(basic_auth_username="").webhook_enabled()
    with pytest.raises(AuthenticationFailed, match="not configured"):
        VENDOR.authenticate(
            disabled,
            Delivery(body=b"{}", headers=basic_auth_headers("cometchat-hooks", "")),
            now=NOW,
            tolerance_s=300,
        )


def test_a_tampered_body_passes_basic_auth() -> None:
    """Basic auth proves the sender, not the bytes: CometChat has no body signature, so an
    altered body with the right credentials is accepted (docs/vendors/cometchat.md says so)."""
    body = fixture_body("call_ended").replace(b"1696934633", b"1696939999")
    event = authenticated_event(signed(body))
    assert event.event_key == f"{WH}:call_ended:{SID}:1696939999"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"data": {"sessionId": "v1.us.x.1"}}', "no trigger"),
        (b'{"trigger": "call_ended", "data": []}', "no data object"),
        (b'{"trigger": "call_ended", "data": {"destroyed_at": 1}}', "no data.sessionId"),
        (b'{"trigger": "recording_generated", "data": {"sessionId": ""}}', "no data.sessionId"),
        (
            b'{"trigger": "call_busy", "data": {"call": {"sentAt": 1696935001}}}',
            "no data.call.id and no session id",
        ),
        (b'{"trigger": "call_initiated", "data": {}}', "no data.call.id and no session id"),
    ],
)
def test_payloads_without_a_trigger_or_a_call_are_bad(body: bytes, reason: str) -> None:
    """Beyond the bodies every vendor refuses (tests/vendors/test_contract.py)."""
    assert bad_payload_reason(VENDOR, CONFIG, signed(body), NOW) == reason


def test_missing_key_part_falls_back_to_a_stable_digest() -> None:
    body = b'{"trigger": "call_started", "data": {"sessionId": "v1.us.a.1"}}'
    first, again = VENDOR.parse(signed(body)), VENDOR.parse(signed(body))
    assert first.event_key == again.event_key
    assert first.event_key.startswith("-:call_started:v1.us.a.1:sha256-")
    assert first.occurred_at is None
    other = VENDOR.parse(signed(body.replace(b"}}", b', "x": 1}}')))
    assert other.event_key != first.event_key


def test_session_id_spelled_camel_case_in_a_message_is_read() -> None:
    payload = orjson.loads(fixture_body("call_initiated"))
    entity = payload["data"]["call"]["data"]["entities"]["on"]["entity"]
    entity["sessionId"] = entity.pop("sessionid")
    event = VENDOR.parse(signed(orjson.dumps(payload)))
    assert (event.call_id, event.fetchable) == (SID, True)
