"""Deleting snapshots (on request or by a task's retention rule) and freeing their content.

Deleting a snapshot removes its keys from its bucket and sets ``deleted_at`` in one transaction;
the row stays (``GET`` of it says when it was deleted). Its content is collected afterwards:
every digest of its manifest that nothing else references is freed (:mod:`.blobrefs`), then its
manifest. Until that has finished the row keeps ``manifest_digest``, which marks the collection
as pending: :func:`collect_pending` finishes what a crash interrupted.

Retention (``snapshot_retention`` = N) keeps a task's last N successful periodic snapshots and
runs after each successful periodic commit (and when N changes). It never touches manual, job,
final or labelled snapshots, nor any snapshot that is not ``Success``, and never the task's
newest successful snapshot, so it only ever deletes a snapshot after newer ones succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import SnapshotStatus
from hpcsnap.blobstore import BlobError, ContentStore
from hpcsnap.server import blobrefs, events
from hpcsnap.server.db import Database, Object, Snapshot, Task
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.errors import BadRequest, Conflict
from hpcsnap.snapshot.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)


def check_retention(value: int | None, field: str = "snapshotRetention") -> int | None:
    """``None`` (keep every snapshot) or an integer >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(
            f"{field} must be a whole number of periodic snapshots to keep (at least 1), "
            f"or null to keep them all; got {value!r}"
        )
    return value


def delete_snapshot(session: Session, snap: Snapshot, *, reason: str = "request") -> None:
    """Remove the snapshot's keys and mark it deleted (its content is collected later); the
    task's event stream says why (``reason``: ``request`` or ``retention``)."""
    if snap.deleted_at is not None:
        raise Conflict(
            f"snapshot {snap.id} was already deleted ({snap.deleted_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if snap.status in (SnapshotStatus.TRIGGERED, SnapshotStatus.IN_PROGRESS):
        raise Conflict(
            f"snapshot {snap.id} is {snap.status}: wait until it has succeeded or failed, "
            "then delete it"
        )
    session.execute(delete(Object).where(Object.snapshot_id == snap.id))
    snap.deleted_at = utcnow()
    events.record_snapshot_deleted(session, snap, reason)


def expired(session: Session, task: Task) -> Sequence[Snapshot]:
    """The snapshots that the task's retention rule deletes now."""
    keep = task.snapshot_retention
    if keep is None:
        return []
    done = session.scalars(
        select(Snapshot)
        .where(
            Snapshot.task_uuid == task.uuid,
            Snapshot.status == SnapshotStatus.SUCCESS.value,
            Snapshot.deleted_at.is_(None),
        )
        .order_by(Snapshot.trigger_date, Snapshot.last_update_date)
    ).all()
    if not done:
        return []
    newest = done[-1]
    periodic = [s for s in done if s.kind == "periodic" and not s.label]
    return [s for s in periodic[: max(len(periodic) - keep, 0)] if s is not newest]


def apply_retention(db: Database, store: ContentStore, task_uuid: str) -> list[str]:
    """Delete what the task's retention rule expires, then collect; returns the ids deleted."""
    with db.session() as session:
        task = session.get(Task, task_uuid)
        if task is None:
            return []
        gone = []
        for snap in expired(session, task):
            delete_snapshot(session, snap, reason="retention")
            gone.append(snap.id)
        owner_id = task.owner_id
    if gone:
        log.info("retention of task %s deleted snapshots %s", task_uuid, ", ".join(gone))
        collect_pending(db, store, owner_id)
    return gone


def collect(db: Database, store: ContentStore, owner_id: int, snap_id: str) -> blobrefs.Freed:
    """Free the content of one deleted snapshot that nothing else references."""
    with db.session() as session:
        snap = session.get(Snapshot, snap_id)
        if snap is None or snap.deleted_at is None or snap.manifest_digest is None:
            return blobrefs.Freed()
        manifest_digest = snap.manifest_digest
    freed = blobrefs.Freed()
    try:
        with store.open(manifest_digest) as src:
            manifest = Manifest.from_bytes(src.read())
    except (BlobError, ManifestError) as exc:
        # Another collector finished first (it freed the manifest), or the manifest is damaged:
        # the keys are gone either way, what is left is for the full sweep.
        log.warning("snapshot %s: manifest %s unreadable (%s)", snap_id, manifest_digest, exc)
    else:
        digests = {e.digest for e in manifest.values() if e.digest is not None}
        freed.add(blobrefs.free(db, store, owner_id, digests))
    with db.session() as session:
        snap = session.get(Snapshot, snap_id)
        if snap is not None:
            snap.manifest_digest = None
    freed.add(blobrefs.free(db, store, owner_id, [manifest_digest]))
    return freed


def collect_pending(db: Database, store: ContentStore, owner_id: int) -> blobrefs.Freed:
    """Collect every deleted snapshot of the owner whose collection has not finished."""
    with db.session() as session:
        pending = session.scalars(
            select(Snapshot.id)
            .join(Task, Task.uuid == Snapshot.task_uuid)
            .where(
                Task.owner_id == owner_id,
                Snapshot.deleted_at.is_not(None),
                Snapshot.manifest_digest.is_not(None),
            )
            .order_by(Snapshot.deleted_at)
        ).all()
    freed = blobrefs.Freed()
    for snap_id in pending:
        freed.add(collect(db, store, owner_id, snap_id))
    return freed
