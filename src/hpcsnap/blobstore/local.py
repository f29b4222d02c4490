"""The local-directory backend: one file per object under ``<root>/objects/<key>``.

A put writes a temporary file under ``<root>/tmp/`` and renames it over the object, so a reader
sees the old object or the whole new one. Puts are not synced one by one: :meth:`flush` syncs
the store's file system once (``syncfs``, or ``sync`` where that is missing).

Large content is written with ``O_DIRECT`` where the file system allows it (see
:data:`DIRECT_MIN`; the last partial block of an object always goes through the page cache): a
snapshot of gigabytes then neither fills the page cache with copies nobody reads soon, evicting
the job's own files, nor pays for allocating that cache, which on virtual machines can cost more
than the disk write itself (2 GiB with ``dd``: 1.1 s direct, 6 s buffered, on the 2-core VM of
bench/README.md). That holds while the content comes from memory, as a job's fresh outputs
do. While the store's disk is busy reading (a capture of a tree that is not in memory), a
direct write would wait there between two reads, so writes then go through the page cache and
the one ``syncfs`` writes them back in large batches (:class:`_Route`; P1 cold: 0.93-0.99x
``cp -a`` buffered, 1.2-1.3x direct). Smaller objects, written through the page cache, give
their pages back once written back while the content comes from memory (:class:`_Recycler`),
so the next ones reuse them instead of allocating new ones. Within
:meth:`LocalBackend.writing_behind` (a capture), the contents to be written around the cache
are written by a background thread, in order, while the caller reads the next files
(:class:`_Behind`).

A failure of the store's own file system (full, read-only, I/O error) is raised as a
:class:`~hpcsnap.blobstore.base.BlobError` naming the store (``StorageFull`` when it is full;
``TransientBlobError`` when it may pass), never as a bare ``OSError``: the caller can then tell
it from a failure to read the source, whose errors propagate unchanged. A failed put leaves no
temporary file behind; what a killed writer left is deleted the next time the store is opened
(by the server at start-up, by each agent) once it is an hour old.

A key cannot also be the "directory" of another key (``a`` and ``a/b``), a limitation of file
systems that content-addressed keys never hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import itertools
import mmap
import os
import queue
import resource
import secrets
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from hpcsnap.blobstore.base import (
    BlobError,
    BlobNotFound,
    Listed,
    StorageFull,
    TransientBlobError,
    check_key,
)

_CHUNK = 1 << 20
#: Writes of at least this many whole blocks go around the page cache (``O_DIRECT``); smaller
#: ones through it, where they are written back asynchronously: a direct write waits for the
#: disk, which for files of a few blocks costs more than the cache saves.
DIRECT_MIN = 1 << 18
#: Every this many bytes staged, the backend looks again at where its content comes from.
ROUTE_EVERY = 64 << 20
#: Objects written through the page cache while their content comes from memory are dropped
#: from it a generation later: after this many bytes, or :data:`RECYCLE_FILES` objects.
RECYCLE_EVERY = 32 << 20
#: At most this many objects per generation. Two generations are held open, and a process
#: has only so many file descriptors: an eighth of its limit per generation at most.
RECYCLE_FILES = 256
#: Contents handed to the background writer of :meth:`LocalBackend.writing_behind` and not
#: written yet, at most: one being written while the next is read. More would only hold memory.
BEHIND_DEPTH = 2
#: Offsets, lengths and buffer addresses of ``O_DIRECT`` writes are multiples of this.
_ALIGN = 4096
#: Age (seconds since last written) at which a temporary file is a killed put's leftover.
STALE_AFTER = 3600.0
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TAG = secrets.token_hex(4)
_COUNTER = itertools.count()
#: Failures of a file system that may pass: read-only (remounted after an error), I/O errors,
#: a network file system that is busy or whose server is away.
_PASSING = frozenset(
    {errno.EROFS, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE}
)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        func: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return func


_SYNCFS = _load_syncfs()


class DeviceIO(NamedTuple):
    """Bytes read from and written to a block device since it came up."""

    read: int
    written: int


def device_io(path: Path) -> Callable[[], DeviceIO | None]:
    """A function giving the :class:`DeviceIO` of the block device holding ``path`` (its
    ``stat`` in sysfs), or None where there is no such device (tmpfs, overlay, a network file
    system) or it cannot be read."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return lambda: None
    stat_file = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat"

    def counters() -> DeviceIO | None:
        try:
            with open(stat_file, "rb") as f:
                fields = f.read().split()
            # sectors read and written, always in 512-byte units
            return DeviceIO(int(fields[2]) * 512, int(fields[6]) * 512)
        except (OSError, ValueError, IndexError):
            return None

    return counters


