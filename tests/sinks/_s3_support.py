"""Real servers for the s3 sink tests: moto's S3 server on a loopback port, and a recording
server (Starlette) that streams audio bodies (or redirects) and counts how often each was
requested."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from callhook.record import CallRecord, CallStatus, LastEvent, Recording
from tests.servers import free_port

CHUNK = 64 * 1024


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 HTTP server on 127.0.0.1:<free port>; yields its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class Served:
    """One file on the recording server. `fail_after` bytes: then the stream breaks. With
    `location`, the answer is a `status` (default 302) redirect there instead."""

    body: bytes = b""
    content_type: str = "audio/mpeg"
    status: int = 200
    fail_after: int | None = None
    delay_s: float = 0.0
    location: str | None = None


@dataclass
class RecordingServer:
    """Serves `files[name]` at `{url}/files/{name}`; `downloads[name]` counts GETs (of
    every path, served or not), `hosts` lists their Host headers, and `requested` is set
    by the first one."""

    url: str = ""
    files: dict[str, Served] = field(default_factory=dict)
    downloads: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requested: threading.Event = field(default_factory=threading.Event)
    hosts: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._serve)])

    async def _serve(self, request: Request) -> Response:
        path = request.path_params["path"]
        name = path.removeprefix("files/") if path.startswith("files/") else "/" + path
        with self.lock:
            self.downloads[name] += 1
            self.hosts.append(request.headers.get("host", ""))
            served = self.files.get(name)
        self.requested.set()
        if served is None:
            return Response("no such recording", status_code=404)
        if served.location is not None:
            status = served.status if served.status != 200 else 302
            return Response(status_code=status, headers={"location": served.location})
        if served.delay_s:
            await asyncio.sleep(served.delay_s)
        if served.status != 200:
            return Response("unavailable", status_code=served.status)
        return StreamingResponse(_chunks(served), media_type=served.content_type)


async def _chunks(served: Served) -> AsyncIterator[bytes]:
    limit = served.fail_after if served.fail_after is not None else len(served.body)
    for start in range(0, limit, CHUNK):
        yield served.body[start : min(start + CHUNK, limit)]
    if served.fail_after is not None:
        raise ConnectionResetError("the recording server broke the stream on purpose")


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials in the environment: the first link of the standard AWS chain (and
    no config file, profile or instance metadata that could be found instead)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def audio(size: int, seed: int = 7) -> bytes:
    """`size` deterministic bytes that no two parts of share a pattern with."""
    block = bytes((seed * 31 + i * 17) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def api_recording(id: str, url: str | None = None, **fields: Any) -> Recording:
    """A recording as the vendor API answers it: the s3 sink may download its url."""
    return Recording(id=id, url=url, url_from="api", **fields)


def call_record(
    *,
    revision: int = 1,
    call_id: str = "AC123",
    created_at: str | None = "2024-03-05T23:59:30.000Z",
    recordings: tuple[Recording, ...] = (),
    **fields: Any,
) -> dict[str, Any]:
    """A completed OpenPhone call's record in its JSON wire shape."""
    return CallRecord(
        source="quo",
        vendor="openphone",
        call_id=call_id,
        status=CallStatus.COMPLETED,
        vendor_status="completed",
        direction="inbound",
        media="audio",
        initiator="+15555550100",
        receiver="+15555550101",
        created_at=created_at,
        started_at="2024-03-05T23:59:31.000Z",
        ended_at="2024-03-06T00:00:26.000Z",
        duration_s=55.0,
        recordings=recordings,
        last_event=LastEvent(
            type="call.completed", key="EVabc", received_at="2024-03-06T00:00:27.000Z"
        ),
        enrichment="api",
        observed_at="2024-03-06T00:00:28.000Z",
        revision=revision,
        updated_at="2024-03-06T00:00:28.100Z",
        **fields,
    ).to_json_dict()
