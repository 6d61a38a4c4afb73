"""A worker process stops within its shutdown timeout, whatever Redis does.

On SIGTERM Dramatiq stops fetching, gives its worker threads the time it was told to
finish their messages, then puts prefetched ones back and closes. With Redis unreachable
that need not end: threads retry a retry's enqueue or an ack for as long as Redis is away,
and Dramatiq's requeue of prefetched messages raises out of its shutdown, leaving the
process hanging on its event-loop thread. So from SIGTERM a watchdog thread:

* at `[workers].shutdown_timeout_s`, if messages are still in flight, logs one line and
  exits with `SHUTDOWN_TIMEOUT_EXIT`, leaving them unacknowledged;
* `SHUTDOWN_GRACE_S` later, if the process has still not exited (nothing in flight, but
  stuck putting messages back), does the same.

Unacknowledged messages stay in this process's ack set in Redis and are redelivered once
its heartbeat expires (workers/broker.py). Dramatiq itself is given the timeout plus the
grace (`dramatiq_timeout_ms`), so it never abandons in-flight work before we do.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import NoReturn

import dramatiq
from dramatiq.middleware import Middleware

log = logging.getLogger("callhook.workers")

#: `callhook worker`'s status (and `callhook up`'s) when a worker process gave up stopping
SHUTDOWN_TIMEOUT_EXIT = 5
#: after the timeout, how long a process with nothing in flight gets to finish stopping
SHUTDOWN_GRACE_S = 10.0


def dramatiq_timeout_ms(timeout_s: float) -> int:
    """Dramatiq's `--worker-shutdown-timeout` for our timeout: ours runs out first."""
    return int((timeout_s + SHUTDOWN_GRACE_S) * 1000)


class ShutdownDeadline(Middleware):
    """Counts the messages in flight (from the start of processing to the ack), and arms
    the watchdog when the worker starts shutting down. For worker processes only: it ends
    the process."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._armed = False

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        with self._lock:
            self._in_flight.add(message.message_id)

    def after_ack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._settled(message)

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._settled(message)

    def _settled(self, message: dramatiq.MessageProxy) -> None:
        with self._lock:
            self._in_flight.discard(message.message_id)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not self._armed:
            self._armed = True
            threading.Thread(target=self._watch, name="callhook-shutdown", daemon=True).start()

    def _watch(self) -> None:
        time.sleep(self.timeout_s)
        held = self.in_flight()
        if held:
            give_up(
                f"shutdown timeout ({self.timeout_s:g}s) passed with {held} message(s) in "
                f"flight: exiting with status {SHUTDOWN_TIMEOUT_EXIT}, leaving them "
                "unacknowledged; they are redelivered once this worker's heartbeat expires"
            )
        time.sleep(SHUTDOWN_GRACE_S)
        give_up(
            f"worker still stopping {SHUTDOWN_GRACE_S:g}s after its shutdown timeout "
            f"({self.timeout_s:g}s; is Redis unreachable?): exiting with status "
            f"{SHUTDOWN_TIMEOUT_EXIT}; messages it held unacknowledged are redelivered once "
            "its heartbeat expires"
        )


def give_up(reason: str) -> NoReturn:
    """Log `reason` and end the process now: no thread of it gets to run (or ack) again."""
    log.error(reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(SHUTDOWN_TIMEOUT_EXIT)