class _Route:
    """Whether large writes may go around the page cache now: yes unless at least half as
    many bytes are read from the store's disk (``io``: its counters), by anyone, as are
    staged. Measured every :data:`ROUTE_EVERY` bytes staged and, from the second measure on,
    averaged with the measures before (each counting half as much as the next): the kernel
    reads ahead in bursts. A hint: threads staging at once share it, and a race between them
    only delays a change of route."""

    def __init__(self, io: Callable[[], DeviceIO | None]) -> None:
        self._io = io
        self.direct = True
        self._share: float | None = None  # bytes read from the disk per byte staged, averaged
        self._staged = 0
        self._since = self._reads()

    def _reads(self) -> int | None:
        now = self._io()
        return None if now is None else now.read

    def staged(self, n: int) -> None:
        """``n`` more bytes were staged."""
        self._staged += n
        staged = self._staged  # once: another thread may reset it meanwhile
        if staged < ROUTE_EVERY:
            return
        now = self._reads()
        if now is not None and self._since is not None:
            share = (now - self._since) / staged
            # the first measure stands alone: averaged with nothing, it would keep a capture of
            # a tree not in memory writing around the cache for a second period
            self._share = share if self._share is None else (self._share + share) / 2
            self.direct = self._share < 0.5
        self._since, self._staged = now, 0


