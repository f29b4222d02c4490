"""A capture error ends the snapshot as Failure with its message (fake server seam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcsnap.agent.protocol import PeriodicConfig, SnapshotRequest, SnapshotStatus
from hpcsnap.agent.snapshots import Job, Snapshotter
from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.snapshot.manifest import Manifest


class FakeServer:
    """Stands in for AgentClient: remembers the body of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, body))
        return {}


@pytest.mark.timeout(30)
def test_a_filter_over_its_budget_fails_the_snapshot(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    for i in range(200):  # the pattern takes a few ms on each name: under its timeout
        (job / (f"r{i:03}" + "a" * 20 + "b")).write_text("x")
    server = FakeServer()
    snap = Snapshotter(
        server,  # type: ignore[arg-type]
        ContentStore(LocalBackend(tmp_path / "blobs"), "u1"),
        job,
        baseline=Manifest(),
        include_unchanged_inputs=False,
        periodic=PeriodicConfig(interval=0, version=1),
        soft_limit=None,
        hard_limit=None,
        filter_budget=0.1,
    )
    request = SnapshotRequest(id="s1", kind="manual", whitelist=r"(a|aa)+$", directory="s/1/")
    snap.run(task := Job(request))
    assert not task.ok
    assert task.error is not None and task.error.startswith(
        "the snapshot whitelist '(a|aa)+$' took more than 0.1 s to match "
    ), task.error
    method, path, body = server.calls[-1]
    assert (method, path) == ("POST", "/snapshots/s1/progress")
    assert body.status == SnapshotStatus.FAILURE and body.error == task.error
