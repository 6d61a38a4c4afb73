"""Issue 4, end to end: one config with all four sinks, every vendor's realistic event
sequence posted through the real ingress, and what each sink ends up holding.

Real parts only: the ingress over HTTP (vendor authentication from `simulate_delivery`),
Redis, a Dramatiq worker, the vendor API simulators, PostgreSQL (database sink), moto's S3
server (s3 sink, recordings copied from a loopback file server), a loopback Slack (slack
sink) and a loopback receiver verifying Standard Webhooks signatures (http sink).

Identity per sink (docs/sinks/*.md): one `calls` row per call and one `call_events` row per
event; one S3 object per call (plus one per recording); one Slack message per (call, routed
event type); one signed request per (call, event). The same must hold when every delivery
is posted twice, when the deliver work runs twice (redelivery, `callhook dlq replay`), when
the enrich work runs twice, and when one sink is down for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import dramatiq
import httpx
import orjson
import pytest
import redis.asyncio
from aiobotocore.session import get_session
from dramatiq.broker import Broker, MessageProxy
from prometheus_client import REGISTRY
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from callhook.dead_letters import DeadLetters
from callhook.events import Delivery, EventType
from callhook.journal.reader import JournalReader
from callhook.journal.updates import JournalSettings
from callhook.queues import DELIVER_ACTOR, ENRICH_ACTOR, QUEUES
from callhook.sinks.database.tables import call_events, calls
from callhook.sinks.http import webhook_id
from callhook.sinks.slack_message import fallback_text
from callhook.vendors import VENDORS
from callhook.vendors.kit import SimulatedCall
from tests.servers import ServerThread, free_port
from tests.sinks._database_support import fetch
from tests.sinks._http_support import HOOK_PATH, SECRET, Receiver
from tests.sinks._s3_support import RecordingServer, Served, audio, fake_aws_credentials, moto_s3
from tests.sinks._slack_support import WEBHOOK_PATH, FakeSlack
from tests.workers.harness import FAST, Pipeline, running_pipeline
from workers.dlq_cli import list_entries, replay
from workers.retrying import RetryPolicies, RetryPolicy
from workers.runtime import WorkerTuning

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

T = TypeVar("T")

#: the slack sink is routed a subset of the event types; the others get every event
SLACK_EVENTS = (
    EventType.COMPLETED,
    EventType.MISSED,
    EventType.RECORDING_READY,
    EventType.SUMMARY_READY,
)
DATABASE, S3, SLACK, HTTP = "warehouse", "archive", "alerts", "crm"
BUCKET_PREFIX = "calls/"
AUDIO_TYPES = {".mp3": "audio/mpeg", ".mp4": "audio/mp4", ".wav": "audio/wav"}
#: Slack fallback text starts with the event's title: "Call completed: ..."
SLACK_TITLES = {fallback_text({}, t).split(":", 1)[0]: t for t in EventType}
SLACK_CONTEXT = re.compile(r"source `([^`]*)` · call `([^`]*)`")


# --- servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture(scope="module")
def recordings_server() -> Iterator[RecordingServer]:
    recordings = RecordingServer()
    with ServerThread(recordings.app()) as server:
        recordings.url = server.url
        yield recordings


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_credentials(monkeypatch, tmp_path)


class Outage:
    """Serves `app`, or answers every request with Slack's 500 while `down` is set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.down = threading.Event()
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.down.is_set():
            self.refused += 1
            await PlainTextResponse("internal_error", 500)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Loopback:
    """An ASGI app on a fixed loopback port that a test can stop (connections refused)
    and start again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: ServerThread | None = None

    def start(self) -> None:
        self._thread = ServerThread(self.app, port=self.port).__enter__()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.__exit__(None, None, None)
            self._thread = None


@dataclass
class Services:
    """Everything the four sinks talk to, fresh for each test."""

    database_url: str
    s3_endpoint: str
    bucket: str
    recordings: RecordingServer
    slack: FakeSlack
    slack_outage: Outage
    receiver: Receiver
    receiver_server: Loopback

    def sinks(self) -> list[dict[str, Any]]:
        return [
            {"name": DATABASE, "type": "database", "url": self.database_url},
            {
                "name": S3,
                "type": "s3",
                "bucket": self.bucket,
                "prefix": BUCKET_PREFIX,
                "endpoint_url": self.s3_endpoint,
                "region": "us-east-1",
                "copy_recordings": True,
            },
            {
                "name": SLACK,
                "type": "slack",
                "webhook_url": self.slack.base_url + WEBHOOK_PATH,
                "events": [str(t) for t in SLACK_EVENTS],
            },
            {
                "name": HTTP,
                "type": "http",
                "url": self.receiver_server.url + HOOK_PATH,
                "secret": SECRET,
                "timeout_s": 2.0,
            },
        ]


@pytest.fixture
def services(
    postgres_database: str, s3_endpoint: str, recordings_server: RecordingServer
) -> Iterator[Services]:
    bucket = f"calls-{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_bucket(s3_endpoint, bucket))
    slack, receiver = FakeSlack(), Receiver()
    outage = Outage(slack.app)
    receiver_server = Loopback(receiver.app)
    receiver_server.start()
    try:
        with ServerThread(outage) as slack_server:
            slack.base_url = slack_server.url
            yield Services(
                postgres_database,
                s3_endpoint,
                bucket,
                recordings_server,
                slack,
                outage,
                receiver,
                receiver_server,
            )
    finally:
        receiver_server.stop()


@contextlib.asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[S3Client]:
    async with get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint
    ) as client:
        yield client


async def _create_bucket(endpoint: str, bucket: str) -> None:
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=bucket)


# --- what was posted, and what each sink should hold ----------------------------------


@dataclass(frozen=True)
class Posted:
    """One accepted delivery: the call it is about and its normalised type."""

    source: str
    call_id: str
    event_key: str
    type: EventType
    payload: dict[str, Any]


@dataclass
class Expected:
    calls: set[tuple[str, str]]
    events: list[Posted]

    def event_rows(self) -> list[tuple[str, str, str, str]]:
        return sorted((p.source, p.event_key, p.call_id, str(p.type)) for p in self.events)

    def slack(self) -> list[tuple[str, str, EventType]]:
        keys = {(p.source, p.call_id, p.type) for p in self.events if p.type in SLACK_EVENTS}
        return sorted(keys)

    def requests(self) -> list[tuple[str, str, str, str]]:
        """(webhook-id, source, call_id, event type) of each request the http sink owes."""
        return sorted(
            (webhook_id(HTTP, p.source, p.call_id, p.event_key), p.source, p.call_id, str(p.type))
            for p in self.events
        )


class Processed(dramatiq.Middleware):
    """Keeps every message the worker finished, to run the same work again later."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, str, dict[str, Any]]] = []

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        with self.lock:
            self.messages.append((message.queue_name, message.actor_name, dict(message.kwargs)))

    def of(self, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
        with self.lock:
            return [m for m in self.messages if m[1] == actor and m[2].get("attempt", 0) == 0]


def loopback_media(value: Any, recordings: RecordingServer) -> None:
    """Point every audio URL in a simulated call (a Get Call object or its extras) at the
    loopback recording server, which then serves distinct bytes for each; in place, since
    the simulated vendor API serves the same objects."""
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        if isinstance(item, str) and item.startswith("https://"):
            name = urlsplit(item).path.rsplit("/", 1)[-1]
            extension = name[name.rfind(".") :] if "." in name else ""
            if extension in AUDIO_TYPES:
                with recordings.lock:
                    seed = len(recordings.files) + 1
                    recordings.files[name] = Served(
                        audio(20_000 + seed, seed=seed), content_type=AUDIO_TYPES[extension]
                    )
                value[key] = f"{recordings.url}/files/{name}"
        else:
            loopback_media(item, recordings)


def sequence(pipeline: Pipeline, source: str) -> tuple[str, ...]:
    """The source's vendor's realistic life of an answered, recorded call, in the order it
    posts them (its kit's `call_sequence`)."""
    return VENDORS[pipeline.config.sources[source].vendor].kit.call_sequence


def every_vendor(pipeline: Pipeline) -> list[str]:
    """The pipeline's sources: the sandbox's, one per registered vendor."""
    sources = list(pipeline.config.sources)
    assert sorted(pipeline.config.sources[s].vendor for s in sources) == sorted(VENDORS)
    return sources


def new_calls(
    pipeline: Pipeline, recordings: RecordingServer, per_source: int
) -> list[tuple[str, SimulatedCall]]:
    made = []
    for source in every_vendor(pipeline):
        for _ in range(per_source):
            call = pipeline.new_call(source)
            loopback_media(call.call, recordings)
            loopback_media(call.extras, recordings)
            made.append((source, call))
    return made


def deliveries(
    pipeline: Pipeline, made: list[tuple[str, SimulatedCall]]
) -> list[tuple[str, SimulatedCall, Delivery]]:
    """Each call's sequence, built (signed, timestamped) once: posting one again is what
    a vendor's retry looks like."""
    built = []
    for source, call in made:
        config = pipeline.config.sources[source]
        vendor = VENDORS[config.vendor]
        for vendor_type in vendor.kit.call_sequence:
            built.append(
                (
                    source,
                    call,
                    vendor.kit.simulate_delivery(config, vendor_type, call, now=time.time()),
                )
            )
    return built


def post(pipeline: Pipeline, source: str, delivery: Delivery) -> httpx.Response:
    return httpx.post(
        f"{pipeline.ingress_url}/webhooks/{source}",
        content=delivery.body,
        headers=dict(delivery.headers),
        timeout=10,
    )


def post_all(
    pipeline: Pipeline, built: list[tuple[str, SimulatedCall, Delivery]], *, twice: bool
) -> Expected:
    """Post every delivery (then, with `twice`, every one again: each second one must be
    answered as a duplicate); what the sinks should then hold."""
    posted: list[Posted] = []
    for source, call, delivery in built:
        answer = post(pipeline, source, delivery)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted", answer.text
        event = VENDORS[pipeline.config.sources[source].vendor].parse(delivery)
        assert event.type is not None
        assert event.call_id == call.call_id
        assert answer.json()["event_key"] == event.event_key
        posted.append(
            Posted(source, call.call_id, event.event_key, event.type, orjson.loads(delivery.body))
        )
    if twice:
        for (source, _, delivery), first in zip(built, posted, strict=True):
            again = post(pipeline, source, delivery)
            assert again.status_code == 200, again.text
            assert again.json() == {"status": "duplicate", "event_key": first.event_key}
    assert len({(p.source, p.event_key) for p in posted}) == len(posted), "distinct events"
    return Expected({(source, call.call_id) for source, call, _ in built}, posted)


# --- what each sink holds ---------------------------------------------------------------


@dataclass
class Holdings:
    """Everything the four sinks hold, read back from the real servers."""

    calls: list[dict[str, Any]]
    events: list[dict[str, Any]]
    objects: dict[str, tuple[bytes, str]]  # key -> (body, content type)
    slack: list[tuple[str, str, EventType]]
    requests: list[tuple[str, str, str, str]]
    payloads: list[dict[str, Any]]
    bad_signatures: int

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(row["source"], row["call_id"]): row for row in self.calls}

    def event_rows(self) -> list[tuple[str, str, str, str]]:
        return sorted((e["source"], e["event_key"], e["call_id"], e["type"]) for e in self.events)

    def call_objects(self) -> dict[str, dict[str, Any]]:
        return {k: orjson.loads(v[0]) for k, v in self.objects.items() if k.endswith(".json")}

    def last_payload(self, source: str, call_id: str) -> dict[str, Any]:
        """The newest record the http sink sent about a call."""
        mine = [p for p in self.payloads if (p["source"], p["call_id"]) == (source, call_id)]
        return max(mine, key=lambda p: int(p["revision"]))


