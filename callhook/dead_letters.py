"""Dead letters: work that failed permanently or ran out of retries, with its reason.

Each entry keeps what is needed to replay it (the actor's message arguments) and what an
operator needs to judge it (when, stage, sink, source, call, reason). `replay` re-enqueues
and removes an entry in one Redis script, so an entry is never both gone and unqueued, and
two replays of it enqueue it once.

Entries are kept per stage for `[dead_letters] retention_days` and at most `max_entries`
of them (the oldest go first). The same script that writes an entry drops what is past
either limit, and listing drops it too, so the limits hold without a sweeper; what was
dropped is counted in Redis (`{ns}:dlq:{stage}:dropped`, by cause), in the
`callhook_dead_letters_dropped_total` metric and in a warning.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio

from callhook import metrics
from callhook.config import DeadLettersConfig
from callhook.queues import (
    STAGES,
    dlq_entries_key,
    dlq_index_key,
    encode_message,
    messages_key,
    queue_key,
)
from callhook.record import iso_z
from callhook.replication import Replicas, write_replicated

log = logging.getLogger("callhook.dead_letters")

#: most entries one script run drops: a first trim of a large backlog must not hold Redis
#: for long (`trim` loops; a write drops at most this many, far more than it adds)
_TRIM_BATCH = 1000
#: the causes entries are dropped for (fields of the dropped-count hash)
RETENTION, MAX_ENTRIES = "retention", "max_entries"

# KEYS: index (zset), entries (hash), dropped (hash). ARGV: id ('' to only trim), entry,
# score, cutoff score (older is dropped), max entries, batch. -> {expired, over the cap}
_ADD_AND_TRIM = """
if ARGV[1] ~= '' then
  redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
  redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
