"""Task state transitions, in one place: timestamps, errors, credentials, dangling snapshots."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import TERMINAL_STATES, SnapshotStatus, TaskState
from hpcsnap.server.auth import revoke_agent_tokens
from hpcsnap.server.db import Snapshot, Task
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.db.session import hold_write_lock
from hpcsnap.server.events import EventType, record_end, record_snapshot, record_state


def lock_task(session: Session, task_uuid: str) -> Task | None:
    """The task, read under a lock that any other transaction deciding on its state must wait
    for until this one ends, so that what is decided from the state read here still holds when
    it is written: an ending, the opening of a snapshot, an abort. PostgreSQL locks the row
    (``SELECT ... FOR UPDATE``); SQLite the database (:func:`hold_write_lock`).
    """
    hold_write_lock(session)
    return session.get(Task, task_uuid, with_for_update=True, populate_existing=True)


def set_state(
    session: Session,
    task: Task,
    state: TaskState,
    *,
    error: str | None = None,
    exit_code: int | None = None,
) -> bool:
    """Move ``task`` to ``state``; a finished task never changes again. True if it moved.

    Each move is a ``state`` event of the task's stream; the move to a terminal state is
    followed by the failure events of its unfinished snapshots, then by the ``end`` event."""
    if task.state in TERMINAL_STATES:
        return False
    now = utcnow()
    if exit_code is not None:
        task.exit_code = exit_code
    if error:
        task.errors = [*task.errors, {"code": state.value, "message": error, "debug": ""}]
    if task.state == state:
        return False
    task.previous_state, task.previous_state_transition_time = (
        task.state,
        task.state_transition_time,
    )
    previous = task.state
    task.state, task.state_transition_time = state.value, now
    record_state(session, task, previous, message=error)
    if state == TaskState.EXECUTING and task.start_date is None:
        task.start_date = now
    if state in TERMINAL_STATES:
        task.end_date = now
        revoke_agent_tokens(session, task.uuid)
        fail_open_snapshots(session, task.uuid, f"task ended ({state.value}) before it completed")
        record_end(session, task)
    return True


def fail_open_snapshots(session: Session, task_uuid: str, message: str) -> int:
    """Mark every snapshot of the task that is not finished as ``Failure``."""
    open_states = [SnapshotStatus.TRIGGERED.value, SnapshotStatus.IN_PROGRESS.value]
    count = 0
    for snap in session.scalars(
        select(Snapshot).where(Snapshot.task_uuid == task_uuid, Snapshot.status.in_(open_states))
    ):
        snap.status = SnapshotStatus.FAILURE.value
        snap.error = message
        snap.last_update_date = utcnow()
        record_snapshot(session, snap, EventType.SNAPSHOT_FAILURE)
        count += 1
    return count
