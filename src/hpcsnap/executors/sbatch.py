"""The Slurm batch script that runs one task's agent: validated options and one pure function.

:func:`render_script` turns its arguments into the script's text and does nothing else (a
golden-file test pins its output). Every value is validated, then quoted with
:func:`shlex.quote`, in ``#SBATCH`` lines as on the command line. The script holds no secret:
the agent's credential travels in the environment of ``sbatch`` and reaches the job through
``--export`` of its *name* only.

The agent is ``exec``-ed, so it *is* the batch shell: ``--signal=B:USR1@<grace>`` reaches it
``grace`` seconds before the time limit (it then takes a final snapshot and ends the task), and
``scancel`` (SIGTERM) reaches it too (it aborts the task).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds added to a task's ``wallTimeLimit`` for the Slurm time limit (staging, start-up,
#: final snapshot and results upload all happen inside the job).
WALL_TIME_MARGIN = 300

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+,-]{0,127}")
_MEMORY = re.compile(r"[1-9][0-9]{0,12}[KMGT]?")
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_EXTRA = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.*))?", re.DOTALL)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TASK = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")

#: Options hpcsnap sets itself (or that would break it); refused in ``extra_args``.
RESERVED_OPTIONS = frozenset(
    {
        "array",
        "batch",
        "chdir",
        "error",
        "export",
        "export-file",
        "get-user-env",
        "gid",
        "hold",
        "input",
        "job-name",
        "open-mode",
        "output",
        "parsable",
        "requeue",
        "no-requeue",
        "signal",
        "test-only",
        "uid",
        "wait",
        "wrap",
    }
)


class SlurmOptionError(ValueError):
    """An option of the Slurm executor is invalid; the message names it and says why."""


def _check_text(name: str, value: str) -> str:
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise SlurmOptionError(f"{name}: empty or containing control characters: {value!r}")
    return value


def time_limit_seconds(value: str) -> int | None:
    """Seconds of a Slurm time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``); None for ``UNLIMITED``/``INFINITE``. :class:`SlurmOptionError` otherwise."""
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = _TIME.fullmatch(value)
    if not match:
        raise SlurmOptionError(
            f"time limit {value!r}: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
        )
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:  # D-H[:M[:S]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
        total = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    elif len(parts) == 1:  # M
        total = parts[0] * 60
    elif len(parts) == 2:  # M:S
        total = parts[0] * 60 + parts[1]
    else:  # H:M:S
        total = (parts[0] * 60 + parts[1]) * 60 + parts[2]
    if total <= 0:
        raise SlurmOptionError(f"time limit {value!r} must be positive")
    return total


@dataclass(frozen=True)
class SlurmOptions:
    """What an administrator may choose for the agents' Slurm jobs (all optional).

    Unset values are left to Slurm (partition defaults). ``extra_args`` are further sbatch
    options in long form (``--constraint=ib``); those hpcsnap sets itself are refused.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: Slurm's time limit for every agent job (a task's ``wallTimeLimit`` may lower it).
    time_limit: str | None = None
    cpus: int | None = None
    #: Memory per node, e.g. ``4G`` or ``4096M``.
    memory: str | None = None
    #: Seconds before the time limit at which Slurm sends SIGUSR1 (final snapshot).
    signal_grace: int = 120
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not _NAME.fullmatch(value):
                raise SlurmOptionError(
                    f"{name} {value!r}: 1-128 letters, digits, '_', '.', '+', ',' or '-'"
                )
        if self.time_limit is not None:
            time_limit_seconds(self.time_limit)
        if self.cpus is not None and not 1 <= self.cpus <= 100_000:
            raise SlurmOptionError(f"cpus {self.cpus!r}: a positive number of CPUs")
        if self.memory is not None and not _MEMORY.fullmatch(self.memory):
            raise SlurmOptionError(
                f"memory {self.memory!r}: a positive integer with an optional unit K, M, G or T"
            )
        if not 1 <= self.signal_grace <= 65535:
            raise SlurmOptionError(f"signal_grace {self.signal_grace!r}: 1 to 65535 seconds")
        for arg in self.extra_args:
            _check_text("extra sbatch argument", arg)
            match = _EXTRA.fullmatch(arg)
            if not match:
                raise SlurmOptionError(
                    f"extra sbatch argument {arg!r}: use the long form --name or --name=value"
                )
            if match.group(1) in RESERVED_OPTIONS:
                raise SlurmOptionError(
                    f"extra sbatch argument {arg!r}: --{match.group(1)} is set by hpcsnap"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SlurmOptions:
        """Build from a mapping; unknown keys are refused with the list of valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise SlurmOptionError(
                f"unknown Slurm option(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        data = dict(values)
        if "extra_args" in data:
            data["extra_args"] = tuple(data["extra_args"])
        return cls(**data)


def job_time_limit(options: SlurmOptions, wall_time_limit: int | None) -> str | None:
    """The ``--time`` of a task's job, in minutes (None: the partition's default).

    A task with a ``wallTimeLimit`` gets that plus :data:`WALL_TIME_MARGIN` and the signal
    grace, never more than the configured limit: the agent stops the task itself at its wall
    time, and Slurm's SIGUSR1 makes it stop earlier if the configured limit comes first.
    """
    configured = time_limit_seconds(options.time_limit) if options.time_limit else None
    if wall_time_limit is None or wall_time_limit <= 0:
        return None if configured is None else str(math.ceil(configured / 60))
    wanted = wall_time_limit + WALL_TIME_MARGIN + options.signal_grace
    if configured is not None:
        wanted = min(wanted, configured)
    return str(math.ceil(wanted / 60))


def render_script(
    *,
    task_uuid: str,
    python: str,
    server_url: str,
    work_dir: str,
    log_dir: str,
    options: SlurmOptions,
    time_limit: str | None,
    export: Sequence[str],
) -> str:
    """The batch script that runs the agent of ``task_uuid`` (pure: text in, text out)."""
    if not _TASK.fullmatch(task_uuid):
        raise SlurmOptionError(f"task id {task_uuid!r}: letters, digits and '-' only")
    for what, text in (
        ("python", python),
        ("server URL", server_url),
        ("work dir", work_dir),
        ("log dir", log_dir),
    ):
        _check_text(what, text)
    if "%" in log_dir:
        raise SlurmOptionError(f"log dir {log_dir!r}: '%' is special in Slurm file names")
    if not log_dir.startswith("/") or not work_dir.startswith("/"):
        raise SlurmOptionError("the work dir and log dir must be absolute paths")
    for name in export:
        if not _ENV_NAME.fullmatch(name):
            raise SlurmOptionError(f"environment variable name {name!r} is invalid")
    if time_limit is not None:
        time_limit_seconds(time_limit)
    q = shlex.quote
    flags: list[tuple[str, str | None]] = [
        ("job-name", f"hpcsnap-{task_uuid}"),
        ("output", f"{log_dir.rstrip('/')}/{task_uuid}-%j.log"),
        ("chdir", "/"),
        ("nodes", "1"),
        ("ntasks", "1"),
        ("no-requeue", None),
        ("signal", f"B:USR1@{options.signal_grace}"),
        ("export", ",".join(export) if export else "NONE"),
    ]
    for flag, value in (
        ("partition", options.partition),
        ("account", options.account),
        ("qos", options.qos),
        ("time", time_limit),
        ("cpus-per-task", None if options.cpus is None else str(options.cpus)),
        ("mem", options.memory),
    ):
        if value is not None:
            flags.append((flag, value))
    lines = [
        "#!/bin/sh",
        f"# hpcsnap agent of task {task_uuid} (generated by hpcsnap; do not edit)",
    ]
    lines += [f"#SBATCH --{n}" if v is None else f"#SBATCH --{n}={q(v)}" for n, v in flags]
    for arg in options.extra_args:
        name, eq, value = arg.partition("=")
        lines.append(f"#SBATCH {name}={q(value)}" if eq else f"#SBATCH {name}")
    agent = [python, "-m", "hpcsnap.agent", "--server", server_url, "--task", task_uuid]
    agent += ["--work-dir", work_dir]
    lines.append("exec " + " ".join(q(a) for a in agent))
    return "\n".join(lines) + "\n"
