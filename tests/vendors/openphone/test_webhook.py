"""OpenPhone / Quo deliveries: signatures on the raw bytes (both generations), then
payload → Event."""

from __future__ import annotations

import base64

import orjson
import pytest

from callhook.errors import AuthenticationFailed
from callhook.events import Delivery, Event, EventType
from callhook.vendors import openphone
from callhook.vendors.openphone import OpenPhoneSource
from callhook.vendors.openphone.mapping import EVENT_TYPES
from callhook.vendors.openphone.signatures import legacy_signature
from callhook.vendors.openphone.simulate import (
    Generation,
    legacy_signed_headers,
    simulate_delivery,
    simulated_call,
    standard_signed_headers,
)
from tests.vendors.openphone.conftest import (
    CONFIG,
    MSG_ID,
    NOW,
    SIGNING_SECRET,
    WEBHOOK_SECRET,
    configured,
    fixture_body,
    signed,
    webhook_fixtures,
)
from tests.vendors.support import ExpectedEvent, bad_payload_reason

VENDOR = openphone.VENDOR
CALL = "AC3fe91c2b7d4e4a0c9b1f5e6d7a8b9c0d"
MISSED = "AC9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"
TOLERANCE = 300
GENERATIONS: list[Generation] = ["legacy", "2026-03-30"]


def legacy(vendor_type: str, event_id: str) -> str:
    return f"evt:{vendor_type}:{event_id}"


def new(vendor_type: str) -> str:
    return f"whk:{vendor_type}:{MSG_ID}"


