"""Deleting a snapshot and verifying stored content (a snapshot against its manifest, results
against the bucket index)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import SnapshotStatus
from hpcsnap.blobstore import BlobError
from hpcsnap.server import bucketindex as bx
from hpcsnap.server import retention
from hpcsnap.server.api.deps import Ctx, User
from hpcsnap.server.api.tasks import get_task
from hpcsnap.server.auth import Caller
from hpcsnap.server.db import Object, Snapshot
from hpcsnap.server.errors import Conflict, NotFound
from hpcsnap.server.taskviews import snapshot_json
from hpcsnap.server.verify import Report, verify
from hpcsnap.snapshot.manifest import Manifest, ManifestError

router = APIRouter(tags=["snapshots"])


def _snapshot(session: Session, user: Caller, task_uuid: str, snapshot_id: str) -> Snapshot:
    get_task(session, user, task_uuid)
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or snap.task_uuid != task_uuid:
        raise NotFound(f"snapshot {snapshot_id} of task {task_uuid} not found")
    return snap


@router.delete("/tasks/{task_uuid}/snapshot/{snapshot_id}")
@router.delete("/tasks/{task_uuid}/snapshots/{snapshot_id}", include_in_schema=False)
def delete_snapshot(task_uuid: str, snapshot_id: str, ctx: Ctx, user: User) -> dict[str, Any]:
    """Delete one snapshot: its keys go at once, its content once nothing else references it.

    Any finished snapshot can be deleted on request, the newest one of a running task included
    (retention never deletes that one); one still in progress cannot (409).
    """
    with ctx.db.session() as session:
        snap = _snapshot(session, user, task_uuid, snapshot_id)
        retention.delete_snapshot(session, snap)
    store = ctx.store(user.user_id)
    freed = retention.collect_pending(ctx.db, store, user.user_id)
    with ctx.db.session() as session:
        snap = _snapshot(session, user, task_uuid, snapshot_id)
        return {**snapshot_json(snap), "freedBlobs": freed.blobs, "freedBytes": freed.bytes}


@router.post("/tasks/{task_uuid}/snapshot/{snapshot_id}/verify")
@router.post("/tasks/{task_uuid}/snapshots/{snapshot_id}/verify", include_in_schema=False)
def verify_snapshot(task_uuid: str, snapshot_id: str, ctx: Ctx, user: User) -> dict[str, Any]:
    """Re-read every blob of the snapshot's manifest and re-hash it (xxh3-128)."""
    with ctx.db.session() as session:
        snap = _snapshot(session, user, task_uuid, snapshot_id)
        if snap.deleted_at is not None:
            raise Conflict(f"snapshot {snapshot_id} was deleted: nothing to verify")
        if snap.status != SnapshotStatus.SUCCESS or snap.manifest_digest is None:
            raise Conflict(
                f"snapshot {snapshot_id} is {snap.status}: only a successful one holds files"
            )
        manifest_digest = snap.manifest_digest
    store = ctx.store(user.user_id)
    try:
        with store.open(manifest_digest) as src:
            manifest = Manifest.from_bytes(src.read())
    except (BlobError, ManifestError) as exc:
        report = Report(missing=[f"(manifest {manifest_digest}: {exc})"])
    else:
        report = verify(
            store,
            ((e.path, e.digest, e.size) for e in manifest.values() if e.digest is not None),
        )
    return {"snapshotId": snapshot_id, **report.as_json()}


@router.post("/tasks/{task_uuid}/results/verify")
def verify_results(task_uuid: str, ctx: Ctx, user: User) -> dict[str, Any]:
    """Re-hash every key of the task's result bucket that is not part of a snapshot."""
    with ctx.db.session() as session:
        task = get_task(session, user, task_uuid)
        if task.result_bucket is None:
            raise Conflict(f"task {task_uuid} has no result bucket")
        bucket = bx.get_bucket(session, user.user_id, task.result_bucket)
        rows = session.execute(
            select(Object.key, Object.digest, Object.size)
            .where(Object.bucket_id == bucket.id, Object.snapshot_id.is_(None))
            .order_by(Object.key)
        ).all()
    report = verify(ctx.store(user.user_id), ((k, d, s) for k, d, s in rows))
    return {"bucket": task.result_bucket, **report.as_json()}
