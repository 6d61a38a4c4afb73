"""Classify database failures as retryable (the database is down, busy or contended) or
permanent (the schema, permissions or data are wrong, and retrying cannot fix that).

Reasons are short and built from the server's error message, never from the URL, so they
carry no password.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from callhook.errors import PermanentError, RetryableError, UpstreamError

#: PostgreSQL SQLSTATEs (or their two-character classes) worth retrying
_PG_RETRYABLE = (
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources: too many connections, disk full
    "57",  # operator intervention: shutdown, cannot connect now, statement timeout
    "58",  # system error: I/O
    "55P03",  # lock not available
    "55006",  # object in use
    "25006",  # read-only transaction: we reached a standby during a failover
)
#: SQLite primary result codes worth retrying (SCHEMA: the schema changed under a statement)
_SQLITE_RETRYABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_SCHEMA,
    }
)
_MAX_REASON = 300


def classify(error: BaseException, target: str) -> UpstreamError:
    """The RetryableError or PermanentError that `error`, raised by a database call, means."""
    if isinstance(error, TimeoutError):
        return RetryableError("database timed out", target=target)
    if isinstance(error, OSError):  # raised by asyncpg's connect: refused, unreachable, DNS
        return RetryableError(f"cannot connect: {_first_line(error)}", target=target)
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return RetryableError(f"database unavailable: {_first_line(error)}", target=target)
    if isinstance(error, sqlite3.Error):  # from the WAL switch, which runs sqlite3 itself
        original: BaseException | None = error
    elif isinstance(error, sa_exc.DBAPIError):
        original = error.orig
    else:
        return PermanentError(f"{type(error).__name__}: {_first_line(error)}", target=target)
    reason = _first_line(original) if original is not None else type(error).__name__
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        retry = sqlstate.startswith(_PG_RETRYABLE)
        reason = f"SQLSTATE {sqlstate}: {reason}"
    elif isinstance(original, sqlite3.Error):
        # extended result codes carry the primary code in their low byte
        retry = original.sqlite_errorcode & 0xFF in _SQLITE_RETRYABLE
        reason = f"{original.sqlite_errorname}: {reason}"
    else:
        retry = isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
    if retry or getattr(error, "connection_invalidated", False):
        return RetryableError(reason, target=target)
    return PermanentError(reason, target=target)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