EXPECTED: dict[str, ExpectedEvent] = {
    "call.ringing": ExpectedEvent(
        legacy("call.ringing", "EV0ea54cadfbf342e6ac4ca1f22ed1700c"),
        EventType.RINGING,
        CALL,
        True,
        "2026-04-13T15:02:11.915Z",
    ),
    "call.ringing__v2026": ExpectedEvent(
        new("call.ringing"), EventType.RINGING, CALL, True, "2026-04-13T15:02:11.915Z"
    ),
    "call.answered": ExpectedEvent(
        new("call.answered"), EventType.STARTED, CALL, True, "2026-04-13T15:02:19.204Z"
    ),
    "call.completed": ExpectedEvent(
        legacy("call.completed", "EVc67ec998b35c41d388af50799aeeba40"),
        EventType.COMPLETED,
        CALL,
        True,
        "2026-04-13T15:05:03.557Z",
    ),
    # Quo reports a voicemail-only call as "completed" with answeredAt null: still completed
    "call.completed__older": ExpectedEvent(
        legacy("call.completed", "EVd39d3c8d6f244d21a9131de4fc9350d0"),
        EventType.COMPLETED,
        "AC24a8b8321c4f4cf2be110f4250793d51",
        True,
        "2022-01-24T19:22:25.427Z",
    ),
    "call.completed__no_answer": ExpectedEvent(
        legacy("call.completed", "EV1f2e3d4c5b6a79880716253443526170"),
        EventType.MISSED,
        MISSED,
        True,
        "2026-04-13T16:40:31.020Z",
    ),
    "call.completed__outgoing_busy": ExpectedEvent(
        legacy("call.completed", "EV2a3b4c5d6e7f80910a1b2c3d4e5f6071"),
        EventType.MISSED,
        "AC0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        True,
        "2026-04-13T17:11:09.884Z",
    ),
    "call.completed__v2026": ExpectedEvent(
        new("call.completed"), EventType.COMPLETED, CALL, True, "2026-04-13T15:05:03.557Z"
    ),
    "call.completed__v2026_unanswered": ExpectedEvent(
        new("call.completed"), EventType.MISSED, MISSED, True, "2026-04-13T16:40:31.020Z"
    ),
    "call.completed__v2026_failed": ExpectedEvent(
        new("call.completed"),
        EventType.FAILED,
        "AC5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",
        True,
        "2026-04-13T17:30:04.000Z",
    ),
    "call.missed": ExpectedEvent(
        new("call.missed"), EventType.MISSED, MISSED, True, "2026-04-13T16:40:31.020Z"
    ),
    "call.recording.completed": ExpectedEvent(
        legacy("call.recording.completed", "EVb18d4c7e6f9a0b1c2d3e4f5061728394"),
        EventType.RECORDING_READY,
        CALL,
        True,
        "2026-04-13T15:05:41.300Z",
    ),
    "call.recording.completed__v2026": ExpectedEvent(
        new("call.recording.completed"),
        EventType.RECORDING_READY,
        CALL,
        True,
        "2026-04-13T15:05:41.300Z",
    ),
    "call.summary.completed": ExpectedEvent(
        legacy("call.summary.completed", "EVd3af6e9a8b1c2d3e4f50617283940516"),
        EventType.SUMMARY_READY,
        CALL,
        True,
        "2026-04-13T15:06:12.010Z",
    ),
    "call.summary.completed__v2026": ExpectedEvent(
        new("call.summary.completed"),
        EventType.SUMMARY_READY,
        CALL,
        True,
        "2026-04-13T15:06:12.010Z",
    ),
    "callSummary": ExpectedEvent(
        legacy("callSummary", "EV0ea54cadfbf342e6ac4ca1f22ed1700d"),
        EventType.SUMMARY_READY,
        CALL,
        True,
        "2026-04-13T15:06:12.010Z",
    ),
    "call.transcript.completed": ExpectedEvent(
        legacy("call.transcript.completed", "EVf5c180bcad3e4f506172839405b62738"),
        EventType.TRANSCRIPT_READY,
        CALL,
        True,
        "2026-04-13T15:06:40.500Z",
    ),
    "call.transcript.completed__v2026": ExpectedEvent(
        new("call.transcript.completed"),
        EventType.TRANSCRIPT_READY,
        CALL,
        True,
        "2026-04-13T15:06:40.500Z",
    ),
    "callTranscript": ExpectedEvent(
        legacy("callTranscript", "EV0ea54cadfbf342e6ac4ca1f22ed1700e"),
        EventType.TRANSCRIPT_READY,
        CALL,
        True,
        "2026-04-13T15:06:40.500Z",
    ),
    "call.voicemail.completed": ExpectedEvent(
        new("call.voicemail.completed"),
        EventType.VOICEMAIL_READY,
        MISSED,
        True,
        "2026-04-13T16:41:02.400Z",
    ),
    # Quo could not resolve the voicemail's call: recorded under the voicemail's own id
    "call.voicemail.completed__unresolved": ExpectedEvent(
        new("call.voicemail.completed"),
        EventType.VOICEMAIL_READY,
        "AC71e3a2def05061728394a5b6c7d8e9f0",
        False,
        "2026-04-13T16:41:02.400Z",
    ),
    "message.received": ExpectedEvent(
        legacy("message.received", "EVc67ec998b35c41d388af50799aeeba3e"),
        None,
        None,
        False,
        "2026-04-13T15:10:52.557Z",
    ),
    "message.received__v2026": ExpectedEvent(
        new("message.received"), None, None, False, "2026-04-13T15:10:52.557Z"
    ),
    "contact.updated": ExpectedEvent(
        new("contact.updated"), None, None, False, "2026-04-13T15:12:00.000Z"
    ),
}


def authenticated_event(delivery: Delivery, config: OpenPhoneSource = CONFIG) -> Event:
    VENDOR.authenticate(config, delivery, now=NOW, tolerance_s=TOLERANCE)
    return VENDOR.parse(delivery)


