"""Helpers of the CLI tests: run the real ``hpcsnap`` entry point as a user would, and read
the README's tours."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO, ServerProcess
from tests.support import hpcsnap as run_hpcsnap

EXE = Path(sys.executable).parent / "hpcsnap"


@dataclass
class Cli:
    """Runs ``hpcsnap ...`` as a user would: environment for the server, a working dir."""

    env: dict[str, str]
    cwd: Path

    def __call__(
        self, *args: str, rc: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(EXE), *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            timeout=120,
        )
        if rc is not None:
            assert proc.returncode == rc, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def out(self, *args: str) -> str:
        return self(*args).stdout.strip()


def user_env(server: ServerProcess, name: str) -> dict[str, str]:
    args = ("user", "create", name, "--data-dir", str(server.data_dir))
    token = run_hpcsnap(*args).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPCSNAP_", "TTY_"))}
    env.update({"HPCSNAP_URL": server.url, "HPCSNAP_TOKEN": token, "COLUMNS": "200"})
    env["XDG_CONFIG_HOME"] = str(server.root / "no-config")
    env["PATH"] = f"{EXE.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


BLOCK = re.compile(r"<!-- tour: (\w+) -->\n```(?:sh|python)\n(.*?)```", re.S)


def tour(kind: str) -> str:
    """The README's code blocks marked ``<!-- tour: KIND -->``, in order."""
    blocks = [code for k, code in BLOCK.findall((REPO / "README.md").read_text()) if k == kind]
    assert blocks, f"no '{kind}' tour in README.md"
    return "\n".join(blocks)


def repo_copy(root: Path) -> Path:
    """A working directory with what the tours use from the repository."""
    (root / "examples" / "heat").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "heat" / "heat.py", root / "examples" / "heat")
    return root
