"""Keeping snapshot work out of the job's way: lowest CPU and I/O priority.

The snapshot thread is lowered alone (Linux schedules threads individually), so the task's
command, which the agent starts from another thread, keeps its normal priority. Where the kernel
groups processes by session (*autogroups*, ``/proc/sys/kernel/sched_autogroup_enabled``: on by
default in Debian's and most distributions' kernels), the CPU is first shared between sessions,
and a thread's niceness only counts against the threads of its own session: the task's command
runs in a session of its own, so the agent also lowers its own session (:func:`lower_this_session`).
Without that, a snapshot thread at nice 19 still takes a whole session's share of a core from a
job that keeps every core busy (measured: bench/README.md, P4). Lowered, a snapshot of such a job
gets almost no CPU, so a snapshot still running when the next periodic tick is near takes its
normal share until it ends (:func:`hurry_session`): snapshots yield to the job as long as that
keeps their schedule.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "ppc64le": 273, "s390x": 282}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_BE = 2
_IOPRIO_CLASS_SHIFT = 13


AUTOGROUP = Path("/proc/self/autogroup")


class _Session:
    lowered: int | None = None  # the niceness :func:`lower_this_session` gave the agent's own group
    hurried = False
    # hurry (the periodic thread) and calm (the snapshot worker) may meet as a capture ends
    # when the next tick is near: each checks, writes and marks under it, or the mark and the
    # priority part (left lowered but marked hurried, a session is never hurried again)
    lock = threading.Lock()


def lower_this_session(nice: int = 19) -> bool:
    """Give this process's autogroup CPU niceness ``nice`` when the process leads its session,
    whose autogroup is then the agent's alone (the task's command and the server run in other
    sessions); returns whether it did. Nothing is done for a process that does not lead its
    session: its autogroup may hold processes that are not the agent's (an executor that did
    not start it in a session of its own)."""
    if os.getsid(0) != os.getpid():
        log.info("not leading its session: the agent's session keeps its CPU priority")
        return False
    try:
        AUTOGROUP.write_text(f"{nice}\n")
    except OSError as exc:  # a kernel without autogroups, or not allowed
        log.info("could not lower the CPU priority of the agent's session: %s", exc)
        return False
    _Session.lowered = nice
    return True


def hurry_session() -> bool:
    """Give the agent's session back its normal share of CPU: a snapshot is falling behind its
    schedule (the next periodic tick is near, or came, while it still runs), so it stops yielding
    to the job until :func:`calm_session`. Returns whether it did (needs the right to raise a
    priority: root, or ``RLIMIT_NICE``; otherwise snapshots keep yielding)."""
    with _Session.lock:
        if _Session.lowered is None or _Session.hurried:
            return False
        try:
            AUTOGROUP.write_text("0\n")
        except OSError as exc:
            log.info("could not raise the CPU priority of a late snapshot: %s", exc)
            return False
        _Session.hurried = True
    log.info("a snapshot is late: it takes its share of CPU until it ends")
    return True


def calm_session() -> None:
    """Lower the agent's session again, to what :func:`lower_this_session` gave it, after
    :func:`hurry_session`."""
    with _Session.lock:
        if _Session.hurried:
            _Session.hurried = False
            with contextlib.suppress(OSError):
                AUTOGROUP.write_text(f"{_Session.lowered}\n")


def lower_this_thread(*, nice: int = 19, io_level: int = 7) -> None:
    """Give the calling thread CPU niceness ``nice`` and best-effort I/O priority ``io_level``
    (0 highest, 7 lowest). Failures are logged, never raised: priority is an optimisation."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:
        log.warning("could not lower the CPU priority of snapshot work: %s", exc)
    number = _SYS_IOPRIO_SET.get(platform.machine())
    if number is None:
        return
    value = (_IOPRIO_CLASS_BE << _IOPRIO_CLASS_SHIFT) | io_level
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, _IOPRIO_WHO_PROCESS, tid, value) != 0:
        err = ctypes.get_errno()
        log.warning("could not lower the I/O priority of snapshot work: %s", os.strerror(err))


PROC_STAT = Path("/proc/stat")


class IdleMeter:
    """How many cores the machine left idle since the last look: the ``idle`` time of
    ``/proc/stat`` (the whole machine's; not ``iowait``: a job waiting for its disk would only
    wait longer if snapshot work added to it), plus the calling thread's own CPU time, so that
    work done only on spare CPU does not hide the spare CPU it runs on. Use it from one thread.
    Where ``/proc/stat`` cannot be read, no core is ever idle."""

    def __init__(self, path: Path = PROC_STAT) -> None:
        self._path = path
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            fields = self._path.read_text().split("\n", 1)[0].split()
            idle = int(fields[4]) / self._tick
        except (OSError, IndexError, ValueError):
            return None
        return time.monotonic(), idle, time.thread_time()

    def reset(self) -> None:
        """Start measuring from now (forget what came before)."""
        self._last = self._sample()

    def age(self) -> float:
        """Seconds since the last look."""
        return time.monotonic() - self._last[0] if self._last is not None else 0.0

    def idle_cores(self) -> float:
        """Average idle cores since the last look (or :meth:`reset`), and start again."""
        now, last = self._sample(), self._last
        self._last = now
        if now is None or last is None or now[0] <= last[0]:
            return 0.0
        return ((now[1] - last[1]) + (now[2] - last[2])) / (now[0] - last[0])
