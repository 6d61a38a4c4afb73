"""The ingress's counts for the console: deliveries accepted, duplicate and rejected per
source and minute, the rejections themselves (by code, and the newest 100), and when each
source last had one accepted or rejected.

The ingress notes each delivery in memory (no I/O on the request's path) and a task of
its lifespan writes what gathered once a second (`flush`): a flood of requests, bad ones
included, costs Redis one small pipeline a second, not a write each. A flush that fails is
reported like any journal write and its notes are dropped (the log has the rejections
too; the calls' own journal entries are written with each accept). Nothing of a request's
body or credentials is kept: its status, code, the reason the log has, the remote address
and the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict, deque
from typing import Any

import orjson
import redis.asyncio
import redis.exceptions

from callhook.journal import prefix
from callhook.journal.updates import iso_ms
from callhook.journal.writer import report_failure

#: rejections kept per source
LAST = 100
#: the bucket of deliveries to a source that is not configured (not a valid source name)
UNKNOWN_SOURCE = "*"
#: longest reason kept
REASON_CHARS = 200
FLUSH_INTERVAL_S = 1.0
#: how long per-minute counters are kept (the console shows the last hour)
MINUTES_KEPT_S = 7200


class IngressTally:
    def __init__(self, client: redis.asyncio.Redis, namespace: str, *, timeout_s: float) -> None:
        self.client = client
        self.prefix = prefix(namespace)
        self.timeout_s = timeout_s
        self._stopping = asyncio.Event()
        self._reset()

    def _reset(self) -> None:
        #: (minute, "acc:{source}" | "dup:{source}" | "rej:{source}") -> count
        self._per_minute: Counter[tuple[int, str]] = Counter()
        self._rejected: Counter[tuple[str, str]] = Counter()
        self._last: defaultdict[str, deque[bytes]] = defaultdict(lambda: deque(maxlen=LAST))
        #: health field -> epoch ms
        self._latest: dict[str, int] = {}

    def accepted(self, source: str, *, duplicate: bool) -> None:
        now_ms = int(time.time() * 1000)
        self._per_minute[(now_ms // 60000, f"{'dup' if duplicate else 'acc'}:{source}")] += 1
        self._latest[f"source:{source}:last_accepted"] = now_ms

    def rejected(
        self, source: str, *, status: int, code: str, reason: str, remote: str | None
    ) -> None:
        now_ms = int(time.time() * 1000)
        entry: dict[str, Any] = {
            "at": iso_ms(now_ms),
            "status": status,
            "code": code,
            "reason": reason[:REASON_CHARS],
            "remote": remote,
        }
        self._rejected[(source, code)] += 1
        self._per_minute[(now_ms // 60000, f"rej:{source}")] += 1
        self._last[source].append(orjson.dumps(entry))
        self._latest[f"source:{source}:last_rejected"] = now_ms

    async def flush(self) -> None:
        """Write what was noted since the last flush (never raises)."""
        if not self._per_minute:
            return
        per_minute, rejected, last, latest = (
            self._per_minute,
            self._rejected,
            self._last,
            self._latest,
        )
        self._reset()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.client.pipeline(transaction=False) as pipe:
                    for (minute, field), count in per_minute.items():
                        pipe.hincrby(f"{self.prefix}:stats:{minute}", field, count)
                        pipe.expire(f"{self.prefix}:stats:{minute}", MINUTES_KEPT_S)
                    for (source, code), count in rejected.items():
                        pipe.hincrby(f"{self.prefix}:rejected:{source}", code, count)
                    for source, entries in last.items():
                        key = f"{self.prefix}:rejected:{source}:last"
                        pipe.lpush(key, *entries)
                        pipe.ltrim(key, 0, LAST - 1)
                    for field, at_ms in latest.items():
                        pipe.hset(f"{self.prefix}:health", field, at_ms)
                    await pipe.execute()
        except TimeoutError:
            report_failure("ingress counts: no answer in time", "ingress")
        except (redis.exceptions.RedisError, OSError) as exc:
            report_failure(f"ingress counts: {type(exc).__name__}", "ingress")

    async def run(self) -> None:
        """Flush every FLUSH_INTERVAL_S until `stop()`, then once more.

        Ended by `stop()`, not by cancelling the task: redis-py (8.1) can absorb a
        cancellation that lands in a command (the task's cancel request is counted, no
        CancelledError is raised), and a loop ended by cancelling would then go on for
        ever, holding the ingress's shutdown open (redis/redis-py#2028 is of that kind)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_S):
                    await self._stopping.wait()
            await self.flush()

    def stop(self) -> None:
        """End `run` after one last flush (bounded by `timeout_s`)."""
        self._stopping.set()
