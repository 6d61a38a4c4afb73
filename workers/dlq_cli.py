"""`callhook dlq`: dead letters as plain text for a terminal; replays and purges journaled.

Every field shown comes from a webhook payload or an error message, so control and
format characters are escaped (`\\x1b`, `\\r`, `\\u202e`): a dead letter cannot move the
cursor, recolour, retitle or reorder the operator's terminal. Other text shows as it is.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from callhook.actions import Actions
from callhook.config import Config
from callhook.dead_letters import DeadLetter, Dropped
from callhook.redis_connect import async_client

T = TypeVar("T")

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: controls (C0, DEL, C1), format characters (bidi overrides and isolates, zero-width
#: ones), line and paragraph separators, lone surrogates
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: the zero-width joiner holds emoji sequences together and moves nothing
_KEPT = frozenset({"\u200d"})


def printable(value: str) -> str:
    """`value` with each character that could drive a terminal escaped, repr-style."""
    return "".join(_printable_char(char) for char in value)


def _printable_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if char in _KEPT or unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _run(config: Config, work: Callable[[Actions], Awaitable[T]]) -> T:
    async def main() -> T:
        client = async_client(config.redis, socket_connect_timeout=5)
        try:
            return await work(Actions(config, client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def table(entries: Sequence[DeadLetter]) -> str:
    if not entries:
        return "no dead letters"
    rows = [["WHEN", "STAGE", "SINK", "SOURCE", "CALL", "ID", "REASON"]]
    for entry in entries:
        cells = (
            entry.at,
            entry.queue.removeprefix("callhook."),
            entry.sink or "-",
            entry.source or "-",
            entry.call_id or "-",
            entry.id[:12],
            entry.reason,
        )
        rows.append([printable(str(cell)) for cell in cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(lines) + f"\n{len(entries)} dead letter(s)"


def dropped_line(dropped: Dropped, config: Config) -> str | None:
    """What the `[dead_letters]` limits have dropped so far, or None when nothing."""
    if not (dropped.retention or dropped.max_entries):
        return None
    limits = config.dead_letters
    return (
        f"dropped so far: {dropped.retention} older than {limits.retention_days} days "
        f"(retention_days), {dropped.max_entries} over {limits.max_entries} per stage "
        "(max_entries)"
    )


def list_entries(config: Config, *, sink: str | None) -> str:
    async def work(actions: Actions) -> tuple[list[DeadLetter], Dropped]:
        dlq = actions.dead_letters
        entries = await dlq.list(sink=sink)  # drops what is past the limits first
        return entries, await dlq.dropped()

    entries, dropped = _run(config, work)
    note = dropped_line(dropped, config)
    return table(entries) + (f"\n{note}" if note else "")


def _select(entries: list[DeadLetter], ids: Sequence[str]) -> list[DeadLetter]:
    if not ids:
        return entries
    return [entry for entry in entries if any(entry.id.startswith(prefix) for prefix in ids)]


def replay(config: Config, *, sink: str | None, ids: Sequence[str]) -> str:
    async def work(actions: Actions) -> int:
        chosen = _select(await actions.dead_letters.list(sink=sink), ids)
        return len(await actions.replay(chosen, by="cli"))

    return f"replayed {_run(config, work)} dead letter(s)"


def purge(config: Config, *, sink: str | None) -> str:
    async def work(actions: Actions) -> int:
        return await actions.purge(await actions.dead_letters.list(sink=sink), by="cli")

    return f"purged {_run(config, work)} dead letter(s)"
