"""Recording copies through the whole pipeline: signed Diga deliveries posted to the real
ingress, a real Dramatiq worker enriching them against the Diga API simulator, and the s3
sink writing to moto's S3 server while a loopback server plays the recording host (and
whatever a recording URL should never reach).

Only URLs the vendor API answered are downloaded, and only from allowed addresses on every
redirect hop; whatever is refused, the record is still delivered, without the copy."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from aiobotocore.session import get_session

from callhook.vendors.diga.config import DigaSource
from callhook.vendors.diga.simulate import finished_body, signed_headers
from callhook.vendors.kit import SimulatedCall
from tests.servers import ServerThread
from tests.sinks._s3_support import RecordingServer, Served, audio, fake_aws_credentials, moto_s3
from tests.workers.harness import Pipeline, running_pipeline

T = TypeVar("T")

#: where a metadata service would answer, and what it would give away
METADATA_PATH = "/latest/meta-data/iam/security-credentials/"
METADATA = Served(b'{"AccessKeyId": "ASIA-not-a-real-key"}', "application/json")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_credentials(monkeypatch, tmp_path)


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"calls-{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        async with _s3(s3_endpoint) as s3:
            await s3.create_bucket(Bucket=name)

    asyncio.run(create())
    return name


@pytest.fixture
def host() -> Iterator[RecordingServer]:
    """The recording host; it also answers at METADATA_PATH, as a metadata service would."""
    server = RecordingServer()
    server.files[METADATA_PATH] = METADATA
    with ServerThread(server.app()) as thread:
        server.url = thread.url
        yield server


def _s3(endpoint: str) -> Any:
    return get_session().create_client("s3", region_name="us-east-1", endpoint_url=endpoint)


def archive(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "name": "archive",
        "type": "s3",
        "bucket": bucket,
        "prefix": "calls/",
        "endpoint_url": endpoint,
        "copy_recordings": True,
        "timeout_s": 3.0,
    }


def objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket: key -> body."""

    async def read_all() -> dict[str, bytes]:
        async with _s3(endpoint) as s3:
            listing = await s3.list_objects_v2(Bucket=bucket)
            found: dict[str, bytes] = {}
            for entry in listing.get("Contents", []):
                answer = await s3.get_object(Bucket=bucket, Key=entry["Key"])
                async with answer["Body"] as body:
                    found[entry["Key"]] = await body.read()
            return found

    return asyncio.run(read_all())


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def post_finished(pipeline: Pipeline, call: SimulatedCall, recording_url: str | None) -> None:
    """The "Call Finished" body the workflow posts, with a `recording_url` in it when given
    (the documented setup leaves it out; a workflow may render anything)."""
    config = pipeline.config.sources["diga"]
    assert isinstance(config, DigaSource)
    body = finished_body(call.call, call.extras.get("transcript") or [])
    if recording_url is not None:
        body["recording_url"] = recording_url
    answer = httpx.post(
        f"{pipeline.ingress_url}/webhooks/diga",
        content=orjson.dumps(body),
        headers=signed_headers(config),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"


def archived(
    pipeline: Pipeline, endpoint: str, bucket: str, call: SimulatedCall
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Once the bucket holds the call's record at the store's revision: that record (as
    the s3 sink wrote it) and every object in the bucket."""

    def written() -> tuple[dict[str, Any], dict[str, bytes]] | None:
        stored = pipeline.stored_record("diga", call.call_id)
        held = objects(endpoint, bucket)
        for key, body in held.items():
            if key.endswith(f"/{call.call_id}.json"):
                record: dict[str, Any] = orjson.loads(body)
                if stored is not None and record["revision"] == stored["revision"]:
                    return record, held
        return None

    return eventually(written, f"the bucket holds call {call.call_id}")


def recording_key(record: dict[str, Any], extension: str) -> str:
    day = record["created_at"][:10].replace("-", "/")
    call_id = record["call_id"]
    return f"calls/diga/{day}/{call_id}/recordings/{call_id}-recording{extension}"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "callhook.sinks.s3"
    ]


def test_a_payload_recording_url_is_never_fetched_and_the_apis_is(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    s3_endpoint: str,
    bucket: str,
    host: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The sandbox's [recordings] allow_private_networks = true holds (the host is on
    # loopback): even so, a URL only a webhook payload gave is never requested.
    host.files["planted.wav"] = Served(location=f"{host.url}{METADATA_PATH}")
    planted = f"{host.url}/files/planted.wav"
    genuine = audio(30_000, seed=9)
    with (
        caplog.at_level(logging.WARNING, logger="callhook.sinks.s3"),
        running_pipeline(
            tmp_path, redis_server_url, redis_namespace, extra_sinks=[archive(s3_endpoint, bucket)]
        ) as pipeline,
    ):
        assert pipeline.config.recordings.allow_private_networks
        # the API has no recording for this call: the payload's URL is all there is
        alone = pipeline.new_call("diga")
        del alone.call["recording_url"]
        post_finished(pipeline, alone, planted)
        # the API answers this call's recording: its URL is the one kept, and copied
        answered = pipeline.new_call("diga")
        host.files[f"{answered.call_id}.wav"] = Served(genuine, "audio/wav")
        answered.call["recording_url"] = f"{host.url}/files/{answered.call_id}.wav"
        post_finished(pipeline, answered, planted)

        alone_record, _ = archived(pipeline, s3_endpoint, bucket, alone)
        answered_record, held = archived(pipeline, s3_endpoint, bucket, answered)
        delivered = {line["record"]["call_id"]: line["record"] for line in pipeline.wait_for(2)}

    assert alone_record["recordings"] == [
        {
            "id": f"{alone.call_id}-recording",
            "url": planted,
            "url_from": "payload",
            "duration_s": None,
            "started_at": None,
            "stored_as": None,
        }
    ]
    assert delivered[alone.call_id]["recordings"] == alone_record["recordings"]
    key = recording_key(answered_record, ".wav")
    assert answered_record["recordings"] == [
        {
            "id": f"{answered.call_id}-recording",
            "url": answered.call["recording_url"],
            "url_from": "api",
            "duration_s": None,
            "started_at": None,
            "stored_as": f"s3://{bucket}/{key}",
        }
    ]
    assert held[key] == genuine
    assert not any(k.startswith(recording_key(alone_record, "")) for k in held)
    assert host.downloads == {f"{answered.call_id}.wav": 1}
    assert (
        f"recording {alone.call_id}-recording not copied: its URL (host 127.0.0.1) is from a "
        "webhook payload, not the vendor API; only URLs the API answers are downloaded"
    ) in warnings(caplog)


def test_without_allow_private_networks_an_api_url_on_loopback_is_refused(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    s3_endpoint: str,
    bucket: str,
    host: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="callhook.sinks.s3"),
        running_pipeline(
            tmp_path,
            redis_server_url,
            redis_namespace,
            extra_sinks=[archive(s3_endpoint, bucket)],
            sections={"recordings": {"allow_private_networks": False}},
        ) as pipeline,
    ):
        call = pipeline.new_call("diga")
        host.files[f"{call.call_id}.wav"] = Served(audio(10_000), "audio/wav")
        call.call["recording_url"] = f"{host.url}/files/{call.call_id}.wav"
        post_finished(pipeline, call, None)
        record, held = archived(pipeline, s3_endpoint, bucket, call)
        delivered = [line["record"] for line in pipeline.wait_for(1)]

    [recording] = record["recordings"]
    assert (recording["url_from"], recording["stored_as"]) == ("api", None)
    assert list(held) == [k for k in held if k.endswith(".json")]
    assert host.downloads == {}
    assert [line["call_id"] for line in delivered] == [call.call_id]
    assert (
        f"recording {call.call_id}-recording not copied: recording download from 127.0.0.1 "
        "refused: 127.0.0.1 is a loopback address (see [recordings] in "
        "docs/configuration.md)"
    ) in warnings(caplog)


@pytest.mark.parametrize("hop", ["0.0.0.0", "169.254.169.254"])
def test_an_api_url_that_redirects_to_a_forbidden_address_is_refused_at_the_hop(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    s3_endpoint: str,
    bucket: str,
    host: RecordingServer,
    caplog: pytest.LogCaptureFixture,
    hop: str,
) -> None:
    # 0.0.0.0 reaches this very host (our loopback server answers there); 169.254.169.254
    # is where cloud metadata services answer. Both stay refused with private networks on.
    port = urlsplit(host.url).port
    with (
        caplog.at_level(logging.WARNING, logger="callhook.sinks.s3"),
        running_pipeline(
            tmp_path, redis_server_url, redis_namespace, extra_sinks=[archive(s3_endpoint, bucket)]
        ) as pipeline,
    ):
        call = pipeline.new_call("diga")
        name = f"{call.call_id}.wav"
        host.files[name] = Served(location=f"http://{hop}:{port}{METADATA_PATH}")
        call.call["recording_url"] = f"{host.url}/files/{name}"
        post_finished(pipeline, call, None)
        record, held = archived(pipeline, s3_endpoint, bucket, call)

    [recording] = record["recordings"]
    assert (recording["url_from"], recording["stored_as"]) == ("api", None)
    assert list(held) == [k for k in held if k.endswith(".json")]
    assert host.downloads == {name: 1}  # the first hop, never the metadata path
    assert (
        f"recording {call.call_id}-recording not copied: recording download from 127.0.0.1 "
        f"refused: {hop} is a "
    ) in "\n".join(warnings(caplog))
