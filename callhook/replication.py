"""Waiting until replicas hold a write: `[redis] replicas_ack = N`.

Redis replicates asynchronously: a write the primary confirmed is lost if the primary dies
before a replica received it and Sentinel promotes that replica. `WAIT N timeout` blocks
until N replicas acknowledged every write made *on the same connection*, so each write that
a promise rests on is sent with its `WAIT` in one pipeline (one connection, in order):

* the ingress's accept (service/accept.py): fewer than N replicas within the accept's
  budget answer 503, and the vendor's retry is the next try. A retry that finds the dedupe
  mark rewrites it (same value, same expiry) before its `WAIT`: replication is in order, so
  replicas holding the rewrite hold the first try's write too.
* a worker's retry re-enqueue and dead letter (`write_replicated`): the message they
  replace is acknowledged only once N replicas hold them. Until then the worker keeps
  confirming, with a backoff, as it keeps trying through a Redis outage. Each such write
  sets a marker key in the same pipeline; a confirmation rewrites the marker (`SET XX`) and
  waits again, so a write is not repeated (a retry enqueued twice would run twice), unless
  the marker is gone: the write was lost with a primary that failed over, and is written
  again. The marker is deleted once confirmed.

With N = 0 (the default) nothing here runs and no write waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.exceptions

from callhook import metrics

if TYPE_CHECKING:
    from callhook.config import RedisConfig

log = logging.getLogger("callhook.replication")

#: a marker's expiry, renewed by each confirmation and ended by the last one (it only
#: outlives its write if the worker dies or loses Redis for this long while confirming)
MARKER_TTL_S = 3600
#: the longest pause between two confirmations of one write
_MAX_PAUSE_S = 10.0


@dataclass(frozen=True, slots=True)
class Replicas:
    """Replicas that must hold a write (`count`), and how long one `WAIT` may block."""

    count: int
    wait_ms: int
    namespace: str

    @classmethod
    def from_config(cls, config: RedisConfig) -> Replicas | None:
        """None when `replicas_ack` is 0: writes are done when the primary says so."""
        if config.replicas_ack == 0:
            return None
        return cls(config.replicas_ack, config.wait_ms, config.namespace)

    def marker(self, token: str) -> str:
        return f"{self.namespace}:replicated:{token}"


def queue_mark_and_wait(pipe: Any, replicas: Replicas, marker: str, *, again: bool) -> None:
    """Queue on `pipe` (a blocking or an asyncio pipeline) the marker's write (with `again`:
    only if it still exists) and the `WAIT`."""
    pipe.set(marker, b"1", ex=MARKER_TTL_S, xx=again)
    pipe.wait(replicas.count, replicas.wait_ms)


async def write_replicated(
    client: redis.asyncio.Redis,
    replicas: Replicas,
    token: str,
    queue_write: Callable[[Any], Awaitable[None]],
    *,
    what: str,
    context: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Run the commands `queue_write` puts on a pipeline, then return once `replicas` hold
    them (see the module docstring); their results, or [] when a later confirmation found
    them written by a try whose answer was lost."""
    marker = replicas.marker(token)
    written: list[Any] = []

    async def write() -> int:
        async with client.pipeline(transaction=False) as pipe:
            await queue_write(pipe)
            queue_mark_and_wait(pipe, replicas, marker, again=False)
            results = await pipe.execute()
        written[:] = results[:-2]
        return int(results[-1])

    async def confirm() -> int | None:
        async with client.pipeline(transaction=False) as pipe:
            queue_mark_and_wait(pipe, replicas, marker, again=True)
            marked, acked = await pipe.execute()
        return None if marked is None else int(acked)

    await until_replicated(write, confirm, replicas, what=what, context=context)
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        await client.delete(marker)  # confirmed: the marker has done its job
    return written


def write_once_sync(
    client: redis.Redis, replicas: Replicas, marker: str, queue_write: Callable[[Any], None]
) -> int:
    """Blocking: run the commands `queue_write` puts on a pipeline with the marker and the
    `WAIT`; the replicas that acknowledged them."""
    with client.pipeline(transaction=False) as pipe:
        queue_write(pipe)
        queue_mark_and_wait(pipe, replicas, marker, again=False)
        results = pipe.execute()
    return int(results[-1])


def confirm_once_sync(client: redis.Redis, replicas: Replicas, marker: str) -> int | None:
    """Blocking: rewrite the marker and `WAIT`; the replicas that acknowledged it, or None
    when the marker is gone (the write must be done again)."""
    with client.pipeline(transaction=False) as pipe:
        queue_mark_and_wait(pipe, replicas, marker, again=True)
        marked, acked = pipe.execute()
    return None if marked is None else int(acked)


def forget_sync(client: redis.Redis, marker: str) -> None:
    """Blocking: delete a confirmed write's marker (it would otherwise expire)."""
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        client.delete(marker)


async def until_replicated(
    write: Callable[[], Awaitable[int]],
    confirm: Callable[[], Awaitable[int | None]],
    replicas: Replicas,
    *,
    what: str,
    context: Mapping[str, Any] | None = None,
) -> None:
    """`write` once, then `confirm` until `replicas.count` replicas acknowledged; `write`
    again whenever `confirm` finds the marker gone. A Redis error on the way is one more
    unconfirmed try: the next confirmation tells whether the write landed. `what` names the
    write in logs and in `callhook_replication_unconfirmed_total{where}`."""
    pause = 0.5
    tried = False
    while True:
        try:
            acked = await confirm() if tried else None
            if acked is None:
                tried = True
                acked = await write()
            if acked >= replicas.count:
                return
            metrics.replication_unconfirmed_total.labels(what).inc()
            problem = f"{acked} of {replicas.count} replica(s) confirmed in {replicas.wait_ms} ms"
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            problem = f"redis: {type(exc).__name__}"
        log.warning(
            "%s not yet replicated (%s); confirming again in %.1fs",
            what,
            problem,
            pause,
            extra=dict(context or {}),
        )
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE_S)
