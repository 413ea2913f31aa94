"""Stops one thread of a running process, and only that one, as a stalled
worker is stopped (an endless loop, a call that blocks): ptrace's
PTRACE_SEIZE and PTRACE_INTERRUPT act on a single thread, and the rest
of the process runs on. PTRACE_DETACH lets it go; so does the end of the
tracing process, should a test fail first."""

import ctypes
import os
import pathlib

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(request, tid, what):
    if _libc.ptrace(request, tid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what} of thread {tid}: {os.strerror(e)}")


def thread(pid, name):
    """The id of `pid`'s thread called `name` (its comm)."""
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return int(task.name)
    raise LookupError(f"process {pid} has no thread {name!r}")


def stop(tid):
    """Stops thread `tid` until `go(tid)`."""
    _ptrace(PTRACE_SEIZE, tid, "PTRACE_SEIZE")
    _ptrace(PTRACE_INTERRUPT, tid, "PTRACE_INTERRUPT")
    os.waitpid(tid, WALL)


def go(tid):
    """Lets a thread `stop` stopped run again."""
    _ptrace(PTRACE_DETACH, tid, "PTRACE_DETACH")
