"""The async engine for a database sink: driver defaults, timeouts, SQLite's WAL and locking."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
#: pooled connections per worker process, and how many more it may open at a peak
POOL_SIZE = 20
POOL_OVERFLOW = 20


def create_engine(url: URL, timeout_s: float) -> AsyncEngine:
    """An engine for `url` (already naming its async driver) whose connects and statements
    give up after `timeout_s`. Raises what SQLAlchemy raises for a driver it cannot load."""
    options: dict[str, Any] = {
        "json_serializer": _dumps,
        "json_deserializer": orjson.loads,
        # a connection the server dropped (restart, failover) is replaced, not reused
        "pool_pre_ping": True,
    }
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": timeout_s}
        engine = create_async_engine(url, **options)
        _take_over_sqlite_transactions(engine, busy_timeout_ms=int(timeout_s * 1000))
        return engine
    if url.get_driver_name() == "asyncpg":
        options["connect_args"] = {"timeout": timeout_s, "command_timeout": timeout_s}
    # as many pooled connections as a worker process writes at once (its threads, each
    # delivery's sinks concurrently): past the pool, SQLAlchemy opens and closes a
    # connection per write, a connect and an authentication each time
    options |= {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    return create_async_engine(url, **options)


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL (relative to the working directory when the URL
    is `sqlite:///relative`), else None."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def use_wal(path: Path, timeout_s: float) -> None:
    """Switch the SQLite database at `path` (created if missing) to write-ahead logging, so
    readers never block the writer. Blocking: run it in a thread.

    The mode is stored in the file, so this runs once per start. SQLite refuses the switch
    at once, without calling the busy handler, while another connection holds the write
    lock (another process migrating), hence the retries until `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        connection = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY or time.monotonic() >= deadline:
                raise
        finally:
            connection.close()
        time.sleep(0.05)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _take_over_sqlite_transactions(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """A real `BEGIN IMMEDIATE` for every transaction, and a busy timeout.

    Python's sqlite3 does not begin a transaction before DDL, so two processes migrating at
    once could each create tables; and a deferred transaction that later needs the write
    lock can fail at once with "database is locked". Taking the write lock at BEGIN (and
    waiting up to the busy timeout for it) avoids both.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
