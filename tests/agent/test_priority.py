"""Snapshot work runs at the lowest priority without lowering the task's own."""

from __future__ import annotations

import ctypes
import os
import platform
import threading

import pytest

from hpcsnap.agent.priority import lower_this_thread

SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}


def test_only_the_calling_thread_is_lowered() -> None:
    seen: dict[str, int] = {}

    def worker() -> None:
        lower_this_thread()
        tid = threading.get_native_id()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, tid)
        number = SYS_IOPRIO_GET.get(platform.machine())
        if number is not None:
            seen["ioprio"] = ctypes.CDLL(None).syscall(number, 1, tid)

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["nice"] == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    if "ioprio" not in seen:
        pytest.skip("no ioprio_get syscall number for this machine")
    assert seen["ioprio"] == (2 << 13) | 7  # best effort, lowest level
