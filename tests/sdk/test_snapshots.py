"""Snapshots through the SDK against a real running task."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import hpcsnap

Start = Callable[..., hpcsnap.Task]

# A command in its own PID namespace is its init: without a trap it ignores the SIGTERM of an
# abort and only dies at the SIGKILL that follows seconds later.
WRITER = (
    "trap 'exit 143' TERM; "
    "mkdir -p processor0/1 1; echo p > processor0/1/U; echo u > 1/U; echo keep > keep.dat; "
    "for i in $(seq 1 120); do echo t=$i >> log.run; echo step $i; sleep 0.25; done"
)


def test_instant_wait_list_download(start_task: Start, tmp_path: Path) -> None:
    task = start_task(
        WRITER, ready="^step 1$", results="snap-out", upload_results_on_cancellation=True
    )
    snap_id = task.instant(label="first-look")
    snap = task.wait_snapshot(snap_id, timeout=30)
    assert snap.succeeded and snap.is_completed and not snap.failed
    assert snap.kind == "manual" and snap.label == "first-look"
    assert snap.bucket_name == "snap-out"
    assert snap.directory.startswith("snapshots/") and snap.directory.endswith("_first-look/")
    keys = {f.key[len(snap.directory) :] for f in snap.files()}
    assert {"keep.dat", "1/U", "processor0/1/U", "log.run"} <= keys
    assert task.snapshot_status(snap_id).succeeded

    # filters given to instant() apply to that snapshot only
    only = task.wait_snapshot(task.instant(whitelist=r"\.dat$", blacklist="nothing"))
    assert [f.key[len(only.directory) :] for f in only.files()] == ["keep.dat"]

    listed = task.snapshots()
    assert [s.id for s in listed] == [snap_id, only.id]
    assert task.latest_snapshot() == listed[-1]
    assert task.latest_snapshot(label="first-look") == listed[0]

    written = task.download_snapshot(snap_id, tmp_path / "by-id")
    assert (tmp_path / "by-id" / "processor0" / "1" / "U").read_text() == "p\n"
    assert len(written) == snap.files_total
    task.download_snapshot("latest", tmp_path / "latest")
    assert [p.name for p in (tmp_path / "latest").iterdir()] == ["keep.dat"]
    listed[0].download(tmp_path / "obj")
    assert (tmp_path / "obj" / "log.run").read_text().startswith("t=1\n")

    # the results download leaves the snapshot directories out unless asked
    task.abort()
    assert task.wait(30) and task.state == "Cancelled"
    task.download_results(tmp_path / "results")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "1",
        "keep.dat",
        "log.run",
        "processor0",
    ]
    task.download_results(tmp_path / "everything", snapshots=True)
    assert (tmp_path / "everything" / snap.directory / "keep.dat").is_file()
    with pytest.raises(hpcsnap.TaskNotRunningError, match="only a running task"):
        task.instant()
    with pytest.raises(hpcsnap.MissingSnapshotError):
        task.snapshot_status("00000000-0000-0000-0000-000000000000")


def test_periodic_before_submit_is_applied_at_submission(conn: hpcsnap.Connection) -> None:
    task = conn.create_task("periodic")
    task.constants["DOCKER_CMD"] = WRITER
    task.snapshot_periodic(interval=1)
    task.snapshot_blacklist = r"processor\d+"
    task.submit()
    try:
        assert task.raw["snapshotInterval"] == 1
        assert task.raw["snapshotBlacklist"] == r"processor\d+"

        # the first periodic snapshots may be older than the command's files (it starts after
        # FullyExecuting): one that has files
        def with_files(s: hpcsnap.Snapshot) -> bool:
            return s.kind == "periodic" and s.succeeded and s.files_total > 0

        deadline = time.monotonic() + 30
        while not [s for s in task.snapshots() if with_files(s)]:
            assert time.monotonic() < deadline, task.snapshots()
            time.sleep(0.2)
        periodic = next(s for s in task.snapshots() if with_files(s))
        keys = [f.key for f in periodic.files()]
        assert keys and not [k for k in keys if "processor" in k]
        task.snapshot(0)  # stop them
        assert task.snapshot_interval == 0
        assert conn.retrieve_task(str(task.uuid)).raw["snapshotInterval"] == 0
    finally:
        task.abort()


def test_snapshot_filters_change_while_running(start_task: Start) -> None:
    task = start_task(WRITER, ready="^step 1$")
    task.snapshot(30)
    task.snapshot_blacklist = r"processor\d+"
    task.snapshot_whitelist = r"log\..*|/U$"
    server_view = task._connection.retrieve_task(str(task.uuid)).raw
    assert server_view["snapshotInterval"] == 30  # the interval is kept
    assert server_view["snapshotBlacklist"] == r"processor\d+"
    assert server_view["snapshotWhitelist"] == r"log\..*|/U$"
    snap = task.wait_snapshot(task.instant(), timeout=30)
    assert sorted(f.key[len(snap.directory) :] for f in snap.files()) == ["1/U", "log.run"]
    task.snapshot_whitelist = None  # clears it
    assert task._connection.retrieve_task(str(task.uuid)).raw["snapshotWhitelist"] is None
    with pytest.raises(hpcsnap.TaskSubmittedError, match="results_blacklist"):
        task.results_blacklist = r"processor\d+"
    with pytest.raises(hpcsnap.BadRequestError, match="blacklist"):
        task.snapshot_blacklist = "(unclosed"
    task.abort()
    task.wait(30)
    with pytest.raises(hpcsnap.TaskNotRunningError, match="ended"):
        task.snapshot_blacklist = "x"


def test_wait_running_on_a_task_that_ends_first(conn: hpcsnap.Connection) -> None:
    task = conn.create_task("quick")
    task.constants["DOCKER_CMD"] = "true"
    task.submit()
    task.wait(30)
    with pytest.raises(hpcsnap.TaskNotRunningError, match="will not run"):
        task.wait_running(10)
