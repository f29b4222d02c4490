"""Acceptance: the README's command-line tour, run as written by a new user."""

from __future__ import annotations

import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.cli.helpers import repo_copy, tour, user_env
from tests.support import ServerProcess


@pytest.mark.slow
def test_cli_tour(server: ServerProcess, tmp_path: Path) -> None:
    env = user_env(server, "cli-tourist")
    cwd = repo_copy(tmp_path)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tour("cli")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (cwd / "first-look" / "log.heatFoam").is_file()
    assert not list((cwd / "first-look").glob("processor*"))  # the blacklist
    assert (cwd / "heat-results" / "processor1" / "2" / "T").is_file()
    latest = [p.name for p in (cwd / "latest").iterdir()]
    assert "log.heatFoam" in latest and not [n for n in latest if n.startswith("processor")]
    assert "Restarting from Time = " in proc.stdout
    assert "failed, as planned" in proc.stdout
    assert json.loads((cwd / "changes.json").read_text())["to"] == "results"
    assert tarfile.is_tarfile(cwd / "heat-results.tar.gz")
    assert zipfile.is_zipfile(cwd / "first-look.zip")
