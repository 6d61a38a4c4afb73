"""The current call records, kept in Redis so every worker merges into the same state.

`merge_and_enqueue` folds observations into the stored record inside an optimistic
transaction (WATCH/MULTI): if another worker changed the record meanwhile, it re-reads and
merges again, so concurrent workers never overwrite each other's state. The deliver
messages the new state calls for, and the journal entry saying so, are written in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio
from redis.exceptions import WatchError

from callhook.journal.writer import Journal, check_queued
from callhook.queues import EncodedMessage, messages_key, queue_key
from callhook.record import CallRecord, merge

#: how long a call's record is kept for merging later events and replays (30 days)
RECORD_TTL_S = 30 * 24 * 3600


class RecordStore:
    def __init__(
        self, client: redis.asyncio.Redis, namespace: str, journal: Journal | None = None
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.journal = journal

    def key(self, source: str, call_id: str) -> str:
        return f"{self.namespace}:call:{source}:{call_id}"

    async def get(self, source: str, call_id: str) -> CallRecord | None:
        raw = await self.client.get(self.key(source, call_id))
        return None if raw is None else CallRecord.model_validate_json(raw)

    def latest_key(self, source: str, call_id: str) -> str:
        """Hash: sink name -> the revision of the call's newest delivery enqueued for it."""
        return f"{self.namespace}:latest:{source}:{call_id}"

    async def for_delivery(
        self, source: str, call_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, int]]:
        """The stored record in its JSON wire shape, as sinks take it (what
        `merge_and_enqueue` wrote, decoded, without a round trip through the model), and per
        sink the revision of the newest delivery enqueued for the call: one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.key(source, call_id))
            pipe.hgetall(self.latest_key(source, call_id))
            raw, latest = await pipe.execute()
        record: dict[str, Any] | None = None if raw is None else orjson.loads(raw)
        return record, {sink.decode(): int(revision) for sink, revision in latest.items()}

    async def merge_and_enqueue(
        self,
        observations: Sequence[CallRecord],
        messages_for: Callable[[CallRecord], Sequence[EncodedMessage]],
        journal_for: Callable[[CallRecord], bytes] | None = None,
        latest_for: Callable[[CallRecord], Sequence[str]] = lambda record: (),
    ) -> CallRecord:
        """Merge `observations` (all of one call) into the stored record, store it, and
        enqueue `messages_for(new_record)` atomically with the write, with the journal
        update `journal_for(new_record)` (needs a store made with a journal), and the new
        revision as the newest delivery enqueued for each sink of `latest_for(new_record)`.
        Returns the record."""
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
                    latest = latest_for(record)
                    if latest:
                        # revisions grow with every merge and merges are serialised by the
                        # WATCH above: the last HSET is the highest
                        latest_key = self.latest_key(first.source, first.call_id)
                        for sink in latest:
                            pipe.hset(latest_key, sink, record.revision)
                        pipe.expire(latest_key, RECORD_TTL_S)
                    for message in messages_for(record):
                        pipe.hset(
                            messages_key(self.namespace, message.queue_name),
                            message.redis_message_id,
                            message.data,
                        )
                        pipe.rpush(
                            queue_key(self.namespace, message.queue_name), message.redis_message_id
                        )
                    if self.journal is not None and journal_for is not None:
                        await self.journal.queue(pipe, journal_for(record))
                        results = await pipe.execute()
                        check_queued(results[-1], "enrich")
                    else:
                        await pipe.execute()
                    return record
                except WatchError:
                    continue
