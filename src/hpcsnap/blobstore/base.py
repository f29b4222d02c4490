"""The storage backend protocol that every blob store implements.

Contract (checked by ``tests/blobstore/test_conformance.py`` against every backend):

- ``put(key, src)`` reads ``src`` to its end and stores the bytes under ``key`` atomically: a
  reader sees either the previous object or the whole new one, never a part. If reading ``src``
  raises, nothing is stored and the exception propagates. Overwriting is allowed.
- ``open(key)`` returns a readable binary file object positioned at 0 (caller closes it);
  ``BlobNotFound`` if the key is absent.
- ``stat(key)`` returns the size in bytes, or ``None`` if the key is absent.
- ``delete(key)`` removes the key; deleting an absent key is not an error.
- ``list(prefix)`` yields every key starting with ``prefix``, in no particular order.
- ``scan(prefix)`` yields a :class:`Listed` (key, size, time last written) for every key
  starting with ``prefix``, in no particular order: what garbage collection needs to skip
  content stored too recently to be referenced yet.
- ``flush()`` makes every object put so far durable (survives a power loss); ``put`` alone need
  not be durable, so that a snapshot of many files pays for one flush, not one fsync per file.

Errors: ``BlobError`` is the base of every error a backend raises on purpose; ``BlobNotFound``
(also a ``KeyError``) for an absent key; ``ContentChanged`` when a source changed while it was
stored; ``TransientBlobError`` when a retry may succeed, ``StorageFull`` (one of them) when the
store has no space left. A failure of the store itself (its disk full or read-only, its server
gone) is always a ``BlobError``, never a bare ``OSError``, so that a caller can tell it from a
failure to read the source: the source's own errors (``OSError`` included) propagate unchanged.

Keys are ``/``-separated, relative, without ``.``/``..`` segments, empty segments or NUL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable


class BlobError(Exception):
    """Base class of every blob store error."""


class BlobNotFound(BlobError, KeyError):
    """The key does not exist in the backend."""


class ContentChanged(BlobError):
    """A file's content changed while it was being stored (its hash no longer matches)."""


class TransientBlobError(BlobError):
    """The store failed in a way that may pass if the operation is retried (network error,
    time-out, throttling, server error); see :class:`~hpcsnap.blobstore.retry.RetryingBackend`."""


class StorageFull(TransientBlobError):
    """The store has no space left (disk full, quota reached): may pass once space is freed."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid backend key, else raise ``ValueError`` saying why."""
    if not key or key.startswith("/") or "\x00" in key:
        raise ValueError(f"invalid blob key {key!r}: empty, absolute or containing NUL")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}: empty, '.' or '..' segment")
    return key


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a listing: its ``key``, ``size`` in bytes and ``modified``, the POSIX
    time it was last written (a file's mtime, S3's ``LastModified``)."""

    key: str
    size: int
    modified: float


class Staged(Protocol):
    """Content written by :meth:`Staging.stage`, not visible under any key yet."""

    def commit(self, key: str) -> None:
        """Publish the content under ``key`` (atomically, as ``put``)."""
        ...

    def discard(self) -> None: ...


@runtime_checkable
class Staging(Protocol):
    """Optional: backends that can store content before knowing its key (a local directory
    can, S3 cannot cheaply). The content store then reads a new file once instead of twice."""

    def stage(self, src: BinaryIO) -> Staged: ...


class Behind(Protocol):
    """Puts handed to a background writer (see :class:`WritingBehind`)."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, now or later: raises the error of an earlier put
        that failed."""
        ...

    def pending(self, key: str) -> bool:
        """Whether ``key`` was put here and its object is not in place yet."""
        ...


@runtime_checkable
class WritingBehind(Protocol):
    """Optional: backends whose puts may wait on a disk, which a background writer lets the
    caller spend reading the next contents (a local directory written around the page
    cache). ``writing_behind()`` is a context manager giving a :class:`Behind`: when it
    exits, every put is done (its object in place), and the first that failed is raised;
    when it exits by an exception, the puts not started yet are dropped."""

    def writing_behind(self) -> AbstractContextManager[Behind]: ...


@runtime_checkable
class Backend(Protocol):
    """Byte objects under string keys. See the module docstring for the contract."""

    def put(self, key: str, src: BinaryIO) -> None: ...

    def open(self, key: str) -> BinaryIO: ...

    def stat(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def scan(self, prefix: str = "") -> Iterator[Listed]: ...

    def flush(self) -> None: ...

    def describe(self) -> dict[str, str]:
        """A JSON-able description from which :func:`hpcsnap.blobstore.open_backend` re-opens
        the same store in another process (e.g. the agent on a compute node)."""
        ...
