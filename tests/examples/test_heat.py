"""The example simulation examples/heat/heat.py, run as a program in a temporary /job."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEAT = Path(__file__).resolve().parents[2] / "examples" / "heat" / "heat.py"
QUICK = ["--grid", "12", "--step-seconds", "0"]
FIELD_RE = re.compile(r"internalField\s+nonuniform List<scalar>\n(\d+)\n\(\n(.*?)\n\)\n;", re.S)


def heat(cwd: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
    """Run heat.py quickly (small grid, no pacing; later args override) and check its exit code."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(HEAT), *QUICK, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == rc, proc.stdout[-2000:] + proc.stderr
    return proc


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(HEAT), *QUICK, *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def time_names(path: Path) -> list[str]:
    """Time directories directly under path, in time order."""
    names = [p.name for p in path.iterdir() if p.is_dir() and re.fullmatch(r"[0-9.e+-]+", p.name)]
    return sorted(names, key=float)


def values(t_file: Path) -> list[float]:
    """The internal field of a T file (the uniform initial field gives [])."""
    text = t_file.read_text()
    assert "FoamFile" in text and "class       volScalarField;" in text
    m = FIELD_RE.search(text)
    if m is None:
        assert "internalField   uniform 0.0;" in text
        return []
    vals = [float(v) for v in m.group(2).split("\n")]
    assert len(vals) == int(m.group(1))
    return vals


def tree(root: Path, skip: tuple[str, ...] = ("log.heatFoam",)) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), but the given names."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def log_of(root: Path) -> str:
    return (root / "log.heatFoam").read_text()


def probe_lines(root: Path) -> list[tuple[float, float]]:
    lines = (root / "postProcessing/probes/0/T").read_text().splitlines()
    return [(float(t), float(v)) for t, v in (ln.split() for ln in lines if not ln.startswith("#"))]


# --------------------------------------------------------------------------- the script itself