def holdings(services: Services) -> Holdings:
    rows, events, objects = asyncio.run(_stored(services))
    slack = []
    for message in list(services.slack.messages):
        title = str(message["text"]).split(":", 1)[0]
        context = SLACK_CONTEXT.search(message["blocks"][-1]["elements"][0]["text"])
        assert context is not None, message
        slack.append((context[1], context[2], SLACK_TITLES[title]))
    delivered = list(services.receiver.delivered)
    requests = []
    for attempt in delivered:
        payload = attempt.payload
        assert isinstance(payload, dict)
        requests.append(
            (
                attempt.headers["webhook-id"],
                payload["source"],
                payload["call_id"],
                attempt.headers["callhook-event"],
            )
        )
    return Holdings(
        calls=rows,
        events=events,
        objects=objects,
        slack=sorted(slack),
        requests=sorted(requests),
        payloads=[a.payload for a in delivered if isinstance(a.payload, dict)],
        bad_signatures=sum(1 for a in services.receiver.attempts if a.payload is None),
    )


async def _stored(
    services: Services,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, tuple[bytes, str]]]:
    """The `calls` and `call_events` rows and the bucket's objects, read concurrently."""
    rows, events, objects = await asyncio.gather(
        fetch(services.database_url, calls, "source", "call_id"),
        fetch(services.database_url, call_events, "source", "event_key"),
        _bucket(services.s3_endpoint, services.bucket),
    )
    return rows, events, objects


