"""What snapshots and results hold: the diff between two of them, and each as an archive.

A diff lists the paths *added*, *removed* and *modified* (content, kind or symlink target)
from an old side to a new one, with byte totals; a permission change alone is listed apart
(``mode_changed``) and an mtime change is not reported. The task's final results are bucket
keys: compared with a snapshot, they hold no symlinks, so the snapshot's are left out.

Archives (``.tar.gz`` or ``.zip``) are made by the server while they are sent and written here
to a temporary file renamed at the end (or to a file object you pass).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hpcsnap.sdk import _http
from hpcsnap.sdk.progress import ProgressHook, report

__all__ = ["FileChange", "ModeChange", "SnapshotDiff"]

#: The other side of a comparison that is the task's final results.
RESULTS = "results"
FORMATS = ("tar.gz", "zip")


@dataclass(frozen=True)
class FileChange:
    """One path that differs. ``old_size``/``new_size`` are None on the side where it does not
    exist; hashes are content hashes (None for a symlink)."""

    path: str
    #: ``file`` or ``symlink`` (its kind on the new side, or on the old side if removed).
    kind: str
    old_size: int | None
    new_size: int | None
    old_hash: str | None = None
    new_hash: str | None = None
    #: A symlink's target.
    target: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], side: str) -> FileChange:
        size, digest = data.get("size"), data.get("hash")
        old = (data.get("oldSize"), data.get("oldHash")) if side == "both" else (None, None)
        new = (data.get("newSize"), data.get("newHash")) if side == "both" else (None, None)
        if side == "old":
            old = (size, digest)
        elif side == "new":
            new = (size, digest)
        return cls(
            path=str(data["path"]),
            kind=str(data.get("kind") or "file"),
            old_size=old[0],
            new_size=new[0],
            old_hash=old[1],
            new_hash=new[1],
            target=data.get("target"),
        )


@dataclass(frozen=True)
class ModeChange:
    """A file whose content is the same but whose permission bits changed."""

    path: str
    old_mode: int
    new_mode: int


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from :attr:`old` (a snapshot id, ``"results"``, or None: nothing, so that
    everything is added) to :attr:`new`. Each list is sorted by path."""

    old: str | None
    new: str
    added: tuple[FileChange, ...]
    removed: tuple[FileChange, ...]
    modified: tuple[FileChange, ...]
    mode_changed: tuple[ModeChange, ...]
    #: Paths whose content is the same on both sides.
    unchanged: int
    #: Bytes of the files added and removed, and of the modified ones before and after.
    bytes_added: int
    bytes_removed: int
    bytes_modified_old: int
    bytes_modified_new: int
    #: True when the server cut the lists at the ``limit`` asked (totals are never cut).
    truncated: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        """True when no content changed (permission changes aside)."""
        return not (self.added or self.removed or self.modified)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotDiff:
        totals = data.get("totals") or {}
        return cls(
            old=data.get("from"),
            new=str(data.get("to")),
            added=tuple(FileChange.from_json(c, "new") for c in data.get("added") or ()),
            removed=tuple(FileChange.from_json(c, "old") for c in data.get("removed") or ()),
            modified=tuple(FileChange.from_json(c, "both") for c in data.get("modified") or ()),
            mode_changed=tuple(
                ModeChange(str(c["path"]), int(c["oldMode"]), int(c["newMode"]))
                for c in data.get("modeChanged") or ()
            ),
            unchanged=int(data.get("unchanged") or 0),
            bytes_added=int(totals.get("bytesAdded") or 0),
            bytes_removed=int(totals.get("bytesRemoved") or 0),
            bytes_modified_old=int(totals.get("bytesModifiedOld") or 0),
            bytes_modified_new=int(totals.get("bytesModifiedNew") or 0),
            truncated=bool(data.get("truncated")),
            raw=dict(data),
        )


def compare(
    http: _http.Http, task_uuid: str, old: str | None, new: str, *, limit: int | None = None
) -> SnapshotDiff:
    """The diff from ``old`` to ``new`` (snapshot ids or :data:`RESULTS`; ``old`` None: the
    snapshot before ``new``)."""
    params: dict[str, Any] = {} if limit is None else {"limit": limit}
    if new == RESULTS:
        if old is None or old == RESULTS:
            raise ValueError("compare the results with a snapshot")
        url = _http.path("tasks", task_uuid, "results", "diff")
        params["against"] = old
    else:
        url = _http.path("tasks", task_uuid, "snapshots", new, "diff")
        if old is not None:
            params["against"] = old
    return SnapshotDiff.from_json(http.json("GET", url, params=params))


def archive_format(dest: str | os.PathLike[str] | BinaryIO, fmt: str | None) -> str:
    """``fmt`` if given, else what the destination's name ends with (``.zip``, ``.tar.gz``,
    ``.tgz``); ``tar.gz`` for a file object."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"archive format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    if isinstance(dest, str | os.PathLike):
        name = os.fspath(dest).lower()
        if name.endswith(".zip"):
            return "zip"
        if not name.endswith((".tar.gz", ".tgz")):
            raise ValueError(f"{os.fspath(dest)}: name it .tar.gz or .zip, or pass format=")
    return "tar.gz"


def download_archive(
    http: _http.Http,
    url: str,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    fmt: str | None,
    progress: ProgressHook | None,
) -> Path | None:
    """Stream the archive at ``url`` into ``dest``: a path (written whole or not at all;
    returned) or a binary file object (returns None)."""
    fmt = archive_format(dest, fmt)
    if not isinstance(dest, str | os.PathLike):
        _copy(http, url, fmt, dest, progress, os.fspath(url))
        return None
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy(http, url, fmt, out, progress, path.name)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _copy(
    http: _http.Http,
    url: str,
    fmt: str,
    out: BinaryIO,
    progress: ProgressHook | None,
    description: str,
) -> None:
    done = 0
    report(progress, 0, None, description)
    with http.stream(url, params={"format": fmt}) as resp:
        for chunk in resp.iter_bytes():
            out.write(chunk)
            done += len(chunk)
            report(progress, done, None, description)
