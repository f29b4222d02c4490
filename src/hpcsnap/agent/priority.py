"""Keeping snapshot work out of the job's way: lowest CPU and I/O priority, per thread.

Only the calling thread is affected (Linux schedules threads individually), so the task's
command, which the agent starts from another thread, keeps its normal priority.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading

log = logging.getLogger(__name__)

_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "ppc64le": 273, "s390x": 282}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_BE = 2
_IOPRIO_CLASS_SHIFT = 13


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
