"""The Slack message for a call record: Block Kit blocks plus a plain `text` fallback.

Layout, top to bottom: a headline (what happened, who called whom), a fields section
(status, direction, duration, start time), recording / voicemail links and the summary
when the record has them, and a context line naming vendor, source and call id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from callhook.events import EventType
from callhook.lenient import dig, number, text, timestamp

#: Slack rejects a section whose text is longer than 3000 characters
_SECTION_MAX = 3000
#: recordings linked in one message; more are rare and only add noise
_MAX_RECORDINGS = 3
#: what a URL keeps as it is in a link: RFC 3986's reserved and unreserved characters and
#: `%` (escapes already made); `|`, `<`, `>`, spaces, quotes and non-ASCII are percent-encoded
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"

_HEADLINES: Mapping[EventType, tuple[str, str]] = {
    EventType.RINGING: (":bell:", "Ringing"),
    EventType.STARTED: (":telephone_receiver:", "Call started"),
    EventType.PARTICIPANT_JOINED: (":bust_in_silhouette:", "Participant joined"),
    EventType.PARTICIPANT_LEFT: (":wave:", "Participant left"),
    EventType.COMPLETED: (":white_check_mark:", "Call completed"),
    EventType.MISSED: (":x:", "Missed call"),
    EventType.FAILED: (":warning:", "Call failed"),
    EventType.RECORDING_READY: (":studio_microphone:", "Recording ready"),
    EventType.TRANSCRIPT_READY: (":page_facing_up:", "Transcript ready"),
    EventType.SUMMARY_READY: (":memo:", "Summary ready"),
    EventType.VOICEMAIL_READY: (":mailbox_with_mail:", "Voicemail"),
}


def escape(value: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_url(url: str) -> str | None:
    """`url` ready for a `<url|label>` link, or None when it is not an http(s) URL with a
    host (a payload's `javascript:` or control characters are no link to show).

    `|` is percent-encoded like `<` and `>`: Slack ends a link's URL at the first `|`, so
    one in the URL would make the rest of it the link's label."""
    url = url.strip()
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return escape(quote(url, safe=_URL_SAFE))


def format_duration(seconds: Any) -> str | None:
    """`252` → "4m 12s", `3725` → "1h 2m 5s", `9` → "9s"; None when not a number."""
    value = number(seconds)
    if value is None or value < 0:
        return None
    total = round(value)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def headline(record: Mapping[str, Any], event_type: EventType) -> str:
    """The first section's mrkdwn: "<emoji> *<what>* · <who> → <whom>"."""
    emoji, title = _HEADLINES[event_type]
    if record.get("media") == "video":
        title = f"{title} (video)"
    return f"{emoji} *{title}* · {_parties(record, markup=True)}"


def build_message(
    record: Mapping[str, Any], event_type: EventType, *, custom_text: str | None = None
) -> dict[str, Any]:
    """`{"text": ..., "blocks": [...]}` for chat.postMessage or an incoming webhook.

    `custom_text` (a rendered template) replaces both the headline and the fallback text.
    """
    first = custom_text if custom_text is not None else headline(record, event_type)
    blocks: list[dict[str, Any]] = [_section(first)]
    fields = _fields(record)
    if fields:
        blocks.append({"type": "section", "fields": [_mrkdwn(f) for f in fields]})
    links = _links(record)
    if links:
        blocks.append(_section("\n".join(links)))
    summary = summary_text(record.get("summary"))
    if summary:
        blocks.append(_section(f"*Summary*\n{escape(summary)}"))
    blocks.append({"type": "context", "elements": [_mrkdwn(_context(record))]})
    fallback = custom_text if custom_text is not None else fallback_text(record, event_type)
    return {"text": fallback, "blocks": blocks}


def fallback_text(record: Mapping[str, Any], event_type: EventType) -> str:
    """One plain line for notifications and clients that do not render blocks."""
    _, title = _HEADLINES[event_type]
    parts = [f"{title}: {_parties(record, markup=False)}"]
    direction = text(record.get("direction"))
    if direction:
        parts.append(direction)
    parts.append(_status_label(record.get("status")).lower())
    duration = format_duration(record.get("duration_s"))
    if duration:
        parts.append(duration)
    return escape(" · ".join(parts))


def summary_text(summary: Any) -> str | None:
    """A readable summary from the vendors' shapes: a string, a list of strings, or an
    object holding one of those under `summary` / `text` / `content`."""
    if isinstance(summary, str):
        return summary.strip() or None
    if isinstance(summary, list):
        lines = [f"• {item.strip()}" for item in summary if isinstance(item, str) and item.strip()]
        return "\n".join(lines) or None
    if isinstance(summary, Mapping):
        for key in ("summary", "text", "content"):
            found = summary_text(summary.get(key))
            if found:
                return found
    return None


def _parties(record: Mapping[str, Any], *, markup: bool) -> str:
    caller = text(record.get("initiator")) or "unknown caller"
    callee = text(record.get("receiver")) or "unknown"
    if markup:
        return f"*{escape(caller)}* → *{escape(callee)}*"
    return f"{caller} → {callee}"


def _status_label(status: Any) -> str:
    return (text(status) or "unknown").replace("_", " ").capitalize()


def _fields(record: Mapping[str, Any]) -> list[str]:
    fields = [f"*Status*\n{escape(_status_label(record.get('status')))}"]
    direction = text(record.get("direction"))
    if direction:
        fields.append(f"*Direction*\n{escape(direction.capitalize())}")
    duration = format_duration(record.get("duration_s"))
    if duration:
        fields.append(f"*Duration*\n{duration}")
    started = record.get("started_at") or record.get("created_at")
    moment = timestamp(started)
    if moment is not None:
        # Slack shows <!date^...> in each reader's own time zone; the text after | is
        # what clients that cannot do that show instead.
        shown = escape(str(started))
        fields.append(f"*Started*\n<!date^{int(moment)}^{{date_short_pretty}} {{time}}|{shown}>")
    return fields


def _links(record: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    recordings = [
        (url, recording)
        for recording in record.get("recordings") or ()
        if (url := _link_of(dig(recording, "url")))
    ]
    for index, (url, recording) in enumerate(recordings[:_MAX_RECORDINGS]):
        label = "Recording" if len(recordings) == 1 else f"Recording {index + 1}"
        duration = format_duration(dig(recording, "duration_s"))
        suffix = f" ({duration})" if duration else ""
        lines.append(f":studio_microphone: <{url}|{label}>{suffix}")
    voicemail = record.get("voicemail")
    voicemail_url = _link_of(dig(voicemail, "url")) or _link_of(dig(voicemail, "recordingUrl"))
    if voicemail_url:
        lines.append(f":mailbox_with_mail: <{voicemail_url}|Voicemail>")
    return lines


def _link_of(value: Any) -> str | None:
    url = text(value) if isinstance(value, str) else None
    return link_url(url) if url else None


def _context(record: Mapping[str, Any]) -> str:
    vendor = escape(text(record.get("vendor")) or "unknown vendor")
    source = escape(text(record.get("source")) or "?")
    call_id = escape(text(record.get("call_id")) or "?")
    return f"{vendor} · source `{source}` · call `{call_id}`"


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_truncate(mrkdwn))}


def _mrkdwn(value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": value}


def _truncate(value: str) -> str:
    return value if len(value) <= _SECTION_MAX else value[: _SECTION_MAX - 1] + "…"