end
local batch = tonumber(ARGV[6])
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', '(' .. ARGV[4], 'LIMIT', 0, batch)
if #expired > 0 then
  redis.call('zrem', KEYS[1], unpack(expired))
  redis.call('hdel', KEYS[2], unpack(expired))
  redis.call('hincrby', KEYS[3], 'retention', #expired)
end
local over = math.min(redis.call('zcard', KEYS[1]) - tonumber(ARGV[5]), batch)
if over > 0 then
  local oldest = redis.call('zrange', KEYS[1], 0, over - 1)
  redis.call('zremrangebyrank', KEYS[1], 0, over - 1)
  redis.call('hdel', KEYS[2], unpack(oldest))
  redis.call('hincrby', KEYS[3], 'max_entries', over)
else
  over = 0
end
return {#expired, over}
"""

# KEYS: index, entries, messages, queue. ARGV: entry id, message id, message.
# 1 when the entry was still there (now enqueued and removed), else 0.
_REPLAY = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('hdel', KEYS[2], ARGV[1])
redis.call('hset', KEYS[3], ARGV[2], ARGV[3])
redis.call('rpush', KEYS[4], ARGV[2])
return 1
"""


def dlq_dropped_key(namespace: str, queue_name: str) -> str:
    """Hash: cause (`retention`, `max_entries`) -> entries of a stage dropped for it."""
    return f"{namespace}:dlq:{queue_name}:dropped"


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

    @property
    def stage(self) -> str:
        """`enrich` or `deliver`."""
        return self.queue.removeprefix("callhook.")

    @property
    def reason_class(self) -> str:
        return reason_class(self.reason)


_GAVE_UP = re.compile(r"^gave up after \d+ attempts: ")
#: "s3 sink 'archive' (bucket 'calls'): " - the sink is a group of its own
_SINK_PREFIX = re.compile(r"^\w+ sink '[^']*'(?: \([^)]*\))?: ")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_VARYING = re.compile(r"\b(?:\d+(?:\.\d+)?s?|[0-9a-f-]*\d[0-9a-f-]*)\b")
_HTTP_STATUS = re.compile(r"[1-5]\d\d")


def reason_class(reason: str) -> str:
    """What dead letters failing the same way share: the reason without attempt counts,
    the sink's own name, quoted values, ids and numbers (HTTP statuses are kept)."""
    text = _SINK_PREFIX.sub("", _GAVE_UP.sub("", reason))
    text = _QUOTED.sub("…", text)
    text = _VARYING.sub(lambda m: m.group() if _HTTP_STATUS.fullmatch(m.group()) else "#", text)
    text = text.strip()
    return text if len(text) <= 80 else text[:79] + "…"


@dataclass(frozen=True, slots=True)
class Dropped:
    """Counts of entries dropped: past `retention_days`, and over `max_entries`."""

    retention: int = 0
    max_entries: int = 0

    def __add__(self, other: Dropped) -> Dropped:
        return Dropped(self.retention + other.retention, self.max_entries + other.max_entries)


class DeadLetters:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        namespace: str,
        settings: DeadLettersConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        replicas: Replicas | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.settings = settings or DeadLettersConfig()
        self._clock = clock
        #: with replicas, `add` returns once that many replicas hold the entry
        self.replicas = replicas
        self._add_and_trim = client.register_script(_ADD_AND_TRIM)
        self._replay = client.register_script(_REPLAY)

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
        """Store an entry, and drop the stage's entries past the limits, in one step. With
        `replicas`, return only once they hold the entry (callhook/replication.py): until
        then the work it ends is not done, and its message is not acknowledged."""
        now = self._clock()
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            at=iso_z(now),
            queue=queue,
            actor=actor,
            reason=reason[:500],
            source=kwargs.get("source"),
            call_id=kwargs.get("call_id"),
            sink=sink,
            attempts=attempts,
            kwargs=kwargs,
        )
        await self._run_trim(queue, now, entry)
        return entry

    async def trim(self) -> Dropped:
        """Drop every stage's entries past the limits now; what this call dropped."""
        now, dropped = self._clock(), Dropped()
        for queue in STAGES:
            while True:
                batch = await self._run_trim(queue, now)
                dropped += batch
                if max(batch.retention, batch.max_entries) < _TRIM_BATCH:
                    break
        return dropped

    async def dropped(self) -> Dropped:
        """Entries dropped by the limits since the stages' first dead letter (all stages)."""
        total = Dropped()
        for queue in STAGES:
            counts = cast(
                list[bytes | None],
                await self.client.hmget(
                    dlq_dropped_key(self.namespace, queue), [RETENTION, MAX_ENTRIES]
                ),
            )
            retention, capped = (int(count or 0) for count in counts)
            total += Dropped(retention, capped)
        return total

    async def _run_trim(self, queue: str, now: float, entry: DeadLetter | None = None) -> Dropped:
        cutoff = now - self.settings.retention_days * 86400
        keys = [
            dlq_index_key(self.namespace, queue),
            dlq_entries_key(self.namespace, queue),
            dlq_dropped_key(self.namespace, queue),
        ]
        args: list[str | bytes | float | int] = [
            entry.id if entry else "",
            entry.encode() if entry else b"",
            now,
            cutoff,
            self.settings.max_entries,
            _TRIM_BATCH,
        ]
        if entry is None or self.replicas is None:
            result = await self._add_and_trim(keys=keys, args=args)
        else:

            async def queue_write(pipe: Any) -> None:
                await self._add_and_trim(keys=keys, args=args, client=pipe)

            written = await write_replicated(
                self.client,
                self.replicas,
                f"dlq:{entry.id}",
                queue_write,
                what="dead_letter",
                context={"source": entry.source, "call_id": entry.call_id, "queue": queue},
            )
            # [] when a try whose answer was lost had written it: nothing more to count
            result = written[0] if written else [0, 0]
        expired, capped = cast(list[int], result)
        if expired:
            metrics.dead_letters_dropped_total.labels(queue, RETENTION).inc(expired)
            log.warning(
                "dropped %d dead letter(s) of %s older than %d days "
                "([dead_letters] retention_days)",
                expired,
                queue,
                self.settings.retention_days,
                extra={"queue": queue, "dropped": expired},
            )
        if capped:
            metrics.dead_letters_dropped_total.labels(queue, MAX_ENTRIES).inc(capped)
            log.warning(
                "dropped the %d oldest dead letter(s) of %s: more than %d "
                "([dead_letters] max_entries)",
                capped,
                queue,
                self.settings.max_entries,
                extra={"queue": queue, "dropped": capped},
            )
        return Dropped(int(expired), int(capped))

    async def list(
        self, *, sink: str | None = None, stage: str | None = None, source: str | None = None
    ) -> list[DeadLetter]:
        """All entries, oldest first, optionally only one sink's, stage's (`enrich`,
        `deliver`) or source's; entries past the limits are dropped first."""
        await self.trim()
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
        return [
            entry
            for entry in entries
            if (sink is None or entry.sink == sink)
            and (stage is None or entry.stage == stage)
            and (source is None or entry.source == source)
        ]

    async def get(self, ids: Sequence[str]) -> builtins.list[DeadLetter]:
        """The entries with these ids that are still stored (any stage), oldest first."""
        if not ids:
            return []
        found: builtins.list[DeadLetter] = []
        for queue in STAGES:
            raws = cast(
                builtins.list[bytes | None],
                await self.client.hmget(dlq_entries_key(self.namespace, queue), list(ids)),
            )
            found.extend(DeadLetter.decode(raw) for raw in raws if raw is not None)
        return sorted(found, key=lambda entry: entry.at)

    async def count(self) -> dict[str, int]:
        return {
            queue: int(await self.client.zcard(dlq_index_key(self.namespace, queue)))
            for queue in STAGES
        }

    async def replay(self, entries: Sequence[DeadLetter]) -> builtins.list[DeadLetter]:
        """Re-enqueue each entry still stored (attempt counter reset) and remove it,
        atomically each; entries gone meanwhile (replayed, purged, dropped) are skipped.
        Returns the entries replayed now."""
        replayed: list[DeadLetter] = []
        for entry in entries:
            kwargs = {**entry.kwargs, "attempt": 0}
            message = encode_message(entry.queue, entry.actor, kwargs)
            done = await self._replay(
                keys=[
                    dlq_index_key(self.namespace, entry.queue),
                    dlq_entries_key(self.namespace, entry.queue),
                    messages_key(self.namespace, entry.queue),
                    queue_key(self.namespace, entry.queue),
                ],
                args=[entry.id, message.redis_message_id, message.data],
            )
            if done:
                replayed.append(entry)
        return replayed

    async def purge(self, entries: Sequence[DeadLetter]) -> int:
        async with self.client.pipeline(transaction=True) as pipe:
            for entry in entries:
                pipe.zrem(dlq_index_key(self.namespace, entry.queue), entry.id)
                pipe.hdel(dlq_entries_key(self.namespace, entry.queue), entry.id)
            results = await pipe.execute()
        return sum(int(removed) for removed in results[::2])
