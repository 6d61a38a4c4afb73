"""Vendor id formats, checked wherever an id enters Callhook and again where one becomes a
URL path.

A call id from a webhook body or a List Calls answer is put in a vendor API path (with the
API key in the headers) and used as a record key by every sink. Quoting alone keeps it to
one path segment, but `.` and `..` are segments too (`GET /v3/calls/..` is `GET /v3/`),
so each vendor's id is matched against the shape its ids really have: the ingress refuses
anything else (400), reconcile skips it, and a client never builds a URL with it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import quote

from callhook.errors import BadPayload, PermanentError

log = logging.getLogger("callhook.vendors")

#: how much of a refused id a message shows
_SHOWN_CHARS = 40


@dataclass(frozen=True, slots=True)
class IdFormat:
    """One vendor's id shape: `name` says what it is in messages ("a CometChat session
    id"), `pattern` must match the whole id (ASCII only: no whitespace, `/`, `%`, `?`, `#`
    or control characters, and a bounded length)."""

    name: str
    pattern: re.Pattern[str]

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None

    def accepted(self, value: str, where: str) -> str:
        """`value` from a delivery body (found at `where`, e.g. "data.sessionId"), or
        `BadPayload` saying what is wrong with it (the ingress answers 400)."""
        if not self.matches(value):
            raise BadPayload(f"{where} is not {self.name}: {shown(value)}")
        return value

    def path_segment(self, value: str, *, target: str) -> str:
        """`value` as one URL path segment, or `PermanentError` when it is not of this
        format (defence in depth: the ingress and reconcile refuse such ids first)."""
        if not self.matches(value):
            raise PermanentError(
                f"{target}: refusing to request call id {shown(value)}: not {self.name}",
                target=target,
            )
        return quote(value, safe="")


def shown(value: str) -> str:
    """`value` safe to put in a log line or an answer: quoted, escaped, cut short."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return repr(value[:_SHOWN_CHARS]) + f"... ({len(value)} characters)"


class ListedIds:
    """Checks the ids of the calls a List Calls answer gives, before reconcile feeds them
    to enrichment: an id not of `id_format` is skipped (never fetched), logged, and counted in
    one entry of `notes` (the reconcile summary's "not covered")."""

    def __init__(self, id_format: IdFormat, *, target: str, notes: list[str]) -> None:
        self.format = id_format
        self.target = target
        self.notes = notes
        self.skipped = 0
        self._note_at: int | None = None

    def usable(self, value: str) -> bool:
        if self.format.matches(value):
            return True
        self.skipped += 1
        log.warning(
            "%s listed a call whose id is not %s: %s; skipped",
            self.target,
            self.format.name,
            shown(value),
        )
        note = (
            f"{self.skipped} listed calls have an id that is not {self.format.name}; "
            "they were skipped (see the log)"
        )
        if self._note_at is None:
            self._note_at = len(self.notes)
            self.notes.append(note)
        else:
            self.notes[self._note_at] = note
        return False