def refused(delivery: Delivery, config: OpenPhoneSource = CONFIG, now: float = NOW) -> str:
    """The reason `authenticate` gives for refusing `delivery` (it must refuse)."""
    with pytest.raises(AuthenticationFailed) as raised:
        VENDOR.authenticate(config, delivery, now=now, tolerance_s=TOLERANCE)
    reason = raised.value.reason
    for secret in (SIGNING_SECRET, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")):
        assert secret not in reason
    return reason


def test_every_fixture_is_expected_and_every_event_has_one() -> None:
    assert set(webhook_fixtures()) == set(EXPECTED)
    types = {name.split("__")[0] for name in EXPECTED}
    assert set(VENDOR.kit.simulated_types) <= types
    assert set(EVENT_TYPES) <= types


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_its_expected_event(name: str) -> None:
    body = fixture_body(name)
    assert authenticated_event(signed(body)) == EXPECTED[name].of(name, body)


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("vendor_type", VENDOR.kit.simulated_types)
def test_every_simulated_type_round_trips_in_either_generation(
    vendor_type: str, generation: Generation
) -> None:
    """Beyond the contract's round trip (tests/vendors/test_contract.py, which runs in both
    generations through `kit.auth_schemes`): each generation's `apiVersion`, its key prefix
    and the normalised type of every event."""
    call = simulated_call(None, NOW)
    delivery = simulate_delivery(CONFIG, vendor_type, call, NOW, generation=generation)
    event = authenticated_event(delivery)
    payload = orjson.loads(delivery.body)
    assert (event.vendor_type, event.payload) == (vendor_type, payload)
    assert payload["apiVersion"] == ("v3" if generation == "legacy" else "2026-03-30")
    prefix = "evt" if generation == "legacy" else "whk"
    assert event.event_key.startswith(f"{prefix}:{vendor_type}:")
    if vendor_type == "message.received":
        assert (event.type, event.call_id, event.fetchable) == (None, None, False)
    else:
        assert event.type == EVENT_TYPES[vendor_type]
        assert (event.call_id, event.fetchable) == (call.call_id, True)
    # a vendor retry resends the same delivery, later: the same key
    again = simulate_delivery(CONFIG, vendor_type, call, NOW + 60, generation=generation)
    VENDOR.authenticate(CONFIG, again, now=NOW + 60, tolerance_s=TOLERANCE)
    assert VENDOR.parse(again).event_key == event.event_key


def test_the_default_generation_follows_the_configured_secrets() -> None:
    call = simulated_call(None, NOW)
    both = VENDOR.kit.simulate_delivery(CONFIG, "call.completed", call, now=NOW)
    assert "webhook-signature" in both.headers
    legacy_only = configured(webhook_secret="")
    delivery = VENDOR.kit.simulate_delivery(legacy_only, "call.completed", call, now=NOW)
    assert set(delivery.headers) == {"openphone-signature", "content-type"}
    assert authenticated_event(delivery, legacy_only).event_key.startswith("evt:")


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
def test_wrong_secret_is_refused(generation: Generation) -> None:
    body = fixture_body("call.completed")
    other = configured(
        signing_secret=base64.b64encode(b"another-signing-key-0123456789ab").decode(),
        webhook_secret="whsec_" + base64.b64encode(b"another-webhook-key-0123456789").decode(),
    )
    delivery = signed(body, other, generation=generation)
    assert refused(delivery).endswith("does not match the body")


def test_unsigned_delivery_is_refused() -> None:
    delivery = Delivery(body=fixture_body("call.completed"), headers={"content-type": "json"})
    assert refused(delivery) == "no openphone-signature or webhook-signature header"


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        ("webhook-id", "missing webhook-id header"),
        ("webhook-timestamp", "missing webhook-timestamp header"),
        ("webhook-signature", "missing webhook-signature header"),
    ],
)
def test_standard_webhooks_headers_are_all_required(missing: str, reason: str) -> None:
    delivery = signed(fixture_body("call.completed__v2026"))
    headers = {k: v for k, v in delivery.headers.items() if k != missing}
    assert refused(Delivery(body=delivery.body, headers=headers)) == reason


