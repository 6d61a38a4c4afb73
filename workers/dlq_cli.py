"""The `callhook dlq` commands over `workers.dlq.DeadLetters` (plain text for a terminal)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.asyncio

from callhook.config import Config
from workers.dlq import DeadLetter, DeadLetters

T = TypeVar("T")


def _run(config: Config, work: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async def main() -> T:
        client = redis.asyncio.Redis.from_url(config.redis.url, socket_connect_timeout=5)
        try:
            return await work(DeadLetters(client, config.redis.namespace))
        finally:
            await client.aclose()

    return asyncio.run(main())


def table(entries: Sequence[DeadLetter]) -> str:
    if not entries:
        return "no dead letters"
    rows = [("WHEN", "STAGE", "SINK", "SOURCE", "CALL", "ID", "REASON")]
    for entry in entries:
        rows.append(
            (
                entry.at,
                entry.queue.removeprefix("callhook."),
                entry.sink or "-",
                entry.source or "-",
                entry.call_id or "-",
                entry.id[:12],
                entry.reason,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(lines) + f"\n{len(entries)} dead letter(s)"


def list_entries(config: Config, *, sink: str | None) -> str:
    return table(_run(config, lambda dlq: dlq.list(sink=sink)))


def _select(entries: list[DeadLetter], ids: Sequence[str]) -> list[DeadLetter]:
    if not ids:
        return entries
    return [entry for entry in entries if any(entry.id.startswith(prefix) for prefix in ids)]


def replay(config: Config, *, sink: str | None, ids: Sequence[str]) -> str:
    async def work(dlq: DeadLetters) -> int:
        return await dlq.replay(_select(await dlq.list(sink=sink), ids))

    return f"replayed {_run(config, work)} dead letter(s)"


def purge(config: Config, *, sink: str | None) -> str:
    async def work(dlq: DeadLetters) -> int:
        return await dlq.purge(await dlq.list(sink=sink))

    return f"purged {_run(config, work)} dead letter(s)"
