"""Recording a task's events (real SQLite database, no server): what each change records,
the progress rate limit, deletion events, reading in pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hpcsnap.agent.protocol import SnapshotStatus, TaskState
from hpcsnap.server import events
from hpcsnap.server.db import Database, LogChunk, Snapshot, Task, TaskEvent
from hpcsnap.server.lifecycle import set_state
from hpcsnap.server.snapshots import create_snapshot
from tests.server.helpers import new_task


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


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


def test_tasks_from_before_the_upgrade_get_a_stream(tmp_path: Path) -> None:
    """Migration 0004 gives existing tasks their output, snapshots, state and end."""
    database = Database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    database.upgrade("0003")
    now = dt.datetime(2026, 11, 1, 12, 0, 0)
    with database.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, name, email, is_admin, created_at) "
            "VALUES (1, 'old', 'old@x', 0, ?)",
            (now,),
        )
        conn.exec_driver_sql(
            "INSERT INTO tasks (uuid, owner_id, name, profile, command, tags, labels, constants,"
            " resource_buckets, snapshot_interval, snapshot_config_version,"
            " upload_results_on_cancellation, include_unchanged_inputs, state, previous_state,"
            " state_transition_time, creation_date, end_date, exit_code, errors, results_count,"
            " executor, abort_requested, deleted, stdout_cursor, stderr_cursor) VALUES"
            " ('t-old', 1, 'old', 'shell', 'true', '[]', '{}', '[]', '[]', 0, 0, 0, 0,"
            " 'Success', 'UploadingResults', ?, ?, ?, 0, '[]', 1, 'local', 0, 0, 0, 0)",
            (now, now, now),
        )
        for i, (stream, offset, text) in enumerate(
            [("stdout", 0, "a\n"), ("stderr", 0, "e\n"), ("stdout", 2, "b\n")]
        ):
            conn.exec_driver_sql(
                "INSERT INTO log_chunks (id, task_uuid, stream, offset, data) "
                "VALUES (?, 't-old', ?, ?, ?)",
                (i + 1, stream, offset, text),
            )
        conn.exec_driver_sql(
            "INSERT INTO snapshots (id, task_uuid, kind, status, trigger_date, last_update_date,"
            " directory, size_to_upload, transferred_size, files_total, files_done, files_reused,"
            " files_read, bytes_total, bytes_stored, warnings, duration_ms, skipped_ticks) VALUES"
            " ('s-old', 't-old', 'periodic', 'Success', ?, ?, 'snapshots/x/', 0, 0, 2, 2, 1, 1,"
            " 10, 5, '[]', 30, 0)",
            (now, now),
        )
    database.upgrade()
    try:
        with database.session() as s:
            got = events.read_events(s, "t-old", 0, 100)
    finally:
        database.dispose()
    assert [e["type"] for e in got] == [
        "log", "log", "log", "snapshot.triggered", "snapshot.success", "state", "end",
    ]  # fmt: skip
    assert [(e["stream"], e["text"]) for e in got[:3]] == [
        ("stdout", "a\n"),
        ("stderr", "e\n"),
        ("stdout", "b\n"),
    ]
    assert got[4]["filesReused"] == 1 and got[4]["directory"] == "snapshots/x/"
    assert (got[5]["from"], got[5]["to"]) == ("UploadingResults", "Success")
    assert got[6]["state"] == "Success" and got[6]["exitCode"] == 0