class _Recycler:
    """Gives back the page cache of objects written through it while their content comes from
    memory (the route is direct), so that the next objects reuse those pages: on a virtual
    machine that returns free memory to its host, a page never used before costs several
    times a recycled one (10,000 files, 1 GiB, written then synced: 2.9-3.3 CPU-s for the
    whole machine through new pages, 1.3-1.4 recycled; bench/README.md). A written object is
    asked to leave the cache at once, which starts its write-back (dirty pages stay), then
    again a generation later (:data:`RECYCLE_EVERY`), when its pages are clean, and the file
    it held is closed. After a sync (:meth:`rest`) the objects still held are clean: they stay
    in the cache until the next object is staged (:meth:`reuse`), whose pages are then theirs,
    even seconds later (a periodic snapshot writes its delta into the pages of the last one's:
    dropped at once, they went back to the host; bench/README.md). A temporary file discarded
    meanwhile, its content already stored, keeps its disk space until dropped: two generations
    at most, closed at the sync. Only while the disk is not busy reading: write-back started
    early would then compete with the reads (bench/README.md, P1 cold). Best effort: a
    failure to drop is ignored, and pages still being written back when dropped stay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._young: list[int] = []
        self._old: list[int] = []
        self._resting: list[int] = []  # clean since the last sync, until the next object
        self._bytes = 0
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = RECYCLE_FILES if soft == resource.RLIM_INFINITY else min(RECYCLE_FILES, soft // 8)
        self._files = max(limit, 1)

    def add(self, fd: int, cached: int) -> None:
        """``fd`` is a new object's file, open for writing, of which ``cached`` bytes went
        through the page cache. The recycler holds the file open read-only until it drops it
        again: open for writing, it would keep its file system from being remounted read-only
        (as after an error)."""
        _drop(fd)
        try:
            held = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no /proc: dropped once, as a write-back starts
            return
        with self._lock:
            self._young.append(held)
            self._bytes += cached
            if self._bytes < RECYCLE_EVERY and len(self._young) < self._files:
                return
            old, self._old, self._young, self._bytes = self._old, self._young, [], 0
        _drop_and_close(old)

    def rest(self) -> None:
        """After a sync: keep the files held, their pages clean, for :meth:`reuse`; close those
        no longer linked (temporary copies discarded), which hold disk space."""
        with self._lock:
            held, self._old, self._young, self._bytes = self._old + self._young, [], [], 0
        keep: list[int] = []
        gone: list[int] = []
        for fd in held:
            try:
                linked = os.fstat(fd).st_nlink > 0
            except OSError:
                linked = False
            (keep if linked else gone).append(fd)
        _drop_and_close(gone)
        with self._lock:
            self._resting += keep

    def reuse(self) -> None:
        """A new object is staged: drop the files kept since the last sync, so that its pages
        are theirs."""
        if not self._resting:  # unlocked: a race only delays the drop to the next object
            return
        with self._lock:
            resting, self._resting = self._resting, []
        _drop_and_close(resting)

    def drain(self) -> None:
        """Drop and close every file held."""
        with self._lock:
            held = self._old + self._young + self._resting
            self._old, self._young, self._resting, self._bytes = [], [], [], 0
        _drop_and_close(held)


def _drop(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _drop_and_close(fds: list[int]) -> None:
    for fd in fds:
        _drop(fd)
        os.close(fd)


class _DirectWriter:
    """Writes a stream to a new file: whole aligned blocks with ``O_DIRECT``, the last partial
    block through the page cache; everything through the page cache where the file system
    refuses ``O_DIRECT`` (tmpfs, some network file systems), or while ``route`` says so.
    Errors are ``os.write``'s."""

    _buffers = threading.local()

    def __init__(self, fd: int, route: _Route) -> None:
        self._fd = fd
        self._route = route
        self._direct = False
        self._refused = False
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None:
            # page-aligned, as O_DIRECT needs: room for a chunk plus a partial block carried over
            buffer = self._buffers.buffer = mmap.mmap(-1, _CHUNK + _ALIGN)
        self._view = memoryview(buffer)
        self._held = 0
        self._aligned = True  # the file's end is a multiple of the block size
        self.cached = 0  # bytes written through the page cache

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        if not self._held and (len(data) < DIRECT_MIN or not self._route.direct):
            # through the page cache in any case: as it is, without a copy to the buffer
            self._route.staged(len(data))
            self._write(memoryview(data), direct=False)
            self._aligned = self._aligned and not len(data) % _ALIGN
            return
        for start in range(0, len(data), _CHUNK):
            self._append(memoryview(data)[start : start + _CHUNK])

    def _append(self, chunk: memoryview) -> None:
        end = self._held + len(chunk)
        self._view[self._held : end] = chunk
        whole = end - end % _ALIGN
        if whole:
            self._route.staged(whole)
            direct = whole >= DIRECT_MIN and self._route.direct and self._aligned
            self._write(self._view[:whole], direct=direct)
            self._view[: end - whole] = self._view[whole:end]
        self._held = end - whole

    def finish(self) -> None:
        """Write the last partial block."""
        if self._held:
            self._write(self._view[: self._held], direct=False)
            self._held = 0

    def release(self) -> None:
        self._view.release()

    def _write(self, data: memoryview, *, direct: bool) -> None:
        if direct != self._direct and not (direct and self._refused):
            self._set_direct(direct)
        while data:
            try:
                n = os.write(self._fd, data)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self._direct:
                    raise
                self._set_direct(False)  # the file system takes the flag but not the write
                self._refused = True
                continue
            if not self._direct:
                self.cached += n
            data = data[n:]

    def _set_direct(self, on: bool) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(
                self._fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
            )
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._refused = True
            return
        self._direct = on


