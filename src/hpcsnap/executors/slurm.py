"""Slurm executor: each task's agent runs inside one Slurm batch job.

``submit`` renders the batch script (:mod:`hpcsnap.executors.sbatch`) and pipes it to
``sbatch --parsable``; the agent's credential is only in the environment of ``sbatch``, which
exports it by name to the job. ``status`` asks ``squeue`` about every job at once, on a ramp
(at once after a change, then 1, 2, 4, 8 s, then every ``poll_max`` s), and answers from what
it learnt; if ``squeue`` fails, the failure is logged and the last known states are kept.
``cancel`` is one ``scancel`` (SIGTERM to the agent, which aborts its task). Slurm queues jobs
itself, so :meth:`SlurmExecutor.capacity` is None.

Slurm's job states are translated by :data:`STATE_TABLE`:

=====================================================================  ====================
Slurm state (``squeue -o %T``)                                         :class:`JobState`
=====================================================================  ====================
PENDING, CONFIGURING, REQUEUED, REQUEUE_HOLD, REQUEUE_FED,             PENDING (agent
RESV_DEL_HOLD, SUSPENDED, STOPPED                                      silent, not lost)
RUNNING, COMPLETING, SIGNALING, STAGE_OUT, RESIZING                    RUNNING
COMPLETED, FAILED, CANCELLED, BOOT_FAIL, DEADLINE, SPECIAL_EXIT,       DONE
REVOKED
TIMEOUT                                                                TIMEOUT
OUT_OF_MEMORY                                                          OUT_OF_MEMORY
NODE_FAIL                                                              NODE_FAIL
PREEMPTED                                                              PREEMPTED
job unknown to Slurm (purged after ``MinJobAge``)                      UNKNOWN
any other state                                                        left out (logged)
=====================================================================  ====================

Jobs are submitted with ``--no-requeue``: hpcsnap, not Slurm, decides what happens to a task
whose job ended, so a node failure or a preemption ends the task ``Failure`` with a message
(:data:`~hpcsnap.executors.base.END_REASONS`) instead of silently running it again.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hpcsnap.executors.base import AgentLaunch, ExecutorError, JobState
from hpcsnap.executors.commands import CommandError, Runner, command_env, run_command
from hpcsnap.executors.sbatch import SlurmOptions, job_time_limit, render_script

log = logging.getLogger(__name__)

STATE_TABLE: Mapping[str, JobState] = {
    **dict.fromkeys(
        (
            "PENDING",
            "CONFIGURING",
            "REQUEUED",
            "REQUEUE_HOLD",
            "REQUEUE_FED",
            "RESV_DEL_HOLD",
            "SUSPENDED",
            "STOPPED",
        ),
        JobState.PENDING,
    ),
    **dict.fromkeys(
        ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"), JobState.RUNNING
    ),
    **dict.fromkeys(
        (
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "BOOT_FAIL",
            "DEADLINE",
            "SPECIAL_EXIT",
            "REVOKED",
        ),
        JobState.DONE,
    ),
    "TIMEOUT": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}

#: Seconds between two ``squeue`` calls: at once after a change, then up the ramp, then the
#: last value for as long as nothing changes.
POLL_RAMP = (0.0, 1.0, 2.0, 4.0, 8.0)

#: Variables exported by name from ``sbatch``'s environment into the job.
EXPORTED = ("HPCSNAP_AGENT_TOKEN", "PATH", "PYTHONUNBUFFERED")

_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+)?")


def translate(slurm_state: str) -> JobState | None:
    """The :class:`JobState` of a Slurm state (``CANCELLED by 0`` counts as ``CANCELLED``);
    None for a state this table does not know."""
    word = slurm_state.strip().split(" ", 1)[0].rstrip("+").upper()
    return STATE_TABLE.get(word)


def parse_squeue(text: str) -> dict[str, str]:
    """``{job id: Slurm state}`` from the output of ``squeue -h -o '%i %T'``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and _JOB_ID.fullmatch(parts[0]):
            out[parts[0]] = parts[1]
    return out


