"""Shared fixtures: the real Redis (isolated by a per-test key namespace) and PostgreSQL
(a fresh database per test session). Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis
import redis.asyncio

from tests.servers import postgres_dsn, redis_url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    with redis_url() as url:
        yield url


@pytest.fixture
def redis_namespace(redis_server_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_sync(redis_server_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server_url)
    yield client
    client.close()


@pytest.fixture
async def redis_async(redis_server_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def postgres_server_dsn() -> Iterator[str]:
    with postgres_dsn() as dsn:
        yield dsn


@pytest.fixture
def postgres_database(postgres_server_dsn: str) -> Iterator[str]:
    """A new, empty database on the real PostgreSQL server: its `postgresql://` URL."""
    name = f"callhook_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_server_dsn, f'CREATE DATABASE "{name}"'))
    yield f"{postgres_server_dsn}/{name}"
    asyncio.run(_admin(postgres_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(f"{dsn}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
