"""The periodic schedule of the agent's snapshot worker (fake clock, fake server seam)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hpcsnap.agent import snapshots
from hpcsnap.agent.priority import IdleMeter
from hpcsnap.agent.protocol import PeriodicConfig, SnapshotRequest, SnapshotStatus
from hpcsnap.agent.snapshots import Snapshotter
from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.snapshot.manifest import Manifest


class FakeServer:
    """Stands in for AgentClient: opens snapshot records, remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[Any] = []

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path))
        self.bodies.append(body)
        n = len(self.calls)
        return {"id": f"s{n}", "kind": "periodic", "directory": f"snapshots/{n}/"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    tmp_path: Path, interval: int, server: FakeServer | None = None
) -> tuple[Snapshotter, FakeServer, Clock]:
    server, clock = server or FakeServer(), Clock()
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


class Meter(IdleMeter):
    """Stands in for IdleMeter: the machine is as idle as told."""

    def __init__(self, idle: float, age: float = 0.0) -> None:  # no super(): no /proc/stat
        self.idle, self._age = idle, age

    def age(self) -> float:
        return self._age

    def idle_cores(self) -> float:
        return self.idle

    def reset(self) -> None:
        pass


def make_job(tmp_path: Path, interval: int) -> tuple[Snapshotter, FakeServer, Path]:
    job = tmp_path / "job"
    for i in range(5):
        (job / f"t{i}").mkdir(parents=True)
        (job / f"t{i}" / "f.dat").write_bytes(bytes([i]) * 5000)
    snap, server, _ = make(tmp_path, interval)
    snap.root = job
    return snap, server, job


def periodic_now(snap: Snapshotter, server: FakeServer) -> dict[str, Any]:
    """Open a periodic snapshot and capture it now; returns the commit it sent."""
    job = snapshots.Job(snap.open_snapshot("periodic"))
    snap.run(job)
    assert job.ok, job.error
    commit: dict[str, Any] = json.loads(b"".join(server.bodies[-1]))
    return commit


def test_spare_cpu_stores_ahead_and_the_tick_reads_only_what_changed_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SETTLED", 0.0)
    monkeypatch.setattr(snapshots, "STORE_AHEAD_SHARE", 1e-9)  # every pass costs too much
    snap, server, job = make_job(tmp_path, 5)
    assert snap.store_ahead(Meter(idle=2.0)) is True  # stored files, and the CPU is still spare
    assert sorted(snap.known) == [f"t{i}/f.dat" for i in range(5)]
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LOOK
    assert snap.store_ahead(Meter(idle=2.0)) is False  # nothing left to store
    assert snap.ahead_wait == 2 * snapshots.STORE_AHEAD_LOOK  # so the next look waits longer
    for _ in range(10):
        snap.store_ahead(Meter(idle=2.0))
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LONGEST
    (job / "t9").mkdir()
    (job / "t9" / "new.dat").write_bytes(b"a new file")
    assert snap.store_ahead(Meter(idle=2.0)) is True
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LOOK  # new files: looks often again
    time.sleep(0.05)
    (job / "t0" / "f.dat").write_bytes(b"changed after it was stored ahead")
    commit = periodic_now(snap, server)
    assert commit["files_read"] == 1 and commit["files_reused"] == 5


