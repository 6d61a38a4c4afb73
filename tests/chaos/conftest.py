"""Chaos scenarios: real processes broken on purpose. Every test here is marked `chaos`
(`make chaos`; `make test` leaves them out). They share one PostgreSQL server of their own,
never the machine's, since a scenario stops it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, own_postgres

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with own_postgres() as server:
        yield server
