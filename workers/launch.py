"""Starting worker processes: Dramatiq's CLI on `workers.process` as a child, with our
config, and their metrics served by this parent process.

Each worker process writes its Prometheus samples to a shared directory
(prometheus-client's multiprocess mode); the parent serves them, merged, on
`--metrics-port` (default 9191). Under `callhook up` the scheduler writes to the same
directory, so one port shows both. Signals are passed on to Dramatiq's supervisor, which
stops its workers gracefully (within `[workers].shutdown_timeout_s`, workers/shutdown.py).
Every process started here dies with its parent (callhook/lifecycle.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from callhook.config import ENV_PATH_VARIABLE, Config
from callhook.errors import ConfigError
from callhook.lifecycle import child_command
from callhook.metrics import MULTIPROCESS_DIR_VARIABLE, merged_registry
from workers.shutdown import dramatiq_timeout_ms

DEFAULT_METRICS_PORT = 9191
DEFAULT_SCHEDULER_METRICS_PORT = 9192
#: every interface: Prometheus scrapes from another host
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def worker_command(processes: int, threads: int, shutdown_timeout_s: float) -> list[str]:
    return child_command(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "workers.process",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            # in-flight messages get this long to finish on SIGTERM (workers/shutdown.py)
            "--worker-shutdown-timeout",
            str(dramatiq_timeout_ms(shutdown_timeout_s)),
            "--skip-logging",  # workers.process sets up JSON logs itself
        ]
    )


def worker_environment(config: Config, metrics_dir: str | None = None) -> dict[str, str]:
    """The environment for worker processes: ours, pointing at the same config file, and
    at the metrics directory when there is one."""
    env = dict(os.environ)
    if Path(config.origin).is_file():
        env[ENV_PATH_VARIABLE] = str(Path(config.origin).resolve())
    if metrics_dir is not None:
        env[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
    return env


def start_workers(
    config: Config, *, processes: int, threads: int, metrics_dir: str | None
) -> subprocess.Popen[bytes]:
    """Spawn the worker group, writing its metrics to `metrics_dir` (None: nowhere served)."""
    # Its own session: a terminal's Ctrl-C or a group-wide SIGTERM reaches only us, and we pass
    # it on exactly once (Dramatiq takes a second signal as "kill now").
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        worker_command(processes, threads, config.workers.shutdown_timeout_s),
        env=worker_environment(config, metrics_dir),
        start_new_session=True,
    )


def start_scheduler(config: Config, *, metrics_dir: str | None) -> subprocess.Popen[bytes]:
    """Spawn `callhook scheduler` on the same config file, in its own session (as above).
    It serves no port of its own: its samples go to `metrics_dir`, served with the workers'."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        child_command([sys.executable, "-m", "callhook", "scheduler", "--metrics-port", "0"]),
        env=worker_environment(config, metrics_dir),
        start_new_session=True,
    )


def start_metrics(port: int, *, addr: str = ALL_INTERFACES) -> str:
    """A fresh multiprocess-mode directory, its merged samples served on `addr:port`."""
    directory = tempfile.mkdtemp(prefix="callhook-metrics-")
    try:
        serve_metrics(port, addr=addr, directory=directory)
    except ConfigError:
        remove_metrics(directory)
        raise
    return directory


def remove_metrics(directory: str | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def serve_metrics(port: int, *, addr: str = ALL_INTERFACES, directory: str | None = None) -> None:
    """Serve Prometheus metrics from a daemon thread: the samples every process wrote to
    `directory`, or (None) this process's own registry. ConfigError if the port is taken."""
    from prometheus_client import REGISTRY, start_http_server

    registry = REGISTRY if directory is None else merged_registry(directory)
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {reason}") from None


def run_workers(config: Config, *, processes: int, threads: int, metrics_port: int | None) -> int:
    """`callhook worker`: run the group until it exits; pass SIGTERM/SIGINT on to it. Its
    status is the group's: 2 when a worker process found a sink misconfigured at start."""
    metrics_dir = None if metrics_port is None else start_metrics(metrics_port)
    try:
        child = start_workers(config, processes=processes, threads=threads, metrics_dir=metrics_dir)

        def forward(signum: int, frame: FrameType | None) -> None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return child.wait()
    finally:
        remove_metrics(metrics_dir)
