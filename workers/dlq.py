"""Dead letters: work that failed permanently or ran out of retries, with its reason.

Each entry keeps what is needed to replay it (the actor's message arguments) and what an
operator needs to judge it (when, stage, sink, source, call, reason). `replay` re-enqueues
and removes an entry in one Redis transaction, so an entry is never both gone and unqueued.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio

from callhook.queues import (
    STAGES,
    dlq_entries_key,
    dlq_index_key,
    encode_message,
    messages_key,
    queue_key,
)
from callhook.record import utc_now_iso


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    at: str
    queue: str
    actor: str
    reason: str
    source: str | None
    call_id: str | None
    sink: str | None
    attempts: int
    kwargs: dict[str, Any] = field(repr=False)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "at": self.at,
                "queue": self.queue,
                "actor": self.actor,
                "reason": self.reason,
                "source": self.source,
                "call_id": self.call_id,
                "sink": self.sink,
                "attempts": self.attempts,
                "kwargs": self.kwargs,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> DeadLetter:
        return cls(**orjson.loads(raw))


class DeadLetters:
    def __init__(self, client: redis.asyncio.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    async def add(
        self,
        *,
        queue: str,
        actor: str,
        kwargs: dict[str, Any],
        reason: str,
        attempts: int,
        sink: str | None = None,
    ) -> DeadLetter:
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            at=utc_now_iso(),
            queue=queue,
            actor=actor,
            reason=reason[:500],
            source=kwargs.get("source"),
            call_id=kwargs.get("call_id"),
            sink=sink,
            attempts=attempts,
            kwargs=kwargs,
        )
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(dlq_entries_key(self.namespace, queue), entry.id, entry.encode())
            pipe.zadd(dlq_index_key(self.namespace, queue), {entry.id: _score(entry.at)})
            await pipe.execute()
        return entry

    async def list(self, *, sink: str | None = None) -> list[DeadLetter]:
        """All entries, oldest first, optionally only one sink's."""
        entries: list[DeadLetter] = []
        for queue in STAGES:
            ids = cast(
                list[bytes], await self.client.zrange(dlq_index_key(self.namespace, queue), 0, -1)
            )
            if not ids:
                continue
            raws = cast(
                list[bytes | None],
                await self.client.hmget(dlq_entries_key(self.namespace, queue), ids),
            )
            entries.extend(DeadLetter.decode(raw) for raw in raws if raw is not None)
        entries.sort(key=lambda entry: entry.at)
        return [entry for entry in entries if sink is None or entry.sink == sink]

    async def count(self) -> dict[str, int]:
        return {
            queue: int(await self.client.zcard(dlq_index_key(self.namespace, queue)))
            for queue in STAGES
        }

    async def replay(self, entries: Sequence[DeadLetter]) -> int:
        """Re-enqueue each entry (attempt counter reset) and remove it, atomically each."""
        replayed = 0
        for entry in entries:
            kwargs = {**entry.kwargs, "attempt": 0}
            message = encode_message(entry.queue, entry.actor, kwargs)
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    messages_key(self.namespace, entry.queue),
                    message.redis_message_id,
                    message.data,
                )
                pipe.rpush(queue_key(self.namespace, entry.queue), message.redis_message_id)
                pipe.zrem(dlq_index_key(self.namespace, entry.queue), entry.id)
                pipe.hdel(dlq_entries_key(self.namespace, entry.queue), entry.id)
                await pipe.execute()
            replayed += 1
        return replayed

    async def purge(self, entries: Sequence[DeadLetter]) -> int:
        async with self.client.pipeline(transaction=True) as pipe:
            for entry in entries:
                pipe.zrem(dlq_index_key(self.namespace, entry.queue), entry.id)
                pipe.hdel(dlq_entries_key(self.namespace, entry.queue), entry.id)
            await pipe.execute()
        return len(entries)


def _score(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