@pytest.mark.parametrize("name", ["call.completed", "call.completed__v2026"])
def test_tampered_body_is_refused(name: str) -> None:
    delivery = signed(fixture_body(name))
    tampered = delivery.body.replace(b'"duration": 163', b'"duration": 1630')
    assert tampered != delivery.body
    assert refused(Delivery(body=tampered, headers=delivery.headers)).endswith("the body")


@pytest.mark.parametrize("name", ["call.completed", "call.completed__v2026"])
@pytest.mark.parametrize("offset", [TOLERANCE + 1, -TOLERANCE - 1])
def test_timestamp_outside_the_tolerance_is_refused(name: str, offset: int) -> None:
    """Signed at NOW, checked `offset` seconds later: too old (+) or from the future (-)."""
    delivery = signed(fixture_body(name))
    assert refused(delivery, now=NOW + offset).endswith("outside the tolerance")
    # on the edge of the window it still passes
    edge = TOLERANCE if offset > 0 else -TOLERANCE
    VENDOR.authenticate(CONFIG, delivery, now=NOW + edge, tolerance_s=TOLERANCE)


def test_legacy_timestamp_is_milliseconds() -> None:
    body = fixture_body("call.completed")
    header = legacy_signed_headers(SIGNING_SECRET, body, NOW)["openphone-signature"]
    assert header.split(";")[2] == str(int(NOW * 1000))


def test_one_matching_legacy_signature_among_several_is_enough() -> None:
    body = fixture_body("call.completed")
    key = base64.b64decode(SIGNING_SECRET)
    ms = int(NOW * 1000)
    good = legacy_signature(key, ms, body)
    bad = legacy_signature(b"rotated-out-key-0123456789abcdef", ms, body)
    for header in (f"{bad},{good}", f"{good}, {bad}", f"garbage,{good}"):
        VENDOR.authenticate(
            CONFIG,
            Delivery(body=body, headers={"openphone-signature": header}),
            now=NOW,
            tolerance_s=TOLERANCE,
        )
    assert refused(Delivery(body=body, headers={"openphone-signature": f"{bad},{bad}"}))
    # a matching signature with a stale timestamp does not rescue a fresh wrong one
    stale = legacy_signature(key, ms - (TOLERANCE + 5) * 1000, body)
    reason = refused(Delivery(body=body, headers={"openphone-signature": f"{stale},{bad}"}))
    assert reason == "openphone-signature does not match the body"


def test_at_most_eight_legacy_signatures_are_read() -> None:
    """Each entry with a fresh timestamp costs an HMAC over the body, before any credential
    is proven: a ninth entry refuses the header, whatever the others are."""
    body = fixture_body("call.completed")
    key = base64.b64decode(SIGNING_SECRET)
    ms = int(NOW * 1000)
    wrong = [legacy_signature(b"other-key-%d-0123456789abcdef" % i, ms - i, body) for i in range(8)]
    good = legacy_signature(key, ms, body)
    eight = ",".join([*wrong[:7], good])
    VENDOR.authenticate(
        CONFIG,
        Delivery(body=body, headers={"openphone-signature": eight}),
        now=NOW,
        tolerance_s=TOLERANCE,
    )
    for header in (",".join([*wrong, good]), ",".join([good, *wrong]), f"{good}," * 9):
        reason = refused(Delivery(body=body, headers={"openphone-signature": header}))
        assert reason == "openphone-signature lists more than 8 entries"


def test_legacy_entries_sharing_a_timestamp_are_all_compared() -> None:
    body = fixture_body("call.completed")
    ms = int(NOW * 1000)
    good = legacy_signature(base64.b64decode(SIGNING_SECRET), ms, body)
    same_time = [legacy_signature(b"other-key-%d-0123456789abcdef" % i, ms, body) for i in range(7)]
    for header in (",".join([*same_time, good]), ",".join([good, *same_time])):
        VENDOR.authenticate(
            CONFIG,
            Delivery(body=body, headers={"openphone-signature": header}),
            now=NOW,
            tolerance_s=TOLERANCE,
        )
    assert refused(Delivery(body=body, headers={"openphone-signature": ",".join(same_time)}))


