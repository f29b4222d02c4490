"""A task's event stream: what happened to it, in order, for ``GET /v1/tasks/{uuid}/events``.

Every change that users follow records its event in the transaction that makes the change, so an
event exists exactly when its change is committed:

- ``state``: ``from`` -> ``to`` (``message`` when the change carries an error, e.g. a Failure);
- ``snapshot.triggered``, ``snapshot.progress`` (at most every :data:`PROGRESS_EVERY` per
  snapshot), ``snapshot.success`` (files, bytes read/reused, duration, directory),
  ``snapshot.failure`` (error), ``snapshot.deleted`` (by retention or on request);
- ``log``: one chunk of stdout or stderr as the agent shipped it (the text stays in
  ``log_chunks``; the event points at it);
- ``end``: the last event of a task, recorded with its terminal state.

Ids are the table's (one sequence for all tasks): a task's ids only increase, so a client resumes
with the last id it saw. Writers lock the task's row (``FOR NO KEY UPDATE`` on PostgreSQL, which
does not conflict with foreign-key checks) before inserting, so two transactions never commit a
task's events out of id order; SQLite has one writer at a time anyway. After the commit, waiters
on :func:`wake_key` are woken (:mod:`hpcsnap.server.notify`).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcsnap.server import notify
from hpcsnap.server.db import LogChunk, Snapshot, Task, TaskEvent
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.taskviews import fmt_date_ms

#: The least time between two ``snapshot.progress`` events of one snapshot.
PROGRESS_EVERY = dt.timedelta(seconds=2)


class EventType(enum.StrEnum):
    """The ``type`` of an event (also its SSE ``event:`` name)."""

    STATE = "state"
    SNAPSHOT_TRIGGERED = "snapshot.triggered"
    SNAPSHOT_PROGRESS = "snapshot.progress"
    SNAPSHOT_SUCCESS = "snapshot.success"
    SNAPSHOT_FAILURE = "snapshot.failure"
    SNAPSHOT_DELETED = "snapshot.deleted"
    LOG = "log"
    END = "end"


def wake_key(task_uuid: str) -> str:
    """The :mod:`~hpcsnap.server.notify` key woken when a task's events are committed."""
    return f"events:{task_uuid}"


def record(
    session: Session,
    task_uuid: str,
    type_: EventType,
    data: dict[str, Any],
    *,
    snapshot_id: str | None = None,
    log_chunk_id: int | None = None,
) -> TaskEvent:
    """Add one event to the task's stream (committed with the caller's transaction)."""
    session.execute(select(Task.uuid).where(Task.uuid == task_uuid).with_for_update(key_share=True))
    ev = TaskEvent(
        task_uuid=task_uuid,
        type=type_.value,
        time=utcnow(),
        snapshot_id=snapshot_id,
        log_chunk_id=log_chunk_id,
        data=data,
    )
    session.add(ev)
    notify.wake_after_commit(session, wake_key(task_uuid))
    return ev


def record_state(
    session: Session, task: Task, previous: str | None, *, message: str | None = None
) -> None:
    data: dict[str, Any] = {"from": previous, "to": task.state}
    if message:
        data["message"] = message
    record(session, task.uuid, EventType.STATE, data)


def record_end(session: Session, task: Task) -> None:
    data = {"state": task.state, "exitCode": task.exit_code, "endDate": fmt_date_ms(task.end_date)}
    record(session, task.uuid, EventType.END, data)


def _snapshot_data(snap: Snapshot) -> dict[str, Any]:
    return {
        "snapshotId": snap.id,
        "kind": snap.kind,
        "label": snap.label,
        "status": snap.status,
        "directory": snap.directory,
    }


def record_snapshot(session: Session, snap: Snapshot, type_: EventType, **extra: Any) -> None:
    """A snapshot event: its identity and status, plus what ``type_`` is about."""
    data = _snapshot_data(snap)
    if type_ == EventType.SNAPSHOT_SUCCESS:
        data.update(
            filesTotal=snap.files_total,
            filesRead=snap.files_read,
            filesReused=snap.files_reused,
            bytesTotal=snap.bytes_total,
            bytesStored=snap.bytes_stored,
            durationMs=snap.duration_ms,
            warnings=snap.warnings,
        )
    elif type_ == EventType.SNAPSHOT_FAILURE:
        data["error"] = snap.error
    elif type_ == EventType.SNAPSHOT_PROGRESS:
        data.update(
            filesTotal=snap.files_total,
            filesDone=snap.files_done,
            sizeToUpload=snap.size_to_upload,
            transferredSize=snap.transferred_size,
        )
    data.update(extra)
    record(session, snap.task_uuid, type_, data, snapshot_id=snap.id)


def record_progress(session: Session, snap: Snapshot) -> bool:
    """A ``snapshot.progress`` event, unless this snapshot had an event within
    :data:`PROGRESS_EVERY`. True if one was recorded."""
    latest = session.scalar(
        select(func.max(TaskEvent.time)).where(TaskEvent.snapshot_id == snap.id)
    )
    if latest is not None and utcnow() - latest < PROGRESS_EVERY:
        return False
    record_snapshot(session, snap, EventType.SNAPSHOT_PROGRESS)
    return True


def record_snapshot_deleted(session: Session, snap: Snapshot, reason: str) -> None:
    """For retention (``reason="retention"``) or a deletion on request."""
    record_snapshot(session, snap, EventType.SNAPSHOT_DELETED, reason=reason)


def record_log(session: Session, chunk: LogChunk) -> None:
    """A ``log`` event for a chunk just added to the session."""
    session.flush()
    data = {"stream": chunk.stream, "offset": chunk.offset}
    record(session, chunk.task_uuid, EventType.LOG, data, log_chunk_id=chunk.id)


# ----------------------------------------------------------------------------- reading


def event_json(ev: TaskEvent, text: str | None = None) -> dict[str, Any]:
    """The API's shape: ``id``, ``type``, ``time`` and the event's own fields (``log``
    events: ``stream``, ``offset``, ``end`` and ``text``)."""
    out: dict[str, Any] = {"id": ev.id, "type": ev.type, "time": fmt_date_ms(ev.time), **ev.data}
    if ev.type == EventType.LOG:
        out["text"] = text or ""
        out["end"] = int(out.get("offset", 0)) + len(out["text"])
    return out


def read_events(session: Session, task_uuid: str, after: int, limit: int) -> list[dict[str, Any]]:
    """The task's events with an id above ``after``, oldest first, at most ``limit``."""
    rows = session.execute(
        select(TaskEvent, LogChunk.data)
        .outerjoin(LogChunk, TaskEvent.log_chunk_id == LogChunk.id)
        .where(TaskEvent.task_uuid == task_uuid, TaskEvent.id > after)
        .order_by(TaskEvent.id)
        .limit(limit)
    ).all()
    return [event_json(ev, text) for ev, text in rows]


def last_event_id(session: Session, task_uuid: str) -> int:
    """The id of the task's newest event (0 if it has none)."""
    found = session.scalar(select(func.max(TaskEvent.id)).where(TaskEvent.task_uuid == task_uuid))
    return int(found or 0)
