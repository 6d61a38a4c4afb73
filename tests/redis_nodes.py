"""Redis topologies for tests: a primary, replicas and sentinels, each a `redis-server`
process of our own on a free loopback port, in a directory of the test's.

Each process is started through `callhook.lifecycle` (the kernel SIGKILLs it if the test
process dies, even by SIGKILL) in a session of its own, and is stopped when the topology's
block ends: a test run leaves nothing running. Sentinels are `redis-server --sentinel` with
a generated config and short timeouts (down after 1 s, failover timeout 3 s), so a failover
takes a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from callhook.lifecycle import child_command
from tests.servers import free_port, wait_until_answers

SERVICE = "callhook-primary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def poll(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    """`check()`'s first truthy value, polled every 50 ms (errors count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (redis.exceptions.RedisError, OSError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s}s (last error: {last!r})")


@dataclass(frozen=True)
class Tls:
    """A certificate authority and a server certificate for 127.0.0.1 that it signed."""

    ca: Path
    cert: Path
    key: Path

    def settings(self) -> list[tuple[str, str]]:
        """redis-server's TLS settings: replication over TLS too, and clients without
        certificates of their own."""
        return [
            ("tls-cert-file", str(self.cert)),
            ("tls-key-file", str(self.key)),
            ("tls-ca-cert-file", str(self.ca)),
            ("tls-auth-clients", "no"),
            ("tls-replication", "yes"),
        ]


