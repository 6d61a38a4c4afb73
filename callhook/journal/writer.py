"""Writing journal updates (`callhook.journal.updates`) to Redis, never at the work's cost.

`Journal.write(update)` runs the append script and swallows what goes wrong: a Redis error
or a write slower than `[journal] write_timeout_s` is logged and counted in
`callhook_journal_write_errors_total`, and the caller carries on. `Journal.queue(pipe, ...)`
adds the same script to a pipeline or transaction the caller runs anyway (the enrich
actor's merge), so the entry lands atomically with the work and costs no round trip; the
script itself never fails (journal.lua `journal`), so it cannot fail that transaction.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from importlib.resources import files
from typing import Any

import redis.asyncio
import redis.exceptions

from callhook import metrics
from callhook.journal.updates import JournalSettings

log = logging.getLogger("callhook.journal")


@cache
def journal_lua() -> str:
    """The Lua functions `journal_write` and `journal` (prepended to scripts that journal)."""
    return (files("callhook.journal") / "journal.lua").read_text(encoding="utf-8")


def append_script() -> str:
    # ARGV[1]: the update. Returns nil, or the journal's error as text.
    return journal_lua() + "\nreturn journal(ARGV[1])\n"


def report_failure(problem: object, where: str) -> None:
    """Log and count one journal write that did not happen."""
    metrics.journal_write_errors_total.labels(where).inc()
    log.warning("journal write failed (%s); the work goes on", problem, extra={"where": where})


class Journal:
    """One process's journal writer, on a Redis client the process owns."""

    def __init__(self, client: redis.asyncio.Redis, settings: JournalSettings) -> None:
        self.settings = settings
        self._append = client.register_script(append_script())

    async def write(self, update: bytes, *, where: str) -> None:
        """Apply `update`; never raises (a failure is reported, see the module docstring)."""
        try:
            async with asyncio.timeout(self.settings.write_timeout_s):
                problem = await self._append(args=[update])
        except TimeoutError:
            report_failure(f"no answer within {self.settings.write_timeout_s}s", where)
            return
        except (redis.exceptions.RedisError, OSError) as exc:
            report_failure(type(exc).__name__, where)
            return
        if problem is not None:
            report_failure(_text(problem), where)

    async def queue(self, pipe: redis.asyncio.client.Pipeline, update: bytes) -> None:
        """Add `update` to `pipe` (executed by its owner; see `check_queued`)."""
        await self._append(args=[update], client=pipe)


def check_queued(result: Any, where: str) -> None:
    """Report the outcome of an update `Journal.queue` added to a pipeline, if it failed."""
    if result is not None:
        report_failure(_text(result), where)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