class _Behind:
    """The background writer of :meth:`LocalBackend.writing_behind`.

    A content to be written around the page cache (at least :data:`DIRECT_MIN`, while the
    route is direct) waits for the disk: it is handed to a thread, which writes such contents
    in order while the caller reads the next files. Any other is written at once: through the
    page cache, it takes less time than handing it over, a thread switch each (P1, 20,000 files:
    every content handed over made the snapshot slower than none; bench/README.md). The thread
    is started by the first content handed over, from the caller's thread, whose CPU and I/O
    priority it inherits (Linux): a lowered snapshot thread's writer is as low.
    """

    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend
        self._jobs: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._room = threading.Semaphore(BEHIND_DEPTH)
        self._pending: set[str] = set()
        self._error: Exception | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None

    def pending(self, key: str) -> bool:
        return key in self._pending

    def put(self, key: str, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if len(data) < DIRECT_MIN or not self._backend._route.direct:
            self._backend.put(key, io.BytesIO(data))
            return
        self._room.acquire()
        self._pending.add(key)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hpcsnap-write", daemon=True)
            self._thread.start()
        self._jobs.put((key, data))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            key, data = job
            try:
                if self._error is None and not self._cancelled:
                    self._backend.put(key, io.BytesIO(data))
            except Exception as exc:  # raised in the caller's thread
                self._error = exc
            finally:
                self._pending.discard(key)  # once its object is in place, or given up
                self._room.release()

    def close(self, *, cancel: bool = False) -> Exception | None:
        """Wait for the contents handed over (only the one being written if ``cancel``);
        return the first failure."""
        self._cancelled = cancel
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        return self._error


class _Staged:
    """A temporary file waiting for its key."""

    def __init__(self, backend: LocalBackend, tmp: str) -> None:
        self._backend = backend
        self._tmp = tmp

    def commit(self, key: str) -> None:
        self.commit_path(self._backend._file(key))

    def commit_path(self, path: str) -> None:
        try:
            try:
                os.replace(self._tmp, path)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(self._tmp, path)
        except OSError as exc:
            self.discard()
            raise self._backend.failure(exc, "publishing an object") from exc
        except BaseException:
            self.discard()
            raise
        self._backend._dirty = True

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class LocalBackend:
    """Objects stored as files under ``root`` (created with mode 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._objects_s, self._tmp_s = str(self._objects), str(self._tmp)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.root.stat().st_mode) != 0o700:
            os.chmod(self.root, 0o700)  # not when it is already: the store may be read-only
        self._objects.mkdir(exist_ok=True)
        self._tmp.mkdir(exist_ok=True)
        self._dirty = False
        self._route = _Route(device_io(self.root))
        self._recycler = _Recycler()
        # what it holds is closed with the backend, flushed or not
        weakref.finalize(self, self._recycler.drain)
        self.sweep()

    def sweep(self, older_than: float = STALE_AFTER) -> int:
        """Delete the temporary files of puts that never ended (their writer was killed) and
        were last written more than ``older_than`` seconds ago; returns how many. A live put
        writes its file continuously, so it is never that old."""
        removed = 0
        limit = time.time() - older_than
        with contextlib.suppress(OSError), os.scandir(self._tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.name.startswith("put-") and entry.stat().st_mtime < limit:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def _file(self, key: str) -> str:
        """The file of ``key``, as a string: once or twice per put, where a ``Path`` costs more
        than the system call it prepares."""
        return f"{self._objects_s}/{check_key(key)}"

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def failure(self, exc: OSError, what: str) -> BlobError:
        """The blob store error for a failure of this store's file system while ``what``."""
        reason = exc.strerror or str(exc)
        if exc.errno in _FULL:
            return StorageFull(f"no space left on storage {self.root} ({what}: {reason})")
        if exc.errno == errno.EROFS:
            return TransientBlobError(f"storage {self.root} is read-only ({what}: {reason})")
        text = f"storage {self.root}: {what} failed: {reason}"
        return TransientBlobError(text) if exc.errno in _PASSING else BlobError(text)

    def put(self, key: str, src: BinaryIO) -> None:
        path = self._file(key)
        staged = self.stage(src)
        staged.commit_path(path)

    @contextlib.contextmanager
    def writing_behind(self) -> Iterator[_Behind]:
        """Puts of contents already in memory, those that would wait for the disk written by
        a background thread while the caller goes on (see :class:`_Behind` and
        :class:`~hpcsnap.blobstore.base.WritingBehind`)."""
        behind = _Behind(self)
        try:
            yield behind
        except BaseException:
            behind.close(cancel=True)
            raise
        if (error := behind.close()) is not None:
            raise error

    def stage(self, src: BinaryIO) -> _Staged:
        """Write ``src`` to a temporary file now, name it later (see ``Staging``): lets the
        content store hash and store a file in one read."""
        self._recycler.reuse()
        try:
            fd, tmp = self._temporary()
        except OSError as exc:
            raise self.failure(exc, "creating a temporary file") from exc
        try:
            try:
                writer = _DirectWriter(fd, self._route)
                try:
                    # errors reading src are the source's: they propagate unchanged
                    while chunk := src.read(_CHUNK):
                        try:
                            writer.write(chunk)
                        except OSError as exc:
                            raise self.failure(exc, "writing an object") from exc
                    try:
                        writer.finish()
                    except OSError as exc:
                        raise self.failure(exc, "writing an object") from exc
                finally:
                    writer.release()
                if writer.cached and self._route.direct:
                    self._recycler.add(fd, writer.cached)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return _Staged(self, tmp)

    def _temporary(self) -> tuple[int, str]:
        """A new file of ``tmp/`` (``put-*``, as :meth:`sweep` expects), open for writing. Its
        name is unique without :func:`tempfile.mkstemp`'s random draws: this process's id and a
        random tag (several agents and servers may share the store), then a counter."""
        while True:
            path = f"{self._tmp_s}/put-{_TAG}-{os.getpid()}-{next(_COUNTER)}"
            try:
                return os.open(path, _CREATE, 0o600), path
            except FileExistsError:  # a leftover of an earlier process with this pid
                continue

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise BlobNotFound(key) from exc

    def stat(self, key: str) -> int | None:
        try:
            st = os.stat(self._file(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            raise self.failure(exc, f"deleting {key}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        """Walk only the directory that ``prefix`` names up to its last ``/``.

        A prefix that no valid key starts with (``/x``, ``a//``, ``../``) yields nothing.
        """
        for key, _ in self._entries(prefix):
            yield key

    def scan(self, prefix: str = "") -> Iterator[Listed]:
        """As :meth:`list`, with each file's size and mtime (a file gone meanwhile is skipped)."""
        for key, entry in self._entries(prefix):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self.failure(exc, f"checking {key}") from exc
            yield Listed(key, st.st_size, st.st_mtime)

    def _entries(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        head, slash, name_start = prefix.rpartition("/")
        if not slash:
            yield from self._walk(self._objects, "", name_start)
            return
        try:
            check_key(head)
        except ValueError:
            return
        yield from self._walk(self._objects / head, head + "/", name_start)

    def _walk(
        self, start: Path, start_key: str, name_start: str
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        stack = [(start, start_key, name_start)]
        while stack:
            directory, key_prefix, wanted = stack.pop()
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if not entry.name.startswith(wanted):
                            continue
                        key = key_prefix + entry.name
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((Path(entry.path), key + "/", ""))
                        elif entry.is_file(follow_symlinks=False):
                            yield key, entry
            except (FileNotFoundError, NotADirectoryError):
                continue

    def flush(self) -> None:
        """Sync the file system holding the store, if anything was put since the last flush."""
        if self._dirty:
            self._dirty = False
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _SYNCFS is None or _SYNCFS(fd) != 0:
                    os.sync()
            finally:
                os.close(fd)
        self._recycler.rest()

    def describe(self) -> dict[str, str]:
        return {"kind": "local", "root": str(self.root)}
