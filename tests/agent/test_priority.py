"""Snapshot work runs at the lowest priority without lowering the task's own, threads and
sessions."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from hpcsnap.agent.priority import AUTOGROUP, IdleMeter, lower_this_thread
from hpcsnap.blobstore import LocalBackend, local
from tests.support import ServerProcess, agent_pids, wait_for

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


def test_the_stores_background_writer_is_as_low_as_the_snapshot_thread(tmp_path: Path) -> None:
    """A capture's direct writes are made by a thread the lowered snapshot thread starts
    (``LocalBackend.writing_behind``): it must not write at the job's priority."""
    backend = LocalBackend(tmp_path / "store")
    seen: dict[str, int] = {}
    real_put = backend.put

    def put(key: str, src: BinaryIO) -> None:
        if threading.current_thread().name == "hpcsnap-write":
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        real_put(key, src)

    backend.put = put  # type: ignore[method-assign]

    def worker() -> None:
        lower_this_thread()
        with backend.writing_behind() as behind:
            behind.put("big", os.urandom(local.DIRECT_MIN + 1))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert backend.stat("big") == local.DIRECT_MIN + 1
    assert seen == {"nice": 19}


def autogroup(pid: int | str) -> tuple[str, int]:
    """The autogroup of a process: its name and its nice value. A process in the kernel's
    default group (one whose session descends from init without ``setsid``, as a CI runner's
    may) has an empty file: that reads as ``("", 0)``."""
    text = Path(f"/proc/{pid}/autogroup").read_text()
    if not text.strip():
        return "", 0
    name, _, nice = text.split()
    return name, int(nice)


LOWER = "from hpcsnap.agent.priority import lower_this_session as f; print(f(), flush=True); "


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel has no autogroups")
def test_the_session_is_lowered_only_by_its_leader() -> None:
    wait = "import sys; sys.stdin.read()"
    leader = subprocess.Popen(
        [sys.executable, "-c", LOWER + wait],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    follower = subprocess.Popen(
        [sys.executable, "-c", LOWER + wait],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert leader.stdout is not None and follower.stdout is not None
        assert leader.stdout.readline().strip() == "True"
        assert follower.stdout.readline().strip() == "False"
        assert autogroup(leader.pid)[1] == 19
        assert autogroup(follower.pid) == autogroup("self")  # this test's session is untouched
    finally:
        for proc in (leader, follower):
            proc.communicate("")


def in_a_session(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python of its own, leading a session of its own."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, start_new_session=True
    )


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel has no autogroups")
def test_a_late_snapshot_hurries_the_session_then_calms_it() -> None:
    if os.geteuid() != 0:
        pytest.skip("raising a priority back needs root (or RLIMIT_NICE)")
    steps = (
        "import hpcsnap.agent.priority as p; from pathlib import Path; "
        "nice = lambda: Path('/proc/self/autogroup').read_text().split()[-1]; "
        "print(p.hurry_session(), p.lower_this_session(12), nice(), p.hurry_session(), nice(), "
        "p.hurry_session(), end=' '); p.calm_session(); print(nice())"
    )
    out = in_a_session(steps)
    # not lowered: nothing to hurry; lowered to 12, hurried to 0 (once), calmed back to 12
    assert out.stdout.split() == ["False", "True", "12", "True", "0", "False", "12"], out


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel has no autogroups")
def test_hurrying_and_calming_from_two_threads_never_leave_a_late_snapshot_yielding() -> None:
    """The periodic thread hurries while the snapshot worker calms, when a capture ends as the
    next tick nears. The session's state and its priority must never part: a session left
    lowered while marked hurried is never hurried again, and a snapshot then crawls for as long
    as the job keeps every core busy (seen: 13-22 s instead of 3 s, in P4)."""
    if os.geteuid() != 0:
        pytest.skip("raising a priority back needs root (or RLIMIT_NICE)")
    steps = (
        "import threading, hpcsnap.agent.priority as p; from pathlib import Path\n"
        "nice = lambda: Path('/proc/self/autogroup').read_text().split()[-1]\n"
        "p.lower_this_session(12)\n"
        "bad = 0\n"
        "for _ in range(300):\n"
        "    p.hurry_session()\n"
        "    gate = threading.Barrier(2)\n"
        "    go = lambda f: (gate.wait(), f())\n"
        "    both = (p.hurry_session, p.calm_session)\n"
        "    ts = [threading.Thread(target=go, args=(f,)) for f in both]\n"
        "    [t.start() for t in ts]; [t.join() for t in ts]\n"
        "    bad += p._Session.hurried != (nice() == '0')\n"
        "print(bad)\n"
    )
    out = in_a_session(steps)
    assert out.stdout.split() == ["0"], out  # rounds where the two parted


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel has no autogroups")
def test_a_tasks_agent_yields_to_its_job_across_sessions(server: ServerProcess) -> None:
    """The real agent's session is lowered; the task's command keeps a session of its own at
    its normal priority."""
    api = server.user("prio")
    uuid = api.submit("sleep 31.25")
    api.wait(uuid, {"FullyExecuting"})
    (agent,) = agent_pids(uuid)
    job = wait_for(
        lambda: [p.name for p in Path("/proc").iterdir() if cmdline(p) == b"sleep\x0031.25\x00"],
        bool,
        30,
        "the job's process",
    )
    try:
        assert autogroup(agent)[1] == 19
        assert autogroup(job[0])[1] == 0 and autogroup(job[0])[0] != autogroup(agent)[0]
    finally:
        api.ok("POST", f"/tasks/{uuid}/abort")
        api.wait(uuid)


def cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_idle_meter_counts_the_machines_idle_time_not_its_io_wait(tmp_path: Path) -> None:
    """Cores idle since the last look, from ``/proc/stat``'s first line; cores waiting for
    the disk are not spare (snapshot work would add to what they wait for)."""
    stat = tmp_path / "stat"
    tick = os.sysconf("SC_CLK_TCK")
    stat.write_text("cpu  500 0 200 1000 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    meter = IdleMeter(stat)
    time.sleep(0.5)
    # a second of idle time and two of I/O wait, in the half second slept (or a little more)
    stat.write_text(f"cpu  600 0 250 {1000 + tick} {50 + 2 * tick} 0 0 0 0 0\n")
    assert 0.6 < meter.idle_cores() <= 2.05  # counting the I/O wait would give 3 s / 0.5 s
    stat.write_text("garbage\n")
    assert meter.idle_cores() == 0.0
    assert IdleMeter(tmp_path / "missing").idle_cores() == 0.0


def test_idle_meter_counts_its_own_threads_cpu_as_idle(tmp_path: Path) -> None:
    """Work done on spare CPU must not hide that CPU: the calling thread's own time counts."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  500 0 200 1000 50 0 0 0 0 0\n")  # the machine's idle time stands still
    meter = IdleMeter(stat)
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
    assert meter.age() >= 0.3
    assert meter.idle_cores() > 0.2  # about 1 unless other tests share the cores
