"""Rejected deliveries, per source: counts by code and the newest 100, for the console.

The ingress notes each rejection in memory (`note`, no I/O on the request's path) and a
task of its lifespan writes what gathered once a second (`flush`). A flood of bad requests
therefore costs Redis one small pipeline a second, not a write each; a flush that fails is
reported like any journal write and its notes are dropped (they are in the log too).
Nothing of the request's body or credentials is kept: its status, code, the reason the
log has, the remote address and the time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from typing import Any

import orjson
import redis.asyncio
import redis.exceptions

from callhook.journal import prefix
from callhook.journal.updates import iso_ms
from callhook.journal.writer import report_failure

log = logging.getLogger("callhook.journal")

#: rejections kept per source
LAST = 100
#: the bucket of deliveries to a source that is not configured (not a valid source name)
UNKNOWN_SOURCE = "*"
#: longest reason kept
REASON_CHARS = 200
FLUSH_INTERVAL_S = 1.0


class RejectionLog:
    def __init__(self, client: redis.asyncio.Redis, namespace: str, *, timeout_s: float) -> None:
        self.client = client
        self.prefix = prefix(namespace)
        self.timeout_s = timeout_s
        self._counts: Counter[tuple[str, str]] = Counter()
        self._per_minute: Counter[tuple[int, str]] = Counter()
        self._last: defaultdict[str, deque[bytes]] = defaultdict(lambda: deque(maxlen=LAST))
        self._newest: dict[str, int] = {}

    def note(self, source: str, *, status: int, code: str, reason: str, remote: str | None) -> None:
        now_ms = int(time.time() * 1000)
        entry: dict[str, Any] = {
            "at": iso_ms(now_ms),
            "status": status,
            "code": code,
            "reason": reason[:REASON_CHARS],
            "remote": remote,
        }
        self._counts[(source, code)] += 1
        self._per_minute[(now_ms // 60000, source)] += 1
        self._last[source].append(orjson.dumps(entry))
        self._newest[source] = now_ms

    async def flush(self) -> None:
        """Write what was noted since the last flush (never raises)."""
        if not self._counts:
            return
        counts, per_minute, last, newest = self._counts, self._per_minute, self._last, self._newest
        self._counts, self._per_minute, self._newest = Counter(), Counter(), {}
        self._last = defaultdict(lambda: deque(maxlen=LAST))
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.client.pipeline(transaction=False) as pipe:
                    for (source, code), count in counts.items():
                        pipe.hincrby(f"{self.prefix}:rejected:{source}", code, count)
                    for source, entries in last.items():
                        key = f"{self.prefix}:rejected:{source}:last"
                        pipe.lpush(key, *entries)
                        pipe.ltrim(key, 0, LAST - 1)
                    for (minute, source), count in per_minute.items():
                        pipe.hincrby(f"{self.prefix}:stats:{minute}", f"rej:{source}", count)
                        pipe.expire(f"{self.prefix}:stats:{minute}", 7200)
                    for source, at_ms in newest.items():
                        pipe.hset(f"{self.prefix}:health", f"source:{source}:last_rejected", at_ms)
                    await pipe.execute()
        except TimeoutError:
            report_failure("rejections: no answer in time", "ingress")
        except (redis.exceptions.RedisError, OSError) as exc:
            report_failure(f"rejections: {type(exc).__name__}", "ingress")

    async def run(self) -> None:
        """Flush every FLUSH_INTERVAL_S until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await self.flush()
        finally:
            await self.flush()
