"""Restart from a snapshot: ``resumeFrom`` on a submission, and what the agent restores.

A task submitted with ``resumeFrom: {"taskUuid": T, "snapshotId": S | "latest"}`` starts with
its ``/job`` restored from snapshot S of the caller's task T (``"latest"``, or no id: T's newest
successful snapshot, chosen at submission). The resolved ids are stored on the task.

A snapshot holds the *outputs* of its task only; when T itself was resumed from a snapshot, the
files it restored are inputs of T, not in S. So the agent restores the whole line, oldest
first: the snapshot T resumed from (and so on up), then S on top.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import SnapshotStatus
from hpcsnap.server import blobrefs
from hpcsnap.server.auth import Caller
from hpcsnap.server.db import Snapshot, Task
from hpcsnap.server.errors import ApiError, Conflict, NotFound

LATEST = "latest"
#: At most this many snapshots in a line of restarts (a guard, not a practical limit).
MAX_LINE = 100


class ResumeFrom(BaseModel):
    """The ``resumeFrom`` object of a task submission."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task_uuid: str = Field(alias="taskUuid", min_length=1, max_length=64)
    snapshot_id: str | None = Field(default=None, alias="snapshotId", max_length=64)


def _usable(snap: Snapshot | None, task_uuid: str, snapshot_id: str) -> Snapshot:
    """The snapshot, if it can be restored; else the reason, as an API error."""
    if snap is None or snap.task_uuid != task_uuid:
        raise NotFound(f"resumeFrom: snapshot {snapshot_id} of task {task_uuid} not found")
    if snap.deleted_at is not None:
        raise Conflict(
            f"resumeFrom: snapshot {snapshot_id} of task {task_uuid} was deleted "
            f"({snap.deleted_at:%Y-%m-%d %H:%M:%S} UTC): choose another one"
        )
    if snap.status != SnapshotStatus.SUCCESS or not snap.manifest_digest:
        raise Conflict(
            f"resumeFrom: snapshot {snapshot_id} of task {task_uuid} is {snap.status}: only a "
            "successful snapshot can be restored"
        )
    return snap


def latest_snapshot(session: Session, task_uuid: str) -> Snapshot | None:
    """The task's newest successful snapshot that is not deleted."""
    return session.scalars(
        select(Snapshot)
        .where(
            Snapshot.task_uuid == task_uuid,
            Snapshot.status == SnapshotStatus.SUCCESS.value,
            Snapshot.deleted_at.is_(None),
        )
        .order_by(Snapshot.trigger_date.desc())
        .limit(1)
    ).first()


def resolve(session: Session, caller: Caller, ref: ResumeFrom) -> dict[str, Any]:
    """Check ``resumeFrom`` and fix its snapshot: ``{"taskUuid", "snapshotId"}``.

    404 when the task or snapshot is not the caller's; 409 when the snapshot cannot be restored
    (not successful, deleted, none successful for ``"latest"``). Takes the owner's GC lock
    shared: the line checked here cannot be freed (e.g. its task deleted meanwhile) before the
    new task, which keeps it (:func:`.blobrefs.resumable`), commits.
    """
    blobrefs.lock(session, caller.user_id, exclusive=False)
    source = session.get(Task, ref.task_uuid)
    if source is None or source.owner_id != caller.user_id or source.deleted:
        raise NotFound(f"resumeFrom: task {ref.task_uuid} not found")
    if ref.snapshot_id in (None, "", LATEST):
        snap = latest_snapshot(session, source.uuid)
        if snap is None:
            raise Conflict(
                f"resumeFrom: task {source.uuid} has no successful snapshot to resume from"
            )
    else:
        snap = _usable(session.get(Snapshot, ref.snapshot_id), source.uuid, ref.snapshot_id)
    resolved = {"taskUuid": source.uuid, "snapshotId": snap.id}
    manifests(session, resolved)  # the snapshots it builds on must be there too
    return resolved


def manifests(session: Session, resume_from: dict[str, Any] | None) -> list[str]:
    """The manifest digests to restore, oldest first (see the module docstring).

    Raises :class:`~hpcsnap.server.errors.ApiError` (409/404) naming the snapshot that is gone.
    """
    digests: list[str] = []
    ref = resume_from
    while ref:
        if len(digests) >= MAX_LINE:
            raise Conflict(f"resumeFrom: more than {MAX_LINE} restarts in a line")
        task_uuid, snapshot_id = str(ref["taskUuid"]), str(ref["snapshotId"])
        snap = _usable(session.get(Snapshot, snapshot_id), task_uuid, snapshot_id)
        assert snap.manifest_digest is not None
        digests.append(snap.manifest_digest)
        source = session.get(Task, task_uuid)
        ref = source.resume_from if source is not None else None
    digests.reverse()
    return digests


def agent_manifests(session: Session, task: Task) -> tuple[list[str], str | None]:
    """For the agent's spec: the digests, or why the restore cannot happen any more."""
    try:
        return manifests(session, task.resume_from), None
    except ApiError as exc:
        why = exc.message.removeprefix("resumeFrom: ")
        return [], f"cannot restore /job from the snapshot this task resumes from: {why}"
