"""One capture of the outputs of a directory into a content store, returning its manifest.

Phase 1 walks the tree (``lstat`` only) and sorts each regular file or symlink that passes the
filter into one of:

- an unchanged *input*: in ``baseline`` (what was staged before the command started) with the
  same kind, size and mtime: left out, unless ``include_unchanged_inputs``;
- *unchanged since the parent snapshot*: same kind, size, mtime, ctime and inode as in
  ``parent``: its entry is reused without opening the file or asking the store anything;
- *to read*: everything else. Symlinks are read (``readlink``) at once; files are counted in
  ``size_to_upload``, and the hard limit is checked before any of them is read.

Phase 2 reads each file to read: ``lstat``, :meth:`ContentStore.put_file` (hash, then upload
if the content is new, re-hashed on the way), ``lstat`` again. A file that changed meanwhile is
read again, up to ``max_tries`` times, then reported *unstable* and left out of the manifest: a
torn copy is never recorded. When only the path changed, not the file read (``fstat`` of the
open file, when opened and at the end of its read, match), such as a file replaced by a rename,
what was read is a whole copy: kept, not read again. A file that vanished is left out silently. New
contents that would wait for the disk are written by the store's background writer while the
next files are read (:meth:`ContentStore.writing_behind`); every one is in place before the
manifest is returned, and the store is flushed, so the caller can publish it at once.

:func:`store_ahead` does phase 1 and 2 for the new files left alone for a while, without making
a snapshot and without flushing the store: the next capture finds them unchanged since the
entries it returns, and does not read them again.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

from hpcsnap.blobstore.base import ContentChanged
from hpcsnap.blobstore.content import ContentStore, tap
from hpcsnap.snapshot.beneath import Beneath
from hpcsnap.snapshot.filters import PathFilter
from hpcsnap.snapshot.limiter import RateLimiter
from hpcsnap.snapshot.manifest import STAMP, Entry, Kind, Manifest, decode_name
from hpcsnap.snapshot.scan import Found, Scanner

PROGRESS_INTERVAL = 0.2
"""Minimum seconds between two progress reports (the last one is always sent)."""

READ_AHEAD = 16 << 20
"""Bytes of the next files to read that the kernel is asked to fetch ahead of the reader."""
_ADVICE_STEP = 4 << 20


@dataclass(frozen=True, slots=True)
class Progress:
    """``transferred`` bytes out of ``size_to_upload``; files done (reused ones included)."""

    size_to_upload: int
    transferred: int
    files_done: int
    files_total: int


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """The manifest and what it took.

    ``files_total`` = ``files_reused`` + ``files_read`` entries in the manifest;
    ``bytes_total`` its file bytes; ``size_to_upload`` the bytes of the files phase 1 chose to
    read; ``bytes_read`` the bytes actually read from disk (hash and upload passes, retries);
    ``bytes_stored`` the new content written to the store; ``skipped_special`` FIFOs, sockets
    and devices seen (never opened).
    """

    manifest: Manifest
    warnings: tuple[str, ...]
    unstable: tuple[str, ...]
    files_total: int
    files_reused: int
    files_read: int
    size_to_upload: int
    bytes_total: int
    bytes_read: int
    bytes_stored: int
    skipped_special: int


class SnapshotTooLarge(Exception):
    """The outputs exceed the hard limit; raised before any file is read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"snapshot would be {format_size(size)}, over the hard limit of {format_size(limit)}: "
            "narrow the snapshot filters (whitelist/blacklist) or raise the limit"
        )
        self.size = size
        self.limit = limit


def format_size(n: int) -> str:
    """``n`` bytes in binary units, e.g. ``1.5 GiB``."""
    size, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def _lookup(entries: Mapping[str, Entry]) -> Callable[[str], Entry | None]:
    """``entries.get``, straight to the dict's own method for a :class:`Manifest`."""
    if isinstance(entries, Manifest):
        return entries.lookup
    return entries.get


def _held_still(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino) == (
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
        after.st_ino,
    )


class _Pending(NamedTuple):
    """A file to read: only what reading it needs (a full ``os.stat_result`` per file would
    cost hundreds of bytes each on trees of 100,000 files)."""

    path: str
    raw: bytes
    size: int
    ino: int


