"""Sampling a running server with py-spy (`pip install py-spy`) and summarising where its
CPU time goes: the functions with the most samples on top of the stack (self) and, among
Callhook's own functions, the most samples anywhere in the stack (inclusive)."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

OUR_PACKAGES = ("callhook/", "service/", "workers/")
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy binary beside this interpreter or on PATH, if installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, output: Path, *, gil: bool = False, rate_hz: int = 200) -> Iterator[None]:
    """Sample `pid` and its child processes while the block runs; print a summary after.
    Raw collapsed stacks are kept in `output` for flame graphs.

    Samples are of threads not idle; with `gil`, only of the thread holding the GIL, which
    is what tells CPU time apart in a process of many mostly waiting threads (a Dramatiq
    worker) but leaves out system calls made without the GIL (writes, os.urandom)."""
    binary = py_spy()
    if binary is None:
        print("py-spy is not installed (pip install py-spy): no profile taken")
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [binary, "record", "--pid", str(pid), "--format", "raw", "--output", str(output)]
    # py-spy pauses the process for each sample (its --nonblocking mode loses most of them
    # under this load); the pauses slow the profiled run, not the shares it reports
    command += ["--rate", str(rate_hz), "--subprocesses", *(["--gil"] if gil else [])]
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attaching takes a moment; samples before the load would be idle anyway
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(timeout=30)
    if output.is_file():
        print(summarise(output))
    else:
        print(f"py-spy wrote no profile (exit {sampler.returncode}); is ptrace allowed?")


def summarise(path: Path, top: int = 12) -> str:
    """The top functions by self and (ours only) inclusive share of samples, lines of one
    function counted together; frames in every sample (the process's entry) are left out."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        packages[_package(frames[-1])] += samples
        for frame in set(frames):
            if any(package in frame for package in OUR_PACKAGES):
                inclusive[frame] += samples
    if not total:
        return f"profile {path}: no samples"
    lines = [f"\nprofile ({total} busy samples, raw stacks in {path})", "  self (top of stack):"]
    lines += [f"    {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("  self, by package:")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in packages.most_common(top)]
    lines.append("  inclusive, Callhook's own functions:")
    shown = [(frame, n) for frame, n in inclusive.most_common() if n < total][:top]
    lines += [f"    {n / total:6.1%}  {frame}" for frame, n in shown]
    return "\n".join(lines)


def _package(frame: str) -> str:
    """`asyncio` for `Runner.run (asyncio/runners.py)`; `uuid` for `uuid4 (uuid.py)`."""
    where = frame.rpartition("(")[2].rstrip(")")
    return where.split("/")[0].removesuffix(".py")
