"""How Diga's API lists things, for the simulator: `limit`, `order`, `page` or one cursor
(`after` / `before`, never both), List Calls' filters, and the page envelope
`{data, has_more, first_id, last_id, current_page, total_pages}`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from callhook.lenient import dig, text, timestamp

Keyed = Sequence[tuple[tuple[float, str], Mapping[str, Any]]]

#: List Calls' equality filters: query parameter → where the call object holds it
_CALL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "status": ("status",),
    "type": ("type",),
    "agent_id": ("agent_id",),
    "contact_id": ("contact", "id"),
    "phone_id": ("phone_register_id",),
}


class Invalid(Exception):
    """A query the API refuses with 422."""


def sort_key(created: Any, tie: Any) -> tuple[float, str]:
    """Listing order: creation time, then a tie-breaker (id, or position when an int)."""
    return (timestamp(created) or 0.0, f"{tie:0>12}" if isinstance(tie, int) else str(tie))


def call_filter(query: Mapping[str, str]) -> Callable[[Mapping[str, Any]], bool]:
    """List Calls' filters; the created-date window is inclusive at both ends."""
    lower, upper = _date(query, "start_created_date"), _date(query, "end_created_date")

    def keep(call: Mapping[str, Any]) -> bool:
        for param, path in _CALL_FIELDS.items():
            if param in query and text(dig(call, *path)) != query[param]:
                return False
        created = timestamp(call.get("created_date")) or 0.0
        if lower is not None and created < lower:
            return False
        return upper is None or created <= upper

    return keep


def page(
    query: Mapping[str, str],
    keyed: Keyed,
    id_field: str,
    *,
    default_limit: int,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """One page of `keyed` items (those `keep` accepts), as the API answers it.

    A cursor is placed in the order of every item, filtered or not, so items that appear
    while a client pages land where they belong and never shift the pages still to read.
    """
    limit = _int(query, "limit", default_limit, 1, 1000)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise Invalid("order must be asc or desc")
    after, before = query.get("after"), query.get("before")
    if after is not None and before is not None:
        raise Invalid("after and before cannot be used together")
    ordered = [item for _, item in sorted(keyed, key=lambda pair: pair[0], reverse=order == "desc")]
    kept = [(at, item) for at, item in enumerate(ordered) if keep is None or keep(item)]
    current: int | None = None
    if after is None and before is None:
        current = _int(query, "page", 1, 1, 1_000_000)
        chunk = [item for _, item in kept[(current - 1) * limit : current * limit]]
        has_more = current * limit < len(kept)
    else:
        cursor_id = after or before
        cursor = next(
            (at for at, item in enumerate(ordered) if item.get(id_field) == cursor_id), None
        )
        if cursor is None:
            raise Invalid(f"unknown cursor {cursor_id}")
        if after is not None:
            rest = [item for at, item in kept if at > cursor]
            chunk = rest[:limit]
        else:
            rest = [item for at, item in kept if at < cursor]
            chunk = rest[-limit:]
        has_more = len(rest) > limit
    return {
        "data": chunk,
        "has_more": has_more,
        "first_id": chunk[0].get(id_field) if chunk else None,
        "last_id": chunk[-1].get(id_field) if chunk else None,
        "current_page": current,
        "total_pages": max(1, -(-len(kept) // limit)),
    }


def _date(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} is not a date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Invalid(f"{name} must be an integer within {low}..{high}")
    return int(raw)
