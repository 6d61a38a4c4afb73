"""Exactly-once side effects per identity, for sinks whose writes are not idempotent
(a Slack message, an HTTP request): a short Redis lock plus a long-lived "sent" mark.

    {prefix}:lock:{identity}   SET NX PX: the one worker allowed to send right now
    {prefix}:sent:{identity}   written after the remote accepted; kept `keep_s` (≥ 30 days)

A retry, a replay from the dead-letter queue or a second worker racing on the same
identity finds the mark (or waits for the lock holder) and sends nothing. A send costs two
Redis round trips, each one script: check the mark and take the lock; then write the mark
and let go of the lock.

Once the remote has accepted, the mark is written by a task of its own that keeps trying
through a Redis outage (up to MARK_PATIENCE_S) and that the attempt's own timeout does not
cancel: an outage between the send and the mark delays the mark, it does not resend.

The remaining window is at-least-once, not exactly-once: if the process dies after the
remote accepted the send but before the mark is written, the next attempt sends again.
Receivers that must never see a duplicate dedupe on the identity we send them (the http
sink's `webhook-id`); Slack offers no such key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable

import redis.asyncio
import redis.exceptions

from callhook.errors import RetryableError

log = logging.getLogger("callhook.sinks.once")

#: how long a "sent" mark is kept: longer than any retry budget or dead-letter replay
KEEP_S = 30 * 24 * 3600
#: how long a sent identity's mark is retried through a Redis outage
MARK_PATIENCE_S = 600.0

# KEYS: sent mark, lock. ARGV: token, lock ms. The sent check and the lock are one step:
# a holder sets its mark before it lets go of the lock, so whoever takes a free lock after
# a success sees the mark here. 'sent', 'acquired', or the lock's remaining ms.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 'sent'
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 'acquired'
end
return redis.call('PTTL', KEYS[2])
"""

# Delete the lock only if it is still ours: after a lock expired and another worker took
# it, a late release must not free the other worker's lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: sent mark, lock. ARGV: token, now, keep seconds. The mark, then the release.
_MARK_AND_RELEASE = """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
end
return 1
"""


class Once:
    """Run a send at most once per identity (up to the window in the module docstring).

    `prefix` scopes the keys (a namespace and a sink name); `lock_s` must outlast one
    send, which the caller bounds with its own timeout; `wait_s` is how long a second
    caller waits for the lock holder before giving up with a RetryableError.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        *,
        lock_s: float,
        wait_s: float,
        keep_s: int = KEEP_S,
        target: str = "",
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._lock_ms = max(1, math.ceil(lock_s * 1000))
        self._wait_s = wait_s
        self._keep_s = keep_s
        self._target = target
        #: marks still being written (held so the tasks are not garbage-collected)
        self._marking: set[asyncio.Task[None]] = set()
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)
        self._mark_script = client.register_script(_MARK_AND_RELEASE)

    def sent_key(self, identity: str) -> str:
        return f"{self._prefix}:sent:{identity}"

    def lock_key(self, identity: str) -> str:
        return f"{self._prefix}:lock:{identity}"

    async def run(self, identity: str, send: Callable[[], Awaitable[None]]) -> bool:
        """Call `send()` unless it already succeeded for `identity`.

        Returns True when `send` ran and succeeded now, False when an earlier attempt had
        already done it. Exceptions from `send` propagate and leave no mark, so the next
        attempt sends. Redis failures become `RetryableError`.
        """
        try:
            return await self._run(identity, send)
        except redis.exceptions.RedisError as exc:
            raise RetryableError(
                f"{self._target}: Redis unavailable for the sent mark ({type(exc).__name__})",
                target=self._target,
            ) from None

    async def _run(self, identity: str, send: Callable[[], Awaitable[None]]) -> bool:
        sent_key, lock_key = self.sent_key(identity), self.lock_key(identity)
        token = secrets.token_hex(16)
        if not await self._acquire(sent_key, lock_key, token):
            return False
        try:
            await send()
        except BaseException:
            await self._release(lock_key, token)
            raise
        # Sent: from here on the mark must land, whatever becomes of this attempt.
        task = asyncio.ensure_future(self._mark_sent(sent_key, lock_key, token))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)
        await asyncio.shield(task)
        return True

    async def _mark_sent(self, sent_key: str, lock_key: str, token: str) -> None:
        """Write the sent mark and release the lock (one step), retrying through a Redis
        outage."""
        deadline = time.monotonic() + MARK_PATIENCE_S
        pause = 0.1
        while True:
            try:
                await self._mark_script(
                    keys=[sent_key, lock_key], args=[token, int(time.time()), self._keep_s]
                )
                return
            except redis.exceptions.RedisError as exc:
                if time.monotonic() > deadline:
                    log.error(
                        "%s: sent, but the sent mark could not be written for %.0fs (%s); "
                        "a retry may send again",
                        self._target,
                        MARK_PATIENCE_S,
                        type(exc).__name__,
                    )
                    return
                if pause == 0.1:
                    log.warning(
                        "%s: sent; Redis is unavailable for the sent mark (%s), retrying",
                        self._target,
                        type(exc).__name__,
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _acquire(self, sent_key: str, lock_key: str, token: str) -> bool:
        """Take the lock (True) or learn the identity is already sent (False)."""
        deadline = time.monotonic() + self._wait_s
        pause = 0.02
        while True:
            state = await self._acquire_script(
                keys=[sent_key, lock_key], args=[token, self._lock_ms]
            )
            if state == b"sent":
                return False
            if state == b"acquired":
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RetryableError(
                    f"{self._target}: another worker is sending the same message",
                    target=self._target,
                    retry_after=max(int(state), 0) / 1000 or None,
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.5)

    async def _release(self, lock_key: str, token: str) -> None:
        try:
            await self._release_script(keys=[lock_key], args=[token])
        except redis.exceptions.RedisError:
            # the lock expires by itself after lock_s; nothing else to do
            log.warning("%s: could not release a send lock", self._target)
