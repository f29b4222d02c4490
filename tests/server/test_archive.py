"""Streamed archives (pure generators): contents round-trip through tarfile and zipfile, and
memory stays bounded on a 200 MiB file."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

import pytest

from hpcsnap.server.archive import Member, tar_gz, zip_stream

Writer = Callable[..., Iterator[bytes]]


class CountingReader(io.BytesIO):
    """A blob that says how much of it has been read."""

    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        CountingReader.reads += 1
        return super().read(size)


BLOBS = {"a" * 32: b"hello\n", "b" * 32: bytes(range(256)) * 12000}  # ~3 MiB
MEMBERS = [
    Member("snap/log.txt", "a" * 32, 6, 1_700_000_000_000_000_000),
    Member("snap/é/field.bin", "b" * 32, len(BLOBS["b" * 32]), 0, mode=0o755),
    Member("snap/latest", None, 0, 1_700_000_000_000_000_000, 0o777, target="log.txt"),
    Member("snap/empty", "e" * 32, 0, 0),
]


def opener(digest: str) -> BinaryIO:
    return CountingReader(BLOBS[digest])


def test_tar_gz_streams_and_round_trips() -> None:
    CountingReader.reads = 0
    stream = tar_gz(MEMBERS, opener)
    first = next(stream)  # produced before the big blob is read to its end
    assert CountingReader.reads <= 2
    data = first + b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == [m.name for m in MEMBERS]
        log = tar.getmember("snap/log.txt")
        assert log.mtime == 1_700_000_000 and log.mode == 0o644
        assert tar.extractfile(log).read() == b"hello\n"  # type: ignore[union-attr]
        field = tar.getmember("snap/é/field.bin")
        assert field.mode == 0o755
        assert tar.extractfile(field).read() == BLOBS["b" * 32]  # type: ignore[union-attr]
        link = tar.getmember("snap/latest")
        assert link.issym() and link.linkname == "log.txt"
        assert tar.getmember("snap/empty").size == 0
    assert len(data) < 100_000  # compressed on the way


def test_zip_streams_and_round_trips(tmp_path: object) -> None:
    CountingReader.reads = 0
    stream = zip_stream(MEMBERS, opener)
    first = next(stream)
    assert CountingReader.reads <= 2
    data = first + b"".join(stream)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == [m.name for m in MEMBERS]
        assert zf.read("snap/log.txt") == b"hello\n"
        assert zf.read("snap/é/field.bin") == BLOBS["b" * 32]
        assert zf.getinfo("snap/log.txt").date_time == (2023, 11, 14, 22, 13, 20)
        assert zf.getinfo("snap/é/field.bin").date_time == (1980, 1, 1, 0, 0, 0)
        mode = zf.getinfo("snap/é/field.bin").external_attr >> 16
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o755
        # a symlink the Info-ZIP way: its target as content, S_IFLNK in its Unix mode
        link = zf.getinfo("snap/latest")
        assert stat.S_ISLNK(link.external_attr >> 16) and zf.read(link) == b"log.txt"
        assert zf.read("snap/empty") == b""
    assert len(data) < 100_000


@pytest.mark.parametrize("write", [tar_gz, zip_stream])
def test_a_short_blob_keeps_the_archive_readable(write: Writer) -> None:
    members = [Member("x", "c" * 32, 10, 0), Member("y", "c" * 32, 3, 0)]
    data = b"".join(write(members, lambda d: io.BytesIO(b"abc")))
    if write is tar_gz:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            assert tar.extractfile("x").read() == b"abc" + bytes(7)  # type: ignore[union-attr]
            assert tar.extractfile("y").read() == b"abc"  # type: ignore[union-attr]
    else:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.read("x") == b"abc" + bytes(7) and zf.read("y") == b"abc"


class Generated(io.RawIOBase):
    """``size`` bytes of incompressible-looking content, made while read (never held)."""

    BLOCK = os.urandom(1 << 20)

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, len(self.BLOCK) if n < 0 else n, len(self.BLOCK))
        self.left -= n
        return self.BLOCK[:n]


@pytest.mark.parametrize("write", [tar_gz, zip_stream])
def test_memory_stays_bounded_on_a_200_mib_file(write: Writer) -> None:
    size = 200 << 20
    members = [Member("big.bin", "f" * 32, size, 0), Member("small", "f" * 32, 10, 0)]
    # level 0: zlib copies (fast), so the archive is as big as the file: nothing to hide in
    tracemalloc.start()
    try:
        total = 0
        for piece in write(members, lambda d: Generated(size), level=0):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > size
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB while archiving 200 MiB"
