"""File access confined beneath one directory, never following a symlink on the way.

Each path is resolved one component at a time from a descriptor of the root, with
``O_NOFOLLOW`` on every component: a directory swapped for a symlink while a capture runs cannot
lead it outside ``/job``. A path that no longer leads to what it named (vanished, or now a
symlink or a non-directory on the way) raises ``FileNotFoundError``, i.e. "vanished".

Files are opened ``O_NONBLOCK`` and checked with ``fstat``: a FIFO swapped in after the scan is
closed at once, never read, and the open itself cannot block. (A device node swapped in would
be opened, then refused; an unprivileged job cannot create one.)
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
_BAD = frozenset({b"", b".", b".."})
_T = TypeVar("_T")
#: How many directory descriptors a :class:`Beneath` keeps open: a tree written by many
#: processes at once spreads consecutive inodes over as many directories.
KEPT_DIRS = 256


# What :meth:`Beneath._at` runs in a directory: plain functions, not one closure per call (three
# calls per file read).
def _lstat_in(fd: int, name: bytes) -> os.stat_result:
    return os.stat(name, dir_fd=fd, follow_symlinks=False)


def _readlink_in(fd: int, name: bytes) -> bytes:
    return os.readlink(name, dir_fd=fd)


def _open_in(fd: int, name: bytes) -> int:
    return os.open(name, _FILE_FLAGS, dir_fd=fd)


def _vanished(rel: bytes, why: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, why, os.fsdecode(rel))


class Beneath:
    """Opens and stats relative paths beneath ``root`` (not thread-safe; close it after use)."""

    def __init__(self, root: Path) -> None:
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        #: Descriptors of the directories used last (relative path -> fd), oldest first: a
        #: capture reads files in inode order, which jumps between directories.
        self._dirs: OrderedDict[bytes, int] = OrderedDict()

    def __enter__(self) -> Beneath:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._dirs:
            os.close(self._dirs.popitem()[1])
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def _parent(self, rel: bytes) -> tuple[int, bytes]:
        """A descriptor of ``rel``'s directory (kept for the next calls) and its last name."""
        head, _, name = rel.rpartition(b"/")
        if name in _BAD or (rel[:1] == b"/"):
            raise ValueError(f"not a plain relative path: {rel!r}")
        if not head:
            return self._root_fd, name
        try:
            return self._dir(head), name
        except ValueError:
            raise ValueError(f"not a plain relative path: {rel!r}") from None
        except OSError as exc:
            if exc.errno in _GONE:
                raise _vanished(rel, "no longer a directory path beneath the root") from exc
            raise

    def _dir(self, head: bytes) -> int:
        fd = self._dirs.get(head)
        if fd is not None:
            self._dirs.move_to_end(head)
            return fd
        parent, _, last = head.rpartition(b"/")
        if last in _BAD:
            raise ValueError(head)
        fd = os.open(last, DIR_FLAGS, dir_fd=self._dir(parent) if parent else self._root_fd)
        self._dirs[head] = fd
        if len(self._dirs) > KEPT_DIRS:  # its parent was used already: it may go too
            os.close(self._dirs.popitem(last=False)[1])
        return fd

    def _at(self, rel: bytes, op: Callable[[int, bytes], _T]) -> _T:
        """``op(directory fd, name)`` for ``rel``. A kept directory may have been deleted or
        replaced since it was opened (a job recreating a directory): when ``rel`` is not found
        through kept descriptors, they are let go and the path is resolved afresh, once."""
        try:
            return op(*self._parent(rel))
        except FileNotFoundError:
            if not self._drop(rel.rpartition(b"/")[0]):
                raise
        return op(*self._parent(rel))

    def _drop(self, head: bytes) -> bool:
        """Let go of the kept descriptors of ``head`` and its ancestors; whether there were."""
        dropped = False
        while head:
            fd = self._dirs.pop(head, None)
            if fd is not None:
                os.close(fd)
                dropped = True
            head = head.rpartition(b"/")[0]
        return dropped

    def lstat(self, rel: bytes) -> os.stat_result:
        return self._at(rel, _lstat_in)

    def readlink(self, rel: bytes) -> bytes:
        try:
            return self._at(rel, _readlink_in)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise _vanished(rel, "no longer a symlink") from exc
            raise

    def open(self, rel: bytes) -> BinaryIO:
        """Open a regular file for reading; never opens a FIFO, socket or device, never blocks."""
        try:
            file_fd = self._at(rel, _open_in)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _vanished(rel, "no longer a regular file") from exc
            raise
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                raise _vanished(rel, "no longer a regular file")
            return open(file_fd, "rb", buffering=0)
        except BaseException:
            os.close(file_fd)
            raise
