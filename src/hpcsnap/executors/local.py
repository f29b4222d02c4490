"""Local executor: one detached agent process per task on this machine, N at a time.

Agents are started in their own session, so stopping or killing the server never kills a
running task. A job id is ``<pid>:<start time>`` so that a recycled pid is never mistaken for
the agent.
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
        job_id = f"{proc.pid}:{_start_time(proc.pid) or '0'}"
        self._children[job_id] = proc
        return job_id

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        out: dict[str, JobState] = {}
        for job_id in ids:
            child = self._children.get(job_id)
            if child is not None and child.poll() is not None:
                del self._children[job_id]
                out[job_id] = JobState.DONE
                continue
            pid, _, start = job_id.partition(":")
            alive = pid.isdigit() and _start_time(int(pid)) == start
            out[job_id] = JobState.RUNNING if alive else JobState.DONE
        return out

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        out: dict[str, bool] = {}
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
