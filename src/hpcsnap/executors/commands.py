"""The one place where executors run scheduler commands (sbatch, squeue, scancel...).

Every command gets an argv list, never a shell string. A failure raises :class:`CommandError`
carrying the argv, exit code, stdout and stderr. Tests replace :func:`run_command` by a fake
with the same signature (:data:`Runner`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from hpcsnap.executors.base import ExecutorError

#: Environment variables never handed to scheduler commands: secrets of the server (which
#: commands do not need) and variables through which a scheduler would take options that
#: hpcsnap sets itself (``SBATCH_EXPORT`` could export the whole server environment to jobs).
_WITHHELD = re.compile(
    r"^(HPCSNAP_(?!SLURM_).*|AWS_.*|PG.*|SBATCH_.*|SALLOC_.*|SRUN_.*|SQUEUE_.*|SCANCEL_.*"
    r"|SLURM_(?!CONF$).*)$"
)


class CommandError(ExecutorError):
    """A scheduler command could not run or exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        what = "could not be run" if returncode is None else f"exited with code {returncode}"
        detail = (stderr or stdout).strip()[-2000:]
        super().__init__(f"{' '.join(self.argv)} {what}" + (f": {detail}" if detail else ""))


class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> str: ...


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment without what scheduler commands must not see, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _WITHHELD.match(k)}
    env.update(extra or {})
    return env


def run_command(
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> str:
    """Run ``argv`` and return its stdout; :class:`CommandError` if it fails in any way."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else command_env(),
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandError(argv, None, "", str(exc)) from exc
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout
