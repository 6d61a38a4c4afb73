"""The s3 sink against moto's real S3 HTTP server, through the same aiobotocore client
production uses; recordings come from a Starlette server on a loopback port."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import redis.asyncio
from aiobotocore.session import get_session
from pydantic import ValidationError

from callhook.errors import ConfigError, PermanentError, RetryableError
from callhook.events import EventType
from callhook.http import make_client
from callhook.netpolicy import MAX_REDIRECTS
from callhook.record import Recording
from callhook.sinks.base import SinkResources, Trigger
from callhook.sinks.s3 import S3Sink, S3SinkConfig
from callhook.sinks.s3_recordings import PART_SIZE
from tests.servers import ServerThread, free_port
from tests.sinks._s3_support import (
    RecordingServer,
    Served,
    api_recording,
    audio,
    call_record,
    fake_aws_credentials,
    moto_s3,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

TRIGGER = Trigger(
    event_key="quo:EVabc",
    event_type=EventType.COMPLETED,
    received_at="2024-03-06T00:00:27.000Z",
)
KEY = "calls/quo/2024/03/05/AC123.json"
SinkFactory = Callable[..., Awaitable[S3Sink]]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_credentials(monkeypatch, tmp_path)


@pytest.fixture
async def s3(s3_endpoint: str) -> AsyncIterator[S3Client]:
    """A client of our own to set up buckets and look at what the sink wrote."""
    async with get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=s3_endpoint
    ) as client:
        yield client


@pytest.fixture
async def bucket(s3: S3Client) -> str:
    name = f"calls-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = make_client()
    yield client
    await client.aclose()


@pytest.fixture
def recordings() -> Iterator[RecordingServer]:
    server = RecordingServer()
    with ServerThread(server.app()) as thread:
        server.url = thread.url
        yield server


@pytest.fixture
async def make_sink(
    s3_endpoint: str,
    bucket: str,
    http: httpx.AsyncClient,
    redis_async: redis.asyncio.Redis,
    redis_namespace: str,
) -> AsyncIterator[SinkFactory]:
    """Builds and starts sinks on the test bucket; closes them afterwards."""
    started: list[S3Sink] = []

    async def factory(*, allow_private_networks: bool = True, **settings: Any) -> S3Sink:
        """`allow_private_networks`: as `[recordings]` says (the recording server is on
        loopback, so the tests that copy recordings need it)."""
        config = S3SinkConfig.model_validate(
            {
                "name": "archive",
                "type": "s3",
                "bucket": bucket,
                "prefix": "calls/",
                "endpoint_url": s3_endpoint,
                **settings,
            }
        )
        resources = SinkResources(
            http, redis_async, redis_namespace, allow_private_networks=allow_private_networks
        )
        sink = S3Sink(config, resources)
        started.append(sink)
        await sink.start()
        return sink

    yield factory
    for sink in started:
        await sink.close()


async def stored(s3: S3Client, bucket: str, key: str = KEY) -> tuple[dict[str, Any], str]:
    """The JSON object at `key` and its stored revision mark."""
    answer = await s3.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        document = orjson.loads(await body.read())
    assert answer["ContentType"] == "application/json"
    return document, answer["Metadata"]["callhook-revision"]


async def object_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    answer = await s3.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        return await body.read()


async def keys(s3: S3Client, bucket: str) -> list[str]:
    listing = await s3.list_objects_v2(Bucket=bucket)
    return sorted(entry["Key"] for entry in listing.get("Contents", []))


async def test_one_object_per_call_with_the_record(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    sink = await make_sink()
    record = call_record(revision=3)

    await sink.write(record, TRIGGER)

    assert await keys(s3, bucket) == [KEY]
    assert await stored(s3, bucket) == (record, "3")


async def test_without_created_at_the_date_is_the_triggers(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    sink = await make_sink(prefix="")
    await sink.write(call_record(created_at=None, call_id="odd/id"), TRIGGER)

    assert await keys(s3, bucket) == ["quo/2024/03/06/odd%2Fid.json"]


async def test_the_same_write_twice_leaves_one_identical_object(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    # Versioning makes every PUT visible: a replay must not add a version.
    await s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    sink = await make_sink()
    record = call_record(revision=2)

    await sink.write(record, TRIGGER)
    first = await object_bytes(s3, bucket, KEY)
    await sink.write(record, TRIGGER)

    versions = await s3.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in versions.get("Versions", [])] == [KEY]
    assert await object_bytes(s3, bucket, KEY) == first


@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3]))[::2])
async def test_writes_in_any_order_keep_the_latest_revision(
    make_sink: SinkFactory, s3: S3Client, bucket: str, order: tuple[int, ...]
) -> None:
    sink = await make_sink()
    for revision in order:
        await sink.write(call_record(revision=revision, summary=f"rev {revision}"), TRIGGER)

    document, mark = await stored(s3, bucket)
    assert (document["revision"], document["summary"], mark) == (3, "rev 3", "3")


async def test_a_lower_revision_never_overwrites_and_a_higher_one_does(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    sink = await make_sink()
    await sink.write(call_record(revision=5, summary="five"), TRIGGER)
    await sink.write(call_record(revision=4, summary="four"), TRIGGER)
    assert (await stored(s3, bucket))[0]["summary"] == "five"

    await sink.write(call_record(revision=6, summary="six"), TRIGGER)
    assert (await stored(s3, bucket))[0]["summary"] == "six"


async def test_a_writer_that_lost_a_race_does_not_undo_the_winner(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    # The slow writer reads the object (revision 1), then spends a while copying a
    # recording; meanwhile another worker stores revision 7. The slow writer's put of
    # revision 2 must then fail its precondition, re-read, and leave revision 7 alone.
    recordings.files["r1.mp3"] = Served(b"ID3 audio", delay_s=0.5)
    slow, fast = await make_sink(copy_recordings=True), await make_sink()
    await fast.write(call_record(revision=1), TRIGGER)
    record = call_record(
        revision=2, recordings=(api_recording(id="R1", url=f"{recordings.url}/files/r1.mp3"),)
    )

    async def overtake() -> None:
        assert await asyncio.to_thread(recordings.requested.wait, 5.0)
        await fast.write(call_record(revision=7, summary="seven"), TRIGGER)

    await asyncio.gather(slow.write(record, TRIGGER), overtake())

    document, mark = await stored(s3, bucket)
    assert (document["summary"], mark) == ("seven", "7")


async def test_what_a_sink_remembers_writing_never_undoes_another_writer(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    # `first` remembers storing revision 2; another process then stores 3. Neither a
    # replay of 2 nor a write of 2 with other content may bring 2 back; 4 replaces 3.
    first, other = await make_sink(), await make_sink()
    await first.write(call_record(revision=2, summary="two"), TRIGGER)
    await other.write(call_record(revision=3, summary="three"), TRIGGER)

    await first.write(call_record(revision=2, summary="two"), TRIGGER)
    assert (await stored(s3, bucket))[0]["summary"] == "three"
    await first.write(call_record(revision=2, summary="two, again"), TRIGGER)
    assert (await stored(s3, bucket))[0]["summary"] == "three"

    await first.write(call_record(revision=4, summary="four"), TRIGGER)
    document, mark = await stored(s3, bucket)
    assert (document["summary"], mark) == ("four", "4")


async def test_a_key_first_written_elsewhere_is_not_overwritten_by_a_lower_revision(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    # A sink that never wrote the key guesses it absent; the guess must fail safely.
    other, late = await make_sink(), await make_sink()
    await other.write(call_record(revision=5, summary="five"), TRIGGER)
    await late.write(call_record(revision=1, summary="one"), TRIGGER)

    assert await stored(s3, bucket) == (call_record(revision=5, summary="five"), "5")


async def test_recordings_are_copied_once_and_linked(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    mp3, wav = audio(200_000, seed=1), audio(90_000, seed=2)
    recordings.files["r1.mp3"] = Served(mp3, "audio/mpeg")
    recordings.files["r2"] = Served(wav, "audio/wav")
    signed = "?X-Amz-Signature=secret-token"
    record = call_record(
        recordings=(
            api_recording(id="R1", url=f"{recordings.url}/files/r1.mp3{signed}", duration_s=21.4),
            api_recording(id="R2", url=f"{recordings.url}/files/r2"),
            api_recording(id="R3"),
        )
    )
    sink = await make_sink(copy_recordings=True)

    await sink.write(record, TRIGGER)
    await sink.write({**record, "revision": 2}, TRIGGER)

    base = "calls/quo/2024/03/05/AC123/recordings"
    assert await keys(s3, bucket) == [KEY, f"{base}/R1.mp3", f"{base}/R2.wav"]
    assert await object_bytes(s3, bucket, f"{base}/R1.mp3") == mp3
    assert await object_bytes(s3, bucket, f"{base}/R2.wav") == wav
    assert recordings.downloads == {"r1.mp3": 1, "r2": 1}
    document, mark = await stored(s3, bucket)
    assert mark == "2"
    assert [r["stored_as"] for r in document["recordings"]] == [
        f"s3://{bucket}/{base}/R1.mp3",
        f"s3://{bucket}/{base}/R2.wav",
        None,
    ]
    assert document["recordings"][0]["url"] == record["recordings"][0]["url"]


async def test_a_large_recording_is_streamed_in_parts(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    body = audio(2 * PART_SIZE + 123_456, seed=3)
    recordings.files["long.wav"] = Served(body, "audio/wav")
    sink = await make_sink(copy_recordings=True)

    await sink.write(
        call_record(recordings=(api_recording(id="R1", url=f"{recordings.url}/files/long.wav"),)),
        TRIGGER,
    )

    key = "calls/quo/2024/03/05/AC123/recordings/R1.wav"
    head = await s3.head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert head["ContentType"] == "audio/wav"
    assert await object_bytes(s3, bucket, key) == body


async def test_an_expired_recording_link_still_writes_the_record(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    recordings.files["gone.mp3"] = Served(status=403)
    sink = await make_sink(copy_recordings=True)
    record = call_record(
        recordings=(
            api_recording(id="R1", url=f"{recordings.url}/files/missing.mp3"),
            api_recording(id="R2", url=f"{recordings.url}/files/gone.mp3"),
        )
    )

    await sink.write(record, TRIGGER)

    assert await keys(s3, bucket) == [KEY]
    document, _ = await stored(s3, bucket)
    assert [r["stored_as"] for r in document["recordings"]] == [None, None]


async def test_a_failing_recording_server_is_retried_after_the_record_is_written(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    recordings.files["r1.mp3"] = Served(status=503)
    sink = await make_sink(copy_recordings=True)
    record = call_record(
        recordings=(api_recording(id="R1", url=f"{recordings.url}/files/r1.mp3?token=s3cr3t"),)
    )

    with pytest.raises(RetryableError) as raised:
        await sink.write(record, TRIGGER)
    assert "503" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)
    assert (await stored(s3, bucket))[0]["recordings"][0]["stored_as"] is None

    recordings.files["r1.mp3"] = Served(b"ID3 audio", "audio/mpeg")
    await sink.write(record, TRIGGER)
    document, _ = await stored(s3, bucket)
    assert document["recordings"][0]["stored_as"] == (
        f"s3://{bucket}/calls/quo/2024/03/05/AC123/recordings/R1.mp3"
    )


async def test_a_slow_recording_server_times_out_as_retryable(
    make_sink: SinkFactory, recordings: RecordingServer
) -> None:
    recordings.files["slow.mp3"] = Served(b"audio", delay_s=0.6)
    sink = await make_sink(copy_recordings=True, timeout_s=0.2)
    record = call_record(
        recordings=(api_recording(id="R1", url=f"{recordings.url}/files/slow.mp3"),)
    )

    with pytest.raises(RetryableError, match="timed out"):
        await sink.write(record, TRIGGER)


async def test_a_broken_download_aborts_its_multipart_upload(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    body = audio(2 * PART_SIZE, seed=4)
    recordings.files["r1.mp3"] = Served(body, fail_after=PART_SIZE + 3 * 65536)
    sink = await make_sink(copy_recordings=True)
    record = call_record(recordings=(api_recording(id="R1", url=f"{recordings.url}/files/r1.mp3"),))

    with pytest.raises(RetryableError):
        await sink.write(record, TRIGGER)

    uploads = await s3.list_multipart_uploads(Bucket=bucket)
    assert uploads.get("Uploads", []) == []
    assert await keys(s3, bucket) == [KEY]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_recording_url_from_a_payload_is_never_downloaded(
    make_sink: SinkFactory,
    s3: S3Client,
    bucket: str,
    recordings: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Even with private networks allowed: a webhook could name any URL at all.
    recordings.files["r1.mp3"] = Served(b"ID3 audio")
    url = f"{recordings.url}/files/r1.mp3"
    record = call_record(
        recordings=(
            Recording(id="R1", url=url, url_from="payload"),
            Recording(id="R2", url=url),  # no origin (a record from before url_from)
        )
    )
    sink = await make_sink(copy_recordings=True)

    with caplog.at_level(logging.WARNING, logger="callhook.sinks.s3"):
        await sink.write(record, TRIGGER)

    assert recordings.downloads == {}
    assert await keys(s3, bucket) == [KEY]
    assert (await stored(s3, bucket))[0] == record
    assert warnings(caplog) == [
        "recording R1 not copied: its URL (host 127.0.0.1) is from a webhook payload, not "
        "the vendor API; only URLs the API answers are downloaded",
        "recording R2 not copied: its URL (host 127.0.0.1) is from an unknown origin, not "
        "the vendor API; only URLs the API answers are downloaded",
    ]


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("localhost", "localhost resolves to 127.0.0.1, which is a loopback address"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is a loopback address"),
    ],
)
async def test_without_allow_private_networks_a_loopback_api_url_is_refused(
    make_sink: SinkFactory,
    s3: S3Client,
    bucket: str,
    recordings: RecordingServer,
    caplog: pytest.LogCaptureFixture,
    host: str,
    refused: str,
) -> None:
    recordings.files["r1.mp3"] = Served(b"ID3 audio")
    url = recordings.url.replace("127.0.0.1", host) + "/files/r1.mp3?token=s3cr3t"
    record = call_record(recordings=(api_recording(id="R1", url=url),))
    sink = await make_sink(copy_recordings=True, allow_private_networks=False)

    with caplog.at_level(logging.WARNING, logger="callhook.sinks.s3"):
        await sink.write(record, TRIGGER)

    assert recordings.downloads == {}
    assert await keys(s3, bucket) == [KEY]
    assert (await stored(s3, bucket))[0]["recordings"][0]["stored_as"] is None
    [warning] = warnings(caplog)
    assert warning.startswith("recording R1 not copied: recording download from ")
    assert refused in warning
    assert "s3cr3t" not in warning


@pytest.mark.parametrize(
    "target",
    ["0.0.0.0", "169.254.169.254", "[::]", "[::ffff:169.254.169.254]", "224.0.0.1"],
)
async def test_a_redirect_to_a_forbidden_address_is_refused_at_that_hop(
    make_sink: SinkFactory,
    s3: S3Client,
    bucket: str,
    recordings: RecordingServer,
    caplog: pytest.LogCaptureFixture,
    target: str,
) -> None:
    # Private networks allowed (the recording server is on loopback), yet no hop may reach
    # the unspecified address (0.0.0.0 is this very host), metadata or multicast addresses.
    port = urlsplit(recordings.url).port
    recordings.files["r1.mp3"] = Served(location=f"http://{target}:{port}/latest/meta-data/")
    recordings.files["/latest/meta-data/"] = Served(b"AccessKeyId=AKIA...", "text/plain")
    record = call_record(recordings=(api_recording(id="R1", url=f"{recordings.url}/files/r1.mp3"),))
    sink = await make_sink(copy_recordings=True, timeout_s=2.0)

    with caplog.at_level(logging.WARNING, logger="callhook.sinks.s3"):
        await sink.write(record, TRIGGER)

    assert recordings.downloads == {"r1.mp3": 1}
    assert await keys(s3, bucket) == [KEY]
    assert (await stored(s3, bucket))[0]["recordings"][0]["stored_as"] is None
    [warning] = warnings(caplog)
    assert "refused" in warning


async def test_redirects_between_allowed_hosts_are_followed_with_the_host_kept(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    body = audio(50_000, seed=5)
    recordings.files["r1.mp3"] = Served(location="/files/real.mp3")
    recordings.files["real.mp3"] = Served(body, "audio/mpeg")
    port = urlsplit(recordings.url).port
    url = f"http://localhost:{port}/files/r1.mp3"
    sink = await make_sink(copy_recordings=True)

    await sink.write(call_record(recordings=(api_recording(id="R1", url=url),)), TRIGGER)

    key = "calls/quo/2024/03/05/AC123/recordings/R1.mp3"
    assert await object_bytes(s3, bucket, key) == body
    assert recordings.downloads == {"r1.mp3": 1, "real.mp3": 1}
    # connected to the address checked, yet asked for the name in the URL
    assert recordings.hosts == [f"localhost:{port}", f"localhost:{port}"]


async def test_a_redirect_chain_is_bounded(
    make_sink: SinkFactory, s3: S3Client, bucket: str, recordings: RecordingServer
) -> None:
    recordings.files["r1.mp3"] = Served(location="/files/r1.mp3")
    record = call_record(recordings=(api_recording(id="R1", url=f"{recordings.url}/files/r1.mp3"),))
    sink = await make_sink(copy_recordings=True)

    await sink.write(record, TRIGGER)

    assert recordings.downloads == {"r1.mp3": MAX_REDIRECTS + 1}
    assert await keys(s3, bucket) == [KEY]


async def test_a_missing_bucket_fails_start_with_one_line(make_sink: SinkFactory) -> None:
    with pytest.raises(ConfigError) as raised:
        await make_sink(bucket="no-such-bucket-here")
    assert str(raised.value) == "sink 'archive' (s3): bucket 'no-such-bucket-here' does not exist"


async def test_an_unreachable_store_is_retryable(
    make_sink: SinkFactory, s3: S3Client, http: httpx.AsyncClient
) -> None:
    with pytest.raises(RetryableError):
        await make_sink(endpoint_url=f"http://127.0.0.1:{free_port()}")

    with moto_s3() as endpoint:
        async with get_session().create_client(
            "s3", region_name="us-east-1", endpoint_url=endpoint
        ) as own:
            await own.create_bucket(Bucket="short-lived")
        sink = await make_sink(endpoint_url=endpoint, bucket="short-lived")
    with pytest.raises(RetryableError) as raised:
        await sink.write(call_record(), TRIGGER)
    assert "archive" in str(raised.value)


async def test_a_bucket_deleted_under_a_running_sink_is_permanent(
    make_sink: SinkFactory, s3: S3Client, bucket: str
) -> None:
    sink = await make_sink()
    await s3.delete_bucket(Bucket=bucket)

    with pytest.raises(PermanentError, match="NoSuchBucket"):
        await sink.write(call_record(), TRIGGER)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bucket": "s3://calls"}, "without s3://"),
        ({"bucket": "x"}, "not a bucket name"),
        ({"prefix": "/calls/"}, "leading slash"),
        ({"endpoint_url": "ftp://minio:9000"}, "http:// or https://"),
        ({"endpoint_url": "http://key:secret@minio:9000"}, "must not contain credentials"),
        ({"region": "US East"}, "not a region name"),
        ({"access_key": "AKIA..."}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_values(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        S3SinkConfig.model_validate({"name": "archive", "bucket": "calls", **settings})


def test_config_defaults() -> None:
    config = S3SinkConfig.model_validate({"name": "archive", "type": "s3", "bucket": "calls"})
    assert (config.prefix, config.region, config.endpoint_url, config.copy_recordings) == (
        "",
        "us-east-1",
        None,
        False,
    )
