"""The two idempotent statements a write runs, in the dialect's own INSERT .. ON CONFLICT.

Each is built once per dialect (and set of columns) and executed with the row as its
bound parameters, so SQLAlchemy compiles it once and finds it in its statement cache on
every write after, instead of building and coercing a new statement per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from callhook.sinks.database.tables import call_events, calls

_KEY = ("source", "call_id")


def _insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported dialect {dialect!r}")


def upsert_call(dialect: str, columns: Iterable[str]) -> Insert:
    """Insert the call, or update it unless the stored row has a higher revision.

    Deliveries of one call can arrive in any order; `revision` grows with every merge, so
    the row only ever moves forward. Replaying the same revision rewrites identical values.
    Execute it with a `calls` row (`rows.call_row`) whose keys are `columns`.
    """
    return _upsert_call(dialect, tuple(columns))


@cache
def _upsert_call(dialect: str, columns: tuple[str, ...]) -> Insert:
    insert = _insert(dialect, calls)
    return insert.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={name: insert.excluded[name] for name in columns if name not in _KEY},
        where=calls.c.revision <= insert.excluded.revision,
    )


@cache
def insert_event(dialect: str) -> Insert:
    """Insert the audit row; a (source, event_key) already logged is left as it is.
    Execute it with a `call_events` row (`rows.event_row`)."""
    return _insert(dialect, call_events).on_conflict_do_nothing(
        index_elements=["source", "event_key"]
    )
