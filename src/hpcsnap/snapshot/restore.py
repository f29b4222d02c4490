"""Recreate manifest entries under a directory: to stage a task's inputs into ``/job``, or to
restart a task from a snapshot.

Paths are checked (relative, no ``.``/``..`` or empty segment) and resolved one directory at a
time from a descriptor of ``dest`` with ``O_NOFOLLOW``, so no entry can be written through a
symlink, inside ``dest`` or out of it. An existing file or symlink at an entry's path is
replaced (the link itself, never its target). File content is checked against its digest as
it is written; permission bits (without setuid/setgid/sticky) and mtimes are restored.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path

import xxhash

from hpcsnap.blobstore.base import BlobError
from hpcsnap.blobstore.content import CHUNK, ContentStore
from hpcsnap.snapshot.beneath import DIR_FLAGS
from hpcsnap.snapshot.manifest import Entry

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(ValueError):
    """An entry whose path would escape ``dest`` or pass through a symlink."""


def _parts(entry: Entry) -> list[bytes]:
    raw = entry.raw_path
    parts = raw.split(b"/")
    if raw.startswith(b"/") or b"\0" in raw or any(p in (b"", b".", b"..") for p in parts):
        raise UnsafePath(f"refusing to restore {entry.path!r}: not a plain relative path")
    return parts


class _Dirs:
    """Directory descriptors under ``dest``, created as needed; the last one is kept open."""

    def __init__(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._last: tuple[list[bytes], int] | None = None

    def close(self) -> None:
        self._forget()
        os.close(self.root_fd)

    def _forget(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def get(self, parts: list[bytes], entry: Entry) -> int:
        if not parts:
            return self.root_fd
        if self._last is not None and self._last[0] == parts:
            return self._last[1]
        self._forget()
        fd = self.root_fd
        try:
            for part in parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath(
                            f"refusing to restore {entry.path!r}: {part!r} on its way is a "
                            "symlink or not a directory"
                        ) from exc
                    raise
                if fd != self.root_fd:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != self.root_fd:
                os.close(fd)
            raise
        self._last = (parts, fd)
        return fd


def _write_file(entry: Entry, store: ContentStore, dir_fd: int, name: bytes) -> None:
    if entry.digest is None:
        raise ValueError(f"file entry {entry.path!r} has no digest")
    fd = os.open(name, _NEW_FILE, 0o600, dir_fd=dir_fd)
    try:
        hasher = xxhash.xxh3_128()
        size = 0
        with store.open(entry.digest) as src, open(fd, "wb", closefd=False) as out:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if (hasher.hexdigest(), size) != (entry.digest, entry.size):
            raise BlobError(
                f"stored content of {entry.path!r} is corrupt: blob {entry.digest} holds "
                f"{size} bytes hashing to {hasher.hexdigest()}, expected {entry.size} bytes"
            )
        os.fchmod(fd, entry.mode & 0o777)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    except BaseException:
        os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)


def restore(entries: Iterable[Entry], store: ContentStore, dest: Path) -> None:
    """Write ``entries`` (files from ``store``, symlinks) under ``dest``, creating parents."""
    dirs = _Dirs(dest)
    try:
        for entry in entries:
            *parents, name = _parts(entry)
            dir_fd = dirs.get(parents, entry)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            if entry.kind == "symlink":
                os.symlink(entry.raw_link, name, dir_fd=dir_fd)
                os.utime(
                    name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd, follow_symlinks=False
                )
            else:
                _write_file(entry, store, dir_fd, name)
    finally:
        dirs.close()
