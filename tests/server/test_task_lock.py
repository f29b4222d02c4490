"""Decisions on a task's state are ordered by its lock, on SQLite and PostgreSQL (no server):
a transaction that locks a task waits for another that holds it and then reads what that one
wrote, so an agent cannot open a snapshot that the task's ending will never see."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from hpcsnap.agent.protocol import NewSnapshot, TaskState
from hpcsnap.server.api.agent import new_snapshot
from hpcsnap.server.db import Database, Snapshot
from hpcsnap.server.errors import Conflict
from hpcsnap.server.lifecycle import lock_task, set_state
from tests.server.helpers import new_task


def test_a_second_lock_waits_and_reads_what_the_first_wrote(db: Database) -> None:
    task_uuid = new_task(db)
    seen: list[str] = []
    locking = threading.Event()

    def second() -> None:
        with db.session() as s:
            locking.set()
            task = lock_task(s, task_uuid)
            assert task is not None
            seen.append(task.state)

    with db.session() as s:
        task = lock_task(s, task_uuid)
        assert task is not None
        other = threading.Thread(target=second)
        other.start()
        locking.wait(10)
        time.sleep(0.3)  # the second transaction is now reading, or waiting for the lock
        assert not seen, "the second transaction read the task while the first held it"
        set_state(s, task, TaskState.FAILURE, error="lost contact")
    other.join(30)
    assert seen == ["Failure"]


def test_an_agent_cannot_open_a_snapshot_of_an_ended_task(db: Database) -> None:
    """The agent's credential was checked before the task ended (so the request reached the
    handler); the handler itself refuses, and nothing is left open."""
    task_uuid = new_task(db)
    ctx: Any = SimpleNamespace(db=db)
    agent: Any = None
    opened = new_snapshot(task_uuid, NewSnapshot(kind="periodic"), agent, ctx)
    assert opened["kind"] == "periodic"
    with db.session() as s:
        task = lock_task(s, task_uuid)
        assert task is not None
        set_state(s, task, TaskState.SUCCESS)
    with pytest.raises(Conflict, match="has ended"):
        new_snapshot(task_uuid, NewSnapshot(kind="periodic"), agent, ctx)
    with db.session() as s:
        states = s.scalars(select(Snapshot.status).where(Snapshot.task_uuid == task_uuid)).all()
        assert states == ["Failure"]  # the one opened before the end was failed by it
        assert s.scalar(select(func.count()).select_from(Snapshot)) == 1
