"""RetryingBackend: transient failures retried with backoff, only where replaying is safe."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from hpcsnap.blobstore import (
    BlobError,
    Listed,
    LocalBackend,
    RetryingBackend,
    TransientBlobError,
)


class Flaky:
    """A local backend whose operations fail ``failures[op]`` times with a transient error."""

    def __init__(self, root: Path, **failures: int) -> None:
        self.inner = LocalBackend(root)
        self.failures = failures
        self.calls: list[str] = []

    def _maybe_fail(self, op: str) -> None:
        self.calls.append(op)
        if self.failures.get(op, 0) > 0:
            self.failures[op] -= 1
            raise TransientBlobError(f"{op}: 503 SlowDown")

    def put(self, key: str, src: BinaryIO) -> None:
        if self.failures.get("put", 0) > 0:
            src.read(3)  # consume part of the source before failing
        self._maybe_fail("put")
        self.inner.put(key, src)

    def open(self, key: str) -> BinaryIO:
        self._maybe_fail("open")
        return self.inner.open(key)

    def stat(self, key: str) -> int | None:
        self._maybe_fail("stat")
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self._maybe_fail("delete")
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        for n, key in enumerate(sorted(self.inner.list(prefix))):
            if n == 1:
                self._maybe_fail("list")
            yield key

    def scan(self, prefix: str = "") -> Iterator[Listed]:
        for n, listed in enumerate(sorted(self.inner.scan(prefix), key=lambda x: x.key)):
            if n == 1:
                self._maybe_fail("scan")
            yield listed

    def flush(self) -> None:
        self._maybe_fail("flush")

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


def retrying(flaky: Flaky, delays: list[float], attempts: int = 4) -> RetryingBackend:
    return RetryingBackend(flaky, attempts=attempts, base_delay=0.5, sleep=delays.append)


def test_transient_failures_are_retried_with_growing_backoff(tmp_path: Path) -> None:
    delays: list[float] = []
    flaky = Flaky(tmp_path, stat=3)
    assert retrying(flaky, delays).stat("k") is None
    assert flaky.calls == ["stat"] * 4
    assert len(delays) == 3 and all(0 <= d <= 0.5 * 2**i for i, d in enumerate(delays))


def test_gives_up_after_the_last_attempt(tmp_path: Path) -> None:
    delays: list[float] = []
    with pytest.raises(TransientBlobError, match="SlowDown"):
        retrying(Flaky(tmp_path, open=9), delays, attempts=3).open("k")
    assert len(delays) == 2


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    class Broken(Flaky):
        def delete(self, key: str) -> None:
            self.calls.append("delete")
            raise BlobError("AccessDenied")

    flaky = Broken(tmp_path)
    with pytest.raises(BlobError, match="AccessDenied"):
        retrying(flaky, []).delete("k")
    assert flaky.calls == ["delete"]


def test_put_rewinds_a_seekable_source(tmp_path: Path) -> None:
    flaky = Flaky(tmp_path, put=2)
    src = io.BytesIO(b"xxhello world")
    src.seek(2)
    retrying(flaky, []).put("k", src)
    assert flaky.inner.open("k").read() == b"hello world"


def test_put_of_a_consumed_stream_is_not_replayed(tmp_path: Path) -> None:
    class Stream(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            b[:1] = b"x"
            return 1

    flaky = Flaky(tmp_path, put=1)
    with pytest.raises(TransientBlobError):
        retrying(flaky, []).put("k", Stream())  # type: ignore[arg-type]
    assert flaky.calls == ["put"]


def test_list_starts_over_without_repeating_keys(tmp_path: Path) -> None:
    flaky = Flaky(tmp_path, list=1)
    for key in ("a", "b", "c"):
        flaky.inner.put(key, io.BytesIO(b"1"))
    assert list(retrying(flaky, []).list()) == ["a", "b", "c"]


def test_scan_starts_over_without_repeating_keys(tmp_path: Path) -> None:
    flaky = Flaky(tmp_path, scan=1)
    for key, data in (("a", b"1"), ("b", b"22"), ("c", b"333")):
        flaky.inner.put(key, io.BytesIO(data))
    listed = list(retrying(flaky, []).scan())
    assert [(x.key, x.size) for x in listed] == [("a", 1), ("b", 2), ("c", 3)]
    assert flaky.calls == ["scan", "scan"]


def test_flush_and_describe(tmp_path: Path) -> None:
    flaky = Flaky(tmp_path, flush=1)
    backend = retrying(flaky, [])
    backend.flush()
    assert backend.describe() == flaky.inner.describe()
