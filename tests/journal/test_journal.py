"""The call journal against the real ingress, real Dramatiq workers and the real Redis:
a call's journey in order (also under concurrent workers and retries), duplicates counted,
per-call caps, retention, rejected deliveries, and a journal that cannot be written never
failing the work it describes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from callhook import metrics
from callhook.journal import prefix
from callhook.journal import updates as journal_updates
from callhook.journal.reader import CallFilter, CallJournal, JournalReader
from callhook.journal.updates import JournalSettings
from callhook.journal.writer import Journal
from tests.servers import free_port
from tests.workers.harness import Pipeline, running_pipeline

HTTP_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def read_journal(pipeline: Pipeline, source: str, call_id: str) -> CallJournal:
    async def read() -> CallJournal | None:
        client = redis.asyncio.Redis.from_url(pipeline.config.redis.url)
        try:
            reader = JournalReader(client, JournalSettings.from_config(pipeline.config))
            return await reader.call(source, call_id)
        finally:
            await client.aclose()

    found = asyncio.run(read())
    assert found is not None, f"no journal for {source}/{call_id}"
    return found


def wait_for_journal(
    pipeline: Pipeline,
    source: str,
    call_id: str,
    done: Any,
    timeout: float = 30.0,
) -> CallJournal:
    """The call's journal once `done(journal)` holds (polled; a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while True:
        journal = read_journal(pipeline, source, call_id)
        if done(journal):
            return journal
        if time.monotonic() > deadline:
            raise AssertionError(f"journal never got there: {list(journal.entries)}")
        time.sleep(0.05)


def positions(entries: Sequence[Mapping[str, Any]], kind: str, event_key: str) -> list[int]:
    return [
        i
        for i, entry in enumerate(entries)
        if entry["kind"] == kind and entry.get("event_key") == event_key
    ]


def delivered_count(journal: CallJournal, sink: str) -> int:
    return sum(
        1
        for e in journal.entries
        if e["kind"] == "deliver" and e["sink"] == sink and e["outcome"] in ("ok", "dead_letter")
    )


@pytest.fixture
def pipeline(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path, redis_server_url, redis_namespace) as running:
        yield running


def test_a_calls_journey_is_journaled_in_order(pipeline: Pipeline) -> None:
    call = pipeline.new_call("openphone")
    ringing = pipeline.post("openphone", "call.ringing", call).json()["event_key"]
    completed = pipeline.post("openphone", "call.completed", call)
    again = pipeline.post("openphone", "call.completed", call)
    assert completed.json()["status"] == "accepted"
    assert again.json()["status"] == "duplicate"
    completed_key = completed.json()["event_key"]

    journal = wait_for_journal(
        pipeline, "openphone", call.call_id, lambda j: delivered_count(j, "records") == 2
    )
    entries = journal.entries
    for key, vendor_type in ((ringing, "call.ringing"), (completed_key, "call.completed")):
        (accepted,) = positions(entries, "accepted", key)
        (enriched,) = positions(entries, "enrich", key)
        (delivered,) = positions(entries, "deliver", key)
        assert accepted < enriched < delivered
        assert entries[accepted]["vendor_type"] == vendor_type
        assert entries[accepted]["origin"] == "webhook"
        assert entries[enriched]["outcome"] == "ok"
        assert entries[enriched]["routed"] == ["records"]
        assert entries[enriched]["latency_ms"] >= 0
        assert entries[delivered]["outcome"] == "ok"
        assert entries[delivered]["attempt"] == 0
    summary = journal.summary
    assert summary.status == "completed"
    assert summary.counts["events"] == 2
    assert summary.counts["dups"] == 1
    assert summary.duplicates == {completed_key: 1}
    assert summary.sinks["records"]["state"] == "ok"
    assert summary.get("direction") == "inbound"
    assert summary.duration_s == 145.0
    assert not summary.has_failures


