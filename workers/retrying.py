"""Retry schedules, and re-enqueueing that cannot silently drop work.

Callhook does not use Dramatiq's Retries middleware: when its delayed re-enqueue fails
(Redis away), it logs and lets the message be acked, losing it (Bogdanp/dramatiq#545).
Actors instead re-enqueue a retry themselves with `retry_later`, on the stage's retry queue
(callhook/queues.py `retry_queue`), and keep trying until Redis takes it. Until then the
original message is not acked, so a worker killed meanwhile leaves it to be redelivered.
With `[redis] replicas_ack`, "taken" means held by that many replicas (callhook/replication.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

import dramatiq
import redis.exceptions

from callhook.config import RetriesConfig
from callhook.http import backoff_s
from callhook.queues import retry_queue
from callhook.replication import confirm_once_sync, forget_sync, until_replicated
from workers.broker import CallhookBroker

log = logging.getLogger("callhook.workers")

#: Dramatiq's Redis broker refuses delays of 7 days or more
_MAX_DELAY_S = 6 * 24 * 3600


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` retries after the first try, backing off from `base_s` to `cap_s`."""

    max_attempts: int
    base_s: float
    cap_s: float

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def delay_s(self, attempt: int, retry_after: float | None = None) -> float:
        """The backoff for retry number `attempt`, or the remote's `Retry-After` when that
        is longer. A shorter Retry-After does not shorten it: a service answering 429 with
        `Retry-After: 1` through an outage would otherwise spend the whole budget in seconds."""
        delay = backoff_s(attempt, base_s=self.base_s, cap_s=self.cap_s)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, _MAX_DELAY_S)


@dataclass(frozen=True, slots=True)
class RetryPolicies:
    """The schedules workers follow: `DEFAULT_POLICIES`, with what the config's `[retries.*]`
    tables set (`policies_from_config`); tests shorten them."""

    # Each delay is drawn from [c/2, c], c = min(cap, base * 2**attempt): the totals below
    # are the sums of those ranges.

    #: vendor 5xx / timeouts / 429: 14 retries, 2 s doubling to 10 min (34-67 min in all)
    vendor_transient: RetryPolicy = RetryPolicy(max_attempts=14, base_s=2.0, cap_s=600.0)
    #: Get Call 404 right after the event, or summary/transcript not ready: 6 retries from
    #: 10 s to 5 min (5-10 min in all), then the record is kept from the payload alone, flagged
    not_ready: RetryPolicy = RetryPolicy(max_attempts=6, base_s=10.0, cap_s=300.0)
    #: sink outages: 16 retries, 2 s doubling to 15 min (1-2 h in all), then dead-lettered
    sink_transient: RetryPolicy = RetryPolicy(max_attempts=16, base_s=2.0, cap_s=900.0)


DEFAULT_POLICIES = RetryPolicies()


def policies_from_config(retries: RetriesConfig) -> RetryPolicies:
    """`DEFAULT_POLICIES` with the schedules the config's `[retries.*]` tables set."""
    chosen = {
        name: RetryPolicy(policy.max_attempts, policy.base_s, policy.cap_s)
        for name in RetriesConfig.model_fields
        if (policy := getattr(retries, name)) is not None
    }
    return replace(DEFAULT_POLICIES, **chosen)


async def retry_later(
    broker: CallhookBroker, stage: str, kwargs: dict[str, Any], delay_s: float
) -> None:
    """Enqueue a delayed retry of `stage`'s work on its retry queue; on a Redis outage,
    keep trying until it is taken (with the broker's `replicas`: until they hold it)."""
    queue = retry_queue(stage)
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name=queue, args=(), kwargs=kwargs, options={}
    )
    delay_ms = int(delay_s * 1000)
    replicas = broker.replicas
    if replicas is not None:
        marker = replicas.marker(f"retry:{message.message_id}")

        async def write() -> int:
            return await asyncio.to_thread(
                broker.enqueue_replicated, message, delay=delay_ms, marker=marker
            )

        async def confirm() -> int | None:
            return await asyncio.to_thread(confirm_once_sync, broker.client, replicas, marker)

        context = {"source": kwargs.get("source"), "call_id": kwargs.get("call_id")}
        await until_replicated(write, confirm, replicas, what="retry", context=context)
        await asyncio.to_thread(forget_sync, broker.client, marker)
        return
    pause = 0.5
    while True:
        try:
            await asyncio.to_thread(broker.enqueue, message, delay=delay_ms)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            log.warning(
                "could not enqueue a retry (%s); trying again in %.1fs", type(exc).__name__, pause
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)
