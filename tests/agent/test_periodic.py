"""The periodic schedule of the agent's snapshot worker (fake clock, fake server seam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcsnap.agent import snapshots
from hpcsnap.agent.protocol import PeriodicConfig
from hpcsnap.agent.snapshots import Snapshotter
from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.snapshot.manifest import Manifest


class FakeServer:
    """Stands in for AgentClient: opens snapshot records, remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path))
        n = len(self.calls)
        return {"id": f"s{n}", "kind": "periodic", "directory": f"snapshots/{n}/"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, interval: int) -> tuple[Snapshotter, FakeServer, Clock]:
    server, clock = FakeServer(), Clock()
    snap = Snapshotter(
        server,  # type: ignore[arg-type]
        ContentStore(LocalBackend(tmp_path / "blobs"), "u1"),
        tmp_path,
        baseline=Manifest(),
        include_unchanged_inputs=False,
        periodic=PeriodicConfig(interval=interval, version=1),
        soft_limit=None,
        hard_limit=None,
        clock=clock,
    )
    return snap, server, clock


def test_ticks_follow_the_interval(tmp_path: Path) -> None:
    snap, server, clock = make(tmp_path, 10)
    assert snap.tick() == "idle"
    clock.now += 9.9
    assert snap.tick() == "idle"
    clock.now += 0.2
    assert snap.tick() == "opened"
    assert snap.tick() == "idle"  # next one is due 10 s later
    clock.now += 10
    assert snap.tick() == "skipped"  # the first is still waiting (no worker runs here)
    assert server.calls == [("POST", "/snapshots")]


def test_a_tick_during_a_capture_is_skipped_and_counted(tmp_path: Path) -> None:
    snap, server, clock = make(tmp_path, 5)
    with snap._busy:  # a capture is running
        for _ in range(3):
            clock.now += 5
            assert snap.tick() == "skipped"
    assert snap.skipped_ticks == 3
    assert server.calls == []
    clock.now += 5
    assert snap.tick() == "opened"


def test_a_late_snapshot_stops_yielding_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capture still running when the next tick is near (or due) hurries the agent's session
    (its CPU share back, see tests/agent/test_priority.py); the end of that capture calms it
    again."""
    calls: list[str] = []
    monkeypatch.setattr(snapshots, "hurry_session", lambda: calls.append("hurry"))
    monkeypatch.setattr(snapshots, "calm_session", lambda: calls.append("calm"))
    snap, server, clock = make(tmp_path, 5)
    clock.now += 5
    assert snap.tick() == "opened" and calls == []
    clock.now += 2.9
    assert snap.tick() == "idle" and calls == []  # it yields while the next tick is far
    clock.now += 0.2
    assert snap.tick() == "idle" and calls == ["hurry"]  # 2 s before: it stops yielding
    clock.now += 1.9
    assert snap.tick() == "skipped" and calls == ["hurry"] * 2  # the first has not even started
    snap.start()
    snap.stop()
    assert calls == ["hurry", "hurry", "calm"]
    assert [path for _, path in server.calls][-1].endswith("/commit")


def test_interval_changes_and_zero_stops(tmp_path: Path) -> None:
    snap, server, clock = make(tmp_path, 0)
    clock.now += 3600
    assert snap.tick() == "idle"
    snap.configure(PeriodicConfig(interval=2, version=2))
    clock.now += 2
    assert snap.tick() == "opened"
    snap.configure(PeriodicConfig(interval=0, version=3))
    clock.now += 100
    assert snap.tick() == "idle"
    assert len(server.calls) == 1
