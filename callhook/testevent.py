"""`callhook send-test-event`: a realistic delivery, authenticated like the vendor, posted."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import orjson

from callhook.config import Config
from callhook.errors import CallhookError
from callhook.events import Delivery
from callhook.vendors import VENDORS


class TestEventError(CallhookError):
    """The test event could not be built or sent (the message says why)."""


@dataclass(frozen=True, slots=True)
class TestEventOutcome:
    source: str
    vendor_type: str
    call_id: str
    status_code: int | None
    answer: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def describe(self) -> str:
        if self.status_code is None:
            return self.answer
        return (
            f"sent {self.vendor_type} for call {self.call_id} to source {self.source}: "
            f"HTTP {self.status_code} {self.answer}"
        )


def send(
    config: Config,
    source: str,
    *,
    url: str | None,
    vendor_type: str | None,
    call_id: str | None,
    list_types: bool = False,
    now: float | None = None,
) -> TestEventOutcome:
    source_config = config.sources.get(source)
    if source_config is None:
        known = ", ".join(sorted(config.sources)) or "none configured"
        raise TestEventError(f"unknown source {source!r} (sources: {known})")
    vendor = VENDORS[source_config.vendor]
    if list_types:
        listing = "\n".join(vendor.kit.simulated_types)
        return TestEventOutcome(source, "", "", None, listing)
    now = time.time() if now is None else now
    call = vendor.kit.simulated_call(call_id, now=now)
    chosen = vendor_type or vendor.kit.completed_type
    if chosen not in vendor.kit.simulated_types:
        known = ", ".join(vendor.kit.simulated_types)
        raise TestEventError(f"{vendor.name} has no event type {chosen!r} (one of: {known})")
    delivery = vendor.kit.simulate_delivery(source_config, chosen, call, now=now)
    base = url or f"http://{config.ingress.host}:{config.ingress.port}"
    return post(base.rstrip("/") + f"/webhooks/{source}", delivery, source, chosen, call.call_id)


def post(
    target: str, delivery: Delivery, source: str, vendor_type: str, call_id: str
) -> TestEventOutcome:
    try:
        response = httpx.post(
            target, content=delivery.body, headers=dict(delivery.headers), timeout=10.0
        )
    except httpx.HTTPError as exc:
        raise TestEventError(f"could not reach {target}: {type(exc).__name__}: {exc}") from None
    try:
        answer = orjson.dumps(orjson.loads(response.content)).decode()
    except orjson.JSONDecodeError:
        answer = response.text[:200]
    return TestEventOutcome(source, vendor_type, call_id, response.status_code, answer)
