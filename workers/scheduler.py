"""The reconcile scheduler: every `[reconcile].interval_s`, reconcile each source over the
last `lookback_s`, once per interval and one run at a time across the fleet.

* Each interval is claimed first: `{ns}:reconcile:interval` is set with NX and an expiry of
  0.9 x interval_s (Redis's clock, so the hosts' clocks do not matter). The scheduler that
  sets it runs; any other scheduler ticking before it expires skips its tick, so a fleet
  of schedulers, each ticking on its own phase, reconciles once per interval, not once per
  host. A scheduler that dies after its claim costs one interval: the next run starts where
  the last recorded window ended.
* The fleet lock is a Redis key (`{ns}:reconcile:lock`) set with NX and an expiry, holding a
  random token; the holder renews it while it runs and deletes it (only if still its own)
  when done. A scheduler that finds it taken skips that tick; one whose process dies leaves
  a lock that expires after `lock_ttl_s`. A run that loses its lock (renewal finds another
  token) is cancelled.
* After a source's window is reconciled without error, its end is recorded
  (`{ns}:reconcile:window:{source}`, ISO-8601 UTC). The next run starts at the earlier of
  that end and now - lookback, so an outage longer than the lookback is caught up from
  where the last good run stopped. Long catch-ups go in chunks of at most `chunk_s`, each
  recorded as it completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio
import redis.exceptions

from callhook.config import Config
from workers.launch import serve_metrics
from workers.reconcile import Reconciler, Summary, iso

log = logging.getLogger("callhook.workers.scheduler")

# KEYS: lock. ARGV: token, ttl_ms. 1 when the token still holds the lock (renewed), else 0.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lock. ARGV: token. Deletes the lock only if it is still ours.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LockLost(Exception):
    """Another scheduler holds the lock now (ours expired while we ran)."""


def lock_key(namespace: str) -> str:
    return f"{namespace}:reconcile:lock"


def interval_key(namespace: str) -> str:
    return f"{namespace}:reconcile:interval"


def window_key(namespace: str, source: str) -> str:
    return f"{namespace}:reconcile:window:{source}"


class FleetLock:
    """One holder at a time across every scheduler on this Redis namespace."""

    def __init__(self, client: redis.asyncio.Redis, namespace: str, *, ttl_s: float) -> None:
        self.client = client
        self.key = lock_key(namespace)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = secrets.token_hex(16)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(self) -> bool:
        return bool(await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> None:
        if not await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise LockLost("the reconcile lock expired and another scheduler took it")

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.token])

    async def keep(self, until: asyncio.Event) -> None:
        """Renew every third of the expiry until `until` is set; raise LockLost if it went.

        Ended by the event rather than by cancelling: a cancellation landing in `renew`
        can be absorbed by redis-py (callhook/journal/tally.py `run`), and a keeper that
        went on would hold the tick, and the fleet's lock, for ever."""
        while not until.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ttl_ms / 3000):
                    await until.wait()
                    return
            await self.renew()


@dataclass(frozen=True, slots=True)
class Schedule:
    """When and how far back to reconcile (from `[reconcile]`, tests shorten them)."""

    interval_s: float
    lookback_s: float
    lock_ttl_s: float = 60.0
    #: the longest window one run covers; a longer catch-up is split and recorded per chunk
    chunk_s: float = 86_400.0

    @classmethod
    def from_config(cls, config: Config) -> Schedule:
        return cls(interval_s=config.reconcile.interval_s, lookback_s=config.reconcile.lookback_s)


