"""What an operator can do to calls and dead letters, from the CLI, the API or the console.

Every action goes through the normal queues (so the sinks' idempotency holds: a redelivery
writes the newest state again where a sink keeps state, and sends nothing twice where a
sink sends messages) and leaves an entry in the journal of each call it touched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio

from callhook.config import Config
from callhook.dead_letters import DeadLetter, DeadLetters
from callhook.errors import CallhookError
from callhook.events import EventType
from callhook.journal import updates
from callhook.journal.updates import JournalSettings
from callhook.journal.writer import Journal, check_queued
from callhook.queues import (
    DELIVER_ACTOR,
    DELIVER_QUEUE,
    ENRICH_ACTOR,
    ENRICH_QUEUE,
    EncodedMessage,
    encode_message,
    messages_key,
    queue_key,
)
from callhook.record import CallRecord
from callhook.sinks.routing import matching_sinks
from callhook.store import RecordStore

#: the `vendor_type` of an enrich message an operator asked for: no payload, fetch again
RE_ENRICH_VENDOR_TYPE = "re-enrich"


class ActionRefused(CallhookError):
    """The action cannot be taken as asked (the message says why; safe to show)."""


class UnknownCall(ActionRefused):
    """No record of that call is stored (never seen, or expired)."""


class Actions:
    def __init__(self, config: Config, client: redis.asyncio.Redis) -> None:
        namespace = config.redis.namespace
        self.config = config
        self.client = client
        self.dead_letters = DeadLetters(client, namespace, config.dead_letters)
        self.store = RecordStore(client, namespace)
        self.journal_settings = JournalSettings.from_config(config)
        self.journal = Journal(client, self.journal_settings)

    async def replay(self, entries: Sequence[DeadLetter], *, by: str) -> list[DeadLetter]:
        """Put the entries back on their stage's queue (see `DeadLetters.replay`)."""
        replayed = await self.dead_letters.replay(entries)
        await self._note_dead_letters(replayed, "replay", by)
        return replayed

    async def purge(self, entries: Sequence[DeadLetter], *, by: str) -> int:
        purged = await self.dead_letters.purge(entries)
        await self._note_dead_letters(entries, "purge", by)
        return purged

    async def redeliver(
        self, source: str, call_id: str, sinks: Sequence[str] | None, *, by: str
    ) -> list[str]:
        """Deliver the call's stored record again: to `sinks`, or (None) to every sink its
        last event is routed to. Returns the sinks a delivery was enqueued for."""
        record = await self._record(source, call_id)
        event_type, event_key = _last_event(record)
        configured = [sink.name for sink in self.config.sinks]
        if sinks is None:
            chosen = [sink.name for sink in matching_sinks(record, event_type, self.config.sinks)]
        else:
            unknown = sorted(set(sinks) - set(configured))
            if unknown:
                raise ActionRefused(f"no sink named {', '.join(map(repr, unknown))}")
            chosen = [name for name in configured if name in sinks]
        if not chosen:
            raise ActionRefused("no sink to deliver to: the call's last event routes to none")
        now = time.time()
        message = encode_message(
            DELIVER_QUEUE,
            DELIVER_ACTOR,
            {
                "sinks": chosen,
                "source": source,
                "call_id": call_id,
                "event_key": event_key,
                "type": event_type.value,
                "received_at": now,
                "payload": None,
                "attempt": 0,
            },
        )
        await self._enqueue(
            [message],
            updates.action(
                self.journal_settings,
                source=source,
                call_id=call_id,
                now_ms=int(now * 1000),
                kind="redeliver",
                by=by,
                sinks=chosen,
            ),
        )
        return chosen

    async def re_enrich(self, source: str, call_id: str, *, by: str) -> None:
        """Fetch the call from the vendor again, merge what it says and deliver the result
        through the sinks its last event is routed to."""
        record = await self._record(source, call_id)
        event_type, event_key = _last_event(record)
        now = time.time()
        message = encode_message(
            ENRICH_QUEUE,
            ENRICH_ACTOR,
            {
                "source": source,
                "event_key": event_key,
                "type": event_type.value,
                "vendor_type": RE_ENRICH_VENDOR_TYPE,
                "call_id": call_id,
                "fetchable": True,
                "occurred_at": None,
                "received_at": now,
                "payload": {},
            },
        )
        await self._enqueue(
            [message],
            updates.action(
                self.journal_settings,
                source=source,
                call_id=call_id,
                now_ms=int(now * 1000),
                kind="re_enrich",
                by=by,
            ),
        )

    async def _record(self, source: str, call_id: str) -> CallRecord:
        if source not in self.config.sources:
            raise UnknownCall(f"no source named {source!r}")
        record = await self.store.get(source, call_id)
        if record is None:
            raise UnknownCall("no record of this call is stored (never seen, or expired)")
        return record

    async def _enqueue(self, messages: Sequence[EncodedMessage], journaled: bytes) -> None:
        """Write `messages` and their journal entry in one transaction."""
        namespace = self.config.redis.namespace
        async with self.client.pipeline(transaction=True) as pipe:
            for message in messages:
                pipe.hset(
                    messages_key(namespace, message.queue_name),
                    message.redis_message_id,
                    message.data,
                )
                pipe.rpush(queue_key(namespace, message.queue_name), message.redis_message_id)
            await self.journal.queue(pipe, journaled)
            results = await pipe.execute()
        check_queued(results[-1], "action")

    async def _note_dead_letters(self, entries: Sequence[DeadLetter], kind: str, by: str) -> None:
        """A journal entry (`replay`, `purge`) in the call of each dead letter."""
        for entry in entries:
            if not (entry.source and entry.call_id):
                continue
            update = updates.action(
                self.journal_settings,
                source=entry.source,
                call_id=entry.call_id,
                now_ms=int(time.time() * 1000),
                kind=kind,
                by=by,
                stage=entry.stage,
                sink=entry.sink,
                dead_letter=entry.id,
                reason=entry.reason,
            )
            await self.journal.write(update, where="action")


def _last_event(record: CallRecord) -> tuple[EventType, str]:
    """The trigger a redelivery repeats: the record's last event (its key keeps every
    sink's idempotency identity), or the call's completion when none is known."""
    if record.last_event is not None:
        try:
            return EventType(record.last_event.type), record.last_event.key
        except ValueError:
            pass
    return EventType.COMPLETED, f"redeliver:{record.call_id}"
