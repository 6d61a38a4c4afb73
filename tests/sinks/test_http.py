"""http sink against a loopback receiver that verifies Standard Webhooks signatures: the
request, exactly one delivery per (call, event key), the stable webhook-id, and how each
answer is classified (410 disables, redirects are not followed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callhook.errors import PermanentError, RateLimited, RetryableError
from callhook.events import EventType
from callhook.http import make_client
from callhook.record import CallRecord, CallStatus
from callhook.sinks.base import SinkResources, Trigger, WriteResult
from callhook.sinks.http import HttpSink, HttpSinkConfig, webhook_id
from tests.servers import ServerThread, free_port
from tests.sinks._http_support import HOOK_PATH, MOVED_PATH, SECRET, Receiver

RECORD = CallRecord(
    source="quo",
    vendor="openphone",
    call_id="AC123",
    status=CallStatus.COMPLETED,
    vendor_status="completed",
    direction="inbound",
    media="audio",
    initiator="+15555550100",
    receiver="+15555550101",
    started_at="2024-05-01T14:03:00.000Z",
    ended_at="2024-05-01T14:07:12.000Z",
    duration_s=252.0,
    vendor_data={"call": {"id": "AC123", "note": "café ☕"}},
    revision=3,
).to_json_dict()


def trigger(key: str = "evt-1", event_type: EventType = EventType.COMPLETED) -> Trigger:
    return Trigger(event_key=key, event_type=event_type, received_at="2024-05-01T14:07:13.000Z")


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
async def resources(
    redis_async: redis.asyncio.Redis, redis_namespace: str
) -> AsyncIterator[SinkResources]:
    async with make_client() as http:
        yield SinkResources(http, redis_async, redis_namespace)


def http_sink(receiver: Receiver, resources: SinkResources, **options: Any) -> HttpSink:
    config = HttpSinkConfig.model_validate(
        {
            "name": "crm",
            "type": "http",
            "url": receiver.base_url + HOOK_PATH,
            "secret": SECRET,
            **options,
        }
    )
    return HttpSink(config, resources)


# --- the request ---------------------------------------------------------------------


async def test_posts_the_signed_record(receiver: Receiver, resources: SinkResources) -> None:
    sink = http_sink(receiver, resources, headers={"Authorization": "Bearer crm-token"})

    await sink.write(RECORD, trigger())

    [delivery] = receiver.delivered
    assert delivery.payload == RECORD  # verified with Webhook(secret).verify
    assert orjson.loads(delivery.body) == RECORD
    assert delivery.headers["webhook-id"] == webhook_id("crm", "quo", "AC123", "evt-1")
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 5
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["callhook-event"] == "call.completed"
    assert delivery.headers["authorization"] == "Bearer crm-token"


async def test_a_wrong_secret_does_not_verify(receiver: Receiver, resources: SinkResources) -> None:
    other_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    sink = http_sink(receiver, resources, secret=other_secret)

    with pytest.raises(PermanentError, match="HTTP 401"):
        await sink.write(RECORD, trigger())

    [attempt] = receiver.attempts
    assert attempt.payload is None
    assert receiver.delivered == []


def test_webhook_id_is_per_sink_call_and_event() -> None:
    ids = {
        webhook_id("crm", "quo", "AC123", "evt-1"),
        webhook_id("other", "quo", "AC123", "evt-1"),
        webhook_id("crm", "quo2", "AC123", "evt-1"),
        webhook_id("crm", "quo", "AC124", "evt-1"),
        webhook_id("crm", "quo", "AC123", "evt-2"),
        # separators cannot be forged by ids that contain them
        webhook_id("crm", "quo", "AC123:evt", "1"),
    }
    assert len(ids) == 6
    assert webhook_id("crm", "quo", "AC123", "evt-1") == webhook_id("crm", "quo", "AC123", "evt-1")


# --- exactly one delivery ------------------------------------------------------------


async def test_retries_and_replays_deliver_once_per_event(
    receiver: Receiver, resources: SinkResources
) -> None:
    sink = http_sink(receiver, resources)
    await sink.write(RECORD, trigger("evt-1"))
    await sink.write(RECORD, trigger("evt-1"))
    # a replay from the dead-letter queue, in another worker process
    await http_sink(receiver, resources).write(RECORD, trigger("evt-1"))
    assert len(receiver.attempts) == 1

    await sink.write(RECORD, trigger("evt-2", EventType.RECORDING_READY))
    first, second = receiver.delivered
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    assert second.headers["callhook-event"] == "call.recording.ready"


async def test_webhook_id_is_stable_across_retries(
    receiver: Receiver, resources: SinkResources
) -> None:
    sink = http_sink(receiver, resources)
    receiver.answer_next(500)
    with pytest.raises(RetryableError, match="HTTP 500"):
        await sink.write(RECORD, trigger())

    newer = {**RECORD, "revision": 4}
    await http_sink(receiver, resources).write(newer, trigger())

    failed, succeeded = receiver.attempts
    assert failed.headers["webhook-id"] == succeeded.headers["webhook-id"]
    assert failed.payload == RECORD
    assert succeeded.payload == newer
    assert receiver.delivered == [succeeded]


async def test_concurrent_writes_deliver_once(receiver: Receiver, resources: SinkResources) -> None:
    receiver.delay_s = 0.2

    await asyncio.gather(
        http_sink(receiver, resources).write(RECORD, trigger()),
        http_sink(receiver, resources).write(RECORD, trigger()),
    )

    assert len(receiver.attempts) == 1
    assert len(receiver.delivered) == 1


# --- the receiver's answers ----------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after(
    receiver: Receiver, resources: SinkResources
) -> None:
    receiver.answer_next(429, {"Retry-After": "30"})

    with pytest.raises(RateLimited) as raised:
        await http_sink(receiver, resources).write(RECORD, trigger())

    assert raised.value.retry_after == 30.0


async def test_503_is_retryable_honouring_retry_after(
    receiver: Receiver, resources: SinkResources
) -> None:
    receiver.answer_next(503, {"Retry-After": "12"})

    with pytest.raises(RetryableError) as raised:
        await http_sink(receiver, resources).write(RECORD, trigger())

    assert type(raised.value) is RetryableError
    assert raised.value.retry_after == 12.0
    assert raised.value.status_code == 503


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_permanent(
    receiver: Receiver, resources: SinkResources, status: int
) -> None:
    receiver.answer_next(status)

    with pytest.raises(PermanentError, match=f"HTTP {status}") as raised:
        await http_sink(receiver, resources).write(RECORD, trigger())

    assert raised.value.status_code == status


async def test_410_disables_the_sink_until_the_flag_is_deleted(
    receiver: Receiver,
    resources: SinkResources,
    redis_async: redis.asyncio.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = http_sink(receiver, resources)
    receiver.answer_next(410)

    with caplog.at_level(logging.ERROR, logger="callhook.sinks.http"):
        with pytest.raises(PermanentError, match="410 Gone; sink disabled"):
            await sink.write(RECORD, trigger("evt-1"))
        assert await redis_async.exists(sink.disabled_key)
        assert [r.getMessage() for r in caplog.records] == [
            f"http sink crm disabled: the receiver answered 410 Gone; "
            f"delete Redis key {sink.disabled_key} to re-enable"
        ]

        # every worker refuses from now on, without sending
        with pytest.raises(PermanentError, match="sink disabled after 410"):
            await http_sink(receiver, resources).write(RECORD, trigger("evt-2"))
        assert len(receiver.attempts) == 1

        caplog.clear()
        await http_sink(receiver, resources).start()
        assert "is disabled since a 410 Gone" in caplog.records[0].getMessage()

    await redis_async.delete(sink.disabled_key)
    await sink.write(RECORD, trigger("evt-2"))
    assert len(receiver.delivered) == 1


async def test_redirects_are_not_followed(receiver: Receiver, resources: SinkResources) -> None:
    location = f"{receiver.base_url}{MOVED_PATH}?token=s3cr3t"
    receiver.answer_next(302, {"Location": location})

    with pytest.raises(PermanentError) as raised:
        await http_sink(receiver, resources).write(RECORD, trigger())

    assert "HTTP 302 redirecting to 127.0.0.1" in raised.value.reason
    assert "s3cr3t" not in raised.value.reason
    assert MOVED_PATH not in raised.value.reason
    assert [attempt.path for attempt in receiver.attempts] == [HOOK_PATH]


async def test_an_answer_whose_body_does_not_decode_counts_by_its_status(
    resources: SinkResources,
) -> None:
    """A gzip body that is not gzip: the status alone says what happened."""
    statuses = [503, 200]

    async def answer(request: Request) -> Response:
        await request.body()
        return Response(b"not gzip", statuses.pop(0), headers={"content-encoding": "gzip"})

    app = Starlette(routes=[Route(HOOK_PATH, answer, methods=["POST"])])
    with ServerThread(app) as server:
        config = HttpSinkConfig.model_validate(
            {"name": "crm", "url": server.url + HOOK_PATH, "secret": SECRET}
        )
        sink = HttpSink(config, resources)

        with pytest.raises(RetryableError, match="HTTP 503") as raised:
            await sink.write(RECORD, trigger())
        assert type(raised.value) is RetryableError

        assert await sink.write(RECORD, trigger()) is WriteResult.WRITTEN


async def test_receiver_down_is_retryable(resources: SinkResources) -> None:
    config = HttpSinkConfig.model_validate(
        {"name": "crm", "url": f"http://127.0.0.1:{free_port()}/hooks", "secret": SECRET}
    )

    with pytest.raises(RetryableError, match="could not reach the receiver"):
        await HttpSink(config, resources).write(RECORD, trigger())


async def test_slow_receiver_times_out_as_retryable(
    receiver: Receiver, resources: SinkResources
) -> None:
    receiver.delay_s = 0.3

    with pytest.raises(RetryableError, match=r"did not answer within 0.1s"):
        await http_sink(receiver, resources, timeout_s=0.1).write(RECORD, trigger())


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"url": "ftp://example.com/x"}, "must be an http:// or https:// URL"),
        ({"url": "https:///no-host"}, "must be an http:// or https:// URL"),
        ({"secret": "plainsecretvalue"}, "must be a Standard Webhooks secret"),
        ({"secret": "whsec_c2hvcnQ="}, "base64 of at least 16 bytes"),
        ({"secret": "whsec_not*base64*at*all"}, "base64 of at least 16 bytes"),
        ({"headers": {"Webhook-Signature": "v1,forged"}}, "set by Callhook"),
        ({"headers": {"Bad Header": "x"}}, "not a valid header name"),
    ],
)
def test_config_errors(fields: dict[str, Any], problem: str) -> None:
    settings = {"name": "crm", "url": "https://example.com/hooks", "secret": SECRET, **fields}

    with pytest.raises(ValidationError) as raised:
        HttpSinkConfig.model_validate(settings)

    assert problem in str(raised.value)
    assert "plainsecretvalue" not in str(raised.value)


def test_config_secrets_stay_secret() -> None:
    config = HttpSinkConfig.model_validate(
        {
            "name": "crm",
            "url": "https://example.com/hooks",
            "secret": SECRET,
            "headers": {"Authorization": "Bearer crm-token"},
        }
    )
    dumped = str(config.model_dump(mode="json"))
    assert SECRET not in dumped
    assert "crm-token" not in dumped
