"""The bugs the fuzzer found, pinned as plain examples (for every vendor)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from callhook.errors import BadPayload
from callhook.events import Delivery
from callhook.lenient import timestamp
from callhook.vendors import VENDORS
from tests.fuzz.conftest import FuzzIngress
from tests.fuzz.mutations import Headers, _paths, _replace


def completed(fuzz: FuzzIngress, source: str) -> Delivery:
    """A fresh delivery of the vendor's completed call (its kit's `completed_type`)."""
    kit = VENDORS[source].kit
    now = time.time()
    call = kit.simulated_call(None, now=now)
    return kit.simulate_delivery(fuzz.config.sources[source], kit.completed_type, call, now=now)


def authenticated(fuzz: FuzzIngress, source: str, delivery: Delivery, body: bytes) -> Headers:
    """`delivery`'s headers authenticating `body` now, in the delivery's own scheme."""
    kit = VENDORS[source].kit
    config = fuzz.config.sources[source]
    return list(kit.reauthenticate(config, delivery.headers, body, time.time()).items())


def _value(payload: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        payload = payload[step]
    return payload


def event_time_paths(fuzz: FuzzIngress, source: str) -> list[tuple[Any, ...]]:
    """The fields of the vendor's completed-call payload that become the event's
    `occurred_at`, found rather than listed: each value holding that moment whose
    replacement by a non-time changes it (e.g. CometChat's `data.destroyed_at`,
    OpenPhone's `createdAt`, Diga's `end_time`)."""
    vendor = VENDORS[source]
    delivery = completed(fuzz, source)
    occurred_at = vendor.parse(delivery).occurred_at
    moment = timestamp(occurred_at)
    assert moment is not None, f"{source}'s {vendor.kit.completed_type} has no event time"
    payload = orjson.loads(delivery.body)
    found = []
    for path in _paths(payload):
        value = _value(payload, path)
        held = None if isinstance(value, dict | list) else timestamp(value)
        if held is None or abs(held - moment) >= 0.001:
            continue
        changed = Delivery(orjson.dumps(_replace(payload, path, "nan")), delivery.headers)
        try:
            if vendor.parse(changed).occurred_at != occurred_at:
                found.append(path)
        except BadPayload:
            continue
    assert found, f"no field of {source}'s {vendor.kit.completed_type} gives {occurred_at}"
    return found


@pytest.mark.parametrize("source", sorted(VENDORS))
@pytest.mark.parametrize("value", ["nan", "inf", 1e300, 2**63, "9999-12-31T23:59:59-05:00"])
def test_an_impossible_event_time_is_no_time_not_a_500(
    fuzz_ingress: FuzzIngress, source: str, value: Any
) -> None:
    paths = event_time_paths(fuzz_ingress, source)
    for accepted, path in enumerate(paths, start=1):
        delivery = completed(fuzz_ingress, source)
        body = orjson.dumps(_replace(orjson.loads(delivery.body), path, value))
        answer = fuzz_ingress.post(
            source, body, authenticated(fuzz_ingress, source, delivery, body)
        )
        assert answer.status_code == 200, f"{path}: {answer.text}"
        assert answer.json()["status"] == "accepted", path
        assert fuzz_ingress.queued() == (accepted, accepted), path


@pytest.mark.parametrize("source", sorted(VENDORS))
@pytest.mark.parametrize("depth", [65, 255, 1000])
def test_a_deeply_nested_body_is_400_and_enqueues_nothing(
    fuzz_ingress: FuzzIngress, source: str, depth: int
) -> None:
    delivery = completed(fuzz_ingress, source)
    payload = orjson.loads(delivery.body)
    body = orjson.dumps({**payload, "extra": "__NEST__"}).replace(
        b'"__NEST__"', b"[" * (depth - 1) + b"1" + b"]" * (depth - 1)
    )
    answer = fuzz_ingress.post(source, body, authenticated(fuzz_ingress, source, delivery, body))
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"status": "bad_payload", "detail": "body nests deeper than 64 levels"}
    assert fuzz_ingress.queued() == (0, 0)
