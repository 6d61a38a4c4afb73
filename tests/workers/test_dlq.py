"""Dead letters through the CLI: list as a table, replay re-enqueues and removes, purge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import redis
import redis.asyncio
from click.testing import CliRunner

from callhook.cli import main
from callhook.queues import DELIVER_ACTOR, DELIVER_QUEUE, ENRICH_ACTOR, ENRICH_QUEUE, queue_key
from workers.dlq import DeadLetters


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
