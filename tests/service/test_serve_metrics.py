"""`callhook serve --workers N`: one scrape of `/metrics` covers every ingress process, and
a SIGTERM stops them all.

Each Uvicorn worker process counts the deliveries it accepted; whichever process answers a
scrape serves all of them merged (callhook/metrics.py), so Prometheus never sees a counter
drop or a partial count depending on which process the load balancer picked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callhook import testevent
from callhook.config import load_config
from callhook.queues import ENRICH_QUEUE
from callhook.sandbox import prepare
from tests.servers import free_port, stop_group, wait_until_answers

pytestmark = pytest.mark.slow

PROCESSES = 2
DELIVERIES = 40
SOURCE = "diga"


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_every_scrape_counts_what_all_ingress_processes_accepted(
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
    config = load_config(sandbox.config_path)
    temp = tmp_path / "tmp"  # where the processes' shared metrics directory is made
    temp.mkdir()
    command = [
        sys.executable,
        "-m",
        "callhook",
        "serve",
        "--config",
        str(sandbox.config_path),
        "--workers",
        str(PROCESSES),
    ]
    log = tmp_path / "serve.log"
    with log.open("ab") as output:
        serve = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TMPDIR": str(temp)},
        )
    try:
        wait_until_answers("127.0.0.1", port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        for _ in range(DELIVERIES):  # a connection each, as vendors open them
            sent = testevent.send(config, SOURCE, url=url, vendor_type=None, call_id=None)
            assert sent.status_code == 200, sent.describe()
        for _ in range(3 * PROCESSES):
            text = httpx.get(f"{url}/metrics", timeout=10).text
            accepted = samples(text, "callhook_webhooks_total")
            assert accepted[frozenset({("source", SOURCE), ("outcome", "accepted")})] == DELIVERIES
            enqueued = samples(text, "callhook_events_enqueued_total")
            assert sum(enqueued.values()) == DELIVERIES
            accepts = samples(text, "callhook_ingress_accept_seconds_count")
            assert sum(accepts.values()) == DELIVERIES
            # read from Redis by the process answering: one sample per queue, not per process
            depth = samples(text, "callhook_queue_depth")
            assert depth[frozenset({("queue", ENRICH_QUEUE)})] == DELIVERIES

        # SIGTERM to every process, as systemd sends it: each stops at once. (An ingress
        # process whose lifespan waited on a cancelled task that redis-py had absorbed the
        # cancellation of hung here until SIGKILL, about one stop in five.)
        stopping = time.monotonic()
        os.killpg(serve.pid, signal.SIGTERM)
        status = serve.wait(timeout=60)
        took = time.monotonic() - stopping
    finally:
        stop_group(serve)
    assert status == 0, log.read_text()[-3000:]
    assert took < 15, f"stopping took {took:.1f}s"
    assert list(temp.iterdir()) == [], "the shared metrics directory outlived `serve`"
