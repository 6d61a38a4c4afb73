"""The JSON API (/api/v1) against the real ingress, real workers and the real Redis: the
token guards everything, calls list and page with their filters, a call's record, journal
and sink states, redelivery and re-enrichment through the normal queues (idempotency
holds), dead letters grouped, replayed and purged, and the overview's counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from callhook.config import parse_config
from callhook.errors import ConfigError
from callhook.queues import DELIVER_QUEUE, ENRICH_QUEUE, queue_key
from service.app import create_app
from tests.servers import ServerThread
from tests.service.conftest import ingress_config
from tests.sinks._http_support import HOOK_PATH, SECRET, Receiver
from tests.workers.harness import Pipeline, running_pipeline

TOKEN = "api-token-for-the-tests-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    with ServerThread(receiver.app) as server:
        receiver.base_url = server.url
        yield receiver


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.reset()
    return receiver_server


@pytest.fixture
def pipeline(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, receiver: Receiver
) -> Iterator[Pipeline]:
    crm = {"name": "crm", "type": "http", "url": receiver.base_url + HOOK_PATH, "secret": SECRET}
    with running_pipeline(
        tmp_path,
        redis_server_url,
        redis_namespace,
        extra_sinks=[crm],
        sections={"console": {"token": TOKEN}},
    ) as running:
        yield running


def api(pipeline: Pipeline, method: str, path: str, **options: Any) -> httpx.Response:
    headers = {**AUTH, **options.pop("headers", {})}
    return httpx.request(
        method, f"{pipeline.ingress_url}/api/v1{path}", headers=headers, timeout=10, **options
    )


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def sink_state(pipeline: Pipeline, source: str, call_id: str, sink: str) -> str:
    found = api(pipeline, "GET", f"/calls/{source}/{call_id}").json()
    return str(found["sinks"][sink]["state"])


def delivered(pipeline: Pipeline, source: str, call_id: str) -> bool:
    return all(
        sink_state(pipeline, source, call_id, sink) in ("ok", "skipped")
        for sink in ("records", "crm")
    )


def test_without_a_token_the_console_and_the_api_are_not_there(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    config = ingress_config(tmp_path, redis_server_url, redis_namespace, console={})
    with ServerThread(create_app(config), lifespan=True) as server:
        for path in ("/api/v1/calls", "/api/v1/overview", "/console/", "/console/login"):
            assert httpx.get(server.url + path, headers=AUTH).status_code == 404, path
        assert "/api/v1/calls" not in httpx.get(server.url + "/openapi.json").text


def test_a_short_token_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"console\.token: .*at least 16 bytes") as raised:
        parse_config({"console": {"token": "short-secret"}}, {}, origin="test")
    assert "short-secret" not in str(raised.value)


def test_every_route_wants_the_token_and_a_refusal_changes_nothing(pipeline: Pipeline) -> None:
    call = pipeline.new_call("diga")
    pipeline.post("diga", "call_finished", call)
    eventually(lambda: delivered(pipeline, "diga", call.call_id), "the delivery")
    namespace = pipeline.config.redis.namespace
    queued = pipeline.redis.llen(queue_key(namespace, DELIVER_QUEUE))
    attempts = len(api(pipeline, "GET", f"/calls/diga/{call.call_id}").json()["journal"])

    routes = [
        ("GET", "/calls"),
        ("GET", f"/calls/diga/{call.call_id}"),
        ("POST", f"/calls/diga/{call.call_id}/redeliver"),
        ("POST", f"/calls/diga/{call.call_id}/re-enrich"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/replay"),
        ("POST", "/dead-letters/purge"),
        ("GET", "/overview"),
        ("GET", "/health"),
        ("GET", "/rejections"),
    ]
    refusals = [
        {},
        {"authorization": "Bearer not-the-token-not-the-token"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": f"Bearer {TOKEN}x"},
    ]
    for method, path in routes:
        for headers in refusals:
            answer = httpx.request(
                method, f"{pipeline.ingress_url}/api/v1{path}", headers=headers, json={"all": True}
            )
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in answer.text
    assert pipeline.redis.llen(queue_key(namespace, DELIVER_QUEUE)) == queued
    assert pipeline.redis.llen(queue_key(namespace, ENRICH_QUEUE)) == 0
    assert len(api(pipeline, "GET", f"/calls/diga/{call.call_id}").json()["journal"]) == attempts


def test_calls_are_listed_newest_first_filtered_paged_and_found(pipeline: Pipeline) -> None:
    posted: list[tuple[str, str]] = []
    for source, vendor_type in (
        ("openphone", "call.completed"),
        ("cometchat", "call_ended"),
        ("diga", "call_finished"),
        ("openphone", "call.missed"),
    ):
        call = pipeline.new_call(source)
        answer = pipeline.post(source, vendor_type, call)
        posted.append((source, call.call_id))
        time.sleep(0.005)  # distinct first-seen times: the order below is theirs
    last_key = answer.json()["event_key"]
    for source, call_id in posted:
        eventually(partial(delivered, pipeline, source, call_id), f"{source} {call_id}")

    listed = api(pipeline, "GET", "/calls").json()
    assert [(c["source"], c["call_id"]) for c in listed["calls"]] == posted[::-1]
    assert listed["next_cursor"] is None
    first = listed["calls"][0]
    assert first["sinks"] == {
        "records": {"state": "ok", "at": first["sinks"]["records"]["at"], "attempt": 0},
        "crm": {"state": "ok", "at": first["sinks"]["crm"]["at"], "attempt": 0},
    }
    assert first["direction"] == "inbound"
    assert first["vendor"] == "openphone"

    pages, cursor = [], None
    while True:
        page = api(
            pipeline, "GET", "/calls", params={"limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        pages.append([c["call_id"] for c in page["calls"]])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [len(p) for p in pages] == [3, 1]
    assert [c for p in pages for c in p] == [c for _, c in posted[::-1]]

    by_source = api(pipeline, "GET", "/calls", params={"source": "openphone"}).json()["calls"]
    assert [c["call_id"] for c in by_source] == [posted[3][1], posted[0][1]]
    statuses = {c["call_id"]: c["status"] for c in listed["calls"]}
    for status in set(statuses.values()):
        having = api(pipeline, "GET", "/calls", params={"status": status}).json()["calls"]
        assert {c["call_id"] for c in having} == {c for c, s in statuses.items() if s == status}
    assert api(pipeline, "GET", "/calls", params={"failed": "true"}).json()["calls"] == []
    future = api(pipeline, "GET", "/calls", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["calls"] == []

    by_id = api(pipeline, "GET", "/calls", params={"q": posted[1][1]}).json()["calls"]
    assert [(c["source"], c["call_id"]) for c in by_id] == [posted[1]]
    by_key = api(pipeline, "GET", "/calls", params={"q": last_key}).json()["calls"]
    assert [(c["source"], c["call_id"]) for c in by_key] == [posted[3]]

    for params in (
        {"status": "nonsense"},
        {"failed": "maybe"},
        {"since": "yesterday"},
        {"limit": "0"},
        {"cursor": "not-a-cursor"},
    ):
        answer = api(pipeline, "GET", "/calls", params=params)
        assert answer.status_code == 400, params
        assert answer.json()["status"] == "error"


def test_a_call_shows_record_journal_and_each_sinks_attempts(pipeline: Pipeline) -> None:
    call = pipeline.new_call("openphone")
    pipeline.post("openphone", "call.completed", call)
    eventually(lambda: delivered(pipeline, "openphone", call.call_id), "the delivery")
    found = api(pipeline, "GET", f"/calls/openphone/{call.call_id}").json()
    assert found["record"]["call_id"] == call.call_id
    assert found["record"]["schema"] == "callhook.call/v1"
    kinds = [entry["kind"] for entry in found["journal"]]
    assert kinds[:2] == ["accepted", "enrich"]
    assert sorted(kinds[2:]) == ["deliver", "deliver"]
    for sink in ("records", "crm"):
        (attempt,) = found["sinks"][sink]["attempts"]
        assert attempt["outcome"] == "ok"
        assert attempt["sink"] == sink
        assert attempt["duration_ms"] >= 0
    missing = api(pipeline, "GET", "/calls/openphone/AC00000000000000000000000000000000")
    assert missing.status_code == 404


def test_redeliver_and_re_enrich_go_through_the_queues_and_keep_idempotency(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    call = pipeline.new_call("cometchat")
    pipeline.post("cometchat", "call_ended", call)
    eventually(lambda: delivered(pipeline, "cometchat", call.call_id), "the delivery")
    records_before = len(pipeline.delivered())
    assert len(receiver.delivered) == 1
    path = f"/calls/cometchat/{call.call_id}"

    answer = api(pipeline, "POST", f"{path}/redeliver")
    assert answer.status_code == 202
    assert answer.json()["sinks"] == ["records", "crm"]

    def redelivered() -> bool:
        attempts = api(pipeline, "GET", path).json()["sinks"]
        return len(attempts["crm"]["attempts"]) == 2 and len(attempts["records"]["attempts"]) == 2

    eventually(redelivered, "the redelivery")
    found = api(pipeline, "GET", path).json()
    # the http sink's identity is the same event: nothing is sent twice; the file sink, a
    # plain log, writes again
    assert found["sinks"]["crm"]["attempts"][-1]["outcome"] == "skipped"
    assert len(receiver.delivered) == 1
    assert len(pipeline.delivered()) == records_before + 1
    assert any(e["kind"] == "redeliver" and e["by"] == "api" for e in found["journal"])

    one = api(pipeline, "POST", f"{path}/redeliver", json={"sinks": ["records"]})
    assert one.json()["sinks"] == ["records"]
    unknown = api(pipeline, "POST", f"{path}/redeliver", json={"sinks": ["nope"]})
    assert unknown.status_code == 400
    assert "nope" in unknown.json()["detail"]
    assert api(pipeline, "POST", f"{path}/redeliver", content=b"[1]").status_code == 400

    fetched_before = sum(1 for _, p in pipeline.state("cometchat").requests if call.call_id in p)
    answer = api(pipeline, "POST", f"{path}/re-enrich")
    assert answer.status_code == 202

    def re_enriched() -> bool:
        journal = api(pipeline, "GET", path).json()["journal"]
        return sum(1 for e in journal if e["kind"] == "enrich" and e["outcome"] == "ok") == 2

    eventually(re_enriched, "the re-enrichment")
    fetched = sum(1 for _, p in pipeline.state("cometchat").requests if call.call_id in p)
    assert fetched > fetched_before
    assert len(receiver.delivered) == 1
    unknown_call = api(pipeline, "POST", "/calls/cometchat/v1.us.0.0/re-enrich")
    assert unknown_call.status_code == 404


def test_dead_letters_are_grouped_replayed_once_fixed_and_purged(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.failing_status = 403  # permanent: dead-lettered at once
    calls = [pipeline.new_call("diga") for _ in range(3)]
    for call in calls:
        pipeline.post("diga", "call_finished", call)

    def dead() -> list[dict[str, Any]]:
        listed = api(pipeline, "GET", "/dead-letters", params={"sink": "crm"}).json()
        return list(listed["dead_letters"]) if len(listed["dead_letters"]) == 3 else []

    entries = eventually(dead, "three dead letters")
    listed = api(pipeline, "GET", "/dead-letters").json()
    (group,) = listed["groups"]
    assert group["count"] == 3
    assert group["stage"] == "deliver"
    assert group["sink"] == "crm"
    assert "403" in group["reason_class"]
    overview = api(pipeline, "GET", "/overview").json()
    assert overview["dead_letters"]["deliver"] == 3
    assert overview["sinks"]["crm"]["dead_letter"] == 3
    assert overview["sinks"]["records"]["success_rate"] == 1.0
    assert overview["sources"]["diga"]["accepted"] == 3
    failed = api(pipeline, "GET", "/calls", params={"failed": "true"}).json()["calls"]
    assert {c["call_id"] for c in failed} == {call.call_id for call in calls}

    assert api(pipeline, "POST", "/dead-letters/replay", json={}).status_code == 400
    dry = api(pipeline, "POST", "/dead-letters/replay", json={"sink": "crm", "dry_run": True})
    assert dry.json() == {"matched": 3, "replayed": 0, "dry_run": True}
    assert len(api(pipeline, "GET", "/dead-letters").json()["dead_letters"]) == 3

    receiver.failing_status = None  # the receiver is fixed
    first = api(pipeline, "POST", "/dead-letters/replay", json={"ids": [entries[0]["id"]]})
    assert first.json() == {"matched": 1, "replayed": 1}
    rest = api(pipeline, "POST", "/dead-letters/replay", json={"sink": "crm", "stage": "deliver"})
    assert rest.json() == {"matched": 2, "replayed": 2}
    eventually(lambda: len(receiver.delivered) == 3, "the replays")
    for call in calls:
        found = api(pipeline, "GET", f"/calls/diga/{call.call_id}").json()
        assert found["sinks"]["crm"]["state"] == "ok"
        assert [e["kind"] for e in found["journal"]].count("replay") == 1
    assert api(pipeline, "GET", "/dead-letters").json()["dead_letters"] == []

    receiver.failing_status = 403
    doomed = pipeline.new_call("diga")
    pipeline.post("diga", "call_finished", doomed)
    eventually(
        lambda: api(pipeline, "GET", "/dead-letters").json()["dead_letters"], "a dead letter"
    )
    purged = api(pipeline, "POST", "/dead-letters/purge", json={"all": True})
    assert purged.json() == {"matched": 1, "purged": 1}
    assert api(pipeline, "GET", "/dead-letters").json()["dead_letters"] == []


def test_the_openapi_document_describes_the_api_when_it_is_on(pipeline: Pipeline) -> None:
    document = httpx.get(f"{pipeline.ingress_url}/openapi.json").json()
    for path in (
        "/api/v1/calls",
        "/api/v1/calls/{source}/{call_id}",
        "/api/v1/calls/{source}/{call_id}/redeliver",
        "/api/v1/calls/{source}/{call_id}/re-enrich",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/replay",
        "/api/v1/dead-letters/purge",
        "/api/v1/overview",
    ):
        assert path in document["paths"], path
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
