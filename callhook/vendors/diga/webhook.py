"""Diga deliveries: the workflow's Bearer token, then the "Call Finished" body → `Event`.

Diga signs nothing and has no webhook subscription: the user's post-call workflow posts
the call's fields with `Authorization: Bearer <webhook_token>`. The token is the only
proof, compared in constant time; there is no timestamp and no delivery id. One call
finishes once, so the dedupe key is the call id (prefixed with the event name).
"""

from __future__ import annotations

import hmac
import re

from callhook.errors import AuthenticationFailed, BadPayload
from callhook.events import Delivery, Event
from callhook.lenient import iso_utc, text
from callhook.vendors.diga.config import DigaSource, reveal
from callhook.vendors.diga.mapping import CALL_FINISHED, finished_type
from callhook.vendors.ids import IdFormat

#: Diga's ids are UUIDs in the canonical 8-4-4-4-12 form
CALL_ID = IdFormat(
    "a Diga call id (a UUID)",
    re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII),
)


def authenticate(config: DigaSource, delivery: Delivery, *, now: float, tolerance_s: int) -> None:
    """Raise `AuthenticationFailed` unless `Authorization: Bearer` carries the configured
    token. `now` and `tolerance_s` are unused: the workflow sends no time."""
    expected = reveal(config.webhook_token).encode()
    if not expected:
        raise AuthenticationFailed("webhook token is not configured")
    header = delivery.headers.get("authorization", "").strip()
    if not header:
        raise AuthenticationFailed("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed("Authorization is not Bearer")
    given = token.strip().encode()
    if not given:
        raise AuthenticationFailed("empty Bearer token")
    if not hmac.compare_digest(given, expected):
        raise AuthenticationFailed("wrong token")


def parse(delivery: Delivery) -> Event:
    """The Event for an authenticated "Call Finished" body; `BadPayload` without a
    `call_id`, or with one that is not a UUID (no Diga call has it: a workflow template
    that did not render, say: the workflow's HTTP step sees the 400 and its reason).

    The type follows the final `status`: no_answer → call.missed, failed → call.failed,
    anything else (completed, transferred, absent) → call.completed.
    """
    payload = delivery.json_object()
    call_id = text(payload.get("call_id"))
    if call_id is None:
        raise BadPayload("no call_id")
    CALL_ID.accepted(call_id, "call_id")
    return Event(
        event_key=f"{CALL_FINISHED}:{call_id}",
        vendor_type=CALL_FINISHED,
        type=finished_type(payload.get("status")),
        call_id=call_id,
        payload=payload,
        occurred_at=iso_utc(payload.get("end_time")),
    )
