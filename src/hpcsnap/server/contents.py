"""What a snapshot or a task's final results hold: for comparisons and archive downloads, by the
API and the web interface alike.

A snapshot's contents come from its manifest (files and symlinks, with their modes) or, when it
has no readable manifest, from its keys. A task's results are the keys of its result bucket
outside snapshot directories (what ``download_results`` fetches): regular files whose mode is
unknown. When one side of a comparison knows no symlinks, the other side's are left out too, so
that a symlink is not reported as removed merely because bucket keys cannot hold one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import StreamingResponse

from hpcsnap.agent.protocol import TERMINAL_STATES
from hpcsnap.blobstore import BlobError, ContentStore
from hpcsnap.server import bucketindex as bx
from hpcsnap.server.archive import FORMATS, Member, tar_gz, zip_stream
from hpcsnap.server.db import Object, Snapshot, Task
from hpcsnap.server.errors import BadRequest, Conflict, NotFound
from hpcsnap.snapshot.diff import Diff, Item, Record, diff
from hpcsnap.snapshot.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)
RESULTS = "results"
#: Headers of every download: never sniffed, never cached by shared caches.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-cache",
}


@dataclass(frozen=True)
class Contents:
    """The records of a snapshot or of the results, and the names they go by."""

    #: A snapshot id, or ``results``.
    ref: str
    #: Relative path -> record.
    records: Mapping[str, Record]
    #: Whether symlinks are known (a manifest), not only regular files (bucket keys).
    links: bool
    #: The top directory of its archive (``2026-...Z_label``, ``<task>-results``).
    top: str
    #: The archive's file name without extension.
    stem: str

    def files_only(self) -> Mapping[str, Record]:
        if not self.links:
            return self.records
        return {p: r for p, r in self.records.items() if r.kind == "file"}


def slug(text: str) -> str:
    """``text`` as a safe part of a file name."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return s or "task"


def snapshot_name(directory: str | None) -> str:
    """``snapshots/2026-...Z_label/`` -> ``2026-...Z_label``."""
    return (directory or "").rstrip("/").rsplit("/", 1)[-1] or "snapshot"


def disposition(kind: str, filename: str) -> str:
    """A Content-Disposition header value safe for any file name."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;%' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- finding what to read -------------------------------------------------------------------------


def check_readable(snap: Snapshot) -> Snapshot:
    """``snap`` if its files can be read (400 naming why not otherwise)."""
    if snap.deleted_at is not None:
        raise BadRequest(f"snapshot {snap.id} was deleted ({snap.deleted_at:%Y-%m-%d %H:%M} UTC)")
    if snap.status != "Success":
        raise BadRequest(
            f"snapshot {snap.id} is {snap.status}: only a successful snapshot holds files"
        )
    return snap


def snapshot_of(session: Session, task: Task, snapshot_id: str) -> Snapshot:
    """A snapshot addressed under ``task`` (whose ownership the caller checked): 404 unless it
    is one of that task's."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or snap.task_uuid != task.uuid:
        raise NotFound(f"snapshot {snapshot_id} of task {task.uuid} not found")
    return snap


def other_snapshot(session: Session, task: Task, snapshot_id: str) -> Snapshot:
    """A snapshot named as the other side of a comparison with one of ``task``'s: 400 if it
    is a snapshot of another task of the same user, 404 if it is nobody's that they can see."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is not None and snap.task_uuid != task.uuid:
        owner = session.get(Task, snap.task_uuid)
        if owner is not None and owner.owner_id == task.owner_id and not owner.deleted:
            raise BadRequest(
                f"snapshot {snapshot_id} is a snapshot of task {owner.uuid}, not of task "
                f"{task.uuid}: compare snapshots of one task"
            )
        snap = None
    if snap is None:
        raise NotFound(f"snapshot {snapshot_id} of task {task.uuid} not found")
    return snap


def previous_success(session: Session, snap: Snapshot) -> Snapshot | None:
    """The task's latest successful snapshot taken before ``snap`` and not deleted."""
    return session.scalars(
        select(Snapshot)
        .where(
            Snapshot.task_uuid == snap.task_uuid,
            Snapshot.status == "Success",
            Snapshot.deleted_at.is_(None),
            Snapshot.trigger_date < snap.trigger_date,
        )
        .order_by(Snapshot.trigger_date.desc())
        .limit(1)
    ).first()


# -- reading it -----------------------------------------------------------------------------------


def _manifest(store: ContentStore, digest: str | None) -> Manifest | None:
    if not digest:
        return None
    try:
        with store.open(digest) as f:
            return Manifest.from_bytes(f.read())
    except (BlobError, ManifestError, ValueError):
        log.warning("manifest %s unreadable; using the snapshot's keys instead", digest)
        return None


def _items(rows: Iterator[Object] | Any, strip: str) -> dict[str, Record]:
    return {
        o.key[len(strip) :]: Item(o.key[len(strip) :], o.digest, o.size, o.mtime_ns)
        for o in rows
        if not o.key.endswith("/")
    }


