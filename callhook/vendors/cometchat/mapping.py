"""CometChat → the call record: trigger table, status table, and the two normalisers.

`record_from_event` tells what one webhook payload says; `record_from_api` what the Get Call
object says. Everything vendor-shaped is read leniently (numbers as strings, unix seconds),
times become ISO-8601 UTC and durations seconds (the API gives some in minutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from callhook.events import Event, EventType
from callhook.lenient import boolean, dig, hms_seconds, iso_utc, number, text, timestamp
from callhook.record import CallRecord, CallStatus, LastEvent, Participant, Recording
from callhook.vendors.base import Fetched

VENDOR = "cometchat"

#: every call trigger CometChat documents, and the normalised type it becomes
TRIGGERS: Mapping[str, EventType] = MappingProxyType(
    {
        "call_initiated": EventType.RINGING,
        "call_started": EventType.STARTED,
        "meeting_started": EventType.STARTED,
        "call_participant_joined": EventType.PARTICIPANT_JOINED,
        "meeting_participant_joined": EventType.PARTICIPANT_JOINED,
        "call_participant_left": EventType.PARTICIPANT_LEFT,
        "meeting_participant_left": EventType.PARTICIPANT_LEFT,
        "call_ended": EventType.COMPLETED,
        "meeting_ended": EventType.COMPLETED,
        "call_busy": EventType.MISSED,
        "call_cancelled": EventType.MISSED,
        "call_rejected": EventType.MISSED,
        "call_unanswered": EventType.MISSED,
        "recording_generated": EventType.RECORDING_READY,
        "transcription_generated": EventType.TRANSCRIPT_READY,
    }
)

#: triggers of the ringing flow: their payload is a call *message* under `data.call`
MESSAGE_TRIGGERS = frozenset(
    {"call_initiated", "call_busy", "call_cancelled", "call_rejected", "call_unanswered"}
)

#: what each missed-call trigger says happened (the trigger is authoritative; the
#: message's `action` is kept as vendor_status)
MISSED_STATUS: Mapping[str, CallStatus] = MappingProxyType(
    {
        "call_busy": CallStatus.BUSY,
        "call_cancelled": CallStatus.CANCELED,
        "call_rejected": CallStatus.REJECTED,
        "call_unanswered": CallStatus.NO_ANSWER,
    }
)

#: Get Call `status` → record status. `busy`/`cancelled` appear in CometChat's call logs.
API_STATUS: Mapping[str, CallStatus] = MappingProxyType(
    {
        "initiated": CallStatus.RINGING,
        "ongoing": CallStatus.IN_PROGRESS,
        "ended": CallStatus.COMPLETED,
        "unanswered": CallStatus.NO_ANSWER,
        "rejected": CallStatus.REJECTED,
        "canceled": CallStatus.CANCELED,
        "cancelled": CallStatus.CANCELED,
        "busy": CallStatus.BUSY,
    }
)


def api_status(value: Any) -> CallStatus:
    """The record status for a Get Call `status` (UNKNOWN for anything undocumented)."""
    key = (text(value) or "").lower()
    return API_STATUS.get(key, CallStatus.UNKNOWN)


def media(value: Any) -> Literal["audio", "video"] | None:
    kind = (text(value) or "").lower()
    if kind == "audio":
        return "audio"
    if kind == "video":
        return "video"
    return None


def minutes_to_seconds(value: Any) -> float | None:
    minutes = number(value)
    # rounded: minutes are stored with few digits, and 0.3572 * 60 is not 21.432 in floats
    return None if minutes is None else round(minutes * 60, 3)


def seconds_between(start: Any, end: Any) -> float | None:
    begun, ended = timestamp(start), timestamp(end)
    if begun is None or ended is None or ended < begun:
        return None
    return round(ended - begun, 3)


def _uid(value: Any) -> str | None:
    """A user/group id given as a string or as an entity object (older shapes)."""
    if isinstance(value, Mapping):
        return text(value.get("uid")) or text(value.get("guid"))
    return text(value)


# --- the webhook payload ----------------------------------------------------------------


def record_from_event(source: str, event: Event, received_at: str) -> CallRecord:
    """The partial record one webhook tells; `last_event` and `observed_at` from the event."""
    if event.call_id is None or event.type is None:
        raise ValueError("record_from_event() needs an event about a call")
    trigger = event.vendor_type
    data = dig(event.payload, "data")
    data = data if isinstance(data, Mapping) else {}
    if trigger in MESSAGE_TRIGGERS:
        fields = _message_fields(trigger, data)
    else:
        fields = _session_fields(trigger, data)
    return CallRecord(
        source=source,
        vendor=VENDOR,
        call_id=event.call_id,
        last_event=LastEvent(type=event.type.value, key=event.event_key, received_at=received_at),
        observed_at=event.occurred_at or received_at,
        # each webhook's own object, under its trigger: what the record's fields cannot hold
        vendor_data={trigger: dict(data)},
        **fields,
    )


def _message_fields(trigger: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A ringing-flow message: `data.call` with sender, receiver, type and `data.action`."""
    message = dig(data, "call")
    entity = dig(message, "data", "entities", "on", "entity")
    action = text(dig(message, "data", "action")) or text(dig(entity, "status"))
    sent_at = iso_utc(dig(message, "sentAt"))
    fields: dict[str, Any] = {
        "vendor_status": action,
        "media": media(dig(message, "type")) or media(dig(entity, "type")),
        "initiator": text(dig(message, "sender"))
        or _uid(dig(message, "data", "entities", "by", "entity")),
        "receiver": text(dig(message, "receiver")),
        "created_at": iso_utc(dig(entity, "initiatedAt")) or sent_at,
    }
    if trigger == "call_initiated":
        fields["status"] = CallStatus.RINGING
    else:
        fields["status"] = MISSED_STATUS[trigger]
        fields["ended_at"] = iso_utc(dig(message, "updatedAt")) or sent_at
    return fields


