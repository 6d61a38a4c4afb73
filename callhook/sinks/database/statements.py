"""The two idempotent statements a write runs, in the dialect's own INSERT .. ON CONFLICT."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from callhook.sinks.database.tables import call_events, calls

_KEY = ("source", "call_id")


def upsert_call(dialect: str, row: dict[str, Any]) -> Insert:
    """Insert the call, or update it unless the stored row has a higher revision.

    Deliveries of one call can arrive in any order; `revision` grows with every merge, so
    the row only ever moves forward. Replaying the same revision rewrites identical values.
    """
    if dialect == "postgresql":
        pg = postgresql.insert(calls).values(row)
        return pg.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={name: pg.excluded[name] for name in row if name not in _KEY},
            where=calls.c.revision <= pg.excluded.revision,
        )
    if dialect == "sqlite":
        lite = sqlite.insert(calls).values(row)
        return lite.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={name: lite.excluded[name] for name in row if name not in _KEY},
            where=calls.c.revision <= lite.excluded.revision,
        )
    raise ValueError(f"unsupported dialect {dialect!r}")


def insert_event(dialect: str, row: dict[str, Any]) -> Insert:
    """Insert the audit row; a (source, event_key) already logged is left as it is."""
    if dialect == "postgresql":
        return (
            postgresql.insert(call_events)
            .values(row)
            .on_conflict_do_nothing(index_elements=["source", "event_key"])
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(call_events)
            .values(row)
            .on_conflict_do_nothing(index_elements=["source", "event_key"])
        )
    raise ValueError(f"unsupported dialect {dialect!r}")
