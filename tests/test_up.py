"""`callhook up` from an empty directory (sandbox mode), then `callhook send-test-event` for
each vendor: 200 from the ingress, an enriched record in the sandbox's sink, the
deliveries counted on the workers' metrics port, and the console link printed at start
showing every vendor's call with its journey.

The sandbox makes one source per registered vendor, named after it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callhook.vendors import VENDORS
from tests.servers import free_port, wait_until_answers

pytestmark = pytest.mark.slow

#: the sandbox's sources: one per registered vendor, named after it
SOURCES = frozenset(VENDORS)


def callhook(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callhook", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def records(var: Path) -> list[dict[str, object]]:
    database = var / "callhook.db"
    if database.exists():
        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT record FROM calls").fetchall()
        return [orjson.loads(row[0]) for row in rows]
    jsonl = var / "records.jsonl"
    if jsonl.exists():
        return [orjson.loads(line)["record"] for line in jsonl.read_bytes().splitlines()]
    return []


@pytest.mark.parametrize(
    "next_port_taken", [False, True], ids=["next-port-free", "next-port-taken"]
)
def test_up_then_send_test_event_for_each_vendor(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, next_port_taken: bool
) -> None:
    port, metrics_port = free_port(), free_port()
    # the simulators prefer the ingress port + 1; another program holding it must not
    # leave the sandbox's vendor APIs unreachable
    squatter = socket.socket()
    if next_port_taken:
        with contextlib.suppress(OSError):  # already taken by someone else: as good
            squatter.bind(("127.0.0.1", port + 1))
            squatter.listen()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callhook",
            "up",
            "--port",
            str(port),
            "--redis-url",
            redis_server_url,
            "--namespace",
            redis_namespace,
            "--metrics-port",
            str(metrics_port),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    try:
        assert up.stdout is not None
        banner = up.stdout.readline().decode()
        assert banner.startswith("callhook up: ingress http://127.0.0.1:")
        assert f"sources: {', '.join(sorted(SOURCES))} ·" in banner
        assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in banner
        wait_until_answers("127.0.0.1", port)

        for source in sorted(SOURCES):
            sent = callhook("send-test-event", source, cwd=tmp_path)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "HTTP 200" in sent.stdout
            assert '"status":"accepted"' in sent.stdout

        deadline = time.monotonic() + 30
        found: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            found = records(tmp_path / "var")
            if {r["source"] for r in found} == SOURCES:
                break
            time.sleep(0.2)
        assert {r["source"] for r in found} == SOURCES
        assert all(r["enrichment"] == "api" for r in found)

        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        delivered = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "callhook_sink_deliveries_total" and sample.labels["outcome"] == "ok"
        )
        assert delivered >= len(SOURCES), text
        check_console(banner, {str(r["call_id"]): str(r["source"]) for r in found})
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        log.close()
        squatter.close()
    assert up.returncode in (0, -signal.SIGINT, 130), (tmp_path / "up.log").read_text()[-2000:]


def check_console(banner: str, calls: dict[str, str]) -> None:
    """The start line's console link logs in; the calls page lists `calls` (call id ->
    source), and each call's page its timeline and the sandbox sink's attempt."""
    found = re.search(r"console: ((http://\S+?)/console/login\?token=[\w-]+) ", banner)
    assert found, banner
    link, base = found.group(1), found.group(2)
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        start = browser.get(link)
        assert start.status_code == 200
        assert start.url.path == "/console/"
        listed = browser.get(f"{base}/console/calls").text
        for call_id, source in calls.items():
            assert f'data-call-id="{call_id}"' in listed
            page = browser.get(f"{base}/console/calls/{source}/{call_id}").text
            assert "Delivery accepted" in page
            assert 'data-sink="sandbox"' in page
            assert "attempt outcome-ok" in page


def test_up_stops_with_the_workers_when_a_sink_is_misconfigured(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    config = tmp_path / "callhook.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_server_url}"\nnamespace = "{redis_namespace}"\n\n'
        '[[sinks]]\nname = "warehouse"\ntype = "database"\nurl = "sqlite:////proc/no/calls.db"\n'
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "callhook", "up", "--port", str(free_port()), "--metrics-port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    named = [line for line in output.splitlines() if "cannot create /proc/no" in line]
    assert len(named) == 1, output
    assert "sink 'warehouse'" in named[0]
    assert time.monotonic() - started < 60
