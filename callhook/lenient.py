"""Lenient readers for vendor payloads: numbers as strings, unix seconds or milliseconds,
ISO strings with or without zone. Each returns None for what it cannot read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callhook.record import iso_z

#: the last second `datetime` can show (9999-12-31T23:59:59Z): later "times" are garbage
MAX_TIMESTAMP = 253402300799.0


def dig(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where any step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def text(value: Any) -> str | None:
    """A non-empty string (numbers are turned into strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def number(value: Any) -> float | None:
    """A float from an int, float or numeric string (`"21.433000"`), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def boolean(value: Any) -> bool | None:
    """True/False from a bool, "true"/"false", 1/0, else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return None


def iso_utc(value: Any) -> str | None:
    """An ISO-8601 UTC timestamp (`2024-01-02T03:04:05.000Z`) from unix seconds or
    milliseconds (int, float or numeric string) or an ISO string; else None."""
    moment = timestamp(value)
    if moment is None:
        return None
    return iso_z(moment)


def timestamp(value: Any) -> float | None:
    """Unix seconds from unix seconds/milliseconds or an ISO string; else None.

    Only moments after 1970 and up to the year 9999 count: NaN, infinities and numbers
    past `datetime`'s range are not times, and would break whatever formats them later.
    """
    seconds = number(value)
    if seconds is not None:
        if not math.isfinite(seconds):
            return None
        if seconds > 100_000_000_000:
            seconds /= 1000.0
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    else:
        return None
    return seconds if 0 < seconds <= MAX_TIMESTAMP else None


def hms_seconds(value: Any) -> float | None:
    """Seconds from "HH:MM:SS" (or "MM:SS"), else None."""
    if not isinstance(value, str) or ":" not in value:
        return None
    try:
        parts = [float(p) for p in value.strip().split(":")]
    except ValueError:
        return None
    total = 0.0
    for part in parts:
        total = total * 60 + part
    return total
