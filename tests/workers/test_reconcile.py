"""Reconcile against the vendor API simulators on loopback (hundreds of calls over several
pages), the real Redis, and (for end-to-end runs) the real ingress, Dramatiq worker and a
JSON-lines sink: calls whose webhooks never came reach the sink exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import orjson
import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.cli import main
from callhook.events import EventType
from callhook.queues import ENRICH_QUEUE, messages_key, queue_key
from callhook.record import LastEvent
from callhook.sandbox import prepare
from callhook.vendors import VENDORS
from callhook.vendors.base import Fetched
from callhook.vendors.kit import Faults, SimulatedCall
from callhook.vendors.simulator import register
from service.app import create_app
from tests.servers import ServerThread, free_port
from tests.workers.harness import FAST, Pipeline, pipeline_config
from workers.main import build_broker
from workers.reconcile import Outcome, Reconciler, Summary, listed_observation, reconcile_event
from workers.reconcile_cli import ProgressLine, render
from workers.retrying import RetryPolicy

#: page retries for tests: same shape as production, milliseconds instead of seconds
FAST_PAGES = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)
#: calls per test: more than two full pages of every vendor's List Calls
MANY = 250


@contextlib.contextmanager
def reconcile_pipeline(
    tmp_path: Path, redis_url: str, namespace: str, *, start_worker: bool = True
) -> Iterator[Pipeline]:
    """tests/workers/harness.py's pipeline, with the sources' fleet-wide rate limit raised
    so hundreds of calls enrich in seconds (the limit itself is tested elsewhere)."""
    simulator_port = free_port()
    sandbox = prepare(
        tmp_path / "var", ingress_host="127.0.0.1", ingress_port=0, simulator_port=simulator_port
    )
    records = tmp_path / "records.jsonl"
    config = pipeline_config(sandbox.config_path, redis_url, namespace, records, [])
    fast = {n: s.model_copy(update={"rate_limit_per_s": 2000.0}) for n, s in config.sources.items()}
    config = config.model_copy(update={"sources": fast})
    client = redis.Redis.from_url(redis_url)
    with (
        ServerThread(sandbox.simulator_app(), port=simulator_port),
        ServerThread(create_app(config), lifespan=True) as ingress,
    ):
        broker = build_broker(config, FAST)
        worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=8)
        if start_worker:
            worker.start()
        try:
            yield Pipeline(config, sandbox, ingress.url, records, client, broker)
        finally:
            if start_worker:
                worker.stop()
            broker.close()
            client.close()


@pytest.fixture
def pipeline(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Pipeline]:
    with reconcile_pipeline(tmp_path, redis_server_url, redis_namespace) as running:
        yield running


@pytest.fixture
def idle_pipeline(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> Iterator[Pipeline]:
    """No worker: what reconcile enqueues stays in the queue to be counted."""
    with reconcile_pipeline(
        tmp_path, redis_server_url, redis_namespace, start_worker=False
    ) as running:
        yield running


def seed(pipeline: Pipeline, source: str, count: int, *, first: float) -> list[SimulatedCall]:
    """`count` finished calls the vendor's API lists, created 20 s apart from `first` on."""
    vendor = VENDORS[pipeline.config.sources[source].vendor]
    calls = [vendor.kit.simulated_call(None, now=first + i * 20.0) for i in range(count)]
    for call in calls:
        register(pipeline.state(source), call)
    return calls


def last_hours(hours: float) -> tuple[datetime, datetime]:
    until = datetime.now(UTC)
    return until - timedelta(hours=hours), until


async def reconcile(
    pipeline: Pipeline, source: str, hours: float = 3.0, **options: object
) -> Summary:
    since, until = last_hours(hours)
    async with Reconciler.open(
        pipeline.config, page_retry=FAST_PAGES, http_timeout=httpx.Timeout(2.0)
    ) as reconciler:
        return await reconciler.run(source, since, until, **options)  # type: ignore[arg-type]


