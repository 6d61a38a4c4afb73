"""CometChat deliveries: HTTP Basic authentication, then the payload → `Event`.

CometChat signs nothing and sends no timestamp or delivery id: the only proof is the
Basic username and password configured on the webhook. The dedupe key is the one the
vendor documents per trigger, prefixed with the webhook id and the trigger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from callhook.errors import AuthenticationFailed, BadPayload
from callhook.events import Delivery, Event
from callhook.lenient import dig, iso_utc, text
from callhook.vendors.cometchat.config import CometChatSource
from callhook.vendors.cometchat.mapping import MESSAGE_TRIGGERS, TRIGGERS
from callhook.vendors.ids import IdFormat

#: a missed call without a session id is named after its call message: `msg_<data.call.id>`
MESSAGE_ID_PREFIX = "msg_"

#: CometChat's session ids look like `v1.us.<app id>.<unix time><hex>`; a Calls SDK session
#: may be named by the app (a group's guid, a uuid), so any letters, digits and `._:-`
#: starting with a letter or digit (so never `.` or `..`)
SESSION_ID = IdFormat(
    "a CometChat session id", re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}", re.ASCII)
)
#: a call message's id (`data.call.id`): numeric in every example, same charset allowed
MESSAGE_ID = IdFormat(
    "a CometChat message id", re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}", re.ASCII)
)

#: per session trigger, the `data` field the vendor documents as the second dedupe part
#: (after `data.sessionId`), and whether that field is the event's own time
_SESSION_KEY_FIELD: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "call_started": (("created_at",), True),
    "meeting_started": (("created_at",), True),
    "call_participant_joined": (("occupant", "joined_at"), True),
    "meeting_participant_joined": (("occupant", "joined_at"), True),
    "call_participant_left": (("occupant", "left_at"), True),
    "meeting_participant_left": (("occupant", "left_at"), True),
    "call_ended": (("destroyed_at",), True),
    "meeting_ended": (("destroyed_at",), True),
    # startTime is when the recording began, not when it was generated
    "recording_generated": (("startTime",), False),
    "transcription_generated": (("tid",), False),
}


def authenticate(
    config: CometChatSource, delivery: Delivery, *, now: float, tolerance_s: int
) -> None:
    """Raise `AuthenticationFailed` unless `Authorization: Basic` carries the configured
    username and password. `now` and `tolerance_s` are unused: CometChat sends no time."""
    expected_user = config.basic_auth_username.encode()
    expected_password = config.basic_auth_password.get_secret_value().encode()
    if not expected_user or not expected_password:
        raise AuthenticationFailed("webhook credentials are not configured")
    header = delivery.headers.get("authorization")
    if not header:
        raise AuthenticationFailed("missing Authorization header")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed("Authorization is not Basic")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("malformed Basic credentials") from None
    user, colon, password = decoded.partition(b":")
    if not colon:
        raise AuthenticationFailed("malformed Basic credentials")
    # both compared, always, so the timing tells nothing about which one was wrong
    user_ok = hmac.compare_digest(user, expected_user)
    password_ok = hmac.compare_digest(password, expected_password)
    if not user_ok and not password_ok:
        raise AuthenticationFailed("wrong username and password")
    if not user_ok:
        raise AuthenticationFailed("wrong username")
    if not password_ok:
        raise AuthenticationFailed("wrong password")


def parse(delivery: Delivery) -> Event:
    """The Event for an authenticated delivery; `BadPayload` when it cannot name its call.

    Triggers Callhook does not act on (chat messages, users, groups...) become an Event
    with `type=None` and no call id: accepted and dropped.
    """
    payload = delivery.json_object()
    trigger = text(payload.get("trigger"))
    if trigger is None:
        raise BadPayload("no trigger")
    webhook = text(payload.get("webhook")) or "-"
    prefix = f"{webhook}:{trigger}"
    event_type = TRIGGERS.get(trigger)
    if event_type is None:
        return Event(
            event_key=f"{prefix}:{_digest(delivery.body)}",
            vendor_type=trigger,
            type=None,
            call_id=None,
            payload=payload,
            fetchable=False,
        )
    data = payload.get("data")
    if not isinstance(data, dict):
        raise BadPayload("no data object")
    if trigger in MESSAGE_TRIGGERS:
        return _message_event(trigger, prefix, data, payload, delivery.body)
    session_id = text(data.get("sessionId"))
    if session_id is None:
        raise BadPayload("no data.sessionId")
    SESSION_ID.accepted(session_id, "data.sessionId")
    path, is_event_time = _SESSION_KEY_FIELD[trigger]
    second = text(dig(data, *path)) or _digest(delivery.body)
    return Event(
        event_key=f"{prefix}:{session_id}:{second}",
        vendor_type=trigger,
        type=event_type,
        call_id=session_id,
        payload=payload,
        occurred_at=iso_utc(dig(data, *path)) if is_event_time else None,
    )


def _message_event(
    trigger: str, prefix: str, data: Mapping[str, Any], payload: dict[str, Any], body: bytes
) -> Event:
    """A ringing-flow event: the session id, when present, is in the call message's
    `data.entities.on.entity.sessionid` (lower-case); missed calls usually lack it."""
    message = data.get("call")
    message_id = text(dig(message, "id"))
    entity = dig(message, "data", "entities", "on", "entity")
    session_id = text(dig(entity, "sessionid")) or text(dig(entity, "sessionId"))
    if session_id is None and message_id is None:
        raise BadPayload("no data.call.id and no session id")
    if session_id is not None:
        SESSION_ID.accepted(session_id, "the call message's session id")
    if message_id is not None:
        MESSAGE_ID.accepted(message_id, "data.call.id")
    sent_at = dig(message, "sentAt")
    second = text(sent_at) or _digest(body)
    changed_at = sent_at if trigger == "call_initiated" else dig(message, "updatedAt") or sent_at
    return Event(
        event_key=f"{prefix}:{message_id or session_id}:{second}",
        vendor_type=trigger,
        type=TRIGGERS[trigger],
        call_id=session_id or f"{MESSAGE_ID_PREFIX}{message_id}",
        payload=payload,
        fetchable=session_id is not None,
        occurred_at=iso_utc(changed_at),
    )


def _digest(body: bytes) -> str:
    """Stands in for a documented key part the payload lacks: the vendor's retries resend
    the same bytes, so the digest is as stable as the key it replaces."""
    return "sha256-" + hashlib.sha256(body).hexdigest()[:32]
