"""Issue #10, item 3: the storage fails for a while, during periodic snapshots and during the
final results upload.

Three faults: the S3 server (``rclone serve s3``) killed, then started again on the same port
and data; the S3 server frozen (``SIGSTOP``: slow storage, every call hangs), then resumed; the
local blob store's file system remounted read-only, then read-write. In both cases:
a snapshot taken during the outage is ``Failure`` or a delayed ``Success``, never a ``Success``
with missing content (every ``Success`` is verified byte for byte against its manifest); the
job runs on throughout (its counter file has no gap); the snapshots after the outage succeed;
the results upload is retried with backoff until the storage is back, and is complete.

The outage lasts :data:`~tests.reliability.helpers.OUTAGE` seconds (6 by default); the issue's
30 s variant: ``HPCSNAP_TEST_OUTAGE=30 .venv/bin/python -m pytest tests/reliability``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hpcsnap.blobstore import Backend, LocalBackend
from hpcsnap.blobstore.s3 import S3Backend
from tests.reliability.helpers import (
    OUTAGE,
    counter_gaps,
    job_dir,
    mount,
    restartable_s3,
    settled,
    snapshots,
    tmp_files,
    tmpfs,
    verify_snapshot,
)
from tests.services import MEASUREMENTS
from tests.support import Api, ServerProcess, wait_for

#: Counts every 0.2 s (and rewrites one of five step files) until a ``stop`` file appears.
JOB = (
    "i=0; while [ ! -e stop ]; do i=$((i+1)); echo $i >> counter.txt; "
    "echo $i > step_$((i % 5)).txt; sleep 0.2; done"
)


def lines(path: Path) -> int:
    try:
        return len(path.read_text().split())
    except FileNotFoundError:
        return 0


def new_success(api: Api, uuid: str, old: set[str]) -> dict[str, Any]:
    """A successful snapshot whose id is not in ``old``, or ``{}``."""
    ok = [s for s in snapshots(api, uuid) if s["status"] == "Success" and s["id"] not in old]
    return ok[0] if ok else {}


def successes(api: Api, uuid: str) -> set[str]:
    return {s["id"] for s in snapshots(api, uuid) if s["status"] == "Success"}


def outage_scenario(
    srv: ServerProcess,
    backend: Backend,
    down: Callable[[], None],
    up: Callable[[], None],
    name: str,
    *,
    fails_fast: bool = True,
) -> dict[str, Any]:
    """The scenario of the module docstring; returns what it observed. ``fails_fast``: the
    fault makes storage calls fail (rather than hang), so the results upload must be seen
    failing and retried during the outage."""
    api = srv.user(name)
    uuid = api.submit(JOB, resultBucket=name, snapshotInterval=1)
    api.wait(uuid, {"FullyExecuting"})
    counter = job_dir(srv.data_dir, uuid) / "counter.txt"
    wait_for(
        lambda: [s for s in snapshots(api, uuid) if s["status"] == "Success"],
        bool,
        30,
        "a first periodic snapshot",
    )

    # 1. the storage goes away while periodic snapshots run
    down()
    began, steps = time.monotonic(), lines(counter)
    time.sleep(OUTAGE)
    during = lines(counter)
    old = successes(api, uuid)
    up()
    back = time.monotonic()
    assert during > steps + OUTAGE * 2, f"the job stalled during the outage ({steps} -> {during})"
    recovered = wait_for(
        lambda: new_success(api, uuid, old), bool, 120, "a snapshot after the outage"
    )
    recovery = time.monotonic() - back

    # 2. the storage goes away again while the command ends and the results are uploaded
    down()
    second = time.monotonic()
    (counter.parent / "stop").write_text("")
    api.wait(uuid, {"UploadingResults"}, timeout=60)
    agent_log = srv.data_dir / "agents" / f"{uuid}.log"
    if fails_fast:
        wait_for(
            lambda: "uploading the results failed" in agent_log.read_text(),
            bool,
            120,
            "the agent to retry the results upload",
        )
    time.sleep(max(0.0, second + OUTAGE - time.monotonic()))
    assert api.task(uuid)["state"] == "UploadingResults"
    up()
    results_back = time.monotonic()
    task = api.wait(uuid, timeout=180)
    results_after = time.monotonic() - results_back
    assert task["state"] == "Success", task

    # every snapshot has its verdict, every Success is complete
    snaps = settled(api, uuid)
    for snap in snaps:
        if snap["status"] == "Success":
            verify_snapshot(api, backend, snap)
    assert recovered["status"] == "Success"
    counts = counter_gaps(api.download(name, "counter.txt").decode())
    assert counts == [], f"the job's count has gaps: {counts}"
    failed = [s for s in snaps if s["status"] == "Failure"]
    return {
        "outage": time.monotonic() - began,
        "snapshots": len(snaps),
        "failed": failed,
        "recovery": recovery,
        "results": results_after,
    }


def report(name: str, seen: dict[str, Any]) -> None:
    MEASUREMENTS[f"{name}: outage of {OUTAGE:.0f} s"] = (
        f"{len(seen['failed'])} of {seen['snapshots']} snapshots Failure, the rest verified; "
        f"first Success {seen['recovery']:.1f} s after it ended; "
        f"results done {seen['results']:.1f} s after the second outage ended"
    )


@pytest.mark.parametrize("fault", ["down", "frozen"])
def test_s3_server_down_or_frozen_then_back(tmp_path: Path, fault: str) -> None:
    """``down``: the S3 server killed, then started again (connections refused meanwhile);
    ``frozen``: it stops answering (``SIGSTOP``, then ``SIGCONT``): storage calls hang."""
    with restartable_s3() as s3:
        bucket = s3.new_bucket("outage")
        srv = ServerProcess(tmp_path / "s3", **s3.server_env(bucket))
        srv.start()
        try:
            backend = S3Backend.from_description(s3.description(bucket, "blobs"))
            down, up = (s3.down, s3.up) if fault == "down" else (s3.freeze, s3.thaw)
            seen = outage_scenario(srv, backend, down, up, "s3out", fails_fast=fault == "down")
        finally:
            srv.cleanup()
    for snap in seen["failed"]:
        assert "S3" in snap["error"], snap["error"]
    report(f"S3 server {fault}", seen)


def test_local_store_read_only_then_back(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "ro")
    blobs = srv.data_dir / "blobs"
    with tmpfs(blobs, "256m"):
        srv.start()
        try:
            seen = outage_scenario(
                srv,
                LocalBackend(blobs),
                lambda: mount("-o", "remount,ro", str(blobs)),
                lambda: mount("-o", "remount,rw", str(blobs)),
                "roout",
            )
        finally:
            srv.cleanup()
        assert tmp_files(blobs) == []
    assert seen["failed"], "no snapshot ran while the store was read-only"
    for snap in seen["failed"]:
        assert "read-only" in snap["error"], snap["error"]
    report("local store read-only", seen)
