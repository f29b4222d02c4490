"""Content addressing: file contents stored once under their xxh3-128 hash.

:class:`ContentStore` keeps one namespace (one per user) of a backend, with keys
``<namespace>/<first two hex digits>/<digest>``. An object only ever lands under the hash of
the bytes it holds: :meth:`ContentStore.put_file` re-hashes while it uploads and raises
:class:`~hpcsnap.blobstore.base.ContentChanged` before the backend commits a torn copy.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import xxhash

from hpcsnap.blobstore.base import Backend, Behind, ContentChanged, Staging, WritingBehind

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20
"""Read size for every file and stream (1 MiB)."""

STAT_CONCURRENCY = 8
"""Existence checks in flight at once on a remote store (:meth:`ContentStore.stored`)."""

Opener = Callable[[bytes], BinaryIO]
"""Opens a file for reading from its (bytes) path."""

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Stored:
    """What a put stored: ``written`` is False when the content was already in the store."""

    digest: str
    size: int
    written: bool
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored blob: its ``digest``, ``size`` and ``modified`` (POSIX time last written)."""

    digest: str
    size: int
    modified: float


class _Reader(io.RawIOBase):
    """A raw reader whose ``readinto`` is its ``read``."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class _Tap(_Reader):
    def __init__(
        self, src: BinaryIO, on_data: Callable[[bytes], None], on_eof: Callable[[], None] | None
    ) -> None:
        super().__init__()
        self._src = src
        self._on_data = on_data
        self._on_eof = on_eof

    def read(self, size: int | None = -1) -> bytes:
        data = self._src.read(-1 if size is None else size)
        if data:
            self._on_data(data)
        if (not data or size is None or size < 0) and self._on_eof is not None:
            on_eof, self._on_eof = self._on_eof, None
            on_eof()
        return data

    def close(self) -> None:
        if not self.closed:
            self._src.close()
        super().close()


def tap(
    src: BinaryIO, on_data: Callable[[bytes], None], on_eof: Callable[[], None] | None = None
) -> BinaryIO:
    """A reader of ``src`` that passes each chunk read to ``on_data`` and calls ``on_eof`` once
    at the end of ``src`` (an exception there reaches the caller of ``read``). Closing it
    closes ``src``. Unbuffered: each ``read`` is one ``read`` of ``src``."""
    return cast(BinaryIO, _Tap(src, on_data, on_eof))


class _Prefixed(_Reader):
    """Reads ``chunks`` (already read from ``rest``), then ``rest``; closes nothing."""

    def __init__(self, chunks: tuple[bytes, ...], rest: BinaryIO) -> None:
        super().__init__()
        self._chunks = list(chunks)
        self._rest = rest

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            head, self._chunks = b"".join(self._chunks), []
            return head + self._rest.read()
        if not self._chunks:
            return self._rest.read(size)
        chunk = self._chunks[0]
        if size >= len(chunk):
            del self._chunks[0]
            return chunk
        self._chunks[0] = chunk[size:]
        return chunk[:size]


def _open_file(path: bytes) -> BinaryIO:
    return open(path, "rb", buffering=0)


def _hash_stream(src: BinaryIO) -> tuple[str, int]:
    hasher = xxhash.xxh3_128()
    size = 0
    while chunk := src.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def hash_file(path: str | bytes | os.PathLike[str]) -> tuple[str, int]:
    """Return the xxh3-128 hex digest and the size of the file at ``path``."""
    with _open_file(os.fsencode(path)) as src:
        return _hash_stream(src)


class _Hashing:
    """Hash and size of the bytes passed to :meth:`update` (a ``tap`` callback)."""

    def __init__(self) -> None:
        self._hasher = xxhash.xxh3_128()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return self._hasher.hexdigest()


class ContentStore:
    """Blobs addressed by content hash within one namespace of ``backend``."""

    def __init__(self, backend: Backend, namespace: str) -> None:
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                f"invalid namespace {namespace!r}: use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        self.backend = backend
        self.namespace = namespace
        # checked once: a runtime Protocol check costs ~10 µs, once per file otherwise
        self._staging = backend if isinstance(backend, Staging) else None
        self._local = backend.describe().get("kind") == "local"
        self._behind: Behind | None = None

    def key(self, digest: str) -> str:
        """The backend key of ``digest`` (``ValueError`` unless 32 lowercase hex digits)."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"invalid content digest {digest!r}: expected 32 lowercase hex digits")
        return f"{self.namespace}/{digest[:2]}/{digest}"

    @property
    def stats_cheaply(self) -> bool:
        """Whether asking for a blob (:meth:`has`) is a system call (a local directory), not a
        round trip to a remote store."""
        return self._local

    def has(self, digest: str) -> bool:
        return self.backend.stat(self.key(digest)) is not None

    def stored(self, digests: list[str]) -> set[str]:
        """The digests among ``digests`` whose content is stored. Each is one ``stat``: asked
        :data:`STAT_CONCURRENCY` at a time on a remote store, where each is a round trip; one
        after the other on a local one, where each is a system call and threads would only add
        their own cost (measured: 0.04 CPU-s for 10,000 digests, against 0.4 in 8 threads)."""
        if self._local or len(digests) <= 16:
            return {d for d in digests if self.has(d)}
        with ThreadPoolExecutor(STAT_CONCURRENCY) as pool:
            return {d for d, ok in zip(digests, pool.map(self.has, digests), strict=True) if ok}

    def put_file(
        self,
        path: str | bytes | os.PathLike[str],
        *,
        digest: str | None = None,
        opener: Opener | None = None,
    ) -> Stored:
        """Store the file at ``path`` unless its content is already stored.

        On a backend that can stage content (a local directory), the file is read once: hashed
        first when it is small, then written only if its content is new; otherwise hashed while
        a temporary copy is written, which is then named by its hash. On other backends, a
        first pass hashes the file (skipped when ``digest`` is given); when the content is
        new, a second pass uploads it while re-hashing, and raises ``ContentChanged`` at the
        end if the bytes differ from ``digest``, so nothing is stored under a wrong key.
        ``opener`` (default: plain ``open``) opens ``path``, as bytes, for each pass.
        """
        open_ = opener or _open_file
        raw = os.fsencode(path)
        if digest is None and self._staging is not None:
            return self._put_staged(self._staging, raw, open_)
        if digest is None:
            with open_(raw) as src:
                digest, _ = _hash_stream(src)
        key = self.key(digest)
        existing = self.backend.stat(key)
        if existing is not None:
            return Stored(digest, existing, written=False)
        seen = _Hashing()

        def on_eof() -> None:
            if seen.digest != digest:
                raise ContentChanged(f"{os.fsdecode(raw)!r} changed while it was being stored")

        with open_(raw) as src:
            self.backend.put(key, tap(src, seen.update, on_eof))
        return Stored(digest, seen.size, written=True)

    def _put_staged(self, backend: Staging, raw: bytes, open_: Opener) -> Stored:
        """One read. Content of at most one :data:`CHUNK` is hashed first and written only
        when it is new: a temporary copy of content already stored would cost a write, a
        delete and, on a file system that discards freed blocks, a wait for the disk, for
        nothing. Larger content is hashed while the backend writes a temporary copy, which
        is then named by the hash (or dropped if that content is already stored)."""
        seen = _Hashing()
        with open_(raw) as src:
            head = src.read(CHUNK)
            more = src.read(CHUNK) if head else b""
            seen.update(head)
            if more:
                seen.update(more)
                rest = _Prefixed((head, more), tap(src, seen.update))
                staged = backend.stage(cast(BinaryIO, rest))
        if not more:
            return self._put_small(seen.digest, head)
        digest, size = seen.digest, seen.size
        try:
            key = self.key(digest)
            if self.backend.stat(key) is not None:
                staged.discard()
                return Stored(digest, size, written=False)
            staged.commit(key)
        except BaseException:
            staged.discard()
            raise
        return Stored(digest, size, written=True)

    def _put_small(self, digest: str, data: bytes) -> Stored:
        key = self.key(digest)
        behind = self._behind
        if behind is None:
            if self.backend.stat(key) is not None:
                return Stored(digest, len(data), written=False)
            self.backend.put(key, io.BytesIO(data))
        elif behind.pending(key) or self.backend.stat(key) is not None:
            return Stored(digest, len(data), written=False)
        else:
            behind.put(key, data)
        return Stored(digest, len(data), written=True)

    @contextlib.contextmanager
    def writing_behind(self) -> Iterator[ContentStore]:
        """A store on the same backend whose :meth:`put_file` may leave the writing of a new
        small content (one :data:`CHUNK` at most, read whole before it is hashed) to the
        backend's background writer, while the caller reads the next files (see
        :class:`~hpcsnap.blobstore.base.WritingBehind`; on other backends, this store). Every
        put is done (its object in place, not yet flushed) when the block ends; a failed put
        is raised by a later put or at the end of the block."""
        if not isinstance(self.backend, WritingBehind):
            yield self
            return
        with self.backend.writing_behind() as behind:
            store = copy.copy(self)
            store._behind = behind
            yield store

    def put_stream(self, src: BinaryIO, *, tmpdir: Path | None = None) -> Stored:
        """Store the content of ``src`` (read to its end), spooled to a temporary file in
        ``tmpdir`` while its xxh3-128 and MD5 are computed."""
        hasher = xxhash.xxh3_128()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with tempfile.TemporaryFile(dir=tmpdir) as spool:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                md5.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            digest = hasher.hexdigest()
            key = self.key(digest)
            written = self.backend.stat(key) is None
            if written:
                spool.seek(0)
                self.backend.put(key, spool)
        return Stored(digest, size, written, md5.hexdigest())

    def open(self, digest: str) -> BinaryIO:
        """Open the content of ``digest`` (``BlobNotFound`` if absent)."""
        return self.backend.open(self.key(digest))

    def delete(self, digest: str) -> None:
        self.backend.delete(self.key(digest))

    def _digest_of(self, key: str) -> str | None:
        directory, _, digest = key.rpartition("/")
        if _DIGEST.fullmatch(digest) and directory == f"{self.namespace}/{digest[:2]}":
            return digest
        return None

    def digests(self) -> Iterator[str]:
        """Every digest stored in this namespace."""
        for key in self.backend.list(f"{self.namespace}/"):
            if (digest := self._digest_of(key)) is not None:
                yield digest

    def blobs(self) -> Iterator[Blob]:
        """Every blob stored in this namespace, with its size and when it was last written."""
        for listed in self.backend.scan(f"{self.namespace}/"):
            if (digest := self._digest_of(listed.key)) is not None:
                yield Blob(digest, listed.size, listed.modified)

    def flush(self) -> None:
        """Make every blob stored so far durable."""
        self.backend.flush()
