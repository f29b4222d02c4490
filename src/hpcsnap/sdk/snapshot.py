"""Snapshots: one capture of a task's /job, stored as a directory of keys in a bucket."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hpcsnap.sdk import _http, contents
from hpcsnap.sdk.bucket import Bucket, BucketFile, download_files
from hpcsnap.sdk.errors import SnapshotNotReadyError
from hpcsnap.sdk.progress import ProgressHook
from hpcsnap.sdk.states import SnapshotStatus

if TYPE_CHECKING:
    from hpcsnap.sdk.connection import Connection
    from hpcsnap.sdk.contents import SnapshotDiff

__all__ = ["Snapshot", "Verification"]


def parse_date(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's record as the server last reported it (fetch again for news).

    Its files are the keys under :attr:`directory` in the bucket :attr:`bucket_name`, all
    published at once when :attr:`status` becomes ``Success``.
    """

    id: str
    task_uuid: str
    status: SnapshotStatus
    #: ``periodic``, ``manual``, ``job`` (from inside the task) or ``final``.
    kind: str = "manual"
    label: str | None = None
    trigger_date: dt.datetime | None = None
    last_update_date: dt.datetime | None = None
    whitelist: str | None = None
    blacklist: str | None = None
    bucket_name: str | None = None
    bucket_prefix: str | None = None
    #: ``<prefix>snapshots/<UTC time>[_<label>]/``: where its files are in the bucket.
    directory: str = ""
    #: Bytes of the files it holds, and bytes processed so far (a progress measure).
    size_to_upload: int = 0
    transferred_size: int = 0
    files_total: int = 0
    files_reused: int = 0
    files_read: int = 0
    bytes_stored: int = 0
    duration_ms: int | None = None
    parent_id: str | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    #: When it was deleted (its files are gone), or None.
    deleted_at: dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _connection: Connection | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], connection: Connection | None = None) -> Snapshot:
        config = data.get("snapshotConfig") or {}
        duration = data.get("durationMs")
        return cls(
            id=str(data["id"]),
            task_uuid=str(data.get("taskUuid") or ""),
            status=SnapshotStatus.parse(data.get("status")),
            kind=str(data.get("kind") or "manual"),
            label=data.get("label"),
            trigger_date=parse_date(data.get("triggerDate")),
            last_update_date=parse_date(data.get("lastUpdateDate")),
            whitelist=config.get("whitelist"),
            blacklist=config.get("blacklist"),
            bucket_name=config.get("bucket"),
            bucket_prefix=config.get("bucketPrefix"),
            directory=str(data.get("directory") or ""),
            size_to_upload=_int(data.get("sizeToUpload")),
            transferred_size=_int(data.get("transferredSize")),
            files_total=_int(data.get("filesTotal")),
            files_reused=_int(data.get("filesReused")),
            files_read=_int(data.get("filesRead")),
            bytes_stored=_int(data.get("bytesStored")),
            duration_ms=int(duration) if isinstance(duration, int | float) else None,
            parent_id=data.get("parentId"),
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
            error=data.get("error"),
            deleted_at=parse_date(data.get("deletedAt")),
            raw=dict(data),
            _connection=connection,
        )

    @property
    def is_completed(self) -> bool:
        """True once it succeeded or failed."""
        return self.status.is_completed

    @property
    def succeeded(self) -> bool:
        return self.status == SnapshotStatus.SUCCESS

    @property
    def failed(self) -> bool:
        return self.status == SnapshotStatus.FAILURE

    def _bucket(self) -> Bucket:
        if self._connection is None or not self.bucket_name:
            raise SnapshotNotReadyError(f"snapshot {self.id} is not bound to a connection")
        if self.deleted_at is not None:
            raise SnapshotNotReadyError(f"snapshot {self.id} was deleted: its files are gone")
        if not self.succeeded:
            why = f"failed: {self.error}" if self.failed else f"is {self.status.value}"
            hint = "" if self.failed else "; wait for it with task.wait_snapshot(id) first"
            raise SnapshotNotReadyError(f"snapshot {self.id} has no files: it {why}{hint}")
        return Bucket(self._connection, self.bucket_name, prefix=self.directory)

    def as_resource(self) -> Bucket:
        """This snapshot's files as a task resource: staged at the top of the new task's /job
        (the snapshot directory is removed from their paths). The way to restart from it."""
        return self._bucket()

    def files(self) -> list[BucketFile]:
        """The keys of this snapshot (full keys, under :attr:`directory`)."""
        return self._bucket().list_files()

    def download(
        self, output_dir: str | os.PathLike[str], *, progress: ProgressHook | None = None
    ) -> list[Path]:
        """Download its files into ``output_dir``, at their path relative to /job."""
        bucket = self._bucket()
        return download_files(
            bucket, bucket.list_files(), Path(output_dir), strip=self.directory, progress=progress
        )

    def diff(self, other: Snapshot | str, *, limit: int | None = None) -> SnapshotDiff:
        """What changed from this snapshot to ``other``: another snapshot of the task (or its
        id), or ``"results"`` (the task's final results). ``limit`` cuts each list."""
        self._bucket()  # bound and successful
        assert self._connection is not None
        new = other.id if isinstance(other, Snapshot) else other
        return contents.compare(self._connection._http, self.task_uuid, self.id, new, limit=limit)

    def download_archive(
        self,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        format: str | None = None,
        progress: ProgressHook | None = None,
    ) -> Path | None:
        """Download the whole snapshot as one archive (``format`` ``tar.gz`` or ``zip``; by
        default what ``dest`` ends with), its files under a directory named after it.

        ``dest`` is a path (written whole or not at all, and returned) or a binary file."""
        self._bucket()
        assert self._connection is not None
        url = _http.path("tasks", self.task_uuid, "snapshots", self.id, "archive")
        http = self._connection._http
        return contents.download_archive(http, url, dest, fmt=format, progress=progress)


@dataclass(frozen=True)
class Verification:
    """The outcome of re-reading stored content and re-hashing it against what it should be
    (:meth:`Task.verify_snapshot`, :meth:`Task.verify_results`)."""

    #: Files checked, and bytes re-read (content shared by several files is read once).
    files: int
    bytes: int
    #: Paths (snapshot) or keys (results) whose content is absent, or whose bytes differ.
    missing: tuple[str, ...] = ()
    corrupted: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupted

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        return cls(
            files=_int(data.get("files")),
            bytes=_int(data.get("bytes")),
            missing=tuple(str(p) for p in data.get("missing") or ()),
            corrupted=tuple(str(p) for p in data.get("corrupted") or ()),
            raw=dict(data),
        )
