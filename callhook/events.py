"""Inbound deliveries and the normalised events Callhook derives from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from callhook.errors import BadPayload

#: deepest nesting a delivery's JSON may have. Real payloads nest under ten levels; the
#: bound keeps every later encoding of the payload (queue messages, records, sink bodies)
#: well inside orjson's limit of 254 levels, which would otherwise fail after the accept.
MAX_PAYLOAD_DEPTH = 64


class EventType(StrEnum):
    """The normalised event types every vendor event maps to (docs/configuration.md lists
    them; each vendor's page in docs/vendors/ its mapping)."""

    RINGING = "call.ringing"
    STARTED = "call.started"
    PARTICIPANT_JOINED = "call.participant.joined"
    PARTICIPANT_LEFT = "call.participant.left"
    COMPLETED = "call.completed"
    MISSED = "call.missed"
    FAILED = "call.failed"
    RECORDING_READY = "call.recording.ready"
    TRANSCRIPT_READY = "call.transcript.ready"
    SUMMARY_READY = "call.summary.ready"
    VOICEMAIL_READY = "call.voicemail.ready"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One HTTP delivery as it arrived: raw bytes, headers with lower-case names."""

    body: bytes
    headers: Mapping[str, str]

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; `BadPayload` when it is not JSON, not an object, or
        nests deeper than `MAX_PAYLOAD_DEPTH`."""
        try:
            payload = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise BadPayload("body is not JSON") from None
        if not isinstance(payload, dict):
            raise BadPayload("body is not a JSON object")
        if _depth_exceeds(payload, MAX_PAYLOAD_DEPTH):
            raise BadPayload(f"body nests deeper than {MAX_PAYLOAD_DEPTH} levels")
        return payload


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep in `value` (iteratively: no recursion
    on hostile input; stops at the first container past the limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children = current.values() if isinstance(current, dict) else current
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


@dataclass(frozen=True, slots=True)
class Event:
    """What a vendor's `parse` makes of an authenticated delivery.

    `type` is None for events Callhook accepts and drops (e.g. `message.received`).
    `event_key` is the vendor's dedupe identity for this delivery (stable across the
    vendor's retries). `fetchable` is False when `call_id` is not an id the vendor's
    Get Call API knows (e.g. a CometChat missed call that carries no session id).
    """

    event_key: str
    vendor_type: str
    type: EventType | None
    call_id: str | None
    payload: Mapping[str, Any] = field(repr=False)
    fetchable: bool = True
    occurred_at: str | None = None
