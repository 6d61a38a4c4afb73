"""Diga deliveries: the workflow's Bearer token on the raw request, then body → Event."""

from __future__ import annotations

import time
from typing import NamedTuple

import orjson
import pytest

from callhook.errors import AuthenticationFailed, BadPayload
from callhook.events import Delivery, Event, EventType
from callhook.vendors import diga
from callhook.vendors.diga.simulate import bearer_headers, simulated_call
from tests.vendors.diga.conftest import (
    CONFIG,
    WEBHOOK_TOKEN,
    configured,
    fixture_body,
    signed,
    webhook_fixtures,
)
from tests.vendors.support import bad_payload_reason, refusal

VENDOR = diga.VENDOR
NOW = 1741945000.0


class Expected(NamedTuple):
    call_id: str
    type: EventType
    occurred_at: str | None


EXPECTED: dict[str, Expected] = {
    "call_finished": Expected(
        "7c1e4b2a-9d3f-4e5a-8b6c-0d1e2f3a4b5c", EventType.COMPLETED, "2025-03-14T09:31:40.000Z"
    ),
    "call_finished__no_answer": Expected(
        "a3b5c7d9-e1f2-4a3b-8c4d-5e6f7a8b9c0d", EventType.MISSED, "2025-03-14T10:15:32.000Z"
    ),
    "call_finished__failed": Expected(
        "b4c6d8e0-f2a3-4b4c-9d5e-6f7a8b9c0d1e", EventType.FAILED, "2025-03-14T11:02:12.000Z"
    ),
    "call_finished__transferred": Expected(
        "c5d7e9f1-a3b4-4c5d-8e6f-7a8b9c0d1e2f", EventType.COMPLETED, "2025-03-14T12:20:48.000Z"
    ),
    # only call_id: still a finished call, with no time of its own
    "call_finished__minimal": Expected(
        "d6e8f0a2-b4c5-4d6e-9f7a-8b9c0d1e2f3a", EventType.COMPLETED, None
    ),
    # an offset time is converted to UTC
    "call_finished__as_strings": Expected(
        "e7f9a1b3-c5d6-4e7f-8a8b-9c0d1e2f3a4b", EventType.COMPLETED, "2025-03-14T13:01:07.000Z"
    ),
}


def authenticated_event(delivery: Delivery) -> Event:
    VENDOR.authenticate(CONFIG, delivery, now=NOW, tolerance_s=300)
    return VENDOR.parse(delivery)


def test_every_fixture_is_expected_and_every_type_has_one() -> None:
    assert set(webhook_fixtures()) == set(EXPECTED)
    assert {name.split("__")[0] for name in EXPECTED} == set(VENDOR.kit.simulated_types)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_its_expected_event(name: str) -> None:
    body = fixture_body(name)
    expected = EXPECTED[name]
    assert authenticated_event(signed(body)) == Event(
        event_key=f"call_finished:{expected.call_id}",
        vendor_type="call_finished",
        type=expected.type,
        call_id=expected.call_id,
        payload=orjson.loads(body),
        fetchable=True,
        occurred_at=expected.occurred_at,
    )


@pytest.mark.parametrize("vendor_type", VENDOR.kit.simulated_types)
def test_a_simulated_delivery_is_keyed_by_its_call_and_timed_by_its_end(vendor_type: str) -> None:
    """Beyond the round trip every vendor makes (tests/vendors/test_contract.py)."""
    call = simulated_call(None, NOW)
    delivery = VENDOR.kit.simulate_delivery(CONFIG, vendor_type, call, now=NOW)
    event = authenticated_event(delivery)
    assert event == Event(
        event_key=f"call_finished:{call.call_id}",
        vendor_type=vendor_type,
        type=EventType.COMPLETED,
        call_id=call.call_id,
        payload=orjson.loads(delivery.body),
        fetchable=True,
        occurred_at=f"{call.call['end_time'][:-1]}.000Z",
    )
    # the workflow posting the same call again: the same key
    again = VENDOR.kit.simulate_delivery(CONFIG, vendor_type, call, now=NOW + 60)
    assert authenticated_event(again).event_key == event.event_key


def test_simulating_an_unknown_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="call_started"):
        VENDOR.kit.simulate_delivery(CONFIG, "call_started", simulated_call(None, NOW), now=NOW)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("completed", EventType.COMPLETED),
        ("transferred", EventType.COMPLETED),
        ("no_answer", EventType.MISSED),
        ("NO_ANSWER", EventType.MISSED),
        ("failed", EventType.FAILED),
        ("in_progress", EventType.COMPLETED),
        ("something_new", EventType.COMPLETED),
        (None, EventType.COMPLETED),
    ],
)
def test_status_decides_the_type(status: str | None, expected: EventType) -> None:
    body = orjson.dumps({"call_id": EXPECTED["call_finished"].call_id, "status": status})
    assert authenticated_event(signed(body)).type is expected


def _with_authorization(value: str | None) -> Delivery:
    headers = {"content-type": "application/json"}
    if value is not None:
        headers["authorization"] = value
    return Delivery(body=fixture_body("call_finished"), headers=headers)


