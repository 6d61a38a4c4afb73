"""OpenPhone / Quo deliveries: signature verification on the raw bytes, then payload → Event.

Which generation a delivery belongs to is told per request by its headers: Standard
Webhooks (`webhook-*`, keyed with `webhook_secret`) or legacy (`openphone-signature`,
keyed with `signing_secret`). A generation whose secret is empty in the config is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from callhook.errors import AuthenticationFailed, BadPayload
from callhook.events import Delivery, Event
from callhook.lenient import iso_utc, text
from callhook.vendors.ids import IdFormat
from callhook.vendors.openphone.config import OpenPhoneSource
from callhook.vendors.openphone.mapping import CALL_ID_EVENTS, event_objects, event_type
from callhook.vendors.openphone.signatures import (
    LEGACY_HEADER,
    WEBHOOK_ID,
    Scheme,
    scheme_of,
    verify_legacy,
    verify_standard,
)

#: event key prefixes: the legacy envelope id and the Standard Webhooks delivery id live in
#: different namespaces, so they are kept apart
LEGACY_KEY_PREFIX = "evt"
STANDARD_KEY_PREFIX = "whk"

#: Quo's ids are a two-letter kind and letters or digits (`AC` + 32 hex digits in practice;
#: the API reference's pattern for a call id is `^AC(.*)$`, its example `AC123abc`)
CALL_ID = IdFormat("a Quo call id (AC...)", re.compile(r"AC[A-Za-z0-9]{1,62}", re.ASCII))
#: a voicemail whose call Quo could not resolve is recorded under its own id
OWN_ID = IdFormat("a Quo id", re.compile(r"[A-Za-z]{2}[A-Za-z0-9]{1,62}", re.ASCII))


def authenticate(
    config: OpenPhoneSource, delivery: Delivery, *, now: float, tolerance_s: int
) -> None:
    """Raise `AuthenticationFailed` unless the delivery is signed by Quo with the secret of
    its generation, at a time within `tolerance_s` of `now` (unix seconds)."""
    scheme = scheme_of(delivery.headers)
    if scheme is None:
        raise AuthenticationFailed("no openphone-signature or webhook-signature header")
    if scheme is Scheme.STANDARD:
        secret = config.standard_secret()
        if secret is None:
            raise AuthenticationFailed("Standard Webhooks delivery, but webhook_secret is empty")
        verify_standard(secret, delivery.headers, delivery.body, now=now, tolerance_s=tolerance_s)
        return
    key = config.legacy_key()
    if key is None:
        raise AuthenticationFailed("openphone-signature delivery, but signing_secret is empty")
    header = delivery.headers.get(LEGACY_HEADER) or ""
    verify_legacy(key, header, delivery.body, now=now, tolerance_s=tolerance_s)


def parse(delivery: Delivery) -> Event:
    """The Event for an authenticated delivery; `BadPayload` when it cannot name its call.

    Events Callhook does not act on (`message.*`, `contact.*`, `task.*`, other call events)
    become an Event with `type=None` and no call id: accepted and dropped.
    """
    payload = delivery.json_object()
    vendor_type = text(payload.get("type"))
    if vendor_type is None:
        raise BadPayload("no event type")
    obj, _ = event_objects(payload)
    kind = event_type(vendor_type, obj.get("status"))
    key = _event_key(delivery, payload, vendor_type)
    occurred_at = iso_utc(payload.get("createdAt"))
    if kind is None:
        return Event(
            event_key=key,
            vendor_type=vendor_type,
            type=None,
            call_id=None,
            payload=payload,
            fetchable=False,
            occurred_at=occurred_at,
        )
    if not obj:
        raise BadPayload("no data.resource or data.object")
    call_id, fetchable = _call_identity(vendor_type, obj)
    return Event(
        event_key=key,
        vendor_type=vendor_type,
        type=kind,
        call_id=call_id,
        payload=payload,
        fetchable=fetchable,
        occurred_at=occurred_at,
    )


def _call_identity(vendor_type: str, obj: Mapping[str, Any]) -> tuple[str, bool]:
    """(call id, whether Get Call knows it). Summaries, transcripts and voicemails name
    their call by `callId`; a voicemail whose call Quo could not resolve has `callId: null`
    and is recorded under its own id, from the payload alone."""
    if vendor_type in CALL_ID_EVENTS:
        call_id = text(obj.get("callId"))
        if call_id is not None:
            return CALL_ID.accepted(call_id, "callId"), True
        own_id = text(obj.get("id"))
        if vendor_type == "call.voicemail.completed" and own_id is not None:
            return OWN_ID.accepted(own_id, "the voicemail's id"), False
        raise BadPayload("no callId")
    call_id = text(obj.get("id"))
    if call_id is None:
        raise BadPayload("no call id")
    return CALL_ID.accepted(call_id, "the call's id"), True


def _event_key(delivery: Delivery, payload: Mapping[str, Any], vendor_type: str) -> str:
    """The documented dedupe id under its type: `webhook-id` (Standard Webhooks: stable
    across retries) or the legacy envelope's `id`. A legacy body without an id falls back
    to a digest of the bytes, which Quo's retries resend unchanged."""
    msg_id = delivery.headers.get(WEBHOOK_ID)
    if msg_id:
        return f"{STANDARD_KEY_PREFIX}:{vendor_type}:{msg_id}"
    envelope_id = text(payload.get("id"))
    if envelope_id is None:
        envelope_id = "sha256-" + hashlib.sha256(delivery.body).hexdigest()[:32]
    return f"{LEGACY_KEY_PREFIX}:{vendor_type}:{envelope_id}"
