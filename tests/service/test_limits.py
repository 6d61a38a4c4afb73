"""The ingress's own limits, over real sockets against the server `callhook serve` runs:
oversized heads, signature lists, slow heads and bodies, idle connections, too many
connections, and whose address a rejection is logged with."""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from callhook.config import Config
from callhook.sandbox import prepare
from callhook.vendors import VENDORS
from callhook.vendors.openphone import OpenPhoneSource
from callhook.vendors.openphone.signatures import legacy_signature, standard_headers
from tests.servers import free_port, stop_group, wait_until_answers
from tests.service.conftest import Ingress, ingress_config, served

#: how long a test waits for the server to act on a deadline of about a second
PATIENCE_S = 30.0
FORGED = "203.0.113.7"


@dataclass
class Seen:
    """What the server sent on a raw connection, and whether it closed it."""

    received: bytes
    closed: bool

    @property
    def status(self) -> int | None:
        line = self.received.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/") else None


def watch(sock: socket.socket, *, trickle: bytes = b"", every: float = 0.2) -> Seen:
    """Read `sock` until the server closes it or `PATIENCE_S` pass, sending `trickle` every
    `every` seconds until an answer starts (a slow client)."""
    sock.settimeout(every)
    received = b""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if trickle and not received:
            try:
                sock.sendall(trickle)
            except OSError:
                return Seen(received + _rest(sock), closed=True)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return Seen(received, closed=True)
        if not chunk:
            return Seen(received, closed=True)
        received += chunk
    return Seen(received, closed=False)


