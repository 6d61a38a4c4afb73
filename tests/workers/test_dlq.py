"""Dead letters through the CLI: list as a table (every field escaped for the terminal),
replay re-enqueues and removes, purge; retention and the cap, on write and on list."""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import cast

import orjson
import pytest
import redis
import redis.asyncio
from click.testing import CliRunner
from prometheus_client import REGISTRY

from callhook.cli import main
from callhook.config import DeadLettersConfig
from callhook.dead_letters import MAX_ENTRIES, RETENTION, DeadLetters
from callhook.queues import (
    DELIVER_ACTOR,
    DELIVER_QUEUE,
    ENRICH_ACTOR,
    ENRICH_QUEUE,
    dlq_entries_key,
    dlq_index_key,
    queue_key,
)
from callhook.vendors.kit import Faults
from tests.workers.harness import running_pipeline


def config_file(tmp_path: Path, redis_url: str, namespace: str) -> str:
    path = tmp_path / "callhook.toml"
    path.write_text(f'[redis]\nurl = "{redis_url}"\nnamespace = "{namespace}"\n')
    return str(path)


def add_entries(redis_url: str, namespace: str) -> None:
    async def add() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        dlq = DeadLetters(client, namespace)
        await dlq.add(
            queue=ENRICH_QUEUE,
            actor=ENRICH_ACTOR,
            reason="openphone API answered HTTP 401",
            kwargs={"source": "quo", "call_id": "AC1", "event_key": "e1", "attempt": 0},
            attempts=1,
        )
        await dlq.add(
            queue=DELIVER_QUEUE,
            actor=DELIVER_ACTOR,
            reason="slack: channel_not_found",
            kwargs={"sink": "alerts", "source": "quo", "call_id": "AC2", "attempt": 3},
            attempts=4,
            sink="alerts",
        )
        await client.aclose()

    asyncio.run(add())