class Scheduler:
    """Runs `tick` every `schedule.interval_s` until stopped."""

    def __init__(
        self,
        reconciler: Reconciler,
        schedule: Schedule,
        *,
        clock: Callable[[], float] = time.time,
        on_summary: Callable[[Summary], None] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.schedule = schedule
        self.clock = clock
        self.on_summary = on_summary
        self.namespace = reconciler.config.redis.namespace
        self.redis = reconciler.redis

    async def run(self, stop: asyncio.Event) -> None:
        """Tick now and then every interval until `stop` is set. A run in progress is then
        cancelled: it records nothing more and releases the lock. Redis trouble during a
        tick is logged; the next tick tries again."""
        stopping = asyncio.create_task(stop.wait())
        ticking: asyncio.Task[list[Summary] | None] | None = None
        try:
            while not stop.is_set():
                started = time.monotonic()
                ticking = asyncio.create_task(self.tick())
                await asyncio.wait({ticking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not ticking.done():
                    log.info("stopping: cancelling the reconcile run in progress")
                    ticking.cancel()
                try:
                    await ticking
                except asyncio.CancelledError:
                    return
                except (redis.exceptions.RedisError, OSError) as exc:
                    log.error("reconcile tick failed: Redis: %s: %s", type(exc).__name__, exc)
                wait = max(0.0, self.schedule.interval_s - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), timeout=wait)
        finally:
            stopping.cancel()
            if ticking is not None and not ticking.done():  # we were cancelled ourselves
                ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking

    async def tick(self) -> list[Summary] | None:
        """One scheduled run over every source, if no scheduler has claimed this interval
        yet and the fleet lock is free (else None)."""
        if not await self.claim_interval():
            log.info("another scheduler reconciled this interval; skipping this tick")
            return None
        lock = FleetLock(self.redis, self.namespace, ttl_s=self.schedule.lock_ttl_s)
        if not await lock.acquire():
            log.info("another scheduler is reconciling; skipping this tick")
            return None
        summaries: list[Summary] = []
        try:
            async with asyncio.TaskGroup() as group:
                worked = asyncio.Event()
                group.create_task(lock.keep(until=worked))
                work = group.create_task(self._every_source(summaries))
                work.add_done_callback(lambda _: worked.set())
        except* LockLost as lost:
            log.error("reconcile run cancelled: %s", lost.exceptions[0])
        except* (redis.exceptions.RedisError, OSError) as failed:
            error = failed.exceptions[0]
            log.error("reconcile run ended: Redis: %s: %s", type(error).__name__, error)
        finally:
            await lock.release()
        return summaries

    async def claim_interval(self) -> bool:
        """True when this scheduler is the fleet's first to tick in this interval. The
        claim lasts 0.9 x interval_s: the same scheduler's next tick, one interval later,
        finds it gone even when the Redis round trip made it a little late."""
        claimed = await self.redis.set(
            interval_key(self.namespace),
            secrets.token_hex(8),
            nx=True,
            px=max(1, int(self.schedule.interval_s * 900)),
        )
        return bool(claimed)

    async def _every_source(self, summaries: list[Summary]) -> None:
        for source in sorted(self.reconciler.config.sources):
            now = datetime.fromtimestamp(self.clock(), UTC)
            # whole milliseconds: the recorded end (ISO, ms) then reads back equal
            until = now.replace(microsecond=now.microsecond // 1000 * 1000)
            since = await self.window_start(source, until)
            while since < until:
                end = min(until, since + timedelta(seconds=self.schedule.chunk_s))
                summary = await self.reconciler.run(source, since, end)
                summaries.append(summary)
                if self.on_summary is not None:
                    self.on_summary(summary)
                if summary.error is not None:
                    break  # the window stays unrecorded: the next tick starts here again
                await self.redis.set(window_key(self.namespace, source), iso(end))
                since = end

    async def window_start(self, source: str, until: datetime) -> datetime:
        """The earlier of the last recorded window end and `until` - lookback."""
        lookback = until - timedelta(seconds=self.schedule.lookback_s)
        raw = await self.redis.get(window_key(self.namespace, source))
        if raw is None:
            return lookback
        try:
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            recorded = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            log.warning("unreadable recorded window end %r; using the lookback", raw)
            return lookback
        return min(recorded, lookback)


def run_scheduler(config: Config, *, metrics_port: int | None = None) -> int:
    """`callhook scheduler`: `serve` in the foreground until SIGINT/SIGTERM (main thread),
    its Prometheus metrics (`callhook_reconcile_calls_total`) on `metrics_port` if given."""
    if metrics_port is not None:
        serve_metrics(metrics_port)

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, stop)

    asyncio.run(until_signalled())
    return 0


async def serve(config: Config, stop: asyncio.Event) -> None:
    """The scheduler for `config` until `stop` is set; with `interval_s = 0` it only waits
    (so a Procfile line for it stays up)."""
    schedule = Schedule.from_config(config)
    if schedule.interval_s <= 0:
        log.info("reconcile scheduler disabled ([reconcile].interval_s = 0); idling")
        await stop.wait()
        return
    if not config.sources:
        log.info("no sources configured: the scheduler has nothing to reconcile")
    log.info(
        "reconcile scheduler: every %ss over the last %ss, sources: %s",
        schedule.interval_s,
        schedule.lookback_s,
        ", ".join(sorted(config.sources)) or "none",
    )
    async with Reconciler.open(config) as reconciler:
        await Scheduler(reconciler, schedule).run(stop)
