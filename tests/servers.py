"""Real servers for tests: Redis and PostgreSQL (started when none answers), and ASGI apps
served by Uvicorn on a loopback port in a background thread."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_group(process: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    """SIGTERM the process group `process` leads (started with `start_new_session=True`),
    then SIGKILL it if it has not ended within `timeout` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_answers(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(host, port, timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on {host}:{port} within {timeout}s")


@dataclass
class RedisServer:
    """A redis-server process of our own (for chaos tests, or when none runs)."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--maxmemory-policy",
            "noeviction",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_answers("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """The machine's Redis on 6379 if it answers, else one started for this test run."""
    if answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    with tempfile.TemporaryDirectory(prefix="callhook-redis-") as directory:
        server = RedisServer(port=free_port(), directory=Path(directory))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    """A libpq DSN for a PostgreSQL server: the machine's on 5432 if it answers, else one
    initialised and started for this run (needs the postgresql server package)."""
    if answers("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    with own_postgres() as server:
        yield server.dsn


@contextlib.contextmanager
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own on a free port, whatever else runs on this machine."""
    with tempfile.TemporaryDirectory(prefix="callhook-pg-") as directory:
        server = PostgresServer(port=free_port(), directory=Path(directory))
        server.initdb()
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class PostgresServer:
    """A PostgreSQL server initialised in `directory`; a test may stop and start it again."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    @property
    def _run_as(self) -> list[str]:
        # the server refuses to run as root
        return [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]

    def initdb(self) -> None:
        if self._run_as:
            shutil.chown(self.directory, "postgres")
        data = str(self.directory / "data")
        subprocess.run(
            [
                *self._run_as,
                str(_pg_bindir() / "initdb"),
                "-D",
                data,
                "-U",
                "postgres",
                "-A",
                "trust",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = [
            "-p",
            str(self.port),
            "-k",
            str(self.directory),
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        self.process = subprocess.Popen(
            [
                *self._run_as,
                str(_pg_bindir() / "postgres"),
                "-D",
                str(self.directory / "data"),
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_answers("127.0.0.1", self.port, timeout=30)
        ready = [str(_pg_bindir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        deadline = time.monotonic() + 30
        # the port answers while the server is still starting up (recovering, after a stop)
        while subprocess.run(ready, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on {self.port} not ready within 30s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, as when an operator stops the server."""
        if self.process is None:
            return
        postmaster = self.directory / "data" / "postmaster.pid"
        try:
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)
        except (OSError, ValueError, IndexError):
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _pg_bindir() -> Path:
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.glob("*/bin/postgres")) if root.is_dir() else []
    if not versions:
        raise RuntimeError("no PostgreSQL server answers on 5432 and none is installed")
    return versions[-1].parent


class ServerThread:
    """Serve an ASGI app with Uvicorn on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: ASGIApp, port: int | None = None, *, lifespan: bool = False) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on" if lifespan else "off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
