"""Local executor: job ids are tied to this machine; finished agents are reaped."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hpcsnap.executors import JobState, LocalExecutor
from hpcsnap.executors.local import MACHINE


def executor(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(work_dir=tmp_path / "w", log_dir=tmp_path / "l", slots=2)


def test_another_machines_jobs_are_left_out(tmp_path: Path) -> None:
    ex = executor(tmp_path)
    with subprocess.Popen(["sleep", "60"]) as proc:  # still running when it is cancelled
        start = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        mine = f"{proc.pid}:{start}@{MACHINE}"
        legacy = f"{proc.pid}:{start}"
        other = f"{proc.pid}:{start}@0123456789ab.4026531836"
        assert ex.status([mine, legacy, other]) == {
            mine: JobState.RUNNING,
            legacy: JobState.RUNNING,
        }
        assert ex.cancel([other]) == {other: False}
        assert ex.cancel([mine]) == {mine: True}
        proc.wait(5)
    assert ex.status([mine]) == {mine: JobState.DONE}


def test_finished_agents_are_reaped_even_if_nobody_asks(tmp_path: Path) -> None:
    ex = executor(tmp_path)
    proc = subprocess.Popen(["true"])
    proc.wait()
    proc.returncode = None  # as if not yet collected
    ex._children["x"] = proc
    ex.status([])
    assert ex._children == {}
