"""The contract of ``hpcsnap.blobstore.base``, run against every backend.

To add a backend, append a factory to ``FACTORIES``: a context manager that takes a fresh
temporary directory and yields a ready, empty backend (starting and stopping any server).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest

from hpcsnap.blobstore import Backend, BlobNotFound, LocalBackend, open_backend


@contextmanager
def local_factory(tmp: Path) -> Iterator[Backend]:
    yield LocalBackend(tmp / "store")


@contextmanager
def s3_factory(tmp: Path) -> Iterator[Backend]:
    """A fresh bucket, under a key prefix, of a real S3 server (``rclone serve s3``, started
    once per session by ``tests/services.py``; the test is skipped, saying why, without it)."""
    from hpcsnap.blobstore.retry import RetryingBackend
    from hpcsnap.blobstore.s3 import S3Backend
    from tests import services

    server = services.s3()
    backend = open_backend(server.description(server.new_bucket(), prefix="store"))
    assert isinstance(backend, RetryingBackend) and isinstance(backend.inner, S3Backend)
    backend.inner.ensure_bucket()
    yield backend


FACTORIES: list[Callable[[Path], AbstractContextManager[Backend]]] = [local_factory, s3_factory]


@pytest.fixture(params=FACTORIES, ids=lambda f: f.__name__.removesuffix("_factory"))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with request.param(tmp_path) as b:
        yield b


class Boom(Exception):
    pass


class FailingReader(io.RawIOBase):
    """Gives ``good`` bytes, then raises ``Boom``."""

    def __init__(self, good: bytes) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if not self._left:
            raise Boom("source failed")
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


class PatternReader(io.RawIOBase):
    """``size`` deterministic bytes produced on the fly; records every read size."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._pos = 0
        self.read_sizes: list[int] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        self.read_sizes.append(len(buffer))
        n = min(len(buffer), self._size - self._pos)
        buffer[:n] = pattern(self._pos, n)
        self._pos += n
        return n


def pattern(start: int, n: int) -> bytes:
    block = bytes(range(251)) * (n // 251 + 2)
    offset = start % 251
    return block[offset : offset + n]


def read_all(b: Backend, key: str) -> bytes:
    with b.open(key) as f:
        return f.read()


def test_put_open_stat(backend: Backend) -> None:
    backend.put("a/b/c", io.BytesIO(b"hello"))
    assert read_all(backend, "a/b/c") == b"hello"
    assert backend.stat("a/b/c") == 5


def test_missing_key(backend: Backend) -> None:
    assert backend.stat("nope") is None
    with pytest.raises(BlobNotFound) as info:
        backend.open("nope/x")
    assert isinstance(info.value, KeyError)


def test_overwrite(backend: Backend) -> None:
    backend.put("k", io.BytesIO(b"first version"))
    backend.put("k", io.BytesIO(b"second"))
    assert read_all(backend, "k") == b"second"
    assert backend.stat("k") == 6


def test_delete(backend: Backend) -> None:
    backend.put("x/y", io.BytesIO(b"1"))
    backend.delete("x/y")
    assert backend.stat("x/y") is None
    assert list(backend.list()) == []
    backend.delete("x/y")
    backend.delete("never/existed")


def test_empty_object(backend: Backend) -> None:
    backend.put("empty", io.BytesIO(b""))
    assert backend.stat("empty") == 0
    assert read_all(backend, "empty") == b""


def test_list_prefixes(backend: Backend) -> None:
    keys = ["a/bc/d", "a/b/x", "ab", "b/a", "a/c/d/e"]
    for key in keys:
        backend.put(key, io.BytesIO(key.encode()))
    assert sorted(backend.list()) == sorted(keys)
    assert sorted(backend.list("")) == sorted(keys)
    assert sorted(backend.list("a/")) == ["a/b/x", "a/bc/d", "a/c/d/e"]
    assert sorted(backend.list("a/b")) == ["a/b/x", "a/bc/d"]
    assert sorted(backend.list("a/b/")) == ["a/b/x"]
    assert sorted(backend.list("a")) == ["a/b/x", "a/bc/d", "a/c/d/e", "ab"]
    assert list(backend.list("a/c/d/e/")) == []
    assert list(backend.list("zzz/")) == []
    assert list(backend.list("z")) == []
    for impossible in ("/a", "a//", "../", "a/../"):
        assert list(backend.list(impossible)) == []


def test_scan_gives_size_and_write_time(backend: Backend) -> None:
    before = time.time()
    objects = {"s/a": b"", "s/b/c": b"12345", "sx": b"1", "t/s": b"xy"}
    for key, data in objects.items():
        backend.put(key, io.BytesIO(data))
    after = time.time()
    listed = {x.key: x for x in backend.scan("s")}
    assert set(listed) == {"s/a", "s/b/c", "sx"} == set(backend.list("s"))
    assert {k: x.size for k, x in listed.items()} == {"s/a": 0, "s/b/c": 5, "sx": 1}
    # S3 gives whole seconds; the bounds only rule out a time that is not the write's
    assert all(before - 60 <= x.modified <= after + 60 for x in listed.values())
    assert {x.key for x in backend.scan("s/")} == {"s/a", "s/b/c"}
    assert {x.key for x in backend.scan()} == set(objects)
    backend.delete("s/a")
    assert {x.key for x in backend.scan("s/")} == {"s/b/c"}
    for impossible in ("/a", "a//", "../"):
        assert list(backend.scan(impossible)) == []


def test_open_is_at_start_and_streams(backend: Backend) -> None:
    backend.put("k", io.BytesIO(b"0123456789"))
    with backend.open("k") as f:
        assert f.read(3) == b"012"
        assert f.read() == b"3456789"


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a/", "nul\x00"])
def test_invalid_keys_rejected(backend: Backend, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        backend.put(key, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="invalid blob key"):
        backend.open(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        backend.stat(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        backend.delete(key)


def test_failed_put_stores_nothing(backend: Backend) -> None:
    src: BinaryIO = io.BufferedReader(FailingReader(b"partial" * 1000))
    with pytest.raises(Boom):
        backend.put("k", src)
    assert backend.stat("k") is None
    assert list(backend.list()) == []


def test_failed_overwrite_keeps_previous(backend: Backend) -> None:
    backend.put("k", io.BytesIO(b"previous"))
    with pytest.raises(Boom):
        backend.put("k", io.BufferedReader(FailingReader(b"new" * 100_000)))
    assert read_all(backend, "k") == b"previous"
    assert list(backend.list()) == ["k"]


def test_large_object_is_streamed(backend: Backend) -> None:
    size = 20 * 1024 * 1024 + 7
    src = PatternReader(size)
    backend.put("big", io.BufferedReader(src, 64 * 1024))
    assert backend.stat("big") == size
    # Read in bounded chunks, never all at once.
    assert max(src.read_sizes) <= 64 * 1024 * 1024
    with backend.open("big") as f:
        pos = 0
        while chunk := f.read(3 * 1024 * 1024):
            assert chunk == pattern(pos, len(chunk))
            pos += len(chunk)
    assert pos == size


def test_flush(backend: Backend) -> None:
    backend.flush()
    backend.put("k", io.BytesIO(b"durable"))
    backend.flush()
    backend.flush()
    assert read_all(backend, "k") == b"durable"


def test_describe_round_trip(backend: Backend) -> None:
    backend.put("shared/key", io.BytesIO(b"seen from elsewhere"))
    desc = backend.describe()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in desc.items())
    again = open_backend(desc)
    assert isinstance(again, Backend)
    assert again.describe() == desc
    assert read_all(again, "shared/key") == b"seen from elsewhere"


def test_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