def test_storing_ahead_backs_off_only_as_far_as_its_passes_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over a small tree that finds nothing costs next to nothing: the next look stays
    near, so the job's first outputs are stored as they settle; a pass that costs more backs
    off (at most STORE_AHEAD_SHARE of a core); a capture that reads files looks soon again."""
    monkeypatch.setattr(snapshots, "SETTLED", 0.0)
    snap, server, job = make_job(tmp_path, 5)
    assert snap.store_ahead(Meter(idle=2.0)) is True
    for _ in range(5):
        assert snap.store_ahead(Meter(idle=2.0)) is False  # 5 files: about 1 CPU-ms a pass
    # doubling at each pass would give 4 s; the last pass's cost bounds the wait (0.5 s up to
    # 10 CPU-ms, 1 s up to 20: room for a collection of the test process's garbage meanwhile)
    assert snap.ahead_wait <= 2 * snapshots.STORE_AHEAD_LOOK
    monkeypatch.setattr(snapshots, "STORE_AHEAD_SHARE", 1e-9)
    for _ in range(5):
        snap.store_ahead(Meter(idle=2.0))
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LONGEST
    (job / "t0" / "f.dat").write_bytes(b"rewritten in place: left to the next capture")
    assert snap.store_ahead(Meter(idle=2.0)) is False
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LONGEST
    commit = periodic_now(snap, server)
    assert commit["files_read"] == 1
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LOOK


def test_no_storing_ahead_when_busy_without_periodic_snapshots_a_capture_waiting_or_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SETTLED", 0.0)
    snap, _, _ = make_job(tmp_path, 5)
    assert snap.store_ahead(Meter(idle=0.1, age=snapshots.STORE_AHEAD_LOOK)) is False
    assert snap.ahead_wait == snapshots.STORE_AHEAD_LOOK  # stopped by busy CPU: not backed off
    snap._queue.put(snapshots.Job(snap.open_snapshot("periodic")))
    assert snap.store_ahead(Meter(idle=2.0)) is False
    assert snap.known == {}
    idle, _, _ = make_job(tmp_path / "other", 0)
    assert idle.store_ahead(Meter(idle=2.0)) is False
    assert idle.known == {}
    off, _, _ = make_job(tmp_path / "off", 5)
    off.ahead = False  # HPCSNAP_STORE_AHEAD=0
    assert off.store_ahead(Meter(idle=2.0)) is False
    assert off.known == {}


def test_the_worker_stores_ahead_only_while_cores_are_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SETTLED", 0.0)
    monkeypatch.setattr(snapshots, "STORE_AHEAD_LOOK", 0.05)
    meter = Meter(idle=0.0)
    monkeypatch.setattr(snapshots, "IdleMeter", lambda: meter)
    snap, _, _ = make_job(tmp_path, 3600)
    snap.start()
    try:
        time.sleep(0.5)
        assert snap.known == {}  # busy: nothing stored ahead
        meter.idle = 1.0
        deadline = time.monotonic() + 10
        while len(snap.known) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(snap.known) == 5
    finally:
        snap.stop()


def test_a_quick_capture_sends_no_progress_and_only_a_triggered_one_says_it_started(
    tmp_path: Path,
) -> None:
    snap, server, _ = make_job(tmp_path, 5)
    opened = snapshots.Job(snap.open_snapshot("periodic"))  # InProgress from its creation
    snap.run(opened)
    assert opened.ok, opened.error
    assert [path.rsplit("/", 1)[-1] for _, path in server.calls] == ["snapshots", "commit"]
    server.calls.clear()
    # a snapshot the user triggered through the server reaches the agent as Triggered
    triggered = snapshots.Job(SnapshotRequest(id="by-user", kind="manual", directory="s/u/"))
    snap.run(triggered)
    assert triggered.ok, triggered.error
    assert server.calls == [
        ("POST", "/snapshots/by-user/progress"),
        ("POST", "/snapshots/by-user/commit"),
    ]
    assert server.bodies[-2].status == SnapshotStatus.IN_PROGRESS


def slow_sync(snap: Snapshotter, job: Path, until: Any) -> list[str]:
    """Makes the store's next sync wait for ``until()`` (at most 10 s), the job writing a new
    file as it starts: what a job writing fast does to a snapshot's sync. Returns the calls."""
    real, calls = snap.store.flush, []

    def flush() -> None:
        calls.append("sync")
        if len(calls) == 1:
            (job / "t9").mkdir()
            (job / "t9" / "new.dat").write_bytes(b"written while the snapshot syncs")
            deadline = time.monotonic() + 10
            while not until() and time.monotonic() < deadline:
                time.sleep(0.01)
        real()

    snap.store.flush = flush  # type: ignore[method-assign]
    return calls


