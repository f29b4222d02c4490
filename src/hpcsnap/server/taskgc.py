"""Freeing the snapshot content of a deleted task.

A deleted task's snapshots stay as rows (and as keys of its result bucket, which is kept), but
their manifests no longer hold anything unless a task that is not deleted may still restore
them (:func:`.blobrefs.resumable`). :func:`collect_task` hands every manifest of the task's
live snapshots (and of deleted tasks' snapshots on its own ``resume_from`` line, which it may
have been the last to need), and every entry they list, to the collector
(:func:`.blobrefs.free`), which frees, under the owner's GC lock, what no key, needed manifest
or resume line still holds. What the result bucket's keys hold goes when the bucket is deleted;
what a crash leaves behind goes at the full sweep (:mod:`.sweep`), which applies the same
rules.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.blobstore import BlobError, ContentStore
from hpcsnap.server import blobrefs
from hpcsnap.server.db import Database, Snapshot, Task
from hpcsnap.snapshot.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)


def collect_task(db: Database, store: ContentStore, task_uuid: str) -> blobrefs.Freed:
    """Free what only the snapshots of the deleted task ``task_uuid`` held, and those of
    deleted tasks on its ``resume_from`` line that no other task may restore any more (nothing
    if the task is not deleted)."""
    with db.session() as session:
        task = session.get(Task, task_uuid)
        if task is None or not task.deleted:
            return blobrefs.Freed()
        owner_id = task.owner_id
        needed = blobrefs.resumable(session, owner_id)
        line = _line(session, task.resume_from)
        manifests = [
            digest
            for snap_id, digest in session.execute(
                select(Snapshot.id, Snapshot.manifest_digest)
                .join(Task, Task.uuid == Snapshot.task_uuid)
                .where(
                    Task.deleted.is_(True),
                    (Snapshot.task_uuid == task_uuid) | Snapshot.id.in_(line),
                    Snapshot.deleted_at.is_(None),
                    Snapshot.manifest_digest.is_not(None),
                )
            ).tuples()
            if digest and snap_id not in needed  # still restorable: nothing of it can go
        ]
    candidates = set(manifests)
    for digest in dict.fromkeys(manifests):
        try:
            with store.open(digest) as src:
                manifest = Manifest.from_bytes(src.read())
        except (BlobError, ManifestError) as exc:
            log.warning("task %s: manifest %s unreadable (%s)", task_uuid, digest, exc)
            continue
        candidates.update(e.digest for e in manifest.values() if e.digest is not None)
    freed = blobrefs.free(db, store, owner_id, candidates)
    if freed.blobs:
        log.info(
            "deleted task %s: %d blob(s) freed (%d bytes)", task_uuid, freed.blobs, freed.bytes
        )
    return freed


def _line(session: Session, ref: dict[str, Any] | None) -> list[str]:
    """The snapshot ids of a ``resume_from`` line, newest first."""
    ids: list[str] = []
    while ref and str(ref.get("snapshotId")) not in ids:
        ids.append(str(ref.get("snapshotId")))
        source = session.get(Task, str(ref.get("taskUuid")))
        ref = source.resume_from if source is not None else None
    return ids
