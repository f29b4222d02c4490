"""The seed's best practice, "include snapshot retrieval in your error handling workflows":
a run that ends in Failure continues from its latest successful snapshot, restored by the
server (``resume_from``) or by hand (``snapshot.as_resource()``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import hpcsnap
from tests.support import REPO

HEAT = REPO / "examples" / "heat" / "heat.py"
RUN = "python3 heat.py --grid 12 --end-time 2 --write-interval 0.1 --step-seconds 0.2"


@pytest.fixture(scope="module")
def failing(conn: hpcsnap.Connection) -> hpcsnap.Task:
    """The example simulation, failing at simulated time 1.05, snapshotted every second."""
    inputs = conn.create_bucket("heat-inputs")
    inputs.add_file(HEAT)
    task = conn.create_task("heat-fails", "docker-batch")
    task.constants["DOCKER_CMD"] = RUN + " --fail-at 1.05"
    task.resources = [inputs]
    task.results = conn.create_bucket("heat-fails-out")
    task.snapshot_periodic(interval=1)
    task.submit()
    assert task.wait(120)
    assert task.state == "Failure" and task.exit_code == 3
    return task


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The field at the end of an uninterrupted run."""
    cwd = tmp_path_factory.mktemp("reference")
    cmd = [sys.executable, str(HEAT), *RUN.split()[2:], "--step-seconds", "0"]
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=120)
    return cwd / "2" / "T"


def time_dirs(paths: list[str]) -> list[float]:
    """The complete time directories (a T file) among snapshot or result paths."""
    return sorted(float(m[1]) for p in paths if (m := re.fullmatch(r"([0-9.e+-]+)/T", p)))


def test_failed_run_resumes_from_its_latest_snapshot(
    conn: hpcsnap.Connection, failing: hpcsnap.Task, reference: Path, tmp_path: Path
) -> None:
    snap = failing.latest_snapshot()
    assert snap is not None and snap.succeeded
    saved = time_dirs([f.key[len(snap.directory) :] for f in snap.files()])
    assert saved and max(saved) < 1.05

    retry = conn.create_task("heat-resumed", "docker-batch")
    retry.constants["DOCKER_CMD"] = RUN
    retry.resources = failing.resources
    retry.resume_from(failing)  # its latest successful snapshot, chosen at submission
    retry.results = conn.create_bucket("heat-resumed-out")
    retry.run(tmp_path / "resumed")

    assert retry.state == "Success", retry.stdout()[-2000:]
    assert retry.resumed_from == {"taskUuid": failing.uuid, "snapshotId": snap.id}
    log = retry.stdout()
    restart = f"{max(saved):g}"
    assert f"Restarting from Time = {restart}, reading field T" in log
    loop = log.split("Starting time loop", 1)[1]
    steps = [float(t) for t in re.findall(r"^Time = (\S+)$", loop, re.M)]
    assert steps[0] > max(saved) and steps[-1] == 2.0 and log.rstrip().endswith("End")
    # the restored time steps are inputs: only the new ones are results
    results = [str(p.relative_to(tmp_path / "resumed")) for p in (tmp_path / "resumed").rglob("*")]
    assert min(time_dirs(results)) > max(saved)
    assert (tmp_path / "resumed" / "2" / "T").read_bytes() == reference.read_bytes()


def test_failed_run_continues_from_a_snapshot_as_resource(
    conn: hpcsnap.Connection, failing: hpcsnap.Task, reference: Path, tmp_path: Path
) -> None:
    snap = failing.latest_snapshot()
    assert snap is not None and snap.succeeded
    retry = conn.create_task("heat-retry", "docker-batch")
    retry.constants["DOCKER_CMD"] = RUN
    retry.resources = [*failing.resources, snap.as_resource()]
    retry.results = conn.create_bucket("heat-retry-out")
    retry.run(tmp_path / "recovered")

    assert retry.state == "Success", retry.stdout()[-2000:]
    log = retry.stdout()
    assert "Restarting from Time = " in log and log.rstrip().endswith("End")
    assert (tmp_path / "recovered" / "2" / "T").read_bytes() == reference.read_bytes()
