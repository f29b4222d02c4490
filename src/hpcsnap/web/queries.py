"""Database reads and the one write the web pages need beyond what the API modules offer.

Ownership always goes through the API's own checks (``get_task``, ``bucketindex.get_bucket``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import TERMINAL_STATES
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.api.tasks import check_interval, check_regex, read_log
from hpcsnap.server.config import Settings
from hpcsnap.server.db import Bucket, LogChunk, Object, Snapshot, Task
from hpcsnap.server.errors import Conflict, NotFound

#: Characters of each log shown when a task page opens.
LOG_TAIL = 64 * 1024
#: Most tasks listed on the task list.
LIST_LIMIT = 200


@dataclass(frozen=True)
class TaskRow:
    task: Task
    snapshots: int


def task_rows(session: Session, owner_id: int, state: str | None) -> list[TaskRow]:
    query = select(Task).where(Task.owner_id == owner_id, Task.deleted.is_(False))
    if state:
        query = query.where(Task.state == state)
    tasks = session.scalars(query.order_by(Task.creation_date.desc()).limit(LIST_LIMIT)).all()
    counts: dict[str, int] = {}
    if tasks:
        counts = dict(
            session.execute(  # type: ignore[arg-type]
                select(Snapshot.task_uuid, func.count())
                .where(Snapshot.task_uuid.in_([t.uuid for t in tasks]))
                .group_by(Snapshot.task_uuid)
            ).all()
        )
    return [TaskRow(t, counts.get(t.uuid, 0)) for t in tasks]


def snapshots_of(session: Session, task_uuid: str) -> Sequence[Snapshot]:
    return session.scalars(
        select(Snapshot)
        .where(Snapshot.task_uuid == task_uuid, Snapshot.deleted_at.is_(None))
        .order_by(Snapshot.trigger_date)
    ).all()


def snapshot_of(session: Session, task: Task, snapshot_id: str) -> Snapshot:
    """A snapshot of ``task`` (whose ownership the caller checked with ``get_task``)."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or snap.task_uuid != task.uuid:
        raise NotFound(f"snapshot {snapshot_id} of task {task.uuid} not found")
    return snap


def snapshot_files(session: Session, owner_id: int, snap: Snapshot) -> Sequence[Object]:
    """The keys under the snapshot's directory in its bucket (empty until it succeeds)."""
    if snap.status != "Success" or not snap.bucket or not snap.directory:
        return []
    try:
        bucket = bx.get_bucket(session, owner_id, snap.bucket)
    except NotFound:
        return []
    return bx.list_objects(session, bucket, snap.directory)


def log_end(session: Session, task_uuid: str, stream: str) -> int:
    end = session.scalar(
        select(func.max(LogChunk.offset + func.length(LogChunk.data))).where(
            LogChunk.task_uuid == task_uuid, LogChunk.stream == stream
        )
    )
    return int(end or 0)


def log_tail(session: Session, task_uuid: str, stream: str) -> tuple[str, int, bool]:
    """The last :data:`LOG_TAIL` characters of a stream, the offset after them, and whether
    earlier output was left out."""
    start = max(0, log_end(session, task_uuid, stream) - LOG_TAIL)
    text, end = read_log(session, task_uuid, stream, start)
    return text, end, start > 0


def log_since(session: Session, task_uuid: str, stream: str, offset: int) -> tuple[str, int]:
    end = log_end(session, task_uuid, stream)
    if end - offset > LOG_TAIL:  # far behind: skip ahead rather than send megabytes
        offset = end - LOG_TAIL
    return read_log(session, task_uuid, stream, max(0, offset))


def bucket_names(session: Session, owner_id: int) -> list[str]:
    query = select(Bucket.name).where(Bucket.owner_id == owner_id).order_by(Bucket.name)
    return list(session.scalars(query))


def set_periodic(
    session: Session,
    settings: Settings,
    task: Task,
    *,
    interval: int,
    whitelist: str | None,
    blacklist: str | None,
) -> None:
    """What ``POST /v1/tasks/{uuid}/snapshot/periodic`` does: new interval (0 stops) and, when
    given (not None), new filters (``""`` clears one); the agent notices the new version."""
    check_interval(settings, interval)
    check_regex("whitelist", whitelist)
    check_regex("blacklist", blacklist)
    if task.state in TERMINAL_STATES:
        raise Conflict(f"task {task.uuid} has ended ({task.state})")
    task.snapshot_interval = interval
    if whitelist is not None:
        task.snapshot_whitelist = whitelist or None
    if blacklist is not None:
        task.snapshot_blacklist = blacklist or None
    task.snapshot_config_version += 1
