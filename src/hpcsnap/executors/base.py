"""The executor protocol: three verbs over executor job ids, and one state enum.

Each executor translates its own states into :class:`JobState` through one documented table
(see :mod:`hpcsnap.executors.slurm` for Slurm's). The agent reports the task's outcome itself;
the executor's state only tells the scheduler whether an agent can still be expected to speak
(``PENDING``, ``RUNNING``) or has ended (the members of :data:`TERMINAL_JOB_STATES`), and, if
it ended without reporting, why (:data:`END_REASONS`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class JobState(enum.Enum):
    """Where an agent's job is, as far as the executor can tell."""

    #: Accepted by the executor, not running now (queued, requeued, suspended): the agent is
    #: expected to be silent, however long this lasts.
    PENDING = "pending"
    #: The agent process is alive.
    RUNNING = "running"
    #: The agent process has ended (completed, failed or cancelled: the agent reports the
    #: outcome itself).
    DONE = "done"
    #: The job was stopped at the executor's time limit (Slurm ``TIMEOUT``). Not the task's
    #: ``wallTimeLimit``: the agent enforces that one itself.
    TIMEOUT = "timeout"
    #: The job was killed for using more memory than it was given.
    OUT_OF_MEMORY = "out_of_memory"
    #: The node running the job failed.
    NODE_FAIL = "node_fail"
    #: The job was preempted (stopped to make room for another job) and not requeued.
    PREEMPTED = "preempted"
    #: The executor has no trace of the job (never existed, or forgotten).
    UNKNOWN = "unknown"


TERMINAL_JOB_STATES = frozenset(
    {
        JobState.DONE,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.UNKNOWN,
    }
)

#: Why a task failed when its job ended in this state without the agent reporting the end.
END_REASONS: Mapping[JobState, str] = {
    JobState.DONE: "its agent exited without reporting the end of the task",
    JobState.TIMEOUT: "its job reached the executor's time limit before the agent reported "
    "the end of the task (raise the Slurm time limit, or set a shorter wallTimeLimit)",
    JobState.OUT_OF_MEMORY: "its job was killed for running out of memory (ask for more "
    "memory, e.g. HPCSNAP_SLURM_MEMORY)",
    JobState.NODE_FAIL: "the node running its job failed",
    JobState.PREEMPTED: "its job was preempted by the executor",
    JobState.UNKNOWN: "the executor has no trace of its agent's job",
}


@dataclass(frozen=True)
class AgentLaunch:
    """What an executor needs to start one task's agent."""

    task_uuid: str
    server_url: str
    #: The task's agent credential; passed through the environment, never on a command line
    #: nor in a file.
    token: str
    wall_time_limit: int | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


class ExecutorError(Exception):
    """Starting, querying or stopping a job failed; the message says which command and why."""


class Executor(Protocol):
    """Starts, watches and stops agents. Implementations must be safe to use from several
    server processes sharing one database: whatever one process submitted, another may ask
    about or cancel (or, if it cannot tell, leave the id out of :meth:`status`)."""

    name: str

    def submit(self, launch: AgentLaunch) -> str:
        """Start the agent; return the executor's id for it."""
        ...

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        """The state of each job id (one call for all of them). An id this executor cannot
        judge right now (e.g. the scheduler could not be reached) is left out."""
        ...

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        """Ask the agents to stop (they abort their task); True where the request was sent."""
        ...

    def capacity(self) -> int | None:
        """How many tasks may run at once (None: the executor queues them itself)."""
        ...
