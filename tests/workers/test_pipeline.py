"""Ingress → Redis → real Dramatiq worker → vendor API simulators → sink, for every vendor
and every event type, and the documented outcome of each vendor API failure."""

from __future__ import annotations

import threading

import pytest

from callhook.events import EventType
from callhook.vendors import VENDORS
from callhook.vendors.kit import Faults
from tests.workers.harness import Pipeline
from workers.dlq_cli import list_entries, replay

CALL_EVENTS = [
    (source, vendor_type)
    for source, vendor in VENDORS.items()
    for vendor_type in vendor.kit.simulated_types
]


def parsed_type(pipeline: Pipeline, source: str, vendor_type: str) -> EventType | None:
    vendor = VENDORS[source]
    call = vendor.kit.simulated_call(None, now=0)
    return vendor.parse(
        vendor.kit.simulate_delivery(pipeline.config.sources[source], vendor_type, call, now=0)
    ).type


@pytest.mark.parametrize(("source", "vendor_type"), CALL_EVENTS)
def test_every_event_becomes_an_enriched_record(
    pipeline: Pipeline, source: str, vendor_type: str
) -> None:
    event_type = parsed_type(pipeline, source, vendor_type)
    if event_type is None:
        pytest.skip(f"{vendor_type} is accepted and dropped (tested in tests/service)")
    call = pipeline.new_call(source)
    response = pipeline.post(source, vendor_type, call)
    assert response.status_code == 200, response.text
    (line,) = pipeline.wait_for(1)
    record = line["record"]
    assert line["trigger"] == {"event_key": response.json()["event_key"], "type": event_type}
    assert record["schema"] == "callhook.call/v1"
    assert record["source"] == source
    assert record["vendor"] == VENDORS[source].name
    assert record["last_event"]["type"] == event_type.value
    assert record["last_event"]["key"] == response.json()["event_key"]
    stored = pipeline.stored_record(source, record["call_id"])
    assert stored == record
    if record["enrichment"] == "api":
        assert record["vendor_data"]["call"], "the Get Call answer is kept in vendor_data"
        assert pipeline.state(source).requests, "the vendor API was called"
    else:
        # only events the vendor's API cannot look up are recorded from the payload alone
        assert record["enrichment"] == "payload_only"


def test_not_found_then_found_is_retried_and_enriched(pipeline: Pipeline) -> None:
    pipeline.state("openphone").faults = Faults(not_found_first=1)
    call = pipeline.new_call("openphone")
    assert pipeline.post("openphone", "call.completed", call).status_code == 200
    (line,) = pipeline.wait_for(1)
    assert line["record"]["enrichment"] == "api"
    requests = pipeline.state("openphone").requests
    gets = [p for _, p in requests if p.endswith(f"/v1/calls/{call.call_id}")]
    assert len(gets) == 2, "one 404, then the call"


def test_never_found_is_recorded_from_the_payload_and_flagged(pipeline: Pipeline) -> None:
    pipeline.state("openphone").faults = Faults(not_found_first=100)
    call = pipeline.new_call("openphone")
    assert pipeline.post("openphone", "call.completed", call).status_code == 200
    (line,) = pipeline.wait_for(1)
    record = line["record"]
    assert record["enrichment"] == "payload_only"
    assert record["call_id"] == call.call_id
    assert record["status"] == "completed"


@pytest.mark.parametrize("retry_after", [None, 0.3])
def test_rate_limited_then_served(pipeline: Pipeline, retry_after: float | None) -> None:
    pipeline.state("diga").faults = Faults(rate_limited=2, retry_after=retry_after)
    call = pipeline.new_call("diga")
    assert pipeline.post("diga", "call_finished", call).status_code == 200
    (line,) = pipeline.wait_for(1)
    assert line["record"]["enrichment"] == "api"


def test_server_errors_then_served(pipeline: Pipeline) -> None:
    pipeline.state("cometchat").faults = Faults(server_errors=2)
    call = pipeline.new_call("cometchat")
    assert pipeline.post("cometchat", "call_ended", call).status_code == 200
    (line,) = pipeline.wait_for(1)
    assert line["record"]["enrichment"] == "api"


def test_slow_vendor_times_out_and_is_retried(pipeline: Pipeline) -> None:
    state = pipeline.state("diga")
    state.faults = Faults(latency_s=1.5)  # the test client's read timeout is 1 s
    call = pipeline.new_call("diga")
    assert pipeline.post("diga", "call_finished", call).status_code == 200
    timer = threading.Timer(1.2, lambda: setattr(state, "faults", Faults()))
    timer.start()
    (line,) = pipeline.wait_for(1, timeout=30)
    timer.join()
    assert line["record"]["enrichment"] == "api"


def test_unauthorized_is_dead_lettered_then_replayed(pipeline: Pipeline) -> None:
    state = pipeline.state("openphone")
    state.faults = Faults(unauthorized=True)
    call = pipeline.new_call("openphone")
    assert pipeline.post("openphone", "call.completed", call).status_code == 200
    listing = wait_for_dead_letter(pipeline)
    assert "HTTP 401" in listing
    assert call.call_id in listing
    assert pipeline.delivered() == []

    state.faults = Faults()  # the operator fixed the API key
    assert replay(pipeline.config, sink=None, ids=()) == "replayed 1 dead letter(s)"
    (line,) = pipeline.wait_for(1)
    assert line["record"]["call_id"] == call.call_id
    assert list_entries(pipeline.config, sink=None) == "no dead letters"


def wait_for_dead_letter(pipeline: Pipeline, timeout: float = 15.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = list_entries(pipeline.config, sink=None)
        if listing != "no dead letters":
            return listing
        time.sleep(0.1)
    raise AssertionError("nothing was dead-lettered")


def test_events_of_one_call_converge_whatever_the_order(pipeline: Pipeline) -> None:
    call = pipeline.new_call("openphone")
    for vendor_type in ("call.completed", "call.ringing", "call.answered", "call.ringing"):
        pipeline.post("openphone", vendor_type, call)
    pipeline.wait_for(3)
    stored = pipeline.stored_record("openphone", call.call_id)
    assert stored is not None
    assert stored["status"] not in ("ringing", "in_progress")
    assert stored["last_event"]["type"] in {
        "call.completed",
        "call.missed",
        "call.ringing",
        "call.started",
    }


def test_concurrent_workers_on_one_call_lose_no_update(pipeline: Pipeline) -> None:
    from concurrent.futures import ThreadPoolExecutor

    vendor_types = [
        t
        for t in VENDORS["cometchat"].kit.simulated_types
        if parsed_type(pipeline, "cometchat", t) is not None
        and "meeting" not in t
        and t not in ("call_busy", "call_cancelled", "call_rejected", "call_unanswered")
    ]
    call = pipeline.new_call("cometchat")
    first, *others = vendor_types
    assert pipeline.post("cometchat", first, call).json()["status"] == "accepted"
    pipeline.wait_for(1)
    created = pipeline.stored_record("cometchat", call.call_id)
    assert created is not None
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: pipeline.post("cometchat", t, call), others))
    accepted = [a for a in answers if a.json()["status"] == "accepted"]
    assert len(accepted) == len(others)
    lines = pipeline.wait_for(len(vendor_types))
    stored = pipeline.stored_record("cometchat", call.call_id)
    assert stored is not None
    # every enrich merged two observations (payload + Get Call) into the one stored record;
    # a lost update (two workers overwriting each other) would leave fewer revisions
    assert stored["revision"] == created["revision"] + 2 * len(accepted)
    assert stored["status"] == "completed"
    assert {line["record"]["call_id"] for line in lines} == {call.call_id}