async def _bucket(endpoint: str, bucket: str) -> dict[str, tuple[bytes, str]]:
    """Every object in the bucket: key -> (body, content type)."""
    async with s3_client(endpoint) as s3:
        listing = await s3.list_objects_v2(Bucket=bucket, MaxKeys=1000)

        async def read(key: str) -> tuple[str, tuple[bytes, str]]:
            got = await s3.get_object(Bucket=bucket, Key=key)
            async with got["Body"] as body:
                return key, (await body.read(), got.get("ContentType", ""))

        keys = [entry["Key"] for entry in listing.get("Contents", [])]
        return dict(await asyncio.gather(*(read(key) for key in keys)))


def idle(pipeline: Pipeline) -> bool:
    """No message queued, delayed, or held by the worker."""
    ns = pipeline.config.redis.namespace
    for queue in QUEUES:
        for name in (queue, f"{queue}.DQ"):
            if pipeline.redis.llen(f"{ns}:{name}"):
                return False
    return all(
        not pipeline.redis.scard(key) for key in pipeline.redis.scan_iter(f"{ns}:__acks__.*")
    )


def eventually(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def holds_newest_state(pipeline: Pipeline, held: Holdings, expected: Expected) -> bool:
    """Whether the database and the bucket hold every call at the store's newest revision,
    and every event's row."""
    rows, objects = held.rows(), held.call_objects()
    if set(rows) != expected.calls or held.event_rows() != expected.event_rows():
        return False
    revisions = {(o["source"], o["call_id"]): o["revision"] for o in objects.values()}
    for source, call_id in expected.calls:
        stored = pipeline.stored_record(source, call_id)
        assert stored is not None
        if rows[(source, call_id)]["revision"] != stored["revision"]:
            return False
        if revisions.get((source, call_id)) != stored["revision"]:
            return False
    return True


def settled(pipeline: Pipeline, services: Services, expected: Expected) -> Holdings:
    """Wait until every sink holds all it should with the store's newest state and the
    worker has nothing left to do; then, after a quiet moment, read everything back."""

    def complete() -> Holdings | None:
        held = holdings(services)
        if not holds_newest_state(pipeline, held, expected):
            return None
        if set(held.slack) != set(expected.slack()):
            return None
        if set(held.requests) != set(expected.requests()):
            return None
        return held if idle(pipeline) else None

    eventually(complete, "every sink holds everything")
    time.sleep(0.3)  # room for a late duplicate to land
    eventually(lambda: True if idle(pipeline) else None, "the worker is idle")
    return holdings(services)


# --- the assertions ------------------------------------------------------------------------


def assert_exactly_once(held: Holdings, expected: Expected) -> None:
    """One row per call and per event, one object per call and recording, one Slack message
    per (call, routed type), one verified request per (call, event)."""
    assert sorted(held.rows()) == sorted(expected.calls)
    assert len(held.calls) == len(expected.calls)
    assert held.event_rows() == expected.event_rows()
    assert held.slack == expected.slack(), Counter(held.slack) - Counter(expected.slack())
    assert held.requests == expected.requests()
    assert held.bad_signatures == 0
    call_keys = sorted(held.call_objects())
    assert len(call_keys) == len(expected.calls)
    records = [orjson.loads(held.objects[k][0]) for k in call_keys]
    assert sorted((r["source"], r["call_id"]) for r in records) == sorted(expected.calls)
    stored_as = {
        recording["stored_as"].removeprefix("s3://").split("/", 1)[1]
        for record in records
        for recording in record["recordings"]
    }
    assert set(held.objects) == set(call_keys) | stored_as, "nothing but calls and recordings"


def assert_newest_state_everywhere(
    pipeline: Pipeline, services: Services, held: Holdings, expected: Expected, *, http: bool
) -> None:
    """The database row and the S3 object hold the store's newest state, whole; so does the
    http sink's newest request when `http` (it is not sent again for work run twice)."""
    objects = held.call_objects()
    for row in held.calls:
        source, call_id = row["source"], row["call_id"]
        stored = pipeline.stored_record(source, call_id)
        assert stored is not None
        record = row["record"]
        assert record == stored
        assert record["status"] == "completed"
        assert row["status"] == "completed"
        assert record["ended_at"] is not None
        assert record["duration_s"] > 0
        assert record["recordings"], "every simulated call is recorded"
        assert record["last_event"]["key"] in {
            p.event_key for p in expected.events if p.call_id == call_id
        }
        assert row["revision"] == record["revision"]
        assert row["last_event_key"] == (record["last_event"]["key"])
        # a vendor that posts a summary's readiness (e.g. OpenPhone) has it fetched
        types = {p.type for p in expected.events if (p.source, p.call_id) == (source, call_id)}
        if EventType.SUMMARY_READY in types:
            assert record["summary"] is not None
        day = record["created_at"][:10].replace("-", "/")
        key = f"{BUCKET_PREFIX}{source}/{day}/{call_id}.json"
        assert held.objects[key][1] == "application/json"
        copy = objects[key]
        for recording, copied in zip(record["recordings"], copy["recordings"], strict=True):
            name = urlsplit(recording["url"]).path.rsplit("/", 1)[-1]
            recording_key = copied["stored_as"].removeprefix(f"s3://{services.bucket}/")
            assert recording_key.startswith(f"{BUCKET_PREFIX}{source}/{day}/{call_id}/recordings/")
            assert held.objects[recording_key][0] == services.recordings.files[name].body
            assert copied == {**recording, "stored_as": copied["stored_as"]}
        assert {**copy, "recordings": record["recordings"]} == record
        if http:
            assert held.last_payload(source, call_id) == record
    for event in held.events:
        posted = next(p for p in expected.events if p.event_key == event["event_key"])
        assert event["payload"] == posted.payload


#: the harness's fast schedules, but a sink retry budget an outage of several seconds fits
#: in (at least ~11 s of backoff before a dead letter), retrying at most 0.8 s apart
TUNING = WorkerTuning(
    policies=RetryPolicies(
        vendor_transient=FAST.policies.vendor_transient,
        not_ready=FAST.policies.not_ready,
        sink_transient=RetryPolicy(max_attempts=30, base_s=0.1, cap_s=0.8),
    ),
    http_timeout=FAST.http_timeout,
)


# --- the tests -------------------------------------------------------------------------------


def test_every_vendor_reaches_all_four_sinks_exactly_once_whatever_is_repeated(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, services: Services
) -> None:
    with running_pipeline(
        tmp_path, redis_server_url, redis_namespace, extra_sinks=services.sinks(), tuning=TUNING
    ) as pipeline:
        processed = Processed()
        pipeline.broker.add_middleware(processed)
        built = deliveries(pipeline, new_calls(pipeline, services.recordings, per_source=2))

        # every delivery posted twice, as a vendor retrying after a lost answer does
        expected = post_all(pipeline, built, twice=True)
        assert len(expected.events) == 2 * sum(
            len(sequence(pipeline, s)) for s in every_vendor(pipeline)
        )
        first = settled(pipeline, services, expected)
        assert_exactly_once(first, expected)
        assert_newest_state_everywhere(pipeline, services, first, expected, http=True)

        # the same deliver work run again: a redelivered message (worker lost before ack),
        # each naming all four sinks (the harness's `records` file sink, a log of every
        # delivery on purpose, left out)
        delivers = [
            (queue, actor, {**kwargs, "sinks": [s for s in kwargs["sinks"] if s != "records"]})
            for queue, actor, kwargs in processed.of(DELIVER_ACTOR)
        ]
        assert {sink for m in delivers for sink in m[2]["sinks"]} == {DATABASE, S3, SLACK, HTTP}
        for queue, actor, kwargs in delivers:
            pipeline.broker.enqueue(
                dramatiq.Message(
                    queue_name=queue, actor_name=actor, args=(), kwargs=kwargs, options={}
                )
            )
        again = settled(pipeline, services, expected)
        assert_exactly_once(again, expected)
        assert again.calls == first.calls
        assert again.objects == first.objects
        assert again.payloads == first.payloads

        # ... and through `callhook dlq replay` (its write had landed; its answer had not):
        # dead letters are per sink
        per_sink = [
            (queue, actor, {**{k: v for k, v in kwargs.items() if k != "sinks"}, "sink": sink})
            for queue, actor, kwargs in delivers
            for sink in kwargs["sinks"]
        ]
        asyncio.run(dead_letter(pipeline, per_sink))
        assert (
            replay(pipeline.config, sink=None, ids=()) == f"replayed {len(per_sink)} dead letter(s)"
        )
        again = settled(pipeline, services, expected)
        assert_exactly_once(again, expected)
        assert again.calls == first.calls
        assert again.objects == first.objects
        assert again.payloads == first.payloads

        # the same enrich work run again: the record is merged anew (a newer revision the
        # database and S3 take) but no message or request is sent twice
        enriches = processed.of(ENRICH_ACTOR)
        assert len(enriches) == len(expected.events)
        revisions = {key: row["revision"] for key, row in first.rows().items()}
        for queue, actor, kwargs in enriches:
            pipeline.broker.enqueue(
                dramatiq.Message(
                    queue_name=queue, actor_name=actor, args=(), kwargs=kwargs, options={}
                )
            )
        again = settled(pipeline, services, expected)
        assert_exactly_once(again, expected)
        assert all(row["revision"] > revisions[key] for key, row in again.rows().items())
        assert_newest_state_everywhere(pipeline, services, again, expected, http=False)
        assert again.payloads == first.payloads
        assert list_entries(pipeline.config, sink=None) == "no dead letters"


async def dead_letter(pipeline: Pipeline, messages: list[tuple[str, str, dict[str, Any]]]) -> None:
    client = redis.asyncio.Redis.from_url(pipeline.config.redis.url)
    try:
        dead_letters = DeadLetters(client, pipeline.config.redis.namespace)
        for queue, actor, kwargs in messages:
            await dead_letters.add(
                queue=queue,
                actor=actor,
                kwargs=kwargs,
                reason="sink write timed out",
                attempts=1,
                sink=kwargs["sink"],
            )
    finally:
        await client.aclose()


def sink_retries(sink: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "callhook_sink_deliveries_total", {"sink": sink, "outcome": "retry"}
        )
        or 0.0
    )