def _session_fields(trigger: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A call-session webhook: `data.sessionId` plus the trigger's own fields."""
    ringing = trigger.startswith("call_")
    if trigger in ("call_started", "meeting_started"):
        started = iso_utc(data.get("created_at"))
        return {
            "status": CallStatus.IN_PROGRESS,
            "vendor_status": "ongoing",
            "started_at": started,
            # in the ringing flow the session starts when the callee accepts
            "answered_at": started if ringing else None,
        }
    if trigger in ("call_ended", "meeting_ended"):
        return {
            "status": CallStatus.COMPLETED,
            "vendor_status": "ended",
            "started_at": iso_utc(data.get("created_at")),
            "ended_at": iso_utc(data.get("destroyed_at")),
            "duration_s": seconds_between(data.get("created_at"), data.get("destroyed_at")),
        }
    if trigger.endswith(("_participant_joined", "_participant_left")):
        occupant = data.get("occupant")
        audio_only = boolean(dig(occupant, "audio_call"))
        participant = _occupant(occupant)
        return {
            "status": CallStatus.IN_PROGRESS,
            "media": None if audio_only is None else ("audio" if audio_only else "video"),
            "participants": () if participant is None else (participant,),
        }
    if trigger == "recording_generated":
        recording = _webhook_recording(data)
        return {"recordings": () if recording is None else (recording,)}
    if trigger == "transcription_generated":
        return {"transcript": [_transcription(data)]}
    raise ValueError(f"no mapping for CometChat trigger {trigger!r}")


def _occupant(occupant: Any) -> Participant | None:
    """A participant from a webhook occupant, only when it carries a uid.

    The documented occupants carry a display `name` and no uid; Get Call names participants
    by uid. A name-keyed participant would never merge with the uid-keyed one and the record
    would list the same person twice, so name-only occupants stay in vendor_data.
    """
    uid = text(dig(occupant, "uid"))
    if uid is None:
        return None
    joined, left = dig(occupant, "joined_at"), dig(occupant, "left_at")
    return Participant(
        id=uid,
        name=text(dig(occupant, "name")),
        joined_at=iso_utc(joined),
        left_at=iso_utc(left),
        duration_s=seconds_between(joined, left),
    )


def _webhook_recording(data: Mapping[str, Any]) -> Recording | None:
    """The recording a `recording_generated` tells, when it names the recording's `rid`.

    Without a rid (the documented payload has none) it could not merge with the copy Get
    Call returns, so it is left to the fetch (the raw webhook stays in vendor_data).
    The webhook's `duration` ("21.433000") is in seconds, unlike the API's minutes.
    """
    rid = text(data.get("rid"))
    if rid is None:
        return None
    return Recording(
        id=rid,
        url=text(data.get("recording_url")),
        url_from="payload",
        duration_s=number(data.get("duration")),
        started_at=iso_utc(data.get("startTime")),
    )


def _transcription(item: Mapping[str, Any]) -> dict[str, Any]:
    """One transcription reference in the record's `transcript` list."""
    return {
        "id": text(item.get("tid")),
        "url": text(item.get("transcriptUrl")) or text(item.get("transcription_url")),
        "started_at": iso_utc(item.get("startTime")),
        "ended_at": iso_utc(item.get("endTime")),
    }


# --- the Get Call answer ----------------------------------------------------------------


def record_from_api(source: str, fetched: Fetched, observed_at: str) -> CallRecord:
    """The complete record a Get Call object tells (both documented shapes, unwrapped)."""
    call = fetched.call
    session_id = text(call.get("sessionId"))
    if session_id is None:
        raise ValueError("a CometChat call object without sessionId")
    status = api_status(call.get("status"))
    started_at = iso_utc(call.get("startedAt"))
    answered = status in (CallStatus.IN_PROGRESS, CallStatus.COMPLETED)
    ringing_flow = (text(call.get("mode")) or "call").lower() == "call"
    # the extras are the call's own lists (see client.fetch); reading them from the call
    # too makes a listed call (reconcile) map exactly like a fetched one
    raw_recordings = fetched.extras.get("recordings", call.get("recordings"))
    raw_transcriptions = fetched.extras.get("transcript", call.get("transcriptions"))
    recordings, transcriptions = _list(raw_recordings), _list(raw_transcriptions)
    vendor_data: dict[str, Any] = {**fetched.extras, "call": dict(call)}
    if isinstance(raw_recordings, list):
        vendor_data["recordings"] = raw_recordings
    if isinstance(raw_transcriptions, list):
        vendor_data["transcript"] = raw_transcriptions
    return CallRecord(
        source=source,
        vendor=VENDOR,
        call_id=session_id,
        status=status,
        vendor_status=text(call.get("status")),
        direction=None,  # CometChat calls are app-to-app: no inbound/outbound concept
        media=media(call.get("type")),
        initiator=_uid(call.get("initiator"))
        or _uid(dig(call, "data", "entities", "initiator", "entity")),
        receiver=_uid(call.get("receiver"))
        or _uid(dig(call, "data", "entities", "receiver", "entity")),
        participants=_participants(call.get("participants")),
        created_at=iso_utc(call.get("initiatedAt")),
        started_at=started_at,
        answered_at=started_at if answered and ringing_flow else None,
        ended_at=iso_utc(call.get("endedAt")),
        duration_s=_duration(call) or seconds_between(call.get("startedAt"), call.get("endedAt")),
        recordings=tuple(_api_recording(item) for item in recordings if text(item.get("rid"))),
        transcript=[_transcription(item) for item in transcriptions] or None,
        vendor_data=vendor_data,
        enrichment="api",
        observed_at=observed_at,
    )


def _list(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _duration(item: Mapping[str, Any]) -> float | None:
    """Seconds from `totalDurationInMinutes`, else from `totalDuration` ("HH:MM:SS")."""
    seconds = minutes_to_seconds(item.get("totalDurationInMinutes"))
    return seconds if seconds is not None else hms_seconds(item.get("totalDuration"))


def _participants(value: Any) -> tuple[Participant, ...]:
    """One participant per uid; a uid joining from several devices is folded into one
    (first join, last leave, durations added)."""
    by_uid: dict[str, Participant] = {}
    for item in _list(value):
        uid = text(item.get("uid"))
        if uid is None:
            continue
        current = Participant(
            id=uid,
            name=text(item.get("name")),
            joined_at=iso_utc(item.get("joinedAt")),
            left_at=iso_utc(item.get("leftAt")),
            duration_s=_duration(item),
        )
        earlier = by_uid.get(uid)
        by_uid[uid] = current if earlier is None else _fold(earlier, current)
    return tuple(by_uid.values())


def _fold(a: Participant, b: Participant) -> Participant:
    joins = [t for t in (a.joined_at, b.joined_at) if t]
    leaves = [t for t in (a.left_at, b.left_at) if t]
    durations = [d for d in (a.duration_s, b.duration_s) if d is not None]
    return Participant(
        id=a.id,
        name=a.name or b.name,
        joined_at=min(joins) if joins else None,
        left_at=max(leaves) if leaves else None,
        duration_s=round(sum(durations), 3) if durations else None,
    )


def _api_recording(item: Mapping[str, Any]) -> Recording:
    return Recording(
        id=str(text(item.get("rid"))),
        url=text(item.get("recording_url")),
        url_from="api",
        duration_s=minutes_to_seconds(item.get("duration")),
        started_at=iso_utc(item.get("startTime")),
    )