def snapshot_contents(
    session: Session, store: ContentStore, task: Task, snap: Snapshot
) -> Contents:
    """What a (successful, checked) snapshot holds."""
    top = snapshot_name(snap.directory)
    stem = f"{slug(task.name)}-{top}"
    manifest = _manifest(store, snap.manifest_digest)
    if manifest is not None:
        return Contents(snap.id, manifest, True, top, stem)
    records: dict[str, Record] = {}
    if snap.bucket and snap.directory:
        try:
            bucket = bx.get_bucket(session, task.owner_id, snap.bucket)
        except NotFound:
            bucket = None
        if bucket is not None:
            records = _items(bx.list_objects(session, bucket, snap.directory), snap.directory)
    return Contents(snap.id, records, False, top, stem)


def check_results(task: Task) -> None:
    if task.state not in TERMINAL_STATES:
        raise Conflict(
            f"task {task.uuid} is {task.state}: its results are uploaded when it ends "
            "(compare or download a snapshot meanwhile)"
        )


def results_contents(session: Session, task: Task) -> Contents:
    """The final results of an ended task (409 while it runs)."""
    check_results(task)
    stem = f"{slug(task.name)}-results"
    records: dict[str, Record] = {}
    if task.result_bucket:
        try:
            bucket = bx.get_bucket(session, task.owner_id, task.result_bucket)
        except NotFound:
            bucket = None
        if bucket is not None:
            rows = session.scalars(
                select(Object)
                .where(Object.bucket_id == bucket.id, Object.snapshot_id.is_(None))
                .order_by(Object.key)
            )
            records = _items(rows, "")
    return Contents(RESULTS, records, False, stem, stem)


# -- comparing it ---------------------------------------------------------------------------------


def compare(old: Contents, new: Contents) -> Diff:
    """What changed from ``old`` to ``new``."""
    if old.links != new.links:
        return diff(old.files_only(), new.files_only())
    return diff(old.records, new.records)


def _change_json(c: Any) -> dict[str, Any]:
    record = c.new if c.new is not None else c.old
    out: dict[str, Any] = {"path": c.path, "kind": record.kind}
    if c.old is not None and c.new is not None:
        out.update(oldSize=c.old.size, newSize=c.new.size, oldHash=c.old.digest)
        out.update(newHash=c.new.digest)
        if c.old.kind != c.new.kind:
            out.update(oldKind=c.old.kind)
    else:
        out.update(size=record.size, hash=record.digest)
    if record.target is not None:
        out["target"] = record.target
    return out


def diff_json(d: Diff, old: str | None, new: str, *, limit: int | None = None) -> dict[str, Any]:
    """The API's answer: changes (each list cut at ``limit``) and totals (never cut)."""

    def cut(changes: tuple[Any, ...]) -> list[Any]:
        return list(changes if limit is None else changes[:limit])

    return {
        "from": old,
        "to": new,
        "added": [_change_json(c) for c in cut(d.added)],
        "removed": [_change_json(c) for c in cut(d.removed)],
        "modified": [_change_json(c) for c in cut(d.modified)],
        "modeChanged": [
            {"path": c.path, "oldMode": c.old.mode & 0o7777, "newMode": c.new.mode & 0o7777}
            for c in cut(d.mode_changed)
        ],
        "unchanged": d.unchanged,
        "truncated": limit is not None
        and any(len(x) > limit for x in (d.added, d.removed, d.modified, d.mode_changed)),
        "totals": {
            "added": len(d.added),
            "removed": len(d.removed),
            "modified": len(d.modified),
            "modeChanged": len(d.mode_changed),
            "unchanged": d.unchanged,
            "bytesAdded": d.bytes_added,
            "bytesRemoved": d.bytes_removed,
            "bytesModifiedOld": d.bytes_modified_old,
            "bytesModifiedNew": d.bytes_modified_new,
        },
    }


# -- downloading it -------------------------------------------------------------------------------


def members(contents: Contents) -> Iterator[Member]:
    for path, r in contents.records.items():
        mode = 0o644 if r.mode is None else r.mode & 0o7777
        if r.kind == "symlink":
            yield Member(f"{contents.top}/{path}", None, 0, r.mtime_ns, 0o777, r.target or "")
        else:
            yield Member(f"{contents.top}/{path}", r.digest, r.size, r.mtime_ns, mode)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadRequest(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def archive_response(store: ContentStore, contents: Contents, fmt: str) -> StreamingResponse:
    """The whole of ``contents`` as a streamed archive download."""
    extension, media_type = FORMATS[check_format(fmt)]
    write = zip_stream if fmt == "zip" else tar_gz

    def opener(digest: str) -> BinaryIO:
        try:
            return store.open(digest)
        except BlobError:
            log.exception("blob %s missing while archiving %s", digest, contents.ref)
            raise

    return StreamingResponse(
        write(members(contents), opener),
        media_type=media_type,
        headers={
            **DOWNLOAD_HEADERS,
            "Content-Disposition": disposition("attachment", contents.stem + extension),
        },
    )
