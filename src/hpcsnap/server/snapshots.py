"""Creating snapshot records and publishing finished captures into buckets."""

from __future__ import annotations

import datetime as dt
import re
import uuid as uuidlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import SnapshotCommit, SnapshotRequest, SnapshotStatus
from hpcsnap.blobstore import ContentStore
from hpcsnap.server import blobrefs
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.db import Bucket, Snapshot, Task
from hpcsnap.server.db.models import utcnow
from hpcsnap.server.errors import BadRequest, Conflict, NotFound
from hpcsnap.server.events import EventType, record_snapshot

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_label(label: str | None) -> str | None:
    if label is None or label == "":
        return None
    if not LABEL.match(label):
        raise BadRequest(
            f"label {label!r}: 1-64 characters among letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return label


def directory_name(prefix: str, when: dt.datetime, label: str | None) -> str:
    """``<prefix>snapshots/<UTC time with ms>[_<label>]/``."""
    stamp = when.strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3] + "Z"
    return f"{prefix}snapshots/{stamp}{'_' + label if label else ''}/"


def create_snapshot(
    session: Session,
    task: Task,
    *,
    kind: str,
    label: str | None = None,
    whitelist: str | None = None,
    blacklist: str | None = None,
    bucket: str | None = None,
    bucket_prefix: str | None = None,
    status: SnapshotStatus = SnapshotStatus.TRIGGERED,
) -> Snapshot:
    """A new snapshot record with its effective settings: a filter given here replaces the
    task's filter of the same kind, one left out falls back to it."""
    label = check_label(label)
    bucket_name = bucket or task.snapshot_bucket or task.result_bucket
    if bucket_name is None:
        raise Conflict("the task has no result bucket to hold snapshots")
    bx.ensure_bucket(session, task.owner_id, bx.check_bucket_name(bucket_name))
    prefix = bx.check_prefix(bucket_prefix if bucket_prefix is not None else task.snapshot_prefix)
    now = utcnow()
    directory = directory_name(prefix, now, label)
    clash = session.scalar(
        select(Snapshot.id).where(Snapshot.task_uuid == task.uuid, Snapshot.directory == directory)
    )
    if clash:
        directory = directory[:-1] + f"-{uuidlib.uuid4().hex[:6]}/"
    snap = Snapshot(
        id=str(uuidlib.uuid4()),
        task_uuid=task.uuid,
        kind=kind,
        label=label,
        status=status.value,
        trigger_date=now,
        last_update_date=now,
        whitelist=whitelist if whitelist is not None else task.snapshot_whitelist,
        blacklist=blacklist if blacklist is not None else task.snapshot_blacklist,
        bucket=bucket_name,
        bucket_prefix=prefix or None,
        directory=directory,
    )
    session.add(snap)
    session.flush()
    record_snapshot(session, snap, EventType.SNAPSHOT_TRIGGERED)
    return snap


def as_request(snap: Snapshot) -> SnapshotRequest:
    assert snap.directory is not None
    return SnapshotRequest(
        id=snap.id,
        kind=snap.kind,  # type: ignore[arg-type]
        label=snap.label,
        whitelist=snap.whitelist,
        blacklist=snap.blacklist,
        bucket=snap.bucket,
        bucket_prefix=snap.bucket_prefix,
        directory=snap.directory,
    )


ABANDONED = (
    "abandoned: its agent went on to a later snapshot without finishing this one (a request "
    "or a report was lost, e.g. while the server restarted)"
)


def fail_abandoned(session: Session, snap: Snapshot) -> int:
    """Fail the snapshots of ``snap``'s task still ``InProgress`` that were triggered before it.

    An agent captures one snapshot at a time, in the order it was given them, so when it works
    on ``snap`` an earlier one still open will never finish: the server committed it but its
    answer was lost (the server was killed), or the agent's last report of it was lost. Without
    this it would stay open until the task ends.
    """
    count = 0
    for other in session.scalars(
        select(Snapshot).where(
            Snapshot.task_uuid == snap.task_uuid,
            Snapshot.status == SnapshotStatus.IN_PROGRESS.value,
            Snapshot.trigger_date < snap.trigger_date,
            Snapshot.id != snap.id,
        )
    ):
        other.status = SnapshotStatus.FAILURE.value
        other.error = ABANDONED
        other.last_update_date = utcnow()
        count += 1
    return count


