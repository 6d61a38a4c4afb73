"""Readers from Quo's objects (REST answers and both webhook generations) to record fields.

Every reader is lenient: numbers may come as strings, times as ISO strings or unix seconds,
and the older call shape (`from`, `to`, `media`, `voicemail`) maps like the current one
(`participants`, plus the new webhooks' `context.participants`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from callhook.lenient import dig, iso_utc, number, text
from callhook.record import Participant, Recording

Direction = Literal["inbound", "outbound"]

_DIRECTIONS: Mapping[str, Direction] = {
    "incoming": "inbound",
    "outgoing": "outbound",
    # the normalised spellings, in case a proxy or a future version uses them
    "inbound": "inbound",
    "outbound": "outbound",
}

#: recording states that mean there is no audio to point at
_NO_AUDIO = frozenset({"absent", "deleted", "failed"})


def as_object(value: Any) -> Mapping[str, Any]:
    """The value when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def direction(value: Any) -> Direction | None:
    return _DIRECTIONS.get((text(value) or "").lower())


def _numbers(value: Any) -> list[str]:
    """Phone numbers from a string or a list of strings, in order, without repeats."""
    values = value if isinstance(value, list) else [value]
    found: list[str] = []
    for item in values:
        number_ = text(item)
        if number_ is not None and number_ not in found:
            found.append(number_)
    return found


def parties(
    call: Mapping[str, Any], context: Mapping[str, Any], way: Direction | None
) -> tuple[str | None, str | None]:
    """(initiator, receiver). `from`/`to` say it outright (older payloads, voicemails);
    otherwise the external party (`context.participants.external`, else the call's first
    `participants` entry) and the workspace number (`context.participants.workspace`) are
    ordered by the call's direction."""
    caller, callee = _first(call.get("from")), _first(call.get("to"))
    if caller or callee:
        return caller, callee
    ours = _first(dig(context, "participants", "workspace"))
    theirs = _first(dig(context, "participants", "external")) or _first(call.get("participants"))
    if way == "inbound":
        return theirs, ours
    if way == "outbound":
        return ours, theirs
    return None, None


def _first(value: Any) -> str | None:
    found = _numbers(value)
    return found[0] if found else None


def participants(call: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[Participant, ...]:
    """Every phone number the objects name, as participants keyed by the E.164 number."""
    found: list[str] = []
    for value in (
        call.get("from"),
        call.get("to"),
        call.get("participants"),
        dig(context, "participants", "external"),
        dig(context, "participants", "workspace"),
    ):
        found += [n for n in _numbers(value) if n not in found]
    return tuple(Participant(id=n) for n in found)


def call_fields(call: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The record fields a call object tells (REST call, legacy `data.object`, or a new
    webhook's `data.resource` with its `data.context`). Status is left to the caller."""
    way = direction(call.get("direction"))
    initiator, receiver = parties(call, context, way)
    answered = iso_utc(call.get("answeredAt"))
    return {
        "vendor_status": text(call.get("status")),
        "direction": way,
        "media": "audio",
        "initiator": initiator,
        "receiver": receiver,
        "participants": participants(call, context),
        "created_at": iso_utc(call.get("createdAt")),
        # Quo has no separate "connected" time: the call starts when it is answered
        "started_at": answered,
        "answered_at": answered,
        "ended_at": iso_utc(call.get("completedAt")),
        "duration_s": number(call.get("duration")),
    }


def recordings(value: Any) -> tuple[Recording, ...]:
    """Recordings from `/v1/call-recordings` (or a new webhook's `resource.recordings`):
    each with its own id; absent, deleted and failed ones are left out."""
    found: list[Recording] = []
    for item in items(value):
        rid = text(item.get("id"))
        if rid is None or (text(item.get("status")) or "") in _NO_AUDIO:
            continue
        found.append(
            Recording(
                id=rid,
                url=text(item.get("url")),
                duration_s=number(item.get("duration")),
                started_at=iso_utc(item.get("startTime")),
            )
        )
    return tuple(found)


def media_recordings(value: Any) -> tuple[Recording, ...]:
    """Recordings from the older call shape's `media[{url, type, duration}]`, which carry
    no id: the file name in the URL stands in (stable, since the URL is)."""
    found: list[Recording] = []
    for item in items(value):
        url = text(item.get("url"))
        if url is None:
            continue
        stem = PurePosixPath(urlsplit(url).path).stem or url
        found.append(
            Recording(id=f"media-{stem}", url=url, duration_s=number(item.get("duration")))
        )
    return tuple(found)


def ready(item: Mapping[str, Any]) -> bool | None:
    """Whether a summary/transcript/voicemail object is finished: True, False (absent,
    in progress or failed), or None when it carries no status at all. The REST answers and
    legacy webhooks call the field `status`, the new webhooks `processingStatus`."""
    status = (text(item.get("status")) or text(item.get("processingStatus")) or "").lower()
    if not status:
        return None
    return status == "completed"


def summary(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{"summary": [...], "next_steps": [...]}` from a finished summary, else None."""
    if ready(item) is False or not (
        isinstance(item.get("summary"), list) or isinstance(item.get("nextSteps"), list)
    ):
        return None
    return {
        "summary": _strings(item.get("summary")),
        "next_steps": _strings(item.get("nextSteps")),
    }


def transcript(item: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The dialogue of a finished transcript: `[{content, start, end, identifier, userId}]`."""
    dialogue = item.get("dialogue")
    if ready(item) is False or not isinstance(dialogue, list):
        return None
    return [
        {
            "content": text(line.get("content")) or "",
            "start": number(line.get("start")),
            "end": number(line.get("end")),
            "identifier": text(line.get("identifier")),
            "userId": text(line.get("userId")),
        }
        for line in items(dialogue)
    ]


def voicemail(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{url, duration, transcript}` from `/v1/call-voicemails`, a new webhook's voicemail
    resource (`recordingUrl`) or the older call shape's `voicemail{url, type, duration}`."""
    if not item or ready(item) is False:
        return None
    url = text(item.get("recordingUrl")) or text(item.get("url"))
    if url is None:
        return None
    return {
        "url": url,
        "duration": number(item.get("duration")),
        "transcript": text(item.get("transcript")),
    }


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [s for s in (text(item) for item in value) if s is not None]
