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
import operator
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from hpcsnap.snapshot.beneath import DIR_FLAGS
from hpcsnap.snapshot.manifest import decode_name

_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)

_Level = tuple[bytes | None, str, int, Iterator[os.DirEntry[str]]]
"""A directory being listed: its relative path as exact bytes (None while it is plain ASCII)
and as text (each ending with ``/`` but the root's, empty), its descriptor, its remaining
entries."""


_name = operator.attrgetter("name")

S_ISDIR, S_ISLNK, S_ISREG = stat.S_ISDIR, stat.S_ISLNK, stat.S_ISREG

Sighting = tuple[str, os.stat_result, bytes | None]
"""What :meth:`Scanner.runs` gives for each entry: a :class:`Found` as a plain tuple."""


class Found(NamedTuple):
    """A regular file or symlink: its text path (relative), ``lstat``, and its exact bytes
    when they are not simply the text's ASCII (``raw`` gives the bytes in every case)."""

    path: str
    stat: os.stat_result
    exact: bytes | None = None

    @property
    def raw(self) -> bytes:
        """The exact relative path as bytes."""
        return self.path.encode() if self.exact is None else self.exact


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
        for run in self.runs():
            for path, st, exact in run:
                yield Found(path, st, exact)

    def runs(self) -> Iterator[list[Sighting]]:
        """The same entries as iterating, in the same order, as lists of ``(path, stat,
        exact)`` (one per run of files between two subdirectories): a capture's hot loop,
        which a generator step and a :class:`Found` per file would slow by a tenth."""
        stack: list[_Level] = []
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with os.scandir(root_fd) as it:
                stack.append((None, "", root_fd, iter(sorted(it, key=_name))))
        except BaseException:
            os.close(root_fd)
            raise
        accept = self.accept
        try:
            while stack:
                raw_prefix, prefix, fd, entries = stack[-1]
                run: list[Sighting] = []
                for entry in entries:
                    # the hot loop of every snapshot: paths are nearly always ASCII, whose bytes
                    # are only built when needed (exact is None)
                    name = entry.name
                    if raw_prefix is None and name.isascii():
                        exact, path = None, prefix + name
                    else:
                        exact = (prefix.encode() if raw_prefix is None else raw_prefix) + (
                            os.fsencode(name)
                        )
                        path = decode_name(exact)[0]
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            self._descend(stack, fd, name, exact, path)
                            if stack[-1][2] != fd:
                                break  # continue in the new directory, then come back
                            continue
                        if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
                            self.skipped_special += 1
                            continue
                        if accept is not None and not accept(path):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        self._error(path.encode() if exact is None else exact, exc)
                        continue
                    if S_ISREG(st.st_mode) or S_ISLNK(st.st_mode):
                        run.append((path, st, exact))
                    elif not S_ISDIR(st.st_mode):
                        self.skipped_special += 1
                else:
                    stack.pop()
                    os.close(fd)
                if run:
                    yield run
        finally:
            for _, _, fd, _ in stack:
                os.close(fd)

    def _descend(
        self, stack: list[_Level], parent_fd: int, name: str, exact: bytes | None, path: str
    ) -> None:
        raw = path.encode() if exact is None else exact
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno not in _GONE:
                self._error(raw, exc)
            return
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=_name)
        except OSError as exc:
            os.close(fd)
            self._error(raw, exc)
            return
        stack.append((None if exact is None else exact + b"/", path + "/", fd, iter(entries)))
