"""Webhook bodies a simulated Quo posts about a call, in either generation, shaped like the
documented samples: legacy `{"object": "event", "data": {"object": ...}}` and the
2026-03-30 `{"data": {"resource", "context", "links"}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from callhook.lenient import iso_utc, number, timestamp
from callhook.vendors.kit import SimulatedCall
from callhook.vendors.openphone.calls import (
    DEFAULT_PARTICIPANT,
    ORG_ID,
    conversation_id,
    digest,
    quo_number,
)

Generation = Literal["legacy", "2026-03-30"]
NEW_API_VERSION = "2026-03-30"
LEGACY_API_VERSION = "v3"

SIMULATED_TYPES: tuple[str, ...] = (
    "call.ringing",
    "call.answered",
    "call.completed",
    "call.missed",
    "call.recording.completed",
    "call.summary.completed",
    "callSummary",
    "call.transcript.completed",
    "callTranscript",
    "call.voicemail.completed",
    "message.received",
)

#: a REST call status → the status the new webhooks' `call.completed` reports
_COMPLETED_STATUS = {
    "no-answer": "unanswered",
    "missed": "unanswered",
    "busy": "unanswered",
    "canceled": "unanswered",
    "failed": "failed",
    "forwarded": "forwarded",
    "abandoned": "abandoned",
}


def event_id(call_id: str, vendor_type: str) -> str:
    """The envelope id (`EV...`): stable per (call, type), as a vendor retry resends it."""
    return "EV" + digest(call_id, vendor_type)[:32]


def webhook_id(call_id: str, vendor_type: str) -> str:
    """The Standard Webhooks delivery id (`msg_...`), stable per (call, type)."""
    return "msg_" + digest("webhook", call_id, vendor_type)[:27]


def webhook_payload(
    vendor_type: str, call: SimulatedCall, now: float, *, generation: Generation
) -> dict[str, Any]:
    """The JSON body Quo posts for `vendor_type` about `call`."""
    if vendor_type not in SIMULATED_TYPES:
        raise ValueError(f"OpenPhone has no simulated event type {vendor_type!r}")
    envelope: dict[str, Any] = {"id": event_id(call.call_id, vendor_type)}
    if generation == "legacy":
        envelope.update(object="event", apiVersion=LEGACY_API_VERSION)
    else:
        envelope["apiVersion"] = NEW_API_VERSION
    envelope.update(createdAt=iso_utc(now), type=vendor_type)
    resource = _resource(vendor_type, call, now, generation)
    if generation == "legacy":
        envelope["data"] = {"object": resource}
    else:
        envelope["data"] = {
            "resource": resource,
            "context": _context(vendor_type, call.call),
            "links": {"quo": _link(call.call)},
        }
    return envelope


def _resource(
    vendor_type: str, sim: SimulatedCall, now: float, generation: Generation
) -> dict[str, Any]:
    call, extras = sim.call, sim.extras
    legacy = generation == "legacy"
    if vendor_type in ("call.summary.completed", "callSummary"):
        return _summary(sim, legacy)
    if vendor_type in ("call.transcript.completed", "callTranscript"):
        return _transcript(sim, legacy)
    if vendor_type == "call.voicemail.completed":
        return _voicemail(sim, now, legacy)
    if vendor_type == "message.received":
        return _message(call, now, legacy)
    if legacy:
        return _legacy_call(vendor_type, call, extras)
    keys = {
        "call.ringing": ("id", "direction", "createdAt", "updatedAt"),
        "call.answered": ("id", "direction", "createdAt", "answeredAt", "updatedAt"),
        "call.missed": ("id", "createdAt", "updatedAt"),
    }.get(vendor_type, ("id", "direction", "createdAt", "answeredAt", "completedAt", "updatedAt"))
    resource = {key: call.get(key) for key in keys}
    if vendor_type == "call.answered":
        resource["answeredByUserId"] = call.get("answeredBy")
    elif vendor_type == "call.completed":
        status = str(call.get("status"))
        answered = "answered" if call.get("answeredAt") else "unanswered"
        resource["status"] = _COMPLETED_STATUS.get(status, answered)
        resource["duration"] = call.get("duration")
        resource["hasVoicemail"] = bool(extras.get("voicemail"))
    elif vendor_type == "call.recording.completed":
        resource["duration"] = call.get("duration")
        resource["recordings"] = [
            {key: r.get(key) for key in ("id", "duration", "startTime", "type", "url")}
            for r in extras.get("recordings", [])
        ]
    return resource


def _legacy_call(
    vendor_type: str, call: Mapping[str, Any], extras: Mapping[str, Any]
) -> dict[str, Any]:
    """The legacy `data.object`: the call object as the event saw it."""
    obj: dict[str, Any] = {"id": call.get("id"), "object": "call", **call}
    if vendor_type == "call.ringing":
        obj.update(status="ringing", answeredAt=None, answeredBy=None, completedAt=None)
        obj.update(duration=0, updatedAt=call.get("createdAt"))
    elif vendor_type == "call.answered":
        obj.update(status="in-progress", completedAt=None, duration=0)
    elif vendor_type == "call.missed":
        obj.update(status="missed", answeredAt=None, answeredBy=None, duration=0)
    elif vendor_type == "call.recording.completed":
        obj["media"] = [
            {"url": r.get("url"), "type": r.get("type"), "duration": r.get("duration")}
            for r in extras.get("recordings", [])
        ]
    return obj


def _summary(sim: SimulatedCall, legacy: bool) -> dict[str, Any]:
    found = sim.extras.get("summary") or {}
    status = found.get("status", "absent")
    common = {"summary": found.get("summary"), "nextSteps": found.get("nextSteps")}
    if legacy:
        return {"callId": sim.call_id, "object": "callSummary", "status": status, **common}
    return {
        "callId": sim.call_id,
        "processingStatus": status,
        **common,
        "fromPhoneNumber": None,
        "handledByAiAgent": False,
        "answeredByUserId": sim.call.get("answeredBy"),
        "jobs": found.get("jobs", []),
    }


def _transcript(sim: SimulatedCall, legacy: bool) -> dict[str, Any]:
    found = sim.extras.get("transcript") or {}
    obj: dict[str, Any] = {"callId": sim.call_id}
    if legacy:
        obj["object"] = "callTranscript"
    obj.update(
        createdAt=found.get("createdAt", sim.call.get("completedAt")),
        dialogue=found.get("dialogue"),
        duration=found.get("duration", 0),
    )
    obj["status" if legacy else "processingStatus"] = found.get("status", "absent")
    return obj


def _voicemail(sim: SimulatedCall, now: float, legacy: bool) -> dict[str, Any]:
    call, found = sim.call, sim.extras.get("voicemail") or {}
    external = (call.get("participants") or [DEFAULT_PARTICIPANT])[0]
    ours = quo_number(str(call.get("phoneNumberId")))
    incoming = call.get("direction") == "incoming"
    ended = timestamp(call.get("completedAt")) or now
    obj: dict[str, Any] = {"id": "AC" + digest(sim.call_id, "voicemail")[:32]}
    if legacy:
        obj["object"] = "voicemail"
    obj.update(
        {
            "voicemailId": found.get("id"),
            "callId": sim.call_id,
            "direction": call.get("direction"),
            "duration": found.get("duration"),
            "from": external if incoming else ours,
            "to": ours if incoming else external,
            "transcript": found.get("transcript"),
            "recordingUrl": found.get("recordingUrl"),
            "createdAt": iso_utc(ended - (number(found.get("duration")) or 0)),
            "updatedAt": iso_utc(ended),
        }
    )
    return obj


def _message(call: Mapping[str, Any], now: float, legacy: bool) -> dict[str, Any]:
    message_id = "AC" + digest(str(call.get("id")), "message")[:32]
    text_ = "Thanks! Looking forward to the quote."
    if not legacy:
        return {
            "id": message_id,
            "direction": "incoming",
            "text": text_,
            "status": "received",
            "createdAt": iso_utc(now),
        }
    external = (call.get("participants") or [DEFAULT_PARTICIPANT])[0]
    number_id = str(call.get("phoneNumberId"))
    return {
        "id": message_id,
        "object": "message",
        "from": external,
        "to": [quo_number(number_id)],
        "direction": "incoming",
        "text": text_,
        "status": "received",
        "createdAt": iso_utc(now),
        "userId": call.get("userId"),
        "phoneNumberId": number_id,
        "conversationId": conversation_id(number_id, external),
    }


def _context(vendor_type: str, call: Mapping[str, Any]) -> dict[str, Any]:
    number_id = str(call.get("phoneNumberId"))
    external = (call.get("participants") or [DEFAULT_PARTICIPANT])[0]
    ours = quo_number(number_id)
    base = {
        "orgId": ORG_ID,
        "phoneNumberId": number_id,
        "conversationId": conversation_id(number_id, external),
        "userId": call.get("userId"),
    }
    if vendor_type == "call.ringing":
        return base  # ringing carries the narrow context
    contacts = {"ids": ["CT" + digest(external)[:18]], "lookupStatus": "matched"}
    if vendor_type == "message.received":
        return {
            **base,
            "contacts": contacts,
            "senderIdentifier": external,
            "recipientIdentifiers": [ours],
        }
    return {
        **base,
        "phoneNumberType": "shared",
        "contacts": contacts,
        "participants": {"workspace": [ours], "external": [external], "resolution": "available"},
    }


def _link(call: Mapping[str, Any]) -> str:
    return f"https://my.quo.com/inbox/{call.get('phoneNumberId')}/calls/{call.get('id')}"
