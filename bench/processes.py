"""What a benchmark starts and reads around it: child processes (each in its own session,
logging to a file, stopped with its whole group), readiness by port, CPU time and peak
memory from /proc, and Redis's own counters."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: children run from the repository's root, where `python -m bench.…` finds this package
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Child:
    """A process we started; `log` holds its stdout and stderr."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        """The end of its log, for a message when it did not start."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def python_command(*args: str) -> list[str]:
    """This interpreter running `args` (`-m module ...`), so children use the same venv."""
    return [sys.executable, *args]


def spawn(
    name: str, command: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> Child:
    """Start `command` in a session of its own (a signal to its group reaches its children
    and nothing of ours), its output appended to `log_dir/<name>.log`; `env` is added to
    our environment."""
    log = log_dir / f"{name}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
    return Child(name, process, log)


def stop(child: Child, timeout_s: float = 40.0) -> None:
    """SIGTERM the child's process group and wait; SIGKILL it if it outstays `timeout_s`."""
    if child.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.process.wait()


def wait_for_port(child: Child, port: int, timeout_s: float = 30.0) -> None:
    """Return once 127.0.0.1:`port` accepts connections; fail early if the child exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"{child.name} did not listen on {port} within {timeout_s}s:\n{child.tail()}"
    )


@contextlib.contextmanager
def running(
    name: str,
    command: Sequence[str],
    log_dir: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Child]:
    """A child for the duration of the block, ready once `port` (if given) answers."""
    child = spawn(name, command, log_dir, env)
    try:
        if port is not None:
            wait_for_port(child, port)
        yield child
    finally:
        stop(child)


# --- /proc -----------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant of it."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        for task in _listdir(f"/proc/{current}/task"):
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                found.extend(int(child) for child in children)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # fields after the parenthesised command name; utime and stime are fields 14 and 15
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(member) for member in tree(pid))


def memory_kib(pid: int, field: str = "VmHWM") -> int:
    """A memory figure from /proc/<pid>/status in KiB: VmHWM (peak RSS) or VmRSS."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def command_line(pid: int) -> str:
    """The process's command line, shortened to its interesting part."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = [word.decode(errors="replace") for word in raw.split(b"\0") if word]
    if words and words[0].endswith(("python", "python3", "python3.11")):
        words = words[1:]
    return " ".join(words)[:70]


def busy_cpu_seconds() -> float:
    """CPU time all cores of this machine have spent not idle (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


@dataclass
class CpuMeter:
    """CPU time spent since `start` by process trees, Redis, this process and the machine."""

    processes: dict[str, float]
    redis_s: float
    busy_s: float
    own_s: float

    @classmethod
    def start(cls, children: Mapping[str, Child], client: redis.Redis) -> CpuMeter:
        return cls(_tree_cpu(children), redis_cpu_seconds(client), busy_cpu_seconds(), _own())

    def report(
        self, children: Mapping[str, Child], client: redis.Redis, seconds: float, work: int
    ) -> str:
        """One line per process with its share of the busy CPU time and its time per unit of
        `work` (deliveries); what no process of ours used is "other"."""
        spent = {n: s - self.processes.get(n, 0.0) for n, s in _tree_cpu(children).items()}
        spent["load generator (this process)"] = _own() - self.own_s
        spent["redis"] = redis_cpu_seconds(client) - self.redis_s
        busy = busy_cpu_seconds() - self.busy_s
        spent["other (PostgreSQL, kernel...)"] = busy - sum(spent.values())
        lines = [
            f"  {seconds:.0f}s, {work} deliveries; {busy:.0f} CPU-s busy of "
            f"{seconds * (os.cpu_count() or 1):.0f}"
        ]
        for name, value in sorted(spent.items(), key=lambda item: -item[1]):
            per = value / work * 1000
            lines.append(f"  {name:<30} {value:6.1f} s {value / busy:6.1%} {per:6.2f} ms/delivery")
        return "\n".join(lines)


def _tree_cpu(children: Mapping[str, Child]) -> dict[str, float]:
    return {name: tree_cpu_seconds(child.pid) for name, child in children.items()}


def _own() -> float:
    return sum(os.times()[:2])


def peak_rss_report(children: Mapping[str, Child]) -> str:
    """VmHWM of every process in each child's tree, one line each."""
    return "\n".join(
        f"  {name:<11} {pid:>7} {command_line(pid):<58} {memory_kib(pid) / 1024:6.0f}"
        for name, child in children.items()
        for pid in tree(child.pid)
    )


# --- Redis -----------------------------------------------------------------------------


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def delete_namespace(client: redis.Redis, namespace: str) -> int:
    """Delete every key under `namespace` (the benchmark's only keys); return how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{namespace}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    return deleted
