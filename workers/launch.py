"""Starting worker processes: Dramatiq's CLI on `workers.process` as a child, with our
config, and their metrics served by this parent process.

Each worker process writes its Prometheus samples to a shared directory
(prometheus-client's multiprocess mode); the parent serves them, merged, on
`--metrics-port` (default 9191). Signals are passed on to Dramatiq's supervisor, which
stops its workers gracefully.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from callhook.config import ENV_PATH_VARIABLE, Config

DEFAULT_METRICS_PORT = 9191


def worker_command(processes: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.process",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        # in-flight messages get this long to finish on SIGTERM before being requeued
        "--worker-shutdown-timeout",
        "30000",
        "--skip-logging",  # workers.process sets up JSON logs itself
    ]


def worker_environment(config: Config, metrics_dir: str | None = None) -> dict[str, str]:
    """The environment for worker processes: ours, pointing at the same config file."""
    env = dict(os.environ)
    if Path(config.origin).is_file():
        env[ENV_PATH_VARIABLE] = str(Path(config.origin).resolve())
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


def start_workers(
    config: Config, *, processes: int, threads: int, metrics_port: int | None
) -> subprocess.Popen[bytes]:
    """Spawn the worker group; serve its merged metrics on `metrics_port` from here."""
    metrics_dir = None
    if metrics_port is not None:
        metrics_dir = tempfile.mkdtemp(prefix="callhook-metrics-")
        serve_metrics(metrics_dir, metrics_port)
    # Its own session: a terminal's Ctrl-C or a group-wide SIGTERM reaches only us, and we pass
    # it on exactly once (Dramatiq takes a second signal as "kill now").
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        worker_command(processes, threads),
        env=worker_environment(config, metrics_dir),
        start_new_session=True,
    )


def start_scheduler(config: Config) -> subprocess.Popen[bytes]:
    """Spawn `callhook scheduler` on the same config file, in its own session (as above)."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "callhook", "scheduler"],
        env=worker_environment(config),
        start_new_session=True,
    )


def serve_metrics(directory: str, port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    start_http_server(port, addr="0.0.0.0", registry=registry)  # noqa: S104 - scraped remotely


def run_workers(config: Config, *, processes: int, threads: int, metrics_port: int | None) -> int:
    """`callhook worker`: run the group until it exits; pass SIGTERM/SIGINT on to it."""
    child = start_workers(config, processes=processes, threads=threads, metrics_port=metrics_port)

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()