def counts(summary: Summary) -> dict[str, int]:
    """The summary's non-zero counts, `seen` included."""
    found = {outcome.value: n for outcome, n in summary.counts.items() if n}
    return {"seen": summary.seen, **found}


def enqueued(pipeline: Pipeline) -> int:
    return int(pipeline.redis.llen(queue_key(pipeline.config.redis.namespace, ENRICH_QUEUE)))


def delivered(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The sink's complete lines (the worker may be appending one as we read)."""
    if not pipeline.records_path.exists():
        return []
    return [orjson.loads(line) for line in pipeline.records_path.read_bytes().split(b"\n")[:-1]]


def wait_for(pipeline: Pipeline, count: int, within_s: float = 20.0) -> list[dict[str, Any]]:
    """At least `count` deliveries in the sink: all of them."""
    deadline = time.monotonic() + within_s
    while len(lines := delivered(pipeline)) < count:
        assert time.monotonic() < deadline, f"{len(lines)} deliveries, wanted {count}"
        time.sleep(0.02)
    return lines


def delivered_once(pipeline: Pipeline, calls: list[SimulatedCall]) -> None:
    """The sink holds each call exactly once, and nothing else, even after a pause."""
    wait_for(pipeline, len(calls))
    time.sleep(0.3)  # time for a duplicate to show up, if one were on its way
    found = Counter(line["record"]["call_id"] for line in delivered(pipeline))
    assert found == Counter(call.call_id for call in calls)


def metric(source: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "callhook_reconcile_calls_total", {"source": source, "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize("source", sorted(VENDORS))
async def test_calls_never_delivered_reach_the_sink_exactly_once(
    pipeline: Pipeline, source: str
) -> None:
    calls = seed(pipeline, source, MANY, first=time.time() - 2 * 3600)
    vendor = VENDORS[pipeline.config.sources[source].vendor]
    completed = vendor.kit.completed_type
    for call in calls[:10]:  # these came by webhook; the other 240 never did
        assert pipeline.post(source, completed, call).status_code == 200
    wait_for(pipeline, 10)
    new_before = metric(source, "new")

    first = await reconcile(pipeline, source)
    assert counts(first) == {"seen": MANY, "new": MANY - 10, "already_delivered": 10}
    assert first.ok
    delivered_once(pipeline, calls)
    fed = [
        line
        for line in delivered(pipeline)
        if line["trigger"]["event_key"].startswith("reconcile:")
    ]
    assert len(fed) == MANY - 10
    assert {line["trigger"]["type"] for line in fed} == {"call.completed"}
    assert {line["record"]["enrichment"] for line in fed} == {"api"}
    assert metric(source, "new") - new_before == MANY - 10

    second = await reconcile(pipeline, source)
    assert counts(second) == {"seen": MANY, "already_delivered": MANY}
    delivered_once(pipeline, calls)


async def test_the_listed_status_decides_what_is_fed(pipeline: Pipeline) -> None:
    statuses = ["ended", "unanswered", "rejected", "canceled", "busy", "ongoing", "initiated"]
    calls = seed(pipeline, "cometchat", len(statuses) + 1, first=time.time() - 3600)
    for call, status in zip(calls, statuses, strict=False):
        call.call["status"] = status
    ringing = calls[-1]  # delivered while ringing; its end was never delivered
    ringing.call["status"] = "initiated"
    assert pipeline.post("cometchat", "call_initiated", ringing).status_code == 200
    wait_for(pipeline, 1)
    ringing.call["status"] = "ended"

    first = await reconcile(pipeline, "cometchat")
    assert counts(first) == {"seen": 8, "new": 5, "updated": 1, "in_progress": 2}
    lines = wait_for(pipeline, 7)
    fed = {
        line["record"]["call_id"]: (line["trigger"]["type"], line["record"]["status"])
        for line in lines[1:]
    }
    assert fed == {
        calls[0].call_id: ("call.completed", "completed"),
        calls[1].call_id: ("call.missed", "no_answer"),
        calls[2].call_id: ("call.missed", "rejected"),
        calls[3].call_id: ("call.missed", "canceled"),
        calls[4].call_id: ("call.missed", "busy"),
        ringing.call_id: ("call.completed", "completed"),
    }

    calls[5].call["status"] = "ended"  # the call in progress has finished since
    second = await reconcile(pipeline, "cometchat")
    assert counts(second) == {"seen": 8, "new": 1, "already_delivered": 6, "in_progress": 1}
    (last,) = wait_for(pipeline, 8)[7:]
    assert last["record"]["call_id"] == calls[5].call_id


async def test_a_call_that_gained_a_recording_since_is_fed_again_once(pipeline: Pipeline) -> None:
    (call,) = seed(pipeline, "cometchat", 1, first=time.time() - 3600)
    recordings = call.call.pop("recordings")
    call.call["hasRecording"] = False
    first = await reconcile(pipeline, "cometchat")
    assert counts(first) == {"seen": 1, "new": 1}
    (line,) = wait_for(pipeline, 1)
    assert line["record"]["recordings"] == []

    call.call.update(hasRecording=True, recordings=recordings)  # the same status: ended
    second = await reconcile(pipeline, "cometchat")
    assert counts(second) == {"seen": 1, "updated": 1}
    update = wait_for(pipeline, 2)[1]
    assert [r["id"] for r in update["record"]["recordings"]] == [recordings[0]["rid"]]

    third = await reconcile(pipeline, "cometchat")
    assert counts(third) == {"seen": 1, "already_delivered": 1}
    await asyncio.sleep(0.3)  # time for a duplicate to show up, if one were on its way
    assert len(delivered(pipeline)) == 2


@pytest.mark.skipif("openphone" not in VENDORS, reason="the openphone vendor is not registered")
async def test_what_quo_cannot_list_is_named_in_the_summary(idle_pipeline: Pipeline) -> None:
    seed(idle_pipeline, "openphone", 3, first=time.time() - 3600)
    (short_code,) = seed(idle_pipeline, "openphone", 1, first=time.time() - 1800)
    short_code.call["participants"] = ["22395"]  # List Calls takes E.164 numbers only

    summary = await reconcile(idle_pipeline, "openphone")
    assert counts(summary) == {"seen": 3, "new": 3}  # the short code's call cannot be listed
    (note,) = summary.notes
    assert "not E.164" in note
    assert f"  not covered: {note}" in render(summary).splitlines()


async def test_a_page_answered_429_then_500_is_retried_and_the_run_resumes_there(
    idle_pipeline: Pipeline,
) -> None:
    pipeline = idle_pipeline
    seed(pipeline, "cometchat", MANY, first=time.time() - 2 * 3600)
    state = pipeline.state("cometchat")

    def fail_the_second_page(summary: Summary) -> None:
        if summary.seen == 100:  # page 1 (100 calls) is done: page 2 is asked for next
            state.faults = Faults(rate_limited=1, retry_after=0.3, server_errors=1)

    started = time.monotonic()
    summary = await reconcile(pipeline, "cometchat", progress=fail_the_second_page)
    assert time.monotonic() - started >= 0.3, "Retry-After was honoured"
    assert summary.ok, summary.error
    assert counts(summary) == {"seen": MANY, "new": MANY}
    # 3 pages, page 2 asked three times; page 1 never again
    assert (summary.requests, summary.retries) == (5, 2)
    assert [path for _, path in state.requests] == ["/cometchat/calls"] * 5
    assert enqueued(pipeline) == MANY


async def test_a_page_that_keeps_failing_ends_the_run_with_a_clear_error(
    idle_pipeline: Pipeline,
) -> None:
    pipeline = idle_pipeline
    seed(pipeline, "cometchat", MANY, first=time.time() - 2 * 3600)
    state = pipeline.state("cometchat")

    def break_the_api(summary: Summary) -> None:
        if summary.seen == 100:
            state.faults = Faults(server_errors=1000)

    summary = await reconcile(pipeline, "cometchat", progress=break_the_api)
    assert not summary.ok
    assert summary.error is not None
    assert "after 100 calls" in summary.error
    assert "HTTP 500" in summary.error
    assert summary.requests == 1 + 1 + FAST_PAGES.max_attempts
    assert enqueued(pipeline) == 100

    state.faults = Faults()  # the vendor recovered: the next run covers the whole window
    again = await reconcile(pipeline, "cometchat")
    # the first 100 were fed already (their enrichment is still queued): not fed twice
    assert counts(again) == {"seen": MANY, "new": MANY - 100, "already_delivered": 100}
    assert enqueued(pipeline) == MANY


async def test_an_empty_window(idle_pipeline: Pipeline) -> None:
    seed(idle_pipeline, "cometchat", 20, first=time.time() - 10 * 3600)
    summary = await reconcile(idle_pipeline, "cometchat", hours=2.0)
    assert summary.ok
    assert counts(summary) == {"seen": 0}
    assert summary.requests == 1
    assert enqueued(idle_pipeline) == 0


async def test_a_dry_run_counts_and_enqueues_nothing(pipeline: Pipeline) -> None:
    calls = seed(pipeline, "cometchat", MANY, first=time.time() - 2 * 3600)
    for call in calls[:10]:
        assert pipeline.post("cometchat", "call_ended", call).status_code == 200
    wait_for(pipeline, 10)

    summary = await reconcile(pipeline, "cometchat", dry_run=True)
    assert counts(summary) == {"seen": MANY, "new": MANY - 10, "already_delivered": 10}
    marks = list(pipeline.redis.scan_iter(f"{pipeline.config.redis.namespace}:seen:*:reconcile:*"))
    assert marks == []
    delivered_once(pipeline, calls[:10])


async def test_two_runs_at_once_feed_each_call_once(idle_pipeline: Pipeline) -> None:
    seed(idle_pipeline, "cometchat", MANY, first=time.time() - 2 * 3600)
    one, two = await asyncio.gather(
        reconcile(idle_pipeline, "cometchat"), reconcile(idle_pipeline, "cometchat")
    )
    assert one[Outcome.NEW] + two[Outcome.NEW] == MANY
    assert one[Outcome.ALREADY_DELIVERED] + two[Outcome.ALREADY_DELIVERED] == MANY
    assert enqueued(idle_pipeline) == MANY


def test_the_command_prints_a_summary(idle_pipeline: Pipeline) -> None:
    seed(idle_pipeline, "cometchat", MANY, first=time.time() - 2 * 3600)
    since = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    config = ["--config", idle_pipeline.config.origin]
    result = CliRunner().invoke(main, ["reconcile", "cometchat", "--since", since, *config])
    assert result.exit_code == 0, result.output
    assert "reconcile cometchat: " in result.output
    assert "  calls seen            250" in result.output
    assert "  new                   250" in result.output
    assert "  already delivered       0" in result.output
    assert enqueued(idle_pipeline) == MANY

    again = CliRunner().invoke(
        main, ["reconcile", "cometchat", "--since", since, "--dry-run", *config]
    )
    assert again.exit_code == 0, again.output
    assert "(dry run: nothing enqueued)" in again.output
    assert "  already delivered     250" in again.output


BAD_ARGUMENTS = [
    (["nowhere", "--since", "2025-01-01"], "unknown source 'nowhere'"),
    (["cometchat", "--since", "yesterday"], "--since: not an ISO-8601 date or time"),
    (
        ["cometchat", "--since", "2025-01-02", "--until", "2025-01-01"],
        "--since (2025-01-02T00:00:00.000Z) must be before --until",
    ),
]


def test_the_command_refuses_bad_arguments(idle_pipeline: Pipeline) -> None:
    config = ["--config", idle_pipeline.config.origin]
    for arguments, message in BAD_ARGUMENTS:
        result = CliRunner().invoke(main, ["reconcile", *arguments, *config])
        assert result.exit_code == 2, arguments
        assert message in result.output
    assert idle_pipeline.state("cometchat").requests == []


def test_the_progress_line_redraws_on_a_terminal_and_prints_lines_elsewhere() -> None:
    summary = Summary(
        "cometchat", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
    )
    summary.seen, summary.counts[Outcome.NEW] = 120, 7
    now = [0.0]
    terminal, plain = io.StringIO(), io.StringIO()
    live = ProgressLine(terminal, tty=True, clock=lambda: now[0])
    periodic = ProgressLine(plain, tty=False, clock=lambda: now[0])
    for step in range(40):  # 10 s in steps of 0.25 s
        now[0] = (step + 1) * 0.25
        live(summary)
        periodic(summary)
    live.finish()
    expected = "cometchat: 120 calls seen · 7 new · 0 updated · 0 already delivered"
    assert terminal.getvalue().count("\r\x1b[2K" + expected) == 40
    assert plain.getvalue() == (expected + "\n") * 2


def test_the_summary_names_what_was_not_covered_and_why_the_run_stopped() -> None:
    summary = Summary("quo", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC))
    summary.seen, summary.counts[Outcome.ALREADY_DELIVERED] = 3, 3
    summary.requests, summary.retries = 9, 6
    summary.notes.append("phone number PN1 (+15555550100): no participants known")
    summary.error = "List Calls failed after 3 calls: openphone API answered HTTP 500"
    assert render(summary) == "\n".join(
        [
            "reconcile quo: 2025-01-01T00:00:00.000Z → 2025-01-02T00:00:00.000Z",
            "  calls seen              3",
            "  new                     0",
            "  updated                 0",
            "  already delivered       3",
            "  in progress             0 (skipped: a later run finds them)",
            "  failed                  0",
            "  vendor requests         9 (6 retries)",
            "  not covered: phone number PN1 (+15555550100): no participants known",
            "  error: List Calls failed after 3 calls: openphone API answered HTTP 500 "
            "(the rest of the window was not checked)",
        ]
    )


def test_a_reconcile_event_maps_its_listed_call_like_a_get_call_answer() -> None:
    vendor = VENDORS["cometchat"]
    listed = vendor.kit.simulated_call(None, now=1_750_000_000).call
    record = vendor.record_from_api("cc", Fetched(call=listed), "2025-06-15T15:00:00.000Z")
    event = reconcile_event(record, EventType.COMPLETED, listed)
    assert event.event_key.startswith(f"reconcile:{record.call_id}:completed:")
    assert (event.vendor_type, event.fetchable) == ("reconcile", True)
    assert reconcile_event(record, EventType.COMPLETED, listed).event_key == event.event_key
    observed = listed_observation(vendor, "cc", event, "2025-06-15T15:00:00.000Z")
    assert observed == record.model_copy(
        update={
            "last_event": LastEvent(
                type="call.completed", key=event.event_key, received_at="2025-06-15T15:00:00.000Z"
            )
        }
    )


# --- a vendor whose listing never ends, ids a listing must not feed ------------------------

#: every vendor's List Calls path (under the source's api_base_url)
LIST_PATHS = {"cometchat": "/calls", "diga": "/v1/call/", "openphone": "/v1/calls"}


def endless_listing(vendor_name: str, served: list[str]) -> Starlette:
    """A List Calls that always answers a full page of new finished calls, saying more
    follow (a total of 10⁹ pages, `has_more`, or a new `nextPageToken`)."""
    vendor = VENDORS[vendor_name]

    async def listing(request: Request) -> Response:
        served.append(str(request.url.query))
        number = len(served)
        calls = [vendor.kit.simulated_call(None, now=time.time() - 600).call for _ in range(100)]
        pagination = {"total": 10**11, "per_page": 100, "current_page": number}
        return JSONResponse(
            {
                "data": calls,
                "meta": {"pagination": {**pagination, "total_pages": 10**9}},
                "has_more": True,
                "last_id": calls[-1].get("id"),
                "nextPageToken": f"page-{number + 1}",
            }
        )

    return Starlette(routes=[Route(LIST_PATHS[vendor_name], listing)])


@pytest.mark.parametrize("source", sorted(VENDORS))
def test_a_listing_that_never_ends_stops_at_max_pages_with_a_clear_error(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, source: str
) -> None:
    served: list[str] = []
    sandbox = prepare(tmp_path / "var", ingress_host="127.0.0.1", ingress_port=0, simulator_port=1)
    sources = tomllib.loads(sandbox.config_path.read_text())["sources"]
    with ServerThread(endless_listing(source, served)) as vendor_api:
        sources[source].update(api_base_url=vendor_api.url, rate_limit_per_s=1000.0)
        if source == "openphone":  # straight to List Calls: no numbers or people to find
            sources[source].update(phone_number_ids=["PNq8Xk2Lm0"], participants=["+12125550123"])
        config = pipeline_config(
            sandbox.config_path,
            redis_server_url,
            redis_namespace,
            tmp_path / "records.jsonl",
            [],
            sections={"sources": sources, "reconcile": {"max_pages": 3}},
        )
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        result = CliRunner().invoke(
            main, ["reconcile", source, "--since", since, "--config", str(config.origin)]
        )
    assert result.exit_code == 1, result.output
    assert len(served) == 3
    assert "  calls seen            300" in result.output
    assert (
        "  error: List Calls failed after 300 calls: stopped after 3 pages ([reconcile] "
        "max_pages): the vendor kept answering that more follow (the rest of the window was "
        "not checked)"
    ) in result.output
    # what the three pages listed was fed all the same
    client = redis.Redis.from_url(redis_server_url)
    try:
        assert client.llen(queue_key(redis_namespace, ENRICH_QUEUE)) == 300
    finally:
        client.close()


#: ids a vendor API could list that must never become a URL (`..` names the API's root)
NOT_CALL_IDS = ["..", ".", "a/b", "x%2F.."]


@pytest.mark.parametrize("source", sorted(VENDORS))
async def test_a_listed_call_whose_id_is_not_the_vendors_is_skipped_and_named(
    idle_pipeline: Pipeline, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = idle_pipeline
    calls = seed(pipeline, source, 5, first=time.time() - 3600)
    vendor = VENDORS[source]
    for bad in NOT_CALL_IDS:
        register(pipeline.state(source), vendor.kit.simulated_call(bad, now=time.time() - 1800))

    with caplog.at_level(logging.WARNING, logger="callhook.vendors"):
        summary = await reconcile(pipeline, source)
    assert counts(summary) == {"seen": 5, "new": 5}
    (note,) = summary.notes
    assert note.startswith(f"{len(NOT_CALL_IDS)} listed calls have an id that is not a")
    assert f"  not covered: {note}" in render(summary).splitlines()
    warned = [r.getMessage() for r in caplog.records if r.name == "callhook.vendors"]
    assert [any(repr(bad) in line for line in warned) for bad in NOT_CALL_IDS] == [True] * 4
    # the five real calls were fed; none of the others, and nothing asked the API about them
    assert enqueued(pipeline) == 5
    messages = pipeline.redis.hvals(messages_key(pipeline.config.redis.namespace, ENRICH_QUEUE))
    fed = {orjson.loads(raw)["kwargs"]["call_id"] for raw in messages}
    assert fed == {call.call_id for call in calls}
