"""Calls a simulated Quo knows, as `GET /v1/calls/{id}` returns them, with the objects its
recordings, summaries, transcripts and voicemails endpoints return for them.

Ids, numbers and times follow Quo's conventions (`AC...` calls, `PN...` numbers, `US...`
users, ISO times, E.164 numbers); numbers are in the fictional 555-01XX ranges.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any, Literal

from callhook.record import iso_z
from callhook.vendors.kit import SimulatedCall

Scenario = Literal["answered", "missed"]

#: the simulated workspace: one shared number and the two users on it
PHONE_NUMBER_ID = "PNq8Xk2Lm0"
USER_ID = "USlHhXmRMz"
TEAMMATE_ID = "US7pQw2Rkz"
ORG_ID = "ORx41bNq7T"
DEFAULT_PARTICIPANT = "+12125550123"

RECORDINGS_HOST = "https://storage.openphone.example/recordings"


def digest(*parts: str) -> str:
    """A stable hex tag for ids and URLs derived from other ids."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def new_call_id() -> str:
    """A call id shaped like Quo's: `AC` and 32 hex digits."""
    return "AC" + secrets.token_hex(16)


def quo_number(phone_number_id: str) -> str:
    """The E.164 number of a workspace phone number id (stable, fictional)."""
    return f"+141555501{int(digest(phone_number_id)[:4], 16) % 100:02d}"


def conversation_id(phone_number_id: str, participant: str) -> str:
    return "CN" + digest(phone_number_id, participant)[:32]


def simulated_call(
    call_id: str | None,
    now: float,
    *,
    scenario: Scenario = "answered",
    phone_number_id: str = PHONE_NUMBER_ID,
    participant: str = DEFAULT_PARTICIPANT,
) -> SimulatedCall:
    """A finished incoming call on `phone_number_id` from `participant`.

    "answered": answered by a user, recorded, summarised and transcribed; the user then
    transferred the caller to a teammate who did not pick up, and the caller left the
    teammate a voicemail (so every extra exists). "missed": nobody answered, no voicemail.
    """
    cid = call_id or new_call_id()
    created = int(now) - 300
    call: dict[str, Any] = {
        "answeredAt": None,
        "answeredBy": None,
        "initiatedBy": None,
        "direction": "incoming",
        "status": "completed",
        "completedAt": None,
        "createdAt": iso_z(created),
        "callRoute": "phone-number",
        "duration": 0,
        "forwardedFrom": None,
        "forwardedTo": None,
        "aiHandled": None,
        "id": cid,
        "phoneNumberId": phone_number_id,
        "participants": [participant],
        "updatedAt": None,
        "userId": USER_ID,
    }
    if scenario == "missed":
        call.update(
            status="no-answer", completedAt=iso_z(created + 25), updatedAt=iso_z(created + 26)
        )
        return SimulatedCall(cid, call, {"recordings": []})
    answered, transferred, ended = created + 7, created + 125, created + 152
    call.update(
        answeredAt=iso_z(answered),
        answeredBy=USER_ID,
        completedAt=iso_z(ended),
        duration=ended - answered,
        forwardedTo=TEAMMATE_ID,
        updatedAt=iso_z(ended + 1),
    )
    tag = digest(cid)
    extras: dict[str, Any] = {
        "recordings": [
            {
                "duration": transferred - answered,
                "id": "CR" + tag[:10],
                "startTime": iso_z(answered),
                "status": "completed",
                "type": "audio/mpeg",
                "url": f"{RECORDINGS_HOST}/{tag[:32]}.mp3",
            }
        ],
        "summary": {
            "callId": cid,
            "nextSteps": ["Email the quote for the annual plan by Friday."],
            "status": "completed",
            "summary": [
                "The caller asked about moving their team to the annual plan.",
                "They need a quote for 12 seats before their budget meeting.",
            ],
            "jobs": [],
        },
        "transcript": {
            "callId": cid,
            "createdAt": iso_z(ended + 40),
            "dialogue": _dialogue(participant, transferred - answered),
            "duration": float(transferred - answered),
            "status": "completed",
        },
        "voicemail": {
            "duration": 21,
            "id": "VM" + tag[32:44],
            "transcript": "Hi, it's about the annual plan quote. Please call me back today.",
            "recordingUrl": f"{RECORDINGS_HOST}/vm-{tag[:32]}.mp3",
            "status": "completed",
        },
    }
    return SimulatedCall(cid, call, extras)


def _dialogue(participant: str, length: int) -> list[dict[str, Any]]:
    lines = [
        (None, "Thanks for calling, this is Ava. How can I help?"),
        (participant, "Hi, we'd like to move the team to the annual plan."),
        (None, "Happy to help. How many seats do you need?"),
        (participant, "Twelve, and I need a quote before Friday."),
    ]
    step = length / len(lines)
    return [
        {
            "content": content,
            "start": round(i * step + 0.25, 6),
            "end": round((i + 1) * step - 0.5, 6),
            "identifier": speaker or quo_number(PHONE_NUMBER_ID),
            "userId": None if speaker else USER_ID,
        }
        for i, (speaker, content) in enumerate(lines)
    ]


def legacy_shape(call: Mapping[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    """The same call in the older shape some payloads still carry: `from`/`to`,
    `conversationId`, `media[{url, type, duration}]` and `voicemail{url, type, duration}`
    instead of `participants`."""
    older = {k: v for k, v in call.items() if k != "participants"}
    external = (call.get("participants") or [DEFAULT_PARTICIPANT])[0]
    ours = quo_number(str(call.get("phoneNumberId")))
    caller, callee = (external, ours) if call.get("direction") == "incoming" else (ours, external)
    voicemail = extras.get("voicemail")
    older.update(
        {
            "object": "call",
            "from": caller,
            "to": callee,
            "conversationId": conversation_id(str(call.get("phoneNumberId")), external),
            "media": [
                {"url": r["url"], "type": r.get("type"), "duration": r.get("duration")}
                for r in extras.get("recordings", [])
                if r.get("url")
            ],
            "voicemail": None
            if not voicemail
            else {
                "url": voicemail.get("recordingUrl"),
                "type": "audio/mpeg",
                "duration": voicemail.get("duration"),
            },
        }
    )
    return older
