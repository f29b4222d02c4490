"""Walk a directory tree the way a capture must: safely, cheaply, whatever is in it.

- Directories are opened relative to their parent's descriptor with ``O_NOFOLLOW``; symlinks
  (to files or directories, inside or outside the tree) are reported, never followed.
- Two-stage filtering: ``accept(path)`` runs on the name (the type comes from ``readdir``)
  before the one ``lstat`` of each entry; directories are always descended.
- FIFOs, sockets and devices are counted in :attr:`Scanner.skipped_special`, never opened.
- Entries that vanish (or change type) between listing and ``lstat`` are skipped silently;
  other ``OSError`` s (e.g. permission denied) go to ``on_error(path, exc)``.
- Any byte sequence in names works: ``raw`` holds the exact relative path, ``path`` its text
  form (see :func:`~hpcsnap.snapshot.manifest.decode_name`). Entries come in sorted order.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from hpcsnap.snapshot.beneath import DIR_FLAGS
from hpcsnap.snapshot.manifest import decode_name

_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)

_Level = tuple[bytes, int, Iterator[os.DirEntry[str]]]


class Found(NamedTuple):
    """A regular file or symlink: text path, exact bytes path (both relative), ``lstat``."""

    path: str
    raw: bytes
    stat: os.stat_result


class Scanner:
    """Iterate over the regular files and symlinks under ``root`` (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        accept: Callable[[str], bool] | None = None,
        on_error: Callable[[str, OSError], None] | None = None,
    ) -> None:
        self.root = root
        self.accept = accept
        self.on_error = on_error
        self.skipped_special = 0

    def _error(self, raw: bytes, exc: OSError) -> None:
        if self.on_error is None:
            raise exc
        self.on_error(decode_name(raw)[0], exc)

    def __iter__(self) -> Iterator[Found]:
        stack: list[_Level] = []
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with os.scandir(root_fd) as it:
                stack.append((b"", root_fd, iter(sorted(it, key=lambda e: e.name))))
        except BaseException:
            os.close(root_fd)
            raise
        try:
            while stack:
                prefix, fd, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    stack.pop()
                    os.close(fd)
                    continue
                raw = prefix + os.fsencode(entry.name)
                found = self._visit(stack, fd, entry, raw)
                if found is not None:
                    yield found
        finally:
            for _, fd, _ in stack:
                os.close(fd)

    def _visit(
        self, stack: list[_Level], fd: int, entry: os.DirEntry[str], raw: bytes
    ) -> Found | None:
        try:
            if entry.is_dir(follow_symlinks=False):
                self._descend(stack, fd, entry.name, raw)
                return None
            if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
                self.skipped_special += 1
                return None
            path = decode_name(raw)[0]
            if self.accept is not None and not self.accept(path):
                return None
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._error(raw, exc)
            return None
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            return Found(path, raw, st)
        if not stat.S_ISDIR(st.st_mode):
            self.skipped_special += 1
        return None

    def _descend(self, stack: list[_Level], parent_fd: int, name: str, raw: bytes) -> None:
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno not in _GONE:
                self._error(raw, exc)
            return
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            os.close(fd)
            self._error(raw, exc)
            return
        stack.append((raw + b"/", fd, iter(entries)))
