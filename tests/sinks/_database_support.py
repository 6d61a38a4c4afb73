"""Helpers for the database sink tests: records at given revisions, reading tables back,
a TCP proxy that lets a test take PostgreSQL away and bring it back, and (run as
`python -m tests.sinks._database_support URL START_AT`) one process of a migration race."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio
from sqlalchemy import Table, select

from callhook.events import EventType
from callhook.record import CallRecord, CallStatus, LastEvent, Participant, Recording
from callhook.sinks.base import SinkResources, Trigger
from callhook.sinks.database import DatabaseSink, DatabaseSinkConfig
from callhook.sinks.database.config import engine_url
from callhook.sinks.database.engine import create_engine
from callhook.sinks.database.migrate import ADVISORY_LOCK_KEY

#: one call's states as its events arrive: (revision, status, event type)
LIFECYCLE = (
    (1, CallStatus.RINGING, EventType.RINGING),
    (2, CallStatus.IN_PROGRESS, EventType.STARTED),
    (3, CallStatus.COMPLETED, EventType.COMPLETED),
)


def call_record(
    revision: int, status: CallStatus, event_type: EventType, call_id: str = "AC1"
) -> dict[str, Any]:
    """The wire shape of call `call_id` as it stands after `revision` merges."""
    answered = status != CallStatus.RINGING
    ended = status == CallStatus.COMPLETED
    return CallRecord(
        source="quo",
        vendor="openphone",
        call_id=call_id,
        status=status,
        vendor_status=str(status),
        direction="inbound",
        media="audio",
        initiator="+15555550100",
        receiver="+15555550101",
        participants=(Participant(id="+15555550100"), Participant(id="+15555550101")),
        created_at="2024-05-01T09:59:58.000Z",
        started_at="2024-05-01T11:00:00+01:00" if answered else None,
        answered_at="2024-05-01T10:00:01.500Z" if answered else None,
        ended_at="2024-05-01T10:00:56.000Z" if ended else None,
        duration_s=55.0 if ended else None,
        recordings=(Recording(id="RE1", url="https://files.example/RE1.mp3"),) if ended else (),
        summary={"text": "Asked about the invoice."} if ended else None,
        last_event=LastEvent(
            type=event_type,
            key=f"{call_id}:{event_type}",
            received_at=f"2024-05-01T10:00:{revision:02d}.250Z",
        ),
        vendor_data={"call": {"id": call_id, "revision": revision}},
        enrichment="api",
        revision=revision,
        updated_at=f"2024-05-01T10:01:{revision:02d}.000Z",
    ).to_json_dict()


def trigger_for(record: dict[str, Any]) -> Trigger:
    """The trigger that produced `record`: its last event, with a raw payload."""
    last = record["last_event"]
    return Trigger(
        event_key=last["key"],
        event_type=EventType(last["type"]),
        received_at=f"2024-05-01T10:00:{record['revision']:02d}.250Z",
        payload={"type": last["type"], "data": {"object": {"id": record["call_id"]}}},
    )


@contextlib.asynccontextmanager
async def started_sink(
    url: str, resources: SinkResources, *, timeout_s: float = 10.0
) -> AsyncIterator[DatabaseSink]:
    sink = DatabaseSink(
        DatabaseSinkConfig(name="warehouse", url=url, timeout_s=timeout_s), resources
    )
    await sink.start()
    try:
        yield sink
    finally:
        await sink.close()


async def fetch(url: str, table: Table, *order_by: str) -> list[dict[str, Any]]:
    """Every row of `table`, read through a separate engine."""
    engine = create_engine(engine_url(url), timeout_s=5)
    try:
        async with engine.connect() as connection:
            query = select(table).order_by(*(table.c[name] for name in order_by))
            result = await connection.execute(query)
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def holding_the_migration_lock(url: str) -> AsyncIterator[None]:
    """Hold, from outside Callhook, the lock a migrating sink takes: PostgreSQL's advisory
    lock, or SQLite's write lock."""
    parsed = engine_url(url)
    if parsed.get_backend_name() == "postgresql":
        connection = await asyncpg.connect(url)
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
            yield
        finally:
            await connection.close()
        return
    assert parsed.database is not None
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    lite = sqlite3.connect(parsed.database, isolation_level=None)
    try:
        lite.execute("PRAGMA journal_mode = WAL")  # as a migrating sink would have
        lite.execute("BEGIN IMMEDIATE")
        yield
        lite.execute("ROLLBACK")
    finally:
        lite.close()


class TcpProxy:
    """Forwards a loopback port to `upstream` while open; `close()` drops every connection
    and stops listening, as a database that went away would."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()
        self._tasks.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.update((writer, up_writer))
        for source, target in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, target))
            self._tasks.add(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                target.write(chunk)
                await target.drain()
        except OSError:
            pass
        finally:
            target.close()


async def _start_at(url: str, start_at: float) -> None:
    """Start (so migrate) a database sink on `url` at the wall-clock time `start_at`."""
    async with httpx.AsyncClient() as http:
        client = redis.asyncio.Redis()
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            async with started_sink(url, SinkResources(http, client, "test")):
                pass
        finally:
            await client.aclose()


if __name__ == "__main__":
    # one of several processes racing to migrate the same database
    asyncio.run(_start_at(sys.argv[1], float(sys.argv[2])))
