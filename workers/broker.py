"""Callhook's Dramatiq broker: the Redis broker with deliberate redelivery timing.

Dramatiq's Redis broker gives a message back to the queue when the worker that fetched it
stops heart-beating for `heartbeat_timeout` and a "maintenance" pass runs. Stock Dramatiq
heart-beats only while a consumer fetches, and runs maintenance on a random 0.1% of
commands, so after a SIGKILL a message could wait many minutes. Callhook:

* heart-beats every sixth of its heartbeat timeout (5 s) from a thread of its own, so a
  busy worker is never taken for dead;
* declares a worker dead after `[workers] heartbeat_timeout_s` (30 s) of silence;
* runs maintenance on every queue from that same thread at each beat.

So a message held by a SIGKILLed worker is redelivered within about 35 s (the timeout and
one beat) while any other worker runs (docs/operations.md).

Delayed messages (retries waiting in a `.DQ` queue) need one more thing. A worker fetches
them into an in-memory delay queue, and when Redis goes away Dramatiq's consumer thread
drops that queue (or, when the failure hits its re-enqueue, dies) while the messages stay
in this live worker's ack set, where no heartbeat timeout ever frees them: retries that
were waiting during a Redis outage would never run until the worker restarts. Callhook:

* gives those messages back each time a delay-queue consumer (re)starts (`consume`): the
  consumer thread is the only holder of its delay queue's messages, and it restarts only
  with its in-memory queue empty;
* raises `RedisUnavailable`, which Dramatiq's consumer threads take as a connection error,
  when an enqueue finds Redis away, so the thread restarts instead of dying.

A live worker's ack set can also hold messages it is not working on, which no heartbeat
timeout frees either: a fetch whose reply was lost with the connection (Redis moved the
messages, the worker never saw them), or, after a Sentinel failover, an acknowledgement the
new primary never received (the work it stood for may be lost with it: the writes just
before it were in the same replication lag). Callhook keeps the Redis ids of the messages
each process fetched and has not acknowledged, nacked or given back (`do_fetch` and the
rest), and each housekeeping pass compares them with the process's ack sets: a message
found there twice in a row (one beat apart, so a fetch being recorded is not taken for
one) that the process does not hold is given back to its queue and logged (`gave back`).
A stray whose work was done runs once more, idempotently; none waits for a restart.

Its Redis client is handed in (callhook/redis_connect.py: a plain URL or Sentinel). With
`[redis] replicas_ack`, a worker's retry is enqueued by `enqueue_replicated`, which waits
until that many replicas hold it (callhook/replication.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import dramatiq
import redis.exceptions
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import AsyncIO, CurrentMessage, ShutdownNotifications

from callhook.replication import Replicas, write_once_sync

#: beats per heartbeat timeout: a worker is taken for dead after missing about six
HEARTBEATS_PER_TIMEOUT = 6
#: dead-lettered messages in Dramatiq's own XQ (only reached by bugs) are kept 7 days
DEAD_MESSAGE_TTL_MS = 7 * 24 * 3600 * 1000
#: message ids per requeue script call (Lua's unpack has a limit)
_REQUEUE_BATCH = 500

log = logging.getLogger("callhook.workers")


class RedisUnavailable(ConnectionClosed, redis.exceptions.ConnectionError):
    """Redis is unreachable: a connection error to Dramatiq and to redis-py's callers alike."""

    def __init__(self, message: str) -> None:
        super().__init__(message)  # type: ignore[no-untyped-call]


