"""OpenPhone / Quo → the call record: event table, status tables, and the two normalisers.

`record_from_event` tells what one webhook says (either generation); `record_from_api` what
the Get Call answer and its extras say. Times become ISO-8601 UTC, durations seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from callhook.events import Event, EventType
from callhook.lenient import text
from callhook.record import FINAL_STATUSES, CallRecord, CallStatus, LastEvent, urls_from
from callhook.vendors.base import Fetched
from callhook.vendors.openphone import fields
from callhook.vendors.openphone.fields import as_object

VENDOR = "openphone"

#: every call event Quo documents (both spellings of the AI events), and its normalised
#: type; `call.completed` is refined by the call's status (see `event_type`)
EVENT_TYPES: Mapping[str, EventType] = MappingProxyType(
    {
        "call.ringing": EventType.RINGING,
        "call.answered": EventType.STARTED,
        "call.completed": EventType.COMPLETED,
        "call.missed": EventType.MISSED,
        "call.recording.completed": EventType.RECORDING_READY,
        "call.summary.completed": EventType.SUMMARY_READY,
        "callSummary": EventType.SUMMARY_READY,
        "call.transcript.completed": EventType.TRANSCRIPT_READY,
        "callTranscript": EventType.TRANSCRIPT_READY,
        "call.voicemail.completed": EventType.VOICEMAIL_READY,
    }
)

#: events whose object is not the call but refers to it by `callId`
CALL_ID_EVENTS = frozenset(
    {
        "call.summary.completed",
        "callSummary",
        "call.transcript.completed",
        "callTranscript",
        "call.voicemail.completed",
    }
)

#: `call.completed` statuses that mean nobody talked: the event is a `call.missed`.
#: `unanswered` is the new webhooks' spelling of the REST API's several.
MISSED_STATUSES = frozenset(
    {"no-answer", "missed", "busy", "canceled", "cancelled", "abandoned", "unanswered"}
)

#: Get Call `status` → record status. `forwarded` ends the call on our side after it was
#: handed to another number or user, so it counts as completed; `abandoned` (the caller
#: hung up while queued or in the phone menu) as missed.
API_STATUS: Mapping[str, CallStatus] = MappingProxyType(
    {
        "queued": CallStatus.RINGING,
        "initiated": CallStatus.RINGING,
        "ringing": CallStatus.RINGING,
        "in-progress": CallStatus.IN_PROGRESS,
        "answered": CallStatus.IN_PROGRESS,
        "completed": CallStatus.COMPLETED,
        "busy": CallStatus.BUSY,
        "failed": CallStatus.FAILED,
        "no-answer": CallStatus.NO_ANSWER,
        "canceled": CallStatus.CANCELED,
        "cancelled": CallStatus.CANCELED,
        "missed": CallStatus.MISSED,
        "abandoned": CallStatus.MISSED,
        "forwarded": CallStatus.COMPLETED,
    }
)

#: the final statuses only the new webhooks' `call.completed` uses; in that event
#: `answered` means "answered, and now over"
COMPLETED_EVENT_STATUS: Mapping[str, CallStatus] = MappingProxyType(
    {
        "answered": CallStatus.COMPLETED,
        "ai-handled": CallStatus.COMPLETED,
        "unanswered": CallStatus.MISSED,
    }
)

_FINAL_BY_EVENT = {
    EventType.COMPLETED: CallStatus.COMPLETED,
    EventType.MISSED: CallStatus.MISSED,
    EventType.FAILED: CallStatus.FAILED,
}


def event_type(vendor_type: str, status: Any) -> EventType | None:
    """The normalised type of a Quo event, or None for events accepted and dropped
    (`message.*`, `contact.*`, `task.*`, and any call event Callhook does not act on)."""
    base = EVENT_TYPES.get(vendor_type)
    if base is EventType.COMPLETED:
        vendor_status = (text(status) or "").lower()
        if vendor_status in MISSED_STATUSES:
            return EventType.MISSED
        if vendor_status == "failed":
            return EventType.FAILED
    return base


def api_status(value: Any) -> CallStatus:
    """The record status for a Get Call `status` (UNKNOWN for anything undocumented)."""
    return API_STATUS.get((text(value) or "").lower(), CallStatus.UNKNOWN)


def event_objects(payload: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(the event's object, its context): `data.resource` and `data.context` in the new
    webhooks, `data.object` (and no context) in the legacy ones."""
    data = as_object(payload.get("data"))
    if isinstance(data.get("resource"), Mapping):
        return data["resource"], as_object(data.get("context"))
    return as_object(data.get("object")), {}


# --- the webhook payload ----------------------------------------------------------------


