"""The bugs the fuzzer found, pinned as plain examples (one per vendor)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from callhook.vendors import VENDORS
from tests.fuzz.conftest import FuzzIngress
from tests.fuzz.mutations import resign_openphone

#: an event type per vendor, and the payload field that becomes its `occurred_at`
TIMED: dict[str, tuple[str, tuple[str, ...]]] = {
    "cometchat": ("call_ended", ("data", "destroyed_at")),
    "openphone": ("call.completed", ("createdAt",)),
    "diga": ("call_finished", ("end_time",)),
}


def signed(fuzz: FuzzIngress, source: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    vendor = VENDORS[source]
    now = time.time()
    call = vendor.simulated_call(None, now=now)
    delivery = vendor.simulate_delivery(
        fuzz.config.sources[source], TIMED[source][0], call, now=now
    )
    body = orjson.dumps(payload)
    if source == "openphone":
        return resign_openphone(delivery, body, now)
    return list(delivery.headers.items())


def realistic_payload(fuzz: FuzzIngress, source: str) -> dict[str, Any]:
    vendor = VENDORS[source]
    now = time.time()
    call = vendor.simulated_call(None, now=now)
    delivery = vendor.simulate_delivery(
        fuzz.config.sources[source], TIMED[source][0], call, now=now
    )
    payload: dict[str, Any] = orjson.loads(delivery.body)
    return payload


@pytest.mark.parametrize("source", sorted(VENDORS))
@pytest.mark.parametrize("value", ["nan", "inf", 1e300, 2**63, "9999-12-31T23:59:59-05:00"])
def test_an_impossible_event_time_is_no_time_not_a_500(
    fuzz_ingress: FuzzIngress, source: str, value: Any
) -> None:
    payload = realistic_payload(fuzz_ingress, source)
    *parents, leaf = TIMED[source][1]
    target = payload
    for key in parents:
        target = target[key]
    target[leaf] = value
    body = orjson.dumps(payload)
    answer = fuzz_ingress.post(source, body, signed(fuzz_ingress, source, payload))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
    assert fuzz_ingress.queued() == (1, 1)


@pytest.mark.parametrize("source", sorted(VENDORS))
@pytest.mark.parametrize("depth", [65, 255, 1000])
def test_a_deeply_nested_body_is_400_and_enqueues_nothing(
    fuzz_ingress: FuzzIngress, source: str, depth: int
) -> None:
    payload = realistic_payload(fuzz_ingress, source)
    body = orjson.dumps({**payload, "extra": "__NEST__"}).replace(
        b'"__NEST__"', b"[" * (depth - 1) + b"1" + b"]" * (depth - 1)
    )
    headers = signed(fuzz_ingress, source, payload)
    if source == "openphone":
        now = time.time()
        vendor = VENDORS[source]
        call = vendor.simulated_call(None, now=now)
        delivery = vendor.simulate_delivery(
            fuzz_ingress.config.sources[source], TIMED[source][0], call, now=now
        )
        headers = resign_openphone(delivery, body, now)
    answer = fuzz_ingress.post(source, body, headers)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"status": "bad_payload", "detail": "body nests deeper than 64 levels"}
    assert fuzz_ingress.queued() == (0, 0)