class SlurmExecutor:
    name = "slurm"

    def __init__(
        self,
        *,
        options: SlurmOptions,
        work_dir: Path,
        log_dir: Path,
        python: str | None = None,
        run: Runner = run_command,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_ramp: Sequence[float] = POLL_RAMP,
        poll_max: float = 10.0,
    ) -> None:
        self.options = options
        #: Where agents keep task directories on the compute node (created there).
        self.work_dir = work_dir
        #: Where Slurm writes each agent's output; must exist on the nodes (created here).
        self.log_dir = log_dir
        #: The Python that runs ``-m hpcsnap.agent`` on the nodes.
        self.python = python or sys.executable
        self._run = run
        self._env = env
        self._clock = clock
        self._ramp = [*poll_ramp, poll_max]
        self._lock = threading.Lock()
        self._known: dict[str, JobState] = {}
        #: Ids already asked about (a new one makes the next status call poll at once).
        self._asked: set[str] = set()
        self._step = 0
        self._last_poll: float | None = None

    # -- submit ----------------------------------------------------------------------------

    def script(self, launch: AgentLaunch) -> str:
        """The batch script of ``launch`` (no secret in it)."""
        return render_script(
            task_uuid=launch.task_uuid,
            python=self.python,
            server_url=launch.server_url,
            work_dir=str(self.work_dir),
            log_dir=str(self.log_dir),
            options=self.options,
            time_limit=job_time_limit(self.options, launch.wall_time_limit),
            export=[*EXPORTED, *sorted(launch.extra_env)],
        )

    def submit(self, launch: AgentLaunch) -> str:
        script = self.script(launch)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # on a cluster it may exist only on the nodes' shared FS
            log.debug("could not create the Slurm log dir %s: %s", self.log_dir, exc)
        base = self._env if self._env is not None else command_env()
        env = {
            **base,
            "PATH": base.get("PATH") or os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            **launch.extra_env,
            "HPCSNAP_AGENT_TOKEN": launch.token,
        }
        out = self._run(["sbatch", "--parsable"], input=script, env=env)
        job_id = out.strip().split(";", 1)[0]
        if not _JOB_ID.fullmatch(job_id):
            raise ExecutorError(f"sbatch answered {out.strip()!r}, not a job id")
        with self._lock:
            self._known[job_id] = JobState.PENDING
            self._step = 0
        log.info("task %s: Slurm job %s submitted", launch.task_uuid, job_id)
        return job_id

    # -- status ----------------------------------------------------------------------------

    def _due(self, ids: Sequence[str]) -> bool:
        if self._last_poll is None or any(i not in self._asked for i in ids):
            return True
        wait = self._ramp[min(self._step, len(self._ramp) - 1)]
        return self._clock() - self._last_poll >= wait

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        ids = [i for i in dict.fromkeys(ids) if _JOB_ID.fullmatch(i)]
        if not ids:
            return {}
        with self._lock:
            if self._due(ids):
                self._poll(ids)
            return {i: self._known[i] for i in ids if i in self._known}

    def _poll(self, ids: Sequence[str]) -> None:
        self._last_poll = self._clock()
        self._asked = set(ids)  # forget jobs nobody asks about any more
        self._known = {i: s for i, s in self._known.items() if i in self._asked}
        seen: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            argv = ["squeue", "--noheader", "--states=all", "--format=%i %T"]
            try:
                seen.update(
                    parse_squeue(self._run([*argv, "--jobs", ",".join(chunk)], env=self._env))
                )
            except CommandError as exc:
                if "Invalid job id" not in exc.stderr:  # else: none of them is known any more
                    log.warning("squeue failed; keeping the last known job states: %s", exc)
                    self._step += 1
                    return
        changed = False
        for job_id in ids:
            if job_id in seen:
                state = translate(seen[job_id])
                if state is None:
                    log.warning("Slurm job %s is in unknown state %r", job_id, seen[job_id])
                    continue
            else:
                state = JobState.UNKNOWN
            changed |= self._known.get(job_id) is not state
            self._known[job_id] = state
        self._step = 0 if changed else self._step + 1

    # -- cancel ----------------------------------------------------------------------------

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        wanted = [i for i in dict.fromkeys(ids) if _JOB_ID.fullmatch(i)]
        out = dict.fromkeys(ids, False)
        if not wanted:
            return out
        try:
            self._run(["scancel", *wanted], env=self._env)
        except CommandError as exc:
            log.warning("scancel failed: %s", exc)
            return out
        with self._lock:
            self._step = 0
        out.update(dict.fromkeys(wanted, True))
        return out

    def capacity(self) -> int | None:
        return None