@pytest.mark.parametrize("down", ["slack answers 500", "http receiver stopped"])
def test_one_sink_down_delays_nothing_else_and_catches_up_exactly_once(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, services: Services, down: str
) -> None:
    failing = SLACK if down.startswith("slack") else HTTP
    with running_pipeline(
        tmp_path,
        redis_server_url,
        redis_namespace,
        extra_sinks=services.sinks(),
        tuning=TUNING,
    ) as pipeline:
        built = deliveries(pipeline, new_calls(pipeline, services.recordings, per_source=1))
        retries_before = sink_retries(failing)
        if failing == SLACK:
            services.slack_outage.down.set()
        else:
            services.receiver_server.stop()
        started = time.monotonic()
        expected = post_all(pipeline, built, twice=False)

        def healthy_complete() -> Holdings | None:
            held = holdings(services)
            if not holds_newest_state(pipeline, held, expected):
                return None
            if failing != SLACK and set(held.slack) != set(expected.slack()):
                return None
            if failing != HTTP and set(held.requests) != set(expected.requests()):
                return None
            return held

        during = eventually(healthy_complete, "the healthy sinks hold everything", timeout=6)
        elapsed = time.monotonic() - started
        # prompt: well inside the failing sink's retry budget, while it is still failing
        assert elapsed < 5.0, f"the healthy sinks took {elapsed:.1f}s"
        eventually(
            lambda: True if sink_retries(failing) > retries_before + 2 else None,
            "the failing sink is being retried",
            timeout=3,
        )
        assert (during.slack if failing == SLACK else during.requests) == []
        assert list_entries(pipeline.config, sink=None) == "no dead letters"

        if failing == SLACK:
            assert services.slack_outage.refused > 0
            services.slack_outage.down.clear()
        else:
            services.receiver_server.start()
        after = settled(pipeline, services, expected)
        assert_exactly_once(after, expected)
        assert_newest_state_everywhere(pipeline, services, after, expected, http=True)
        # the failing sink's retries did not write the healthy sinks again
        if failing == SLACK:
            assert after.requests == during.requests
        else:
            assert after.slack == during.slack
        assert after.events == during.events
        assert list_entries(pipeline.config, sink=None) == "no dead letters"


