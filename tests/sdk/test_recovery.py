"""The seed's best practice, "include snapshot retrieval in your error handling workflows":
a run that ends in Failure continues from its latest successful snapshot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hpcsnap
from tests.support import REPO

HEAT = REPO / "examples" / "heat" / "heat.py"
RUN = "python3 heat.py --grid 12 --end-time 2 --write-interval 0.1 --step-seconds 0.2"


def test_failed_run_continues_from_its_latest_snapshot(
    conn: hpcsnap.Connection, tmp_path: Path
) -> None:
    inputs = conn.create_bucket("heat-inputs")
    inputs.add_file(HEAT)

    failing = conn.create_task("heat-fails", "docker-batch")
    failing.constants["DOCKER_CMD"] = RUN + " --fail-at 1.05"
    failing.resources = [inputs]
    failing.results = conn.create_bucket("heat-fails-out")
    failing.snapshot_periodic(interval=1)
    failing.submit()
    assert failing.wait(120)
    assert failing.state == "Failure" and failing.exit_code == 3

    # the recovery pattern, as the README shows it
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
    # the continued run ends exactly where an uninterrupted one does
    reference = tmp_path / "reference"
    reference.mkdir()
    cmd = [sys.executable, str(HEAT), *RUN.split()[2:], "--step-seconds", "0"]
    subprocess.run(cmd, cwd=reference, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "recovered" / "2" / "T").read_bytes() == (reference / "2" / "T").read_bytes()
