"""Acceptance: the README's SDK tour (and its recovery pattern), run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import repo_copy, tour, user_env
from tests.support import ServerProcess


@pytest.mark.slow
def test_sdk_tour(server: ServerProcess, tmp_path: Path) -> None:
    env = user_env(server, "sdk-tourist")
    cwd = repo_copy(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", tour("sdk")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Success ") and "_first-look/" in lines[0]
    assert "Success" in lines
    assert (cwd / "first-look" / "log.heatFoam").is_file()
    assert not list((cwd / "first-look").glob("processor*"))
    assert (cwd / "heat-results" / "processor0" / "2" / "T").is_file()
    assert (cwd / "heat-recovered" / "2" / "T").is_file()
    assert "Restarting from Time = " in lines[-1] and lines[-1].startswith("Success")
