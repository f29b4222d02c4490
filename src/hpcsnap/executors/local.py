"""Local executor: one detached agent process per task on this machine, N at a time.

Agents are started in their own session, so stopping or killing the server never kills a
running task. A job id is ``<pid>:<start time>@<machine>`` so that a recycled pid is never
mistaken for the agent, and so that a server sharing the database from another machine (or
another PID namespace) leaves the job alone: it cannot see that process. ``<machine>`` is the
kernel's boot id and the PID namespace; ids written before it existed (``<pid>:<start>``) are
taken as this machine's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hpcsnap.executors.base import AgentLaunch, JobState


def _start_time(pid: int) -> str | None:
    """The process start time (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def _machine() -> str:
    """This machine's boot and PID namespace: processes are visible from here iff equal."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        boot = "noboot"
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pidns = 0
    return f"{boot}.{pidns}"


MACHINE = _machine()


def _split(job_id: str) -> tuple[str, str, str] | None:
    """``(pid, start, machine)`` of a job id of this machine, None for another machine's."""
    local, _, machine = job_id.partition("@")
    if machine and machine != MACHINE:
        return None
    pid, _, start = local.partition(":")
    return pid, start, machine or MACHINE


class LocalExecutor:
    name = "local"

    def __init__(self, *, work_dir: Path, log_dir: Path, slots: int) -> None:
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.slots = max(1, slots)
        #: Agents started by this server process, so that their exit is reaped (no zombies).
        #: Agents started before a restart belong to init and are found through /proc.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def submit(self, launch: AgentLaunch) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HPCSNAP_AGENT_TOKEN": launch.token,
            "PYTHONUNBUFFERED": "1",
            **launch.extra_env,
        }
        argv = [
            sys.executable,
            "-m",
            "hpcsnap.agent",
            "--server",
            launch.server_url,
            "--task",
            launch.task_uuid,
            "--work-dir",
            str(self.work_dir),
        ]
        log = self.log_dir / f"{launch.task_uuid}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        job_id = f"{proc.pid}:{_start_time(proc.pid) or '0'}@{MACHINE}"
        self._children[job_id] = proc
        return job_id

    def _reap(self) -> set[str]:
        """Collect the exit of every agent this process started that has ended."""
        ended = {job_id for job_id, child in self._children.items() if child.poll() is not None}
        for job_id in ended:
            del self._children[job_id]
        return ended

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        """States of this machine's jobs; another machine's ids are left out."""
        ended = self._reap()
        out: dict[str, JobState] = {}
        for job_id in ids:
            parts = _split(job_id)
            if parts is None:
                continue
            if job_id in ended:
                out[job_id] = JobState.DONE
                continue
            pid, start, _ = parts
            alive = pid.isdigit() and _start_time(int(pid)) == start
            out[job_id] = JobState.RUNNING if alive else JobState.DONE
        return out

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        out = dict.fromkeys(ids, False)
        for job_id, state in self.status(ids).items():
            if state is JobState.RUNNING:
                try:
                    os.kill(int(job_id.split(":")[0]), signal.SIGTERM)
                    out[job_id] = True
                    continue
                except ProcessLookupError:
                    pass
            out[job_id] = False
        return out

    def capacity(self) -> int | None:
        return self.slots
