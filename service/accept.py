"""The accept step: dedupe mark + enqueue as one atomic Redis script, bounded in time."""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from typing import Any

import redis.asyncio
import redis.exceptions

from callhook import metrics
from callhook.errors import AcceptUnavailable
from callhook.events import Event
from callhook.journal import updates
from callhook.journal.updates import JournalSettings
from callhook.journal.writer import journal_lua, report_failure
from callhook.queues import (
    ENRICH_ACTOR,
    ENRICH_QUEUE,
    dedupe_key,
    encode_message,
    messages_key,
    queue_key,
)
from callhook.replication import Replicas

# KEYS: dedupe mark, queue's message hash, queue list. ARGV: ttl, message id, message
# bytes, the journal's head and entry (journal.lua `journal_accept`; '' and '' for none),
# and '1' when replicas must confirm the accept ('0' otherwise). A Lua script runs
# atomically: either the mark and the message are both written, or neither. The journal
# entry rides along and cannot fail the accept. A duplicate that must be confirmed rewrites
# the mark as it is (same value, same expiry): a write, so the WAIT after it covers the first
# try's write too (callhook/replication.py). Returns 1 (accepted) or 0 (duplicate); when the
# journal failed, that digit, ':' and its error.
ACCEPT_BODY = """
local written = 0
if redis.call('set', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then
  redis.call('hset', KEYS[2], ARGV[2], ARGV[3])
  redis.call('rpush', KEYS[3], ARGV[2])
  written = 1
elseif ARGV[6] == '1' then
  redis.call('set', KEYS[1], redis.call('get', KEYS[1]), 'KEEPTTL')
end
if ARGV[4] ~= '' then
  local problem = journal_accept(written, ARGV[4], ARGV[5])
  if problem then
    return written .. ':' .. problem
  end
end
return written
"""


def accept_script() -> str:
    return journal_lua() + ACCEPT_BODY


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class Acceptor:
    """Writes accepted events for the enrich actor; one per ingress process."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        namespace: str,
        dedupe_ttl_s: int,
        timeout_s: float,
        journal: JournalSettings | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.dedupe_ttl_s = dedupe_ttl_s
        self.timeout_s = timeout_s
        self.journal = journal
        self.replicas = replicas
        # EVALSHA, falling back to EVAL once per connection if the script cache was flushed
        self._script = client.register_script(accept_script())

    async def accept(
        self, source: str, event: Event, *, vendor: str = "", origin: str = "webhook"
    ) -> Outcome:
        """Durably enqueue `event` unless its key was seen; raise AcceptUnavailable when Redis
        does not confirm within `timeout_s` (the vendor is then told to retry), or, with
        `replicas`, when fewer replicas than that hold the event by then.

        With journal settings, the call's journal gets the delivery (`origin`: `webhook` or
        `reconcile`), or one more duplicate of it, in the same step."""
        received_at = time.time()
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
                "received_at": received_at,
                "payload": event.payload,
            },
        )
        journaled: tuple[str, bytes] = ("", b"")
        if self.journal is not None and event.call_id is not None and event.type is not None:
            journaled = updates.accept_arguments(
                self.journal,
                source=source,
                call_id=event.call_id,
                vendor=vendor,
                event_key=event.event_key,
                vendor_type=event.vendor_type,
                event_type=event.type.value,
                origin=origin,
                received_ms=int(received_at * 1000),
            )
        keys = [
            dedupe_key(self.namespace, source, event.event_key),
            messages_key(self.namespace, ENRICH_QUEUE),
            queue_key(self.namespace, ENRICH_QUEUE),
        ]
        args: list[int | str | bytes] = [
            self.dedupe_ttl_s,
            message.redis_message_id,
            message.data,
            *journaled,
            "0" if self.replicas is None else "1",
        ]
        acked: int | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.replicas is None:
                    written = await self._script(keys=keys, args=args)
                else:
                    written, acked = await self._run_and_wait(keys, args, self.replicas)
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            raise AcceptUnavailable(
                f"redis did not confirm the accept: {type(exc).__name__}"
            ) from exc
        if self.replicas is not None and acked is not None and acked < self.replicas.count:
            # written (or found) on the primary: the vendor's retry is a duplicate that waits
            metrics.replication_unconfirmed_total.labels("accept").inc()
            raise AcceptUnavailable(
                f"{acked} of {self.replicas.count} replica(s) confirmed the accept within "
                f"{self.replicas.wait_ms} ms"
            )
        if isinstance(written, bytes):  # "1:<the journal's error>"
            digit, _, problem = written.decode(errors="replace").partition(":")
            report_failure(problem, origin)
            written = int(digit)
        return Outcome.ACCEPTED if written == 1 else Outcome.DUPLICATE

    async def _run_and_wait(
        self, keys: list[str], args: list[int | str | bytes], replicas: Replicas
    ) -> tuple[Any, int]:
        """The accept script and `WAIT` on one connection (one pipeline): what the script
        returned, and how many replicas acknowledged it. EVALSHA, with the script loaded
        and the pipeline sent again if this Redis had not cached it."""
        sha = self._script.sha
        while True:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.evalsha(sha, len(keys), *keys, *args)
                pipe.wait(replicas.count, replicas.wait_ms)
                try:
                    written, acked = await pipe.execute()
                except redis.exceptions.NoScriptError:
                    await self.client.script_load(self._script.script)
                    continue
            return written, int(acked)
