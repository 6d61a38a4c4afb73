"""A parent killed outright (SIGKILL: the OOM killer, a supervisor's stop timeout) takes
every process below it along: `callhook worker` (Dramatiq's supervisor and its worker
processes), `callhook up` (those and the scheduler) and `callhook serve --workers N`
(Uvicorn's worker processes). The processes below the parent are noted from /proc before
the kill; whatever outlives a failing test is killed by it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from bench.processes import command_line, tree
from tests.servers import free_port

pytestmark = pytest.mark.slow

#: seconds the tree gets to come up on a loaded machine, and to be gone after the kill
START_S = 90.0
GONE_S = 30.0


@dataclass(frozen=True)
class Proc:
    """One process for good: a pid, and its start time (a reused pid has another)."""

    pid: int
    started: str

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        stat = _stat(pid)
        return None if stat is None else cls(pid, stat[19])

    def alive(self) -> bool:
        stat = _stat(self.pid)
        # a zombie is dead, only not reaped yet (its new parent reaps it in its own time)
        return stat is not None and stat[19] == self.started and stat[0] not in ("Z", "X")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state field on (field 3 onwards), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def below(pid: int) -> list[Proc]:
    return [p for p in (Proc.of(child) for child in tree(pid)[1:]) if p is not None]


@contextlib.contextmanager
def killed_afterwards(process: subprocess.Popen[bytes]) -> Iterator[list[Proc]]:
    """Yield a list for the test to fill with the processes below `process`; afterwards
    SIGKILL `process` and any of them still alive, and wait until they are gone."""
    noted: list[Proc] = []
    try:
        yield noted
    finally:
        if process.poll() is None:
            noted += below(process.pid)
            process.kill()
        process.wait()
        for proc in noted:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        wait_gone(noted)


def wait_gone(procs: list[Proc], timeout: float = GONE_S) -> list[Proc]:
    """Poll until none of `procs` is alive, for up to `timeout`; those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if p.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if p.alive()]
    return alive


def wait_for(
    condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}:\n{log.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def heartbeats(redis_url: str, namespace: str) -> int:
    """Dramatiq worker processes that have heart-beaten on this namespace."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard(f"{namespace}:__heartbeats__"))
    finally:
        client.close()


def sigkill_leaves_nothing(process: subprocess.Popen[bytes], noted: list[Proc]) -> None:
    noted += below(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = wait_gone(noted)
    assert left == [], "outlived their parent: " + "; ".join(
        f"{p.pid} {command_line(p.pid)}" for p in left
    )


def start(command: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "callhook", *command],
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def redis_config(path: Path, redis_url: str, namespace: str) -> Path:
    path.write_text(f'[redis]\nurl = "{redis_url}"\nnamespace = "{namespace}"\n')
    return path


def test_sigkilled_worker_takes_dramatiq_supervisor_and_workers_along(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    config = redis_config(tmp_path / "callhook.toml", redis_server_url, redis_namespace)
    log = tmp_path / "worker.log"
    command = ["worker", "--config", str(config), "--processes", "2", "--threads", "2"]
    worker = start([*command, "--metrics-port", "0"], log, tmp_path)
    with killed_afterwards(worker) as noted:
        # callhook worker → Dramatiq's supervisor → 2 worker processes, both consuming
        wait_for(
            lambda: (
                len(below(worker.pid)) >= 3 and heartbeats(redis_server_url, redis_namespace) >= 2
            ),
            "2 consuming worker processes",
            worker,
            log,
        )
        sigkill_leaves_nothing(worker, noted)


def test_sigkilled_up_takes_workers_and_scheduler_along(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    log = tmp_path / "up.log"
    sandbox = ["--redis-url", redis_server_url, "--namespace", redis_namespace]
    command = ["up", "--port", str(free_port()), *sandbox, "--metrics-port", "0"]
    up = start([*command, "--processes", "2", "--threads", "2"], log, tmp_path)
    with killed_afterwards(up) as noted:
        # up → Dramatiq's supervisor → 2 worker processes; up → the scheduler
        wait_for(
            lambda: len(below(up.pid)) >= 4 and heartbeats(redis_server_url, redis_namespace) >= 2,
            "the scheduler and 2 consuming worker processes",
            up,
            log,
        )
        sigkill_leaves_nothing(up, noted)


def test_sigkilled_serve_takes_its_uvicorn_workers_along(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    config = redis_config(tmp_path / "callhook.toml", redis_server_url, redis_namespace)
    log = tmp_path / "serve.log"
    port = free_port()
    serve = start(
        ["serve", "--config", str(config), "--port", str(port), "--workers", "2"], log, tmp_path
    )

    def serving() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    with killed_afterwards(serve) as noted:
        # the parent holds the listening socket: an answer means a worker process serves
        wait_for(lambda: len(below(serve.pid)) >= 2 and serving(), "a serving worker", serve, log)
        sigkill_leaves_nothing(serve, noted)