def _rest(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@contextmanager
def connection(ingress: Ingress) -> Iterator[socket.socket]:
    url = urlsplit(ingress.url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as sock:
        yield sock


def head(method: str, path: str, **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def config_with(tmp_path: Path, redis_url: str, namespace: str, **ingress: object) -> Config:
    return ingress_config(tmp_path, redis_url, namespace, ingress=dict(ingress))


def rejections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "callhook.ingress.rejected"]


def quo(config: Config) -> OpenPhoneSource:
    source = config.sources["openphone"]
    assert isinstance(source, OpenPhoneSource)
    return source


def quo_body(config: Config, now: float) -> bytes:
    vendor = VENDORS["openphone"]
    call = vendor.kit.simulated_call(None, now=now)
    return vendor.kit.simulate_delivery(quo(config), "call.completed", call, now=now).body


def legacy_entries(config: Config, body: bytes, now: float, count: int) -> list[str]:
    """`count` well-formed, fresh legacy signatures, all wrong but the last."""
    key = quo(config).legacy_key()
    assert key is not None
    ms = int(now * 1000)
    wrong = [legacy_signature(b"not-the-key-%d" % i, ms - i, body) for i in range(count - 1)]
    return [*wrong, legacy_signature(key, ms, body)]


# --- heads and signature lists -----------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    ["signature_list", "endless_header_line", "many_headers", "long_url"],
)
def test_an_oversized_head_is_431_before_anything_reads_it(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
    shape: str,
) -> None:
    config = config_with(tmp_path, redis_server_url, redis_namespace)
    now = time.time()
    body = quo_body(config, now)
    size = f"content-length: {1_048_000}\r\n".encode()
    if shape == "signature_list":  # 2,500 fresh entries: 165 KB, 2,500 HMACs once
        entries = ",".join(legacy_entries(config, body, now, 2500))
        raw = head("POST", "/webhooks/openphone", **{"openphone-signature": entries})
        raw = raw.replace(b"\r\n\r\n", b"\r\n" + size + b"\r\n")
    elif shape == "endless_header_line":
        raw = b"POST /webhooks/openphone HTTP/1.1\r\nx-filler: " + b"a" * 200_000
    elif shape == "many_headers":
        raw = head("GET", "/healthz", **{f"x-{i}": "b" for i in range(5000)})
    else:
        raw = head("GET", "/healthz?q=" + "a" * 40_000)
    with served(config) as ingress:
        with connection(ingress) as sock:
            sock.sendall(raw)
            seen = watch(sock)
        assert seen.status == 431, seen.received[:200]
        assert seen.closed
        assert httpx.get(f"{ingress.url}/healthz", timeout=10).status_code == 200
    (logged,) = rejections(caplog)
    assert logged.__dict__["status"] == 431
    assert logged.__dict__["remote"] == "127.0.0.1"


@pytest.mark.parametrize("generation", ["legacy", "standard"])
def test_at_most_eight_signatures_are_considered(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
    generation: str,
) -> None:
    config = config_with(tmp_path, redis_server_url, redis_namespace)
    now = time.time()
    body = quo_body(config, now)

    def signed(count: int) -> dict[str, str]:
        """`count` signatures, the genuine one last."""
        if generation == "legacy":
            return {"openphone-signature": ",".join(legacy_entries(config, body, now, count))}
        secret = quo(config).standard_secret()
        assert secret is not None
        headers = standard_headers(secret, f"msg_limits{count}", int(now), body)
        wrong = " ".join(f"v1,{base64.b64encode(b'%032d' % i).decode()}" for i in range(count - 1))
        return {**headers, "webhook-signature": f"{wrong} {headers['webhook-signature']}"}

    with served(config) as ingress:
        url = f"{ingress.url}/webhooks/openphone"
        eight = httpx.post(url, content=body, headers=signed(8), timeout=10)
        assert eight.status_code == 200, eight.text
        nine = httpx.post(url, content=body, headers=signed(9), timeout=10)
        assert nine.status_code == 401
    (logged,) = rejections(caplog)
    assert logged.getMessage().endswith("lists more than 8 entries")


def test_a_long_signature_list_is_refused_without_checking_it(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the head cap raised so it gets through: 2,500 fresh entries and a 1 MiB body
    are refused for their number, before one HMAC (it used to take 2,500, on the event loop,
    while every other request waited)."""
    config = config_with(tmp_path, redis_server_url, redis_namespace, max_header_bytes=262_144)
    now = time.time()
    body = quo_body(config, now)
    padded = body[:-1] + b" " * (config.ingress.max_body_bytes - len(body)) + body[-1:]
    signatures = ",".join(legacy_entries(config, padded, now, 2500))
    with served(config) as ingress:
        response = httpx.post(
            f"{ingress.url}/webhooks/openphone",
            content=padded,
            headers={"openphone-signature": signatures, "content-type": "application/json"},
            timeout=PATIENCE_S,
        )
        assert response.status_code == 401
        assert httpx.get(f"{ingress.url}/healthz", timeout=10).status_code == 200
    (logged,) = rejections(caplog)
    assert logged.getMessage() == "rejected: openphone-signature lists more than 8 entries"


# --- slow clients --------------------------------------------------------------------------


@pytest.fixture
def quick(tmp_path: Path, redis_server_url: str, redis_namespace: str) -> Iterator[Ingress]:
    """An ingress with one-second deadlines."""
    config = config_with(
        tmp_path,
        redis_server_url,
        redis_namespace,
        header_timeout_s=1.0,
        body_timeout_s=1.0,
        keep_alive_timeout_s=1,
    )
    with served(config) as ingress:
        yield ingress


def test_an_idle_connection_is_closed(quick: Ingress) -> None:
    with connection(quick) as sock:
        seen = watch(sock)
    assert seen == Seen(b"", closed=True)
    with connection(quick) as sock:  # and once a request was answered (keep-alive)
        sock.sendall(head("GET", "/healthz"))
        seen = watch(sock)
    assert seen.status == 200
    assert seen.closed


def test_trickled_headers_are_cut_off_with_408(
    quick: Ingress, caplog: pytest.LogCaptureFixture
) -> None:
    with connection(quick) as sock:
        sock.sendall(b"POST /webhooks/openphone HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        seen = watch(sock, trickle=b"x-slow: 1\r\n")
    assert seen.status == 408, seen.received[:200]
    assert seen.closed
    (logged,) = rejections(caplog)
    assert (logged.__dict__["status"], logged.__dict__["remote"]) == (408, "127.0.0.1")


def test_a_trickled_delivery_body_is_408(quick: Ingress, caplog: pytest.LogCaptureFixture) -> None:
    with connection(quick) as sock:
        sock.sendall(head("POST", "/webhooks/openphone", **{"content-length": "2000"}))
        seen = watch(sock, trickle=b"{")
    assert seen.status == 408, seen.received[:200]
    assert orjson.loads(seen.received.partition(b"\r\n\r\n")[2]) == {"status": "timeout"}
    assert seen.closed
    (logged,) = rejections(caplog)
    fields = {key: logged.__dict__.get(key) for key in ("status", "remote", "source")}
    assert fields == {"status": 408, "remote": "127.0.0.1", "source": "openphone"}


def test_a_body_nobody_reads_is_cut_off(quick: Ingress) -> None:
    with connection(quick) as sock:
        sock.sendall(head("GET", "/healthz", **{"content-length": "2000"}))
        sock.settimeout(PATIENCE_S)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # answered without the body
        seen = watch(sock, trickle=b"x")  # which keeps coming, a byte at a time
    assert seen == Seen(b"", closed=True)


# --- too many connections -----------------------------------------------------------------


def test_a_request_over_max_connections_is_503(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    config = config_with(
        tmp_path, redis_server_url, redis_namespace, max_connections=2, keep_alive_timeout_s=60
    )
    with served(config) as ingress, connection(ingress) as first, connection(ingress) as second:
        for sock in (first, second):  # two kept-alive connections: the cap
            sock.sendall(head("GET", "/healthz"))
            sock.settimeout(PATIENCE_S)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        over = httpx.get(f"{ingress.url}/healthz", timeout=10)
        assert over.status_code == 503
        first.close()
        deadline = time.monotonic() + PATIENCE_S
        while httpx.get(f"{ingress.url}/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "a freed connection is not served again"
            time.sleep(0.1)


# --- whose address a rejection is logged with ----------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "logged"),
    [
        ([], "127.0.0.1"),
        (["10.0.0.0/8"], "127.0.0.1"),
        (["127.0.0.1"], FORGED),
        (["127.0.0.0/8", "::1"], FORGED),
    ],
)
def test_forwarded_for_is_believed_from_trusted_proxies_only(
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
    trusted: list[str],
    logged: str,
) -> None:
    config = config_with(tmp_path, redis_server_url, redis_namespace, trusted_proxies=trusted)
    with served(config) as ingress:
        response = httpx.post(
            f"{ingress.url}/webhooks/openphone",
            content=b"{}",
            headers={"openphone-signature": "hmac;1;1;x", "x-forwarded-for": FORGED},
            timeout=10,
        )
        assert response.status_code == 401
    (record,) = rejections(caplog)
    assert record.__dict__["remote"] == logged


@pytest.mark.slow
def test_callhook_serve_applies_the_limits_and_distrusts_forwarded_for(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    port = free_port()
    sandbox = prepare(
        tmp_path / "var",
        ingress_host="127.0.0.1",
        ingress_port=port,
        simulator_port=1,
        redis_url=redis_server_url,
        namespace=redis_namespace,
    )
    text = sandbox.config_path.read_text()
    assert text.count("[ingress]\n") == 1
    sandbox.config_path.write_text(
        text.replace("[ingress]\n", "[ingress]\nmax_header_bytes = 4096\n")
    )
    log = tmp_path / "serve.log"
    with serve_process(sandbox.config_path, log):
        wait_until_answers("127.0.0.1", port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        forged = httpx.post(
            f"{url}/webhooks/openphone",
            content=b"{}",
            headers={"openphone-signature": "hmac;1;1;x", "x-forwarded-for": FORGED},
            timeout=10,
        )
        assert forged.status_code == 401
        big = httpx.get(f"{url}/healthz", headers={"x-filler": "a" * 5000}, timeout=10)
        assert big.status_code == 431
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line["logger"] == "callhook.ingress.rejected"]
    assert [(r["status"], r["remote"]) for r in rejected] == [
        (401, "127.0.0.1"),
        (431, "127.0.0.1"),
    ]


@contextmanager
def serve_process(config_path: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "callhook", "serve", "--config", str(config_path)]
    env: dict[str, Any] = {**os.environ, "FORWARDED_ALLOW_IPS": "*"}  # uvicorn's own default
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        yield process
    finally:
        stop_group(process)
