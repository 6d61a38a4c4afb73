"""Diga → the call record: the event and status tables, and the two normalisers.

`record_from_event` tells what the "Call Finished" workflow body says; `record_from_api`
what Get Call (and the call's messages) say. Values are read leniently: the workflow body
is whatever the user's HTTP step renders, so numbers may arrive as strings and `messages`
as a JSON-encoded string. Times become ISO-8601 UTC, durations seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import orjson

from callhook.events import Event, EventType
from callhook.lenient import dig, iso_utc, number, text, timestamp
from callhook.record import CallRecord, CallStatus, LastEvent, Recording, UrlFrom
from callhook.vendors.base import Fetched

VENDOR = "diga"

#: the one event Diga can post: the user's "Call Finished" workflow
CALL_FINISHED = "call_finished"

#: the finished call's `status` → the normalised event type (anything else: completed)
FINISHED_TYPES: Mapping[str, EventType] = MappingProxyType(
    {
        "no_answer": EventType.MISSED,
        "failed": EventType.FAILED,
    }
)

#: Diga's call `status` → record status. A transferred call was answered by the agent and
#: handed on: for Callhook it completed (`vendor_status` keeps "transferred").
API_STATUS: Mapping[str, CallStatus] = MappingProxyType(
    {
        "dialing": CallStatus.RINGING,
        "in_progress": CallStatus.IN_PROGRESS,
        "completed": CallStatus.COMPLETED,
        "failed": CallStatus.FAILED,
        "transferred": CallStatus.COMPLETED,
        "no_answer": CallStatus.NO_ANSWER,
    }
)

#: statuses in which the contact and the agent were connected
_CONNECTED = frozenset({"in_progress", "completed", "transferred"})


def finished_type(status: Any) -> EventType:
    """The normalised type of a "Call Finished" delivery with this `status`."""
    return FINISHED_TYPES.get((text(status) or "").lower(), EventType.COMPLETED)


def api_status(value: Any) -> CallStatus:
    """The record status for a Diga `status` (UNKNOWN for anything undocumented)."""
    return API_STATUS.get((text(value) or "").lower(), CallStatus.UNKNOWN)


def direction(value: Any) -> Literal["inbound", "outbound"] | None:
    kind = (text(value) or "").lower()
    if kind == "inbound":
        return "inbound"
    if kind == "outbound":
        return "outbound"
    return None


def ends(
    call_direction: str | None, contact: str | None, agent: str | None
) -> tuple[str | None, str | None]:
    """(initiator, receiver): the contact calls the agent inbound, the agent calls out."""
    if call_direction == "inbound":
        return contact, agent
    if call_direction == "outbound":
        return agent, contact
    return None, None


def seconds_between(start: Any, end: Any) -> float | None:
    begun, ended = timestamp(start), timestamp(end)
    if begun is None or ended is None or ended < begun:
        return None
    return round(ended - begun, 3)


def recording_id(call_id: str) -> str:
    """Diga gives a call one recording URL and no recording id: the id derives from the
    call, so the payload's and the API's copies of it merge into one."""
    return f"{call_id}-recording"


def messages_list(value: Any) -> list[Mapping[str, Any]] | None:
    """The messages as a list of objects; a JSON-encoded string (a workflow that rendered
    the list into the body as text) is decoded. None when there is no list."""
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, Mapping)]


def transcript(messages: list[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The record's transcript: one entry per message, in the order given."""
    if not messages:
        return None
    return [
        {
            "id": text(item.get("message_id")),
            "role": text(item.get("role")),
            "content": item.get("content") if isinstance(item.get("content"), str) else None,
            "created_at": iso_utc(item.get("created_date")),
            "tool_call": dict(item["tool_call"])
            if isinstance(item.get("tool_call"), Mapping)
            else None,
        }
        for item in messages
    ]


def _recordings(call_id: str, url: Any, origin: UrlFrom) -> tuple[Recording, ...]:
    link = text(url)
    if link is None:
        return ()
    return (Recording(id=recording_id(call_id), url=link, url_from=origin),)


def _answered_at(status: Any, start: Any) -> str | None:
    return iso_utc(start) if (text(status) or "").lower() in _CONNECTED else None


def _duration(value: Any, start: Any, end: Any) -> float | None:
    seconds = number(value)
    return seconds if seconds is not None else seconds_between(start, end)


# --- the "Call Finished" workflow body ----------------------------------------------------


def record_from_event(source: str, event: Event, received_at: str) -> CallRecord:
    """The partial record a "Call Finished" body tells; `observed_at` is its `end_time`."""
    if event.call_id is None or event.type is None:
        raise ValueError("record_from_event() needs an event about a call")
    body = event.payload
    status = body.get("status")
    call_direction = direction(body.get("type"))
    contact = text(body.get("phone_number")) or text(body.get("contact_id"))
    initiator, receiver = ends(call_direction, contact, text(body.get("agent_id")))
    start, end = body.get("start_time"), body.get("end_time")
    return CallRecord(
        source=source,
        vendor=VENDOR,
        call_id=event.call_id,
        status=api_status(status),
        vendor_status=text(status),
        direction=call_direction,
        media="audio",  # Diga's agents only speak: phone and web calls are both voice
        initiator=initiator,
        receiver=receiver,
        # the body has no creation time; the start stands in until Get Call's created_date
        created_at=iso_utc(start),
        started_at=iso_utc(start),
        answered_at=_answered_at(status, start),
        ended_at=iso_utc(end),
        duration_s=_duration(body.get("duration"), start, end),
        recordings=_recordings(event.call_id, body.get("recording_url"), "payload"),
        transcript=transcript(messages_list(body.get("messages"))),
        last_event=LastEvent(type=event.type.value, key=event.event_key, received_at=received_at),
        observed_at=event.occurred_at or received_at,
        vendor_data={event.vendor_type: dict(body)},
    )


# --- the Get Call answer ------------------------------------------------------------------


def record_from_api(source: str, fetched: Fetched, observed_at: str) -> CallRecord:
    """The complete record Get Call tells, with the messages in `extras["transcript"]`.

    A listed call (reconcile: no extras) maps the same, without a transcript.
    """
    call = fetched.call
    call_id = text(call.get("id"))
    if call_id is None:
        raise ValueError("a Diga call object without id")
    status = call.get("status")
    call_direction = direction(call.get("type"))
    contact = text(dig(call, "contact", "identifier")) or text(dig(call, "contact", "id"))
    agent = text(call.get("agent_id")) or text(call.get("phone_register_id"))
    initiator, receiver = ends(call_direction, contact, agent)
    start, end = call.get("start_time"), call.get("end_time")
    raw_messages = fetched.extras.get("transcript")
    vendor_data: dict[str, Any] = {**fetched.extras, "call": dict(call)}
    summary = call.get("summary")
    return CallRecord(
        source=source,
        vendor=VENDOR,
        call_id=call_id,
        status=api_status(status),
        vendor_status=text(status),
        direction=call_direction,
        media="audio",
        initiator=initiator,
        receiver=receiver,
        created_at=iso_utc(call.get("created_date")),
        started_at=iso_utc(start),
        answered_at=_answered_at(status, start),
        ended_at=iso_utc(end),
        duration_s=_duration(call.get("duration"), start, end),
        recordings=_recordings(call_id, call.get("recording_url"), "api"),
        transcript=transcript(messages_list(raw_messages)),
        summary=summary if isinstance(summary, str) and summary.strip() else None,
        vendor_data=vendor_data,
        enrichment="api",
        observed_at=observed_at,
    )
