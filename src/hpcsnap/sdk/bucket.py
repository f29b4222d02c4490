"""Buckets: per-user namespaces of keys holding inputs, results and snapshots."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from hpcsnap.sdk import _http, transfer
from hpcsnap.sdk.errors import MissingBucketError, TransferError
from hpcsnap.sdk.progress import ProgressHook, report

if TYPE_CHECKING:
    from hpcsnap.sdk.connection import Connection

__all__ = ["Bucket", "BucketFile"]


@dataclass(frozen=True)
class BucketFile:
    """One key of a bucket, as listed by the server."""

    key: str
    size: int
    #: Content hash (xxh3-128): equal hashes, equal contents.
    hash: str
    md5: str | None = None
    #: Modification time of the file it was made from (UTC).
    mtime: dt.datetime | None = None
    #: The snapshot that published this key, if one did.
    snapshot_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BucketFile:
        mtime = data.get("mtime")
        return cls(
            key=str(data["key"]),
            size=int(data.get("size") or 0),
            hash=str(data.get("hash") or ""),
            md5=data.get("md5"),
            mtime=dt.datetime.fromtimestamp(mtime, dt.UTC) if mtime is not None else None,
            snapshot_id=data.get("snapshotId"),
            raw=dict(data),
        )

    @property
    def is_directory(self) -> bool:
        return self.key.endswith("/")


def _remote_join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix.strip("/") else name


class Bucket:
    """A bucket of the connection's user, optionally seen through a key prefix.

    Creating the object sends nothing: use :meth:`Connection.create_bucket` (idempotent) or
    :meth:`Connection.retrieve_bucket` (checks it exists). As a task resource, a bucket with a
    prefix stages only the keys under it, with the prefix removed from their paths (see
    :meth:`with_prefix`).
    """

    def __init__(self, connection: Connection, name: str, *, prefix: str = "") -> None:
        self._connection = connection
        self._name = name
        self._prefix = prefix

    def __repr__(self) -> str:
        suffix = f", prefix={self._prefix!r}" if self._prefix else ""
        return f"Bucket({self._name!r}{suffix})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Bucket)
            and (other._name, other._prefix) == (self._name, self._prefix)
            and other._connection is self._connection
        )

    def __hash__(self) -> int:
        return hash((self._name, self._prefix))

    @property
    def name(self) -> str:
        return self._name

    @property
    def uuid(self) -> str:
        """The bucket's name (the qarnot SDK calls it ``uuid``)."""
        return self._name

    @property
    def prefix(self) -> str:
        """The key prefix this object is restricted to ('' for the whole bucket)."""
        return self._prefix

    @property
    def _http(self) -> _http.Http:
        return self._connection._http

    def with_prefix(self, prefix: str) -> Bucket:
        """The same bucket restricted to the keys under ``prefix``.

        Given as a task resource, only those keys are staged, at their path relative to the
        prefix: ``bucket.with_prefix("snapshots/2026-11-25T14-05-09.123Z/")`` puts that
        snapshot's files back at the top of ``/job``.
        """
        return Bucket(self._connection, self._name, prefix=prefix)

    # -------------------------------------------------------------------- listing

    def list_files(self, prefix: str = "") -> list[BucketFile]:
        """Every key under this object's prefix followed by ``prefix``, sorted by key."""
        data = self._http.json(
            "GET",
            _http.path("buckets", self._name, "files"),
            params={"prefix": self._prefix + prefix},
        )
        return [BucketFile.from_json(d) for d in data or []]

    def exists(self) -> bool:
        """Whether the bucket exists (and belongs to this user)."""
        return any(b.name == self._name for b in self._connection.buckets())

    # -------------------------------------------------------------------- uploads

    def add_file(
        self,
        local: str | os.PathLike[str],
        remote: str | None = None,
        *,
        progress: ProgressHook | None = None,
    ) -> BucketFile:
        """Upload the file ``local`` as key ``remote`` (default: its name), streamed."""
        source = Path(local)
        key = self._prefix + (remote if remote is not None else source.name)
        size = _size(source)
        record = transfer.upload(
            self._http, self._name, key, source, transfer.Meter(progress, size)
        )
        return BucketFile.from_json({"key": key, **record})

    def add_string(self, string: str | bytes, remote: str) -> BucketFile:
        """Store ``string`` (UTF-8 if text) as key ``remote``."""
        body = string.encode() if isinstance(string, str) else string
        record = self._http.json(
            "PUT", _http.path("buckets", self._name, "files", self._prefix + remote), content=body
        )
        return BucketFile.from_json({"key": self._prefix + remote, **(record or {})})

    def add_directory(
        self,
        local: str | os.PathLike[str],
        remote: str = "",
        *,
        progress: ProgressHook | None = None,
    ) -> list[BucketFile]:
        """Upload every file under directory ``local`` to keys under ``remote`` (paths kept).

        Symbolic links to directories are not followed; FIFOs, sockets and devices are skipped.
        """
        root = Path(local)
        if not root.is_dir():
            raise TransferError(f"{root} is not a directory")
        files = _walk(root)
        meter = transfer.Meter(progress, sum(_size(p) for p in files))
        report(progress, 0, meter.total, str(root))
        out = []
        for path in files:
            rel = path.relative_to(root).as_posix()
            key = self._prefix + _remote_join(remote, rel)
            record = transfer.upload(self._http, self._name, key, path, meter)
            out.append(BucketFile.from_json({"key": key, **record}))
        return out

    # -------------------------------------------------------------------- downloads

    def get_file(
        self,
        remote: str,
        local: str | os.PathLike[str] | None = None,
        *,
        progress: ProgressHook | None = None,
    ) -> Path:
        """Download key ``remote`` to ``local`` (default: its name in the current directory;
        an existing directory receives it under its name). Returns the file's path."""
        key = self._prefix + remote
        name = PurePosixPath(key).name
        dest = Path(local) if local is not None else Path(name)
        if dest.is_dir():
            dest = dest / name
        listed = [f for f in self.list_files(remote) if f.key == key]
        info = listed[0] if listed else None
        meter = transfer.Meter(progress, info.size if info else None)
        return transfer.download(
            self._http,
            self._name,
            key,
            dest,
            meter,
            md5=info.md5 if info else None,
            mtime=info.mtime.timestamp() if info and info.mtime else None,
        )

    def get_all_files(
        self,
        output_dir: str | os.PathLike[str],
        prefix: str | None = None,
        *,
        progress: ProgressHook | None = None,
    ) -> list[Path]:
        """Download every key under ``prefix`` into ``output_dir``, at its path relative to this
        object's prefix. Each distinct content is fetched once, then copied locally."""
        return download_files(
            self,
            self.list_files(prefix or ""),
            Path(output_dir),
            strip=self._prefix,
            progress=progress,
        )

    # -------------------------------------------------------------------- deletion

    def delete_file(self, remote: str) -> None:
        """Delete key ``remote``."""
        self._http.send("DELETE", _http.path("buckets", self._name, "files", self._prefix + remote))

    def delete(self) -> None:
        """Delete the bucket and every key in it (refused while an unfinished task uses it)."""
        self._http.send(
            "DELETE",
            _http.path("buckets", self._name),
            errors_map={404: MissingBucketError},
        )

    # -------------------------------------------------------------------- tasks

    def _resource_json(self) -> dict[str, Any]:
        ref: dict[str, Any] = {
            "bucketName": self._name,
            "filtering": {},
            "resourcesTransformation": {},
            "cacheTTLSec": None,
        }
        if self._prefix:
            ref["filtering"] = {"prefixFiltering": {"prefix": self._prefix}}
            ref["resourcesTransformation"] = {"stripPrefix": {"prefix": self._prefix}}
        return ref


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror}") from exc


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                files.append(path)
    return files


