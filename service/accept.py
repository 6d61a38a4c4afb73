"""The accept step: dedupe mark + enqueue as one atomic Redis script, bounded in time."""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum

import redis.asyncio
import redis.exceptions

from callhook.errors import AcceptUnavailable
from callhook.events import Event
from callhook.queues import (
    ENRICH_ACTOR,
    ENRICH_QUEUE,
    dedupe_key,
    encode_message,
    messages_key,
    queue_key,
)

# KEYS: dedupe mark, queue's message hash, queue list. ARGV: ttl, message id, message bytes.
# A Lua script runs atomically: either the mark and the message are both written, or neither.
ACCEPT_SCRIPT = """
if redis.call('set', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then
  redis.call('hset', KEYS[2], ARGV[2], ARGV[3])
  redis.call('rpush', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class Acceptor:
    """Writes accepted events for the enrich actor; one per ingress process."""

    def __init__(
        self, client: redis.asyncio.Redis, *, namespace: str, dedupe_ttl_s: int, timeout_s: float
    ) -> None:
        self.namespace = namespace
        self.dedupe_ttl_s = dedupe_ttl_s
        self.timeout_s = timeout_s
        # EVALSHA, falling back to EVAL once per connection if the script cache was flushed
        self._script = client.register_script(ACCEPT_SCRIPT)

    async def accept(self, source: str, event: Event) -> Outcome:
        """Durably enqueue `event` unless its key was seen; raise AcceptUnavailable when Redis
        does not confirm within `timeout_s` (the vendor is then told to retry)."""
        message = encode_message(
            ENRICH_QUEUE,
            ENRICH_ACTOR,
            {
                "source": source,
                "event_key": event.event_key,
                "type": event.type,
                "vendor_type": event.vendor_type,
                "call_id": event.call_id,
                "fetchable": event.fetchable,
                "occurred_at": event.occurred_at,
                "received_at": time.time(),
                "payload": event.payload,
            },
        )
        keys = [
            dedupe_key(self.namespace, source, event.event_key),
            messages_key(self.namespace, ENRICH_QUEUE),
            queue_key(self.namespace, ENRICH_QUEUE),
        ]
        args: list[int | str | bytes] = [self.dedupe_ttl_s, message.redis_message_id, message.data]
        try:
            async with asyncio.timeout(self.timeout_s):
                written = await self._script(keys=keys, args=args)
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            raise AcceptUnavailable(
                f"redis did not confirm the accept: {type(exc).__name__}"
            ) from exc
        return Outcome.ACCEPTED if written == 1 else Outcome.DUPLICATE