def test_list_replay_purge(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    add_entries(redis_server_url, redis_namespace)
    config = config_file(tmp_path, redis_server_url, redis_namespace)
    runner = CliRunner()

    listed = runner.invoke(main, ["dlq", "list", "--config", config])
    assert listed.exit_code == 0
    header, first, second, total = listed.output.strip().splitlines()
    assert header.split() == ["WHEN", "STAGE", "SINK", "SOURCE", "CALL", "ID", "REASON"]
    assert "enrich" in first
    assert "AC1" in first
    assert "openphone API answered HTTP 401" in first
    assert "alerts" in second
    assert "channel_not_found" in second
    assert total == "2 dead letter(s)"

    only_sink = runner.invoke(main, ["dlq", "list", "--config", config, "--sink", "alerts"])
    assert "AC2" in only_sink.output
    assert "AC1" not in only_sink.output

    refused = runner.invoke(main, ["dlq", "replay", "--config", config])
    assert refused.exit_code == 2

    replayed = runner.invoke(main, ["dlq", "replay", "--config", config, "--sink", "alerts"])
    assert replayed.output.strip() == "replayed 1 dead letter(s)"
    (message_id,) = redis_sync.lrange(queue_key(redis_namespace, DELIVER_QUEUE), 0, -1)
    raw = redis_sync.hget(f"{redis_namespace}:{DELIVER_QUEUE}.msgs", message_id)
    assert raw is not None
    message = orjson.loads(raw)
    assert message["actor_name"] == DELIVER_ACTOR
    assert message["kwargs"]["call_id"] == "AC2"
    assert message["kwargs"]["attempt"] == 0  # a fresh retry budget

    purged = runner.invoke(main, ["dlq", "purge", "--config", config, "--yes"])
    assert purged.output.strip() == "purged 1 dead letter(s)"
    empty = runner.invoke(main, ["dlq", "list", "--config", config])
    assert empty.output.strip() == "no dead letters"


# --- what a dead letter can carry to the operator's terminal ------------------------------

#: a payload's call id and a reason that would recolour, ring, rewrite the line, set the
#: window title, clear the screen (C1 CSI) and reverse the text after it, raw on a terminal
HOSTILE_CALL_ID = "AC\x1b[31mRED\x1b[0m\x07"
HOSTILE_REASON = "sink said\r\x1b]0;owned\x07\nfake line\x9b2J \u202egnp.exe\x7f"


def is_terminal_control(char: str) -> bool:
    return char != "\n" and unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def test_list_escapes_control_characters(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    async def add() -> None:
        client = redis.asyncio.Redis.from_url(redis_server_url)
        await DeadLetters(client, redis_namespace).add(
            queue=DELIVER_QUEUE,
            actor=DELIVER_ACTOR,
            reason=HOSTILE_REASON,
            kwargs={"sink": "alerts\u2028", "source": "Zürich", "call_id": HOSTILE_CALL_ID},
            attempts=1,
            sink="alerts\u2028",
        )
        await client.aclose()

    asyncio.run(add())
    config = config_file(tmp_path, redis_server_url, redis_namespace)

    # color=True: what a terminal gets (click strips some ANSI sequences for pipes only)
    listed = CliRunner().invoke(main, ["dlq", "list", "--config", config], color=True)

    assert listed.exit_code == 0
    assert [char for char in listed.output if is_terminal_control(char)] == []
    _, row, total = listed.output.strip().split("\n")
    assert total == "1 dead letter(s)"
    assert row.split()[2:5] == ["alerts\\u2028", "Zürich", "AC\\x1b[31mRED\\x1b[0m\\x07"]
    assert row.endswith("sink said\\r\\x1b]0;owned\\x07\\nfake line\\x9b2J \\u202egnp.exe\\x7f")


# --- retention and the cap ------------------------------------------------------------------

DAY_S = 86400.0


def add_at(
    redis_url: str, namespace: str, when: float, count: int, settings: DeadLettersConfig
) -> list[str]:
    """`count` dead letters written (each dropping what is past the limits) at time `when`."""

    async def add() -> list[str]:
        client = redis.asyncio.Redis.from_url(redis_url)
        dlq = DeadLetters(client, namespace, settings, clock=lambda: when)
        ids = []
        for index in range(count):
            entry = await dlq.add(
                queue=ENRICH_QUEUE,
                actor=ENRICH_ACTOR,
                reason="openphone API answered HTTP 401",
                kwargs={"source": "quo", "call_id": f"AC{when:.0f}-{index}", "payload": {}},
                attempts=1,
            )
            ids.append(entry.id)
        await client.aclose()
        return ids

    return asyncio.run(add())


def stored_ids(redis_sync: redis.Redis, namespace: str) -> tuple[set[bytes], set[bytes]]:
    """The entry ids in the stage's index and its payload hash."""
    index = cast(list[bytes], redis_sync.zrange(dlq_index_key(namespace, ENRICH_QUEUE), 0, -1))
    payloads = cast(list[bytes], redis_sync.hkeys(dlq_entries_key(namespace, ENRICH_QUEUE)))
    return set(index), set(payloads)


def test_entries_past_retention_are_dropped_counted_and_reported(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    lenient = DeadLettersConfig(retention_days=3650)
    now = time.time()
    add_at(redis_server_url, redis_namespace, now - 45 * DAY_S, 2, lenient)
    (kept,) = add_at(redis_server_url, redis_namespace, now - 2 * DAY_S, 1, lenient)
    config = config_file(tmp_path, redis_server_url, redis_namespace)  # default: 30 days
    before = dropped_metric(RETENTION)

    listed = CliRunner().invoke(main, ["dlq", "list", "--config", config])

    assert listed.exit_code == 0
    _, row, total, dropped = listed.output.strip().splitlines()
    assert kept[:12] in row
    assert total == "1 dead letter(s)"
    assert dropped == (
        "dropped so far: 2 older than 30 days (retention_days), "
        "0 over 10000 per stage (max_entries)"
    )
    index, payloads = stored_ids(redis_sync, redis_namespace)
    assert index == payloads == {kept.encode()}  # the payloads are gone, not just unlisted
    assert dropped_metric(RETENTION) == before + 2


def test_writing_a_dead_letter_drops_expired_ones(
    redis_server_url: str,
    redis_namespace: str,
    redis_sync: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    week = DeadLettersConfig(retention_days=7)
    now = time.time()
    add_at(redis_server_url, redis_namespace, now - 8 * DAY_S, 3, week)

    with caplog.at_level(logging.WARNING, logger="callhook.dead_letters"):
        (fresh,) = add_at(redis_server_url, redis_namespace, now, 1, week)

    assert stored_ids(redis_sync, redis_namespace) == ({fresh.encode()}, {fresh.encode()})
    assert redis_sync.hget(f"{redis_namespace}:dlq:{ENRICH_QUEUE}:dropped", RETENTION) == b"3"
    assert [r.getMessage() for r in caplog.records] == [
        f"dropped 3 dead letter(s) of {ENRICH_QUEUE} older than 7 days "
        "([dead_letters] retention_days)"
    ]


def test_the_cap_holds_in_a_running_worker(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    """A worker built from a config with `max_entries = 2` keeps the newest two of three
    dead letters, as it writes them (nothing lists them meanwhile)."""
    sections = {"dead_letters": {"max_entries": 2}}
    with running_pipeline(
        tmp_path, redis_server_url, redis_namespace, sections=sections
    ) as pipeline:
        pipeline.state("openphone").faults = Faults(unauthorized=True)
        calls = [pipeline.new_call("openphone") for _ in range(3)]
        for call in calls:  # one after another: each dead-lettered before the next
            assert pipeline.post("openphone", "call.completed", call).status_code == 200
            wait_until(partial(is_dead, redis_sync, redis_namespace, call.call_id))
    index, payloads = stored_ids(redis_sync, redis_namespace)
    assert len(index) == len(payloads) == 2
    assert dead_call_ids(redis_sync, redis_namespace) == {calls[1].call_id, calls[2].call_id}
    dropped = redis_sync.hget(f"{redis_namespace}:dlq:{ENRICH_QUEUE}:dropped", MAX_ENTRIES)
    assert dropped == b"1"


def dead_call_ids(client: redis.Redis, namespace: str) -> set[str]:
    raws = client.hvals(dlq_entries_key(namespace, ENRICH_QUEUE))
    return {orjson.loads(raw)["call_id"] for raw in raws}


def is_dead(client: redis.Redis, namespace: str, call_id: str) -> bool:
    return call_id in dead_call_ids(client, namespace)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def dropped_metric(cause: str) -> float:
    labels = {"queue": ENRICH_QUEUE, "cause": cause}
    return REGISTRY.get_sample_value("callhook_dead_letters_dropped_total", labels) or 0.0


def test_an_entry_is_replayed_once(
    redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    """Two operators replaying the same listing (or a replay racing the trim that drops an
    entry) enqueue each entry at most once."""
    add_entries(redis_server_url, redis_namespace)

    async def replay_twice() -> tuple[int, int]:
        client = redis.asyncio.Redis.from_url(redis_server_url)
        dlq = DeadLetters(client, redis_namespace)
        listing = await dlq.list(sink="alerts")
        first, second = await dlq.replay(listing), await dlq.replay(listing)
        await client.aclose()
        return len(first), len(second)

    assert asyncio.run(replay_twice()) == (1, 0)
    assert redis_sync.llen(queue_key(redis_namespace, DELIVER_QUEUE)) == 1
