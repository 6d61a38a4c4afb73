"""The two ways Quo signs a delivery, on the raw bytes: signing (the simulator) and verifying
(ingress) share this one implementation.

* Legacy webhooks: `openphone-signature: hmac;1;<timestamp ms>;<base64 HMAC-SHA256>` over
  `<timestamp>.<body>`, keyed with the base64-decoded signing secret. Several signatures may
  come comma-separated; one match is enough.
* New webhooks (API version 2026-03-30): Standard Webhooks, `webhook-id`,
  `webhook-timestamp` (unix seconds) and `webhook-signature` (space-separated `v1,<base64>`)
  over `<id>.<timestamp>.<body>`, keyed with the `whsec_` secret. Signing uses the
  `standardwebhooks` library; its `verify` reads the wall clock and fixes the tolerance at
  five minutes, so the window is checked here against the injected `now` instead.

Either header may list at most `MAX_SIGNATURES` signatures (Quo sends one, two while a
secret rotates): verifying runs before any credential is proven, so a longer list is
refused before any HMAC, and a legacy list costs one HMAC per distinct timestamp.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum

from standardwebhooks import Webhook

from callhook.errors import AuthenticationFailed
from callhook.lenient import timestamp

LEGACY_HEADER = "openphone-signature"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"

#: signatures one header may list; each legacy timestamp costs an HMAC over the whole body
MAX_SIGNATURES = 8

_UNIX_SECONDS = re.compile(r"^[1-9][0-9]{0,11}$")
_LEGACY_TIMESTAMP = re.compile(r"^[1-9][0-9]{0,15}$")


class Scheme(StrEnum):
    """Which signature a delivery carries, told by its headers."""

    LEGACY = "legacy"
    STANDARD = "standard"


def scheme_of(headers: Mapping[str, str]) -> Scheme | None:
    """Standard Webhooks when any `webhook-*` header is there, else legacy when
    `openphone-signature` is, else None (unsigned)."""
    if any(headers.get(name) for name in (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)):
        return Scheme.STANDARD
    if headers.get(LEGACY_HEADER):
        return Scheme.LEGACY
    return None


# --- legacy: openphone-signature -------------------------------------------------------


def legacy_digest(key: bytes, timestamp_ms: str, body: bytes) -> str:
    """base64(HMAC-SHA256(key, `<timestamp>.<body>`))."""
    mac = hmac.new(key, timestamp_ms.encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def legacy_signature(key: bytes, timestamp_ms: int, body: bytes) -> str:
    """One `hmac;1;<timestamp ms>;<signature>` entry, as Quo sends it."""
    return f"hmac;1;{timestamp_ms};{legacy_digest(key, str(timestamp_ms), body)}"


def verify_legacy(key: bytes, header: str, body: bytes, *, now: float, tolerance_s: int) -> None:
    """Raise `AuthenticationFailed` unless one entry of `header` signs `body` with `key`
    and carries a timestamp within `tolerance_s` of `now`; more than `MAX_SIGNATURES`
    entries are refused unread."""
    parts = header.split(",", MAX_SIGNATURES)
    if len(parts) > MAX_SIGNATURES:
        raise AuthenticationFailed(f"openphone-signature lists more than {MAX_SIGNATURES} entries")
    entries: list[tuple[str, str]] = []
    for part in parts:
        fields = part.strip().split(";")
        if len(fields) != 4 or fields[0] != "hmac" or fields[1] != "1":
            continue
        if _LEGACY_TIMESTAMP.match(fields[2]) and fields[3]:
            entries.append((fields[2], fields[3]))
    if not entries:
        raise AuthenticationFailed("malformed openphone-signature header")
    # the documented timestamps are milliseconds; a seconds value is read as seconds
    fresh = [(ts, sig) for ts, sig in entries if _within(timestamp(ts), now, tolerance_s)]
    if not fresh:
        raise AuthenticationFailed("openphone-signature timestamp outside the tolerance")
    expected: dict[str, bytes] = {}
    matched = False
    for ts, given in fresh:
        if ts not in expected:
            expected[ts] = legacy_digest(key, ts, body).encode()
        matched |= hmac.compare_digest(given.encode(), expected[ts])
    if not matched:
        raise AuthenticationFailed("openphone-signature does not match the body")


# --- new: Standard Webhooks ------------------------------------------------------------


def standard_headers(secret: str, msg_id: str, unix_s: int, body: bytes) -> dict[str, str]:
    """The three `webhook-*` headers Quo sends with a new-generation delivery."""
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(unix_s, UTC), body.decode())
    return {WEBHOOK_ID: msg_id, WEBHOOK_TIMESTAMP: str(unix_s), WEBHOOK_SIGNATURE: signature}


def verify_standard(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance_s: int
) -> None:
    """Raise `AuthenticationFailed` unless the `webhook-*` headers sign `body` with
    `secret` at a time within `tolerance_s` of `now`."""
    msg_id = headers.get(WEBHOOK_ID) or ""
    sent_at = headers.get(WEBHOOK_TIMESTAMP) or ""
    signatures = headers.get(WEBHOOK_SIGNATURE) or ""
    for name, value in ((WEBHOOK_ID, msg_id), (WEBHOOK_TIMESTAMP, sent_at)):
        if not value:
            raise AuthenticationFailed(f"missing {name} header")
    if not signatures:
        raise AuthenticationFailed(f"missing {WEBHOOK_SIGNATURE} header")
    if not _UNIX_SECONDS.match(sent_at):
        raise AuthenticationFailed("malformed webhook-timestamp")
    if not _within(float(sent_at), now, tolerance_s):
        raise AuthenticationFailed("webhook-timestamp outside the tolerance")
    entries = signatures.split(maxsplit=MAX_SIGNATURES)
    if len(entries) > MAX_SIGNATURES:
        raise AuthenticationFailed(f"webhook-signature lists more than {MAX_SIGNATURES} entries")
    given = [
        _b64(sig) for version, _, sig in (e.partition(",") for e in entries) if version == "v1"
    ]
    if not any(given):
        raise AuthenticationFailed("no v1 signature in webhook-signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed("body is not UTF-8") from None
    signed = Webhook(secret).sign(msg_id, datetime.fromtimestamp(int(sent_at), UTC), text)
    expected = base64.b64decode(signed.partition(",")[2])
    matched = False
    for candidate in given:
        if candidate is not None:
            matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        raise AuthenticationFailed("webhook-signature does not match the body")


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _within(moment: float | None, now: float, tolerance_s: int) -> bool:
    return moment is not None and abs(now - moment) <= tolerance_s
