"""The work queues and the Redis layout ingress and workers share.

Queues are Dramatiq queues on its Redis broker (pinned: dramatiq==2.2.1). Ingress writes the
enrich message itself, in the broker's own layout, inside one Lua script that also sets the
dedupe mark (service/accept.py), so "accepted" and "enqueued" cannot diverge. The layout
(from dramatiq/brokers/redis/dispatch.lua) is:

    {namespace}:{queue}        list of redis message ids, consumed from the left
    {namespace}:{queue}.msgs   hash: redis message id -> encoded message

tests/service/test_accept.py proves a message written this way is consumed by a real
Dramatiq worker.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

# Two stages, each a queue and an actor of the same name. Reconcile has no queue of its
# own: the scheduler runs one reconcile at a time under a fleet-wide lock and feeds the
# calls it finds to the enrich queue, as ingress does.
ENRICH_QUEUE = "callhook.enrich"
DELIVER_QUEUE = "callhook.deliver"
STAGES = (ENRICH_QUEUE, DELIVER_QUEUE)

ENRICH_ACTOR = ENRICH_QUEUE
DELIVER_ACTOR = DELIVER_QUEUE


def retry_queue(stage: str) -> str:
    """The queue (and actor) of a stage's retries.

    Work that failed once waits out its backoff and then runs from here, at a lower
    priority than first attempts: a vendor or a sink that is down fills only this queue, and
    a worker always takes the first attempts waiting for the healthy ones before it."""
    return f"{stage}.retry"


ENRICH_RETRY_QUEUE = retry_queue(ENRICH_QUEUE)
DELIVER_RETRY_QUEUE = retry_queue(DELIVER_QUEUE)
#: every queue workers consume; dead letters are kept per stage (`STAGES`)
QUEUES = (ENRICH_QUEUE, ENRICH_RETRY_QUEUE, DELIVER_QUEUE, DELIVER_RETRY_QUEUE)


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A Dramatiq message ready to be written: its broker id and its encoded bytes."""

    redis_message_id: str
    queue_name: str
    data: bytes


def encode_message(
    queue_name: str,
    actor_name: str,
    kwargs: dict[str, Any],
    *,
    options: dict[str, Any] | None = None,
) -> EncodedMessage:
    """Encode a message exactly as `dramatiq.Message.encode` would (JSON, same fields).

    Its ids are `uuid4`s, from the operating system's entropy: never from `random`, whose
    state any library may seed (a fixed seed repeated ids, and the message hash kept one
    message for two)."""
    redis_message_id = str(uuid.uuid4())
    message = {
        "queue_name": queue_name,
        "actor_name": actor_name,
        "args": [],
        "kwargs": kwargs,
        "options": {**(options or {}), "redis_message_id": redis_message_id},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    return EncodedMessage(redis_message_id, queue_name, orjson.dumps(message))


def queue_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}"


def messages_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.msgs"


def dedupe_key(namespace: str, source: str, event_key: str) -> str:
    return f"{namespace}:seen:{source}:{event_key}"


def dlq_index_key(namespace: str, queue_name: str) -> str:
    """Sorted set of dead-letter entry ids for a stage, scored by when they died."""
    return f"{namespace}:dlq:{queue_name}"


def dlq_entries_key(namespace: str, queue_name: str) -> str:
    """Hash: dead-letter entry id -> the entry (message, reason, source, call, sink)."""
    return f"{namespace}:dlq:{queue_name}:entries"
