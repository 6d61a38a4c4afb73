"""database: the newest state of every call in `calls`, every trigger in `call_events`."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any, ClassVar

from alembic.util import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.errors import ConfigError, RetryableError
from callhook.sinks.base import Sink, SinkConfig, SinkResources, Trigger, WriteResult
from callhook.sinks.database.config import DatabaseSinkConfig
from callhook.sinks.database.engine import create_engine, sqlite_path, use_wal
from callhook.sinks.database.failures import classify
from callhook.sinks.database.migrate import migrate
from callhook.sinks.database.rows import call_row, event_row
from callhook.sinks.database.statements import insert_event, upsert_call

log = logging.getLogger("callhook.sinks.database")

#: what a database call may raise that `classify` knows how to read
_DATABASE_ERRORS = (OSError, sqlite3.Error, sa_exc.SQLAlchemyError)


class DatabaseSink(Sink[DatabaseSinkConfig]):
    """Upserts the call row (never moving it back to a lower revision) and logs the trigger,
    both in one transaction; replaying a delivery changes nothing."""

    type_name: ClassVar[str] = "database"
    config_model: ClassVar[type[SinkConfig]] = DatabaseSinkConfig
    coalesces: ClassVar[bool] = True

    def __init__(self, config: DatabaseSinkConfig, resources: SinkResources) -> None:
        super().__init__(config, resources)
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        """Create the engine and migrate the schema to the newest revision.

        Raises ConfigError when the database cannot be used as configured (driver, missing
        database, credentials, permissions) and RetryableError when it is unreachable.
        """
        url = self.config.sqlalchemy_url
        label = f"sink {self.config.name!r} ({self.config.display_url})"
        path = sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"{label}: cannot create {path.parent} ({exc.strerror})"
                ) from None
        try:
            engine = create_engine(url, self.config.timeout_s)
        except ImportError:
            raise ConfigError(f"{label}: the driver {url.drivername!r} is not installed") from None
        except sa_exc.ArgumentError:  # NoSuchModuleError: no such dialect+driver pair
            raise ConfigError(f"{label}: unknown driver {url.drivername!r}") from None
        except sa_exc.InvalidRequestError:
            raise ConfigError(
                f"{label}: {url.drivername!r} is not an async driver"
                " (use asyncpg or psycopg for PostgreSQL, aiosqlite for SQLite)"
            ) from None
        try:
            if path is not None:
                await asyncio.to_thread(use_wal, path, self.config.timeout_s)
            await migrate(engine)
        except (*_DATABASE_ERRORS, CommandError) as exc:
            await engine.dispose()
            if isinstance(exc, CommandError):
                raise ConfigError(f"{label}: cannot migrate the schema ({exc})") from None
            failure = classify(exc, self.config.name)
            if isinstance(failure, RetryableError):
                raise failure from exc
            raise ConfigError(f"{label}: {failure.reason}") from None
        except BaseException:  # cancelled by the start's time budget
            await engine.dispose()
            raise
        self._engine = engine
        log.info("database sink %s ready at %s", self.config.name, self.config.display_url)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def write(self, record: dict[str, Any], trigger: Trigger) -> WriteResult:
        """Upsert `calls` (unless a newer delivery of the call will) and insert into
        `call_events`, in one transaction."""
        if self._engine is None:
            raise RuntimeError(f"database sink {self.config.name!r} written before start()")
        engine = self._engine
        now = datetime.now(UTC)
        dialect = engine.dialect.name
        call = call_row(record, written_at=now)
        audit = event_row(record, trigger, written_at=now)
        try:
            async with asyncio.timeout(self.config.timeout_s), engine.begin() as connection:
                # the call's newer delivery upserts its row; every event keeps its own row
                if not trigger.superseded:
                    await connection.execute(upsert_call(dialect, call), call)
                await connection.execute(insert_event(dialect), audit)
        except _DATABASE_ERRORS as exc:
            raise classify(exc, self.config.name) from exc
        return WriteResult.WRITTEN
