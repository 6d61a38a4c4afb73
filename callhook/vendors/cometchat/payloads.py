"""Webhook bodies a simulated CometChat posts, shaped like the documented examples (some
numbers and booleans as strings, missed-call messages without a session id)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from callhook.lenient import number

#: the webhook id CometChat puts in every delivery (set by the user when creating it)
WEBHOOK_ID = "callhook"

SIMULATED_TYPES: tuple[str, ...] = (
    "call_initiated",
    "call_started",
    "call_participant_joined",
    "call_participant_left",
    "call_ended",
    "call_busy",
    "call_cancelled",
    "call_rejected",
    "call_unanswered",
    "meeting_started",
    "meeting_participant_joined",
    "meeting_participant_left",
    "meeting_ended",
    "recording_generated",
    "transcription_generated",
    "message_sent",
)

#: CometChat's sample users (uid → display name), as in its docs and sample apps
USERS: Mapping[str, str] = {
    "cometchat-uid-1": "Andrew Joseph",
    "cometchat-uid-2": "George Alan",
    "cometchat-uid-5": "John Paul",
}

_MISSED_ACTION = {
    "call_busy": "busy",
    "call_cancelled": "cancelled",
    "call_rejected": "rejected",
    "call_unanswered": "unanswered",
}


def short_hash(session_id: str) -> str:
    """A short stable hex tag for ids and URLs derived from a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


def webhook_payload(
    trigger: str, call: Mapping[str, Any], now: float, *, app_id: str, region: str
) -> dict[str, Any]:
    """The JSON body CometChat posts for `trigger` about `call` (a Get Call object)."""
    if trigger not in SIMULATED_TYPES:
        raise ValueError(f"CometChat has no simulated trigger {trigger!r}")
    session_id = str(call["sessionId"])
    initiated = int(number(call.get("initiatedAt")) or now)
    started = int(number(call.get("startedAt")) or initiated)
    ended = int(number(call.get("endedAt")) or now)
    envelope: dict[str, Any] = {"trigger": trigger}
    if trigger == "call_initiated":
        envelope["data"] = {
            "call": _call_message(call, "initiated", initiated, initiated, session_id)
        }
    elif trigger in _MISSED_ACTION:
        # as documented: no session id in missed-call messages
        envelope["data"] = {
            "call": _call_message(call, _MISSED_ACTION[trigger], initiated, initiated + 30, None)
        }
    elif trigger == "message_sent":
        envelope["data"] = {"message": _chat_message(call, int(now))}
    else:
        envelope["data"] = _session_data(trigger, call, session_id, started, ended)
        envelope["type"] = "meet" if trigger.startswith("meeting_") else "call"
    envelope.update({"appId": app_id, "region": region, "webhook": WEBHOOK_ID})
    return envelope


def _session_data(
    trigger: str, call: Mapping[str, Any], session_id: str, started: int, ended: int
) -> dict[str, Any]:
    kind = trigger.partition("_")[2]
    if kind == "started":
        return {"created_at": started, "sessionId": session_id}
    if kind == "ended":
        return {"created_at": started, "destroyed_at": ended, "sessionId": session_id}
    if kind in ("participant_joined", "participant_left"):
        first = (call.get("participants") or [{}])[0]
        uid = str(first.get("uid", call.get("initiator")))
        occupant: dict[str, Any] = {
            "joined_at": int(number(first.get("joinedAt")) or started),
            "audio_call": "true" if call.get("type") == "audio" else "false",
            "name": USERS.get(uid, uid),
        }
        if kind == "participant_left":
            occupant["left_at"] = int(number(first.get("leftAt")) or ended)
        return {
            "occupant": occupant,
            "initial_config": _initial_config(call),
            "sessionId": session_id,
        }
    if trigger == "recording_generated":
        recording = (call.get("recordings") or [{}])[0]
        minutes = number(recording.get("duration")) or (ended - started) / 60
        return {
            "sessionId": session_id,
            "recording_url": recording.get("recording_url")
            or f"https://recordings-us.cometchat.io/{short_hash(session_id)}.mp4",
            "startTime": str(int(number(recording.get("startTime")) or started)),
            "duration": f"{minutes * 60:.6f}",
        }
    transcription = (call.get("transcriptions") or [{}])[0]
    return {
        "sessionId": session_id,
        "tid": transcription.get("tid") or f"tr-{short_hash(session_id)}",
        "transcriptUrl": transcription.get("transcriptUrl"),
    }


def _call_message(
    call: Mapping[str, Any], action: str, sent: int, updated: int, session_id: str | None
) -> dict[str, Any]:
    """A ringing-flow call message (the object `data.call` of a call_* trigger)."""
    sender, receiver = str(call.get("initiator")), str(call.get("receiver"))
    entities: dict[str, Any] = {
        "by": {
            "entity": {
                "uid": sender,
                "name": USERS.get(sender, sender),
                "status": "available",
                "role": "default",
                "lastActiveAt": sent - 300,
            },
            "entityType": "user",
        }
    }
    if session_id is not None:
        entities["on"] = {
            "entity": {
                "sessionid": session_id,
                "status": action,
                "type": call.get("type"),
                "initiatedAt": sent,
            },
            "entityType": "call",
        }
    return {
        "id": _message_id(str(call["sessionId"])),
        "conversationId": f"{sender}_user_{receiver}",
        "sender": sender,
        "receiverType": call.get("receiverType", "user"),
        "receiver": receiver,
        "category": "call",
        "type": call.get("type"),
        "data": {"action": action, "entities": entities},
        "sentAt": sent,
        "updatedAt": updated,
    }


def _chat_message(call: Mapping[str, Any], sent: int) -> dict[str, Any]:
    sender, receiver = str(call.get("initiator")), str(call.get("receiver"))
    return {
        "id": _message_id(str(call["sessionId"]) + ":text"),
        "conversationId": f"{sender}_user_{receiver}",
        "sender": sender,
        "receiverType": "user",
        "receiver": receiver,
        "category": "message",
        "type": "text",
        "data": {"text": "Thanks for the call!"},
        "sentAt": sent,
        "updatedAt": sent,
    }


def _initial_config(call: Mapping[str, Any]) -> dict[str, str]:
    audio = "true" if call.get("type") == "audio" else "false"
    return {
        "is_video_muted": "false",
        "start_recording_on_call_start": "false",
        "call_version": "2.3.0",
        "is_audio_muted": "false",
        "sdk": "react",
        "mode": "DEFAULT",
        "platform": "web",
        "is_audio_only": audio,
    }


def _message_id(seed: str) -> str:
    """CometChat message ids are decimal strings."""
    return str(int(hashlib.sha256(seed.encode()).hexdigest()[:10], 16) % 10_000_000)