def download_files(
    bucket: Bucket,
    files: Iterable[BucketFile],
    output_dir: Path,
    *,
    strip: str = "",
    progress: ProgressHook | None = None,
) -> list[Path]:
    """Download ``files`` of ``bucket`` into ``output_dir`` (key minus ``strip``), fetching each
    distinct content once."""
    todo = [f for f in files if f.key.startswith(strip) and f.key != strip]
    output_dir.mkdir(parents=True, exist_ok=True)
    fetched: dict[str, Path] = {}
    unique = {f.hash or f.key: f.size for f in todo if not f.is_directory}
    meter = transfer.Meter(progress, sum(unique.values()))
    report(progress, 0, meter.total, str(output_dir))
    out = []
    for f in todo:
        dest = transfer.local_path(output_dir, f.key[len(strip) :])
        if f.is_directory:
            dest.mkdir(parents=True, exist_ok=True)
            continue
        mtime = f.mtime.timestamp() if f.mtime else None
        if f.hash and f.hash in fetched:
            transfer.copy(fetched[f.hash], dest, mtime=mtime)
        else:
            transfer.download(bucket._http, bucket.name, f.key, dest, meter, md5=f.md5, mtime=mtime)
            if f.hash:
                fetched[f.hash] = dest
        out.append(dest)
    return out