def test_while_a_snapshot_waits_for_its_sync_spare_cpu_stores_ahead_what_it_did_not_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SETTLED", 0.0)
    monkeypatch.setattr(snapshots, "SYNC_AHEAD_AFTER", 0.01)
    monkeypatch.setattr(snapshots, "IdleMeter", lambda: Meter(idle=2.0))
    stored_ahead: list[list[str]] = []

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        got = store_ahead(*args, **kwargs)
        stored_ahead.append(sorted(got))
        return got

    store_ahead = snapshots.store_ahead
    monkeypatch.setattr(snapshots, "store_ahead", recording)
    snap, server, job = make_job(tmp_path, 5)
    syncs = slow_sync(snap, job, lambda: "t9/new.dat" in snap.known)
    commit = periodic_now(snap, server)
    assert syncs == ["sync"]  # one sync for the content and the manifest
    # not the files the snapshot had just captured (a pass that found files may be followed
    # by another while the sync lasts)
    assert [paths for paths in stored_ahead if paths] == [["t9/new.dat"]]
    assert commit["files_read"] == 5 and commit["files_total"] == 5
    assert len(snap.known) == 6
    assert snap.store.stored([snap.known["t9/new.dat"].digest or ""])
    # the next tick reads nothing: what changed since was stored while the last one synced
    commit = periodic_now(snap, server)
    assert commit["files_read"] == 0 and commit["files_total"] == 6


def test_no_storing_ahead_during_a_sync_on_busy_cpu_and_a_failed_sync_fails_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SETTLED", 0.0)
    monkeypatch.setattr(snapshots, "SYNC_AHEAD_AFTER", 0.01)
    monkeypatch.setattr(snapshots, "IdleMeter", lambda: Meter(idle=0.1))
    snap, server, job = make_job(tmp_path, 5)
    waited = time.monotonic() + 0.3
    slow_sync(snap, job, lambda: time.monotonic() > waited)
    periodic_now(snap, server)
    assert sorted(snap.known) == [f"t{i}/f.dat" for i in range(5)]

    def broken() -> None:
        raise OSError(5, "Input/output error")

    snap.store.flush = broken  # type: ignore[method-assign]
    (job / "t0" / "f.dat").write_bytes(b"changed")
    failed = snapshots.Job(snap.open_snapshot("periodic"))
    snap.run(failed)
    assert not failed.ok and failed.error is not None and "Input/output error" in failed.error
    assert snap.known["t0/f.dat"].size == 5000  # what the failed snapshot read is not known


class HeldFirstOpen(FakeServer):
    """Stamps each new snapshot in the order the calls arrive, then holds the first call until
    released: another thread opens a snapshot meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.inside = threading.Event()
        self.release = threading.Event()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        with self.lock:
            data = super().call(method, path, body, **kw)
        if data["id"] == "s1":
            self.inside.set()
            self.release.wait(10)
        return data


def test_snapshots_are_queued_in_the_order_the_server_stamped_them(tmp_path: Path) -> None:
    """The server fails as abandoned a snapshot still open that was stamped before the one
    being committed: one the job asked for, stamped first but queued after a periodic one,
    would be failed for nothing. Opening and queueing are one step for every thread."""
    server = HeldFirstOpen()
    snap, _, _ = make(tmp_path, 5, server)
    first = threading.Thread(target=snap.open_and_submit, args=("job", "mid"))
    first.start()
    assert server.inside.wait(10)
    second = threading.Thread(target=snap.open_and_submit, args=("periodic",))
    second.start()
    second.join(0.5)  # opened and queued by now, unless it waits for the first to be queued
    server.release.set()
    first.join(10)
    second.join(10)
    queued = [snap._queue.get_nowait().request.id for _ in range(2)]
    assert queued == ["s1", "s2"], "captured in another order than the server stamped them"