def test_script_is_a_standalone_stdlib_executable() -> None:
    source = HEAT.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    assert os.access(HEAT, os.X_OK)
    tree_ = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree_):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_help_explains_every_option() -> None:
    out = subprocess.run(
        [sys.executable, str(HEAT), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (
        "--grid",
        "--end-time",
        "--write-interval",
        "--step-seconds",
        "--np",
        "--fail-at",
        "--restart",
        "--no-restart",
    ):
        assert option in out
    for topic in ("log.heatFoam", "processor", "postProcessing/probes/0/T", "hpcsnap", "exit code"):
        assert topic in out


@pytest.mark.parametrize(
    "args",
    [
        ["--grid", "0"],
        ["--end-time", "-1"],
        ["--write-interval", "0"],
        ["--step-seconds", "-1"],
        ["--np", "13"],
        ["--end-time", "nan"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    heat(tmp_path, *args, rc=2)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- a normal run


def test_normal_run_writes_time_dirs_log_and_probe(tmp_path: Path) -> None:
    proc = heat(tmp_path, "--end-time", "0.5", "--write-interval", "0.1")
    assert time_names(tmp_path) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    assert values(tmp_path / "0" / "T") == []
    for name in ["0.1", "0.2", "0.3", "0.4", "0.5"]:
        text = (tmp_path / name / "T").read_text()
        assert f'location    "{name}";' in text
        field = values(tmp_path / name / "T")
        assert len(field) == 12 * 12
        assert all(0.0 <= v <= 1.0 for v in field)
        assert field[0] > field[11]  # hot wall on the left of each row
    log = log_of(tmp_path)
    assert log == proc.stdout  # echoed on stdout as well
    assert "Time = 0.1\n" in log and "Time = 0.5\n" in log
    assert "Initial residual = " in log and "ExecutionTime = " in log
    assert log.rstrip().splitlines()[-1] == "End"
    assert not list(tmp_path.rglob(".heat-tmp*"))
    assert not (tmp_path / "processor0").exists()


def test_heat_diffuses_from_the_hot_wall(tmp_path: Path) -> None:
    heat(tmp_path, "--end-time", "1")
    early = values(tmp_path / "0.1" / "T")
    late = values(tmp_path / "1" / "T")
    centre = 6 * 12 + 6
    assert 0.0 < early[centre] < late[centre]
    assert sum(late) > sum(early)


def test_time_names_have_no_trailing_zeros_and_end_time_is_written(tmp_path: Path) -> None:
    heat(tmp_path / "a", "--end-time", "1", "--write-interval", "0.25")
    assert time_names(tmp_path / "a") == ["0", "0.25", "0.5", "0.75", "1"]
    heat(tmp_path / "b", "--end-time", "0.35", "--write-interval", "0.1")
    assert time_names(tmp_path / "b") == ["0", "0.1", "0.2", "0.3", "0.35"]


def test_same_parameters_give_byte_identical_output(tmp_path: Path) -> None:
    heat(tmp_path / "a", "--end-time", "0.4")
    heat(tmp_path / "b", "--end-time", "0.4")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


# --------------------------------------------------------------------------- decomposed runs


def test_np_2_writes_processor_dirs(tmp_path: Path) -> None:
    heat(tmp_path, "--end-time", "0.3", "--np", "2")
    assert time_names(tmp_path) == []
    assert sorted(p.name for p in tmp_path.glob("processor*")) == ["processor0", "processor1"]
    for k in (0, 1):
        proc = tmp_path / f"processor{k}"
        assert time_names(proc) == ["0", "0.1", "0.2", "0.3"]
        assert len(values(proc / "0.3" / "T")) == 6 * 12
        assert f"procBoundary{k}to{1 - k}" in (proc / "0.3" / "T").read_text()
    assert log_of(tmp_path).rstrip().endswith("End")
    assert "nProcs : 2" in log_of(tmp_path)
    assert not (tmp_path / "processor0" / "log.heatFoam").exists()


def test_decomposition_only_splits_the_output(tmp_path: Path) -> None:
    heat(tmp_path / "serial", "--grid", "10", "--end-time", "0.2")
    heat(tmp_path / "np3", "--grid", "10", "--end-time", "0.2", "--np", "3")
    strips = [values(tmp_path / "np3" / f"processor{k}" / "0.2" / "T") for k in range(3)]
    assert [len(s) for s in strips] == [40, 30, 30]
    assert strips[0] + strips[1] + strips[2] == values(tmp_path / "serial" / "0.2" / "T")
    assert (tmp_path / "np3/postProcessing/probes/0/T").read_bytes() == (
        tmp_path / "serial/postProcessing/probes/0/T"
    ).read_bytes()


# --------------------------------------------------------------------------- failure and restart


@pytest.mark.parametrize(("fail_at", "last"), [("0.35", "0.3"), ("0.4", "0.3")])
def test_fail_at_exits_3_and_keeps_complete_steps(tmp_path: Path, fail_at: str, last: str) -> None:
    heat(tmp_path / "full", "--end-time", "0.6")
    proc = heat(tmp_path / "job", "--end-time", "0.6", "--fail-at", fail_at, rc=3)
    job = tmp_path / "job"
    assert time_names(job) == ["0", "0.1", "0.2", last]
    for name in time_names(job):
        assert (job / name / "T").read_bytes() == (tmp_path / "full" / name / "T").read_bytes()
    log = log_of(job)
    assert "FOAM FATAL ERROR" in log and f"--fail-at {fail_at}" in log
    assert f"Last complete time directory: {last}" in log
    assert "\nEnd\n" not in log
    assert "fail-at" in proc.stderr
    assert not list(job.rglob(".heat-tmp*"))


@pytest.mark.parametrize("nprocs", ["1", "2"])
def test_restart_after_failure_is_byte_identical(tmp_path: Path, nprocs: str) -> None:
    args = ["--end-time", "0.6", "--np", nprocs]
    heat(tmp_path / "full", *args)
    job = tmp_path / "job"
    heat(job, *args, "--fail-at", "0.45", rc=3)
    heat(job, *args)  # the same command without --fail-at restarts by default
    assert tree(job) == tree(tmp_path / "full")  # every field and the probe file
    log = log_of(job)
    assert "FOAM FATAL ERROR" in log  # the log is appended to, not replaced
    assert "Restarting from Time = 0.4, reading field T" in log
    assert log.rstrip().endswith("End")


def test_restart_from_a_snapshot_of_earlier_steps(tmp_path: Path) -> None:
    """As if /job were restored from a snapshot taken at 0.2 (probe already past it)."""
    heat(tmp_path / "full", "--end-time", "0.5")
    job = tmp_path / "job"
    shutil.copytree(tmp_path / "full", job)
    for name in ["0.3", "0.4", "0.5"]:
        shutil.rmtree(job / name)
    (job / "log.heatFoam").unlink()  # e.g. a snapshot with a blacklist on logs
    heat(job, "--end-time", "0.5", "--restart")
    assert tree(job) == tree(tmp_path / "full")
    assert "Restarting from Time = 0.2" in log_of(job)


def test_restart_skips_and_removes_a_partly_published_step(tmp_path: Path) -> None:
    args = ["--end-time", "0.5", "--np", "2"]
    heat(tmp_path / "full", *args)
    job = tmp_path / "job"
    shutil.copytree(tmp_path / "full", job)
    shutil.rmtree(job / "processor1" / "0.4")  # stopped between the two renames of 0.4
    shutil.rmtree(job / "processor0" / "0.5")
    shutil.rmtree(job / "processor1" / "0.5")
    junk = job / "processor1" / ".heat-tmp-0.4-12345"
    junk.mkdir()
    (junk / "T").write_text("torn")
    heat(job, *args)
    log = log_of(job)
    assert "Removing incomplete time 0.4 (in 1 of 2 processors)" in log
    assert "Restarting from Time = 0.3" in log
    assert tree(job) == tree(tmp_path / "full")
    assert not junk.exists()


def test_rerunning_a_finished_case_changes_nothing(tmp_path: Path) -> None:
    heat(tmp_path, "--end-time", "0.3")
    before = tree(tmp_path)
    heat(tmp_path, "--end-time", "0.3")
    assert tree(tmp_path) == before
    assert log_of(tmp_path).rstrip().endswith("End")


def test_restart_can_extend_the_end_time(tmp_path: Path) -> None:
    heat(tmp_path / "full", "--end-time", "0.5")
    heat(tmp_path / "job", "--end-time", "0.3")
    heat(tmp_path / "job", "--end-time", "0.5")
    assert tree(tmp_path / "job") == tree(tmp_path / "full")


def test_no_restart_starts_over(tmp_path: Path) -> None:
    heat(tmp_path, "--end-time", "0.5")
    heat(tmp_path, "--end-time", "0.2", "--no-restart")
    assert time_names(tmp_path) == ["0", "0.1", "0.2"]
    assert "Restarting" not in log_of(tmp_path)
    assert probe_lines(tmp_path)[-1][0] == 0.2


def test_restart_flag_without_time_dirs_is_an_error(tmp_path: Path) -> None:
    proc = heat(tmp_path, "--restart", rc=2)
    assert "no time directory" in proc.stderr


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        (["--np", "2"], ["--np", "1"], "decomposed"),
        (["--np", "1"], ["--np", "2"], "not decomposed"),
        (["--np", "3"], ["--np", "2"], "decomposed"),
        (["--grid", "12"], ["--grid", "10"], "another --grid"),
    ],
)
def test_restart_with_other_layout_refuses_and_deletes_nothing(
    tmp_path: Path, first: list[str], then: list[str], message: str
) -> None:
    heat(tmp_path, "--end-time", "0.2", *first)
    before = tree(tmp_path, skip=())
    proc = heat(tmp_path, "--end-time", "0.4", *then, rc=2)
    assert message in proc.stderr and "--no-restart" in proc.stderr
    assert tree(tmp_path, skip=()) == before


# --------------------------------------------------------------------------- a run in wall time


def test_probe_and_log_grow_while_running(tmp_path: Path) -> None:
    probe = tmp_path / "postProcessing/probes/0/T"
    log = tmp_path / "log.heatFoam"
    t0 = time.monotonic()
    proc = start(tmp_path, "--end-time", "0.6", "--step-seconds", "0.25")
    sizes, saw_log_without_end = [], False
    while proc.poll() is None:
        if probe.exists():
            sizes.append(probe.stat().st_size)
        if log.exists() and "Time = " in log.read_text() and "\nEnd\n" not in log.read_text():
            saw_log_without_end = True
        time.sleep(0.03)
    elapsed = time.monotonic() - t0
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    assert elapsed >= 6 * 0.25 * 0.9  # paced by --step-seconds
    assert sizes == sorted(sizes) and len(set(sizes)) >= 4  # grew while the job ran
    assert saw_log_without_end  # the log is flushed as it goes
    lines = probe_lines(tmp_path)
    assert len(lines) == 6 * 5  # five iteration groups per written step
    times = [t for t, _ in lines]
    assert times == sorted(times) and len(set(times)) == len(times) and times[-1] == 0.6


def test_sigterm_leaves_complete_steps_and_restart_catches_up(tmp_path: Path) -> None:
    args = ["--end-time", "0.6", "--np", "2"]
    heat(tmp_path / "full", *args)
    job = tmp_path / "job"
    proc = start(job, *args, "--step-seconds", "1")  # still running at the SIGTERM below
    deadline = time.monotonic() + 30
    while not (job / "processor1" / "0.1").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert "received SIGTERM" in log_of(job)
    written = time_names(job / "processor0")
    assert "0.6" not in written
    for name in time_names(job / "processor1"):
        for k in (0, 1):
            rel = f"processor{k}/{name}/T"
            assert (job / rel).read_bytes() == (tmp_path / "full" / rel).read_bytes()
    heat(job, *args)
    assert tree(job) == tree(tmp_path / "full")