def test_at_most_eight_standard_signatures_are_read() -> None:
    body = fixture_body("call.completed__v2026")
    good = standard_signed_headers(WEBHOOK_SECRET, MSG_ID, body, NOW)
    wrong = [f"v1,{base64.b64encode(b'%032d' % i).decode()}" for i in range(8)]
    eight = " ".join([*wrong[:7], good["webhook-signature"]])
    authenticated_event(Delivery(body=body, headers={**good, "webhook-signature": eight}))
    nine = " ".join([*wrong, good["webhook-signature"]])
    reason = refused(Delivery(body=body, headers={**good, "webhook-signature": nine}))
    assert reason == "webhook-signature lists more than 8 entries"


@pytest.mark.parametrize(
    "header",
    ["", "sha256=abc", "hmac;2;1776092700000;abc=", "hmac;1;notanumber;abc=", "hmac;1;123"],
)
def test_malformed_legacy_header_is_refused(header: str) -> None:
    delivery = Delivery(
        body=fixture_body("call.completed"), headers={"openphone-signature": header}
    )
    reason = refused(delivery)
    assert reason in (
        "malformed openphone-signature header",
        "no openphone-signature or webhook-signature header",
    )


def test_standard_webhooks_with_a_wrong_webhook_id_is_refused() -> None:
    delivery = signed(fixture_body("call.completed__v2026"))
    headers = {**delivery.headers, "webhook-id": "msg_someOtherDelivery00000"}
    reason = refused(Delivery(body=delivery.body, headers=headers))
    assert reason == "webhook-signature does not match the body"


def test_one_matching_standard_signature_among_several_is_enough() -> None:
    body = fixture_body("call.completed__v2026")
    good = standard_signed_headers(WEBHOOK_SECRET, MSG_ID, body, NOW)
    rotated = "whsec_" + base64.b64encode(b"rotated-out-webhook-key-01234").decode()
    bad = standard_signed_headers(rotated, MSG_ID, body, NOW)["webhook-signature"]
    both = f"{bad} v2,ignored {good['webhook-signature']}"
    event = authenticated_event(Delivery(body=body, headers={**good, "webhook-signature": both}))
    assert event.event_key == f"whk:call.completed:{MSG_ID}"
    assert refused(Delivery(body=body, headers={**good, "webhook-signature": bad}))
    only_other_versions = {**good, "webhook-signature": "v1a,abc v2,def"}
    assert refused(Delivery(body=body, headers=only_other_versions)) == (
        "no v1 signature in webhook-signature"
    )


@pytest.mark.parametrize("value", ["1776092700.5", "abc", "-1776092700", "01776092700"])
def test_malformed_webhook_timestamp_is_refused(value: str) -> None:
    delivery = signed(fixture_body("call.completed__v2026"))
    headers = {**delivery.headers, "webhook-timestamp": value}
    assert refused(Delivery(body=delivery.body, headers=headers)) == "malformed webhook-timestamp"


def test_standard_webhooks_official_test_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, sent_at, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard_signed_headers(secret, msg_id, body, sent_at)["webhook-signature"] == signature
    config = configured(webhook_secret=secret)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(sent_at),
        "webhook-signature": signature,
    }
    VENDOR.authenticate(config, Delivery(body=body, headers=headers), now=sent_at, tolerance_s=300)
    assert refused(Delivery(body=body, headers=headers), config, now=sent_at + 301)


def test_non_utf8_body_is_refused_by_standard_webhooks() -> None:
    delivery = signed(fixture_body("call.completed__v2026"))
    assert refused(Delivery(body=b"\xff\xfe{}", headers=delivery.headers)) == "body is not UTF-8"


