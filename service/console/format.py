"""How the console's templates show values: times, durations, states (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2 import Environment

#: a sink's or a stage's state → (mark, css class, words)
STATES = {
    "ok": ("✓", "ok", "delivered"),
    "skipped": ("=", "muted", "already delivered (nothing sent again)"),
    "superseded": ("\u00bb", "muted", "left to the call's newer delivery, which writes its state"),
    "pending": ("…", "info", "waiting to be delivered"),
    "retrying": ("↻", "warn", "failed, retry scheduled"),
    "retry": ("↻", "warn", "failed, retry scheduled"),
    "dead_letter": ("✗", "bad", "dead-lettered"),
    "payload_only": ("~", "warn", "recorded from the webhook alone"),
    "not_routed": ("\u2013", "faint", "not routed to this sink"),
}


def state_mark(state: str | None) -> tuple[str, str, str]:
    return STATES.get(state or "", ("?", "faint", state or "unknown"))


def when(value: Any) -> str:
    """An ISO-8601 time or epoch milliseconds as `2026-12-07 14:02:11Z`."""
    if value is None or value == "":
        return "—"
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, UTC)
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def clock(value: Any) -> str:
    """Only the time of day, `14:02:11`, for timelines within one call."""
    shown = when(value)
    return shown[11:19] if len(shown) >= 19 else shown


def seconds(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        total = float(value)
    except (TypeError, ValueError):
        return str(value)
    minutes, rest = divmod(round(total), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{total:.0f}s"


def milliseconds(value: Any) -> str:
    if value is None:
        return "—"
    number = float(value)
    return f"{number / 1000:.2f} s" if number >= 1000 else f"{number:.0f} ms"


def percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f} %"


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def install(environment: Environment) -> None:
    environment.filters.update(
        when=when, clock=clock, seconds=seconds, ms=milliseconds, percent=percent, json=pretty_json
    )
    environment.globals["state_mark"] = state_mark
