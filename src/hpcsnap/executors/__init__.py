"""Executors: how agents are started, watched and stopped (local processes, or Slurm jobs).

Every executor implements :class:`~hpcsnap.executors.base.Executor`; the agent it starts does
the rest (staging, running, snapshots, results) and reports to the server itself.
"""

from hpcsnap.executors.base import (
    END_REASONS,
    TERMINAL_JOB_STATES,
    AgentLaunch,
    Executor,
    ExecutorError,
    JobState,
)
from hpcsnap.executors.commands import CommandError
from hpcsnap.executors.local import LocalExecutor
from hpcsnap.executors.sbatch import SlurmOptionError, SlurmOptions
from hpcsnap.executors.slurm import SlurmExecutor

__all__ = [
    "END_REASONS",
    "TERMINAL_JOB_STATES",
    "AgentLaunch",
    "CommandError",
    "Executor",
    "ExecutorError",
    "JobState",
    "LocalExecutor",
    "SlurmExecutor",
    "SlurmOptionError",
    "SlurmOptions",
]
