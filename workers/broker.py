"""Callhook's Dramatiq broker: the Redis broker with deliberate redelivery timing.

Dramatiq's Redis broker gives a message back to the queue when the worker that fetched it
stops heart-beating for `heartbeat_timeout` and a "maintenance" pass runs. Stock Dramatiq
heart-beats only while a consumer fetches, and runs maintenance on a random 0.1% of
commands, so after a SIGKILL a message could wait many minutes. Callhook:

* heart-beats every `HEARTBEAT_INTERVAL_S` (5 s) from a thread of its own, so a busy
  worker is never taken for dead;
* declares a worker dead after `HEARTBEAT_TIMEOUT_MS` (30 s) of silence;
* runs maintenance on every queue from that same thread at each beat.

So a message held by a SIGKILLed worker is redelivered within about 35 s while any other
worker runs (docs/operations.md).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, ShutdownNotifications

HEARTBEAT_TIMEOUT_MS = 30_000
HEARTBEAT_INTERVAL_S = 5.0
#: dead-lettered messages in Dramatiq's own XQ (only reached by bugs) are kept 7 days
DEAD_MESSAGE_TTL_MS = 7 * 24 * 3600 * 1000


class CallhookBroker(RedisBroker):
    def __init__(self, *, url: str, namespace: str, **options: Any) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            url=url,
            namespace=namespace,
            heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
            dead_message_ttl=DEAD_MESSAGE_TTL_MS,
            maintenance_chance=0,  # replaced by the housekeeping thread below
            middleware=[ShutdownNotifications(), CurrentMessage(), AsyncIO()],
            **options,
        )
        self._housekeeping_stop = threading.Event()
        self._housekeeping_thread: threading.Thread | None = None

    def start_housekeeping(self) -> None:
        """Heart-beat and run maintenance on every declared queue from a daemon thread,
        every HEARTBEAT_INTERVAL_S, for as long as the process lives (workers call this)."""
        if self._housekeeping_thread is not None:
            return
        self._housekeeping_thread = threading.Thread(
            target=self._housekeeping_loop, name="callhook-housekeeping", daemon=True
        )
        self._housekeeping_thread.start()

    def housekeeping(self) -> None:
        """One pass: the dispatch script's `qsize` with maintenance forced on, per queue.
        It records this process's heartbeat and requeues messages held by dead workers."""
        dispatch = self.scripts["dispatch"]
        for queue_name in sorted(self.queues | self.delay_queues):
            dispatch(
                keys=[self.namespace],
                args=[
                    "qsize",
                    int(time.time() * 1000),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    1,
                    self._max_unpack_size(),  # type: ignore[no-untyped-call]
                ],
            )

    def _housekeeping_loop(self) -> None:
        while not self._housekeeping_stop.wait(HEARTBEAT_INTERVAL_S):
            try:
                self.housekeeping()
            except Exception:  # noqa: S112 - outages are reported by the consumers
                continue

    def close(self) -> None:
        self._housekeeping_stop.set()
        super().close()
