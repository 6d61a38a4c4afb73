"""The worker application: the broker, the actors on it, and the safety net around them.

`build_broker(config)` is what a worker process (workers/process.py) and the tests use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import redis.exceptions
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from callhook.config import Config
from callhook.errors import ConfigError
from callhook.queues import DELIVER_QUEUE, ENRICH_QUEUE, retry_queue
from callhook.redis_connect import sync_client
from callhook.replication import Replicas
from workers import runtime as runtime_module
from workers.actors.deliver import deliver
from workers.actors.enrich import enrich
from workers.broker import CallhookBroker
from workers.journaling import note_deliver, note_enrich
from workers.retrying import retry_later
from workers.runtime import WorkerTuning

log = logging.getLogger("callhook.workers")

#: seconds before retrying work whose run was cut short by a Redis outage
REDIS_OUTAGE_RETRY_S = 5.0
#: a worker process's exit status when a sink is misconfigured (as for a bad config file)
SINK_CONFIG_EXIT = 2
#: Dramatiq runs the lowest number first among the messages a worker process holds
FIRST_ATTEMPT_PRIORITY = 0
RETRY_PRIORITY = 100


def guarded(stage: str, body: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap a stage's actor (first attempts or retries) so nothing it was given can be lost.

    Without Dramatiq's Retries middleware an exception would get the message acked. Here a
    Redis outage mid-run re-enqueues the same work for later, and any other exception (a bug)
    dead-letters it with the exception as the reason. Both keep trying until Redis takes it.
    """

    @functools.wraps(body)
    async def run(**kwargs: Any) -> None:
        rt = runtime_module.runtime()
        try:
            await body(**kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning(
                "redis failed mid-run (%s); re-enqueueing the work",
                type(exc).__name__,
                extra={"source": kwargs.get("source"), "call_id": kwargs.get("call_id")},
            )
            await retry_later(rt.broker, stage, kwargs, REDIS_OUTAGE_RETRY_S)
        except Exception as exc:
            log.exception(
                "unexpected error; dead-lettering the work",
                extra={"source": kwargs.get("source"), "call_id": kwargs.get("call_id")},
            )
            reason = f"unexpected {type(exc).__name__}: {exc}"
            while True:
                try:
                    entry = await rt.dead_letters.add(
                        queue=stage,
                        actor=stage,
                        kwargs=kwargs,
                        reason=reason,
                        attempts=int(kwargs.get("attempt", 0)) + 1,
                        sink=kwargs.get("sink"),
                    )
                    break
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    await asyncio.sleep(1.0)
            if stage == DELIVER_QUEUE:
                now_ms = int(time.time() * 1000)
                await note_deliver(
                    rt,
                    kwargs,
                    "dead_letter",
                    started_ms=now_ms,
                    duration_ms=0,
                    error=exc,
                    reason=reason,
                    dead_letter=entry.id,
                )
            else:
                await note_enrich(
                    rt, kwargs, "dead_letter", error=exc, reason=reason, dead_letter=entry.id
                )

    return run


class RuntimeLifecycle(Middleware):
    """Starts housekeeping and the sinks with the worker; closes the process's clients on
    shutdown.

    Dramatiq logs and swallows an `Exception` from a boot hook, so a misconfigured sink ends
    the process with `SystemExit(SINK_CONFIG_EXIT)`: Dramatiq's supervisor then stops the
    other worker processes and exits with that status, and so does `callhook worker`. The
    event-loop thread is stopped first: it is not a daemon and would keep the process alive.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if isinstance(broker, CallhookBroker):
            broker.start_housekeeping()
        loop_thread = get_event_loop_thread()  # AsyncIO's hook, before ours, started it
        if loop_thread is None:
            return
        try:
            loop_thread.run_coroutine(runtime_module.start_sinks())
        except ConfigError as exc:
            log.critical("cannot start the worker: %s", exc)
            loop_thread.run_coroutine(runtime_module.shutdown())
            loop_thread.stop()
            raise SystemExit(SINK_CONFIG_EXIT) from None

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(runtime_module.shutdown())


def build_broker(config: Config, tuning: WorkerTuning | None = None) -> CallhookBroker:
    """A broker for `config` with the actors declared and the runtime configured."""
    broker = CallhookBroker(
        client=sync_client(config.redis),
        namespace=config.redis.namespace,
        replicas=Replicas.from_config(config.redis),
        heartbeat_timeout_s=config.workers.heartbeat_timeout_s,
    )
    # after AsyncIO: its after_worker_shutdown must run once ours has closed the clients
    broker.add_middleware(RuntimeLifecycle())
    # Each stage is two actors on one body: first attempts, and retries behind them.
    for stage, body in ((ENRICH_QUEUE, enrich), (DELIVER_QUEUE, deliver)):
        for name, priority in (
            (stage, FIRST_ATTEMPT_PRIORITY),
            (retry_queue(stage), RETRY_PRIORITY),
        ):
            dramatiq.Actor(
                guarded(stage, body),  # type: ignore[arg-type]
                broker=broker,
                actor_name=name,
                queue_name=name,
                priority=priority,
                options={"max_retries": 0},
            )
    runtime_module.configure(config, broker, tuning)
    return broker
