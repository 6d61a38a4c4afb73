"""The `database` sink's settings, and how a URL as users write it becomes an async engine URL."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_serializer, field_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from callhook.redaction import redact_url
from callhook.sinks.base import SinkConfig

#: the async driver Callhook uses for each dialect unless the URL names one (`+driver`)
DEFAULT_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
_DIALECT_ALIASES = {"postgres": "postgresql"}


class DatabaseSinkConfig(SinkConfig):
    """`[[sinks]]` with `type = "database"`: one PostgreSQL or SQLite database."""

    type: Literal["database"] = "database"
    #: postgresql://user:password@host:5432/db or sqlite:///relative/path.db or
    #: sqlite:////absolute/path.db; `postgresql+psycopg://...` picks another async driver
    url: str = Field(repr=False)

    @field_validator("url")
    @classmethod
    def _supported_url(cls, value: str) -> str:
        engine_url(value)
        return value

    @field_serializer("url")
    def _hide_password(self, value: str) -> str:
        return redact_url(value)

    @property
    def sqlalchemy_url(self) -> URL:
        """The SQLAlchemy URL with the async driver filled in."""
        return engine_url(self.url)

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return redact_url(self.url)


def engine_url(url: str) -> URL:
    """`url` as a SQLAlchemy URL naming an async driver (asyncpg or aiosqlite by default).

    Raises ValueError with a short message (never quoting the URL) when it cannot be used.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            "not a database URL (postgresql://user@host:5432/db or sqlite:///path)"
        ) from None
    dialect, _, driver = parsed.drivername.partition("+")
    dialect = _DIALECT_ALIASES.get(dialect, dialect)
    if dialect not in DEFAULT_DRIVERS:
        raise ValueError(f"unsupported scheme {dialect!r}: use postgresql:// or sqlite:///")
    if dialect == "sqlite":
        if parsed.host or parsed.database in (None, "", ":memory:"):
            raise ValueError("a sqlite URL needs a file path, e.g. sqlite:///var/callhook.db")
    elif not parsed.database:
        raise ValueError(
            "a postgresql URL needs a database name, e.g. postgresql://user@host:5432/callhook"
        )
    return parsed.set(drivername=f"{dialect}+{driver or DEFAULT_DRIVERS[dialect]}")
