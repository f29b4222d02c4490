"""Recording a task's events (real SQLite database, no server): what each change records,
the progress rate limit, deletion events, reading in pages."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hpcsnap.agent.protocol import SnapshotStatus, TaskState
from hpcsnap.server import events
from hpcsnap.server.auth import create_user
from hpcsnap.server.db import Database, LogChunk, Snapshot, Task, TaskEvent
from hpcsnap.server.lifecycle import set_state
from hpcsnap.server.snapshots import create_snapshot


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


def new_task(db: Database, state: TaskState = TaskState.EXECUTING) -> str:
    with db.session() as s:
        user, _ = create_user(s, f"u-{uuid.uuid4().hex[:6]}")
        task = Task(
            uuid=str(uuid.uuid4()),
            owner_id=user.id,
            name="t",
            command="true",
            result_bucket="out",
            state=state.value,
        )
        s.add(task)
        return task.uuid


def types(db: Database, task_uuid: str) -> list[str]:
    with db.session() as s:
        return [e["type"] for e in events.read_events(s, task_uuid, 0, 1000)]


def test_an_ending_fails_open_snapshots_before_the_end_event(db: Database) -> None:
    task_uuid = new_task(db)
    with db.session() as s:
        task = s.get(Task, task_uuid)
        assert task is not None
        snap_id = create_snapshot(s, task, kind="manual", label="open").id
    with db.session() as s:
        task = s.get(Task, task_uuid)
        assert task is not None
        set_state(s, task, TaskState.FAILURE, error="lost contact", exit_code=None)
    with db.session() as s:
        got = events.read_events(s, task_uuid, 0, 100)
    assert [e["type"] for e in got] == ["snapshot.triggered", "state", "snapshot.failure", "end"]
    assert got[1]["from"] == "FullyExecuting" and got[1]["to"] == "Failure"
    assert got[1]["message"] == "lost contact"
    assert got[2]["snapshotId"] == snap_id and "before it completed" in got[2]["error"]
    assert got[3]["state"] == "Failure"
    # a finished task never moves again, and records nothing more
    with db.session() as s:
        task = s.get(Task, task_uuid)
        assert task is not None
        assert set_state(s, task, TaskState.SUCCESS) is False
    assert types(db, task_uuid)[-1] == "end"


def test_progress_is_rate_limited_per_snapshot(db: Database) -> None:
    task_uuid = new_task(db)
    with db.session() as s:
        task = s.get(Task, task_uuid)
        assert task is not None
        snap = create_snapshot(s, task, kind="periodic", status=SnapshotStatus.IN_PROGRESS)
        snap.files_total, snap.files_done = 10, 3
        # right after its triggered event: too soon
        assert events.record_progress(s, snap) is False
    with db.session() as s:
        first = s.scalars(select(TaskEvent).where(TaskEvent.task_uuid == task_uuid)).one()
        first.time -= events.PROGRESS_EVERY + dt.timedelta(seconds=1)
    with db.session() as s:
        snap = s.get(Snapshot, first.snapshot_id)
        assert snap is not None
        assert events.record_progress(s, snap) is True
        assert events.record_progress(s, snap) is False
    with db.session() as s:
        got = events.read_events(s, task_uuid, 0, 100)
    assert [e["type"] for e in got] == ["snapshot.triggered", "snapshot.progress"]
    assert (got[1]["filesDone"], got[1]["filesTotal"]) == (3, 10)


def test_deleted_snapshot_event_for_retention(db: Database) -> None:
    task_uuid = new_task(db)
    with db.session() as s:
        task = s.get(Task, task_uuid)
        assert task is not None
        snap = create_snapshot(s, task, kind="periodic")
        events.record_snapshot_deleted(s, snap, "retention")
    with db.session() as s:
        got = events.read_events(s, task_uuid, 0, 100)[-1]
    assert got["type"] == "snapshot.deleted" and got["reason"] == "retention"
    assert got["directory"].startswith("snapshots/")


def test_log_events_carry_their_chunk_and_pages_follow_on(db: Database) -> None:
    task_uuid = new_task(db)
    other = new_task(db)
    offset = 0
    for i in range(7):
        with db.session() as s:
            text = f"line {i}\n"
            chunk = LogChunk(task_uuid=task_uuid, stream="stdout", offset=offset, data=text)
            s.add(chunk)
            events.record_log(s, chunk)
            offset += len(text)
            noise = LogChunk(task_uuid=other, stream="stdout", offset=i * 6, data="other\n")
            s.add(noise)
            events.record_log(s, noise)
    pages: list[list[dict[str, object]]] = []
    after = 0
    with db.session() as s:
        while page := events.read_events(s, task_uuid, after, 3):
            pages.append(page)
            after = int(page[-1]["id"])
        assert events.last_event_id(s, task_uuid) == after
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [e for p in pages for e in p]
    assert "".join(e["text"] for e in flat) == "".join(f"line {i}\n" for i in range(7))
    assert [e["offset"] for e in flat[1:]] == [e["end"] for e in flat[:-1]]
    assert all(e["stream"] == "stdout" for e in flat)
