"""The database sink against real PostgreSQL and SQLite: migrations, convergence of a call's
events in any order, idempotent replays, and how failures are classified."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis.asyncio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection

from callhook.errors import ConfigError, PermanentError, RetryableError
from callhook.events import EventType
from callhook.record import CallStatus
from callhook.sinks.base import SinkResources
from callhook.sinks.database import DatabaseSink, DatabaseSinkConfig
from callhook.sinks.database.config import engine_url
from callhook.sinks.database.engine import create_engine
from callhook.sinks.database.migrate import VERSION_TABLE, head_revision
from callhook.sinks.database.tables import call_events, calls, metadata
from tests.servers import free_port
from tests.sinks._database_support import (
    LIFECYCLE,
    TcpProxy,
    call_record,
    fetch,
    holding_the_migration_lock,
    started_sink,
    trigger_for,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind; SQLite's directory does not exist yet."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_database")
        return url
    return f"sqlite:///{tmp_path}/data/callhook.db"


@pytest.fixture
async def resources(redis_async: redis.asyncio.Redis) -> AsyncIterator[SinkResources]:
    async with httpx.AsyncClient() as http:
        yield SinkResources(http, redis_async, "test")


def schema_drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    drift: list[object] = compare_metadata(context, metadata)
    return drift


async def test_start_migrates_once_and_records_the_version(
    database_url: str, resources: SinkResources
) -> None:
    for _ in range(2):
        async with started_sink(database_url, resources):
            pass
    engine = create_engine(engine_url(database_url), timeout_s=5)
    try:
        async with engine.connect() as connection:
            result = await connection.exec_driver_sql(
                "SELECT version_num FROM callhook_alembic_version"
            )
            versions = [tuple(row) for row in result.all()]
            drift = await connection.run_sync(schema_drift)
    finally:
        await engine.dispose()
    assert versions == [(head_revision(),)]
    assert drift == []


async def test_start_waits_for_a_migration_in_progress(
    database_url: str, resources: SinkResources
) -> None:
    sink = DatabaseSink(DatabaseSinkConfig(name="warehouse", url=database_url), resources)
    async with holding_the_migration_lock(database_url):
        starting = asyncio.create_task(sink.start())
        done, _ = await asyncio.wait({starting}, timeout=0.3)
        assert not done
    await starting
    await sink.close()
    assert await fetch(database_url, calls) == []


async def test_processes_starting_together_all_succeed(database_url: str) -> None:
    start_at = str(time.time() + 1.5)  # after every process has imported Callhook
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.sinks._database_support",
            database_url,
            start_at,
            cwd=REPO,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outcomes = [await process.communicate() for process in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err for _, err in outcomes]
    assert await fetch(database_url, calls) == []


async def test_sinks_on_different_databases_start_together(
    postgres_database: str, tmp_path: Path, resources: SinkResources
) -> None:
    urls = [postgres_database, *(f"sqlite:///{tmp_path}/{n}.db" for n in range(3))]
    sinks = [
        DatabaseSink(DatabaseSinkConfig(name=f"db{n}", url=u), resources)
        for n, u in enumerate(urls)
    ]
    try:
        await asyncio.gather(*(sink.start() for sink in sinks))
    finally:
        await asyncio.gather(*(sink.close() for sink in sinks))
    for url in urls:
        assert await fetch(url, call_events) == []


async def test_events_in_any_order_leave_the_newest_state(
    database_url: str, resources: SinkResources
) -> None:
    orders = list(itertools.permutations(LIFECYCLE))
    async with started_sink(database_url, resources) as sink:
        for number, order in enumerate(orders):
            for revision, status, event_type in order:
                record = call_record(revision, status, event_type, call_id=f"AC{number}")
                await sink.write(record, trigger_for(record))
    rows = await fetch(database_url, calls, "call_id")
    assert [row["call_id"] for row in rows] == [f"AC{n}" for n in range(len(orders))]
    for row in rows:
        newest = call_record(3, CallStatus.COMPLETED, EventType.COMPLETED, call_id=row["call_id"])
        assert row["record"] == newest
        assert (row["revision"], row["status"], row["has_recording"]) == (3, "completed", True)
    events = await fetch(database_url, call_events, "call_id", "event_key")
    assert len(events) == 3 * len(orders)


async def test_concurrent_writes_converge_on_the_highest_revision(
    database_url: str, resources: SinkResources
) -> None:
    records = [call_record(n, CallStatus.IN_PROGRESS, EventType.STARTED) for n in range(1, 9)]
    records[3], records[7] = records[7], records[3]
    async with started_sink(database_url, resources) as sink:
        await asyncio.gather(*(sink.write(r, trigger_for(r)) for r in records))
    [row] = await fetch(database_url, calls)
    assert row["revision"] == 8
    assert row["record"]["vendor_data"] == {"call": {"id": "AC1", "revision": 8}}


async def test_the_same_write_twice_changes_nothing(
    database_url: str, resources: SinkResources
) -> None:
    record = call_record(2, CallStatus.IN_PROGRESS, EventType.STARTED)
    async with started_sink(database_url, resources) as sink:
        await sink.write(record, trigger_for(record))
        first = (await fetch(database_url, calls), await fetch(database_url, call_events))
        await sink.write(record, trigger_for(record))
    assert (await fetch(database_url, calls), await fetch(database_url, call_events)) == first
    assert (len(first[0]), len(first[1])) == (1, 1)


async def test_a_lower_revision_after_a_higher_one_is_ignored_but_logged(
    database_url: str, resources: SinkResources
) -> None:
    newer = call_record(3, CallStatus.COMPLETED, EventType.COMPLETED)
    older = call_record(1, CallStatus.RINGING, EventType.RINGING)
    async with started_sink(database_url, resources) as sink:
        await sink.write(newer, trigger_for(newer))
        await sink.write(older, trigger_for(older))
    [row] = await fetch(database_url, calls)
    assert (row["revision"], row["status"], row["record"]) == (3, "completed", newer)
    events = await fetch(database_url, call_events, "id")
    assert [(e["event_key"], e["type"]) for e in events] == [
        ("AC1:call.completed", "call.completed"),
        ("AC1:call.ringing", "call.ringing"),
    ]


async def test_columns_carry_the_record_fields(database_url: str, resources: SinkResources) -> None:
    record = call_record(3, CallStatus.COMPLETED, EventType.COMPLETED)
    async with started_sink(database_url, resources) as sink:
        await sink.write(record, trigger_for(record))
    [row] = await fetch(database_url, calls)
    utc = UTC
    assert row == {
        "source": "quo",
        "call_id": "AC1",
        "vendor": "openphone",
        "status": "completed",
        "vendor_status": "completed",
        "direction": "inbound",
        "media": "audio",
        "initiator": "+15555550100",
        "receiver": "+15555550101",
        "created_at": datetime(2024, 5, 1, 9, 59, 58, tzinfo=utc),
        "started_at": datetime(2024, 5, 1, 10, 0, 0, tzinfo=utc),
        "answered_at": datetime(2024, 5, 1, 10, 0, 1, 500000, tzinfo=utc),
        "ended_at": datetime(2024, 5, 1, 10, 0, 56, tzinfo=utc),
        "duration_s": 55.0,
        "has_recording": True,
        "enrichment": "api",
        "revision": 3,
        "last_event_type": "call.completed",
        "last_event_key": "AC1:call.completed",
        "updated_at": datetime(2024, 5, 1, 10, 1, 3, tzinfo=utc),
        "participants": record["participants"],
        "recordings": record["recordings"],
        "transcript": None,
        "summary": {"text": "Asked about the invoice."},
        "voicemail": None,
        "vendor_data": {"call": {"id": "AC1", "revision": 3}},
        "record": record,
    }
    [event] = await fetch(database_url, call_events)
    assert event == {
        "id": 1,
        "source": "quo",
        "event_key": "AC1:call.completed",
        "call_id": "AC1",
        "type": "call.completed",
        "received_at": datetime(2024, 5, 1, 10, 0, 3, 250000, tzinfo=utc),
        "payload": trigger_for(record).payload,
    }


async def test_a_dropped_table_is_a_permanent_error(
    database_url: str, resources: SinkResources
) -> None:
    record = call_record(1, CallStatus.RINGING, EventType.RINGING)
    async with started_sink(database_url, resources) as sink:
        engine = create_engine(engine_url(database_url), timeout_s=5)
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE call_events")
        await engine.dispose()
        with pytest.raises(PermanentError, match="call_events"):
            await sink.write(record, trigger_for(record))
    assert await fetch(database_url, calls) == []  # the upsert was rolled back with it


async def test_a_locked_table_times_out_as_retryable(
    postgres_database: str, resources: SinkResources
) -> None:
    record = call_record(1, CallStatus.RINGING, EventType.RINGING)
    async with started_sink(postgres_database, resources, timeout_s=0.3) as sink:
        locker = await asyncpg.connect(postgres_database)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(RetryableError):
                    await sink.write(record, trigger_for(record))
        finally:
            await locker.close()
        await sink.write(record, trigger_for(record))
    assert len(await fetch(postgres_database, calls)) == 1


async def test_a_locked_sqlite_file_is_retryable(tmp_path: Path, resources: SinkResources) -> None:
    url = f"sqlite:///{tmp_path}/callhook.db"
    record = call_record(1, CallStatus.RINGING, EventType.RINGING)
    async with started_sink(url, resources, timeout_s=0.2) as sink:
        locker = sqlite3.connect(tmp_path / "callhook.db", isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with pytest.raises(RetryableError):
                await sink.write(record, trigger_for(record))
            locker.execute("ROLLBACK")
        finally:
            locker.close()
        await sink.write(record, trigger_for(record))
    assert len(await fetch(url, calls)) == 1


async def test_postgres_down_at_start_is_retryable_and_hides_the_password(
    resources: SinkResources,
) -> None:
    url = f"postgresql://callhook:hunter2@127.0.0.1:{free_port()}/callhook"
    sink = DatabaseSink(DatabaseSinkConfig(name="warehouse", url=url, timeout_s=2), resources)
    with pytest.raises(RetryableError) as caught:
        await sink.start()
    assert "hunter2" not in str(caught.value)
    assert caught.value.target == "warehouse"


async def test_postgres_going_away_is_retryable_and_the_sink_recovers(
    postgres_database: str, resources: SinkResources
) -> None:
    server = urlsplit(postgres_database)
    assert server.hostname is not None
    assert server.port is not None
    proxy = TcpProxy(server.hostname, server.port)
    await proxy.open()
    via_proxy = postgres_database.replace(f":{server.port}/", f":{proxy.port}/")
    record = call_record(1, CallStatus.RINGING, EventType.RINGING)
    try:
        async with started_sink(via_proxy, resources, timeout_s=2) as sink:
            await proxy.close()
            with pytest.raises(RetryableError):
                await sink.write(record, trigger_for(record))
            await proxy.open()  # the same port again
            await sink.write(record, trigger_for(record))
    finally:
        await proxy.close()
    assert len(await fetch(postgres_database, calls)) == 1


async def test_a_missing_postgres_database_is_a_config_error(
    postgres_server_dsn: str, resources: SinkResources
) -> None:
    url = f"{postgres_server_dsn}/callhook_no_such_database"
    sink = DatabaseSink(DatabaseSinkConfig(name="warehouse", url=url), resources)
    with pytest.raises(ConfigError, match=r"sink 'warehouse'.*does not exist"):
        await sink.start()


@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        ("postgresql+psycopg2", "the driver 'postgresql\\+psycopg2' is not installed"),
        ("postgresql+nosuch", "unknown driver 'postgresql\\+nosuch'"),
        ("sqlite+pysqlite", "'sqlite\\+pysqlite' is not an async driver"),
    ],
)
async def test_a_driver_that_cannot_be_used_is_a_config_error(
    scheme: str, message: str, tmp_path: Path, resources: SinkResources
) -> None:
    dialect = scheme.partition("+")[0]
    url = (
        f"{scheme}://callhook@127.0.0.1/calls"
        if dialect != "sqlite"
        else f"{scheme}:///{tmp_path}/c.db"
    )
    sink = DatabaseSink(DatabaseSinkConfig(name="warehouse", url=url), resources)
    with pytest.raises(ConfigError, match=f"^sink 'warehouse' .*: {message}"):
        await sink.start()


async def test_explicit_async_drivers_work(
    postgres_database: str, tmp_path: Path, resources: SinkResources
) -> None:
    explicit = [
        postgres_database.replace("postgresql://", "postgresql+asyncpg://"),
        f"sqlite+aiosqlite:///{tmp_path}/explicit.db",
    ]
    record = call_record(1, CallStatus.RINGING, EventType.RINGING)
    for url in explicit:
        async with started_sink(url, resources) as sink:
            await sink.write(record, trigger_for(record))
        assert len(await fetch(url, calls)) == 1


async def test_a_relative_sqlite_path_is_under_the_working_directory_in_wal_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resources: SinkResources
) -> None:
    monkeypatch.chdir(tmp_path)
    async with started_sink("sqlite:///var/callhook.db", resources):
        pass
    with sqlite3.connect(tmp_path / "var" / "callhook.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute(
            "SELECT version_num FROM callhook_alembic_version"
        ).fetchall() == [(head_revision(),)]


@pytest.mark.parametrize(
    ("url", "driver", "database"),
    [
        ("postgresql://callhook@db.internal:5432/calls", "postgresql+asyncpg", "calls"),
        ("postgres://callhook@db.internal/calls", "postgresql+asyncpg", "calls"),
        ("postgresql+psycopg://callhook@db.internal/calls", "postgresql+psycopg", "calls"),
        ("sqlite:///var/callhook.db", "sqlite+aiosqlite", "var/callhook.db"),
        ("sqlite:////srv/callhook/calls.db", "sqlite+aiosqlite", "/srv/callhook/calls.db"),
        ("sqlite+aiosqlite:///calls.db", "sqlite+aiosqlite", "calls.db"),
    ],
)
def test_url_forms_users_write(url: str, driver: str, database: str) -> None:
    resolved = DatabaseSinkConfig(name="warehouse", url=url).sqlalchemy_url
    assert (resolved.drivername, resolved.database) == (driver, database)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:pw@127.0.0.1/calls", "unsupported scheme 'mysql': use postgresql://"),
        ("https://example.com/calls", "unsupported scheme 'https'"),
        ("not a url", "not a database URL"),
        ("sqlite://", "a sqlite URL needs a file path"),
        ("sqlite:///:memory:", "a sqlite URL needs a file path"),
        ("postgresql://callhook@db.internal:5432", "a postgresql URL needs a database name"),
    ],
)
def test_bad_urls_fail_validation_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseSinkConfig(name="warehouse", url=url)
    [error] = caught.value.errors(include_input=False)
    assert error["loc"] == ("url",)
    assert message in error["msg"]
    assert "pw" not in error["msg"]


def test_the_password_is_redacted_when_the_config_is_shown() -> None:
    config = DatabaseSinkConfig(
        name="warehouse", url="postgresql://callhook:s3cr3t@db.internal:5432/calls"
    )
    query = DatabaseSinkConfig(
        name="warehouse", url="postgresql://db.internal/calls?user=callhook&password=s3cr3t"
    )
    assert config.model_dump(mode="json")["url"] == (
        "postgresql://callhook:**********@db.internal:5432/calls"
    )
    assert query.model_dump(mode="json")["url"] == (
        "postgresql://db.internal/calls?user=**********&password=**********"
    )
    assert "s3cr3t" not in repr(config) + config.display_url + query.display_url
    plain = DatabaseSinkConfig(name="warehouse", url="sqlite:////srv/callhook/calls.db")
    assert plain.model_dump(mode="json")["url"] == "sqlite:////srv/callhook/calls.db"
