"""The executor protocol: three verbs over executor job ids, and one state table."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class JobState(enum.Enum):
    """Where an agent's job is, as far as the executor can tell."""

    #: Accepted by the executor, not started yet (e.g. pending in Slurm's queue).
    PENDING = "pending"
    #: The agent process is alive.
    RUNNING = "running"
    #: The agent process has ended (whatever the outcome: the agent reports that itself).
    DONE = "done"
    #: The executor has no trace of the job (never existed, or forgotten).
    UNKNOWN = "unknown"


TERMINAL_JOB_STATES = frozenset({JobState.DONE, JobState.UNKNOWN})


@dataclass(frozen=True)
class AgentLaunch:
    """What an executor needs to start one task's agent."""

    task_uuid: str
    server_url: str
    #: The task's agent credential; passed through the environment, never on a command line.
    token: str
    wall_time_limit: int | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


class ExecutorError(Exception):
    """Starting, querying or stopping a job failed; the message says which command and why."""


class Executor(Protocol):
    name: str

    def submit(self, launch: AgentLaunch) -> str:
        """Start the agent; return the executor's id for it."""
        ...

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        """The state of each job id (one call for all of them)."""
        ...

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        """Ask the agents to stop (they abort their task); True where the signal was sent."""
        ...

    def capacity(self) -> int | None:
        """How many tasks may run at once (None: the executor queues them itself)."""
        ...
