"""The current call records, kept in Redis so every worker merges into the same state.

`merge_and_enqueue` folds observations into the stored record inside an optimistic
transaction (WATCH/MULTI): if another worker changed the record meanwhile, it re-reads and
merges again, so concurrent workers never overwrite each other's state. The deliver
messages the new state calls for are written in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson
import redis.asyncio
from redis.exceptions import WatchError

from callhook.queues import EncodedMessage, messages_key, queue_key
from callhook.record import CallRecord, merge

#: how long a call's record is kept for merging later events and replays (30 days)
RECORD_TTL_S = 30 * 24 * 3600


class RecordStore:
    def __init__(self, client: redis.asyncio.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def key(self, source: str, call_id: str) -> str:
        return f"{self.namespace}:call:{source}:{call_id}"

    async def get(self, source: str, call_id: str) -> CallRecord | None:
        raw = await self.client.get(self.key(source, call_id))
        return None if raw is None else CallRecord.model_validate_json(raw)

    async def merge_and_enqueue(
        self,
        observations: Sequence[CallRecord],
        messages_for: Callable[[CallRecord], Sequence[EncodedMessage]],
    ) -> CallRecord:
        """Merge `observations` (all of one call) into the stored record, store it, and
        enqueue `messages_for(new_record)` atomically with the write. Returns the record."""
        first = observations[0]
        key = self.key(first.source, first.call_id)
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    record = None if raw is None else CallRecord.model_validate_json(raw)
                    for observation in observations:
                        record = merge(record, observation)
                    assert record is not None
                    pipe.multi()
                    pipe.set(key, orjson.dumps(record.to_json_dict()), ex=RECORD_TTL_S)
                    for message in messages_for(record):
                        pipe.hset(
                            messages_key(self.namespace, message.queue_name),
                            message.redis_message_id,
                            message.data,
                        )
                        pipe.rpush(
                            queue_key(self.namespace, message.queue_name), message.redis_message_id
                        )
                    await pipe.execute()
                    return record
                except WatchError:
                    continue
