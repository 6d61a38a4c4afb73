"""The `database` sink: call records in PostgreSQL or SQLite (see docs/sinks/database.md)."""

from __future__ import annotations

from callhook.sinks.database.config import DatabaseSinkConfig
from callhook.sinks.database.sink import DatabaseSink

__all__ = ["DatabaseSink", "DatabaseSinkConfig"]