def test_attempts_are_in_order_under_concurrent_workers_and_retries(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    """Eight worker threads, twelve calls of three events each posted at once, and an http
    sink nobody listens on (retried, then dead-lettered): in every call's journal each event
    is accepted, then enriched, then delivered, and each sink's attempts count up."""
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    sink = {"name": "down", "type": "http", "url": nobody, "secret": HTTP_SECRET}
    with running_pipeline(
        tmp_path, redis_server_url, redis_namespace, worker_threads=8, extra_sinks=[sink]
    ) as pipeline:
        calls = [pipeline.new_call("cometchat") for _ in range(12)]
        keys: dict[str, list[str]] = {call.call_id: [] for call in calls}
        lock = threading.Lock()

        def post_all(vendor_type: str) -> None:
            for call in calls:
                key = pipeline.post("cometchat", vendor_type, call).json()["event_key"]
                with lock:
                    keys[call.call_id].append(key)

        threads = [
            threading.Thread(target=post_all, args=(kind,))
            for kind in ("call_initiated", "call_started", "call_ended")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        def finished(journal: CallJournal) -> bool:
            # FAST retry policy: 3 retries, then a dead letter, for each of three events
            return (
                delivered_count(journal, "records") == 3 and delivered_count(journal, "down") == 3
            )

        for call in calls:
            journal = wait_for_journal(pipeline, "cometchat", call.call_id, finished, 60)
            entries = journal.entries
            for key in keys[call.call_id]:
                (accepted,) = positions(entries, "accepted", key)
                (enriched,) = positions(entries, "enrich", key)
                delivered = positions(entries, "deliver", key)
                assert delivered
                assert accepted < enriched < min(delivered)
                down = [entries[i] for i in delivered if entries[i]["sink"] == "down"]
                assert [e["attempt"] for e in down] == [0, 1, 2, 3]
                assert [e["outcome"] for e in down] == ["retry"] * 3 + ["dead_letter"]
                assert all(e["retry_at"] for e in down[:3])
                assert down[3]["dead_letter"]
                assert down[0]["error"] == "RetryableError"
            assert journal.summary.has_failures
            assert journal.summary.sinks["down"]["state"] == "dead_letter"
            assert journal.summary.counts["dead"] == 3


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def write_actions(url: str, settings: JournalSettings, calls: Mapping[str, int]) -> None:
    client = redis.asyncio.Redis.from_url(url)
    journal = Journal(client, settings)
    try:
        for call_id, now_ms in calls.items():
            update = journal_updates.action(
                settings, source="quo", call_id=call_id, now_ms=now_ms, kind="redeliver", by="t"
            )
            await journal.write(update, where="test")
    finally:
        await client.aclose()


async def list_calls(url: str, settings: JournalSettings, where: CallFilter) -> list[str]:
    client = redis.asyncio.Redis.from_url(url)
    try:
        page = await JournalReader(client, settings).calls(where)
        return [summary.call_id for summary in page.calls]
    finally:
        await client.aclose()


def test_entries_per_call_are_capped_and_counted(
    redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    settings = JournalSettings(redis_namespace, max_entries_per_call=10)
    now_ms = int(time.time() * 1000)

    async def write_fifteen() -> CallJournal | None:
        client = redis.asyncio.Redis.from_url(redis_server_url)
        journal = Journal(client, settings)
        for n in range(15):
            await journal.write(
                journal_updates.action(
                    settings,
                    source="quo",
                    call_id="AC1",
                    now_ms=now_ms + n,
                    kind="replay",
                    by=str(n),
                ),
                where="test",
            )
        found = await JournalReader(client, settings).call("quo", "AC1")
        await client.aclose()
        return found

    found = run(write_fifteen())
    assert found is not None
    assert [entry["by"] for entry in found.entries] == [str(n) for n in range(5, 15)]
    assert found.summary.counts["trimmed"] == 5


def test_retention_bounds_every_key_and_the_index(
    redis_server_url: str, redis_namespace: str, redis_sync: redis.Redis
) -> None:
    settings = JournalSettings(redis_namespace, retention_days=1)
    now_ms = int(time.time() * 1000)
    two_days_ago = now_ms - 2 * 86_400_000
    run(write_actions(redis_server_url, settings, {"AC-old": two_days_ago, "AC-new": now_ms}))

    # the old call left the index when the new one came in; nothing is kept past a day
    assert run(list_calls(redis_server_url, settings, CallFilter())) == ["AC-new"]
    assert run(list_calls(redis_server_url, settings, CallFilter(source="quo"))) == ["AC-new"]
    keys = list(redis_sync.scan_iter(match=f"{prefix(redis_namespace)}:*"))
    assert keys
    for key in keys:
        ttl = redis_sync.ttl(key)
        assert key.endswith(b":health") or 0 < ttl <= 86_400, (key, ttl)


def test_pages_walk_every_call_newest_first(redis_server_url: str, redis_namespace: str) -> None:
    settings = JournalSettings(redis_namespace)
    now_ms = int(time.time() * 1000)
    # two calls first seen in the same millisecond: paging must neither skip nor repeat one
    calls = {f"AC{n:02d}": now_ms - (n // 2) * 1000 for n in range(9)}
    run(write_actions(redis_server_url, settings, calls))

    async def walk() -> list[list[str]]:
        client = redis.asyncio.Redis.from_url(redis_server_url)
        reader, pages, cursor = JournalReader(client, settings), [], None
        while True:
            page = await reader.calls(CallFilter(), limit=2, cursor=cursor)
            pages.append([summary.call_id for summary in page.calls])
            cursor = page.next_cursor
            if cursor is None:
                break
        await client.aclose()
        return pages

    pages = run(walk())
    seen = [call_id for page in pages for call_id in page]
    assert sorted(seen) == sorted(calls)
    assert len(seen) == len(calls)
    firsts = [calls[call_id] for call_id in seen]
    assert firsts == sorted(firsts, reverse=True)


def test_a_journal_that_cannot_be_written_never_fails_the_work(pipeline: Pipeline) -> None:
    """Keys of the wrong type make every journal write fail inside Redis: each accept,
    enrichment and delivery still happens, and the failures are counted."""
    journal = prefix(pipeline.config.redis.namespace)
    pipeline.redis.set(f"{journal}:idx:all", "not a sorted set")  # the accept's
    pipeline.redis.set(f"{journal}:health", "not a hash")  # the workers'

    def failures() -> dict[str, float]:
        counted = metrics.journal_write_errors_total
        return {
            where: counted.labels(where)._value.get() for where in ("webhook", "enrich", "deliver")
        }

    before = failures()
    call = pipeline.new_call("diga")
    answer = pipeline.post("diga", "call_finished", call)
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"
    (delivered,) = pipeline.wait_for(1)
    assert delivered["record"]["call_id"] == call.call_id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = failures()
        if all(after[where] > before[where] for where in after):
            break
        time.sleep(0.05)
    assert all(after[where] > before[where] for where in after), (before, after)


async def unreachable_write(settings: JournalSettings) -> float:
    client = redis.asyncio.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5
    )
    journal = Journal(client, settings)
    started = time.monotonic()
    update = journal_updates.action(
        settings, source="quo", call_id="AC1", now_ms=0, kind="replay", by="t"
    )
    await journal.write(update, where="test")  # must not raise
    await client.aclose()
    return time.monotonic() - started


def test_a_journal_write_to_a_redis_that_is_gone_returns_within_its_bound() -> None:
    settings = JournalSettings("nowhere", write_timeout_s=1.0)
    before = metrics.journal_write_errors_total.labels("test")._value.get()
    assert run(unreachable_write(settings)) < 5
    assert metrics.journal_write_errors_total.labels("test")._value.get() == before + 1


def test_rejected_deliveries_are_counted_with_the_newest_kept(pipeline: Pipeline) -> None:
    marker = "a-body-that-must-not-be-kept-7f3a"
    for _ in range(3):
        answer = httpx.post(
            f"{pipeline.ingress_url}/webhooks/diga",
            content=f'{{"call_id": "{marker}"}}',
            headers={"authorization": "Bearer wrong-token-wrong-token", "content-type": "json"},
        )
        assert answer.status_code == 401
    assert httpx.post(f"{pipeline.ingress_url}/webhooks/nope", content=b"{}").status_code == 404
    journal = prefix(pipeline.config.redis.namespace)

    deadline = time.monotonic() + 10
    while not pipeline.redis.exists(f"{journal}:rejected:diga") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipeline.redis.hgetall(f"{journal}:rejected:diga") == {b"unauthenticated": b"3"}
    assert pipeline.redis.hgetall(f"{journal}:rejected:*") == {b"unknown_source": b"1"}
    last = pipeline.redis.lrange(f"{journal}:rejected:diga:last", 0, -1)
    assert len(last) == 3
    assert all(b'"remote":"127.0.0.1"' in item and b'"status":401' in item for item in last)
    for key in pipeline.redis.scan_iter(match=f"{journal}:*"):
        kind = pipeline.redis.type(key)
        values: list[Any] = []
        if kind == b"list":
            values = pipeline.redis.lrange(key, 0, -1)
        elif kind == b"hash":
            values = list(pipeline.redis.hgetall(key).values())
        assert not any(marker.encode() in value for value in values), key
