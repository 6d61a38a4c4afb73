"""The load generator: realistic signed deliveries built before the clock starts, posted over
keep-alive HTTP/1.1 connections by a small asyncio client, at a fixed concurrency (closed
loop) or a fixed rate (open loop), recording the latency of every unit of work.

A unit is one call's deliveries, posted in order on one connection (the ingress benchmark
uses units of one delivery). Each delivery is built and authenticated by the vendor's own
`simulate_delivery`, as the vendor sends it; the request bytes are rendered up front, so
neither signing nor encoding is measured.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from callhook.config import Config
from callhook.vendors import VENDORS

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One simulated call's deliveries, ready to send: `requests` are HTTP/1.1 messages."""

    source: str
    call_id: str
    requests: tuple[bytes, ...]
    body_bytes: int


def sources_by_vendor(config: Config) -> list[str]:
    """One configured source per registered vendor, in registry order."""
    found: dict[str, str] = {}
    for name, source in config.sources.items():
        if source.vendor in VENDORS and source.webhook_enabled():
            found.setdefault(source.vendor, name)
    return [found[vendor] for vendor in VENDORS if vendor in found]


def build_calls(config: Config, count: int, host: str) -> list[Call]:
    """`count` new calls, round-robin over the vendors, each with its vendor's realistic
    sequence of signed deliveries (its kit's `call_sequence`) rendered as requests for
    `host` (`127.0.0.1:port`)."""
    sources = sources_by_vendor(config)
    if not sources:
        raise RuntimeError("the config has no source of a registered vendor")
    calls: list[Call] = []
    for index in range(count):
        source = sources[index % len(sources)]
        settings = config.sources[source]
        vendor = VENDORS[settings.vendor]
        now = time.time()
        simulated = vendor.kit.simulated_call(None, now=now)
        requests: list[bytes] = []
        size = 0
        for vendor_type in vendor.kit.call_sequence:
            delivery = vendor.kit.simulate_delivery(settings, vendor_type, simulated, now=now)
            requests.append(render(host, f"/webhooks/{source}", delivery.body, delivery.headers))
            size += len(delivery.body)
        calls.append(Call(source, simulated.call_id, tuple(requests), size))
    return calls


def single_deliveries(calls: Sequence[Call]) -> list[tuple[bytes, ...]]:
    """Every delivery of `calls` as a unit of its own, interleaving vendors."""
    return [(request,) for call in calls for request in call.requests]


def render(host: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [
        f"{name}: {value}"
        for name, value in headers.items()
        if name.lower() not in ("host", "content-length")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- the client ------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, await the status of its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                self.waiter.set_exception(RuntimeError("chunked responses are not expected"))
                return
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        status = int(head[9:12])
        del self.buffer[:end]
        self.waiter.set_result(status)
        self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class _Pool:
    """Keep-alive connections to one port. A connection the server closed (Uvicorn drops
    one idle for 5 s) is replaced before it is used."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections: list[_Connection] = []
        self.statuses: Counter[int] = Counter()

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, "127.0.0.1", self.port)
        self.connections.append(connection)
        return connection

    async def send(self, connection: _Connection, unit: tuple[bytes, ...]) -> _Connection:
        """Send the unit's requests in order; return the connection to use next."""
        for request in unit:
            if connection.closed:
                connection = await self.connect()
            try:
                status = await connection.send(request)
            except ConnectionError:
                # closed by the server as the request went out: once more on a new one
                # (deliveries are idempotent; a repeat would be counted as a duplicate)
                connection = await self.connect()
                status = await connection.send(request)
            self.statuses[status] += 1
        return connection

    def close(self) -> None:
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()


@dataclass
class RunResult:
    """What one run measured. `latencies_s[i]`: unit i's time from its start (closed loop)
    or its scheduled start (open loop) to the answer to its last request; `answered_at[i]`:
    that answer's wall-clock time."""

    units: int
    requests: int
    elapsed_s: float
    latencies_s: list[float]
    answered_at: list[float]
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s

    @property
    def units_per_s(self) -> float:
        return self.units / self.elapsed_s

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_s, q) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` percentile (0 < q <= 100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def closed_loop(port: int, units: Sequence[tuple[bytes, ...]], concurrency: int) -> RunResult:
    """Send every unit, `concurrency` at a time, each connection starting the next unit as
    soon as the previous one is answered."""
    pool = _Pool(port)
    latencies = [0.0] * len(units)
    answered = [0.0] * len(units)
    next_unit = iter(range(len(units)))

    async def drive() -> None:
        connection = await pool.connect()
        for index in next_unit:
            started = time.perf_counter()
            connection = await pool.send(connection, units[index])
            latencies[index] = time.perf_counter() - started
            answered[index] = time.time()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(drive() for _ in range(concurrency)))
    finally:
        pool.close()
    elapsed = time.perf_counter() - started
    total = sum(len(unit) for unit in units)
    return RunResult(len(units), total, elapsed, latencies, answered, pool.statuses)


async def open_loop(
    port: int, units: Sequence[tuple[bytes, ...]], rate_per_s: float, connections: int
) -> RunResult:
    """Start unit i at `i / rate_per_s` seconds whatever the answers so far (a late answer
    never delays the schedule), on the first free of `connections` connections.

    Latency counts from the scheduled start, so time spent waiting for a free connection
    is included instead of hidden (no coordinated omission).
    """
    pool = _Pool(port)
    free: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await pool.connect())
    latencies = [0.0] * len(units)
    answered = [0.0] * len(units)

    async def run(index: int, scheduled: float) -> None:
        connection = await free.get()
        try:
            connection = await pool.send(connection, units[index])
        finally:
            free.put_nowait(connection)
        latencies[index] = time.perf_counter() - scheduled
        answered[index] = time.time()

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    try:
        for index in range(len(units)):
            scheduled = started + index / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(run(index, scheduled)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    elapsed = time.perf_counter() - started
    total = sum(len(unit) for unit in units)
    return RunResult(len(units), total, elapsed, latencies, answered, pool.statuses)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on uvloop when installed (as Uvicorn does), else on asyncio's loop,
    with this process's garbage collector off: a full collection over the pre-built
    requests would stall the generator and show up as server latency."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coroutine)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine)
    finally:
        gc.enable()
        gc.unfreeze()
