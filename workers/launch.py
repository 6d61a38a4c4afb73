"""Starting worker processes: Dramatiq's CLI on `workers.process`, with our config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from callhook.config import ENV_PATH_VARIABLE, Config


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


def worker_environment(config: Config) -> dict[str, str]:
    """The environment for worker processes: ours, pointing at the same config file."""
    env = dict(os.environ)
    if Path(config.origin).is_file():
        env[ENV_PATH_VARIABLE] = str(Path(config.origin).resolve())
    return env


def exec_workers(config: Config, *, processes: int, threads: int) -> None:
    """Replace this process with Dramatiq's supervisor (signals then go straight to it)."""
    command = worker_command(processes, threads)
    os.execve(sys.executable, command, worker_environment(config))  # noqa: S606
