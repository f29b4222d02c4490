"""After its first snapshot, the agent commits only what changed since the previous one, and
sends every key when the server says the previous one no longer holds them (fake server seam;
the server's side is in tests/server/test_delta_commits.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpcsnap.agent.client import ServerRefused
from hpcsnap.agent.protocol import PeriodicConfig, SnapshotRequest
from hpcsnap.agent.snapshots import Job, Snapshotter
from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.snapshot.manifest import Manifest


class FakeServer:
    """Stands in for AgentClient: keeps each commit's body; refuses the next ``refuse`` delta
    commits as the server does when their parent lost keys."""

    def __init__(self) -> None:
        self.commits: list[dict[str, Any]] = []
        self.refuse = 0

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        if path.endswith("/commit"):
            sent = json.loads(b"".join(body))
            self.commits.append(sent)
            if sent.get("base_files") is not None and self.refuse:
                self.refuse -= 1
                raise ServerRefused(409, "parent changed", {"baseChanged": True})
        return {}


def snapshotter(tmp_path: Path, server: FakeServer) -> Snapshotter:
    return Snapshotter(
        server,  # type: ignore[arg-type]
        ContentStore(LocalBackend(tmp_path / "blobs"), "u1"),
        tmp_path / "job",
        baseline=Manifest(),
        include_unchanged_inputs=False,
        periodic=PeriodicConfig(interval=0, version=1),
        soft_limit=None,
        hard_limit=None,
    )


def take(snap: Snapshotter, n: int) -> None:
    job = Job(SnapshotRequest(id=f"s{n}", kind="manual", directory=f"snapshots/{n}/"))
    snap.run(job)
    assert job.ok, job.error


def paths(commit: dict[str, Any]) -> list[str]:
    return sorted(f["path"] for f in commit["files"])


def test_commits_after_the_first_carry_only_the_changes(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "d").mkdir(parents=True)
    for name in ("a", "b", "c", "d/e", "f"):
        (job / name).write_text(name)
    server = FakeServer()
    snap = snapshotter(tmp_path, server)
    take(snap, 1)
    first = server.commits[-1]
    assert paths(first) == ["a", "b", "c", "d/e", "f"] and first["base_files"] is None

    take(snap, 2)  # nothing changed: no key to send
    unchanged = server.commits[-1]
    assert unchanged["parent_id"] == "s1" and unchanged["base_files"] == 5
    assert unchanged["files"] == [] and unchanged["removed"] == []

    (job / "b").write_text("b, changed")
    (job / "c").unlink()
    (job / "f").unlink()
    (job / "f").symlink_to("a")  # a symlink is no key: f's key is gone
    (job / "g").write_text("new")
    os.utime(job / "a", ns=(1, 1))  # same content, other time: its key changes too
    take(snap, 3)
    delta = server.commits[-1]
    assert delta["parent_id"] == "s2" and delta["base_files"] == 5
    assert paths(delta) == ["a", "b", "g"] and sorted(delta["removed"]) == ["c", "f"]
    assert next(f for f in delta["files"] if f["path"] == "a")["mtime_ns"] == 1


def test_a_refused_delta_is_sent_again_whole_and_the_next_one_too(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    for name in ("a", "b"):
        (job / name).write_text(name)
    server = FakeServer()
    snap = snapshotter(tmp_path, server)
    take(snap, 1)
    (job / "b").write_text("b2")
    server.refuse = 1
    take(snap, 2)
    refused, whole = server.commits[-2:]
    assert paths(refused) == ["b"] and refused["base_files"] == 2
    assert paths(whole) == ["a", "b"] and whole["base_files"] is None
    assert whole["removed"] == [] and whole["parent_id"] == "s1"

    (job / "a").write_text("a3")
    take(snap, 3)  # s2 was committed whole: a delta over it again
    assert paths(server.commits[-1]) == ["a"] and server.commits[-1]["base_files"] == 2
    assert len(server.commits) == 4
