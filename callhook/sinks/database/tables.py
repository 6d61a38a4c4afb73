"""The `calls` and `call_events` tables (SQLAlchemy Core), as the migrations create them.

`calls` holds one row per call with the record's newest state: a column per scalar field,
JSON for the nested ones, and the whole record in `record`. `call_events` is the audit log,
one row per (source, event_key) that reached this sink.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine


class UtcDateTime(TypeDecorator[datetime]):
    """`TIMESTAMP WITH TIME ZONE`, stored in UTC and read back timezone-aware on every
    dialect (SQLite has no time zones: without this it would hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give timestamps a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def json_type() -> TypeEngine[Any]:
    """JSON (JSONB on PostgreSQL); Python None is stored as SQL NULL, not JSON `null`."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("source", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("vendor", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("vendor_status", Text),
    Column("direction", Text),
    Column("media", Text),
    Column("initiator", Text),
    Column("receiver", Text),
    Column("created_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("answered_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("duration_s", Float),
    Column("has_recording", Boolean, nullable=False),
    Column("enrichment", Text),
    Column("revision", BigInteger, nullable=False),
    Column("last_event_type", Text),
    Column("last_event_key", Text),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("participants", json_type(), nullable=False),
    Column("recordings", json_type(), nullable=False),
    Column("transcript", json_type()),
    Column("summary", json_type()),
    Column("voicemail", json_type()),
    Column("vendor_data", json_type(), nullable=False),
    Column("record", json_type(), nullable=False),
    PrimaryKeyConstraint("source", "call_id", name="pk_calls"),
    Index("ix_calls_created_at", "created_at"),
    Index("ix_calls_status", "status"),
    Index("ix_calls_updated_at", "updated_at"),
)

call_events = Table(
    "call_events",
    metadata,
    # INTEGER on SQLite: only an INTEGER PRIMARY KEY autoincrements there
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    ),
    Column("source", Text, nullable=False),
    Column("event_key", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("payload", json_type()),
    PrimaryKeyConstraint("id", name="pk_call_events"),
    UniqueConstraint("source", "event_key", name="uq_call_events_source_event_key"),
    Index("ix_call_events_source_call_id", "source", "call_id"),
)