class CallhookBroker(RedisBroker):
    """`client`: a blocking client of the primary (callhook/redis_connect.py `sync_client`);
    `replicas`: what `enqueue_replicated` waits for (`[redis] replicas_ack`);
    `heartbeat_timeout_s`: `[workers] heartbeat_timeout_s`."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        namespace: str,
        replicas: Replicas | None = None,
        heartbeat_timeout_s: float = 30.0,
        **options: Any,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            client=client,
            namespace=namespace,
            heartbeat_timeout=int(heartbeat_timeout_s * 1000),
            dead_message_ttl=DEAD_MESSAGE_TTL_MS,
            maintenance_chance=0,  # replaced by the housekeeping thread below
            middleware=[ShutdownNotifications(), CurrentMessage(), AsyncIO()],
            **options,
        )
        self.replicas = replicas
        self.heartbeat_interval_s = heartbeat_timeout_s / HEARTBEATS_PER_TIMEOUT
        self._housekeeping_stop = threading.Event()
        self._housekeeping_thread: threading.Thread | None = None
        #: queue -> Redis ids of the messages this process fetched and still holds
        self._held: defaultdict[str, set[str]] = defaultdict(set)
        self._held_lock = threading.Lock()
        #: queue -> ids the last housekeeping pass found in the ack set but not held
        self._strays: dict[str, set[str]] = {}

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if queue_name.endswith(".DQ"):
            self._requeue_held(queue_name)
        return super().consume(queue_name, prefetch, timeout)

    # What this process holds: the consumers' fetches, acks, nacks and requeues, each
    # Dramatiq's own dispatch command, noted around it.

    def do_fetch(self, queue_name: str, count: int) -> list[bytes | None]:
        fetched: list[bytes | None] = self._dispatch("fetch")(queue_name, count)  # type: ignore[no-untyped-call]
        ids = {
            dramatiq.Message.decode(data).options["redis_message_id"]
            for data in fetched
            if data is not None
        }
        with self._held_lock:
            self._held[queue_name] |= ids
        return fetched

    def do_ack(self, queue_name: str, message_id: str) -> Any:
        try:
            return self._dispatch("ack")(queue_name, message_id)  # type: ignore[no-untyped-call]
        finally:
            self._release_held(queue_name, [message_id])

    def do_nack(self, queue_name: str, message_id: str) -> Any:
        try:
            return self._dispatch("nack")(queue_name, message_id)  # type: ignore[no-untyped-call]
        finally:
            self._release_held(queue_name, [message_id])

    def do_requeue(self, queue_name: str, *message_ids: str) -> Any:
        result = self._dispatch("requeue")(queue_name, *message_ids)  # type: ignore[no-untyped-call]
        self._release_held(queue_name, message_ids)
        return result

    def _release_held(self, queue_name: str, message_ids: Iterable[str]) -> None:
        with self._held_lock:
            self._held[queue_name].difference_update(message_ids)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        try:
            return super().enqueue(message, delay=delay)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RedisUnavailable(f"enqueue failed: {type(exc).__name__}: {exc}") from exc

    def enqueue_replicated(
        self, message: dramatiq.Message[Any], *, delay: int | None, marker: str
    ) -> int:
        """Dramatiq's `enqueue` (dramatiq 2.2.1, pinned), sent in one pipeline with the
        marker and a `WAIT` for `self.replicas` (callhook/replication.py): how many
        replicas hold it.

        The same message in Redis as `enqueue` writes: a new Redis message id, on the delay
        queue with its `eta` when delayed, by Dramatiq's own dispatch script."""
        assert self.replicas is not None, "a broker made without replicas to wait for"
        queue_name = message.queue_name
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        if delay is not None:
            queue_name = dq_name(queue_name)
            message = message.copy(queue_name=queue_name, options={"eta": current_millis() + delay})
        dispatch = self.scripts["dispatch"]
        args = [
            "enqueue",
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            0,  # no maintenance: the housekeeping thread does it
            self._max_unpack_size(),  # type: ignore[no-untyped-call]
            message.options["redis_message_id"],
            message.encode(),
        ]
        self.emit_before("enqueue", message, delay)
        try:
            acked = write_once_sync(
                self.client,
                self.replicas,
                marker,
                lambda pipe: dispatch(keys=[self.namespace], args=args, client=pipe),
            )
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RedisUnavailable(f"enqueue failed: {type(exc).__name__}: {exc}") from exc
        self.emit_after("enqueue", message, delay)
        return acked

    def _ack_set(self, queue_name: str) -> set[str]:
        """The Redis ids in this process's ack set of `queue_name`."""
        key = f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"
        return {m.decode() if isinstance(m, bytes) else str(m) for m in self.client.smembers(key)}

    def _requeue_held(self, queue_name: str) -> None:
        """Give back to `queue_name` every message this process fetched from it and has
        not acknowledged (see the module docstring for why that is safe for delay queues)."""
        try:
            held = sorted(self._ack_set(queue_name))
            for start in range(0, len(held), _REQUEUE_BATCH):
                self.do_requeue(queue_name, *held[start : start + _REQUEUE_BATCH])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RedisUnavailable(f"requeue failed: {type(exc).__name__}: {exc}") from exc

    def start_housekeeping(self) -> None:
        """Heart-beat and run maintenance on every declared queue from a daemon thread,
        every `heartbeat_interval_s`, for as long as the process lives (workers call this)."""
        if self._housekeeping_thread is not None:
            return
        self._housekeeping_thread = threading.Thread(
            target=self._housekeeping_loop, name="callhook-housekeeping", daemon=True
        )
        self._housekeeping_thread.start()

    def housekeeping(self) -> None:
        """One pass: the dispatch script's `qsize` with maintenance forced on, per queue.
        It records this process's heartbeat and requeues messages held by dead workers;
        then this process's own strays are given back (see the module docstring)."""
        dispatch = self.scripts["dispatch"]
        queue_names = sorted(self.queues | self.delay_queues)
        for queue_name in queue_names:
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
        for queue_name in queue_names:
            self._give_back_strays(queue_name)

    def _give_back_strays(self, queue_name: str) -> None:
        """Requeue what this process's ack set of `queue_name` held at this pass and the
        last one while the process did not hold it."""
        in_ack_set = self._ack_set(queue_name)
        with self._held_lock:
            strays = in_ack_set - self._held[queue_name]
        confirmed = sorted(strays & self._strays.get(queue_name, set()))
        self._strays[queue_name] = strays.difference(confirmed)
        if not confirmed:
            return
        for start in range(0, len(confirmed), _REQUEUE_BATCH):
            self.do_requeue(queue_name, *confirmed[start : start + _REQUEUE_BATCH])
        log.warning(
            "gave back %d message(s) of %s that this worker's acknowledgement set held but "
            "the worker was not working on (a fetch whose reply was lost, or an "
            "acknowledgement a Redis failover lost); they run again",
            len(confirmed),
            queue_name,
            extra={"queue": queue_name, "given_back": len(confirmed)},
        )

    def _housekeeping_loop(self) -> None:
        while not self._housekeeping_stop.wait(self.heartbeat_interval_s):
            try:
                self.housekeeping()
            except Exception:  # noqa: S112 - outages are reported by the consumers
                continue

    def close(self) -> None:
        self._housekeeping_stop.set()
        super().close()
        self.client.close()  # its pool (and a Sentinel client's sentinel connections)
