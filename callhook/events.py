"""Inbound deliveries and the normalised events Callhook derives from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """The normalised event types every vendor event maps to (SPEC section 4)."""

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