@pytest.mark.parametrize(
    ("delivery", "reason"),
    [
        (Delivery(body=fixture_body("call_finished"), headers={}), "missing Authorization header"),
        (_with_authorization(None), "missing Authorization header"),
        (_with_authorization(""), "missing Authorization header"),
        (_with_authorization("   "), "missing Authorization header"),
        (_with_authorization(WEBHOOK_TOKEN), "Authorization is not Bearer"),
        (_with_authorization("Basic ZGlnYTp0b2tlbg=="), "Authorization is not Bearer"),
        (_with_authorization(f"Token {WEBHOOK_TOKEN}"), "Authorization is not Bearer"),
        (_with_authorization("Bearer"), "empty Bearer token"),
        (_with_authorization("Bearer    "), "empty Bearer token"),
        (_with_authorization("Bearer not-the-token"), "wrong token"),
        (_with_authorization(f"Bearer {WEBHOOK_TOKEN}x"), "wrong token"),
        (_with_authorization(f"Bearer {WEBHOOK_TOKEN[:-1]}"), "wrong token"),
        (_with_authorization(f"Bearer {WEBHOOK_TOKEN.upper()}"), "wrong token"),
    ],
)
def test_bad_bearer_credentials_are_refused_with_their_reason(
    delivery: Delivery, reason: str
) -> None:
    refused = refusal(VENDOR, CONFIG, delivery, NOW)
    assert refused.reason == reason
    assert WEBHOOK_TOKEN not in str(refused)


def test_scheme_is_case_insensitive_and_time_plays_no_part() -> None:
    delivery = _with_authorization(f"bearer  {WEBHOOK_TOKEN} ")
    # the workflow sends no time: a delivery is as valid a day later
    VENDOR.authenticate(CONFIG, delivery, now=time.time() + 86400, tolerance_s=1)


def test_empty_token_refuses_everything() -> None:
    disabled = configured(webhook_token="")
    assert not disabled.webhook_enabled()
    assert CONFIG.webhook_enabled()
    for headers in (bearer_headers(""), bearer_headers(WEBHOOK_TOKEN), {}):
        with pytest.raises(AuthenticationFailed) as raised:
            VENDOR.authenticate(disabled, Delivery(b"{}", headers), now=NOW, tolerance_s=300)
        assert raised.value.reason == "webhook token is not configured"


def test_a_copy_with_an_unvalidated_empty_token_is_disabled() -> None:
    """`model_copy(update=...)` skips validation and stores a plain str."""
    copied = CONFIG.model_copy(update={"webhook_token": ""})
    assert not copied.webhook_enabled()
    with pytest.raises(AuthenticationFailed, match="not configured"):
        VENDOR.authenticate(copied, signed(b"{}"), now=NOW, tolerance_s=300)


def test_a_tampered_body_passes_the_token_check() -> None:
    """A Bearer token proves the sender, not the bytes: Diga signs nothing, so an altered
    body with the right token is accepted (docs/vendors/diga.md says so)."""
    body = fixture_body("call_finished").replace(b'"completed"', b'"no_answer"')
    event = authenticated_event(signed(body))
    assert (event.type, event.event_key) == (
        EventType.MISSED,
        "call_finished:7c1e4b2a-9d3f-4e5a-8b6c-0d1e2f3a4b5c",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{}", "no call_id"),
        (b'{"status": "completed", "duration": 96}', "no call_id"),
        (b'{"call_id": ""}', "no call_id"),
        (b'{"call_id": "   "}', "no call_id"),
        (b'{"call_id": null}', "no call_id"),
        (b'{"call_id": true}', "no call_id"),
        (b'{"id": "7c1e4b2a-9d3f-4e5a-8b6c-0d1e2f3a4b5c"}', "no call_id"),
    ],
)
def test_bodies_without_a_call_id_are_bad(body: bytes, reason: str) -> None:
    """Beyond the bodies every vendor refuses (tests/vendors/test_contract.py)."""
    assert bad_payload_reason(VENDOR, CONFIG, signed(body), NOW) == reason


def test_an_upper_case_uuid_is_a_call_id() -> None:
    call_id = "7C1E4B2A-9D3F-4E5A-8B6C-0D1E2F3A4B5C"
    event = VENDOR.parse(signed(orjson.dumps({"call_id": call_id, "status": "completed"})))
    assert (event.call_id, event.event_key, event.fetchable) == (
        call_id,
        f"call_finished:{call_id}",
        True,
    )


@pytest.mark.parametrize(
    "call_id", ["{{trigger.call_id}}", "7c1e4b2a9d3f4e5a8b6c0d1e2f3a4b5c", "../../v1/agent", 12345]
)
def test_a_call_id_that_is_no_uuid_is_refused(call_id: str | int) -> None:
    """A workflow whose template did not render posts a call id no Diga call has: the
    workflow's HTTP step is answered 400 with the reason, rather than a record made up."""
    with pytest.raises(BadPayload) as raised:
        VENDOR.parse(signed(orjson.dumps({"call_id": call_id, "status": "completed"})))
    assert raised.value.reason == f"call_id is not a Diga call id (a UUID): {str(call_id)!r}"