class BaseChanged(Conflict):
    """A delta commit's parent no longer holds the keys the agent knows it published."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"{why}: send every key of this snapshot instead of the changes since its parent",
            details={"baseChanged": True},
        )


def _base(session: Session, task: Task, body: SnapshotCommit) -> tuple[Bucket, Snapshot]:
    """The bucket and record of a delta commit's parent, checked before anything is locked or
    written: a parent deleted since is refused first, so the agent's full commit that follows
    is the one that learns which of its blobs were freed with it."""
    base = session.get(Snapshot, body.parent_id) if body.parent_id else None
    if (
        base is None
        or base.task_uuid != task.uuid
        or base.status != SnapshotStatus.SUCCESS
        or base.deleted_at is not None
        or base.bucket is None
        or base.directory is None
    ):
        raise BaseChanged(f"parent snapshot {body.parent_id} is not a published snapshot")
    try:
        return bx.get_bucket(session, task.owner_id, base.bucket), base
    except NotFound:
        raise BaseChanged(f"the bucket of parent snapshot {base.id} is gone") from None


def _copy_base(
    session: Session,
    base: tuple[Bucket, Snapshot],
    snap: Snapshot,
    bucket: Bucket,
    body: SnapshotCommit,
) -> None:
    """The parent's keys under ``snap``'s directory, minus ``body.removed``: the unchanged part
    of a delta commit. Its rows of the parent are the very keys it published (deleting or
    overwriting one of them drops the parent's tag), and the GC lock taken by
    :func:`blobrefs.check_stored` keeps their content stored while they are copied."""
    source, parent = base
    assert snap.directory is not None and parent.directory is not None
    copied = bx.copy_snapshot_keys(
        session, source, parent.directory, parent.id, bucket, snap.directory, snap.id
    )
    if copied != body.base_files:
        raise BaseChanged(
            f"parent snapshot {parent.id} holds {copied} of the {body.base_files} keys it published"
        )
    removed = sorted(set(body.removed))
    gone = bx.delete_snapshot_keys(session, bucket, snap.directory, removed, snap.id)
    if gone != len(removed):
        raise BaseChanged(f"{len(removed) - gone} removed path(s) were not in the parent")


def commit_snapshot(
    session: Session, store: ContentStore, task: Task, snap: Snapshot, body: SnapshotCommit
) -> None:
    """Publish every key of a finished capture and mark it ``Success``, in one transaction
    (a delta commit: the parent's keys, minus those removed, plus the new and changed ones).

    The same commit sent again (its answer was lost in a server restart) changes nothing.
    Every blob it references must still be stored (:func:`blobrefs.check_stored`): a digest
    the agent reused from an earlier capture may have been freed since (409, and the agent
    stores it again)."""
    if snap.status == SnapshotStatus.SUCCESS and snap.manifest_digest == body.manifest_digest:
        return
    if snap.status not in (SnapshotStatus.TRIGGERED, SnapshotStatus.IN_PROGRESS):
        raise Conflict(f"snapshot {snap.id} is already {snap.status}")
    base = _base(session, task, body) if body.base_files is not None else None
    fail_abandoned(session, snap)
    digests = {f.digest for f in body.files}
    digests.add(body.manifest_digest)
    # a delta's files are the changed ones, whose content is seldom the parent's
    likely_in = body.parent_id if base is None else None
    blobrefs.check_stored(session, store, task.owner_id, digests, likely_in=likely_in)
    assert snap.bucket is not None and snap.directory is not None
    bucket = bx.ensure_bucket(session, task.owner_id, snap.bucket)
    if base is not None:
        _copy_base(session, base, snap, bucket, body)
    bx.publish(session, bucket, snap.directory, body.files, snapshot_id=snap.id, replace=True)
    snap.status = SnapshotStatus.SUCCESS.value
    snap.last_update_date = utcnow()
    snap.manifest_digest = body.manifest_digest
    snap.parent_id = body.parent_id
    snap.warnings = body.warnings
    snap.size_to_upload = body.size_to_upload
    snap.transferred_size = body.size_to_upload
    snap.files_total = body.files_total
    snap.files_done = body.files_total
    snap.files_reused = body.files_reused
    snap.files_read = body.files_read
    snap.bytes_total = body.bytes_total
    snap.bytes_stored = body.bytes_stored
    snap.duration_ms = body.duration_ms
    snap.skipped_ticks = body.skipped_ticks
    task.results_count += 1
    record_snapshot(session, snap, EventType.SNAPSHOT_SUCCESS)