def make_tls(directory: Path) -> Tls:
    """Generate the authority and the server certificate with the openssl command."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key, request = directory / "ca.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
         "-out", str(tls.ca), "-days", "2", "-subj", "/CN=callhook tests CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls.key),
         "-out", str(request), "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", str(request), "-CA", str(tls.ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(tls.cert), "-days", "2", "-extfile", str(extensions)],
    ):  # fmt: skip
        subprocess.run(["openssl", *command], check=True, capture_output=True)
    return tls


@dataclass
class Node:
    """One redis-server process (a data node or a sentinel)."""

    name: str
    port: int
    directory: Path
    args: list[str]
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    #: its only port speaks TLS
    tls: Tls | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        with (self.directory / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                child_command([binary, *self.args]),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_answers("127.0.0.1", self.port, timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a host losing the process."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)  # a paused one could not exit
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5, **tls
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Topology:
    primary: Node
    replicas: list[Node]
    sentinels: list[Node]
    password: str | None = None
    sentinel_password: str | None = None
    tls: Tls | None = None
    _clients: list[redis.Redis] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    @property
    def url(self) -> str:
        """The primary's own address (not a Sentinel one)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.primary.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.primary.port}/0?{self._tls_query}"

    @property
    def sentinel_url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(node.address for node in self.sentinels)
        if self.tls is None:
            return f"redis+sentinel://{auth}{hosts}/{SERVICE}/0"
        return f"rediss+sentinel://{auth}{hosts}/{SERVICE}/0?{self._tls_query}"

    @property
    def _tls_query(self) -> str:
        assert self.tls is not None
        return f"ssl_ca_certs={quote(str(self.tls.ca), safe='/')}"

    def client(self, node: Node) -> redis.Redis:
        """A client of `node`, closed with the topology."""
        client = node.client()
        self._clients.append(client)
        return client

    def node_at(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def wait_in_sync(self) -> None:
        """Until every running replica acknowledges writes and the sentinels know of them
        (a sentinel only fails over to a replica it knows).

        A replica's link being up, even the primary listing it online, is not enough: for up
        to a second after its sync a replica may not answer the primary's requests for
        acknowledgements, and a `WAIT` then times out. So: a write, then `WAIT`, until it
        is confirmed."""
        running = len([replica for replica in self.replicas if replica.process is not None])
        primary = self.client(self.primary)

        def acknowledged() -> bool:
            with primary.pipeline(transaction=False) as pipe:
                pipe.set("redis-nodes:probe", 1)
                pipe.wait(running, 100)
                return int(pipe.execute()[1]) >= running

        poll(acknowledged, "the replicas acknowledging writes")
        for sentinel in self.sentinels:
            client = self.client(sentinel)

            def knows_replicas(client: redis.Redis = client) -> bool:
                known = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                return len(known) >= len([r for r in self.replicas if r.process is not None])

            poll(knows_replicas, f"{sentinel.name} knows the replicas")

    def sentinel_primary(self) -> int:
        """The port the sentinels name as the primary now."""
        _host, port = self.client(self.sentinels[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
        )
        return int(port)

    def wait_for_failover(self, timeout_s: float = 15.0) -> Node:
        """After the primary died: until the sentinels promoted a replica and it says it is
        the primary; that replica, now `self.primary`."""
        old = self.primary.port

        def promoted() -> Node | None:
            port = self.sentinel_primary()
            if port == old:
                return None
            node = self.node_at(port)
            role = self.client(node).execute_command("ROLE")[0]
            return node if role in (b"master", "master") else None

        node: Node = poll(promoted, "failover to a replica", timeout_s)
        self.replicas.remove(node)
        self.replicas.append(self.primary)  # the dead one, stopped with the rest
        self.primary = node
        return node

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for node in [*self.sentinels, *self.replicas, self.primary]:
            node.stop()


def _data_node(
    name: str,
    directory: Path,
    password: str | None,
    replica_of: int | None = None,
    tls: Tls | None = None,
) -> Node:
    port = free_port()
    listen = ["--port", str(port)] if tls is None else ["--port", "0", "--tls-port", str(port)]
    args = [
        *listen, "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "no", "--protected-mode", "no",
        "--dbfilename", f"{name}.rdb", "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
    if tls is not None:
        args += [part for key, value in tls.settings() for part in (f"--{key}", value)]
    if password:
        args += ["--requirepass", password, "--masterauth", password]
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    return Node(name, port, directory, args, password, tls=tls)


def _sentinel(
    name: str,
    directory: Path,
    primary: Node,
    quorum: int,
    password: str | None,
    sentinel_password: str | None,
    down_after_ms: int = DOWN_AFTER_MS,
    tls: Tls | None = None,
) -> Node:
    port = free_port()
    listen = [f"port {port}"] if tls is None else ["port 0", f"tls-port {port}"]
    if tls is not None:
        listen += [f"{key} {value}" for key, value in tls.settings()]
    lines = [
        *listen,
        "bind 127.0.0.1",
        "protected-mode no",
        f"dir {directory}",
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} {quorum}",
        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]
    if password:
        lines.append(f"sentinel auth-pass {SERVICE} {password}")
    if sentinel_password:
        lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
    conf = directory / f"{name}.conf"  # a sentinel rewrites its config: one file each
    conf.write_text("\n".join(lines) + "\n")
    return Node(name, port, directory, [str(conf), "--sentinel"], sentinel_password, tls=tls)


@contextlib.contextmanager
def redis_topology(
    directory: Path,
    *,
    replicas: int = 1,
    sentinels: int = 0,
    password: str | None = None,
    sentinel_password: str | None = None,
    down_after_ms: int = DOWN_AFTER_MS,
    tls: bool = False,
) -> Iterator[Topology]:
    """A primary, `replicas` replicas in sync with it and `sentinels` sentinels watching it
    (quorum: a majority; a primary is down after `down_after_ms` without an answer), all
    running for the block and stopped after it. With `tls`, every one of them speaks TLS
    only (replication and the sentinels' links too)."""
    directory.mkdir(parents=True, exist_ok=True)
    certificates = make_tls(directory / "tls") if tls else None
    primary = _data_node("primary", directory, password, tls=certificates)
    topology = Topology(primary, [], [], password, sentinel_password, certificates)
    try:
        primary.start()
        for index in range(replicas):
            replica = _data_node(
                f"replica{index}", directory, password, primary.port, tls=certificates
            )
            topology.replicas.append(replica)
            replica.start()
        quorum = sentinels // 2 + 1
        for index in range(sentinels):
            sentinel = _sentinel(
                f"sentinel{index}",
                directory,
                primary,
                quorum,
                password,
                sentinel_password,
                down_after_ms,
                certificates,
            )
            topology.sentinels.append(sentinel)
            sentinel.start()
        topology.wait_in_sync()
        yield topology
    finally:
        topology.close()