class _ReadAhead:
    """Keeps the disk busy with the next files while the current one is hashed and stored.

    The kernel's own readahead works within one file, so on a cold cache a tree of many small
    files is read one seek and one wait at a time. This asks for the next ``window`` bytes of
    the files still to read (``POSIX_FADV_WILLNEED``, which only starts the reads), in the
    order they will be read. Advice only: any failure is ignored, and it opens files the way
    the capture does (beneath the root, never following a symlink, never a FIFO).
    """

    def __init__(self, tree: Beneath, files: list[_Pending], window: int) -> None:
        self._tree = tree  # the reader's: its directories are the ones read next
        self._files = files
        self._window = window
        self._index = self._offset = self._advised = 0
        self._fd = -1

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def advance(self, consumed: int) -> None:
        """The reader has read ``consumed`` bytes of the files so far: advise up to the window."""
        while self._advised - consumed < self._window and self._index < len(self._files):
            found = self._files[self._index]
            step = min(found.size - self._offset, _ADVICE_STEP)
            if step > 0 and self._advise(found.raw, step):
                self._offset += step
                self._advised += step
                if self._offset < found.size:
                    continue
            self._advised += found.size - self._offset
            self._drop()
            self._index += 1
            self._offset = 0

    def _advise(self, raw: bytes, length: int) -> bool:
        try:
            if self._fd < 0:
                with self._tree.open(raw) as src:
                    self._fd = os.dup(src.fileno())
            os.posix_fadvise(self._fd, self._offset, length, os.POSIX_FADV_WILLNEED)
        except (OSError, ValueError):
            return False
        return True


def _entry(
    found: Found | _Pending,
    st: os.stat_result,
    kind: Kind,
    *,
    digest: str | None = None,
    target_raw: bytes | None = None,
) -> Entry:
    target, raw_target = decode_name(target_raw) if target_raw is not None else (None, None)
    return Entry(
        path=found.path,
        kind=kind,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        ino=st.st_ino,
        mode=st.st_mode,
        digest=digest,
        target=target,
        raw=decode_name(found.raw)[1],
        raw_target=raw_target,
    )