def test_the_scheme_of_an_empty_secret_is_refused() -> None:
    legacy_only = configured(webhook_secret="")
    new_only = configured(signing_secret="")
    standard = signed(fixture_body("call.completed__v2026"))
    assert refused(standard, legacy_only) == (
        "Standard Webhooks delivery, but webhook_secret is empty"
    )
    legacy = signed(fixture_body("call.completed"))
    assert refused(legacy, new_only) == "openphone-signature delivery, but signing_secret is empty"
    # each still takes its own generation
    authenticated_event(legacy, legacy_only)
    authenticated_event(standard, new_only)


def test_a_forged_legacy_header_beside_standard_headers_does_not_help() -> None:
    """With any `webhook-*` header present the delivery is judged as Standard Webhooks."""
    legacy = signed(fixture_body("call.completed"))
    headers = {**legacy.headers, "webhook-id": MSG_ID}
    assert refused(Delivery(body=legacy.body, headers=headers)) == (
        "missing webhook-timestamp header"
    )


# --- payloads ----------------------------------------------------------------------------


#: bodies without an event type or a call, in either generation
UNUSABLE = [
    (b'{"id": "EV1", "data": {"object": {"id": "AC1"}}}', "no event type"),
    (b'{"id": "EV1", "type": "call.completed"}', "no data.resource or data.object"),
    (b'{"type": "call.completed", "data": {"object": []}}', "no data.resource or data.object"),
    (b'{"type": "call.completed", "data": {"object": {"status": "completed"}}}', "no call id"),
    (b'{"type": "call.ringing", "data": {"resource": {"id": ""}}}', "no call id"),
    (b'{"type": "callSummary", "data": {"object": {"id": "AC1"}}}', "no callId"),
    (
        b'{"type": "call.transcript.completed", "data": {"resource": {"dialogue": []}}}',
        "no callId",
    ),
    (b'{"type": "call.voicemail.completed", "data": {"resource": {"to": "+1"}}}', "no callId"),
]
#: bodies every vendor refuses (tests/vendors/test_contract.py, in the default generation,
#: the new one): here in the legacy generation
NOT_AN_OBJECT = [
    (b"{not json", "body is not JSON"),
    (b"", "body is not JSON"),
    (b'{"type": "call.completed", ', "body is not JSON"),
    (b"[1, 2]", "body is not a JSON object"),
    (b'"call.completed"', "body is not a JSON object"),
]


@pytest.mark.parametrize(
    ("body", "reason", "generation"),
    [
        *((body, reason, generation) for body, reason in UNUSABLE for generation in GENERATIONS),
        *((body, reason, "legacy") for body, reason in NOT_AN_OBJECT),
    ],
)
def test_unusable_payloads_are_bad_in_either_generation(
    body: bytes, reason: str, generation: Generation
) -> None:
    assert bad_payload_reason(VENDOR, CONFIG, signed(body, generation=generation), NOW) == reason


@pytest.mark.parametrize("vendor_type", ["message.delivered", "task.created", "call.forwarded"])
def test_other_events_are_dropped_without_a_call(vendor_type: str) -> None:
    body = orjson.dumps({"id": "EVx", "type": vendor_type, "data": {"object": {"id": "AC1"}}})
    event = authenticated_event(signed(body))
    assert (event.type, event.call_id, event.fetchable) == (None, None, False)
    assert event.event_key == f"evt:{vendor_type}:EVx"


def test_legacy_body_without_an_id_is_keyed_by_its_digest() -> None:
    body = b'{"type": "call.ringing", "data": {"object": {"id": "AC1"}}}'
    first, again = VENDOR.parse(signed(body)), VENDOR.parse(signed(body, now=NOW + 5))
    assert first.event_key == again.event_key
    assert first.event_key.startswith("evt:call.ringing:sha256-")
    other = VENDOR.parse(signed(body.replace(b"AC1", b"AC2")))
    assert other.event_key != first.event_key
