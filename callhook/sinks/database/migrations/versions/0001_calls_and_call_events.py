"""Create `calls` (one row per call, newest state) and `call_events` (audit log).

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("vendor", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("vendor_status", sa.Text()),
        sa.Column("direction", sa.Text()),
        sa.Column("media", sa.Text()),
        sa.Column("initiator", sa.Text()),
        sa.Column("receiver", sa.Text()),
        sa.Column("created_at", _timestamp()),
        sa.Column("started_at", _timestamp()),
        sa.Column("answered_at", _timestamp()),
        sa.Column("ended_at", _timestamp()),
        sa.Column("duration_s", sa.Float()),
        sa.Column("has_recording", sa.Boolean(), nullable=False),
        sa.Column("enrichment", sa.Text()),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("last_event_type", sa.Text()),
        sa.Column("last_event_key", sa.Text()),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("participants", _json(), nullable=False),
        sa.Column("recordings", _json(), nullable=False),
        sa.Column("transcript", _json()),
        sa.Column("summary", _json()),
        sa.Column("voicemail", _json()),
        sa.Column("vendor_data", _json(), nullable=False),
        sa.Column("record", _json(), nullable=False),
        sa.PrimaryKeyConstraint("source", "call_id", name="pk_calls"),
    )
    op.create_index("ix_calls_created_at", "calls", ["created_at"])
    op.create_index("ix_calls_status", "calls", ["status"])
    op.create_index("ix_calls_updated_at", "calls", ["updated_at"])
    op.create_table(
        "call_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("event_key", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("received_at", _timestamp(), nullable=False),
        sa.Column("payload", _json()),
        sa.PrimaryKeyConstraint("id", name="pk_call_events"),
        sa.UniqueConstraint("source", "event_key", name="uq_call_events_source_event_key"),
    )
    op.create_index("ix_call_events_source_call_id", "call_events", ["source", "call_id"])


def downgrade() -> None:
    op.drop_table("call_events")
    op.drop_table("calls")
