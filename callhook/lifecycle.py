"""Child processes that die with their parent (Linux).

A parent killed outright (SIGKILL: the OOM killer, a supervisor's stop timeout) runs no
code to stop its children, and they would run on as orphans, still consuming, beside the
parent's restarted successor. So every process Callhook starts asks the kernel to SIGKILL
it when its parent dies (`prctl(PR_SET_PDEATHSIG)`), level by level: `callhook worker` →
Dramatiq's supervisor → its worker processes; `callhook up` → those and the scheduler;
`callhook serve --workers N` → Uvicorn's worker processes.

* A command we start is run through this module (`child_command`): it sets the signal,
  then `exec`s the command, which keeps it (it is only cleared for set-user-ID programs).
* A process `multiprocessing` starts (Dramatiq's and Uvicorn's workers) sets it itself
  (`die_with_multiprocessing_parent`): a fork clears it.
* The kernel sends the signal when the *thread* that started the child exits, so children
  are started from the main thread only.
* A parent that died before the child asked has already left it to another: the child
  then sees a parent id other than the one it was given, and dies at once.

Elsewhere than on Linux these do nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

#: <linux/prctl.h>
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent, `parent_pid`, dies; if it has
    died already, die now."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def die_with_multiprocessing_parent() -> None:
    """In a process `multiprocessing` started: die with the process that started it (no-op
    in any other process)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)


def child_command(command: Sequence[str]) -> list[str]:
    """`command` run so that it dies with this process (start it from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        # the kernel would kill the child when this thread ends, not when we do
        raise RuntimeError("child processes are started from the main thread only")
    return [sys.executable, "-m", "callhook.lifecycle", str(os.getpid()), *command]


def main(argv: Sequence[str]) -> NoReturn:
    """`python -m callhook.lifecycle PARENT_PID COMMAND...`: die with PARENT_PID, as
    COMMAND (same process, same pid)."""
    parent_pid, *command = argv
    die_with_parent(int(parent_pid))
    os.execv(command[0], command)  # noqa: S606 - our own interpreter, from child_command


if __name__ == "__main__":
    main(sys.argv[1:])