def record_from_event(source: str, event: Event, received_at: str) -> CallRecord:
    """The partial record one webhook tells; `last_event` and `observed_at` from the event."""
    if event.call_id is None or event.type is None:
        raise ValueError("record_from_event() needs an event about a call")
    obj, context = event_objects(event.payload)
    return CallRecord(
        source=source,
        vendor=VENDOR,
        call_id=event.call_id,
        last_event=LastEvent(type=event.type.value, key=event.event_key, received_at=received_at),
        observed_at=event.occurred_at or received_at,
        # the event's own data, under its type: what the record's fields cannot hold
        vendor_data={event.vendor_type: dict(as_object(event.payload.get("data")))},
        **_event_fields(event.type, obj, context),
    )


def _event_fields(
    kind: EventType, obj: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    if kind is EventType.RINGING:
        # only who calls whom and since when: a ringing call has no answer or end yet
        call = fields.call_fields(obj, context)
        keep = ("direction", "media", "initiator", "receiver", "participants", "created_at")
        return {
            **{name: call[name] for name in keep},
            "status": CallStatus.RINGING,
            "vendor_status": call["vendor_status"] or "ringing",
        }
    if kind is EventType.STARTED:
        call = fields.call_fields(obj, context)
        del call["ended_at"], call["duration_s"]
        return {**call, "status": CallStatus.IN_PROGRESS}
    if kind in _FINAL_BY_EVENT:
        return _final_fields(kind, obj, context)
    if kind is EventType.RECORDING_READY:
        call = fields.call_fields(obj, context)
        # media[] carries no recording ids: left to Get Call's recordings (see docs)
        recordings = urls_from(fields.recordings(obj.get("recordings")), "payload")
        return {**call, "status": api_status(obj.get("status")), "recordings": recordings}
    if kind is EventType.SUMMARY_READY:
        return {"summary": fields.summary(obj)}
    if kind is EventType.TRANSCRIPT_READY:
        return {"transcript": fields.transcript(obj)}
    if kind is EventType.VOICEMAIL_READY:
        way = fields.direction(obj.get("direction"))
        initiator, receiver = fields.parties(obj, context, way)
        return {
            "direction": way,
            "initiator": initiator,
            "receiver": receiver,
            "voicemail": fields.voicemail(obj),
        }
    raise ValueError(f"no mapping for OpenPhone event type {kind.value!r}")


def _final_fields(
    kind: EventType, obj: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """`call.completed` (whatever its outcome) and `call.missed`: a call that is over."""
    if kind is EventType.MISSED and fields.direction(obj.get("direction")) is None:
        obj = {**obj, "direction": "incoming"}  # Quo fires call.missed for incoming calls only
    call = fields.call_fields(obj, context)
    vendor_status = (call["vendor_status"] or "").lower()
    status = COMPLETED_EVENT_STATUS.get(vendor_status) or api_status(vendor_status)
    if status not in FINAL_STATUSES:
        status = _FINAL_BY_EVENT[kind]
    if status is CallStatus.MISSED and call["direction"] == "outbound":
        status = CallStatus.NO_ANSWER  # nobody "misses" a call we placed
    voicemail = fields.voicemail(as_object(obj.get("voicemail")))
    return {**call, "status": status, "voicemail": voicemail}


# --- the Get Call answer ----------------------------------------------------------------


def record_from_api(source: str, fetched: Fetched, observed_at: str) -> CallRecord:
    """The complete record Get Call and the extras tell. A listed call (reconcile: no
    extras) maps the same, from what the call object itself carries."""
    call = fetched.call
    call_id = text(call.get("id"))
    if call_id is None:
        raise ValueError("an OpenPhone call object without id")
    extras = fetched.extras
    raw_recordings = extras.get("recordings")
    recordings = urls_from(
        fields.recordings(raw_recordings)
        if isinstance(raw_recordings, list)
        else fields.media_recordings(call.get("media")),
        "api",
    )
    raw_voicemail = extras.get("voicemail", call.get("voicemail"))
    vendor_data: dict[str, Any] = {**extras, "call": dict(call)}
    if fetched.notes:
        vendor_data["notes"] = dict(fetched.notes)
    return CallRecord(
        source=source,
        vendor=VENDOR,
        call_id=call_id,
        status=api_status(call.get("status")),
        recordings=recordings,
        summary=fields.summary(as_object(extras.get("summary"))),
        transcript=fields.transcript(as_object(extras.get("transcript"))),
        voicemail=fields.voicemail(as_object(raw_voicemail)),
        vendor_data=vendor_data,
        enrichment="api",
        observed_at=observed_at,
        **fields.call_fields(call, {}),
    )