class _Run:
    """The state of one capture."""

    def __init__(
        self,
        root: Path,
        store: ContentStore,
        tree: Beneath,
        opener: Callable[[bytes], BinaryIO],
        limiter: RateLimiter | None,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.root = root
        self.store = store
        self.tree = tree
        self.read_ahead: _ReadAhead | None = None
        self.opener = opener
        self.limiter = limiter
        self.progress = progress
        self.slots: dict[str, Entry | None] = {}
        self.to_read: list[_Pending] = []
        self.warnings: list[str] = []
        self.unstable: list[str] = []
        self.files_reused = self.files_read = self.skipped_special = 0
        self.size_to_upload = self.planned_bytes = 0
        self.bytes_read = self.bytes_stored = self.bytes_total = 0
        self.written = False
        self.files_done = self.files_total = 0
        self.transferred = self.current_read = self.current_size = 0
        self.last_report = 0.0
        #: ``fstat`` of the file last opened for reading (by :meth:`open_metered`), as it was
        #: opened and as its read reached the end (``None``: not known).
        self.read_start: os.stat_result | None = None
        self.read_end: os.stat_result | None = None

    def warn(self, path: str, why: str) -> None:
        self.warnings.append(f"{path}: {why}")

    def plan(
        self,
        root: Path,
        path_filter: PathFilter,
        parent: Mapping[str, Entry],
        baseline: Mapping[str, Entry],
        settled_before: int | None = None,
    ) -> None:
        """Sort what the scan finds (see the module docstring). With ``settled_before``
        (nanoseconds since the epoch), plan only new files (not in ``parent``) left alone
        since then (ctime, which any write or metadata change moves): nothing else is read,
        and symlinks are left out."""
        scanner = Scanner(
            root,
            accept=path_filter.accepts if path_filter.whitelist or path_filter.blacklist else None,
            on_error=lambda path, exc: self.warn(path, f"not captured: {exc.strerror or exc}"),
        )
        # The hot loop of every snapshot (10^5 files is common): plain locals, no calls for
        # a file unchanged since the parent (see Entry.stamp).
        slots, to_read = self.slots, self.to_read
        staged_of = _lookup(baseline) if baseline else None
        old_of = _lookup(parent)
        pack_stamp = STAMP.pack
        reused = to_upload = kept = 0
        for run in scanner.runs():
            for path, st, exact in run:
                if staged_of is not None:
                    staged = staged_of(path)
                    if (
                        staged is not None
                        and staged.size == st.st_size
                        and staged.mtime_ns == st.st_mtime_ns
                        and staged.kind == ("symlink" if stat.S_ISLNK(st.st_mode) else "file")
                    ):
                        continue
                if path in slots:
                    self.warn(path, "not captured: its escaped name is also another file's name")
                    continue
                try:
                    now: bytes | None = pack_stamp(
                        st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode
                    )
                except struct.error:  # a time past 2262: see Entry.stamp
                    now = None
                old = old_of(path)
                if old is not None and old.stamp == now:
                    slots[path] = old
                    reused += 1
                    if old.kind == "file":
                        kept += st.st_size
                elif settled_before is not None and (
                    old is not None or st.st_ctime_ns > settled_before or stat.S_ISLNK(st.st_mode)
                ):
                    continue
                elif stat.S_ISLNK(st.st_mode):
                    self.read_link(Found(path, st, exact))
                else:
                    slots[path] = None
                    raw = path.encode() if exact is None else exact
                    to_read.append(_Pending(path, raw, st.st_size, st.st_ino))
                    to_upload += st.st_size
        self.files_reused += reused
        self.bytes_total += kept
        self.planned_bytes += kept + to_upload
        self.size_to_upload += to_upload
        self.skipped_special = scanner.skipped_special

    def read_link(self, found: Found) -> None:
        try:
            target = self.tree.readlink(found.raw)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.warn(found.path, f"not captured: {exc.strerror or exc}")
            return
        self.slots[found.path] = _entry(found, found.stat, "symlink", target_raw=target)
        self.files_read += 1

    def check_limits(self, soft_limit: int | None, hard_limit: int | None) -> None:
        if hard_limit is not None and self.planned_bytes > hard_limit:
            raise SnapshotTooLarge(self.planned_bytes, hard_limit)
        if soft_limit is not None and self.planned_bytes > soft_limit:
            self.warnings.append(
                f"snapshot is {format_size(self.planned_bytes)}, over the soft limit of "
                f"{format_size(soft_limit)}: consider narrowing the snapshot filters"
            )

    def read_all(self, max_tries: int, stop: Callable[[], bool] | None = None) -> None:
        """Read every file planned (``stop`` is asked before each one)."""
        self.files_done = self.files_reused + self.files_read
        self.files_total = self.files_done + len(self.to_read)
        self.report(force=True)
        # Inode order follows the disk layout far better than name order: on a cold cache this
        # turns scattered seeks into mostly sequential reads (the manifest keeps scan order).
        self.to_read.sort(key=lambda f: f.ino)
        self.read_ahead = _ReadAhead(self.tree, self.to_read, READ_AHEAD)
        try:
            self.read_each(max_tries, stop)
        finally:
            self.read_ahead.close()
            self.read_ahead = None

    def read_each(self, max_tries: int, stop: Callable[[], bool] | None) -> None:
        assert self.read_ahead is not None
        for found in self.to_read:
            if stop is not None and stop():
                return
            self.read_ahead.advance(self.transferred)
            self.current_read, self.current_size = 0, found.size
            entry = self.read_file(found, max_tries)
            if entry is None:
                del self.slots[found.path]
            else:
                self.slots[found.path] = entry
                self.files_read += 1
                self.bytes_total += entry.size
            self.transferred += found.size
            self.current_read = self.current_size = 0
            self.files_done += 1
            self.report()

    def read_file(self, found: _Pending, max_tries: int) -> Entry | None:
        for _ in range(max_tries):
            try:
                before = self.tree.lstat(found.raw)
                if not stat.S_ISREG(before.st_mode):
                    return None
                stored = self.store.put_file(found.raw, opener=self.open_metered)
                after = self.tree.lstat(found.raw)
                start, end = self.read_start, self.read_end
            except ContentChanged:
                continue
            except FileNotFoundError:
                return None
            except OSError as exc:
                self.warn(found.path, f"not captured: {exc.strerror or exc}")
                return None
            # The path held still; or only the path changed, not the file read, from its
            # opening to the end of its read (one replaced by a rename): a whole copy either
            # way, and reading the new file instead would leave what was stored unreferenced.
            held = after if _held_still(before, after) else None
            if held is None and start and end and _held_still(start, end):
                held = end
            if held is not None and stored.size == held.st_size:
                if stored.written:
                    self.written = True
                    self.bytes_stored += stored.size
                return _entry(found, held, "file", digest=stored.digest)
        self.unstable.append(found.path)
        self.warn(found.path, f"unstable: changed while being read ({max_tries} tries), left out")
        return None

    def open_metered(self, rel: bytes) -> BinaryIO:
        src = self.opener(rel)
        self.read_start = self.read_end = None
        # not a file descriptor (io.UnsupportedOperation is an OSError): the lstats decide
        with contextlib.suppress(OSError, ValueError):
            self.read_start = os.fstat(src.fileno())

        def at_end() -> None:
            if self.read_start is not None:
                self.read_end = os.fstat(src.fileno())

        return tap(src, self.on_data, at_end)

    def on_data(self, chunk: bytes) -> None:
        self.bytes_read += len(chunk)
        self.current_read += len(chunk)
        if self.read_ahead is not None:
            self.read_ahead.advance(self.transferred + self.current_read)
        if self.limiter is not None:
            self.limiter.consume(len(chunk))
        self.report()

    def report(self, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self.last_report < PROGRESS_INTERVAL:
            return
        self.last_report = now
        transferred = self.transferred + min(self.current_read, self.current_size)
        self.progress(Progress(self.size_to_upload, transferred, self.files_done, self.files_total))

    def result(self) -> CaptureResult:
        # every slot holds an entry by now: each file to read got one or was dropped
        manifest = Manifest.adopt(cast(dict[str, Entry], self.slots))
        return CaptureResult(
            manifest=manifest,
            warnings=tuple(self.warnings),
            unstable=tuple(self.unstable),
            files_total=len(manifest),
            files_reused=self.files_reused,
            files_read=self.files_read,
            size_to_upload=self.size_to_upload,
            bytes_total=self.bytes_total,
            bytes_read=self.bytes_read,
            bytes_stored=self.bytes_stored,
            skipped_special=self.skipped_special,
        )


def capture(
    root: Path,
    store: ContentStore,
    *,
    path_filter: PathFilter,
    parent: Mapping[str, Entry] | None = None,
    baseline: Manifest | None = None,
    include_unchanged_inputs: bool = False,
    progress: Callable[[Progress], None] | None = None,
    soft_limit: int | None = None,
    hard_limit: int | None = None,
    max_tries: int = 3,
    max_bytes_per_sec: int | None = None,
    opener: Callable[[bytes], BinaryIO] | None = None,
    flush: bool = True,
) -> CaptureResult:
    """Capture the outputs under ``root`` into ``store`` (see the module docstring).

    ``parent`` maps paths to entries whose content is already stored (the previous successful
    snapshot's manifest, or the union of several: no copy is made), ``baseline`` is the
    manifest of the inputs staged before the command started. ``progress`` is called at most every
    :data:`PROGRESS_INTERVAL` seconds and once at the end. ``max_bytes_per_sec`` caps the read
    rate. ``opener`` opens a file from its path relative to ``root`` (bytes); the default never
    follows a symlink on the way and never opens anything but a regular file. Without
    ``flush``, the content stored is not made durable: the caller flushes the store before it
    publishes the result (one sync for the content and the manifest).
    Raises :class:`SnapshotTooLarge`, or :class:`~hpcsnap.snapshot.filters.FilterError` when a
    filter is too slow.
    """
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1, not {max_tries}")
    limiter = None if max_bytes_per_sec is None else RateLimiter(max_bytes_per_sec)
    with Beneath(root) as tree, store.writing_behind() as behind:
        run = _Run(root, behind, tree, opener or tree.open, limiter, progress)
        run.plan(
            root,
            path_filter,
            parent or {},
            {} if include_unchanged_inputs or baseline is None else baseline,
        )
        run.check_limits(soft_limit, hard_limit)
        run.read_all(max_tries)
    if run.written and flush:
        store.flush()
    run.report(force=True)
    return run.result()


def store_ahead(
    root: Path,
    store: ContentStore,
    *,
    path_filter: PathFilter,
    parent: Mapping[str, Entry],
    settled_before: int,
    stop: Callable[[], bool],
    baseline: Manifest | None = None,
    hard_limit: int | None = None,
) -> dict[str, Entry]:
    """Store, without making a snapshot, the new files under ``root`` (paths not in
    ``parent``) that were left alone since ``settled_before`` (ctime, in nanoseconds since the
    epoch); return their entries, which a later capture given them as part of its parent
    reuses without reading the files again, if they have not changed since. Files still being
    written, and files rewritten in place since ``parent`` stored them, are left to that
    capture: a path is stored ahead once, however often it is rewritten (a file that grows by
    a little every few seconds is not copied whole each time).

    ``stop`` is asked before each file; once it answers true, what was stored so far is
    returned. The store is not flushed: whoever publishes a manifest that uses these entries
    flushes it first (as :func:`capture`'s callers do). Nothing is stored when the files to
    read would take the snapshot past ``hard_limit`` (:class:`SnapshotTooLarge`).
    """
    with Beneath(root) as tree, store.writing_behind() as behind:
        run = _Run(root, behind, tree, tree.open, None, None)
        run.plan(root, path_filter, parent, baseline or {}, settled_before=settled_before)
        run.check_limits(None, hard_limit)
        run.read_all(max_tries=1, stop=stop)
    slots = run.slots
    return {f.path: e for f in run.to_read if (e := slots.get(f.path)) is not None}
