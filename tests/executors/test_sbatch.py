"""The batch script: a pure function pinned by golden files; validated, quoted options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcsnap.executors.sbatch import (
    RESERVED_OPTIONS,
    SlurmOptionError,
    SlurmOptions,
    job_time_limit,
    render_script,
    time_limit_seconds,
)

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = 'it\'s a $dir `x` "q" ; rm -rf ~ &'

FULL = SlurmOptions(
    partition="compute",
    account="proj-42",
    qos="normal",
    time_limit="1-00:00:00",
    cpus=4,
    memory="16G",
    signal_grace=300,
    extra_args=("--constraint=ib&avx2", "--exclusive", "--comment=it's $HOME"),
)


def full_script() -> str:
    return render_script(
        task_uuid="0f0e0d0c-0b0a-4900-8a00-000000000001",
        python="/opt/hpc snap/bin/python3",
        server_url="http://head-node:8642",
        work_dir="/scratch/it's $dir",
        log_dir="/shared/hpcsnap logs",
        options=FULL,
        time_limit=job_time_limit(FULL, 3600),
        export=["HPCSNAP_AGENT_TOKEN", "PATH", "PYTHONUNBUFFERED"],
    )


def minimal_script() -> str:
    return render_script(
        task_uuid="0f0e0d0c-0b0a-4900-8a00-000000000002",
        python="/usr/bin/python3",
        server_url="http://127.0.0.1:8642",
        work_dir="/var/tmp/hpcsnap",
        log_dir="/var/log/hpcsnap",
        options=SlurmOptions(),
        time_limit=None,
        export=["HPCSNAP_AGENT_TOKEN"],
    )


@pytest.mark.parametrize(
    ("name", "render"), [("full", full_script), ("minimal", minimal_script)], ids=str
)
def test_golden(name: str, render: object) -> None:
    golden = GOLDEN / f"sbatch-{name}.sh"
    text = render()  # type: ignore[operator]
    if os.environ.get("HPCSNAP_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs (HPCSNAP_UPDATE_GOLDEN=1 rewrites it)"


def test_script_runs_the_agent_with_exact_arguments(tmp_path: Path) -> None:
    """The exec line survives hostile characters: run it with a fake 'python' that prints
    its argv as JSON."""
    fake_dir = tmp_path / HOSTILE
    fake_dir.mkdir()
    fake = fake_dir / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    work = tmp_path / f"work {HOSTILE}"
    script = render_script(
        task_uuid="abc-123",
        python=str(fake),
        server_url=f"http://h:1/{HOSTILE}",
        work_dir=str(work),
        log_dir=str(tmp_path),
        options=SlurmOptions(extra_args=(f"--comment={HOSTILE}",)),
        time_limit=None,
        export=["HPCSNAP_AGENT_TOKEN"],
    )
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [
        "-m",
        "hpcsnap.agent",
        "--server",
        f"http://h:1/{HOSTILE}",
        "--task",
        "abc-123",
        "--work-dir",
        str(work),
    ]
    # every #SBATCH line is a shell comment, and holds no secret
    assert "hps_" not in script and "TOKEN=" not in script


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"partition": "a b"}, "partition"),
        ({"account": "x;y"}, "account"),
        ({"qos": ""}, "qos"),
        ({"time_limit": "soon"}, "time limit"),
        ({"time_limit": "0"}, "positive"),
        ({"cpus": 0}, "cpus"),
        ({"memory": "4 GB"}, "memory"),
        ({"memory": "0"}, "memory"),
        ({"signal_grace": 0}, "signal_grace"),
        ({"extra_args": ["-p debug"]}, "long form"),
        ({"extra_args": ["--export=ALL"]}, "set by hpcsnap"),
        ({"extra_args": ["--signal=USR2@5"]}, "set by hpcsnap"),
        ({"extra_args": ["--comment=a\nb"]}, "control characters"),
        ({"colour": "blue"}, "unknown Slurm option(s) colour; valid: partition, account"),
    ],
)
def test_invalid_options_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(SlurmOptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SlurmOptions.from_mapping(values)


def test_reserved_options_cover_what_the_script_sets() -> None:
    for line in full_script().splitlines():
        if line.startswith("#SBATCH --") and line.split("=")[0][10:] in (
            "job-name",
            "output",
            "chdir",
            "no-requeue",
            "signal",
            "export",
        ):
            assert line.split("=")[0][10:] in RESERVED_OPTIONS


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"task_uuid": "../x"}, "task id"),
        ({"work_dir": "relative"}, "absolute"),
        ({"log_dir": "/logs/%u"}, "special"),
        ({"server_url": "http://x\n#SBATCH --uid=0"}, "control characters"),
        ({"export": ["A=B"]}, "variable name"),
        ({"time_limit": "x"}, "time limit"),
    ],
)
def test_invalid_script_arguments_are_refused(bad: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "task_uuid": "t-1",
        "python": "/usr/bin/python3",
        "server_url": "http://h:1",
        "work_dir": "/w",
        "log_dir": "/l",
        "options": SlurmOptions(),
        "time_limit": None,
        "export": [],
        **bad,
    }
    with pytest.raises(SlurmOptionError, match=message):
        render_script(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("1:30", 90),
        ("2:00:00", 7200),
        ("1-0", 86400),
        ("1-2:03", 93780),
        ("1-02:03:04", 93784),
        ("UNLIMITED", None),
        ("infinite", None),
    ],
)
def test_time_limit_formats(text: str, seconds: int | None) -> None:
    assert time_limit_seconds(text) == seconds


def test_job_time_limit() -> None:
    grace = SlurmOptions(signal_grace=60)
    assert job_time_limit(grace, None) is None
    assert job_time_limit(grace, 60) == "7"  # 60 s + 300 s margin + 60 s grace
    assert job_time_limit(grace, 61) == "8"  # rounded up to the minute
    capped = SlurmOptions(time_limit="0:05:00", signal_grace=60)
    assert job_time_limit(capped, 3600) == "5"
    assert job_time_limit(capped, None) == "5"
