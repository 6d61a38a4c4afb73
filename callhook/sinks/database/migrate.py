"""Bring a database to the newest schema with the Alembic revisions shipped in this package.

Runs at every sink start: on an up-to-date database it reads the version and changes
nothing. Processes starting together are serialised: on PostgreSQL by an advisory lock
held for the migrating transaction, on SQLite by the write lock `BEGIN IMMEDIATE` takes
(see `engine.py`), so exactly one of them creates the tables and the others find them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
#: Alembic's bookkeeping table, named so it cannot clash with an application's own
#: `alembic_version` when the database is shared
VERSION_TABLE = "callhook_alembic_version"
#: pg_advisory_xact_lock key: the first 8 bytes (signed) of sha256("callhook.sinks.database")
ADVISORY_LOCK_KEY = 0x468E07E0EE6DD6BE
#: Alembic keeps the running migration's context in module globals (`alembic.context`,
#: `alembic.op`), so two migrations interleaving on one event loop (two database sinks
#: starting together) would overwrite each other's; one lock per loop serialises them.
_IN_PROCESS: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


def head_revision() -> str:
    """The newest revision shipped with this version of Callhook."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions in {MIGRATIONS}")
    return head


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database behind `engine` to `head_revision()` in one transaction."""
    loop = asyncio.get_running_loop()
    async with _IN_PROCESS.setdefault(loop, asyncio.Lock()), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    command.upgrade(config, "head")