def test_latest_state_is_written_once_when_deliveries_queue_up(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, services: Services
) -> None:
    """Every call's events enriched while no delivery runs (a backlog), then the deliveries:
    the s3 object and the `calls` row are written once per call, at the newest revision
    (the older deliveries leave the state to it: superseded); every event still gets its
    `call_events` row, its Slack message and its http request."""
    with running_pipeline(
        tmp_path,
        redis_server_url,
        redis_namespace,
        extra_sinks=services.sinks(),
        tuning=TUNING,
        start_worker=False,
    ) as pipeline:
        built = deliveries(pipeline, new_calls(pipeline, services.recordings, per_source=1))
        expected = post_all(pipeline, built, twice=False)
        enrich_only = dramatiq.Worker(
            pipeline.broker, queues={ENRICH_ACTOR}, worker_threads=4, worker_timeout=50
        )
        enrich_only.start()
        try:
            eventually(
                lambda: (
                    True
                    if pipeline.redis.llen(f"{redis_namespace}:{DELIVER_ACTOR}")
                    == len(expected.events)
                    else None
                ),
                "every event enriched, its delivery queued",
            )
        finally:
            enrich_only.stop()
        delivering = dramatiq.Worker(pipeline.broker, worker_threads=4, worker_timeout=50)
        delivering.start()
        try:
            held = settled(pipeline, services, expected)
        finally:
            delivering.stop()
        assert_exactly_once(held, expected)
        assert_newest_state_everywhere(pipeline, services, held, expected, http=True)
        for source, call_id in expected.calls:
            events = [p for p in expected.events if p.call_id == call_id]
            journal = asyncio.run(call_journal(pipeline, source, call_id))
            for sink in (S3, DATABASE):
                outcomes = [e["outcome"] for e in journal if e.get("sink") == sink]
                assert outcomes.count("superseded") == (len(events) - 1 if sink == S3 else 0)
                assert len(outcomes) == len(events)
            s3_writes = [e for e in journal if e.get("sink") == S3 and e["outcome"] == "ok"]
            assert len(s3_writes) == 1


async def call_journal(pipeline: Pipeline, source: str, call_id: str) -> list[dict[str, Any]]:
    client = redis.asyncio.Redis.from_url(pipeline.config.redis.url)
    try:
        reader = JournalReader(client, JournalSettings.from_config(pipeline.config))
        found = await reader.call(source, call_id)
    finally:
        await client.aclose()
    assert found is not None
    return [dict(entry) for entry in found.entries]
